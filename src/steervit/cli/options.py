"""What the `steervit` commands share: argument types, the model options, output checks, skips.

Errors a user can fix print one line, `steervit: error: ...`, and exit with `EXIT_ERROR` (2),
checked before any model is loaded where they can be (inputs, output paths). Commands that take
many images skip an image they cannot use with one line on stderr (`steervit: skipped: ...`), go on
with the others, end with `steervit: 2 of 3 images done, 1 skipped` and exit with `EXIT_SKIPPED` (1).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from ..pretrained import DEFAULT_MODEL  # the bundled offline model: used when no model is named

EXIT_ERROR = 2  # usage errors and errors a user can fix: nothing was done
EXIT_SKIPPED = 1  # the command finished, but skipped some inputs (each named on stderr)
DEFAULT_DEVICE = "auto"  # the GPU when there is one, else the CPU: every command
DEFAULT_WORKERS = 2  # image-loading processes: every command that reads image sets
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


# ------------------------------------------------------------------------------ argument types
def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return value


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None


def positive_float(text: str) -> float:
    value = _number(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (gate factors: inf would make every gate exactly 1 or NaN)."""
    value = _number(text)
    if not (math.isfinite(value) and value >= 0.0):  # also rejects nan and inf
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def unit_interval(text: str) -> float:
    """A number in [0, 1] (opacities)."""
    value = _number(text)
    if not 0.0 <= value <= 1.0:  # also rejects nan and inf
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def gate_factor_list(text: str) -> list[float]:
    """Comma-separated gate factors, so that the option cannot swallow KEY=VALUE overrides after it."""
    return [non_negative_float(t) for t in text.split(",") if t.strip()]


# ------------------------------------------------------------------------------ shared options
def add_device_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default=DEFAULT_DEVICE,
                        help="torch device: auto (the GPU when there is one), cpu, cuda, cuda:1, ... (default: auto)")


def add_loader_options(parser: argparse.ArgumentParser, batch_size: int = 32) -> None:
    parser.add_argument("--batch-size", type=positive_int, default=batch_size, metavar="N",
                        help=f"images per forward pass (default: {batch_size})")
    parser.add_argument("--workers", type=non_negative_int, default=DEFAULT_WORKERS, metavar="N",
                        help=f"image-loading processes (default: {DEFAULT_WORKERS})")


def add_model_options(parser: argparse.ArgumentParser, *, positional: bool = False) -> None:
    """The options every model-loading command shares."""
    model_help = ("a registered name (steervit_s14_minilm_offline, steervit_dinov2_base, ...), a published .pth "
                  "checkpoint, a directory written by save_pretrained / `steervit convert`, or a hub repo "
                  "(org/repo, hf-hub:org/repo; from the hub cache when offline)")
    group = parser.add_argument_group("model options")
    if positional:
        group.add_argument("model", metavar="MODEL", nargs="?", default=DEFAULT_MODEL,
                           help=f"{model_help} (default: {DEFAULT_MODEL})")
    else:
        group.add_argument("--model", default=DEFAULT_MODEL, help=f"{model_help} (default: {DEFAULT_MODEL})")
    group.add_argument("--backbone-weights", metavar="FILE",
                       help="local trunk state dict (.safetensors or .pth); needed offline")
    group.add_argument("--text-encoder", metavar="NAME_OR_DIR",
                       help="Hugging Face id or local folder; overrides the name in the checkpoint")
    add_device_option(group)
    group.add_argument("--gate-factor", type=non_negative_float, default=1.0,
                       help="steering strength, a finite number >= 0: effective gate tanh(f*g); "
                            "0 = plain trunk (default: 1)")


def model_from_args(args: argparse.Namespace):
    """The model the common model options name (`steervit.loading.load_model`)."""
    from ..loading import load_model, resolve_device

    try:
        resolve_device(args.device)  # a bad device fails before the slow load
    except ValueError as err:
        raise ValueError(f"--device: {err}") from None
    return load_model(args.model, backbone_weights=args.backbone_weights, text_encoder=args.text_encoder,
                      device=args.device, gate_factor=args.gate_factor)


