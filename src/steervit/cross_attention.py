"""Gated cross-attention: image tokens read the text tokens, through a tanh gate that starts at 0.

Flamingo-style: the gate is a scalar initialised to zero, so a fresh layer is the identity and the
frozen ViT is untouched until training opens the gate. The effective gate is `tanh(factor * gate)`;
`factor` is the published "gate factor" knob (0 = plain trunk, 1 = trained model) and is kept apart
from the stored parameter so changing it never alters what gets saved.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class PromptKeys(NamedTuple):
    """One layer's keys and values for P prompts, in the form its attention uses (`CrossAttention.prompt_keys`).

    They depend on the prompt only, so images that share a prompt share them: many prompts per image
    compute them once per prompt and pick each image's rows with `select`."""

    keys: torch.Tensor  # factorised: (P, H*L, D), W_q folded in and scaled; direct: (P, H, L, head_dim)
    values: torch.Tensor  # factorised: (P, H*L, D), W_o folded in; direct: (P, H, L, head_dim)
    mask: torch.Tensor  # (P, L) bool, True = real token
    factorised: bool

    def select(self, rows: torch.Tensor) -> "PromptKeys":
        """The prompts at `rows` (indices into P), e.g. the prompt of each image-prompt pair of a chunk."""
        return PromptKeys(self.keys[rows], self.values[rows], self.mask[rows], self.factorised)


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
        return self.attend(x, self.prompt_keys(text, text_mask))

    def forward_direct(self, x: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        """The textbook form: project every image token to queries, attend, project back (SDPA)."""
        return self.attend(x, self.prompt_keys(text, text_mask, factorised=False))

    def forward_factorised(self, x: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        """The same function, associated the cheap way round when prompts are short (L < head_dim).

        Scores `LN(x) W_q,h^T k_h^T` need only `W_q,h^T k_h` (D x L per head), and the output
        `sum_h A_h v_h W_o,h^T` only `v_h W_o,h^T` (L x D per head), both computed once per prompt.
        Per image token that is 2*H*L*D multiply-adds instead of 2*H*head_dim*D.
        """
        return self.attend(x, self.prompt_keys(text, text_mask, factorised=True))

    def prompt_keys(self, text: torch.Tensor, text_mask: torch.Tensor, factorised: bool | None = None) -> PromptKeys:
        """The half of the layer that depends on the prompt only: keys and values of `text` (P, L, D).

        `factorised`: None picks the form as `forward` does (factorised for short prompts)."""
        if factorised is None:
            factorised = self.factorise and text.shape[1] < self.head_dim
        p, length, d = text.shape
        k, v = self.to_kv(text).chunk(2, dim=-1)
        k = k.view(p, length, self.heads, self.head_dim)
        v = v.view(p, length, self.heads, self.head_dim)
        mask = text_mask.to(torch.bool)
        if not factorised:
            return PromptKeys(k.transpose(1, 2), v.transpose(1, 2), mask, False)
        w_q = self.to_q.weight.view(self.heads, self.head_dim, d)
        w_o = self.to_out.weight.view(d, self.heads, self.head_dim)
        keys = torch.einsum("blhe,hed->bhld", k, w_q) * self.head_dim**-0.5  # (P, H, L, D)
        values = torch.einsum("blhe,dhe->bhld", v, w_o)  # (P, H, L, D)
        return PromptKeys(keys.reshape(p, self.heads * length, d), values.reshape(p, self.heads * length, d), mask, True)

    def attend(self, x: torch.Tensor, prompt: PromptKeys) -> torch.Tensor:
        """The half that depends on the image: tokens x (B, N, D) read `prompt` (one prompt per row)."""
        b, n, d = x.shape
        if not prompt.factorised:
            q = self._queries(x)
            mask = prompt.mask[:, None, None, :]  # broadcast over heads and queries
            out = F.scaled_dot_product_attention(q, prompt.keys, prompt.values, attn_mask=mask)
            return self.to_out(out.transpose(1, 2).reshape(b, n, self.heads * self.head_dim))
        length = prompt.mask.shape[1]
        scores = (self.norm(x) @ prompt.keys.transpose(1, 2)).view(b, n, self.heads, length)
        scores = scores.masked_fill(~prompt.mask[:, None, None, :], float("-inf"))
        probs = scores.softmax(-1).to(prompt.values.dtype).view(b, n, self.heads * length)
        return probs @ prompt.values

    def attention_probs(self, x: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        """The probabilities (B, heads, N, L) with which each image token reads each text token.

        The same projections (norm, to_q, the K half of to_kv) and scale as `forward`; padded text
        positions get exactly 0 and each row sums to 1 over the real tokens. For reading out where a
        prompt steers, not for the forward pass (whose factorised form never materialises this tensor)."""
        prompt = self.prompt_keys(text, text_mask, factorised=False)
        scores = (self._queries(x) @ prompt.keys.transpose(-2, -1)) * self.head_dim**-0.5
        scores = scores.masked_fill(~prompt.mask[:, None, None, :], float("-inf"))
        return scores.softmax(-1)

    def _queries(self, x: torch.Tensor) -> torch.Tensor:
        """Per-head queries (B, H, N, head_dim) of the normalised image tokens (the textbook form)."""
        b, n, _ = x.shape
        return self.to_q(self.norm(x)).view(b, n, self.heads, self.head_dim).transpose(1, 2)


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

    def forward(self, x: torch.Tensor, text: torch.Tensor | PromptKeys, text_mask: torch.Tensor | None = None,
                gate_factor: float | None = None) -> torch.Tensor:
        """`text` (B, L, D) with `text_mask` (B, L), or this layer's `PromptKeys` for each row of x
        (from `self.cross_attn.prompt_keys`, then no mask); `gate_factor` for this call only, None
        uses the layer's own (`self.gate_factor`)."""
        factor = self.gate_factor if gate_factor is None else gate_factor
        if factor == 0.0:  # every gate kind is exactly 0 here: skip the work, return x exactly
            return x
        read = (self.cross_attn.attend(x, text) if isinstance(text, PromptKeys)
                else self.cross_attn(x, text, text_mask))
        x = x + gate_value(self.gate_kind, self.attn_gate, factor) * read
        if self.ff is not None:
            x = x + gate_value(self.gate_kind, self.ff_gate, factor) * self.ff(x)
        return x
