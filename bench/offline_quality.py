"""Quality of a model on the held-out offline data, the plain trunk (gate factor 0) measured beside it.

    .venv/bin/python bench/offline_quality.py --data OFFLINE_DIR [--ood OOD_DIR] [--model NAME] [--out FILE.json]

OFFLINE_DIR is what `steervit data build-offline` writes; with `--ood OOD_DIR` (what `steervit data
build-ood` writes) every out-of-distribution part is reported beside it, and the real-photo pointing
game (steervit.evaluation.pointing) always runs. Reported, per test source:
- head heatmap: softmax mass on the referred object (`pmass`: on the patches holding part of it, as in
  training's validation), and the stricter pixel-weighted mass (a patch half inside counts half),
  steered vs plain;
- attention steering: MOSAIC-style PR-AUC of the last block's CLS attention against the referred
  object's patch mask, steered vs plain (percent);
- CORE-style P@1 on OFFLINE_DIR/core (one prompt for the whole scene gallery, same base excluded);
- with --ood, the representation trade-off (steervit.evaluation.tradeoff): the FG-CLS-style probe on
  OOD_DIR/probe steered vs plain, and the gate sweep f = 0, 0.2, ..., 1 of (probe accuracy, CORE-style
  P@1 on OOD_DIR/core), drawn beside --out as <out stem>_gate_sweep.png.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from steervit import SteerViT
from steervit.data import read_manifest
from steervit.data.records import decode_mask
from steervit.evaluation import core
from steervit.evaluation.datasets import read_core
from steervit.evaluation.metrics import average_precision, patch_grid_mask
from steervit.io import open_rgb
from steervit.losses import pixel_probability_mass, probability_mass
from steervit.pretrained import DEFAULT_MODEL


def four_item_scenes(data: Path) -> set[str]:
    """Image ids of test scenes holding exactly four products."""
    ids = set()
    for line in (data / "scenes.jsonl").read_text().splitlines():
        scene = json.loads(line)
        if scene["split"] == "test" and scene["kind"] == "fashion" and len(scene["items"]) == 4:
            ids.add(scene["image_id"])
    return ids


@torch.no_grad()
def head_and_attention(model: SteerViT, records, batch_size: int) -> dict[str, dict[str, list[float]]]:
    """Per record: pmass and attention PR-AUC, steered and at gate factor 0."""
    transform = model.get_transforms(crop=False)
    out: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for lo in tqdm(range(0, len(records), batch_size), desc="test split", unit="batch"):
        chunk = records[lo:lo + batch_size]
        images, masks = [], []
        for r in chunk:
            image = open_rgb(r.image)
            images.append(transform(image))
            mask = decode_mask(r.mask, *image.size)
            size = images[-1].shape[-1]
            masks.append(torch.from_numpy(np.array(Image.fromarray(mask).resize((size, size), Image.NEAREST))))
        images, masks = torch.stack(images), torch.stack(masks).float()
        prompts = model.encode_text([r.expression for r in chunk])
        labels = patch_grid_mask(masks.numpy() > 0, model.patch_size)
        for mode, factor in (("steered", None), ("plain", 0.0)):  # None: the model's own gate factor
            logits = model.segmentation_logits(images, prompts, gate_factor=factor)
            attn = model.get_attention_heatmaps(images, prompts, interpolate=False, gate_factor=factor)
            pmass = probability_mass(logits, masks, model.patch_size)
            pixel = pixel_probability_mass(logits, masks, model.patch_size)
            for i, r in enumerate(chunk):
                out[r.source][f"pmass_{mode}"].append(float(pmass[i]))
                out[r.source][f"pmass_pixel_{mode}"].append(float(pixel[i]))
                out[r.source][f"attn_prauc_{mode}"].append(100 * average_precision(attn[i].numpy(), labels[i]))
    return out


def source_table(model: SteerViT, manifest: Path, limit: int, batch_size: int, four_items: set[str] = frozenset()) -> dict:
    """Head pmass and attention PR-AUC per source of a manifest's test split, steered and plain."""
    records = read_manifest(manifest, split="test")
    # report the four-product Fashion-MNIST scenes as their own source
    records = [dataclasses.replace(r, source="fashion_four_items") if r.image_id in four_items else r for r in records]
    if limit:
        by_source = defaultdict(list)
        for r in records:
            by_source[r.source].append(r)
        records = [r for rows in by_source.values() for r in rows[:limit]]
    per_source = head_and_attention(model, records, batch_size)
    return {source: {"records": len(values["pmass_steered"]), **{k: float(np.nanmean(v)) for k, v in values.items()}}
            for source, values in per_source.items()}


def core_table(model: SteerViT, folder: Path, gate0: bool) -> dict:
    """CORE-style P@1 of a CORE folder: steered, plain, wrong prompt (and gate factor 0 if asked)."""
    records = read_core(folder)
    steered = core.evaluate(model, records, ks=(1,), wrong_prompt=True)
    plain = core.evaluate(model, records, text=False, ks=(1,))
    row = {"steered": steered.precision(1), "plain": plain.precision(1),
           "wrong_prompt": steered.wrong_prompt["overall"]["P@1"], "chance": 20.0}
    if gate0:
        with model.using_gate_factor(0.0):
            row["gate_factor_0"] = core.evaluate(model, records, ks=(1,)).precision(1)
    return row


