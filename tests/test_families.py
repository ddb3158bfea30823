"""Every timm ViT family as a trunk, each a tiny random model: it runs through its own modules (the
plain model is its `forward_features` exactly), steers, keeps one dense row per patch, trains only the
adapter, exports or refuses to, and is named. Models that cannot take cross-attention are refused."""
from __future__ import annotations

import copy
from functools import partial

import pytest
import timm
import torch

from steervit import SteerViT, SteerViTConfig, families
from steervit.cli import main
from steervit.export import check_onnx, export_onnx
from steervit.losses import patch_targets, soft_cross_entropy
from steervit.text import TextEncoder
from steervit.train.config import OptimSection
from steervit.train.optim import build_optimizer, trained_parameters
from steervit.trunk import create_trunk
from support import TINY_ROBERTA

PROMPTS = ["the red car", "a small black TV remote on the sofa"]
# (timm model name, family, patch size); every one built tiny: width 32, 4 blocks, 2 heads.
CASES = [
    ("vit_small_patch14_dinov2", "vit", 14),
    ("vit_small_patch14_reg4_dinov2", "vit-registers", 14),
    ("vit_base_patch16_siglip_224", "vit-no-cls", 16),
    ("vit_base_patch16_siglip_224.v2_webli", "vit-no-cls", 16),
    ("vit_base_patch16_224.mae", "vit", 16),
    ("deit_tiny_patch16_224", "vit", 16),
    ("deit_tiny_distilled_patch16_224", "deit-distilled", 16),
    ("eva02_tiny_patch14_224.mim_in22k", "eva", 14),  # rotary embeddings, SwiGLU, q/v biases
    ("vit_base_patch16_rope_mixed_224", "eva", 16),  # one rotary embedding per block
    ("vit_small_patch16_dinov3", "dinov3", 16),  # rotary embeddings, CLS + 4 registers
]
TINY = dict(embed_dim=32, depth=4, num_heads=2)
GRID = (4, 3)  # non-square, so rows and columns cannot be mixed up


@pytest.fixture(scope="module")
def text_encoder():
    return TextEncoder(str(TINY_ROBERTA))


def build(name: str, patch: int, text_encoder: TextEncoder, **sizes) -> SteerViT:
    """A tiny random SteerViT on timm `name`, with non-zero gates and head (so steering shows)."""
    torch.manual_seed(0)
    trunk = timm.create_model(name, pretrained=False, num_classes=0, img_size=4 * patch, dynamic_img_size=True,
                              **{**TINY, **sizes})
    pooling = "cls" if families.family_of(trunk).has_cls else "mean"
    config = SteerViTConfig(trunk=name, image_size=4 * patch, text_encoder=str(TINY_ROBERTA), pooling=pooling,
                            cross_attn_heads=2, cross_attn_head_dim=16)
    model = SteerViT(config, trunk=trunk, text_encoder=text_encoder)
    with torch.no_grad():
        for i, layer in enumerate(model.cross_attn_layers.values()):
            layer.attn_gate.fill_(0.5 + 0.2 * i)
        torch.nn.init.normal_(model.seg_head.weight, std=0.5)
    return model.eval()


@pytest.fixture(scope="module", params=CASES, ids=[name for name, _, _ in CASES])
def case(request, text_encoder):
    """(model, expected family, images); tests that change the model work on a copy."""
    name, family, patch = request.param
    images = torch.randn(2, 3, GRID[0] * patch, GRID[1] * patch, generator=torch.Generator().manual_seed(1))
    return build(name, patch, text_encoder), family, images


@torch.no_grad()
def test_without_text_the_model_is_the_trunk(case):
    model, _, images = case
    # the trunk's own modules in forward_features' order: exactly equal
    assert torch.equal(model(images), model.trunk.forward_features(images))


@torch.no_grad()
def test_steering_changes_the_output_and_gate_factor_zero_is_plain(case):
    model, _, images = case
    plain = model.trunk.forward_features(images)
    steered = model(images, PROMPTS)
    assert (steered - plain).abs().max() > 1e-3
    assert torch.equal(model(images, PROMPTS, gate_factor=0.0), plain)
    assert torch.equal(model(images, PROMPTS, cross=True, gate_factor=0.0)[:, 1], plain)
    # the same block loop with the same per-block arguments: intermediates end where forward does
    final, _ = model.forward_intermediates(images, PROMPTS, return_final=True)
    assert torch.equal(final, steered)
    # cross mode runs the pairs on other batch shapes, where matrix kernels may round differently
    both = model(images, PROMPTS, cross=True, chunk_size=3)
    assert torch.allclose(both[:, 1], model(images, [PROMPTS[1]] * 2), atol=1e-5)


