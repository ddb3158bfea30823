"""The frozen text side: a Hugging Face encoder, its tokenizer, a prompt cache, and text embeddings.

`TextEncoder` turns prompts into per-token hidden states (frozen, so they can be cached per prompt).
`TextEmbedding` is what the image side consumes: connector outputs plus a padding mask. It can be
saved and loaded, so a deployed model can drop the text encoder entirely.
"""
from __future__ import annotations

import bisect
import json
import re
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from safetensors.torch import load_file, save_file
from torch import nn

MAX_TEXT_TOKENS = 512  # the published tokenizer call: padding, truncation, max_length=512


def check_prompt_list(prompts: Sequence[str]) -> list[str]:
    """Reject what cannot be a prompt: non-strings and empty or blank strings."""
    if isinstance(prompts, str):
        raise TypeError("prompts must be a list of strings, not a single string")
    prompts = list(prompts)
    if not prompts:
        raise ValueError("no prompts given")
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise TypeError(f"prompt {i} is {type(p).__name__}, expected str")
        if not p.strip():
            raise ValueError(f"prompt {i} is empty; give a referring expression such as 'the red car'")
    return prompts


class TextEncoder(nn.Module):
    """A frozen `AutoModel` + `AutoTokenizer` with an LRU cache of per-prompt token states."""

    def __init__(self, name_or_path: str, cache_size: int = 1024) -> None:
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        self.name = str(name_or_path)
        if _looks_like_path(self.name) and not Path(self.name).expanduser().is_dir():
            raise FileNotFoundError(f"text encoder folder not found: {self.name}")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.name)
            self.model = AutoModel.from_pretrained(self.name)
        except OSError as err:
            raise OSError(
                f"could not load text encoder {self.name!r}: {err}\n"
                "Offline, pass a local folder with the model and tokenizer, e.g. "
                "SteerViT.from_pretrained(..., text_encoder='/path/to/roberta-large')."
            ) from err
        self.model.eval().requires_grad_(False)
        self.max_length = min(MAX_TEXT_TOKENS, int(self.tokenizer.model_max_length or MAX_TEXT_TOKENS),
                              _position_limit(self.model.config))
        self.cache_size = cache_size
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def train(self, mode: bool = True) -> "TextEncoder":
        """The encoder is frozen and always stays in eval mode (no dropout)."""
        super().train(False)
        return self

    def tokenize(self, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        prompts = check_prompt_list(prompts)
        batch = self.tokenizer(
            prompts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        full = self.tokenizer(prompts, truncation=False)["input_ids"]
        long = [i for i, ids in enumerate(full) if len(ids) > self.max_length]
        if long:
            warnings.warn(
                f"prompts {long} exceed the text encoder's limit of {self.max_length} tokens "
                "and were truncated",
                stacklevel=3,
            )
        return batch

    def words(self, prompt: str) -> list[tuple[str, list[int]]]:
        """The prompt's words (runs of non-space characters) with the positions of their tokens in
        `encode`'s output for this prompt; special tokens (<s>, </s>, [CLS]) belong to no word.

        Subword tokens are merged by the tokenizer's character offsets, so "red-nosed" is one word
        however it is split. Needs a fast tokenizer (one that reports offsets)."""
        (prompt,) = check_prompt_list([prompt])
        if not self.tokenizer.is_fast:
            raise ValueError(f"the tokenizer of {self.name} reports no character offsets (it is not a fast "
                             "tokenizer), so its tokens cannot be matched to words")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the same truncation encode() applies and reports
            batch = self.tokenizer(prompt, truncation=True, max_length=self.max_length,
                                   return_offsets_mapping=True, return_special_tokens_mask=True)
        spans = [m.span() for m in re.finditer(r"\S+", prompt)]
        starts = [start for start, _ in spans]
        positions: dict[int, list[int]] = {}
        for position, ((start, end), special) in enumerate(zip(batch["offset_mapping"],
                                                                batch["special_tokens_mask"])):
            text = prompt[start:end]
            if special or not text.strip():
                continue
            first = start + len(text) - len(text.lstrip())  # byte-level tokens may start with the space
            positions.setdefault(bisect.bisect_right(starts, first) - 1, []).append(position)
        return [(prompt[slice(*spans[w])], found) for w, found in sorted(positions.items())]

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token states (P, L, d_t) and mask (P, L), padded to the longest prompt; cached per prompt."""
        prompts = check_prompt_list(prompts)
        found = {p: self._cache[p] for p in prompts if p in self._cache}
        missing = [p for p in dict.fromkeys(prompts) if p not in found]
        if missing:
            self.tokenize(missing)  # one warning for all over-long prompts
            device = next(self.model.parameters()).device
            for prompt in missing:
                found[prompt] = self._encode_alone(prompt, device)
        for prompt in dict.fromkeys(prompts):  # most recently used last
            self._remember(prompt, found[prompt])
        return pad_sequences([found[p] for p in prompts])

    def _encode_alone(self, prompt: str, device: torch.device) -> torch.Tensor:
        """One prompt in a batch of its own, unpadded: its states never depend on which other prompts
        were encoded with it (padding changes the kernels' shapes and so the float rounding), so a
        cached prompt is bitwise the same whatever batch first brought it, before and after a resume."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # truncation was reported once, in encode()
            batch = self.tokenizer([prompt], truncation=True, max_length=self.max_length, return_tensors="pt")
        batch = {k: v.to(device) for k, v in batch.items()}
        return self.model(**batch).last_hidden_state[0]

    def _remember(self, prompt: str, states: torch.Tensor) -> None:
        if self.cache_size <= 0:
            return
        self._cache[prompt] = states
        self._cache.move_to_end(prompt)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def clear_cache(self) -> None:
        self._cache.clear()

    def _apply(self, fn, recurse=True):  # moving the model moves (i.e. invalidates) cached states
        self._cache.clear()
        return super()._apply(fn, recurse)


def _looks_like_path(name: str) -> bool:
    """A local folder rather than a hub id: absolute, relative with ./ or ~, or an existing path."""
    return name.startswith(("/", "./", "../", "~", "\\")) or Path(name).exists() or name.count("/") > 1


def _position_limit(config) -> int:
    """How many tokens the encoder's position table holds (RoBERTa-style models offset by padding_idx + 1)."""
    limit = int(getattr(config, "max_position_embeddings", MAX_TEXT_TOKENS) or MAX_TEXT_TOKENS)
    if "roberta" in str(getattr(config, "model_type", "")) or getattr(config, "model_type", "") == "camembert":
        limit -= int(config.pad_token_id or 0) + 1
    return limit


def pad_sequences(rows: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad (L_i, D) tensors to (P, L, D) with zeros; mask True where a token is real."""
    length = max(r.shape[0] for r in rows)
    out = rows[0].new_zeros(len(rows), length, rows[0].shape[-1])
    mask = torch.zeros(len(rows), length, dtype=torch.bool, device=rows[0].device)
    for i, r in enumerate(rows):
        out[i, : r.shape[0]] = r
        mask[i, : r.shape[0]] = True
    return out, mask


@dataclass
class TextEmbedding:
    """Connector outputs for P prompts: `tokens` (P, L, D_vision) and `mask` (P, L), True = real token.

    Made by `SteerViT.encode_text`; every image-side method accepts it in place of strings.
    `fingerprint` identifies the adapter weights that produced it, so a stale file is caught.
    """

    tokens: torch.Tensor
    mask: torch.Tensor
    prompts: list[str]
    fingerprint: str = ""

    def __post_init__(self) -> None:
        if self.tokens.ndim != 3 or self.mask.shape != self.tokens.shape[:2]:
            raise ValueError(
                f"TextEmbedding needs tokens (P, L, D) and mask (P, L); got {tuple(self.tokens.shape)} "
                f"and {tuple(self.mask.shape)}"
            )
        if len(self.prompts) != self.tokens.shape[0]:
            raise ValueError(f"{len(self.prompts)} prompts for {self.tokens.shape[0]} embeddings")

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def __getitem__(self, index) -> "TextEmbedding":
        """Select prompts by int, slice or index list/tensor (keeps the P axis)."""
        if isinstance(index, int):
            index = [index]
        idx = torch.as_tensor(range(len(self))[index] if isinstance(index, slice) else index)
        return TextEmbedding(
            self.tokens[idx], self.mask[idx], [self.prompts[int(i)] for i in idx], self.fingerprint
        )

    def to(self, *args, **kwargs) -> "TextEmbedding":
        mask = self.mask.to(device=self.tokens.to(*args, **kwargs).device)
        return TextEmbedding(self.tokens.to(*args, **kwargs), mask, self.prompts, self.fingerprint)

    def repeat_interleave(self, repeats: int) -> "TextEmbedding":
        return TextEmbedding(
            self.tokens.repeat_interleave(repeats, 0),
            self.mask.repeat_interleave(repeats, 0),
            [p for p in self.prompts for _ in range(repeats)],
            self.fingerprint,
        )

    def save(self, path: str | Path) -> None:
        """Write a safetensors file (atomically); prompts and fingerprint go in its metadata."""
        from .io import atomic_path

        meta = {"prompts": json.dumps(self.prompts), "fingerprint": self.fingerprint}
        with atomic_path(path) as tmp:
            save_file(
                {"tokens": self.tokens.detach().contiguous().cpu(), "mask": self.mask.cpu()},
                str(tmp),
                metadata=meta,
            )

    @classmethod
    def load(cls, path: str | Path) -> "TextEmbedding":
        from safetensors import safe_open

        from .io import require_file

        path = require_file(path, "text embedding")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
            tensors = load_file(str(path))
            return cls(
                tensors["tokens"],
                tensors["mask"].to(torch.bool),
                json.loads(meta["prompts"]),
                meta.get("fingerprint", ""),
            )
        except (KeyError, ValueError, OSError, RuntimeError) as err:
            raise ValueError(f"{path} is not a valid SteerViT text embedding file: {err}") from err
