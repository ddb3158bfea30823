"""Cross-attention maps: which prompt tokens each image token reads, as the steered forward reads them."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from support import make_tiny_model
from test_parity import IMAGES, TEXTS

from steervit.cross_attention import CrossAttention


def output_from_probs(layer: CrossAttention, probs: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """The attention output rebuilt by hand from given probabilities and the layer's values."""
    b, heads, n, _ = probs.shape
    inner = layer.heads * layer.head_dim
    v = F.linear(text, layer.to_kv.weight[inner:]).view(b, -1, heads, layer.head_dim).transpose(1, 2)
    return layer.to_out((probs @ v).transpose(1, 2).reshape(b, n, inner))


@pytest.mark.parametrize("length", [5, 80])  # below and above head_dim: forward takes either path
def test_attention_probs_rebuild_the_forward_output(length):
    torch.manual_seed(0)
    layer = CrossAttention(dim=48, heads=4, head_dim=12)
    x, text = torch.randn(2, 20, 48), torch.randn(2, length, 48)
    mask = torch.ones(2, length, dtype=torch.bool)
    mask[1, 3:] = False
    probs = layer.attention_probs(x, text, mask)
    assert probs.shape == (2, 4, 20, length)
    assert (probs[1, :, :, 3:] == 0).all()
    # rebuilt with plain matmuls vs SDPA / the factorised association: float32 rounding differs
    assert torch.allclose(output_from_probs(layer, probs, text), layer.forward_direct(x, text, mask), atol=1e-5)
    assert torch.allclose(output_from_probs(layer, probs, text), layer(x, text, mask), atol=1e-5)


@pytest.fixture(scope="module")
def maps_and_states(golden_model):
    with torch.no_grad():
        text = golden_model.encode_text(TEXTS)
        maps = golden_model.get_cross_attention_maps(IMAGES, TEXTS)
        states = golden_model.forward_intermediates(IMAGES, TEXTS)  # steered block outputs, not normed
    return text, maps, states


def test_shapes_keys_padding_and_rows(golden_model, maps_and_states):
    text, maps, _ = maps_and_states
    # keyed by insertion index (the block each layer precedes), in insertion_points() order
    assert list(maps) == [1, 3, 5]
    assert [name for name, _ in golden_model.insertion_points()] == [f"before block {i}" for i in maps]
    n_tokens = golden_model.num_prefix_tokens + (160 // 16) ** 2
    lengths = text.mask.sum(1)
    assert len(set(lengths.tolist())) == 3  # the prompts differ in length, so two of them are padded
    for probs in maps.values():
        assert probs.shape == (3, 16, n_tokens, text.mask.shape[1])
        assert (probs.masked_select(~text.mask[:, None, None, :]) == 0).all()  # exactly 0, not just small
        # a softmax in float32: each row sums to 1 up to rounding
        assert torch.allclose(probs.sum(-1), torch.ones(()), atol=1e-5)
    patches = golden_model.drop_prefix_rows(maps)
    assert all(torch.equal(patches[k], maps[k][:, :, 1:]) for k in maps)


def test_maps_are_what_the_steered_forward_uses(golden_model, maps_and_states):
    text, maps, states = maps_and_states
    for i, probs in maps.items():
        layer = golden_model.cross_attn_layers[str(i)].cross_attn
        x_in = states[i - 1]  # what the layer before block i receives in forward
        # the same operations on the same tokens as the recording pass: identical
        assert torch.equal(probs, layer.attention_probs(x_in, text.tokens, text.mask))
        with torch.no_grad():
            rebuilt = output_from_probs(layer, probs, text.tokens)
            # plain matmuls vs SDPA: float32 rounding differs
            assert torch.allclose(rebuilt, layer.forward_direct(x_in, text.tokens, text.mask), atol=1e-5)
    # the prompt moves the later layers' maps: the first layer's input is the plain trunk's, the others' not
    plain_states = golden_model.forward_intermediates(IMAGES)
    layer3 = golden_model.cross_attn_layers["3"].cross_attn
    assert (maps[3] - layer3.attention_probs(plain_states[2], text.tokens, text.mask)).abs().max() > 1e-4


@torch.no_grad()
def test_layer_subset_text_embedding_and_bad_arguments(golden_model, maps_and_states):
    text, maps, _ = maps_and_states
    only = golden_model.get_cross_attention_maps(IMAGES, text, layers=[3])  # a TextEmbedding works like strings
    assert list(only) == [3] and torch.equal(only[3], maps[3])
    with pytest.raises(ValueError, match=r"no cross-attention layer at \[2\].*\[1, 3, 5\]"):
        golden_model.get_cross_attention_maps(IMAGES, TEXTS, layers=[2, 3])
    with pytest.raises(ValueError, match="need prompts"):
        golden_model.get_cross_attention_maps(IMAGES, None)
    with pytest.raises(ValueError, match="one prompt per image"):
        golden_model.get_cross_attention_maps(IMAGES, TEXTS[:2])


@torch.no_grad()
def test_gate_factor_zero_reads_the_plain_trunks_tokens(golden_model, maps_and_states):
    """Documented behaviour: at factor 0 the layers change nothing, and the maps are what each layer
    would read from the plain trunk's tokens; the first layer's map never depends on the factor."""
    text, maps, _ = maps_and_states
    closed = golden_model.get_cross_attention_maps(IMAGES, TEXTS, gate_factor=0.0)
    assert golden_model.gate_factor == 1.0  # per call: the model's default is untouched
    plain_states = golden_model.forward_intermediates(IMAGES)
    for i, probs in closed.items():
        layer = golden_model.cross_attn_layers[str(i)].cross_attn
        assert torch.equal(probs, layer.attention_probs(plain_states[i - 1], text.tokens, text.mask))
    assert torch.equal(closed[1], maps[1])
    assert not torch.allclose(closed[5], maps[5], atol=1e-4)


@torch.no_grad()
def test_late_fusion_maps_read_the_trunks_last_tokens(images64):
    model = make_tiny_model(fusion="late")
    prompts = ["the cat", "a dog on a sofa"]
    text = model.encode_text(prompts)
    maps = model.get_cross_attention_maps(images64, prompts)
    assert list(maps) == [0, 1, 2]
    last = model.forward_intermediates(images64)[-1]  # late fusion: the blocks are the plain trunk's
    first = model.cross_attn_layers["0"].cross_attn
    assert torch.equal(maps[0], first.attention_probs(last, text.tokens, text.mask))
    assert maps[2].shape == (2, 16, 1 + 16, text.mask.shape[1])
