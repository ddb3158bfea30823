"""The frozen ViT trunk: creating a timm ViT (any family in `families`) and loading its weights.

SteerViT never changes timm's code. It calls the trunk's own modules in order (embed, blocks, norm)
and inserts cross-attention between them; `families` is that step-by-step view for each kind of trunk.
"""
from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn

from . import families
from .io import require_file


def create_trunk(
    name: str, image_size: int, weights: str | Path | None = None, pretrained: bool | None = None
) -> nn.Module:
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
    except TypeError as err:
        if "img_size" not in str(err):
            raise
        # Not a ViT: its constructor has no image size (a CNN, say), so there are no tokens to steer.
        raise ValueError(f"{name!r} cannot take cross-attention: it is not a ViT ({err}); SteerViT needs a "
                         f"timm ViT with a token sequence, one of: {', '.join(families.FAMILIES)}") from err
    except Exception as err:  # hub / network errors come in many types
        if pretrained:
            raise OSError(
                f"could not fetch pretrained weights for {name!r}: {err}\n"
                "Offline, pass a local state-dict file: from_pretrained(..., backbone_weights='trunk.safetensors')."
            ) from err
        raise
    families.family_of(trunk, name)  # refuses, naming it, a model SteerViT cannot steer
    if weights is not None:
        load_trunk_weights(trunk, weights)
    trunk.eval().requires_grad_(False)
    return trunk


def load_trunk_weights(trunk: nn.Module, path: str | Path) -> None:
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
    if ("pos_embed" in state and getattr(trunk, "pos_embed", None) is not None
            and state["pos_embed"].shape != trunk.pos_embed.shape):
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


def embed(trunk: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The tokens before block 0 of a trunk whose blocks take no per-block arguments (a
    VisionTransformer); `families.embed` also gives those arguments (an Eva's rotary embeddings)."""
    tokens, block_kwargs = families.embed(trunk, images)
    if any(block_kwargs):
        raise ValueError(f"the blocks of a {type(trunk).__name__} take {sorted(block_kwargs[0])} too: "
                         "use steervit.families.embed, which returns them")
    return tokens
