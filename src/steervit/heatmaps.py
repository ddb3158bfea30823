"""Turning patch scores into image heatmaps: head pooling, attention-sink suppression, normalisation.

ViTs park attention on a few background "sink" patches (high-norm register-like tokens); the published
maps suppress them with a robust outlier test before min-max normalising. Reference §3.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

HEAD_POOLINGS = ("mean", "max", "min", "median", "mean_std", "none")
SINK_PASSES = 3
SINK_MAD_SCALE = 5.0 * 1.4826  # a robust 5-sigma threshold
SINK_NEIGHBOUR_RATIO = 5.0


def pool_heads(attn: torch.Tensor, how: str) -> torch.Tensor:
    """(B, heads, N) -> (B, N), or (B, heads, N) unchanged for "none"."""
    if how == "mean":
        return attn.mean(1)
    if how == "max":
        return attn.amax(1)
    if how == "min":
        return attn.amin(1)
    if how == "median":
        return attn.median(1).values
    if how == "mean_std":
        return attn.mean(1) - attn.std(1)
    if how == "none":
        return attn
    raise ValueError(f"head_pooling must be one of {HEAD_POOLINGS}, got {how!r}")


def neighbour_mean(maps: torch.Tensor) -> torch.Tensor:
    """Mean of the 8 neighbours of every cell of (M, H, W) maps, zero-padded, over valid neighbours."""
    kernel = torch.ones(1, 1, 3, 3, dtype=maps.dtype, device=maps.device)
    kernel[0, 0, 1, 1] = 0
    x = maps[:, None]
    total = F.conv2d(x, kernel, padding=1)
    count = F.conv2d(torch.ones_like(x[:1]), kernel, padding=1)
    return (total / count)[:, 0]


def suppress_sinks(maps: torch.Tensor, passes: int = SINK_PASSES) -> torch.Tensor:
    """Replace attention-sink cells of (M, H, W) maps: by the map mean, then (last pass) by the neighbour mean."""
    maps = maps.clone()
    flat = maps.flatten(1)
    for p in range(passes):
        med = flat.median(dim=1, keepdim=True).values
        mad = (flat - med).abs().median(dim=1, keepdim=True).values + 1e-8
        threshold = med + SINK_MAD_SCALE * mad
        nbr = neighbour_mean(maps).flatten(1)
        sink = (flat > threshold) & (flat > nbr) & (flat > SINK_NEIGHBOUR_RATIO * nbr + 1e-8)
        fill = nbr if p == passes - 1 else flat.mean(dim=1, keepdim=True).expand_as(flat)
        flat = torch.where(sink, fill, flat)
        maps = flat.view_as(maps)
    return maps


def minmax(maps: torch.Tensor) -> torch.Tensor:
    """Per-map `(x - min) / (max - min + 1e-6)` over the last two dims."""
    flat = maps.flatten(-2)
    lo = flat.amin(-1, keepdim=True)
    hi = flat.amax(-1, keepdim=True)
    return ((flat - lo) / (hi - lo + 1e-6)).view_as(maps)


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear (align_corners=False) resize of (..., h, w) maps to (..., H, W)."""
    lead = maps.shape[:-2]
    out = F.interpolate(maps.reshape(-1, 1, *maps.shape[-2:]), size=size, mode="bilinear", align_corners=False)
    return out.view(*lead, *size)


def attention_heatmaps(
    cls_attn: torch.Tensor,
    grid: tuple[int, int],
    image_size: tuple[int, int],
    head_pooling: str = "mean",
    remove_sinks: bool = True,
    interpolate: bool = True,
) -> torch.Tensor:
    """CLS->patch attention (B, heads, N) -> (B, H, W) maps (or (B, heads, H, W) for head_pooling="none")."""
    pooled = pool_heads(cls_attn, head_pooling)
    maps = pooled.reshape(*pooled.shape[:-1], *grid)
    lead = maps.shape[:-2]
    maps = maps.reshape(-1, *grid)
    if remove_sinks:
        maps = suppress_sinks(maps)
    maps = minmax(maps).view(*lead, *grid)
    return upsample(maps, image_size) if interpolate else maps
