"""Where a source's image lives under the user's local image roots (the datasets ship no pixels).

Rules (reference §4): COCO `COCO_<split>_<num>` -> `<coco>/<split>/<id>.jpg`; Visual Genome `<id>` ->
`<vg>/VG_100K/<id>.jpg` or `<vg>/VG_100K_2/<id>.jpg`; Mapillary `<id>` -> `<mapillary>/<id>.jpg`.
A path that does not exist is still returned: the dataset skips and counts it at load time.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

VG_FOLDERS = ("VG_100K", "VG_100K_2")


def with_jpg(image_id: str) -> str:
    image_id = str(image_id)
    return image_id if os.path.splitext(image_id)[1] else image_id + ".jpg"


def coco_image_path(coco_root: str | os.PathLike, file_name: str) -> str:
    """`COCO_train2014_000000000009[.jpg]` -> `<coco>/train2014/COCO_train2014_000000000009.jpg`.

    Names without the `COCO_<split>_` prefix (COCO 2017: `000000000009.jpg`) are taken as relative to
    the root (`train2017/000000000009.jpg` or a bare name)."""
    file_name = with_jpg(file_name)
    parts = Path(file_name).name.split("_")
    if len(parts) >= 3 and parts[0] == "COCO":
        return str(Path(coco_root) / parts[1] / Path(file_name).name)
    return str(Path(coco_root) / file_name)


def visual_genome_image_path(vg_root: str | os.PathLike, image_id: str | int, folder: str | None = None) -> str:
    """`<vg>/VG_100K[_2]/<id>.jpg`; without a known folder, the one where the file exists."""
    name = with_jpg(str(image_id))
    if folder is not None:
        return str(Path(vg_root) / folder / name)
    return _find_in_folders(str(vg_root), name)


@lru_cache(maxsize=None)
def _find_in_folders(vg_root: str, name: str) -> str:
    candidates = [os.path.join(vg_root, folder, name) for folder in VG_FOLDERS]
    for path in candidates:
        if os.path.isfile(path):
            return path
    return candidates[0]


def mapillary_image_path(mapillary_root: str | os.PathLike, image_id: str) -> str:
    return str(Path(mapillary_root) / with_jpg(image_id))
