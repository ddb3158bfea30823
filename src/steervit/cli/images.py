"""`steervit heatmap` and `steervit embed`: the commands that run a model on image files."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .options import (IMAGE_EXTENSIONS, Skips, add_model_options, check_output_dir, check_output_file, find_images,
                      model_from_args, positive_int, slug, unique_path, unit_interval)


def register(commands) -> None:
    from ..overlay import COLORMAPS

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



def cmd_heatmap(args: argparse.Namespace) -> int:
    """One PNG per (image, prompt): image | head heatmap | attention steered | attention plain."""
    import torch

    from .. import overlay as ov
    from ..io import atomic_path, open_rgb, probe_image
    from ..text import check_prompt_list

    # everything that can be checked is checked before the slow model load
    prompts = check_prompt_list(args.prompt)
    out_dir = check_output_dir(args.out)
    skips = Skips(len(args.images))
    images = skips.usable([Path(p).expanduser() for p in args.images], probe_image)  # header only
    model = model_from_args(args)
    transform = model.get_transforms()
    taken: set[Path] = set()

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
            picture = model.preprocessing.denormalize(x[0])
            for j, prompt in enumerate(prompts):
                row = ov.four_panels(picture, f'"{prompt}"', head[j], steered[j], plain,
                                     alpha=args.alpha, cmap=args.colormap)
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

    from ..io import atomic_path, open_rgb, probe_image

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

    model = model_from_args(args)
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


