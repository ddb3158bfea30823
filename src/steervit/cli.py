"""The `steervit` command line.

Adding a subcommand = one `add_parser` block in `build_parser` + one `cmd_*(args) -> int` function.
Commands that load a model call `add_model_options(parser)` and `load_model(args)`.

Heavy imports (torch, timm, transformers) happen inside the commands, not at module level, so parsing
and `--help` cost nothing beyond importing the `steervit` package itself.
Errors a user can fix (missing files, bad checkpoints, bad values) print one line,
`steervit: error: ...`, and exit with code 2, checked before any model is loaded where they can be
(inputs, output paths); `--debug` shows the full traceback instead.
Commands that take many images (heatmap, embed) skip an image they cannot use with one line on stderr
(`steervit: skipped: ...`), go on with the others, end with `steervit: 2 of 3 images done, 1 skipped`
and exit with code 1 when any was skipped (2 when none could be used: nothing was done).
"""
from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import re
import sys
from pathlib import Path

from .pretrained import DEFAULT_MODEL  # the bundled offline model: used when no model is named

EXIT_ERROR = 2  # usage errors and errors a user can fix: nothing was done
EXIT_SKIPPED = 1  # the command finished, but skipped some inputs (each named on stderr)
# Larger command groups live beside their code; each module has `register(commands)`, which adds
# its subparsers with `set_defaults(func=...)` and imports heavy dependencies only inside the commands.
COMMAND_MODULES: list[str] = ["steervit.evaluation.cli", "steervit.train.cli", "steervit.offline.cli",
                               "steervit.ablate_cli", "steervit.export_cli", "steervit.serve.cli"]
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


# ------------------------------------------------------------------------------ argument helpers
def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None


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


def add_model_options(parser: argparse.ArgumentParser, *, positional: bool = False) -> None:
    """The options every model-loading command shares."""
    model_help = ("a registered name (steervit_s14_minilm_offline, steervit_dinov2_base, ...), a published .pth "
                  "checkpoint, or a directory written by save_pretrained / `steervit convert`")
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
    group.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, ... (default: cpu)")
    group.add_argument("--gate-factor", type=non_negative_float, default=1.0,
                       help="steering strength, a finite number >= 0: effective gate tanh(f*g); "
                            "0 = plain trunk (default: 1)")


def torch_device(name: str):
    """Check the device before the (slow) model load, with a message instead of a torch traceback."""
    import torch

    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"invalid --device {name!r}: {err}") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name} asked for, but CUDA is not available here; use --device cpu")
    return device


def load_model(args: argparse.Namespace):
    """A SteerViT in eval mode from the common model options."""
    from .model import SteerViT

    device = torch_device(args.device)
    try:
        model = SteerViT.from_pretrained(
            args.model, backbone_weights=args.backbone_weights, text_encoder=args.text_encoder, device=device
        )
    except FileNotFoundError:
        raise
    except OSError as err:  # a download failed: say how to do it offline, in command-line terms
        raise OSError(f"{err}\n(offline: pass --backbone-weights FILE and --text-encoder DIR)") from err
    model.set_gate_factor(args.gate_factor)
    return model


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

    def __init__(self, total: int, what: str = "images") -> None:
        self.total, self.what = total, what
        self.errors: list[BaseException] = []

    def skip(self, err: BaseException) -> None:
        """Name the input and go on; with a single input there is nothing to go on with: raise `err`."""
        from tqdm import tqdm

        if self.total == 1:
            raise err
        self.errors.append(err)
        tqdm.write(f"steervit: skipped: {one_line(err)}", file=sys.stderr)  # between progress-bar updates

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

    def finish(self) -> int:
        done = self.total - len(self.errors)
        line = f"steervit: {done} of {self.total} {self.what} done"
        print(line + (f", {len(self.errors)} skipped" if self.errors else ""), file=sys.stderr)
        return EXIT_SKIPPED if self.errors else 0


def normalization(transform) -> tuple[list[float], list[float]]:
    """Mean and std of the Normalize step in a (nested) torchvision transform, to show the model's view."""
    from torchvision import transforms as T

    pending = [transform]
    while pending:
        step = pending.pop()
        if isinstance(step, T.Normalize):
            return [float(v) for v in step.mean], [float(v) for v in step.std]
        pending.extend(getattr(step, "transforms", []))
    return [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]


def slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-") or "prompt"


def unique_path(path: Path, taken: set[Path]) -> Path:
    """`path`, or `path` with _2, _3, ... when this run already wrote one of that name."""
    candidate, n = path, 1
    while candidate in taken:
        n += 1
        candidate = path.with_name(f"{path.stem}_{n}{path.suffix}")
    taken.add(candidate)
    return candidate


