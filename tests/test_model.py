"""Mechanics of the steerable model on tiny random parts: identity at init, gates, batching, training view."""
from __future__ import annotations

import math

import pytest
import timm
import torch

from support import TINY_ROBERTA, make_tiny_model
from steervit import SteerViT, SteerViTConfig
from steervit.losses import patch_targets, pixel_probability_mass, probability_mass, soft_cross_entropy
from steervit.text import TextEncoder

PROMPTS = ["the red car", "a small black TV remote on the sofa", "zebra"]


@torch.no_grad()
def test_no_text_is_bit_identical_to_trunk(tiny_model, images64):
    assert torch.equal(tiny_model(images64), tiny_model.trunk.forward_features(images64))


@torch.no_grad()
def test_registers_and_mean_pooling():
    """A trunk with register tokens: prefix tokens are dropped from dense features and mean pooling."""
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    trunk = VisionTransformer(img_size=64, patch_size=8, embed_dim=32, depth=4, num_heads=2, reg_tokens=2,
                              num_classes=0, dynamic_img_size=True).eval()
    config = SteerViTConfig(trunk="custom", image_size=64, text_encoder=str(TINY_ROBERTA), pooling="mean")
    model = SteerViT(config, trunk=trunk, text_encoder=TextEncoder(str(TINY_ROBERTA))).eval()
    x = torch.randn(2, 3, 64, 64)
    assert model.num_prefix_tokens == 3
    dense = model.get_dense_features(x, PROMPTS[:2])
    assert dense.shape == (2, 64, 32)
    # mean pooling inside the model vs here: another reduction order, so float rounding differs
    assert torch.allclose(model.get_global_features(x, PROMPTS[:2]), dense.mean(1), atol=1e-6)
    assert torch.equal(model(x), trunk.forward_features(x))  # the trunk's own modules in its order
    assert list(model.cross_attn_layers) == ["1", "3"]


@torch.no_grad()
def test_fresh_model_equals_trunk_and_initial_loss_is_log_n(images64):
    """Zero-initialised gates and head: the trunk is untouched and the loss starts at ln(N)."""
    torch.manual_seed(0)
    trunk = timm.create_model("test_vit", pretrained=False, num_classes=0, img_size=64, dynamic_img_size=True)
    config = SteerViTConfig(trunk="test_vit", image_size=64, text_encoder=str(TINY_ROBERTA))
    model = SteerViT(config, trunk=trunk, text_encoder=TextEncoder(str(TINY_ROBERTA))).eval()
    tokens, logits = model(images64, PROMPTS[:2], return_logits=True)
    assert torch.equal(tokens, trunk.forward_features(images64))
    masks = torch.zeros(2, 64, 64)
    masks[0, 10:30, 5:40] = 1
    masks[1, 40:, 40:] = 1
    loss = soft_cross_entropy(logits, patch_targets(masks, model.patch_size))
    assert loss.item() == pytest.approx(math.log(16), abs=1e-6)


def test_patch_targets_and_pmass():
    masks = torch.zeros(1, 4, 4)
    masks[0, :2, :2] = 1  # exactly the top-left 2x2 patch
    masks[0, 2, 2] = 1  # a quarter of the bottom-right patch
    targets = patch_targets(masks, 2)
    assert torch.allclose(targets, torch.tensor([[0.8, 0.0, 0.0, 0.2]]))
    assert torch.equal(patch_targets(torch.zeros(1, 4, 4), 2), torch.zeros(1, 4))
    logits = torch.tensor([[10.0, 0.0, 0.0, 0.0]])
    p = logits.softmax(-1)[0]
    # pmass counts every patch holding part of the mask; the pixel version counts a quarter-patch a quarter
    assert probability_mass(logits, masks, 2).item() == pytest.approx(p[0].item() + p[3].item())
    assert pixel_probability_mass(logits, masks, 2).item() == pytest.approx(p[0].item() + 0.25 * p[3].item())
    # the loss's optimum (softmax = target) puts all its mass on the mask, but only sum(c^2)/sum(c) by pixels
    optimum = targets.log()
    assert probability_mass(optimum, masks, 2).item() == pytest.approx(1.0)
    assert pixel_probability_mass(optimum, masks, 2).item() == pytest.approx((1 + 0.25**2) / 1.25)


