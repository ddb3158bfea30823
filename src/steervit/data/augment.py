"""Joint image/mask augmentation for training (reference §4), driven by an explicit torch.Generator.

Geometry is applied to image and mask together (image bicubic, mask nearest) and never allowed to
lose the target: a random resized crop is redrawn up to 10 times until it holds >= 16 mask pixels
(or the whole mask, if it is smaller), else the image is plainly resized; an affine warp is dropped
if fewer pixels than that survive it. Horizontal flips are skipped when the expression names a
direction (a flipped "left cup" is the wrong cup). Colour jitter touches the image only.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

DIRECTIONAL_WORDS = (
    "left", "right", "leftmost", "rightmost", "clockwise", "counterclockwise",
    "east", "west", "above", "below", "upper", "lower", "top", "bottom",
)
_DIRECTIONAL = re.compile(r"\b(" + "|".join(DIRECTIONAL_WORDS) + r")\b", re.IGNORECASE)


def has_directional_word(expression: str) -> bool:
    """Whole-word, case-insensitive match against `DIRECTIONAL_WORDS`."""
    return bool(_DIRECTIONAL.search(expression or ""))


@dataclass(frozen=True)
class AugmentConfig:
    crop_scale: tuple[float, float] = (0.65, 1.0)
    crop_ratio: tuple[float, float] = (0.85, 1.18)
    crop_tries: int = 10
    min_mask_pixels: int = 16
    flip_p: float = 0.5
    affine_p: float = 0.3
    rotate_deg: float = 8.0
    translate_frac: float = 0.06
    scale_range: tuple[float, float] = (0.9, 1.1)
    shear_deg: float = 3.0
    jitter_p: float = 0.7
    brightness: float = 0.25
    contrast: float = 0.25
    saturation: float = 0.25
    hue: float = 0.1


def resize_pair(image: Image.Image, mask: np.ndarray, size: int) -> tuple[Image.Image, np.ndarray]:
    """Validation: plain resize to size x size (image bicubic, mask nearest)."""
    return image.resize((size, size), Image.BICUBIC), _resize_mask(mask, size)


def augment_pair(
    image: Image.Image,
    mask: np.ndarray,
    expression: str,
    size: int,
    generator: torch.Generator,
    config: AugmentConfig = AugmentConfig(),
) -> tuple[Image.Image, np.ndarray, dict[str, bool]]:
    """RGB image + (H, W) bool mask -> size x size pair, and which steps were applied."""
    draw = _Draw(generator)
    applied = {"crop": False, "flip": False, "affine": False, "jitter": False}

    box = _crop_keeping_target(mask, draw, config)
    if box is None:
        image, mask = resize_pair(image, mask, size)
    else:
        applied["crop"] = True
        top, left, h, w = box
        pil_box = (left, top, left + w, top + h)
        image = image.resize((size, size), Image.BICUBIC, box=pil_box)
        mask = _resize_mask(mask, size, box=pil_box)

    if draw.uniform(0, 1) < config.flip_p and not has_directional_word(expression):
        applied["flip"] = True
        image, mask = image.transpose(Image.FLIP_LEFT_RIGHT), mask[:, ::-1].copy()

    if draw.uniform(0, 1) < config.affine_p:
        image, mask, applied["affine"] = _affine_keeping_target(image, mask, size, draw, config)

    if draw.uniform(0, 1) < config.jitter_p:
        applied["jitter"] = True
        image = _colour_jitter(image, draw, config)
    return image, mask, applied


class _Draw:
    """Uniform / integer draws from one generator (all randomness of a sample goes through here)."""

    def __init__(self, generator: torch.Generator):
        self.generator = generator

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * torch.rand((), generator=self.generator, dtype=torch.float64).item()

    def integer(self, low: int, high: int) -> int:  # inclusive
        return int(torch.randint(low, high + 1, (), generator=self.generator).item())

    def permutation(self, n: int) -> list[int]:
        return torch.randperm(n, generator=self.generator).tolist()


def _crop_keeping_target(mask: np.ndarray, draw: _Draw, config: AugmentConfig):
    """(top, left, h, w) of a random resized crop holding >= min_mask_pixels, or None after the tries."""
    total = int(mask.sum())
    for _ in range(config.crop_tries):
        top, left, h, w = _random_resized_crop_box(mask.shape[0], mask.shape[1], draw, config)
        if total == 0 or int(mask[top:top + h, left:left + w].sum()) >= min(config.min_mask_pixels, total):
            return top, left, h, w
    return None


def _random_resized_crop_box(height: int, width: int, draw: _Draw, config: AugmentConfig):
    """torchvision's RandomResizedCrop sampling (area scale, log-uniform aspect, centre-crop fallback)."""
    area = height * width
    log_low, log_high = math.log(config.crop_ratio[0]), math.log(config.crop_ratio[1])
    for _ in range(10):
        target_area = area * draw.uniform(*config.crop_scale)
        aspect = math.exp(draw.uniform(log_low, log_high))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return draw.integer(0, height - h), draw.integer(0, width - w), h, w
    in_ratio = width / height
    if in_ratio < config.crop_ratio[0]:
        w, h = width, int(round(width / config.crop_ratio[0]))
    elif in_ratio > config.crop_ratio[1]:
        h, w = height, int(round(height * config.crop_ratio[1]))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def _affine_keeping_target(image, mask, size, draw: _Draw, config: AugmentConfig):
    max_shift = int(config.translate_frac * size)
    params = dict(
        angle=draw.uniform(-config.rotate_deg, config.rotate_deg),
        translate=[draw.integer(-max_shift, max_shift), draw.integer(-max_shift, max_shift)],
        scale=draw.uniform(*config.scale_range),
        shear=[draw.uniform(-config.shear_deg, config.shear_deg), draw.uniform(-config.shear_deg, config.shear_deg)],
    )
    before = int(mask.sum())
    warped = F.affine(_mask_image(mask), interpolation=InterpolationMode.NEAREST, fill=0, **params)
    warped_mask = np.asarray(warped) >= 128
    if int(warped_mask.sum()) < min(config.min_mask_pixels, before):
        return image, mask, False
    image = F.affine(image, interpolation=InterpolationMode.BICUBIC, fill=0, **params)
    return image, warped_mask, True


def _colour_jitter(image: Image.Image, draw: _Draw, config: AugmentConfig) -> Image.Image:
    """torchvision ColorJitter semantics: factors in [1 - s, 1 + s], hue shift in [-h, h], random order."""
    for op in draw.permutation(4):
        if op == 0 and config.brightness > 0:
            image = F.adjust_brightness(image, draw.uniform(max(0.0, 1 - config.brightness), 1 + config.brightness))
        elif op == 1 and config.contrast > 0:
            image = F.adjust_contrast(image, draw.uniform(max(0.0, 1 - config.contrast), 1 + config.contrast))
        elif op == 2 and config.saturation > 0:
            image = F.adjust_saturation(image, draw.uniform(max(0.0, 1 - config.saturation), 1 + config.saturation))
        elif op == 3 and config.hue > 0:
            image = F.adjust_hue(image, draw.uniform(-config.hue, config.hue))
    return image


def _mask_image(mask: np.ndarray) -> Image.Image:
    return Image.fromarray(mask.astype(np.uint8) * 255)


def _resize_mask(mask: np.ndarray, size: int, box=None) -> np.ndarray:
    return np.asarray(_mask_image(mask).resize((size, size), Image.NEAREST, box=box)) >= 128
