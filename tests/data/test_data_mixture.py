"""Weighted mixture sampling: proportions, determinism, rank sharding, resume."""
from __future__ import annotations

from collections import Counter

import pytest

from steervit.data import BoxMask, Mixture, Record, WeightedSourceSampler


def _records(source: str, n: int) -> list[Record]:
    return [Record(f"/img/{source}/{i}.jpg", f"{source} {i}", BoxMask((0, 0, 1, 1)), source) for i in range(n)]


def _mixture(weights=None) -> Mixture:
    return Mixture.from_sources({"a": _records("a", 100), "b": _records("b", 50), "c": _records("c", 10)}, weights)


def test_proportions_follow_weights():
    mixture = _mixture({"a": 0.5, "b": 0.3, "c": 0.2})
    draws = [index for index, _ in mixture.sampler(20_000, seed=1)]
    counts = Counter(mixture.records[i].source for i in draws)
    for name, p in {"a": 0.5, "b": 0.3, "c": 0.2}.items():
        assert abs(counts[name] / len(draws) - p) < 0.02, (name, counts)
    # every example of the small source is reached, and only its own indices are used for it
    assert {mixture.records[i].expression for i in draws if mixture.records[i].source == "c"} == {f"c {i}" for i in range(10)}


def test_default_weights_are_source_sizes():
    assert _mixture().probabilities() == pytest.approx({"a": 100 / 160, "b": 50 / 160, "c": 10 / 160})


def test_zero_weight_source_is_never_drawn():
    mixture = _mixture({"a": 1.0, "b": 0.0, "c": 1.0})
    assert all(mixture.records[i].source != "b" for i, _ in mixture.sampler(2000, seed=0))


def test_deterministic_per_seed_and_epoch():
    mixture = _mixture({"a": 1, "b": 1, "c": 1})
    first, again, other = (list(mixture.sampler(500, seed=s)) for s in (7, 7, 8))
    assert first == again and first != other
    sampler = mixture.sampler(500, seed=7)
    sampler.set_epoch(1)
    assert list(sampler) != first


def test_ranks_partition_the_single_process_sequence():
    mixture = _mixture({"a": 2, "b": 1, "c": 1})
    single = list(mixture.sampler(600, seed=3))
    rank0 = list(mixture.sampler(300, seed=3, rank=0, world_size=2))
    rank1 = list(mixture.sampler(300, seed=3, rank=1, world_size=2))
    assert rank0 == single[0::2] and rank1 == single[1::2]


def test_resume_mid_epoch():
    sampler = WeightedSourceSampler([100, 50], [1.0, 1.0], 200, seed=5)
    full = list(sampler)
    sampler.set_epoch(0, start=120)
    assert len(sampler) == 80 and list(sampler) == full[120:]


def test_rejects_bad_weights():
    with pytest.raises(ValueError, match="unknown"):
        _mixture({"zzz": 1.0})
    with pytest.raises(ValueError, match="no records"):
        Mixture.from_sources({"a": _records("a", 3), "empty": []}, {"a": 1, "empty": 1})