@torch.no_grad()
def test_gate_factor_zero_equals_trunk_and_keeps_parameters(tiny_model, images64, tmp_path):
    steered = tiny_model.get_global_features(images64, PROMPTS[:2])
    plain = tiny_model.get_global_features(images64)
    assert not torch.allclose(steered, plain)
    gates = {k: v.clone() for k, v in tiny_model.adapter_state_dict().items() if k.endswith("_gate")}
    tiny_model.set_gate_factor(0.0)
    assert torch.equal(tiny_model(images64, PROMPTS[:2]), tiny_model.trunk.forward_features(images64))
    tiny_model.set_gate_factor(0.5)
    half = tiny_model.get_global_features(images64, PROMPTS[:2])
    assert not torch.allclose(half, steered) and not torch.allclose(half, plain)
    for k, v in gates.items():
        assert torch.equal(tiny_model.adapter_state_dict()[k], v)
    tiny_model.save_pretrained(tmp_path / "m")
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "m" / "model.safetensors"))
    for k, v in gates.items():
        assert torch.equal(saved[k], v)
    with pytest.raises(ValueError):
        tiny_model.set_gate_factor(-1)


@torch.no_grad()
def test_gate_factor_semantics_is_tanh_of_scaled_gate(tiny_model, images64):
    """f scales the raw gate (tanh(f g)), not the output (f tanh(g)): compare with edited parameters."""
    tiny_model.set_gate_factor(0.5)
    scaled = tiny_model.get_global_features(images64, PROMPTS[:2])
    tiny_model.set_gate_factor(1.0)
    for layer in tiny_model.cross_attn_layers.values():
        layer.attn_gate.mul_(0.5)
    # tanh(0.5 * g) vs tanh(g') with g' = 0.5 * g stored: the product is rounded at another step
    assert torch.allclose(tiny_model.get_global_features(images64, PROMPTS[:2]), scaled, atol=1e-6)


@pytest.mark.parametrize("use_ffn", [False, True])
@torch.no_grad()
def test_cross_product_equals_one_prompt_path(use_ffn, images64):
    model = make_tiny_model(use_ffn=use_ffn)
    emb = model.encode_text(PROMPTS)
    b, p = images64.shape[0], len(PROMPTS)
    glob = model.get_global_features(images64, emb, cross=True)
    dense = model.get_dense_features(images64, emb, cross=True, chunk_size=4)
    heat = model.get_heatmaps(images64, emb, cross=True, chunk_size=1)
    attn = model.get_attention_heatmaps(images64, emb, cross=True)
    assert glob.shape == (b, p, model.feature_dim)
    assert heat.shape == (b, p, 1, 64, 64) and attn.shape == (b, p, 64, 64)
    # The pairs run in chunks of other batch shapes than one prompt per image, so matrix kernels may
    # round differently: equal up to float32 rounding (attention maps are min-max normalised, which
    # magnifies it, hence their looser bound).
    for j, prompt in enumerate(PROMPTS):
        one = [prompt] * b
        assert torch.allclose(glob[:, j], model.get_global_features(images64, one), atol=1e-5)
        assert torch.allclose(dense[:, j], model.get_dense_features(images64, one), atol=1e-5)
        assert torch.allclose(heat[:, j], model.get_heatmaps(images64, one), atol=1e-6)
        assert torch.allclose(attn[:, j], model.get_attention_heatmaps(images64, one), atol=1e-4)
    # every prompt changes the features differently
    assert not torch.allclose(glob[:, 0], glob[:, 1], atol=1e-4)


@torch.no_grad()
def test_cross_mode_on_the_cpu_chunks_by_token_bytes(tiny_model, images64, monkeypatch):
    """Without chunk_size, a CPU pass holds as many pairs as fit CPU_CHUNK_VALUES tokens x width: a
    number that depends on one image's tokens, not on how many images or prompts share the call."""
    import steervit.model

    tokens = tiny_model.trunk.forward_features(images64[:1])  # (1, 1+N, D): one pair's tokens
    monkeypatch.setattr(steervit.model, "CPU_CHUNK_VALUES", 3 * tokens.numel())
    x = torch.randn(5, *tokens.shape[1:])
    assert tiny_model._pairs_per_chunk(x, None) == tiny_model._pairs_per_chunk(x[:1], None) == 3
    assert tiny_model._pairs_per_chunk(x, 5) == 5
    # 2 images x 3 prompts in passes of 3 pairs: the same operations as chunk_size=3
    assert torch.equal(tiny_model(images64, PROMPTS, cross=True), tiny_model(images64, PROMPTS, cross=True, chunk_size=3))


