"""The connector ("multimodal adapter"): maps frozen text-encoder tokens into the ViT's width."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Connector(nn.Module):
    """L2-normalise each text token, then Linear -> ReLU -> Linear (both with bias).

    `kind="linear"` is the ablation's single Linear(d_t, d_v) instead of the MLP.
    """

    def __init__(self, text_dim: int, vision_dim: int, kind: str = "mlp") -> None:
        super().__init__()
        if kind == "mlp":
            self.mlp = nn.Sequential(nn.Linear(text_dim, text_dim), nn.ReLU(), nn.Linear(text_dim, vision_dim))
        elif kind == "linear":
            self.mlp = nn.Sequential(nn.Linear(text_dim, vision_dim))
        else:
            raise ValueError(f"connector must be 'mlp' or 'linear', got {kind!r}")
        for layer in self.mlp:
            if not isinstance(layer, nn.Linear):
                continue
            nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(layer.bias)

    def forward(self, text_states: torch.Tensor) -> torch.Tensor:
        # normalise in fp32: in fp16 the epsilon underflows and zero (padding) rows become NaN
        return self.mlp(F.normalize(text_states.float(), dim=-1).to(text_states.dtype))
