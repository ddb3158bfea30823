"""Gate sweep: steerability (CORE P@1) against representation quality over gate factors (reference §5).

For each gate factor f the model runs with effective gates tanh(f * g). Quality = the unweighted mean
of FG-CLS mean accuracy and ADE20k Hummingbird mIoU (the paper's definition); when only one of the
two datasets is given, quality is that one alone, and without either the plot shows CORE against f.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from . import core, fgcls, hummingbird
from .features import FeatureCache
from .report import BenchmarkResult, markdown_table, mean

GATE_FACTORS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # the paper's sweep
PAPER = {"(gate, quality, CORE)": [(0.0, 71.5, 43.7), (0.2, 74.7, 62.0), (0.4, 75.1, 82.6), (0.6, 74.9, 93.9),
                                   (0.8, 73.7, 95.6), (1.0, 71.6, 96.0)]}


@dataclass
class SweepRow:
    """One gate factor: CORE P@k ("P@k" -> percent) and the representation quality it keeps."""

    gate_factor: float
    core: dict[str, float]
    fgcls: float | None = None  # FG-CLS mean accuracy, when measured
    ade20k: float | None = None  # ADE20K Hummingbird mIoU, when measured
    quality: float | None = None  # mean of the measured ones (the paper's definition)

    def to_json(self) -> dict:
        row = {"gate_factor": self.gate_factor, **{f"core_{k}": v for k, v in self.core.items()}}
        row.update({k: getattr(self, k) for k in ("fgcls", "ade20k") if getattr(self, k) is not None})
        return {**row, "quality": self.quality}


@dataclass
class SweepResults(BenchmarkResult):
    """The sweep's rows, in the order of the gate factors asked for."""

    benchmark: ClassVar[str] = "gate-sweep"
    metric: ClassVar[str] = "CORE P@k; quality = mean(FG-CLS accuracy, ADE20k mIoU); percent"
    paper: ClassVar[dict] = PAPER
    quality_from: list[str]
    rows: list[SweepRow]

    def to_json(self) -> dict:
        return {**super().to_json(), "rows": [row.to_json() for row in self.rows]}


def evaluate(model, gates, core_records, *, fgcls_data=None, ade=None, text: bool = True, ks=(1,),
             core_options: dict | None = None, fgcls_options: dict | None = None,
             hummingbird_options: dict | None = None, cache: FeatureCache | None = None) -> SweepResults:
    """One row per gate factor: CORE P@k, FG-CLS mean, ADE20k mIoU, quality (percent)."""
    cache = cache if cache is not None else FeatureCache()
    rows = []
    for f in gates:
        with model.using_gate_factor(f):
            row = SweepRow(float(f), core.evaluate(model, core_records, text=text, ks=ks, cache=cache,
                                                   **(core_options or {})).overall)
            if fgcls_data:
                row.fgcls = fgcls.evaluate(model, fgcls_data, text=text, cache=cache, **(fgcls_options or {})).mean
            if ade:
                row.ade20k = hummingbird.evaluate(model, *ade, text=text, **(hummingbird_options or {})).miou
        measured = [v for v in (row.fgcls, row.ade20k) if v is not None]
        row.quality = mean(measured) if measured else None
        rows.append(row)
    quality_from = [k for k in ("fgcls", "ade20k") if rows and getattr(rows[0], k) is not None]
    return SweepResults(quality_from=quality_from, rows=rows)


def table(results: dict) -> str:
    keys = [k for k in results["rows"][0] if k != "gate_factor"]
    return markdown_table(["gate factor", *keys], [[r["gate_factor"], *(r[k] for k in keys)] for r in results["rows"]],
                          digits=1)