@torch.no_grad()
def test_any_size_divisible_by_patch(tiny_model):
    x = torch.randn(1, 3, 96, 128)
    assert tiny_model.get_dense_features(x, PROMPTS[:1]).shape == (1, 6 * 8, tiny_model.feature_dim)
    assert tiny_model.get_heatmaps(x, PROMPTS[:1]).shape == (1, 1, 96, 128)
    assert tiny_model.get_attention_heatmaps(x, PROMPTS[:1], interpolate=False).shape == (1, 6, 8)


def test_only_adapter_is_trainable_and_receives_gradients(tiny_model, images64):
    trainable = tiny_model.trainable_parameters()
    assert trainable and all(k.split(".")[0] in {"connector", "cross_attn_layers", "seg_head"} for k in trainable)
    ids = {id(p) for p in trainable.values()}
    assert all(p.requires_grad == (id(p) in ids) for p in tiny_model.parameters())
    tiny_model.train()
    assert not tiny_model.trunk.training and not tiny_model.text_encoder.training
    _, logits = tiny_model(images64, PROMPTS[:2], return_logits=True)
    masks = torch.zeros(2, 64, 64)
    masks[:, 8:24, 8:24] = 1
    soft_cross_entropy(logits, patch_targets(masks, tiny_model.patch_size)).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for k, p in trainable.items())
    assert all(p.grad is None for p in tiny_model.trunk.parameters())
    assert all(p.grad is None for p in tiny_model.text_encoder.parameters())


def test_gates_get_gradient_at_zero_init(images64):
    """A fresh (zero-gate) model must still learn: the gate's gradient is non-zero at g = 0."""
    torch.manual_seed(0)
    trunk = timm.create_model("test_vit", pretrained=False, num_classes=0, img_size=64, dynamic_img_size=True)
    model = SteerViT(SteerViTConfig(trunk="test_vit", image_size=64, text_encoder=str(TINY_ROBERTA)),
                     trunk=trunk, text_encoder=TextEncoder(str(TINY_ROBERTA))).train()
    torch.nn.init.normal_(model.seg_head.weight)
    _, logits = model(images64, PROMPTS[:2], return_logits=True)
    logits.square().mean().backward()
    assert all(layer.attn_gate.grad.abs().item() > 0 for layer in model.cross_attn_layers.values())


@pytest.mark.parametrize("dtype,tol", [(torch.bfloat16, 0.1), (torch.float16, 0.02)])
@torch.no_grad()
def test_low_precision_close_to_fp32(tiny_model, images64, dtype, tol):
    ref_glob = tiny_model.get_global_features(images64, PROMPTS[:2])
    ref_heat = tiny_model.get_heatmaps(images64, PROMPTS[:2])
    tiny_model.to(dtype=dtype)
    glob = tiny_model.get_global_features(images64, PROMPTS[:2])
    heat = tiny_model.get_heatmaps(images64, PROMPTS[:2])
    assert glob.dtype == dtype
    rel = (glob.float() - ref_glob).norm() / ref_glob.norm()
    assert rel < tol
    assert torch.nn.functional.cosine_similarity(heat.flatten(1), ref_heat.flatten(1)).min() > 0.99


def test_text_cache_reuses_encoder_states(tiny_model, monkeypatch):
    encoder = tiny_model.text_encoder
    calls = []
    original = encoder.model.forward
    monkeypatch.setattr(encoder.model, "forward", lambda *a, **k: calls.append(1) or original(*a, **k))
    encoder.clear_cache()
    first = tiny_model.encode_text(PROMPTS)
    assert len(calls) == len(PROMPTS)  # each prompt is encoded on its own
    second = tiny_model.encode_text(list(reversed(PROMPTS)))
    assert len(calls) == len(PROMPTS)  # all three came from the cache
    # The encoder states are the cached ones exactly; the connector then runs on a batch in another
    # row order, where a matrix kernel may round a row differently, hence the tolerance.
    assert torch.allclose(second.tokens[0], first.tokens[2], atol=1e-6)
    encoder.cache_size = 2
    encoder.clear_cache()
    tiny_model.encode_text(PROMPTS)
    assert len(encoder._cache) == 2


def test_text_embedding_save_load_and_drop_encoder(tiny_model, images64, tmp_path):
    emb = tiny_model.encode_text(PROMPTS[:2])
    expected = tiny_model.get_global_features(images64, emb).detach()
    tiny_model.save_text_embedding(emb, tmp_path / "prompts.safetensors")
    tiny_model.drop_text_encoder()
    loaded = tiny_model.load_text_embedding(tmp_path / "prompts.safetensors")
    assert loaded.prompts == PROMPTS[:2]
    assert torch.equal(tiny_model.get_global_features(images64, loaded), expected)
    with pytest.raises(RuntimeError, match="no text encoder"):
        tiny_model.get_global_features(images64, PROMPTS[:2])
    with torch.no_grad():
        tiny_model.connector.mlp[0].bias.add_(1.0)
    with pytest.raises(ValueError, match="other adapter weights"):
        tiny_model.load_text_embedding(tmp_path / "prompts.safetensors")


