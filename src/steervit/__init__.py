"""steervit: make pretrained Vision Transformers steerable with natural language.

The public names are imported lazily, so `steervit --help` does not pay for torch and timm.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["SteerViT", "SteerViTConfig", "TextEmbedding", "TextEncoder"]
_WHERE = {"SteerViT": "model", "SteerViTConfig": "config", "TextEmbedding": "text", "TextEncoder": "text"}

if TYPE_CHECKING:  # pragma: no cover
    from .config import SteerViTConfig
    from .model import SteerViT
    from .text import TextEmbedding, TextEncoder


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module 'steervit' has no attribute {name!r}")
