"""Appearance changes of a whole made scene: what a camera and a file format do to a photo.

Training scenes pasted from clean cut-outs all look alike; a model that steers on real photos has to
cope with colour casts, contrast, blur and compression. These act on the finished image only, so
every mask stays exactly right.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter


def tint(image: np.ndarray, rng: np.random.Generator, strength: float = 0.12) -> np.ndarray:
    """A colour cast: each channel scaled by up to +-`strength`."""
    gains = 1.0 + rng.uniform(-strength, strength, size=3)
    return np.clip(image.astype(np.float32) * gains, 0, 255).astype(np.uint8)


def contrast(image: np.ndarray, rng: np.random.Generator, low: float = 0.7, high: float = 1.3) -> np.ndarray:
    """Contrast around the image's mean, by a factor in [low, high]."""
    x = image.astype(np.float32)
    mean = x.mean()
    return np.clip((x - mean) * rng.uniform(low, high) + mean, 0, 255).astype(np.uint8)


def blur(image: np.ndarray, rng: np.random.Generator, max_radius: float = 1.2) -> np.ndarray:
    """A Gaussian blur of radius up to `max_radius` px (focus, motion)."""
    return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(rng.uniform(0.3, max_radius))))


def jpeg(image: np.ndarray, rng: np.random.Generator, low: int = 35, high: int = 90) -> np.ndarray:
    """A JPEG round trip at a quality in [low, high] (block artefacts, chroma smearing)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=int(rng.integers(low, high + 1)))
    buffer.seek(0)
    with Image.open(buffer) as im:
        return np.asarray(im.convert("RGB"))


CHANGES = (tint, contrast, blur, jpeg)


def random_appearance(image: np.ndarray, rng: np.random.Generator, probability: float = 0.35) -> tuple[np.ndarray, list[str]]:
    """Each change applied with `probability`, in a fixed order; returns the image and the changes' names."""
    applied = []
    for change in CHANGES:
        if rng.random() < probability:
            image = change(image, rng)
            applied.append(change.__name__)
    return image, applied