def test_trainable_parameter_count_matches_reference_formula():
    """Per CA layer at width D: LN 2D + q D*1152 + kv D*2304 + out 1152*D + gate 1 (reference §1)."""
    model = make_tiny_model()
    d, layers = model.feature_dim, len(model.cross_attn_layers)
    per_layer = 2 * d + d * 1152 + d * 2304 + 1152 * d + 1
    t = model.config.text_dim
    expected = layers * per_layer + (t * t + t + t * d + d) + (d + 1)
    assert sum(p.numel() for p in model.trainable_parameters().values()) == expected
    assert 768 * 1152 * 4 + 2 * 768 + 1 == 3_540_481  # the paper's per-layer count at width 768


def test_activation_checkpointing_gives_same_gradients(images64):
    grads = []
    for checkpointing in (False, True):
        model = make_tiny_model().train()
        model.grad_checkpointing = checkpointing
        _, logits = model(images64, PROMPTS[:2], return_logits=True)
        logits.square().mean().backward()
        grads.append({k: p.grad.clone() for k, p in model.trainable_parameters().items()})
    # recomputed activations come from the same operations, but autograd sums the gradient
    # contributions in another order
    for k in grads[0]:
        assert torch.allclose(grads[0][k], grads[1][k], atol=1e-6), k


@torch.no_grad()
def test_precomputed_text_states_and_one_pass_features(tiny_model, images64):
    states, mask = tiny_model.text_encoder.encode(PROMPTS[:2])
    from_states = tiny_model.embed_text_states(states.half(), mask, PROMPTS[:2])  # a fp16 text cache
    glob, dense = tiny_model.get_global_and_dense_features(images64, from_states)
    ref = tiny_model.get_global_features(images64, PROMPTS[:2])
    assert torch.allclose(glob, ref, atol=2e-2)  # the states went through fp16 (3 significant digits)
    assert torch.equal(dense, tiny_model.get_dense_features(images64, from_states))
    with pytest.raises(ValueError, match="width"):
        tiny_model.embed_text_states(torch.zeros(1, 3, 5), torch.ones(1, 3), ["x"])


def test_config_records_resolved_layers(tiny_model):
    assert tiny_model.config.cross_attn_layers == [1, 3, 5]


@torch.no_grad()
def test_gate_factor_zero_runs_the_plain_path_in_every_mode(tiny_model, images64):
    """At gate factor 0 the steered outputs are the plain ones bitwise, also with many prompts per image
    (whose chunked pairs would otherwise run the blocks on other batch shapes)."""
    plain = tiny_model(images64)
    plain_attn = tiny_model.get_attention_heatmaps(images64)
    tiny_model.set_gate_factor(0.0)
    many = tiny_model(images64, PROMPTS, cross=True, chunk_size=4)
    assert many.shape == (2, 3, *plain.shape[1:])
    assert all(torch.equal(many[:, j], plain) for j in range(3))
    attn = tiny_model.get_attention_heatmaps(images64, PROMPTS, cross=True)
    assert all(torch.equal(attn[:, j], plain_attn) for j in range(3))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64, torch.bool])
def test_unnormalised_integer_images_are_refused(tiny_model, dtype):
    images = torch.zeros(1, 3, 64, 64, dtype=dtype)
    with pytest.raises(TypeError, match="get_transforms"):
        tiny_model.get_global_features(images)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_pixels_are_refused(tiny_model, images64, bad):
    images = images64.clone()
    images[1, 0, 3, 3] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        tiny_model.get_global_features(images, PROMPTS[:2])


def test_building_a_model_leaves_the_callers_config_alone():
    config = SteerViTConfig(trunk="test_vit", image_size=64, text_encoder=str(TINY_ROBERTA))
    before = config.to_dict()
    trunk = timm.create_model("test_vit", pretrained=False, num_classes=0, img_size=64, dynamic_img_size=True)
    model = SteerViT(config, trunk=trunk, text_encoder=TextEncoder(str(TINY_ROBERTA)))
    assert config.to_dict() == before and config.text_dim is None
    assert model.config.text_dim == 48 and model.config.cross_attn_layers == [1, 3, 5]
