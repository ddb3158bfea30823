"""The frozen ViT trunk: creating a timm VisionTransformer and reading its blocks step by step.

SteerViT never changes timm's code. It calls the trunk's own modules in order (embed, blocks, norm)
and inserts cross-attention between them; the functions here are that step-by-step view.
"""
from __future__ import annotations

from pathlib import Path

import timm
import torch
from timm.models.vision_transformer import VisionTransformer

from .io import require_file


def create_trunk(
    name: str, image_size: int, weights: str | Path | None = None, pretrained: bool | None = None
) -> VisionTransformer:
    """Build timm `name` at `image_size` with dynamic position-embedding interpolation.

    Weights come from `weights` (a local state-dict file: .safetensors, or a .pth/.bin read with
    `weights_only=True`) or, when `pretrained` is true, from timm's pretrained mechanism.
    """
    if pretrained is None:
        pretrained = weights is None
    try:
        trunk = timm.create_model(
            name, pretrained=pretrained, num_classes=0, img_size=image_size, dynamic_img_size=True
        )
    except RuntimeError as err:
        if "Unknown model" in str(err):
            raise ValueError(f"unknown timm model {name!r}") from err
        raise OSError(
            f"could not fetch pretrained weights for {name!r}: {err}\n"
            "Offline, pass a local state-dict file: from_pretrained(..., backbone_weights='trunk.safetensors')."
        ) from err
    except Exception as err:  # hub / network errors come in many types
        if pretrained:
            raise OSError(
                f"could not fetch pretrained weights for {name!r}: {err}\n"
                "Offline, pass a local state-dict file: from_pretrained(..., backbone_weights='trunk.safetensors')."
            ) from err
        raise
    if not isinstance(trunk, VisionTransformer):
        raise ValueError(f"{name!r} is a {type(trunk).__name__}, SteerViT needs a timm VisionTransformer")
    if weights is not None:
        load_trunk_weights(trunk, weights)
    trunk.eval().requires_grad_(False)
    return trunk


def load_trunk_weights(trunk: VisionTransformer, path: str | Path) -> None:
    """Load a local trunk state dict strictly (ignoring only a classifier head the trunk does not have)."""
    path = require_file(path, "backbone weights")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state.get("model", state)) if isinstance(state, dict) else state
    state = {k: v for k, v in state.items() if not k.startswith(("head.", "fc_norm."))
             or k in trunk.state_dict()}
    if "pos_embed" in state and state["pos_embed"].shape != trunk.pos_embed.shape:
        from timm.layers import resample_abs_pos_embed

        state["pos_embed"] = resample_abs_pos_embed(
            state["pos_embed"],
            new_size=trunk.patch_embed.grid_size,
            num_prefix_tokens=0 if trunk.no_embed_class else trunk.num_prefix_tokens,
        )
    own = trunk.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items()
             if k in own and v.shape != own[k].shape]
    if missing or unexpected or wrong:
        raise ValueError(
            f"backbone weights {path} do not fit this trunk: missing {missing[:8]}"
            f"{'...' if len(missing) > 8 else ''}, unexpected {unexpected[:8]}"
            f"{'...' if len(unexpected) > 8 else ''}, wrong shapes {wrong[:4]}"
        )
    trunk.load_state_dict(state)


def embed(trunk: VisionTransformer, images: torch.Tensor) -> torch.Tensor:
    """Patch embedding, prefix tokens and (interpolated) position embedding: the tokens before block 0."""
    x = trunk.patch_embed(images)
    x = trunk._pos_embed(x)
    x = trunk.patch_drop(x)
    return trunk.norm_pre(x)


def self_attention_probs(block: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Softmax attention probabilities (B, heads, N, N) of `block`'s self-attention on input `x`.

    Computed from the block's own modules (norm1, qkv, q/k norms), the same arithmetic as timm's
    unfused path, so the fused block forward stays untouched.
    """
    attn = block.attn
    b, n, _ = x.shape
    qkv = attn.qkv(block.norm1(x)).reshape(b, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k, _ = qkv.unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    return ((q * attn.scale) @ k.transpose(-2, -1)).float().softmax(dim=-1)
