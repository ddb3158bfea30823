"""Fashion-MNIST from the Debian package `dataset-fashion-mnist`: real product photos with exact masks.

The 70,000 photos (28x28 grey, 10 classes; 60k train / 10k test) show one product, bright on a
black studio background, so a low threshold separates the object from the background exactly.
That makes them the one source of real photos here whose masks need no model. The files are the
gzipped IDX files the package installs in /usr/share/datasets/fashion-mnist/ (MIT licence).
"""
from __future__ import annotations

import functools
import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
ENV_DIR = "STEERVIT_FASHION_MNIST"  # another folder with the same four files
INSTALL_HINT = "apt-get install dataset-fashion-mnist"
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

# The background is (nearly) 0; dark seams inside a product are rarely below this after resizing.
THRESHOLD = 16
# Holes smaller than this share of the object are dark print or seams, not background showing
# through (a bag's handle or a sandal's straps leave larger holes, which are kept).
SMALL_HOLE_FRACTION = 0.015
SMALL_SPECK_FRACTION = 0.01  # stray bright pixels apart from the product


@dataclass(frozen=True)
class FashionClass:
    """A label with the words a person would use for it (first noun = the usual one)."""

    label: int
    name: str  # the dataset's own class name
    nouns: tuple[str, ...]
    supercategory: str  # a noun for the broader kind ("the shoe", "the piece of clothing")
    plural_nouns: tuple[str, ...] = ()  # nouns that take no "a" ("trousers")


CLASSES: tuple[FashionClass, ...] = (
    FashionClass(0, "T-shirt/top", ("t-shirt", "tee"), "piece of clothing"),
    FashionClass(1, "Trouser", ("pair of trousers", "pair of pants", "trousers"), "piece of clothing",
                 plural_nouns=("trousers",)),
    FashionClass(2, "Pullover", ("pullover", "sweater", "jumper"), "piece of clothing"),
    FashionClass(3, "Dress", ("dress",), "piece of clothing"),
    FashionClass(4, "Coat", ("coat", "jacket"), "piece of clothing"),
    FashionClass(5, "Sandal", ("sandal",), "shoe"),
    FashionClass(6, "Shirt", ("shirt", "button-up shirt"), "piece of clothing"),
    FashionClass(7, "Sneaker", ("sneaker", "trainer", "running shoe"), "shoe"),
    FashionClass(8, "Bag", ("bag", "handbag"), "bag"),
    FashionClass(9, "Ankle boot", ("ankle boot", "boot"), "shoe"),
)


@dataclass(frozen=True)
class FashionMNIST:
    """One split: images (N, 28, 28) uint8 and labels (N,) uint8."""

    split: str
    images: np.ndarray
    labels: np.ndarray

    def indices_of(self, label: int) -> np.ndarray:
        return np.flatnonzero(self.labels == label)


def data_dir(root: str | os.PathLike | None = None) -> Path:
    """The folder with the IDX files: `root`, else $STEERVIT_FASHION_MNIST, else the Debian path,
    else `$STEERVIT_HOME/fashion-mnist` (where `scripts/install-assets.sh` unpacks it without root)."""
    if root or os.environ.get(ENV_DIR):
        return Path(root or os.environ[ENV_DIR])
    if DEFAULT_DIR.is_dir():
        return DEFAULT_DIR
    from .dinov2_onnx import steervit_home

    unpacked = steervit_home() / "fashion-mnist"
    return unpacked if unpacked.is_dir() else DEFAULT_DIR


def require_fashion_mnist(root: str | os.PathLike | None = None) -> Path:
    """The data folder, or an error that says which package to install."""
    folder = data_dir(root)
    missing = [name for pair in FILES.values() for name in pair if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"Fashion-MNIST not found in {folder} (missing {', '.join(missing)}); "
            f"install the Debian package with: {INSTALL_HINT}"
        )
    return folder


@functools.lru_cache(maxsize=4)
def load_fashion_mnist(split: str, root: str | None = None) -> FashionMNIST:
    """Read one split ("train" or "test"); cached, as the train images take 47 MB."""
    if split not in FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    folder = require_fashion_mnist(root)
    image_file, label_file = FILES[split]
    images = read_idx(folder / image_file)
    labels = read_idx(folder / label_file)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"{folder}: images {images.shape} and labels {labels.shape} do not match")
    return FashionMNIST(split, images, labels)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An IDX file (gzipped or not) of unsigned bytes -> numpy array of its declared shape."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0:2] != b"\x00\x00" or data[2] != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    if len(data) - offset != int(np.prod(shape)):
        raise ValueError(f"{path}: {len(data) - offset} bytes of data for shape {shape}")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)


def item_mask(grey: np.ndarray, threshold: int = THRESHOLD) -> np.ndarray:
    """The product's mask in a grey photo: above the threshold, small dark holes filled, specks removed."""
    mask = grey > threshold
    area = int(mask.sum())
    if area == 0:
        return mask
    labels, count = ndimage.label(~mask)
    if count:
        sizes = ndimage.sum(~mask, labels, index=np.arange(1, count + 1))
        touching = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        for i, size in enumerate(sizes, start=1):  # holes: background parts not touching the border
            if i not in touching and size < SMALL_HOLE_FRACTION * area:
                mask[labels == i] = True
    labels, count = ndimage.label(mask)
    if count > 1:
        sizes = ndimage.sum(mask, labels, index=np.arange(1, count + 1))
        for i, size in enumerate(sizes, start=1):
            if size < SMALL_SPECK_FRACTION * area:
                mask[labels == i] = False
    return mask


def render_item(grey28: np.ndarray, size: int, tint: tuple[int, int, int] | None = None,
                flip: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A product photo at size x size px as (RGB uint8, mask); pixels outside the mask are zero.

    The grey photo is stretched to its full range and, with `tint`, multiplied by that colour, so a
    tinted product keeps its real shading. The mask is computed after resizing, from the same
    pixels that are pasted, so it is exact at any size.
    """
    grey = Image.fromarray(np.ascontiguousarray(grey28[:, ::-1] if flip else grey28))
    resized = np.asarray(grey.resize((size, size), Image.BILINEAR))
    mask = item_mask(resized)
    level = resized.astype(np.float32) / max(1, int(resized[mask].max()) if mask.any() else 255)
    level[mask] = np.maximum(level[mask], 0.05)  # filled dark holes stay visible as product, never 0
    colour = np.array(tint if tint is not None else (255, 255, 255), dtype=np.float32)
    rgb = np.clip(level[..., None] * colour, 0, 255).round().astype(np.uint8)
    rgb[~mask] = 0
    return rgb, mask


def brightness(grey28: np.ndarray) -> float:
    """Mean level of the product relative to its brightest pixel (0..1): "white" vs "grey"."""
    mask = item_mask(grey28)
    if not mask.any():
        return 0.0
    return float(grey28[mask].mean()) / max(1, int(grey28[mask].max()))
