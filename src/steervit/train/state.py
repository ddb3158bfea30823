"""Training checkpoints: everything needed to continue a run exactly where it stopped.

A checkpoint holds the trainable weights, optimiser and scheduler states, the step, the data
position (epoch and global samples drawn in it), the best validation score so far, the RNG states
and the run config. Files are written atomically (temp file + rename), so a crash mid-write keeps
the previous file, and read with `weights_only=True`, so loading one never runs code.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..io import atomic_path, require_file

FORMAT = "steervit-train-state"
VERSION = 1


def capture_rng() -> dict[str, Any]:
    """Python, numpy and torch (CPU and every GPU) RNG states, as tensors and plain containers."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(_as_tuples(state["python"]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuples(value):
    """`random.setstate` wants the tuples that a round trip through a checkpoint may turn into lists."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def save_state(path: str | Path, state: dict[str, Any]) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, "version": VERSION, **state}, tmp)
    return path


def load_state(path: str | Path) -> dict[str, Any]:
    path = require_file(path, "training checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling and zip errors come in many types
        raise ValueError(f"{path} is not a readable training checkpoint: {err}") from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a steervit training checkpoint")
    if state.get("version", 0) > VERSION:
        raise ValueError(f"{path} has version {state['version']}; this steervit reads up to {VERSION}")
    return state
