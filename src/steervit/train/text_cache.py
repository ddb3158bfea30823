"""Text-feature cache: the frozen text encoder's token states for every expression, computed once.

The text encoder is frozen, so its output for an expression never changes during training. Running
RoBERTa-Large on every step costs time and ~1.4 GB of memory per GPU; the cache replaces both with a
memory-mapped read. Layout of a cache folder:

    index.json               {"format", "version", "text_encoder", "dim", "dtype", "shards": [...],
                              "entries": {expression: [shard, row]}}
    shard-00000.safetensors  states (T, dim) fp16: the rows' token states back to back, unpadded
                             offsets (R,) int64, lengths (R,) int64: row r = states[offsets[r]:+lengths[r]]

Every token of a row is real (padding is dropped), so a row's mask is `lengths[r]` ones; batches are
re-padded on lookup exactly as the live encoder pads them. `index.json` is written last: a folder
without it is an unfinished build.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Iterable, Sequence

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..io import atomic_path, require_file
from ..text import pad_sequences

log = logging.getLogger(__name__)

FORMAT = "steervit-text-cache"
VERSION = 1
INDEX = "index.json"


def unique_expressions(record_lists: Iterable[Sequence]) -> list[str]:
    """Distinct non-blank expressions of some record lists, sorted (a stable cache layout)."""
    return sorted({r.expression for records in record_lists for r in records if r.expression.strip()})


@torch.no_grad()
def build_text_cache(encoder, expressions: Sequence[str], out_dir: str | Path, *, batch_size: int = 256,
                     shard_rows: int = 100_000, progress: bool = True) -> Path:
    """Encode `expressions` with a `steervit.text.TextEncoder` and write a cache folder; returns it."""
    from tqdm import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    expressions = list(dict.fromkeys(e for e in expressions if e.strip()))
    if not expressions:
        raise ValueError("no expressions to cache")
    # The encoder encodes each prompt on its own (batch-independent states); the order does not matter.
    order = sorted(expressions, key=len)
    # Every prompt is seen once: the encoder's LRU cache would only cost memory (restored at the end).
    saved_cache_size, encoder.cache_size = encoder.cache_size, 0
    encoder.clear_cache()
    entries: dict[str, list[int]] = {}
    shards: list[str] = []
    rows: list[torch.Tensor] = []
    names: list[str] = []

    def flush() -> None:
        name = f"shard-{len(shards):05d}.safetensors"
        lengths = torch.tensor([r.shape[0] for r in rows], dtype=torch.int64)
        offsets = torch.cumsum(lengths, 0) - lengths
        tensors = {"states": torch.cat(rows).to(torch.float16).contiguous(), "offsets": offsets, "lengths": lengths}
        with atomic_path(out_dir / name) as tmp:
            save_file(tensors, str(tmp), metadata={"format": FORMAT})
        for row, expression in enumerate(names):
            entries[expression] = [len(shards), row]
        shards.append(name)
        rows.clear()
        names.clear()

    bar = tqdm(total=len(order), desc="encoding expressions", unit="expr", disable=not progress or None)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        states, mask = encoder.encode(chunk)
        states, lengths = states.float().cpu(), mask.sum(1).tolist()
        for i, expression in enumerate(chunk):
            rows.append(states[i, : int(lengths[i])])
            names.append(expression)
            if len(rows) >= shard_rows:
                flush()
        bar.update(len(chunk))
    bar.close()
    if rows:
        flush()
    encoder.cache_size = saved_cache_size
    index = {"format": FORMAT, "version": VERSION, "text_encoder": encoder.name, "dim": encoder.dim,
             "dtype": "float16", "max_length": encoder.max_length, "shards": shards, "entries": entries}
    with atomic_path(out_dir / INDEX) as tmp:
        tmp.write_text(json.dumps(index, ensure_ascii=False))
    return out_dir


class TextCache:
    """Read side: expressions -> padded (B, L, dim) states + (B, L) mask, read memory-mapped."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory).expanduser()
        index_path = require_file(self.directory / INDEX, "text cache index (run `steervit cache-text`)")
        index = json.loads(index_path.read_text(encoding="utf-8"))
        if index.get("format") != FORMAT or index.get("version", 0) > VERSION:
            raise ValueError(f"{index_path} is not a steervit text cache of version <= {VERSION}")
        self.text_encoder = str(index["text_encoder"])
        self.dim = int(index["dim"])
        self.entries: dict[str, list[int]] = index["entries"]
        self._files = []
        self._rows = []
        for name in index["shards"]:
            handle = safe_open(str(require_file(self.directory / name, "text cache shard")), framework="pt")
            self._files.append(handle)
            self._rows.append((handle.get_tensor("offsets").tolist(), handle.get_tensor("lengths").tolist()))

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, expression: str) -> bool:
        return expression in self.entries

    def missing(self, expressions: Iterable[str]) -> list[str]:
        return sorted({e for e in expressions if e.strip() and e not in self.entries})

    def row(self, expression: str) -> torch.Tensor:
        """One expression's (L, dim) fp16 states."""
        try:
            shard, row = self.entries[expression]
        except KeyError:
            raise KeyError(f"expression not in the text cache {self.directory}: {expression!r} "
                           "(rebuild it with `steervit cache-text` for this data)") from None
        offsets, lengths = self._rows[shard]
        start = offsets[row]
        return self._files[shard].get_slice("states")[start:start + lengths[row]]

    def encode(self, expressions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Same contract as `TextEncoder.encode`: (B, L, dim) float32 states and (B, L) bool mask."""
        return pad_sequences([self.row(e).float() for e in expressions])
