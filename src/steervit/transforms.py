"""Image pre-processing: timm's eval transform for the trunk, forced to the model's resolution."""
from __future__ import annotations

from timm.data import create_transform, resolve_data_config
from torchvision import transforms as T

from .io import to_rgb


def normalization(trunk) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) the trunk expects."""
    config = resolve_data_config({}, model=trunk)
    return tuple(config["mean"]), tuple(config["std"])


def create_transforms(trunk, image_size: int, crop: bool = True):
    """PIL image (any mode) -> normalised (3, S, S) tensor, as the published `get_transforms` does.

    The trunk's own resize/crop policy applies (DINOv2: bicubic resize of the short side, centre crop,
    ImageNet mean/std). `crop=False` resizes the whole image to S x S instead (dense tasks with masks)."""
    if not crop:  # the whole image squeezed to S x S: every pixel of a mask keeps a prediction
        mean, std = normalization(trunk)
        return T.Compose([T.Lambda(to_rgb), T.Resize((image_size, image_size), T.InterpolationMode.BICUBIC),
                          T.ToTensor(), T.Normalize(mean, std)])
    config = resolve_data_config({}, model=trunk)
    config["input_size"] = (3, image_size, image_size)
    return T.Compose([T.Lambda(to_rgb), create_transform(**config, is_training=False)])
