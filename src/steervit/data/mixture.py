"""Weighted mixture of sources: draw a source by its weight, then an example of it uniformly.

Weights are the probability of drawing from each source (normalised), so a small source can be
up-weighted without duplicating records. Without weights a mixture draws in proportion to source
size, which is plain uniform sampling over the concatenation (what the paper did).

The sampler fixes all randomness of an epoch in the main process: it yields `(index, sample_seed)`
pairs that `ReferringSegmentationDataset` uses for its augmentation, so a run is reproducible
whatever the number of DataLoader workers, and `start` resumes mid-epoch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

import torch
from torch.utils.data import Sampler

from .records import Record


@dataclass
class Mixture:
    """Records of several sources, concatenated in `names` order, with their draw weights."""

    names: list[str]
    records: list[Record]
    sizes: list[int]
    weights: list[float]

    @classmethod
    def from_sources(
        cls, sources: Mapping[str, Sequence[Record]], weights: Mapping[str, float] | None = None
    ) -> "Mixture":
        names = list(sources)
        sizes = [len(sources[n]) for n in names]
        if weights is None:
            chosen = [float(s) for s in sizes]
        else:
            unknown = set(weights) - set(names)
            if unknown:
                raise ValueError(f"weights for unknown sources {sorted(unknown)}; sources: {names}")
            chosen = [float(weights.get(n, 0.0)) for n in names]
        for name, size, weight in zip(names, sizes, chosen):
            if weight < 0:
                raise ValueError(f"negative weight for source {name!r}")
            if weight > 0 and size == 0:
                raise ValueError(f"source {name!r} has weight {weight} but no records")
        if sum(chosen) <= 0:
            raise ValueError("all mixture weights are zero")
        records = [r for n in names for r in sources[n]]
        return cls(names, records, sizes, chosen)

    def probabilities(self) -> dict[str, float]:
        total = sum(self.weights)
        return {n: w / total for n, w in zip(self.names, self.weights)}

    def sampler(self, num_samples: int, *, seed: int = 0, rank: int = 0, world_size: int = 1) -> "WeightedSourceSampler":
        return WeightedSourceSampler(self.sizes, self.weights, num_samples, seed=seed, rank=rank, world_size=world_size)


class WeightedSourceSampler(Sampler):
    """`num_samples` draws per rank per epoch over concatenated sources, deterministic in (seed, epoch).

    With `world_size > 1` every rank generates the same global sequence and takes every
    `world_size`-th draw, so ranks never overlap and the union equals a 1-process run."""

    def __init__(
        self,
        source_sizes: Sequence[int],
        weights: Sequence[float],
        num_samples: int,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        yield_seeds: bool = True,
    ):
        if len(source_sizes) != len(weights):
            raise ValueError("one weight per source")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.sizes = torch.tensor([int(s) for s in source_sizes], dtype=torch.long)
        self.weights = torch.tensor([float(w) for w in weights], dtype=torch.float64)
        if (self.weights > 0).sum() == 0 or bool(((self.weights > 0) & (self.sizes == 0)).any()):
            raise ValueError("every source with positive weight needs records, and one weight must be positive")
        self.starts = torch.cumsum(self.sizes, 0) - self.sizes
        self.num_samples = int(num_samples)
        self.seed, self.rank, self.world_size = int(seed), int(rank), int(world_size)
        self.yield_seeds = yield_seeds
        self.epoch = 0
        self.start = 0  # position within this rank's epoch to resume from

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch (reshuffles) and the number of this rank's draws already consumed."""
        self.epoch, self.start = int(epoch), int(start)

    def __len__(self) -> int:
        return self.num_samples - self.start

    def __iter__(self) -> Iterator:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        total = self.num_samples * self.world_size
        source = torch.multinomial(self.weights, total, replacement=True, generator=generator)
        size = self.sizes[source]
        offset = (torch.rand(total, generator=generator, dtype=torch.float64) * size).long()
        index = self.starts[source] + torch.minimum(offset, size - 1)
        sample_seed = torch.randint(0, 2**62, (total,), generator=generator)
        mine = slice(self.rank + self.start * self.world_size, None, self.world_size)
        if self.yield_seeds:
            return iter(zip(index[mine].tolist(), sample_seed[mine].tolist()))
        return iter(index[mine].tolist())
