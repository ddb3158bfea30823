"""The paper's trade-off on any FG-CLS-style probe set: is the representation kept while steering works?

Two measurements, both made of existing benchmarks (fgcls.py, sweep.py):
- the linear probe steered (the model's own gate factor, one generic prompt per dataset) against the
  plain trunk (no text, which equals gate factor 0); the paper loses 1.3 points (89.0 -> 87.7);
- the gate sweep f = 0, 0.2, ..., 1 of (probe accuracy, CORE-style P@1), as the paper's table of
  (quality, CORE); quality here is the probe's accuracy alone (no ADE20k).

The offline OOD suite (`steervit data build-ood`) makes both inputs: `probe/` (real products on
unseen backgrounds, prompt "the product") and `core/`. `bench/offline_quality.py --ood` runs this.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Sequence

from . import fgcls, sweep
from .datasets import CoreRecord, LabelledImages
from .features import FeatureCache
from .report import BenchmarkResult, markdown_table

TARGET_DROP = 2.0  # points of probe accuracy steering may cost (issue 13; the paper loses 1.3)
PAPER = {"FG-CLS mean accuracy": {"DINOv2": 89.0, "SteerViT": 87.7},
         "gate sweep (gate, quality, CORE)": sweep.PAPER["(gate, quality, CORE)"]}


def read_probe(folder: str | Path) -> dict[str, tuple[LabelledImages, LabelledImages]]:
    """The FG-CLS datasets inside `folder` (an OOD build's probe/ holds products/), as `eval fgcls` reads them."""
    roots = fgcls.find_datasets(folder, {})
    return {name: fgcls.read_splits(name, root) for name, root in roots.items()}


@dataclass
class TradeoffResults(BenchmarkResult):
    """Probe accuracy steered and plain (percent, mean over datasets), and the sweep's rows."""

    benchmark: ClassVar[str] = "representation-tradeoff"
    metric: ClassVar[str] = "linear-probe top-1 accuracy and CORE-style P@1, percent"
    averaging: ClassVar[str] = "accuracy = unweighted mean over the probe datasets"
    paper: ClassVar[dict] = PAPER
    plain: float
    steered: float
    drop: float  # plain - steered, in points
    within_target: bool  # drop <= TARGET_DROP
    gate_factor: float  # the steered run's
    datasets: dict[str, dict]  # name -> prompt, classes, train, test, steered and plain accuracy
    sweep: list[dict]  # {"gate_factor", "probe_accuracy", "core_P@1"} per gate factor


def evaluate(model, probe_data: dict[str, tuple[LabelledImages, LabelledImages]], core_records: list[CoreRecord],
             *, gates: Sequence[float] = sweep.GATE_FACTORS, probe_options: dict | None = None,
             batch_size: int = 32, workers: int = 0, cache: FeatureCache | None = None) -> TradeoffResults:
    """Probe steered vs plain, then the gate sweep; one feature cache, so each pass runs once.

    `probe_options`: fgcls.evaluate's epochs, lr, probe_batch_size and seed (the paper's by default).
    """
    cache = cache if cache is not None else FeatureCache()
    options = {**(probe_options or {}), "batch_size": batch_size, "workers": workers}
    steered = fgcls.evaluate(model, probe_data, cache=cache, **options)
    plain = fgcls.evaluate(model, probe_data, text=False, cache=cache, **options)
    swept = sweep.evaluate(model, gates, core_records, fgcls_data=probe_data, ks=(1,), cache=cache,
                           core_options={"batch_size": batch_size, "workers": workers}, fgcls_options=options)
    datasets = {name: {**{k: v for k, v in entry.items() if k != "accuracy"}, "steered": entry["accuracy"],
                       "plain": plain.per_dataset[name]["accuracy"]} for name, entry in steered.per_dataset.items()}
    rows = [{"gate_factor": r.gate_factor, "probe_accuracy": r.fgcls, "core_P@1": r.core["P@1"]} for r in swept.rows]
    drop = plain.mean - steered.mean
    return TradeoffResults(plain=plain.mean, steered=steered.mean, drop=drop, within_target=drop <= TARGET_DROP,
                           gate_factor=float(model.gate_factor), datasets=datasets, sweep=rows)


def plot(results: dict, path: str | Path) -> Path:
    """The sweep as the paper's table, drawn: probe accuracy and CORE P@1 against the gate factor."""
    from .plots import gate_sweep_plot

    rows = results["sweep"]
    paper = PAPER["gate sweep (gate, quality, CORE)"]
    paper_gates = [g for g, _, _ in paper]
    return gate_sweep_plot(
        Path(path), [r["gate_factor"] for r in rows],
        {"probe accuracy": [r["probe_accuracy"] for r in rows], "CORE-style P@1": [r["core_P@1"] for r in rows]},
        paper={"paper: quality (FG-CLS, ADE20k)": (paper_gates, [q for _, q, _ in paper]),
               "paper: CORE P@1": (paper_gates, [c for _, _, c in paper])},
        title="representation kept vs steerability over the gate factor")


def table(results: dict) -> str:
    return markdown_table(["gate factor", "probe accuracy", "CORE-style P@1"],
                          [[r["gate_factor"], r["probe_accuracy"], r["core_P@1"]] for r in results["sweep"]],
                          digits=1)
