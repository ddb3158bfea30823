"""The referential-segmentation objective at patch level (reference §4)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def patch_targets(masks: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Binary masks (B, H, W) -> (B, N) soft targets: mask average-pooled per patch, renormalised to sum 1.

    An empty mask gives an all-zero target (it then contributes no loss).
    """
    if masks.ndim not in (3, 4):
        raise ValueError(f"masks must be (B, H, W), got {tuple(masks.shape)}")
    pooled = patch_coverage(masks, patch_size)
    total = pooled.sum(1, keepdim=True)
    return torch.where(total > 0, pooled / total.clamp_min(1e-12), torch.zeros_like(pooled))


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of `-sum_i y_i log softmax(logits)_i` (logits and targets (B, N))."""
    if logits.shape != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ")
    return -(targets * logits.float().log_softmax(-1)).sum(-1).mean()


def patch_coverage(masks: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Share of each patch's pixels inside the mask, (B, H, W) -> (B, N)."""
    if masks.ndim == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    return F.avg_pool2d(masks[:, None].float(), kernel_size=patch_size, stride=patch_size).flatten(1)


def probability_mass(logits: torch.Tensor, masks: torch.Tensor, patch_size: int) -> torch.Tensor:
    """`pmass` per sample (reference §4): the softmax mass on the patches inside the mask, i.e. on the
    support of the soft target (every patch holding part of the object)."""
    return (logits.float().softmax(-1) * (patch_coverage(masks, patch_size) > 0)).sum(-1)


def pixel_probability_mass(logits: torch.Tensor, masks: torch.Tensor, patch_size: int) -> torch.Tensor:
    """A stricter `pmass`: each patch's mass spread over its pixels, so a patch half inside counts half.

    Reported beside `pmass`. Even the loss's own optimum (softmax = target) scores sum(c^2)/sum(c) here,
    well below 1 for objects a few patches wide.
    """
    return (logits.float().softmax(-1) * patch_coverage(masks, patch_size)).sum(-1)


def pointing_targets(masks: torch.Tensor, patch_size: int, sigma: float = 1.1) -> torch.Tensor:
    """The pointing ablation's soft target: a Gaussian of `sigma` patches at the mask's box centre.

    (B, H, W) masks -> (B, N), each row summing to 1 (all zeros for an empty mask).
    """
    if masks.ndim == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    b, h, w = masks.shape
    gh, gw = h // patch_size, w // patch_size
    # patch centres in pixel units
    ys = (torch.arange(gh, dtype=torch.float32) + 0.5) * patch_size
    xs = (torch.arange(gw, dtype=torch.float32) + 0.5) * patch_size
    out = torch.zeros(b, gh * gw)
    for i in range(b):
        rows = torch.nonzero(masks[i].any(1)).flatten()
        cols = torch.nonzero(masks[i].any(0)).flatten()
        if rows.numel() == 0:
            continue
        cy = (rows.min() + rows.max() + 1).float() / 2  # box centre, pixel edges inclusive
        cx = (cols.min() + cols.max() + 1).float() / 2
        d2 = ((ys[:, None] - cy) ** 2 + (xs[None, :] - cx) ** 2) / patch_size**2
        g = torch.exp(-d2 / (2 * sigma**2)).flatten()
        out[i] = g / g.sum()
    return out.to(masks.device)