def probe_table(model: SteerViT, ood: Path, batch_size: int, plot_path: Path | None) -> dict | None:
    """The FG-CLS-style probe steered vs plain and the gate sweep on an OOD build (None: no probe/ in it)."""
    from steervit.evaluation import tradeoff

    if not (ood / "probe").is_dir():
        print(f"{ood}/probe not found: rebuild with `steervit data build-ood` for the probe and gate sweep")
        return None
    res = tradeoff.evaluate(model, tradeoff.read_probe(ood / "probe"), read_core(ood / "core"), batch_size=batch_size)
    row = res.to_json()
    if plot_path is not None:
        row["plot"] = str(tradeoff.plot(row, plot_path))
    return row


def print_probe(p: dict) -> None:
    prompts = ", ".join(f"{name}: '{d['prompt']}'" for name, d in p["datasets"].items())
    print(f"FG-CLS-style probe on unseen backgrounds ({prompts}): steered {p['steered']:.1f}, plain "
          f"{p['plain']:.1f}, drop {p['drop']:.1f} points ({'within' if p['within_target'] else 'over'} the "
          f"2-point target)")
    print("gate sweep: " + ", ".join(f"f={r['gate_factor']:g} ({r['probe_accuracy']:.1f}, {r['core_P@1']:.1f})"
                                    for r in p["sweep"]) + " as (probe accuracy, CORE-style P@1)")


def print_sources(title: str, sources: dict) -> None:
    print(title)
    print(f"{'source':<28}{'n':>5}{'pmass steered':>15}{'plain':>7}{'pixel pmass st.':>17}{'plain':>7}"
          f"{'attn PR-AUC st.':>17}{'plain':>7}")
    for source, r in sources.items():
        print(f"{source:<28}{r['records']:>5}{r['pmass_steered']:>15.3f}{r['pmass_plain']:>7.3f}"
              f"{r['pmass_pixel_steered']:>17.3f}{r['pmass_pixel_plain']:>7.3f}"
              f"{r['attn_prauc_steered']:>17.1f}{r['attn_prauc_plain']:>7.1f}")


def print_core(title: str, c: dict) -> None:
    print(f"{title}: steered {c['steered']:.1f}, plain {c['plain']:.1f}, wrong prompt "
          f"{c['wrong_prompt']:.1f}, gate factor 0 {c.get('gate_factor_0', float('nan')):.1f} (chance 20)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, type=Path, help="what `steervit data build-offline` wrote")
    parser.add_argument("--ood", type=Path, help="what `steervit data build-ood` wrote: reported beside --data")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--backbone-weights", help="local trunk state dict, for a saved run's model folder offline")
    parser.add_argument("--text-encoder", help="local text-encoder folder, likewise")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--limit", type=int, default=0, help="records per source (0 = all)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--core-gate0", action="store_true",
                        help="also run CORE at gate factor 0 (equals the plain trunk; costs a full pass)")
    parser.add_argument("--no-pointing", action="store_true", help="skip the real-photo pointing game")
    parser.add_argument("--no-probe", action="store_true", help="skip the OOD probe and gate sweep")
    args = parser.parse_args()

    model = SteerViT.from_pretrained(args.model, backbone_weights=args.backbone_weights,
                                     text_encoder=args.text_encoder).eval()
    results = {"model": args.model, "data": str(args.data),
               "sources": source_table(model, args.data / "manifest.jsonl", args.limit, args.batch_size,
                                       four_item_scenes(args.data)),
               "core_P@1": core_table(model, args.data / "core", args.core_gate0)}
    if args.ood:
        results["ood"] = {"data": str(args.ood),
                          "sources": source_table(model, args.ood / "manifest.jsonl", args.limit, args.batch_size),
                          "core_P@1": core_table(model, args.ood / "core", args.core_gate0)}
        if not args.no_probe:
            plot_path = args.out.with_name(args.out.stem + "_gate_sweep.png") if args.out else None
            results["ood"]["probe"] = probe_table(model, args.ood, args.batch_size, plot_path)
    if not args.no_pointing:
        from steervit.evaluation import pointing

        res = pointing.evaluate(model, batch_size=args.batch_size)
        results["pointing"] = {k: v for k, v in res.items() if k != "per_entry"}

    print(f"model {args.model}")
    print_sources("in distribution (the offline test split)", results["sources"])
    print_core("CORE-style P@1", results["core_P@1"])
    if args.ood:
        print_sources("out of distribution (build-ood)", results["ood"]["sources"])
        print_core("CORE-style P@1 on unseen backgrounds", results["ood"]["core_P@1"])
        if results["ood"].get("probe"):
            print_probe(results["ood"]["probe"])
    if "pointing" in results:
        print(pointing.summary(res))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
