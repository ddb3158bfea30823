"""`steervit heatmap` and `steervit embed`: the commands that run a model on image files."""
from __future__ import annotations

import argparse
from pathlib import Path

from .options import (EXIT_SKIPPED, IMAGE_EXTENSIONS, Skips, add_model_options, check_output_dir, check_output_file,
                      find_images, model_from_args, positive_int, slug, unique_path, unit_interval)


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
            image = skips.load(path, open_rgb)
            if image is None:
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
    """Global (and dense) features of every image in a folder, in one file with the paths in order.

    Under torchrun each rank embeds a contiguous block of whole batches and writes it as a shard;
    rank 0 then writes an index naming the shards in order (`steervit.evaluation.features.load_embeddings`
    reads either form as the same result)."""
    import torch
    from tqdm import tqdm

    from ..evaluation.features import save_embeddings, shard_path, write_shard_index
    from ..io import open_rgb, probe_image
    from ..train import distributed

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
    info = distributed.setup(args.device)  # torchrun: join its process group; else a world of one
    skips = Skips(len(found), quiet=not info.is_main)
    files = skips.usable(found, probe_image)  # header only; every rank checks all, so all agree on `files`
    header_skips = len(skips.errors)
    skips.quiet = False  # a file that fails to decode is named by the rank that reads it

    # Batches are fixed runs of `files` (a file that fails to decode leaves its batch one short) and
    # each rank takes a contiguous block of whole batches: every image is embedded in the same batch
    # as in one process, so the same operations give the same numbers whatever the world size.
    runs = [files[i:i + args.batch_size] for i in range(0, len(files), args.batch_size)]
    mine = [runs[i] for i in distributed.contiguous_share(len(runs), info)]

    model = model_from_args(args)
    transform = model.get_transforms()
    kept: list[Path] = []
    global_parts: list[torch.Tensor] = []
    dense_parts: list[torch.Tensor] = []

    def embed(batch: list[torch.Tensor]) -> None:
        x = torch.stack(batch)
        text = None if embedding is None else embedding.repeat_interleave(len(batch))  # one prompt per image
        global_parts.append(model.get_global_features(x, text).float().cpu())
        if args.dense:
            dense_parts.append(model.get_dense_features(x, text).float().cpu())

    with torch.no_grad():
        embedding = None if args.prompt is None else model.encode_text([args.prompt])
        for run in tqdm(mine, desc="embedding", unit="batch", disable=None if info.is_main else True):
            batch = []
            for path in run:
                image = skips.load(path, open_rgb)
                if image is None:
                    continue
                batch.append(transform(image))
                kept.append(path)
            if batch:
                embed(batch)

    meta = {"root": str(root.resolve()), "prompt": args.prompt, "model": str(args.model),
            "gate_factor": args.gate_factor}
    paths = [p.relative_to(root).as_posix() for p in kept]
    counts = distributed.all_gather_rows(torch.tensor([len(kept)])).tolist()
    skipped = header_skips + int(distributed.sum_floats([len(skips.errors) - header_skips], model.device)[0])
    if not sum(counts):
        skips.none_usable()
    if not info.enabled:
        written = save_embeddings(out, torch.cat(global_parts), torch.cat(dense_parts) if args.dense else None,
                                  paths, meta)
    else:
        written = []
        if kept:
            written = save_embeddings(shard_path(out, info.rank, info.world_size), torch.cat(global_parts),
                                      torch.cat(dense_parts) if args.dense else None, paths, meta)
        distributed.barrier()  # every shard is on disk before the index names it
        if info.is_main:
            written.append(write_shard_index(out, info.world_size, counts, meta))
    for path in written:
        print(path)
    distributed.teardown()
    if info.is_main:
        return skips.finish(skipped)
    return EXIT_SKIPPED if skipped else 0


