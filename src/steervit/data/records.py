"""One record type for every referential-segmentation source, and the one place masks are decoded.

Readers only describe where the mask lives (a PNG, COCO polygons or RLE, a box, PNG bytes, an
in-memory image); decoding waits until a sample is loaded, so a reader over millions of expressions
stays cheap and every source yields the same (H, W) bool array.
"""
from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np
from PIL import Image

from ..io import open_image


@dataclass(frozen=True, slots=True)
class PngMask:
    """A mask image file (any non-zero pixel is foreground)."""

    path: str


@dataclass(frozen=True, slots=True)
class PngBytesMask:
    """An encoded mask image held in memory (how Hugging Face stores an `Image` feature)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class ImageMask:
    """An already-decoded PIL mask (e.g. a row of a loaded Hugging Face dataset)."""

    image: Any  # PIL.Image.Image; `Any` keeps the dataclass hashable-agnostic


@dataclass(frozen=True, slots=True)
class PolygonMask:
    """COCO polygons: a list of flat [x1, y1, x2, y2, ...] lists in image pixel coordinates."""

    polygons: tuple[tuple[float, ...], ...]


@dataclass(frozen=True, slots=True)
class RleMask:
    """COCO run-length encoding: {"size": [h, w], "counts": str | bytes | list[int]}."""

    rle: dict


@dataclass(frozen=True, slots=True)
class BoxMask:
    """An axis-aligned box [x, y, w, h] in pixels, filled (Visual Genome regions without masks)."""

    box: tuple[float, float, float, float]


MaskSpec = Union[PngMask, PngBytesMask, ImageMask, PolygonMask, RleMask, BoxMask]


@dataclass(frozen=True, slots=True)
class Record:
    """One (image, referring expression, target mask) training example."""

    image: str  # path of the image file
    expression: str
    mask: MaskSpec
    source: str  # dataset name, used for per-source metrics and mixture weights
    image_id: str | None = None
    split: str | None = None


def polygon_mask(polygons: Sequence[Sequence[float]] | Sequence[float]) -> PolygonMask:
    """Normalise one flat polygon or a list of them into a `PolygonMask`."""
    if len(polygons) and isinstance(polygons[0], numbers.Real):
        polygons = [polygons]  # a single flat polygon
    return PolygonMask(tuple(tuple(float(v) for v in p) for p in polygons))


def coco_segmentation_mask(segmentation: Any) -> MaskSpec:
    """COCO `segmentation` field (polygon list or RLE dict) -> mask spec."""
    if isinstance(segmentation, dict):
        return RleMask(dict(segmentation))
    if isinstance(segmentation, (list, tuple)):
        return polygon_mask(segmentation)
    raise ValueError(f"unsupported COCO segmentation: {type(segmentation).__name__}")


def decode_mask(spec: MaskSpec, width: int, height: int) -> np.ndarray:
    """Materialise a mask spec as a (height, width) bool array for an image of that size.

    Masks stored at another size (PNG, RLE) are resized nearest-neighbour to the image size.
    """
    if isinstance(spec, BoxMask):
        return _box_to_array(spec.box, width, height)
    if isinstance(spec, PolygonMask):
        return _polygons_to_array(spec.polygons, width, height)
    if isinstance(spec, RleMask):
        return _mask_to_size(_rle_to_array(spec.rle), width, height)
    if isinstance(spec, PngMask):  # steervit.io's reader: size checked first; as stored, like all annotations
        return _mask_to_size(pil_to_bool(open_image(spec.path)), width, height)
    if isinstance(spec, PngBytesMask):
        return _mask_to_size(pil_to_bool(open_image(spec.data)), width, height)
    if isinstance(spec, ImageMask):
        return _mask_to_size(pil_to_bool(spec.image), width, height)
    raise TypeError(f"not a mask spec: {type(spec).__name__}")


def pil_to_bool(image: Image.Image) -> np.ndarray:
    """Foreground = non-zero label; 8-bit grey masks saved as 0/255 are thresholded at 128."""
    if image.mode == "1":
        return np.asarray(image, dtype=bool)
    if image.mode in ("P", "I", "I;16", "F", "L"):
        arr = np.asarray(image)
        if image.mode == "L" and arr.size and arr.max() > 1:
            return arr >= 128
        return arr != 0
    arr = np.asarray(image.convert("L"))
    return arr >= 128 if arr.size and arr.max() > 1 else arr != 0


def _mask_to_size(mask: np.ndarray, width: int, height: int) -> np.ndarray:
    if mask.shape == (height, width):
        return mask
    resized = Image.fromarray(mask.astype(np.uint8) * 255).resize((width, height), Image.NEAREST)
    return np.asarray(resized) >= 128


def _box_to_array(box: Sequence[float], width: int, height: int) -> np.ndarray:
    x, y, w, h = (float(v) for v in box)
    x0, y0 = max(0, _round(x)), max(0, _round(y))
    x1, y1 = min(width, _round(x + w)), min(height, _round(y + h))
    mask = np.zeros((height, width), dtype=bool)
    if x1 > x0 and y1 > y0:
        mask[y0:y1, x0:x1] = True
    return mask


def _round(v: float) -> int:
    return int(math.floor(v + 0.5))


def _polygons_to_array(polygons: Sequence[Sequence[float]], width: int, height: int) -> np.ndarray:
    mask_utils = _pycocotools()
    # pycocotools reads a 4-number list as a box, and fewer than 3 points is no area: drop them.
    polys = [list(p) for p in polygons if len(p) >= 6]
    if not polys:
        return np.zeros((height, width), dtype=bool)
    rle = mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
    return _decode_rle(mask_utils, rle)


def _rle_to_array(rle: dict) -> np.ndarray:
    mask_utils = _pycocotools()
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, list):  # uncompressed RLE
        compressed = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    else:
        compressed = {"size": [h, w], "counts": counts.encode() if isinstance(counts, str) else counts}
    return _decode_rle(mask_utils, compressed)


def _decode_rle(mask_utils, rle: dict) -> np.ndarray:
    with warnings.catch_warnings():  # pycocotools' own numpy-2 `__array__(copy=...)` deprecation notice
        warnings.filterwarnings("ignore", message=r".*__array__ implementation", category=DeprecationWarning)
        return mask_utils.decode(rle).astype(bool)


def _pycocotools():
    try:
        from pycocotools import mask as mask_utils
    except ImportError as err:  # optional dependency: only polygon/RLE masks need it
        raise ImportError("COCO polygon/RLE masks need pycocotools: pip install pycocotools") from err
    return mask_utils


def encode_rle(mask: np.ndarray) -> dict:
    """(H, W) bool -> compressed COCO RLE with a str `counts` (JSON-serialisable)."""
    mask_utils = _pycocotools()
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def resolve_path(path: str | Path, base: str | Path) -> str:
    """A path as given if absolute, else relative to `base` (a manifest's folder)."""
    path = Path(path).expanduser()
    return str(path if path.is_absolute() else Path(base) / path)
