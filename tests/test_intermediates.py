"""forward_intermediates and the one block loop: where cross-attention runs, for both fusions."""
from __future__ import annotations

import pytest
import torch

from support import make_tiny_model

PROMPTS = ["the red car", "a small black TV remote on the sofa"]


def _plain_trunk_states(model, images):
    """The timm trunk alone, block by block, through its own forward hooks."""
    states = []
    hooks = [b.register_forward_hook(lambda m, i, o: states.append(o.detach())) for b in model.trunk.blocks]
    model.trunk.forward_features(images)
    for h in hooks:
        h.remove()
    return states


@torch.no_grad()
def test_early_fusion_intermediates_end_where_forward_does(images64):
    model = make_tiny_model()
    states = model.forward_intermediates(images64, PROMPTS)
    assert len(states) == len(model.trunk.blocks)
    assert all(s.shape == (2, 1 + 16, model.feature_dim) for s in states)
    # the same operations in the same order as forward: exactly equal
    assert torch.equal(model.trunk.norm(states[-1]), model(images64, PROMPTS))
    plain = _plain_trunk_states(model, images64)
    first = min(model.early_layers)
    for i in range(first):  # before the first cross-attention nothing depends on the prompt
        assert torch.equal(states[i], plain[i])
    assert not torch.allclose(states[first], plain[first])


@torch.no_grad()
def test_late_fusion_leaves_every_block_state_plain(images64):
    model = make_tiny_model(fusion="late")
    states = model.forward_intermediates(images64, PROMPTS)
    plain = _plain_trunk_states(model, images64)
    assert len(states) == len(plain)
    assert all(torch.equal(s, p) for s, p in zip(states, plain))
    # the steering happens after the trunk: forward differs from the normed last block state
    assert not torch.allclose(model.trunk.norm(states[-1]), model(images64, PROMPTS))


@torch.no_grad()
def test_intermediate_indices_and_norm(images64):
    model = make_tiny_model()
    every = model.forward_intermediates(images64, PROMPTS)
    last_two = model.forward_intermediates(images64, PROMPTS, indices=2)
    picked = model.forward_intermediates(images64, PROMPTS, indices=[0, -1], norm=True)
    assert all(torch.equal(a, b) for a, b in zip(last_two, every[-2:]))
    assert torch.equal(picked[0], model.trunk.norm(every[0])) and torch.equal(picked[1], model.trunk.norm(every[-1]))
    with pytest.raises(ValueError, match="out of range"):
        model.forward_intermediates(images64, PROMPTS, indices=[99])


@torch.no_grad()
def test_gate_factor_for_one_call_leaves_the_model_default(images64):
    model = make_tiny_model()
    steered = model.get_global_features(images64, PROMPTS)
    half = model.get_global_features(images64, PROMPTS, gate_factor=0.5)
    assert model.gate_factor == 1.0
    model.set_gate_factor(0.5)
    assert torch.equal(model.get_global_features(images64, PROMPTS), half)
    assert torch.equal(model.get_global_features(images64, PROMPTS, gate_factor=1.0), steered)
    assert torch.equal(model.get_global_features(images64, PROMPTS, gate_factor=0), model.get_global_features(images64))


@pytest.mark.parametrize("bad", [float("inf"), float("nan"), -1.0])
def test_gate_factor_must_be_finite_and_non_negative(images64, bad):
    model = make_tiny_model()
    with pytest.raises(ValueError, match="finite number >= 0"):
        model.set_gate_factor(bad)
    with pytest.raises(ValueError, match="finite number >= 0"):
        model.get_heatmaps(images64, PROMPTS, gate_factor=bad)


def test_insertion_points_are_named_one_way():
    early = make_tiny_model()
    late = make_tiny_model(fusion="late")
    assert [name for name, _ in early.insertion_points()] == [f"before block {i}" for i in early.config.cross_attn_layers]
    k = len(late.late_layers)
    assert [name for name, _ in late.insertion_points()] == [f"after the trunk, {j} of {k}" for j in range(1, k + 1)]


def test_using_gate_factor_restores_the_default_also_on_error(images64):
    model = make_tiny_model()
    model.set_gate_factor(0.7)
    with model.using_gate_factor(0.0):
        assert model.gate_factor == 0.0
    assert model.gate_factor == 0.7
    with pytest.raises(RuntimeError), model.using_gate_factor(0.2):
        raise RuntimeError("inside")
    assert model.gate_factor == 0.7 and all(layer.gate_factor == 0.7 for _, layer in model.insertion_points())
