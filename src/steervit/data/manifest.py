"""The generic JSONL manifest: anyone's own referential-segmentation data, one example per line.

Format (UTF-8, one JSON object per line; blank lines and lines starting with `#` are ignored):

    {"image": "images/cat.jpg",            # path; relative paths are relative to the manifest's folder
     "expression": "the cat on the sofa",  # the referring expression
     "mask": <mask>,                       # see below
     "source": "my_data",                  # dataset name (per-source metrics, mixture weights)
     "split": "train",                     # optional ("train", "validation", ...)
     "image_id": "cat"}                    # optional

    <mask> is one of
      "masks/cat.png"                               a binary PNG (non-zero = object), relative like "image"
      {"png": "masks/cat.png"}                      the same, spelled out
      {"polygon": [[x1, y1, x2, y2, ...], ...]}     COCO polygons in pixels (one flat list also accepted)
      {"rle": {"size": [h, w], "counts": "..."}}    COCO RLE, compressed (str) or uncompressed (list)
      {"box": [x, y, w, h]}                         a filled box in pixels

`write_manifest` writes this format from records.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

from ..io import atomic_path
from .records import BoxMask, MaskSpec, PngMask, PolygonMask, Record, RleMask, polygon_mask, resolve_path


def read_manifest(path: str | os.PathLike, split: str | None = None, *, default_source: str | None = None) -> list[Record]:
    """Records of a manifest, only those whose `split` equals `split` when one is given."""
    path = Path(path).expanduser()
    base = path.parent
    records = []
    for line_no, entry in iter_json_lines(path):
        try:
            record = Record(
                image=resolve_path(entry["image"], base),
                expression=str(entry["expression"]),
                mask=parse_mask(entry["mask"], base),
                source=str(entry.get("source") or default_source or path.stem),
                image_id=None if entry.get("image_id") is None else str(entry["image_id"]),
                split=entry.get("split"),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path}:{line_no}: bad manifest entry ({err!r})") from err
        if split is None or record.split == split:
            records.append(record)
    return records


def parse_mask(value: Any, base_dir: str | os.PathLike) -> MaskSpec:
    """A manifest `mask` field -> mask spec (PNG paths resolved against `base_dir`)."""
    if isinstance(value, str):
        return PngMask(resolve_path(value, base_dir))
    if isinstance(value, dict) and len(value) == 1:
        (kind, data), = value.items()
        if kind == "png":
            return PngMask(resolve_path(data, base_dir))
        if kind == "polygon":
            return polygon_mask(data)
        if kind == "rle":
            if not isinstance(data, dict) or "size" not in data or "counts" not in data:
                raise ValueError("rle needs 'size' and 'counts'")
            return RleMask(dict(data))
        if kind == "box":
            if len(data) != 4:
                raise ValueError("box must be [x, y, w, h]")
            return BoxMask(tuple(float(v) for v in data))
    raise ValueError(f"mask must be a PNG path or one of {{png, polygon, rle, box}}: {value!r}")


def write_manifest(records: Iterable[Record], path: str | os.PathLike) -> int:
    """Write records as a manifest (atomically); paths inside the manifest's folder become relative."""
    path = Path(path)
    count = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for record in records:
            entry = {
                "image": _relative(record.image, path.parent),
                "expression": record.expression,
                "mask": _mask_field(record.mask, path.parent),
                "source": record.source,
            }
            if record.split is not None:
                entry["split"] = record.split
            if record.image_id is not None:
                entry["image_id"] = record.image_id
            f.write(json.dumps(entry, ensure_ascii=False) + "\n")
            count += 1
    return count


def _mask_field(mask: MaskSpec, base: Path) -> Any:
    if isinstance(mask, PngMask):
        return _relative(mask.path, base)
    if isinstance(mask, PolygonMask):
        return {"polygon": [list(p) for p in mask.polygons]}
    if isinstance(mask, RleMask):
        counts = mask.rle["counts"]
        counts = counts.decode("ascii") if isinstance(counts, bytes) else counts
        return {"rle": {"size": list(mask.rle["size"]), "counts": counts}}
    if isinstance(mask, BoxMask):
        return {"box": list(mask.box)}
    raise TypeError(f"{type(mask).__name__} cannot go in a manifest: save it as a PNG or RLE first")


def _relative(file: str, base: Path) -> str:
    try:
        return Path(file).resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return str(file)


def iter_json_lines(path: Path):
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                yield line_no, json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{line_no}: not JSON ({err})") from err
