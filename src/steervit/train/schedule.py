"""Learning-rate schedule of the recipe: linear warm-up, cosine decay, then constant (reference §4).

Paper: warm-up to 3e-4 over 5k steps, cosine to 3e-5 by step 40k, constant after. Released config:
no warm-up, 6e-4 cosine to 6e-5 over 25k. A `LambdaLR` with a picklable factor object, so the
scheduler's state dict round-trips through checkpoints like any other.
"""
from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


class WarmupCosine:
    """Multiplier on each group's base rate at optimiser step `step` (0-based)."""

    def __init__(self, warmup_iters: int, decay_iters: int, min_ratio: float) -> None:
        if warmup_iters < 0 or decay_iters < 0:
            raise ValueError("warmup_iters and decay_iters must be >= 0")
        if not 0.0 <= min_ratio <= 1.0:
            raise ValueError(f"min_lr / lr must lie in [0, 1], got {min_ratio}")
        self.warmup_iters = int(warmup_iters)
        self.decay_iters = max(int(decay_iters), self.warmup_iters)
        self.min_ratio = float(min_ratio)

    def __call__(self, step: int) -> float:
        if step < self.warmup_iters:
            return (step + 1) / self.warmup_iters  # the first step already moves
        span = self.decay_iters - self.warmup_iters
        if step >= self.decay_iters or span == 0:
            return self.min_ratio
        progress = (step - self.warmup_iters) / span
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer: Optimizer, optim_cfg) -> LambdaLR:
    """`optim_cfg` has lr, min_lr, warmup_iters, decay_iters; every group follows the same shape."""
    ratio = optim_cfg.min_lr / optim_cfg.lr if optim_cfg.lr > 0 else 1.0
    return LambdaLR(optimizer, WarmupCosine(optim_cfg.warmup_iters, optim_cfg.decay_iters, ratio))
