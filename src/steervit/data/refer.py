"""Reader for RefCOCO, RefCOCO+ and RefCOCOg in the refer toolkit's layout.

    <refer_root>/refcoco/refs(unc).p      (also refs(google).p)    splits train/val/testA/testB
    <refer_root>/refcoco/instances.json
    <refer_root>/refcoco+/refs(unc).p                              splits train/val/testA/testB
    <refer_root>/refcocog/refs(umd).p     (also refs(google).p)    umd: train/val/test
    <coco_root>/train2014/COCO_train2014_<12 digits>.jpg

Each ref (`ref_id, ann_id, image_id, split, sentences: [{sent, raw, ...}], category_id, file_name`)
gives one record per sentence; the mask is the COCO instance annotation's segmentation. The `.p`
files are untrusted pickles and are read with `safe_load_pickle`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

from .image_paths import coco_image_path
from .records import Record, coco_segmentation_mask
from .safe_pickle import safe_load_pickle

DEFAULT_SPLIT_BY = {"refcoco": "unc", "refcoco+": "unc", "refcocog": "umd"}


def read_refer(
    refer_root: str | os.PathLike,
    dataset: str = "refcoco",
    split: str | Iterable[str] | None = "train",
    *,
    coco_root: str | os.PathLike,
    split_by: str | None = None,
    sentence_field: str = "sent",
) -> list[Record]:
    """Records of `dataset` (`refcoco`, `refcoco+`, `refcocog`) for one split, several, or all (None).

    `sentence_field`: `sent` (the toolkit's cleaned, lower-cased text) or `raw` (as annotated)."""
    if dataset not in DEFAULT_SPLIT_BY:
        raise ValueError(f"unknown refer dataset {dataset!r}; expected one of {sorted(DEFAULT_SPLIT_BY)}")
    split_by = split_by or DEFAULT_SPLIT_BY[dataset]
    folder = Path(refer_root).expanduser() / dataset
    refs = safe_load_pickle(folder / f"refs({split_by}).p")
    with open(folder / "instances.json", encoding="utf-8") as f:
        instances = json.load(f)
    annotations = {ann["id"]: ann for ann in instances["annotations"]}
    images = {img["id"]: img for img in instances["images"]}

    wanted = _wanted_splits(split, {ref["split"] for ref in refs}, f"{dataset} ({split_by})")
    records = []
    for ref in refs:
        if ref["split"] not in wanted:
            continue
        ann = annotations[ref["ann_id"]]
        image = coco_image_path(coco_root, images[ref["image_id"]]["file_name"])
        mask = coco_segmentation_mask(ann["segmentation"])
        for sentence in ref["sentences"]:
            text = str(sentence.get(sentence_field) or sentence.get("sent") or "").strip()
            if text:
                records.append(Record(image, text, mask, dataset, str(ref["image_id"]), ref["split"]))
    return records


def _wanted_splits(split, available: set[str], what: str) -> set[str]:
    if split is None:
        return available
    wanted = {split} if isinstance(split, str) else set(split)
    missing = wanted - available
    if missing:
        raise ValueError(f"{what} has no split(s) {sorted(missing)}; available: {sorted(available)}")
    return wanted