@torch.no_grad()
def test_dense_features_have_one_row_per_patch(case):
    model, _, images = case
    tokens = model(images, PROMPTS)
    glob, dense = model.get_global_and_dense_features(images, PROMPTS)
    assert dense.shape == (2, GRID[0] * GRID[1], model.feature_dim)  # every prefix token removed
    assert torch.equal(dense, tokens[:, tokens.shape[1] - GRID[0] * GRID[1]:])
    if model.family.has_cls:
        assert torch.equal(glob, tokens[:, 0])
    else:  # mean pooling inside the model vs here: another reduction order, so float rounding differs
        assert torch.allclose(glob, dense.mean(1), atol=1e-6)
    assert model.get_heatmaps(images, PROMPTS).shape == (2, 1, *images.shape[-2:])


def _timm_attention_probs(block, x, kwargs):
    """The probabilities timm's own unfused attention path computes, caught as they leave softmax."""
    block = copy.deepcopy(block)
    block.attn.fused_attn = False
    caught = []
    block.attn.attn_drop.register_forward_hook(lambda module, inputs, output: caught.append(output))
    block(x, **kwargs)
    return caught[0]


@torch.no_grad()
def test_attention_probabilities_are_timms_and_cls_less_trunks_refuse_heatmaps(case):
    model, _, images = case
    x, block_kwargs = families.embed(model.trunk, images)
    x = model.trunk.blocks[0](x, **block_kwargs[0])
    probs = families.self_attention_probs(model.trunk.blocks[1], x, **block_kwargs[1])
    # the same operations as timm's unfused path, in the same order (rotary embeddings included)
    assert torch.equal(probs, _timm_attention_probs(model.trunk.blocks[1], x, block_kwargs[1]))
    if model.family.has_cls:
        maps = model.get_attention_heatmaps(images, PROMPTS, interpolate=False)
        assert maps.shape == (2, *GRID)
    else:
        with pytest.raises(ValueError, match="has no CLS token"):
            model.get_attention_heatmaps(images, PROMPTS)


def test_training_steps_change_only_the_adapter(case):
    model, _, images = case
    model = copy.deepcopy(model).train()
    frozen = {k: v.clone() for k, v in {**model.trunk.state_dict(), **model.text_encoder.state_dict()}.items()}
    masks = torch.zeros(2, *images.shape[-2:])
    masks[:, :20, :20] = 1
    targets = patch_targets(masks, model.patch_size)

    def loss():
        return soft_cross_entropy(model(images, PROMPTS, return_logits=True)[1], targets)

    grads = []
    for checkpointing in (False, True):  # checkpointed blocks get their keyword arguments (rope) too
        model.grad_checkpointing = checkpointing
        model.zero_grad()
        loss().backward()
        grads.append({k: p.grad.clone() for k, p in trained_parameters(model).items()})
    # recomputed activations come from the same operations; autograd sums contributions in another order
    assert all(torch.allclose(grads[0][k], grads[1][k], atol=1e-6) for k in grads[0])
    before = {k: p.detach().clone() for k, p in model.trainable_parameters().items()}
    optimizer = build_optimizer(model, OptimSection(lr=1e-2))
    for _ in range(3):
        optimizer.zero_grad()
        value = loss()
        value.backward()
        optimizer.step()
        assert torch.isfinite(value)
    after = model.trainable_parameters()
    assert all(not torch.equal(after[k], before[k]) for k in trained_parameters(model))
    assert all(torch.equal(v, frozen[k]) for k, v in {**model.trunk.state_dict(),
                                                      **model.text_encoder.state_dict()}.items())


def test_family_is_named(case):
    model, family, _ = case
    assert model.family.name == family
    assert model.family.description == families.FAMILIES[family]
    assert model.family.num_prefix_tokens == model.num_prefix_tokens == model.trunk.num_prefix_tokens
    assert model.family.has_cls == (model.trunk.cls_token is not None)


# The export's forward, per family that it runs (the plain "vit" family: tests/test_export.py). The
# exporter takes seconds per graph, so one model per family, two blocks deep.
@pytest.mark.slow
@pytest.mark.parametrize("name,patch", [("vit_small_patch14_reg4_dinov2", 14), ("vit_base_patch16_siglip_224", 16),
                                        ("deit_tiny_distilled_patch16_224", 16)],
                         ids=["vit-registers", "vit-no-cls", "deit-distilled"])
