"""Gated cross-attention: image tokens read the text tokens, through a tanh gate that starts at 0.

Flamingo-style: the gate is a scalar initialised to zero, so a fresh layer is the identity and the
frozen ViT is untouched until training opens the gate. The effective gate is `tanh(factor * gate)`;
`factor` is the published "gate factor" knob (0 = plain trunk, 1 = trained model) and is kept apart
from the stored parameter so changing it never alters what gets saved.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CrossAttention(nn.Module):
    """Multi-head attention from (normalised) image tokens to text tokens; no biases, no dropout."""

    def __init__(self, dim: int, heads: int = 16, head_dim: int = 72) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = head_dim
        inner = heads * head_dim
        self.norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, 2 * inner, bias=False)  # rows: K (head-major), then V
        self.to_out = nn.Linear(inner, dim, bias=False)
        self.factorise = True  # use the cheaper, equivalent form for short prompts

    def forward(self, x: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        """x: (B, N, D) image tokens; text: (B, L, D) connector outputs; text_mask: (B, L) True = keep."""
        if self.factorise and text.shape[1] < self.head_dim:
            return self.forward_factorised(x, text, text_mask)
        return self.forward_direct(x, text, text_mask)

    def forward_direct(self, x: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        """The textbook form: project every image token to queries, attend, project back (SDPA)."""
        b, n, _ = x.shape
        q = self.to_q(self.norm(x)).view(b, n, self.heads, self.head_dim).transpose(1, 2)
        k, v = self.to_kv(text).chunk(2, dim=-1)
        k = k.view(b, -1, self.heads, self.head_dim).transpose(1, 2)
        v = v.view(b, -1, self.heads, self.head_dim).transpose(1, 2)
        mask = text_mask[:, None, None, :].to(torch.bool)  # broadcast over heads and queries
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.to_out(out.transpose(1, 2).reshape(b, n, self.heads * self.head_dim))

    def forward_factorised(self, x: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        """The same function, associated the cheap way round when prompts are short (L < head_dim).

        Scores `LN(x) W_q,h^T k_h^T` need only `W_q,h^T k_h` (D x L per head), and the output
        `sum_h A_h v_h W_o,h^T` only `v_h W_o,h^T` (L x D per head), both computed once per prompt.
        Per image token that is 2*H*L*D multiply-adds instead of 2*H*head_dim*D.
        """
        b, n, d = x.shape
        length = text.shape[1]
        k, v = self.to_kv(text).chunk(2, dim=-1)
        k = k.view(b, length, self.heads, self.head_dim)
        v = v.view(b, length, self.heads, self.head_dim)
        w_q = self.to_q.weight.view(self.heads, self.head_dim, d)
        w_o = self.to_out.weight.view(d, self.heads, self.head_dim)
        keys = torch.einsum("blhe,hed->bhld", k, w_q) * self.head_dim**-0.5  # (B, H, L, D)
        values = torch.einsum("blhe,dhe->bhld", v, w_o)  # (B, H, L, D)
        scores = self.norm(x) @ keys.reshape(b, self.heads * length, d).transpose(1, 2)
        scores = scores.view(b, n, self.heads, length)
        scores = scores.masked_fill(~text_mask[:, None, None, :].to(torch.bool), float("-inf"))
        probs = scores.softmax(-1).to(values.dtype).view(b, n, self.heads * length)
        return probs @ values.reshape(b, self.heads * length, d)


class FeedForward(nn.Sequential):
    """LN -> Linear(d, mult*d) -> GELU -> Linear(mult*d, d); indices match the published keys (ff.0/1/3)."""

    def __init__(self, dim: int, mult: int = 2) -> None:
        super().__init__(
            nn.LayerNorm(dim),
            nn.Linear(dim, mult * dim, bias=False),
            nn.GELU(),
            nn.Linear(mult * dim, dim, bias=False),
        )


def make_gate(kind: str) -> nn.Parameter | None:
    """A learned scalar gate for a residual branch (None for the ungated ablation)."""
    if kind in ("tanh", "sigmoid"):
        return nn.Parameter(torch.zeros(1))
    if kind == "tanh_normal":
        return nn.Parameter(torch.randn(1))
    if kind == "none":
        return None
    raise ValueError(f"unknown gate {kind!r}")


def gate_value(kind: str, gate: nn.Parameter | None, factor: float) -> torch.Tensor | float:
    """The multiplier on a residual branch; `factor` is the published gate-factor knob.

    tanh / tanh_normal: `tanh(factor * g)` (the published semantics); sigmoid: `factor * sigmoid(g)`;
    none: `factor`. Every kind is exactly 0 at factor 0.
    """
    if kind == "none":
        return factor
    if kind == "sigmoid":
        return factor * torch.sigmoid(gate)
    return torch.tanh(factor * gate)


class GatedCrossAttention(nn.Module):
    """`x + gate * CA(x, text)` and, optionally, `+ gate_ff * FFN(x)`.

    Gate kinds: tanh with g = 0 at init (default: the fresh model equals the frozen trunk), and the
    ablations tanh_normal (g ~ N(0, 1)), sigmoid (g = 0: half open at init) and none (ungated).
    """

    def __init__(self, dim: int, heads: int = 16, head_dim: int = 72, use_ffn: bool = False,
                 ffn_mult: int = 2, gate: str = "tanh") -> None:
        super().__init__()
        self.gate_kind = gate
        self.cross_attn = CrossAttention(dim, heads, head_dim)
        self.attn_gate = make_gate(gate)
        self.ff = FeedForward(dim, ffn_mult) if use_ffn else None
        self.ff_gate = make_gate(gate) if use_ffn else None
        self.gate_factor = 1.0

    def forward(self, x: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor,
                gate_factor: float | None = None) -> torch.Tensor:
        """`gate_factor` for this call only; None uses the layer's own (`self.gate_factor`)."""
        factor = self.gate_factor if gate_factor is None else gate_factor
        if factor == 0.0:  # every gate kind is exactly 0 here: skip the work, return x exactly
            return x
        x = x + gate_value(self.gate_kind, self.attn_gate, factor) * self.cross_attn(x, text, text_mask)
        if self.ff is not None:
            x = x + gate_value(self.gate_kind, self.ff_gate, factor) * self.ff(x)
        return x
