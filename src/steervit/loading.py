"""Loading a model for use: name or path, offline overrides, device and gate factor in one call.

What every command, the server and the benchmarks need on top of `SteerViT.from_pretrained`, kept
in the library so that none of them depends on the command line.
"""
from __future__ import annotations

from pathlib import Path

import torch


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """`auto` = the GPU when there is one, else the CPU; a clear error for a device that is not here."""
    if isinstance(name, torch.device):
        name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"invalid device {name!r}: {err}") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name} asked for, but CUDA is not available here; use cpu (or auto)")
    return device


def load_model(model: str | Path, *, backbone_weights: str | Path | None = None,
               text_encoder: str | Path | None = None, device: str | torch.device = "auto",
               gate_factor: float = 1.0, dtype: torch.dtype | None = None):
    """A SteerViT in eval mode on `device` at `gate_factor` (its default for every call).

    `model`: a registered name, a published `.pth`, a `save_pretrained` folder or a hub repo. A failed download
    says how to load offline instead."""
    from .model import SteerViT

    target = resolve_device(device)
    try:
        loaded = SteerViT.from_pretrained(model, backbone_weights=backbone_weights, text_encoder=text_encoder,
                                          device=target, dtype=dtype)
    except FileNotFoundError:
        raise
    except OSError as err:
        raise OSError(f"{err}\n(offline: pass backbone weights (--backbone-weights FILE) and a local "
                      "text encoder (--text-encoder DIR))") from err
    loaded.set_gate_factor(gate_factor)
    return loaded.eval()
