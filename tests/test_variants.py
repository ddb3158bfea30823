"""Design-study variants: each builds, trains, and changes only what it should."""
from __future__ import annotations

import pytest
import torch

from support import make_tiny_model
from steervit.losses import patch_targets, pointing_targets, soft_cross_entropy

PROMPTS = ["the red car", "zebra"]
VARIANTS = [
    {},
    {"fusion": "late"},
    {"gate": "none"},
    {"gate": "sigmoid"},
    {"gate": "tanh_normal"},
    {"connector": "linear"},
    {"use_ffn": True},
    {"cross_attn_layers": "early"},
    {"cross_attn_layers": "late"},
    {"cross_attn_layers": "middle"},
]


def train_steps(model, images, steps=3):
    model.train()
    opt = torch.optim.AdamW(model.trainable_parameters().values(), lr=1e-2)
    masks = torch.zeros(images.shape[0], 64, 64)
    masks[:, 8:30, 20:50] = 1
    targets = patch_targets(masks, model.patch_size)
    losses = []
    for _ in range(steps):
        _, logits = model(images, PROMPTS, return_logits=True)
        loss = soft_cross_entropy(logits, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(f"{k}={v[k]}" for k in v) or "default")
def test_variant_trains_and_leaves_trunk_frozen(variant, images64):
    model = make_tiny_model(**variant)
    trunk_before = {k: v.clone() for k, v in model.trunk.state_dict().items()}
    adapter_before = {k: v.clone() for k, v in model.adapter_state_dict().items()}
    losses = train_steps(model, images64)
    assert losses[-1] < losses[0]
    assert all(torch.equal(v, model.trunk.state_dict()[k]) for k, v in trunk_before.items())
    changed = [k for k, v in model.adapter_state_dict().items() if not torch.equal(v, adapter_before[k])]
    assert any(k.startswith("cross_attn_layers") for k in changed) and any(k.startswith("connector") for k in changed)


def test_late_fusion_leaves_every_block_output_untouched(images64):
    model = make_tiny_model(fusion="late")
    outputs = {}
    hooks = [blk.register_forward_hook(lambda m, i, o, n=n: outputs.setdefault(n, []).append(o.detach()))
             for n, blk in enumerate(model.trunk.blocks)]
    with torch.no_grad():
        steered = model(images64, PROMPTS)
        plain = model(images64)
    for h in hooks:
        h.remove()
    assert all(torch.equal(a, b) for a, b in outputs.values())
    assert not torch.allclose(steered, plain)
    assert len(model.cross_attn_layers) == len(model.trunk.blocks) // 2
    assert model._first_steered_block() == len(model.trunk.blocks)


def test_gate_kinds():
    assert make_tiny_model(gate="none").cross_attn_layers["1"].attn_gate is None
    assert not any("gate" in k for k in make_tiny_model(gate="none").trainable_parameters())
    sig = make_tiny_model(gate="sigmoid")
    assert all(layer.gate_kind == "sigmoid" for layer in sig.cross_attn_layers.values())


@pytest.mark.parametrize("gate", ["none", "sigmoid", "tanh_normal"])
@torch.no_grad()
def test_gate_factor_zero_is_trunk_for_every_gate(gate, images64):
    model = make_tiny_model(gate=gate)
    model.set_gate_factor(0.0)
    assert torch.equal(model(images64, PROMPTS), model.trunk.forward_features(images64))


def test_placement_presets_resolve():
    from steervit import SteerViTConfig

    assert SteerViTConfig(cross_attn_layers="early").resolve_cross_attn_layers(12) == [0, 1, 2, 3, 4, 5]
    assert SteerViTConfig(cross_attn_layers="late").resolve_cross_attn_layers(12) == [6, 7, 8, 9, 10, 11]
    assert SteerViTConfig(cross_attn_layers="middle").resolve_cross_attn_layers(12) == [3, 4, 5, 6, 7, 8]
    assert SteerViTConfig().resolve_cross_attn_layers(12) == [1, 3, 5, 7, 9, 11]
    with pytest.raises(ValueError):
        SteerViTConfig(cross_attn_layers="sideways")
    with pytest.raises(ValueError):
        SteerViTConfig(gate="relu")


def test_variant_is_saved_and_loading_into_another_variant_fails(tmp_path):
    late = make_tiny_model(fusion="late")
    late.save_pretrained(tmp_path / "late")
    early = make_tiny_model()
    with pytest.raises(ValueError, match="another model variant.*fusion"):
        early.load_adapter(tmp_path / "late")
    other = make_tiny_model(fusion="late", seed=5)
    other.load_adapter(tmp_path / "late")
    assert all(torch.equal(v, late.adapter_state_dict()[k]) for k, v in other.adapter_state_dict().items())


def test_pointing_targets_sum_to_one_and_peak_at_box_centre():
    masks = torch.zeros(2, 64, 64)
    masks[0, 16:48, 0:32] = 1  # box centre (32, 16) px -> between patch rows 3/4, column 1/2 edge
    masks[1, 40:48, 48:56] = 1  # one whole patch: (5, 6)
    t = pointing_targets(masks, patch_size=8)
    assert torch.allclose(t.sum(1), torch.ones(2))
    grid = t[1].view(8, 8)
    assert divmod(int(grid.argmax()), 8) == (5, 6)
    top = set(torch.topk(t[0], 4).indices.tolist())
    assert top == {3 * 8 + 1, 3 * 8 + 2, 4 * 8 + 1, 4 * 8 + 2}
    assert torch.equal(pointing_targets(torch.zeros(1, 64, 64), 8), torch.zeros(1, 64))
