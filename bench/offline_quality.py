"""Quality of a model on the held-out offline data, the plain trunk (gate factor 0) measured beside it.

    .venv/bin/python bench/offline_quality.py --data OFFLINE_DIR [--model NAME] [--out FILE.json]

OFFLINE_DIR is what `steervit data build-offline` writes. Reported, per test source:
- head heatmap: softmax mass on the referred object (`pmass`: on the patches holding part of it, as in
  training's validation), and the stricter pixel-weighted mass (a patch half inside counts half),
  steered vs plain;
- attention steering: MOSAIC-style PR-AUC of the last block's CLS attention against the referred
  object's patch mask, steered vs plain (percent);
- CORE-style P@1 on OFFLINE_DIR/core (one prompt for the whole scene gallery, same base excluded).
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
            image = Image.open(r.image).convert("RGB")
            images.append(transform(image))
            mask = decode_mask(r.mask, *image.size)
            size = images[-1].shape[-1]
            masks.append(torch.from_numpy(np.array(Image.fromarray(mask).resize((size, size), Image.NEAREST))))
        images, masks = torch.stack(images), torch.stack(masks).float()
        prompts = model.encode_text([r.expression for r in chunk])
        labels = patch_grid_mask(masks.numpy() > 0, model.patch_size)
        for mode, factor in (("steered", 1.0), ("plain", 0.0)):
            model.set_gate_factor(factor)
            logits = model.segmentation_logits(images, prompts)
            attn = model.get_attention_heatmaps(images, prompts, interpolate=False)
            pmass = probability_mass(logits, masks, model.patch_size)
            pixel = pixel_probability_mass(logits, masks, model.patch_size)
            for i, r in enumerate(chunk):
                out[r.source][f"pmass_{mode}"].append(float(pmass[i]))
                out[r.source][f"pmass_pixel_{mode}"].append(float(pixel[i]))
                out[r.source][f"attn_prauc_{mode}"].append(100 * average_precision(attn[i].numpy(), labels[i]))
        model.set_gate_factor(1.0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--limit", type=int, default=0, help="records per source (0 = all)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--core-gate0", action="store_true",
                        help="also run CORE at gate factor 0 (equals the plain trunk; costs a full pass)")
    args = parser.parse_args()

    model = SteerViT.from_pretrained(args.model).eval()
    records = read_manifest(args.data / "manifest.jsonl", split="test")
    four = four_item_scenes(args.data)
    # report the four-product Fashion-MNIST scenes as their own source
    records = [dataclasses.replace(r, source="fashion_four_items") if r.image_id in four else r for r in records]
    if args.limit:
        by_source = defaultdict(list)
        for r in records:
            by_source[r.source].append(r)
        records = [r for rows in by_source.values() for r in rows[: args.limit]]
    per_source = head_and_attention(model, records, args.batch_size)

    results = {"model": args.model, "data": str(args.data), "sources": {}}
    for source, values in per_source.items():
        results["sources"][source] = {"records": len(values["pmass_steered"]),
                                      **{k: float(np.nanmean(v)) for k, v in values.items()}}
    core_records = read_core(args.data / "core")
    steered = core.evaluate(model, core_records, ks=(1,), wrong_prompt=True)
    plain = core.evaluate(model, core_records, text=False, ks=(1,))
    results["core_P@1"] = {"steered": steered["overall"]["P@1"], "plain": plain["overall"]["P@1"],
                           "wrong_prompt": steered["wrong_prompt"]["overall"]["P@1"], "chance": 20.0}
    if args.core_gate0:
        model.set_gate_factor(0.0)
        results["core_P@1"]["gate_factor_0"] = core.evaluate(model, core_records, ks=(1,))["overall"]["P@1"]
        model.set_gate_factor(1.0)

    print(f"model {args.model}")
    print(f"{'source':<28}{'n':>5}{'pmass steered':>15}{'plain':>7}{'pixel pmass st.':>17}{'plain':>7}"
          f"{'attn PR-AUC st.':>17}{'plain':>7}")
    for source, r in results["sources"].items():
        print(f"{source:<28}{r['records']:>5}{r['pmass_steered']:>15.3f}{r['pmass_plain']:>7.3f}"
              f"{r['pmass_pixel_steered']:>17.3f}{r['pmass_pixel_plain']:>7.3f}"
              f"{r['attn_prauc_steered']:>17.1f}{r['attn_prauc_plain']:>7.1f}")
    c = results["core_P@1"]
    print(f"CORE-style P@1: steered {c['steered']:.1f}, plain {c['plain']:.1f}, wrong prompt "
          f"{c['wrong_prompt']:.1f}, gate factor 0 {c.get('gate_factor_0', float('nan')):.1f} (chance 20)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
