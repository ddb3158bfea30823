"""Shared fixtures: the golden checkpoint, tiny random models, and no network ever."""
from __future__ import annotations

import os

# Never touch a model hub from the tests: fail fast instead of retrying for half a minute.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from support import OFFICIAL, TINY_ROBERTA, TRUNK, make_tiny_model  # noqa: E402


def _load_golden():
    from steervit import SteerViT

    return SteerViT.from_pretrained(OFFICIAL, backbone_weights=TRUNK, text_encoder=TINY_ROBERTA)


@pytest.fixture(scope="session")
def golden_model():
    return _load_golden()


@pytest.fixture()
def fresh_golden():
    """A private copy, for tests that change gates or weights."""
    return _load_golden()


@pytest.fixture()
def tiny_model():
    return make_tiny_model()


@pytest.fixture()
def images64():
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