# ------------------------------------------------------------------------------ inputs and outputs
def find_images(root: Path) -> list[Path]:
    """Image files under `root`, recursively, in a stable (sorted) order."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_writable_folder(folder: Path, option: str, target: Path) -> None:
    """`folder` can be created (or exists) and take new files; else a one-line error naming `option`."""
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"cannot write {option} {target}: {folder} is a file, not a folder; choose another {option}")
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        raise ValueError(f"cannot write {option} {target}: {existing} is a file, not a folder; "
                         f"choose another {option}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write {option} {target}: no permission to create files in {existing}; "
                              f"choose another {option}")


def check_output_dir(path: str | Path, option: str = "--out") -> Path:
    """An output folder that exists or can be made, checked before the slow work; nothing is created."""
    path = Path(path).expanduser()
    _check_writable_folder(path, option, path)
    return path


def check_output_file(path: str | Path, option: str = "--out") -> Path:
    """An output file that can be written (its folder exists or can be made), checked before the slow work."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise ValueError(f"{option} {path} is a folder; give a file name")
    _check_writable_folder(path.parent, option, path)
    return path


class Skips:
    """Inputs a multi-image command could not use: one stderr line each, a summary and the exit code."""

    def __init__(self, total: int, what: str = "images", *, quiet: bool = False) -> None:
        self.total, self.what = total, what
        self.quiet = quiet  # count without a line each (a torchrun rank that is not rank 0)
        self.errors: list[BaseException] = []

    def skip(self, err: BaseException) -> None:
        """Name the input and go on; with a single input there is nothing to go on with: raise `err`."""
        from tqdm import tqdm

        if self.total == 1:
            raise err
        self.errors.append(err)
        if not self.quiet:
            tqdm.write(f"steervit: skipped: {one_line(err)}", file=sys.stderr)  # between progress-bar updates

    def load(self, path, load):
        """`load(path)`, or None when it fails (OSError, ValueError): skipped like any unusable input,
        for files that passed the header check and fail to decode."""
        try:
            return load(path)
        except (OSError, ValueError) as err:
            self.skip(err)
            return None

    def usable(self, paths, check) -> list:
        """`paths` whose `check(path)` passes; each failure (OSError, ValueError) is skipped. When none
        passes, the error itself (one input) or a summary (several) is raised: there is nothing to do."""
        kept = []
        for path in paths:
            try:
                check(path)
            except (OSError, ValueError) as err:
                self.skip(err)
            else:
                kept.append(path)
        if not kept:
            self.none_usable()
        return kept

    def none_usable(self) -> None:
        raise ValueError(f"none of the {self.total} {self.what} could be used (each is named above)")

    def finish(self, skipped: int | None = None) -> int:
        """The summary line and exit code; `skipped` overrides this object's count (torchrun: all ranks')."""
        skipped = len(self.errors) if skipped is None else skipped
        line = f"steervit: {self.total - skipped} of {self.total} {self.what} done"
        print(line + (f", {skipped} skipped" if skipped else ""), file=sys.stderr)
        return EXIT_SKIPPED if skipped else 0


def unique_path(path: Path, taken: set[Path]) -> Path:
    """`path`, or `path` with _2, _3, ... when this run already wrote one of that name."""
    candidate, n = path, 1
    while candidate in taken:
        n += 1
        candidate = path.with_name(f"{path.stem}_{n}{path.suffix}")
    taken.add(candidate)
    return candidate


def slug(text: str, limit: int = 40) -> str:
    """A prompt as a file-name part: lower case, runs of other characters as one '-'."""
    import re

    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-") or "prompt"


def one_line(err: BaseException) -> str:
    """Fold a multi-line message (hints, lists of keys) into the single error line."""
    return " ".join(line.strip() for line in str(err).splitlines() if line.strip()) or type(err).__name__
