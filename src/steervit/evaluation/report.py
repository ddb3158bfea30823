"""Writing benchmark results: one `results.json` (numbers in percent) and one `results.md` table per run.

Every benchmark reports in the paper's unit (percent), keeps full precision in the JSON and rounds only
in the Markdown table, and records how it was run so that two result files can be compared.
"""
from __future__ import annotations

import dataclasses
import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar, Sequence

from ..io import atomic_path


@dataclasses.dataclass
class BenchmarkResult:
    """Base of typed results: the numbers are fields (read as attributes by the gate sweep, the design
    study and users); `to_json()` is the `results.json` document (benchmark, metric, averaging, the
    fields in order, the paper's numbers). A field left None is omitted."""

    benchmark: ClassVar[str] = ""
    metric: ClassVar[str] = ""
    averaging: ClassVar[str] = ""
    paper: ClassVar[dict] = {}

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"benchmark": self.benchmark, "metric": self.metric}
        if self.averaging:
            doc["averaging"] = self.averaging
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is not None:
                doc[f.name] = value.to_json() if hasattr(value, "to_json") else value
        doc["paper"] = self.paper
        return doc


def as_document(results: Any) -> dict[str, Any]:
    """A typed result's JSON document; a plain dict (the benchmarks without typed results) as it is."""
    return results.to_json() if hasattr(results, "to_json") else results


def mean(values: Sequence[float | None]) -> float | None:
    """Unweighted mean of the defined values (None skipped); None when nothing is defined."""
    kept = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return sum(kept) / len(kept) if kept else None


def weighted_mean(values: Sequence[float], weights: Sequence[float]) -> float:
    total = float(sum(weights))
    return sum(float(v) * float(w) for v, w in zip(values, weights)) / total if total else float("nan")


def setup(args, model, **extra: Any) -> dict[str, Any]:
    """How a run was made: model, gate factor, text on/off, and the benchmark's own options."""
    info = {
        "model": str(args.model),
        "trunk": model.config.trunk,
        "image_size": model.image_size,
        "gate_factor": model.gate_factor,
        "text": not getattr(args, "no_text", False),
        "data": str(getattr(args, "data", None)),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    info.update(extra)
    return info


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 1) -> str:
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(fmt(v, digits) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _clean(value: Any) -> Any:
    """NaN is not JSON: write it as null (recursively)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_json(path: Path, data: Any) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_clean(data), indent=1) + "\n")
    return path


def write_results(out_dir: str | Path, results: dict[str, Any], table: str) -> Path:
    """Write `results.json` and `results.md` (a title, the table, the paper's numbers); returns the JSON path."""
    out = Path(out_dir)
    path = write_json(out / "results.json", results)
    text = f"# {results.get('benchmark', 'results')}\n\n{table}"
    if results.get("paper"):
        text += "\nPaper (reference §5):\n\n```\n" + json.dumps(results["paper"], indent=1) + "\n```\n"
    with atomic_path(out / "results.md") as tmp:
        tmp.write_text(text)
    return path
