"""The published package's API on top of a `SteerViT`, for code written against the authors' `steervit`.

`AuthorsSteerViT` wraps a `SteerViT` (composition: the wrapped model is neither copied nor changed
in its code) and answers with the authors' call signatures, return conventions and attribute names:
`from_pretrained(name, device)`, `get_*(images, texts=None)`, `forward(images, texts=None,
return_segmentation_logits=False)` returning the logits alone, `image_size` as an (H, W) tuple,
`num_img_tokens`, and the internals downstream code reaches into (`vision_model.trunk`,
`text_model`, `tokenizer`, `connector`, `lin_seg_head`). Every number comes from the native
model, so both APIs agree exactly. docs/authors-compat.md lists the mapping and where we differ.

    from steervit.compat import AuthorsSteerViT as SteerViT   # then the authors' README runs as written
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from .model import SteerViT
from .text import TextEmbedding


class VisionModelView:
    """The authors' `model.vision_model`: the timm trunk (`.trunk`), its `resolution`, and a call
    with connector outputs and the authors' token mask. A view on the native model, not a copy."""

    def __init__(self, model: SteerViT) -> None:
        self._model = model

    @property
    def trunk(self) -> nn.Module:
        return self._model.trunk

    @property
    def resolution(self) -> int:
        return self._model.image_size

    def __call__(self, images: torch.Tensor, text_feats: torch.Tensor | None = None,
                 attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Final-normed tokens (B, prefix + N, D). `text_feats`: connector outputs (B, L, D);
        `attn_mask`: the authors' (B, num_img_tokens + L) layout, image-token ones then the text
        mask, or just the (B, L) text mask; None keeps every text token."""
        if text_feats is None:
            return self._model(images)
        length = text_feats.shape[1]
        if attn_mask is None:
            mask = torch.ones(text_feats.shape[:2], dtype=torch.bool, device=text_feats.device)
        else:
            mask = attn_mask[:, -length:].to(torch.bool)  # the text part is the last L columns
        return self._model(images, TextEmbedding(text_feats, mask, [""] * text_feats.shape[0]))


class AuthorsSteerViT(nn.Module):
    """A `SteerViT` behind the published package's interface. `.model` is the native model."""

    def __init__(self, model_or_config: SteerViT | Mapping[str, Any], *,
                 backbone_weights: str | Path | None = None, text_encoder: str | Path | None = None) -> None:
        """Wrap a native `SteerViT`, or, as the authors' `SteerViT(config)`, build a fresh model from a
        published config dict (`vision_encoder`, `text_encoder`); `backbone_weights` / `text_encoder`
        (local files) then replace the downloads the config implies."""
        super().__init__()
        if not isinstance(model_or_config, SteerViT):
            from .config import SteerViTConfig

            if not isinstance(model_or_config, Mapping):
                raise TypeError("AuthorsSteerViT wraps a steervit.SteerViT or builds one from a published "
                                f"config dict; got {type(model_or_config).__name__}")
            config = SteerViTConfig.from_published(model_or_config)
            if text_encoder is not None:
                config.text_encoder = str(text_encoder)
            model_or_config = SteerViT(config, backbone_weights=backbone_weights)
        self.model = model_or_config
        self.vision_model = VisionModelView(self.model)

    @classmethod
    def from_pretrained(cls, checkpoint_name: str | Path, device=None, **options) -> "AuthorsSteerViT":
        """The authors' loader: a published `.pth` (local path or hub file name), in eval mode with every
        parameter frozen. `options` go to `SteerViT.from_pretrained` (`backbone_weights=`,
        `text_encoder=` for offline use, `dtype=`); loading is safe and strict (see the docs)."""
        model = SteerViT.from_pretrained(checkpoint_name, device=device, **options)
        model.requires_grad_(False)
        return cls(model).eval()

    # ------------------------------------------------------------------ properties and internals
    @property
    def patch_size(self) -> int:
        return self.model.patch_size

    @property
    def feature_dim(self) -> int:
        return self.model.feature_dim

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W), as the authors return it (the native `SteerViT.image_size` is the side, an int)."""
        return (self.model.image_size, self.model.image_size)

    @property
    def num_img_tokens(self) -> int:
        """Tokens per image at the checkpoint resolution: patches plus prefix tokens (CLS, registers)."""
        return (self.model.image_size // self.model.patch_size) ** 2 + self.model.num_prefix_tokens

    @property
    def feature_aggregation(self) -> str:
        return self.model.config.pooling

    @property
    def visual_dim(self) -> int:
        return self.model.feature_dim

    @property
    def text_dim(self) -> int:
        return int(self.model.config.text_dim)

    @property
    def config(self) -> dict[str, Any]:
        """The published config layout (`vision_encoder`, `text_encoder`) rebuilt from the native config."""
        c = self.model.config
        return {"vision_encoder": {"model_name": c.trunk, "resolution": c.image_size,
                                   "feature_aggregation": c.pooling, "cross_attn_layers": list(c.cross_attn_layers),
                                   "use_ffn": c.use_ffn, "cross_attn_ffn_mult": c.ffn_mult},
                "text_encoder": c.text_encoder}

    @property
    def text_model(self) -> nn.Module:
        """The frozen Hugging Face text model (RoBERTa for the published checkpoints)."""
        return self._text_encoder().model

    @property
    def tokenizer(self):
        return self._text_encoder().tokenizer

    @property
    def connector(self) -> nn.Module:
        return self.model.connector

    @property
    def lin_seg_head(self) -> nn.Linear:
        return self.model.seg_head

    def _text_encoder(self):
        if self.model.text_encoder is None:
            raise AttributeError("this model has no text encoder loaded (it was dropped or never built)")
        return self.model.text_encoder

    # ------------------------------------------------------------------ the authors' methods
    def get_transforms(self):
        return self.model.get_transforms()

    def forward(self, images: torch.Tensor, texts: Sequence[str] | None = None,
                return_segmentation_logits: bool = False) -> torch.Tensor:
        """All final-normed tokens (B, prefix + N, D), or with `return_segmentation_logits` only the
        head's (B, N) logits (the native `forward(return_logits=True)` returns both)."""
        if return_segmentation_logits:
            return self.model.segmentation_logits(images, texts)
        return self.model(images, texts)

    def get_heatmap_logits(self, img_feats: torch.Tensor) -> torch.Tensor:
        """The head's logits (B, N) on tokens from `forward`: prefix tokens dropped."""
        return self.lin_seg_head(img_feats[:, self.model.num_prefix_tokens:, :]).squeeze(-1)

    @torch.no_grad()
    def get_dense_features(self, images: torch.Tensor, texts: Sequence[str] | None = None) -> torch.Tensor:
        return self.model.get_dense_features(images, texts)

    @torch.no_grad()
    def get_global_features(self, images: torch.Tensor, texts: Sequence[str] | None = None) -> torch.Tensor:
        return self.model.get_global_features(images, texts)

    @torch.no_grad()
    def get_heatmaps(self, images: torch.Tensor, texts: Sequence[str] | None = None) -> torch.Tensor:
        return self.model.get_heatmaps(images, texts)

    @torch.no_grad()
    def get_attention_heatmaps(self, images: torch.Tensor, texts: Sequence[str] | None = None, layer: int = -1,
                               head_pooling: str = "mean", remove_sinks: bool = True,
                               interpolate: bool = True) -> torch.Tensor:
        return self.model.get_attention_heatmaps(images, texts, layer, head_pooling, remove_sinks, interpolate)

    def set_gate_factor(self, factor: float) -> None:
        """Effective gate `tanh(factor * g)`, as published; sets the wrapped model's default factor
        (the stored gates are not overwritten, unlike the published code)."""
        self.model.set_gate_factor(factor)


def load_authors_style(name: str | Path, device=None, **options) -> AuthorsSteerViT:
    """`AuthorsSteerViT.from_pretrained(name, device, **options)`: a published checkpoint behind the
    authors' interface."""
    return AuthorsSteerViT.from_pretrained(name, device, **options)
