"""Small image/mask builders shared by the data-layer tests (everything is made in tmp_path)."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image


def rect(width: int, height: int, x: int, y: int, w: int, h: int) -> np.ndarray:
    """(height, width) bool mask with the box [x, y, w, h] set."""
    mask = np.zeros((height, width), dtype=bool)
    mask[y:y + h, x:x + w] = True
    return mask


def save_image(path: Path, width: int, height: int, seed: int = 0) -> Path:
    """A random RGB JPEG (parents created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path, quality=95)
    return path


def save_mask_png(path: Path, mask: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.astype(np.uint8) * 255).save(path)
    return path


@pytest.fixture(scope="session")
def helpers() -> SimpleNamespace:
    return SimpleNamespace(rect=rect, save_image=save_image, save_mask_png=save_mask_png)
