"""Real photo backgrounds from Debian wallpaper packages, for pasting products and objects onto.

The made scenes overfit to their few backgrounds, so we add many real photos from Debian packages.
`backgrounds.json`, next to this file, lists the packages and the files kept from them: photographs
only (landscapes, interiors, textures, close-ups), each with its author and licence. It also lists
what was dropped and why. The photos are split by *source package* into a training pool and an
out-of-distribution (OOD) pool. No package is on both sides, so the OOD backgrounds come from
sources the model never saw.

`scripts/install-backgrounds.sh` installs those packages (as root), or otherwise unpacks their
catalogued files into `$STEERVIT_HOME/backgrounds/<package>/<path>`. `background_files` looks in
both places.

Decoding a 4K JPEG costs ~0.1-1 s on these cores. So each image is decoded once at reduced size
(JPEG draft mode, at most `MAX_SIDE` px on the long side) and kept in a small LRU cache.
`random_background` then only crops, resizes and jitters an array.
"""
from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

CATALOGUE = Path(__file__).with_name("backgrounds.json")
INSTALL_HINT = "sh scripts/install-backgrounds.sh"
POOLS = ("train", "ood")
MAX_SIDE = 1024  # decoded images are downscaled to this long side: enough for 224-448 px crops
CACHE_SIZE = 64  # decoded images kept (<= ~3 MB each); covers the whole current catalogue
NOT_PHOTOS = (".svg", ".svgz")  # vector art is never a photo; skipped even if catalogued


@functools.lru_cache(maxsize=1)
def catalogue() -> dict:
    """The parsed `backgrounds.json` (packages, kept files with attribution, dropped files, pools)."""
    with open(CATALOGUE, encoding="utf-8") as f:
        return json.load(f)


def pool_packages(pool: str) -> list[dict]:
    """The catalogue entries of the packages in one pool ('train' or 'ood')."""
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
    return [p for p in catalogue()["packages"] if p["pool"] == pool]


def fallback_dir() -> Path:
    """Where the install script unpacks the packages without root: `$STEERVIT_HOME/backgrounds`."""
    from .dinov2_onnx import steervit_home

    return steervit_home() / "backgrounds"


def locate(package: str, path: str) -> Path | None:
    """A catalogued file where Debian installed it, else in the fallback folder, else None."""
    installed = Path(path)
    if installed.is_file():
        return installed
    unpacked = fallback_dir() / package / path.lstrip("/")
    return unpacked if unpacked.is_file() else None


def background_files(pool: str) -> list[Path]:
    """Every catalogued photo of one pool ('train' or 'ood'), in catalogue order.

    A missing file raises FileNotFoundError that names the install script. Tests and builds
    should fail loudly rather than silently train on fewer backgrounds.
    """
    found, missing = [], []
    for package in pool_packages(pool):
        for entry in package["files"]:
            if entry["path"].lower().endswith(NOT_PHOTOS):
                continue
            where = locate(package["name"], entry["path"])
            if where is None:
                missing.append(f"{package['name']}:{entry['path']}")
            else:
                found.append(where)
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} {pool} background photo(s) not found in / or {fallback_dir()} "
            f"(e.g. {', '.join(missing[:3])}); install them with: {INSTALL_HINT}"
        )
    return found


@functools.lru_cache(maxsize=1)
def _crop_boxes() -> dict[str, tuple[int, int, int, int]]:
    """Catalogued crop boxes (left, top, right, bottom in original pixels), keyed by Debian path.

    They cut off letterbox bars that are not part of the photo.
    """
    return {e["path"]: tuple(e["crop"]) for p in catalogue()["packages"] for e in p["files"] if "crop" in e}


def _crop_for(path: Path) -> tuple[int, int, int, int] | None:
    text = path.as_posix()
    for debian_path, box in _crop_boxes().items():
        if text.endswith(debian_path):
            return box
    return None


@functools.lru_cache(maxsize=CACHE_SIZE)
def _decoded(path: str, mtime_ns: int) -> np.ndarray:
    """Decode once at reduced size. The key includes the mtime, so a replaced file is read again."""
    with Image.open(path) as im:
        width, height = im.size
        box = _crop_for(Path(path)) or (0, 0, width, height)
        long_side = max(box[2] - box[0], box[3] - box[1])
        if im.format == "JPEG" and long_side > MAX_SIDE:
            # DCT scaling: decode at 1/2, 1/4 or 1/8 size, still at least MAX_SIDE on the long side.
            factor = MAX_SIDE / long_side
            im.draft(None, (max(1, int(width * factor)), max(1, int(height * factor))))
        sx, sy = im.size[0] / width, im.size[1] / height
        rgb = im.convert("RGB")
    if box != (0, 0, width, height):
        rgb = rgb.crop((round(box[0] * sx), round(box[1] * sy), round(box[2] * sx), round(box[3] * sy)))
    if max(rgb.size) > MAX_SIDE:
        rgb.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    array = np.asarray(rgb, dtype=np.uint8)
    array.setflags(write=False)  # shared by every caller through the cache
    return array


def load_background(path: str | os.PathLike) -> np.ndarray:
    """One photo as a read-only (H, W, 3) uint8 array, at most MAX_SIDE px long; cached."""
    path = Path(path)
    if path.suffix.lower() in NOT_PHOTOS:
        raise ValueError(f"{path} is vector art, not a photo")
    return _decoded(str(path), path.stat().st_mtime_ns)


def random_background(
    rng: np.random.Generator,
    files: Sequence[str | os.PathLike],
    size: int,
    *,
    scale: tuple[float, float] = (0.3, 1.0),
    brightness: float = 0.15,
    contrast: float = 0.25,
    flip: bool = True,
) -> np.ndarray:
    """A (size, size, 3) uint8 background: a random square crop of a random photo, jittered.

    The crop's side is a random share `scale` of the photo's short side, at a random place. It is
    resized to size x size, then the contrast is scaled by 1 +- `contrast` around the mean and
    `brightness` x 255 is added (+-). With `flip`, half the crops are mirrored left to right.
    Crops, jitter and flips make one photo into many different backgrounds. The result depends
    only on the rng's state, so a seed gives the same background every time.
    """
    if not files:
        raise ValueError("no background files given")
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    lo, hi = scale
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"scale must satisfy 0 < low <= high <= 1, got {scale}")
    # Every random number is drawn in one fixed order, whatever the options, so results stay
    # reproducible.
    index = int(rng.integers(len(files)))
    share = float(rng.uniform(lo, hi))
    where = rng.random(2)
    gain = 1.0 + float(rng.uniform(-contrast, contrast))
    offset = float(rng.uniform(-brightness, brightness)) * 255.0
    mirror = bool(rng.random() < 0.5) and flip

    image = load_background(files[index])
    height, width = image.shape[:2]
    side = max(1, min(height, width, int(round(min(height, width) * share))))
    top = int(where[0] * (height - side + 1))
    left = int(where[1] * (width - side + 1))
    crop = Image.fromarray(image[top:top + side, left:left + side])
    if side != size:
        crop = crop.resize((size, size), Image.Resampling.LANCZOS if side > size else Image.Resampling.BICUBIC)
    out = np.asarray(crop, dtype=np.float32)
    out = (out - out.mean()) * gain + out.mean() + offset
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    if mirror:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)
