"""Heatmap -> coloured overlay images, with PIL and numpy only.

matplotlib is not a core dependency, so the colour maps are computed from formulas and the panels are
drawn with PIL. Everything here takes numpy arrays and PIL images; nothing depends on torch.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

COLORMAPS = ("turbo", "jet")

# Polynomial fit of Google's Turbo colour map (Mikhailov, 2019): rows r, g, b; columns x^0 .. x^5.
_TURBO = np.array([
    [0.13572138, 4.61539260, -42.66032258, 132.13108234, -152.94239396, 59.28637943],
    [0.09140261, 2.19418839, 4.84296658, -14.18503333, 4.27729857, 2.82956604],
    [0.10667330, 12.64194608, -60.58204836, 110.36276771, -89.90310912, 27.34824973],
])


def colormap(name: str = "turbo", n: int = 256) -> np.ndarray:
    """An (n, 3) uint8 lookup table, low values first."""
    x = np.linspace(0.0, 1.0, n)[:, None]
    if name == "turbo":
        rgb = (x ** np.arange(6)) @ _TURBO.T
    elif name == "jet":
        rgb = 1.5 - np.abs(4.0 * x - np.array([3.0, 2.0, 1.0]))
    else:
        raise ValueError(f"colormap must be one of {COLORMAPS}, got {name!r}")
    return (np.clip(rgb, 0.0, 1.0) * 255).round().astype(np.uint8)


def normalize(heat: np.ndarray) -> np.ndarray:
    """Min-max scale to [0, 1] for display; a constant (or all-NaN) map becomes zeros."""
    heat = np.nan_to_num(np.asarray(heat, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(heat.min()), float(heat.max())
    if hi - lo <= 1e-12:
        return np.zeros_like(heat)
    return (heat - lo) / (hi - lo)


def colorize(heat: np.ndarray, cmap: str = "turbo") -> np.ndarray:
    """(H, W) scores -> (H, W, 3) uint8 colours, after min-max normalisation."""
    table = colormap(cmap)
    index = (normalize(heat) * (len(table) - 1)).round().astype(np.intp)
    return table[index]


def resize_heat(heat: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of an (H, W) float map to PIL `size` = (width, height)."""
    heat = np.asarray(heat, dtype=np.float32)
    if heat.shape[::-1] == tuple(size):
        return heat
    return np.asarray(Image.fromarray(heat).resize(size, Image.Resampling.BILINEAR))


def overlay(image: Image.Image, heat: np.ndarray, alpha: float = 0.5, cmap: str = "turbo") -> Image.Image:
    """Alpha-blend the coloured heatmap over the image (the map is resized to the image if needed).

    `alpha` is the heatmap's opacity, 0 (image only) to 1 (heatmap only); anything else (NaN, 7) would
    give black or garbage panels and is refused."""
    if not 0.0 <= alpha <= 1.0:  # also refuses nan
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    base = np.asarray(image.convert("RGB"), dtype=np.float32)
    colours = colorize(resize_heat(heat, image.size), cmap).astype(np.float32)
    blended = (1.0 - alpha) * base + alpha * colours
    return Image.fromarray(blended.round().clip(0, 255).astype(np.uint8))


def _font(height: int):
    """PIL's built-in font, scaled with the panel where PIL can (FreeType available, Pillow >= 10.1)."""
    try:
        return ImageFont.load_default(size=max(10, height // 20))
    except TypeError:
        return ImageFont.load_default()


def add_label(image: Image.Image, text: str) -> Image.Image:
    """A copy of `image` with `text` in its top-left corner, white on black, cut to fit the width."""
    image = image.convert("RGB")  # a copy, also when already RGB
    draw = ImageDraw.Draw(image)
    font = _font(image.height)
    pad = 2
    room = image.width - 2 * pad - 2
    if draw.textlength(text, font=font) > room:
        while text and draw.textlength(text + "...", font=font) > room:
            text = text[:-1]
        text += "..."
    left, top, right, bottom = draw.textbbox((pad, pad), text, font=font)
    draw.rectangle((0, 0, right + pad, bottom + pad), fill=(0, 0, 0))
    draw.text((pad, pad), text, fill=(255, 255, 255), font=font)
    return image


# The panel labels of `steervit heatmap` and the server.
HEAD_LABEL = "head heatmap"
STEERED_LABEL = "attention (steered)"
PLAIN_LABEL = "attention (plain)"


def as_heat(heat) -> np.ndarray:
    """An (H, W) map as a float32 array; a torch tensor (any device or dtype) is copied to the CPU."""
    if hasattr(heat, "detach"):  # duck-typed, so this module needs no torch
        heat = heat.detach().float().cpu().numpy()
    return np.asarray(heat, dtype=np.float32)


def heat_panel(picture: Image.Image, heat, label: str, *, alpha: float = 0.5,
               cmap: str = "turbo") -> Image.Image:
    """One panel: `heat` (array or tensor) coloured over `picture`, with `label` in the corner."""
    return add_label(overlay(picture, as_heat(heat), alpha, cmap), label)


def four_panels(picture: Image.Image, caption: str, head, steered, plain, *, alpha: float = 0.5,
                cmap: str = "turbo", head_label: str = HEAD_LABEL, steered_label: str = STEERED_LABEL,
                plain_label: str = PLAIN_LABEL) -> Image.Image:
    """The figure for one (image, prompt), side by side: the picture captioned `caption` | the head
    heatmap | the prompt-steered attention | the plain (unprompted) attention, each labelled.

    `head`, `steered` and `plain` are (H, W) maps (arrays or tensors), resized to the picture."""
    def panel(heat, label: str) -> Image.Image:
        return heat_panel(picture, heat, label, alpha=alpha, cmap=cmap)

    return hstack([add_label(picture, caption), panel(head, head_label), panel(steered, steered_label),
                   panel(plain, plain_label)])


def hstack(images: Sequence[Image.Image]) -> Image.Image:
    """Place images side by side (top-aligned) on a black canvas."""
    width = sum(im.width for im in images)
    height = max(im.height for im in images)
    canvas = Image.new("RGB", (width, height))
    x = 0
    for im in images:
        canvas.paste(im, (x, 0))
        x += im.width
    return canvas
