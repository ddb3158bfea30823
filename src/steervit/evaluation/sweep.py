"""Gate sweep: steerability (CORE P@1) against representation quality over gate factors (reference §5).

For each gate factor f the model runs with effective gates tanh(f * g). Quality = the unweighted mean
of FG-CLS mean accuracy and ADE20k Hummingbird mIoU (the paper's definition); when only one of the
two datasets is given, quality is that one alone, and without either the plot shows CORE against f.
"""
from __future__ import annotations


from . import core, fgcls, hummingbird
from .features import FeatureCache
from .report import markdown_table, mean

GATE_FACTORS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # the paper's sweep
PAPER = {"(gate, quality, CORE)": [(0.0, 71.5, 43.7), (0.2, 74.7, 62.0), (0.4, 75.1, 82.6), (0.6, 74.9, 93.9),
                                   (0.8, 73.7, 95.6), (1.0, 71.6, 96.0)]}


def evaluate(model, gates, core_records, *, fgcls_data=None, ade=None, text: bool = True, ks=(1,),
             core_options: dict | None = None, fgcls_options: dict | None = None,
             hummingbird_options: dict | None = None, cache: FeatureCache | None = None) -> dict:
    """One row per gate factor: CORE P@k, FG-CLS mean, ADE20k mIoU, quality (percent)."""
    cache = cache if cache is not None else FeatureCache()
    rows = []
    for f in gates:
        with model.using_gate_factor(f):
            row = {"gate_factor": float(f)}
            core_res = core.evaluate(model, core_records, text=text, ks=ks, cache=cache, **(core_options or {}))
            row.update({f"core_{k}": v for k, v in core_res["overall"].items()})
            if fgcls_data:
                fg = fgcls.evaluate(model, fgcls_data, text=text, cache=cache, **(fgcls_options or {}))
                row["fgcls"] = fg["mean"]
            if ade:
                row["ade20k"] = hummingbird.evaluate(model, *ade, text=text, **(hummingbird_options or {}))["miou"]
        parts = [row[k] for k in ("fgcls", "ade20k") if k in row]
        row["quality"] = mean(parts) if parts else None
        rows.append(row)
    return {
        "benchmark": "gate-sweep",
        "metric": "CORE P@k; quality = mean(FG-CLS accuracy, ADE20k mIoU); percent",
        "quality_from": [k for k in ("fgcls", "ade20k") if rows and k in rows[0]],
        "rows": rows,
        "paper": PAPER,
    }


def table(results: dict) -> str:
    keys = [k for k in results["rows"][0] if k != "gate_factor"]
    return markdown_table(["gate factor", *keys], [[r["gate_factor"], *(r[k] for k in keys)] for r in results["rows"]],
                          digits=1)
