"""Paths to the golden files (kept in tests/golden) and a builder for tiny random models, imported by tests."""
from __future__ import annotations

import os
from pathlib import Path

import timm
import torch

# The golden files travel with the repository, so a plain clone runs its tests. Where the project's
# shared folder sits beside the checkout (as in CI), test_golden_copies checks the copies still match.
GOLDEN = Path(__file__).resolve().parent / "golden"
SHARED = Path(os.environ.get("STEERVIT_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
OFFICIAL = GOLDEN / "official-tiny" / "steervit_official.pth"
TRUNK = GOLDEN / "official-tiny" / "trunk.safetensors"
TINY_ROBERTA = GOLDEN / "tiny-roberta"


def make_tiny_model(trunk_name: str = "test_vit", image_size: int = 64, seed: int = 0, **config_kwargs):
    """A random tiny SteerViT (timm test trunk + the tiny random RoBERTa) with non-zero gates."""
    from steervit import SteerViT, SteerViTConfig
    from steervit.text import TextEncoder

    torch.manual_seed(seed)
    trunk = timm.create_model(trunk_name, pretrained=False, num_classes=0, img_size=image_size,
                              dynamic_img_size=True)
    config = SteerViTConfig(trunk=trunk_name, image_size=image_size, text_encoder=str(TINY_ROBERTA),
                            **config_kwargs)
    model = SteerViT(config, trunk=trunk, text_encoder=TextEncoder(str(TINY_ROBERTA)))
    with torch.no_grad():
        for i, layer in enumerate(model.cross_attn_layers.values()):
            if layer.attn_gate is not None:
                layer.attn_gate.fill_(0.5 + 0.2 * i)
            if layer.ff_gate is not None:
                layer.ff_gate.fill_(0.3)
        torch.nn.init.normal_(model.seg_head.weight, std=0.5)
    return model.eval()
