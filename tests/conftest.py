"""Shared fixtures: the golden checkpoint, tiny random models, and no network ever."""
from __future__ import annotations

import os

# Never touch a model hub from the tests: fail fast instead of retrying for half a minute.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402

SHARED = Path(os.environ.get("STEERVIT_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
GOLDEN = SHARED / "golden"
OFFICIAL = GOLDEN / "official-tiny" / "steervit_official.pth"
TRUNK = GOLDEN / "official-tiny" / "trunk.safetensors"
TINY_ROBERTA = GOLDEN / "tiny-roberta"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    assert GOLDEN.is_dir(), f"../shared not found at {SHARED}; set STEERVIT_SHARED"
    return SHARED


@pytest.fixture(scope="session")
def golden_model():
    from steervit import SteerViT

    return SteerViT.from_pretrained(OFFICIAL, backbone_weights=TRUNK, text_encoder=TINY_ROBERTA)


@pytest.fixture()
def fresh_golden():
    """A private copy, for tests that change gates or weights."""
    from steervit import SteerViT

    return SteerViT.from_pretrained(OFFICIAL, backbone_weights=TRUNK, text_encoder=TINY_ROBERTA)


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
            layer.attn_gate.fill_(0.5 + 0.2 * i)
            if layer.ff_gate is not None:
                layer.ff_gate.fill_(0.3)
        torch.nn.init.normal_(model.seg_head.weight, std=0.5)
    return model.eval()


@pytest.fixture()
def tiny_model():
    return make_tiny_model()


@pytest.fixture()
def images64():
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
