"""Reader for LVIS v1 (`lvis_v1_train.json`, `lvis_v1_val.json`): one record per instance.

The expression is the category's first synonym with underscores as spaces (`"aerosol_can"` ->
"aerosol can"); the mask is that instance's polygons. Images come from `coco_url`
(`http://images.cocodataset.org/train2017/000000391895.jpg` -> `<coco_root>/train2017/000000391895.jpg`):
LVIS splits draw on both COCO 2017 folders, and only the URL says which one holds an image.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from .records import Record, coco_segmentation_mask


def read_lvis(
    annotations_json: str | os.PathLike,
    *,
    coco_root: str | os.PathLike,
    source: str = "lvis",
    min_area: float = 0.0,
    split: str | None = None,
) -> list[Record]:
    """All instances of an LVIS annotation file with `area >= min_area`."""
    with open(annotations_json, encoding="utf-8") as f:
        data = json.load(f)
    names = {cat["id"]: category_expression(cat) for cat in data["categories"]}
    images = {img["id"]: _image_path(coco_root, img) for img in data["images"]}
    records = []
    for ann in data["annotations"]:
        if ann.get("area", float("inf")) < min_area:
            continue
        mask = coco_segmentation_mask(ann["segmentation"])
        image_id = ann["image_id"]
        records.append(Record(images[image_id], names[ann["category_id"]], mask, source, str(image_id), split))
    return records


def category_expression(category: dict) -> str:
    synonyms = category.get("synonyms") or [category["name"]]
    return synonyms[0].replace("_", " ").strip()


def _image_path(coco_root, image: dict) -> str:
    url = image.get("coco_url")
    if url:
        folder, name = url.rstrip("/").split("/")[-2:]
    else:  # fall back to the id: LVIS ids are COCO 2017 ids
        folder, name = "train2017", image.get("file_name") or f"{image['id']:012d}.jpg"
    return str(Path(coco_root) / folder / name)
