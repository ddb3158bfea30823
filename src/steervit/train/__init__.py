"""Training the SteerViT adapter: config, optimiser, schedule, text cache, trainer, distributed runs.

See docs/training.md. Entry points: `steervit train`, `steervit cache-text`, `python -m steervit.train`
(for torchrun), and in Python `Trainer(load_config(...)).fit()`.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__all__ = ["Trainer", "NonFiniteLossError", "NoUsableSampleError", "build_model", "load_config", "TextCache",
           "build_text_cache", "plot_curves", "read_metrics"]
_WHERE = {"Trainer": "trainer", "NonFiniteLossError": "trainer", "NoUsableSampleError": "trainer",
          "build_model": "trainer",
          "load_config": "config", "TextCache": "text_cache", "build_text_cache": "text_cache",
          "plot_curves": "metrics", "read_metrics": "metrics"}

if TYPE_CHECKING:  # pragma: no cover
    from .config import load_config
    from .metrics import plot_curves, read_metrics
    from .text_cache import TextCache, build_text_cache
    from .trainer import NonFiniteLossError, NoUsableSampleError, Trainer, build_model


def __getattr__(name: str):  # lazy, so `steervit --help` does not import torch through here
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module 'steervit.train' has no attribute {name!r}")
