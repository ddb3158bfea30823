"""Trunk families: which kind of timm ViT a trunk is, and how SteerViT runs it step by step.

SteerViT puts cross-attention between a trunk's blocks, so it cannot call `forward_features`; it
calls the trunk's own modules in the order `forward_features` does. That order depends on the timm
class, and only two steps differ between the classes supported here:

- the embedding (what comes before block 0): a `VisionTransformer` (DINOv2, MAE, DeiT, SigLIP)
  gives tokens only; an `Eva` (EVA-02, DINOv3) also gives rotary position embeddings, which every
  block takes as `rope=`. `embed` returns the tokens and one keyword-argument dict per block.
- a block's self-attention probabilities (for CLS-attention heatmaps), computed from the block's own
  modules with the arithmetic of timm's unfused attention path, rotary embeddings included.

Everything else (blocks, final norm, prefix-token count) is read off the trunk itself. A trunk this
module does not know how to run step by step is refused with an error that names it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import Attention, AttentionRope, PatchEmbed, RotaryEmbeddingDinoV3, apply_rot_embed_cat
from timm.models.deit import VisionTransformerDistilled
from timm.models.eva import Eva, EvaAttention, EvaBlock, EvaBlockPostNorm
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn

# Keyword arguments for each trunk block, indexed by block: `trunk.blocks[i](x, **block_kwargs[i])`.
BlockKwargs = list[dict[str, Any]]

FAMILIES = {
    "vit": "timm VisionTransformer with a CLS token (DINOv2, MAE, DeiT, ...)",
    "vit-registers": "timm VisionTransformer with a CLS token and register tokens (DINOv2 with registers)",
    "vit-no-cls": "timm VisionTransformer without a CLS token (SigLIP, SigLIP 2); its pooling head is not run",
    "deit-distilled": "timm VisionTransformerDistilled: CLS and distillation tokens (distilled DeiT)",
    "eva": "timm Eva: blocks take rotary position embeddings (EVA-02, RoPE ViTs, ...)",
    "dinov3": "timm Eva with DINOv3's rotary position embeddings (DINOv3: CLS and 4 register tokens)",
}


@dataclass(frozen=True)
class TrunkFamily:
    """What SteerViT needs to know about a trunk's kind: its name, whether token 0 is a CLS token, how
    many prefix (CLS, register, distillation) tokens come before the patch tokens, and the keyword
    arguments its blocks take besides the tokens (`embed` makes them)."""

    name: str
    has_cls: bool
    num_prefix_tokens: int
    block_arguments: tuple[str, ...] = ()

    @property
    def description(self) -> str:
        return FAMILIES[self.name]


def family_of(trunk: nn.Module, name: str | None = None) -> TrunkFamily:
    """The family of `trunk` (timm model `name`, for messages), or a ValueError saying why SteerViT
    cannot put cross-attention into it."""
    kind = f"{name!r} ({type(trunk).__name__})" if name else type(trunk).__name__
    if isinstance(trunk, VisionTransformer):
        runs_as = VisionTransformer.forward_features
    elif isinstance(trunk, Eva):
        runs_as = Eva.forward_features
    else:
        raise ValueError(
            f"{kind} cannot take cross-attention: SteerViT needs a timm ViT with a token sequence "
            f"(VisionTransformer or Eva), one of: {', '.join(FAMILIES)}")
    if type(trunk).forward_features is not runs_as:
        # A subclass with its own forward order: running timm's order step by step would not be its forward.
        raise ValueError(f"{kind} has its own forward_features; SteerViT can only run timm's "
                         f"{runs_as.__qualname__.split('.')[0]} order step by step")
    if not isinstance(trunk.patch_embed, PatchEmbed):
        raise ValueError(
            f"{kind} has a {type(trunk.patch_embed).__name__} (e.g. a hybrid CNN stem) and cannot "
            "take cross-attention: SteerViT needs plain patch embedding, one token per image patch")
    has_cls = trunk.cls_token is not None
    if isinstance(trunk, Eva):
        family = "dinov3" if isinstance(trunk.rope, RotaryEmbeddingDinoV3) else "eva"
    elif isinstance(trunk, VisionTransformerDistilled):
        family = "deit-distilled"
    elif not has_cls:
        family = "vit-no-cls"
    else:
        family = "vit-registers" if trunk.reg_token is not None else "vit"
    block_arguments = ("rope",) if isinstance(trunk, Eva) else ()
    return TrunkFamily(family, has_cls, int(trunk.num_prefix_tokens), block_arguments)


def embed(trunk: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, BlockKwargs]:
    """The tokens before block 0 and each block's keyword arguments, as `forward_features` makes them.

    Patch embedding, prefix tokens, position embedding (interpolated to the image's grid), patch
    dropout and pre-norm; for an `Eva`, also its rotary embeddings (one per block in timm's "mixed"
    RoPE, where every block has its own)."""
    depth = len(trunk.blocks)
    if isinstance(trunk, Eva):
        x, rope = trunk._pos_embed(trunk.patch_embed(images))
        x = trunk.norm_pre(x)
        if rope is not None and trunk.rope_mixed:
            return x, [{"rope": rope[i]} for i in range(depth)]
        return x, [{"rope": rope}] * depth
    x = trunk._pos_embed(trunk.patch_embed(images))
    x = trunk.norm_pre(trunk.patch_drop(x))
    return x, [{}] * depth


def self_attention_probs(block: nn.Module, x: torch.Tensor, **block_kwargs: Any) -> torch.Tensor:
    """Softmax attention probabilities (B, heads, N, N) of `block`'s self-attention on input `x`.

    Computed from the block's own modules (norm, q/k projections and norms, rotary embedding), the
    same arithmetic as timm's unfused path, so the fused block forward stays untouched."""
    if isinstance(block, Block) and type(block.attn) is Attention:
        q, k = _vit_query_key(block.attn, block.norm1(x))
    elif isinstance(block, (EvaBlock, EvaBlockPostNorm)) and isinstance(block.attn, (EvaAttention, AttentionRope)):
        # A post-norm block normalises the attention output, not its input.
        q, k = _eva_query_key(block.attn, x if isinstance(block, EvaBlockPostNorm) else block.norm1(x),
                              block_kwargs.get("rope"))
    else:
        raise ValueError(f"cannot read self-attention probabilities from a {type(block).__name__} with "
                         f"{type(block.attn).__name__}: only timm's Block and EvaBlock attention is known here")
    return ((q * block.attn.scale) @ k.transpose(-2, -1)).float().softmax(dim=-1)


def _vit_query_key(attn: Attention, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    b, n, _ = x.shape
    qkv = attn.qkv(x).reshape(b, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k, _ = qkv.unbind(0)
    return attn.q_norm(q), attn.k_norm(k)


def _eva_query_key(attn: EvaAttention | AttentionRope, x: torch.Tensor,
                   rope: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    b, n, _ = x.shape
    if attn.qkv is not None:
        if isinstance(attn, EvaAttention) and attn.q_bias is not None:
            # EvaAttention keeps the q/v biases apart from the projection (and has no k bias).
            bias = torch.cat((attn.q_bias, attn.k_bias, attn.v_bias))
            qkv = attn.qkv(x) + bias if attn.qkv_bias_separate else F.linear(x, attn.qkv.weight, bias)
        else:
            qkv = attn.qkv(x)
        q, k, _ = qkv.reshape(b, n, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
    else:
        q = attn.q_proj(x).reshape(b, n, attn.num_heads, -1).transpose(1, 2)
        k = attn.k_proj(x).reshape(b, n, -1, attn.head_dim).transpose(1, 2)  # fewer heads with grouped queries
    q, k = attn.q_norm(q), attn.k_norm(k)
    if rope is not None:  # rotary embedding of the patch tokens; the prefix tokens have no position
        npt = attn.num_prefix_tokens
        q = torch.cat([q[:, :, :npt], apply_rot_embed_cat(q[:, :, npt:], rope, half=attn.rotate_half)], dim=2)
        k = torch.cat([k[:, :, :npt], apply_rot_embed_cat(k[:, :, npt:], rope, half=attn.rotate_half)], dim=2)
    groups = getattr(attn, "num_kv_groups", 1)
    if groups > 1:  # grouped-query attention: each key head serves `groups` query heads
        k = k.repeat_interleave(groups, dim=1)
    return q, k


def check_exportable(model, image_size: int | None = None) -> None:
    """Refuse, with the reason, a model whose trunk the ONNX export's forward cannot reproduce.

    The export re-implements a VisionTransformer's embedding (with the position embedding resampled
    once, for an image size other than the trunk's) and calls the blocks without arguments. An Eva's
    blocks need rotary embeddings; a distilled DeiT's distillation token is not in the re-implemented
    embedding, so it exports at its own image size only, where timm's embedding is used as is."""
    family = model.family
    if family.block_arguments:
        raise ValueError(f"ONNX export does not support the {family.name} trunk family ({model.config.trunk}): "
                         f"its blocks take {', '.join(family.block_arguments)} (rotary position embeddings), "
                         "which the export does not pass; use the PyTorch model, or a VisionTransformer trunk")
    size = int(image_size or model.image_size)
    native = tuple(model.trunk.patch_embed.grid_size)
    if family.name == "deit-distilled" and (size // model.patch_size,) * 2 != native:
        own = native[0] * model.patch_size
        raise ValueError(f"the deit-distilled trunk ({model.config.trunk}) exports at its own image size only, "
                         f"not {size}: the export's resampled embedding has no distillation token; "
                         f"export with image_size={own}")