# ------------------------------------------------------------------------------ commands
def cmd_heatmap(args: argparse.Namespace) -> int:
    """One PNG per (image, prompt): image | head heatmap | attention steered | attention plain."""
    import torch

    from . import overlay as ov
    from .io import atomic_path, open_rgb, probe_image
    from .text import check_prompts

    # everything that can be checked is checked before the slow model load
    prompts = check_prompts(args.prompt)
    out_dir = check_output_dir(args.out)
    skips = Skips(len(args.images))
    images = skips.usable([Path(p).expanduser() for p in args.images], probe_image)  # header only
    model = load_model(args)
    transform = model.get_transforms()
    mean, std = normalization(transform)
    taken: set[Path] = set()

    def panel(picture, heat, label):
        return ov.add_label(ov.overlay(picture, heat.float().cpu().numpy(), args.alpha, args.colormap), label)

    with torch.no_grad():
        embedding = model.encode_text(prompts)
        for path in images:
            try:
                image = open_rgb(path)
            except (OSError, ValueError) as err:  # passed the header check, failed to decode
                skips.skip(err)
                continue
            x = transform(image)[None]
            head = model.get_heatmaps(x, embedding, cross=True)[0, :, 0]  # (P, H, W)
            steered = model.get_attention_heatmaps(x, embedding, cross=True)[0]  # (P, H, W)
            plain = model.get_attention_heatmaps(x, None)[0]  # (H, W)
            picture = ov.denormalize(x[0].float().cpu().numpy(), mean, std)
            plain_panel = panel(picture, plain, "attention (plain)")
            for j, prompt in enumerate(prompts):
                row = ov.hstack([
                    ov.add_label(picture, f'"{prompt}"'),
                    panel(picture, head[j], "head heatmap"),
                    panel(picture, steered[j], "attention (steered)"),
                    plain_panel,
                ])
                target = unique_path(out_dir / f"{path.stem}_{slug(prompt)}.png", taken)
                with atomic_path(target) as tmp:
                    row.save(tmp, format="PNG")
                print(target)
    if len(skips.errors) == skips.total:
        skips.none_usable()
    return skips.finish()


def cmd_embed(args: argparse.Namespace) -> int:
    """Global (and dense) features of every image in a folder, in one file with the paths in order."""
    import numpy as np
    import torch
    from safetensors.torch import save_file
    from tqdm import tqdm

    from .io import atomic_path, open_rgb, probe_image

    # everything that can be checked is checked before the slow model load
    out = Path(args.out)
    if out.suffix not in (".safetensors", ".npy"):
        raise ValueError(f"--out must end in .safetensors or .npy, got {out}")
    if args.dense and out.suffix == ".npy":
        raise ValueError("--dense needs a .safetensors output (a .npy file holds the global features only)")
    out = check_output_file(out)
    if out.suffix == ".npy":
        check_output_file(out.with_suffix(".json"), "--out (its .json list of paths)")
    root = Path(args.directory).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    found = find_images(root)
    if not found:
        raise ValueError(f"no images ({' '.join(IMAGE_EXTENSIONS)}) found under {root}")
    skips = Skips(len(found))
    files = skips.usable(found, probe_image)  # header only: unreadable, too large or too elongated

    model = load_model(args)
    transform = model.get_transforms()
    kept: list[Path] = []
    global_parts: list[torch.Tensor] = []
    dense_parts: list[torch.Tensor] = []
    batch: list[torch.Tensor] = []

    def flush() -> None:
        x = torch.stack(batch)
        text = None if embedding is None else embedding.repeat_interleave(len(batch))  # one prompt per image
        global_parts.append(model.get_global_features(x, text).float().cpu())
        if args.dense:
            dense_parts.append(model.get_dense_features(x, text).float().cpu())
        batch.clear()

    with torch.no_grad():
        embedding = None if args.prompt is None else model.encode_text([args.prompt])
        for path in tqdm(files, desc="embedding", unit="img", disable=None):
            try:
                image = open_rgb(path)
            except (OSError, ValueError) as err:  # passed the header check, failed to decode
                skips.skip(err)
                continue
            batch.append(transform(image))
            kept.append(path)
            if len(batch) == args.batch_size:
                flush()
        if batch:
            flush()
    if not kept:
        skips.none_usable()

    meta = {
        "root": str(root.resolve()),
        "paths": [p.relative_to(root).as_posix() for p in kept],
        "prompt": args.prompt,
        "model": str(args.model),
        "gate_factor": args.gate_factor,
    }
    features = torch.cat(global_parts)
    if out.suffix == ".npy":
        with atomic_path(out) as tmp, open(tmp, "wb") as f:
            np.save(f, features.numpy())
        sidecar = out.with_suffix(".json")
        with atomic_path(sidecar) as tmp:
            tmp.write_text(json.dumps(meta, indent=1) + "\n")
        print(out)
        print(sidecar)
    else:
        tensors = {"global": features}
        if args.dense:
            tensors["dense"] = torch.cat(dense_parts)
        with atomic_path(out) as tmp:
            save_file(tensors, str(tmp), metadata={k: json.dumps(v) for k, v in meta.items()})
        print(out)
    return skips.finish()


