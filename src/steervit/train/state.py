"""Training checkpoints: everything needed to continue a run exactly where it stopped.

A checkpoint holds the trainable weights, optimiser and scheduler states, the step, the data
position (epoch and global samples drawn in it), the best validation score so far, the RNG states
and the run config. Files are written atomically (temp file + rename), so a crash mid-write keeps
the previous file, and read with `weights_only=True`, so loading one never runs code. A write that
fails (a full disk) is one `CheckpointWriteError` naming the file; the temp files that a killed write
leaves behind are removed by `remove_stale_temp_files` when the next run starts in the folder.
"""
from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..io import atomic_path, require_file

log = logging.getLogger(__name__)

FORMAT = "steervit-train-state"
VERSION = 1
# What `atomic_path` names its temp files: `.<name>.<random>.tmp` beside the target.
TEMP_PATTERN = ".*.tmp"


class CheckpointWriteError(OSError):
    """A training checkpoint could not be written (disk full, no permission); the previous file is kept."""


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
    """Write `state` to `path` atomically; any failure to write is one clear `CheckpointWriteError`."""
    path = Path(path)
    try:
        # Through a Python file, so that a failed write is an OSError (ENOSPC, ...) we can see: given
        # a path, torch.save's zip writer fails with an opaque RuntimeError of its own.
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            torch.save({"format": FORMAT, "version": VERSION, **state}, f)
    except (OSError, RuntimeError) as err:
        failed = _os_error(err)
        if failed is None:
            raise
        kept = f"the previous {path.name} is kept" if path.exists() else "no previous checkpoint existed"
        raise CheckpointWriteError(f"could not write the training checkpoint {path}: {failed.strerror or failed} "
                                   f"({kept}); once it can be written, continue with --resume") from err
    return path


def _os_error(err: BaseException | None) -> OSError | None:
    """The OSError behind `err`, if any: torch.save, closing its zip after our file's write failed,
    raises a RuntimeError whose context is that OSError."""
    while err is not None and not isinstance(err, OSError):
        err = err.__cause__ or err.__context__
    return err


def remove_stale_temp_files(folder: str | Path) -> list[Path]:
    """Delete the `atomic_path` temp files in `folder` that a killed process left; returns them.

    Only for a folder no other process is writing into (a run folder at the start of its run)."""
    folder = Path(folder)
    stale = [p for p in folder.glob(TEMP_PATTERN) if p.is_file()] if folder.is_dir() else []
    for path in stale:
        log.info("removing %s, left by an interrupted write", path)
        path.unlink(missing_ok=True)
    return stale


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
