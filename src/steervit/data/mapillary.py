"""Reader for Mapillary Vistas street images with synthetic referring expressions (JSONL).

Vistas ships images (`training/images/<id>.jpg`) but no expressions; the paper generated them
(Describe Anything). This reader takes such expressions from a JSONL file, one per line:

    {"image": "<id>",                 # image id or file name under `images_root` (".jpg" added if no suffix)
     "expression": "a red car parked by the curb",
     "mask": {"rle": {"size": [h, w], "counts": "..."}}    # or {"png": "masks/x.png"} or "masks/x.png",
                                                          # PNG paths relative to the JSONL's folder
     "split": "train"}                # optional

The mask field accepts everything the generic manifest does (`manifest.parse_mask`).
"""
from __future__ import annotations

import os
from pathlib import Path

from .image_paths import mapillary_image_path
from .manifest import iter_json_lines, parse_mask
from .records import Record


def read_mapillary(
    expressions_jsonl: str | os.PathLike,
    *,
    images_root: str | os.PathLike,
    split: str | None = None,
    source: str = "mapillary",
) -> list[Record]:
    """Records of the JSONL (only those of `split` when given)."""
    path = Path(expressions_jsonl).expanduser()
    records = []
    for line_no, entry in iter_json_lines(path):
        if split is not None and entry.get("split") != split:
            continue
        try:
            image_id = str(entry["image"])
            record = Record(
                image=mapillary_image_path(images_root, image_id),
                expression=str(entry["expression"]),
                mask=parse_mask(entry["mask"], path.parent),
                source=source,
                image_id=Path(image_id).stem,
                split=entry.get("split"),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path}:{line_no}: bad Mapillary entry ({err!r})") from err
        records.append(record)
    return records
