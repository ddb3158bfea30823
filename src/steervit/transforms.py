"""Image pre-processing: timm's eval transform for the trunk, forced to the model's resolution."""
from __future__ import annotations

from timm.data import create_transform, resolve_data_config
from torchvision import transforms as T

from .io import to_rgb


def create_transforms(trunk, image_size: int):
    """PIL image (any mode) -> normalised (3, S, S) tensor, as the published `get_transforms` does.

    The trunk's own resize/crop policy applies (DINOv2: bicubic resize of the short side, centre crop,
    ImageNet mean/std)."""
    config = resolve_data_config({}, model=trunk)
    config["input_size"] = (3, image_size, image_size)
    return T.Compose([T.Lambda(to_rgb), create_transform(**config, is_training=False)])