def cmd_convert(args: argparse.Namespace) -> int:
    """Published .pth -> config.json + model.safetensors (the trained tensors only)."""
    from .model import SteerViT

    # The text encoder only supplies its width, which the connector weights already tell; load it only
    # when given, to check it fits and to record it in the converted config.
    model = SteerViT.from_pretrained(
        args.checkpoint, backbone_weights=args.backbone_weights, text_encoder=args.text_encoder or False
    )
    model.save_pretrained(args.out_dir)
    print(args.out_dir)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """What a checkpoint contains: trunk, text encoder, where the cross-attention sits, gate values, sizes."""
    model = load_model(args)

    def count(module) -> int:
        return 0 if module is None else sum(p.numel() for p in module.parameters())

    factor = model.gate_factor
    layers = sorted(int(i) for i in model.cross_attn_layers)
    lines = [
        f"model:         {args.model}",
        f"trunk:         {model.config.trunk}",
        f"  width {model.feature_dim}, depth {len(model.trunk.blocks)}, patch size {model.patch_size}, "
        f"image size {model.image_size}, prefix tokens {model.num_prefix_tokens}, pooling {model.config.pooling}",
        f"text encoder:  {model.config.text_encoder} (width {model.config.text_dim})",
        f"cross-attention layers: {layers}",
        "gates:" + (f" (effective = tanh({factor:g} * raw) at --gate-factor {factor:g})" if factor != 1.0 else ""),
    ]
    for i in layers:
        layer = model.cross_attn_layers[str(i)]
        for name in ("attn_gate", "ff_gate"):
            gate = getattr(layer, name, None)
            if gate is None:
                continue
            raw = float(gate.detach().reshape(-1)[0])
            line = f"  block {i} {name}: raw {raw:.4f}  tanh {math.tanh(raw):.4f}"
            if factor != 1.0:
                line += f"  effective {math.tanh(factor * raw):.4f}"
            lines.append(line)
    ca, connector, head = count(model.cross_attn_layers), count(model.connector), count(model.seg_head)
    lines += [
        "parameters:",
        f"  trainable:    {ca + connector + head:,} (cross-attention {ca:,}, connector {connector:,}, head {head:,})",
        f"  frozen trunk: {count(model.trunk):,}",
        f"  text encoder: {count(model.text_encoder):,}" + ("" if model.text_encoder else " (not loaded)"),
    ]
    print("\n".join(lines))
    return 0


# ------------------------------------------------------------------------------ parser and entry point
def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .overlay import COLORMAPS

    parser = argparse.ArgumentParser(prog="steervit", description="Language-steered Vision Transformers.")
    parser.add_argument("--version", action="version", version=f"steervit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks instead of one-line errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("heatmap", help="heatmap overlays for images and prompts, one PNG per pair")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--prompt", nargs="+", action="extend", required=True, metavar="P",
                   help="one or more prompts; each is applied to every image")
    p.add_argument("--out", default="heatmaps", metavar="DIR", help="output folder (default: heatmaps)")
    p.add_argument("--alpha", type=unit_interval, default=0.5,
                   help="heatmap opacity in the overlays, 0 to 1 (default: 0.5)")
    p.add_argument("--colormap", choices=COLORMAPS, default="turbo")
    add_model_options(p)
    p.set_defaults(func=cmd_heatmap)

    p = commands.add_parser("embed", help="global (and dense) features of every image in a folder")
    p.add_argument("directory", metavar="DIR", help="searched recursively for " + " ".join(IMAGE_EXTENSIONS))
    p.add_argument("--prompt", help="steer every image with this prompt (default: plain trunk features)")
    p.add_argument("--dense", action="store_true", help="also store the patch features (safetensors only)")
    p.add_argument("--out", default="features.safetensors", metavar="FILE",
                   help="FILE.safetensors (global, dense, paths in metadata) or FILE.npy (+ FILE.json of paths)")
    p.add_argument("--batch-size", type=positive_int, default=32, metavar="N")
    add_model_options(p)
    p.set_defaults(func=cmd_embed)

    p = commands.add_parser("convert", help="published .pth checkpoint -> this project's directory format")
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="published .pth file")
    p.add_argument("out_dir", metavar="OUT_DIR")
    p.add_argument("--backbone-weights", metavar="FILE", help="local trunk state dict; needed offline")
    p.add_argument("--text-encoder", metavar="NAME_OR_DIR",
                   help="check the text encoder fits and record it in the config (optional)")
    p.set_defaults(func=cmd_convert)

    p = commands.add_parser("info", help="describe a checkpoint: trunk, text encoder, layers, gates, sizes")
    add_model_options(p, positional=True)
    p.set_defaults(func=cmd_info)

    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(commands)
    return parser


def one_line(err: BaseException) -> str:
    """Fold a multi-line message (hints, lists of keys) into the single error line."""
    return " ".join(line.strip() for line in str(err).splitlines() if line.strip()) or type(err).__name__


def main(argv: list[str] | None = None) -> int:
    """Entry point of `steervit` and `python -m steervit.cli`; returns the exit code."""
    return run_command(build_parser().parse_args(argv))


def run_command(args: argparse.Namespace) -> int:
    """Run the parsed command; expected failures become one line on stderr and exit code 2."""
    try:
        return int(args.func(args) or 0)
    except (OSError, ValueError) as err:  # FileNotFoundError, CheckpointError, bad values
        if args.debug:
            raise
        print(f"steervit: error: {one_line(err)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("steervit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
