"""Reader for Visual Genome region descriptions (`region_descriptions.json` + `image_data.json`).

One record per region: the phrase is the expression; the mask is the region's box, or, when a mask
file is given, a precomputed mask (the paper prompts SAM2 with each box).

Mask file format (JSONL, one region per line; other keys are ignored):

    {"region_id": 1382, "rle": {"size": [h, w], "counts": "<COCO compressed RLE>"}}

Regions missing from the mask file are dropped, or kept with their box if `fallback_to_box=True`.
Images: `image_data.json`'s `url` names the folder (`.../VG_100K_2/1.jpg` -> `<vg_root>/VG_100K_2/1.jpg`).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from .image_paths import visual_genome_image_path
from .records import BoxMask, Record, RleMask


def read_visual_genome(
    region_descriptions_json: str | os.PathLike,
    image_data_json: str | os.PathLike,
    *,
    vg_root: str | os.PathLike,
    masks_jsonl: str | os.PathLike | None = None,
    fallback_to_box: bool = False,
    source: str = "visual_genome",
    split: str | None = None,
) -> list[Record]:
    with open(image_data_json, encoding="utf-8") as f:
        images = {_image_id(img): _image_path(vg_root, img) for img in json.load(f)}
    masks = read_region_masks(masks_jsonl) if masks_jsonl is not None else None
    with open(region_descriptions_json, encoding="utf-8") as f:
        per_image = json.load(f)
    records = []
    for entry in per_image:
        for region in entry["regions"]:
            phrase = str(region.get("phrase") or "").strip()
            if not phrase or region["width"] <= 0 or region["height"] <= 0:
                continue
            mask = masks.get(region["region_id"]) if masks is not None else None
            if mask is None:
                if masks is not None and not fallback_to_box:
                    continue
                mask = BoxMask((region["x"], region["y"], region["width"], region["height"]))
            image_id = region.get("image_id", entry.get("id", entry.get("image_id")))
            image = images.get(image_id) or visual_genome_image_path(vg_root, image_id)
            records.append(Record(image, phrase, mask, source, str(image_id), split))
    return records


def read_region_masks(path: str | os.PathLike) -> dict[int, RleMask]:
    """region_id -> RLE mask from the JSONL mask file described in the module docstring."""
    masks = {}
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                masks[int(entry["region_id"])] = RleMask(dict(entry["rle"]))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
                raise ValueError(f"{path}:{line_no}: bad region mask line ({err!r})") from err
    return masks


def _image_id(image: dict):
    return image["image_id"] if "image_id" in image else image["id"]  # v1.2 vs v1.0 key


def _image_path(vg_root, image: dict) -> str:
    url = image.get("url") or ""
    parts = url.rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2].startswith("VG_100K"):
        return str(Path(vg_root) / parts[-2] / parts[-1])
    return visual_genome_image_path(vg_root, _image_id(image))