def test_export_matches_onnxruntime(name, patch, text_encoder, tmp_path):
    pytest.importorskip("onnxruntime")
    model = build(name, patch, text_encoder, depth=2)
    path = export_onnx(model, tmp_path / "m.onnx", prompt=PROMPTS[0])
    x = torch.randn(2, 3, 4 * patch, 4 * patch, generator=torch.Generator().manual_seed(2))
    diffs = check_onnx(model, path, x, PROMPTS[0])
    # onnxruntime's kernels round differently from PyTorch's: equal to float32 rounding
    assert max(diffs.values()) <= 1e-4, diffs


@pytest.mark.parametrize("name,patch,family", [("eva02_tiny_patch14_224.mim_in22k", 14, "eva"),
                                               ("vit_small_patch16_dinov3", 16, "dinov3")])
def test_export_refuses_rotary_families(name, patch, family, text_encoder, tmp_path):
    model = build(name, patch, text_encoder, depth=2)
    with pytest.raises(ValueError, match=f"does not support the {family} trunk family.*rotary"):
        export_onnx(model, tmp_path / "m.onnx", prompt=PROMPTS[0])
    assert not (tmp_path / "m.onnx").exists()


def test_export_refuses_distilled_deit_at_another_size(text_encoder, tmp_path):
    model = build("deit_tiny_distilled_patch16_224", 16, text_encoder, depth=2)
    with pytest.raises(ValueError, match="exports at its own image size only, not 96.*image_size=64"):
        export_onnx(model, tmp_path / "m.onnx", prompt=PROMPTS[0], image_size=96)


def test_cls_pooling_on_a_cls_less_trunk_is_refused(text_encoder):
    trunk = timm.create_model("vit_base_patch16_siglip_224", pretrained=False, num_classes=0, img_size=64, **TINY)
    config = SteerViTConfig(trunk="vit_base_patch16_siglip_224", image_size=64, text_encoder=str(TINY_ROBERTA))
    with pytest.raises(ValueError, match="vit-no-cls trunk .* has no CLS token to pool: use pooling='mean'"):
        SteerViT(config, trunk=trunk, text_encoder=text_encoder)


def test_rope_blocks_without_their_arguments_are_refused(text_encoder):
    model = build("vit_small_patch16_dinov3", 16, text_encoder)
    x, _ = families.embed(model.trunk, torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match="take \\('rope',\\)"):
        model.run_blocks(x, None)


def test_models_without_a_token_sequence_are_refused(text_encoder):
    with pytest.raises(ValueError, match="'resnet18' cannot take cross-attention: it is not a ViT"):
        create_trunk("resnet18", 64, pretrained=False)
    config = SteerViTConfig(trunk="resnet18", image_size=64, text_encoder=str(TINY_ROBERTA))
    resnet = timm.create_model("resnet18", pretrained=False, num_classes=0)
    with pytest.raises(ValueError, match=r"'resnet18' \(ResNet\) cannot take cross-attention"):
        SteerViT(config, trunk=resnet, text_encoder=text_encoder)
    # a hybrid ViT: tokens come from a CNN stem, not one per image patch
    from timm.layers import HybridEmbed
    from timm.models.vision_transformer import VisionTransformer

    hybrid = VisionTransformer(img_size=32, patch_size=1, num_classes=0, **TINY,
                               embed_layer=partial(HybridEmbed, backbone=torch.nn.Conv2d(3, 8, 8, 8)))
    with pytest.raises(ValueError, match="HybridEmbed .* cannot take cross-attention"):
        families.family_of(hybrid)


def test_info_names_the_family(text_encoder, tmp_path, capsys):
    """`steervit info` on a saved model whose trunk is rebuilt from its name (full size, random)."""
    from safetensors.torch import save_file

    name = "eva02_tiny_patch14_224.mim_in22k"
    trunk = create_trunk(name, 56, pretrained=False)
    save_file(trunk.state_dict(), str(tmp_path / "trunk.safetensors"))
    config = SteerViTConfig(trunk=name, image_size=56, text_encoder=str(TINY_ROBERTA), cross_attn_heads=2,
                            cross_attn_head_dim=16)
    SteerViT(config, trunk=trunk, text_encoder=text_encoder).save_pretrained(tmp_path / "model")
    assert main(["info", str(tmp_path / "model"), "--backbone-weights", str(tmp_path / "trunk.safetensors"),
                 "--text-encoder", str(TINY_ROBERTA)]) == 0
    assert f"  family eva: {families.FAMILIES['eva']}" in capsys.readouterr().out
