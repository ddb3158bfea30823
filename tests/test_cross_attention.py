"""The two forms of cross-attention compute the same function, values and gradients."""
from __future__ import annotations

import pytest
import torch

from steervit.cross_attention import CrossAttention, GatedCrossAttention


@pytest.mark.parametrize("length", [1, 7, 80])
def test_factorised_equals_direct(length):
    torch.manual_seed(0)
    layer = CrossAttention(dim=48, heads=4, head_dim=12)
    x = torch.randn(3, 20, 48)
    text = torch.randn(3, length, 48)
    mask = torch.ones(3, length, dtype=torch.bool)
    mask[1, length // 2 + 1:] = False  # padding in one row
    mask[2, 1:] = False  # only one real token
    direct = layer.forward_direct(x, text, mask)
    fact = layer.forward_factorised(x, text, mask)
    # algebraically equal, but the products are associated differently: float32 rounding differs
    assert torch.allclose(direct, fact, atol=1e-5)
    g_direct = torch.autograd.grad(direct.square().sum(), list(layer.parameters()))
    g_fact = torch.autograd.grad(fact.square().sum(), list(layer.parameters()))
    for a, b in zip(g_direct, g_fact):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)


def test_padding_tokens_are_ignored():
    torch.manual_seed(0)
    layer = CrossAttention(dim=16, heads=2, head_dim=8)
    x, text = torch.randn(1, 5, 16), torch.randn(1, 4, 16)
    mask = torch.tensor([[True, True, False, False]])
    noisy = text.clone()
    noisy[0, 2:] = 1e3
    # masked tokens get probability exactly 0, but the value tensors differ, so the kernels' sums can round differently
    for forward in (layer.forward_direct, layer.forward_factorised):
        assert torch.allclose(forward(x, text, mask), forward(x, noisy, mask), atol=1e-6)


def test_zero_gate_is_identity_and_factor_zero_skips():
    layer = GatedCrossAttention(dim=16, heads=2, head_dim=8, use_ffn=True)
    x, text, mask = torch.randn(2, 5, 16), torch.randn(2, 3, 16), torch.ones(2, 3, dtype=torch.bool)
    assert torch.equal(layer(x, text, mask), x)
    with torch.no_grad():
        layer.attn_gate.fill_(1.0)
        layer.ff_gate.fill_(1.0)
    assert not torch.allclose(layer(x, text, mask), x)
    layer.gate_factor = 0.0
    assert torch.equal(layer(x, text, mask), x)


@pytest.mark.parametrize("length", [3, 80])  # the factorised form (L < head_dim) and the textbook one
def test_prompt_keys_computed_once_serve_every_row_that_reads_the_prompt(length):
    """Many prompts per image compute each prompt's keys once and pick rows: the same as passing
    each row its own copy of the prompt."""
    torch.manual_seed(0)
    layer = GatedCrossAttention(dim=48, heads=4, head_dim=12, use_ffn=True)
    with torch.no_grad():
        layer.attn_gate.fill_(0.7)
        layer.ff_gate.fill_(0.3)
    text = torch.randn(3, length, 48)
    mask = torch.ones(3, length, dtype=torch.bool)
    mask[1, 1:] = False  # a padded prompt
    rows = torch.tensor([2, 0, 1, 1, 2])
    x = torch.randn(len(rows), 20, 48)
    keys = layer.cross_attn.prompt_keys(text, mask)
    assert keys.factorised is (length < 12)
    # the same operations on the same numbers, except that the keys' matmul runs once over P
    # prompts rather than over the 5 rows: equal up to float32 rounding
    assert torch.allclose(layer(x, keys.select(rows)), layer(x, text[rows], mask[rows]), atol=1e-6)
