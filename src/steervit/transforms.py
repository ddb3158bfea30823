"""Image pre-processing: one description of what an image goes through before the model.

`Preprocessing` holds the model's input size and the trunk's own normalisation, interpolation and
crop policy (from timm's data config). Everything that feeds the model (the published-style
`get_transforms`, evaluation, training data, the server, the CLI's pictures) reads it from
`SteerViT.preprocessing`, so none of them looks mean/std up or writes its own resize.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import torch
from PIL import Image
from timm.data import create_transform, resolve_data_config
from torchvision import transforms as T

from .io import to_rgb

_PIL_FILTERS = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST,
                "lanczos": Image.LANCZOS, "box": Image.BOX, "hamming": Image.HAMMING}


@dataclass(frozen=True)
class Preprocessing:
    """Input size, normalisation and resize policy of a model (timm's data config at our size)."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"
    crop_pct: float = 1.0
    crop_mode: str = "center"

    @classmethod
    def from_trunk(cls, trunk, size: int) -> "Preprocessing":
        config = resolve_data_config({}, model=trunk)
        return cls(size=int(size), mean=tuple(map(float, config["mean"])), std=tuple(map(float, config["std"])),
                   interpolation=str(config.get("interpolation", "bicubic")),
                   crop_pct=float(config.get("crop_pct", 1.0)), crop_mode=str(config.get("crop_mode", "center")))

    def with_size(self, size: int) -> "Preprocessing":
        return replace(self, size=int(size))

    def transform(self, crop: bool = True) -> Callable[[Image.Image], torch.Tensor]:
        """PIL image (any mode) -> normalised (3, S, S) tensor.

        `crop=True` is the published `get_transforms`: timm's eval transform (DINOv2: resize of the
        short side, centre crop). `crop=False` resizes the whole image to S x S, so that every pixel of
        a mask resized alongside keeps a prediction (dense benchmarks, training, heatmap pictures)."""
        if not crop:
            return T.Compose([T.Lambda(self.resize_square), T.Lambda(self.to_tensor)])
        timm_transform = create_transform(
            input_size=(3, self.size, self.size), interpolation=self.interpolation, mean=self.mean,
            std=self.std, crop_pct=self.crop_pct, crop_mode=self.crop_mode, is_training=False)
        return T.Compose([T.Lambda(to_rgb), timm_transform])

    def resize_square(self, image: Image.Image, size: int | None = None) -> Image.Image:
        """The whole image, any mode, to RGB `size` x `size` (default: the model's) without cropping."""
        size = size or self.size
        return to_rgb(image).resize((size, size), _PIL_FILTERS.get(self.interpolation, Image.BICUBIC))

    def to_tensor(self, image: Image.Image) -> torch.Tensor:
        """An RGB PIL image of any size -> (3, H, W) float32, normalised as the trunk expects."""
        x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
        mean = torch.tensor(self.mean, dtype=torch.float32).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(3, 1, 1)
        return ((x - mean) / std).contiguous()

    def denormalize(self, chw) -> Image.Image:
        """A normalised (3, H, W) model input (tensor or array) back to a displayable RGB image."""
        if isinstance(chw, torch.Tensor):
            chw = chw.detach().float().cpu().numpy()
        chw = np.asarray(chw, dtype=np.float32)
        rgb = chw * np.asarray(self.std, np.float32)[:, None, None] + np.asarray(self.mean, np.float32)[:, None, None]
        return Image.fromarray((rgb.transpose(1, 2, 0).clip(0, 1) * 255).round().astype(np.uint8))
