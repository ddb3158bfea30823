"""Where training numbers go: `metrics.jsonl` always, TensorBoard and Weights & Biases when available.

`metrics.jsonl` has one JSON object per line, `{"step", "split": "train" | "val", ...numbers}`, so
curves can be plotted with nothing installed; `plot_curves(run_dir)` draws them with matplotlib.
Only rank 0 creates a `MetricsLog`. A process killed mid-write can leave the last line cut short:
readers drop such a trailing line with a warning; an unreadable line before it is an error.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Mapping

from ..io import atomic_path

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"


class MetricsLog:
    def __init__(self, run_dir: str | Path, *, tensorboard: bool = True, wandb_cfg=None,
                 config: Mapping[str, Any] | None = None, resume_step: int | None = None) -> None:
        """A fresh `metrics.jsonl`, or with `resume_step` the old one up to that step (lines a crashed
        run wrote after its last checkpoint would otherwise appear twice)."""
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / METRICS_FILE
        if resume_step is not None and path.exists():
            kept = [r for r in read_metrics(self.run_dir) if r.get("step", 0) <= resume_step]
            with atomic_path(path) as tmp:  # a kill while rewriting keeps the old history
                tmp.write_text("".join(json.dumps(row) + "\n" for row in kept), encoding="utf-8")
            self._file = open(path, "a", encoding="utf-8")
        else:
            self._file = open(path, "w", encoding="utf-8")
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                log.info("tensorboard is not installed: logging to %s only", METRICS_FILE)
            else:
                self._tb = SummaryWriter(str(self.run_dir / "tensorboard"))
        self._wandb = None
        if wandb_cfg is not None and wandb_cfg.enabled:
            try:
                import wandb
            except ImportError:
                log.warning("wandb.enabled is set but wandb is not installed: not logging to W&B")
            else:
                self._wandb = wandb.init(project=wandb_cfg.project, name=wandb_cfg.name, mode=wandb_cfg.mode,
                                         dir=str(self.run_dir), config=dict(config or {}), resume="allow")

    def log(self, step: int, split: str, values: Mapping[str, float]) -> None:
        clean = {k: float(v) for k, v in values.items()}
        entry = {"step": int(step), "split": split,
                 **{k: (v if math.isfinite(v) else str(v)) for k, v in clean.items()}}
        self._file.write(json.dumps(entry) + "\n")
        self._file.flush()
        if self._tb is not None:
            for key, value in clean.items():
                self._tb.add_scalar(f"{split}/{key}", value, step)
            self._tb.flush()
        if self._wandb is not None:
            self._wandb.log({f"{split}/{k}": v for k, v in clean.items()}, step=int(step))

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The rows of `<run_dir>/metrics.jsonl`. An undecodable last line (the writer was killed
    mid-line) is dropped with a warning; one before it is a `ValueError` naming file and line."""
    path = Path(run_dir) / METRICS_FILE
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = [(number, line) for number, line in enumerate(f, 1) if line.strip()]
    rows = []
    for i, (number, line) in enumerate(lines):
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError(f"a JSON {type(row).__name__}, not an object")
        except ValueError as err:  # json.JSONDecodeError is a ValueError
            if i == len(lines) - 1:
                log.warning("%s: dropping line %d, its last, cut short by an interrupted write: %s",
                            path, number, err)
                break
            raise ValueError(f"{path}, line {number}: not a metrics row ({err}); fix or delete that line") from err
        rows.append(row)
    return rows


def plot_curves(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Train loss, learning rate and validation pmass/loss against step, as one PNG (default
    `<run_dir>/curves.png`); returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(run_dir)

    def series(split: str, key: str):
        points = [(r["step"], r[key]) for r in rows if r.get("split") == split and isinstance(r.get(key), (int, float))]
        return [p[0] for p in points], [p[1] for p in points]

    val_keys = sorted({k for r in rows if r.get("split") == "val" for k in r if k.startswith("pmass")})
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    axes[0].plot(*series("train", "loss"), label="train")
    axes[0].plot(*series("val", "loss"), "o-", label="val")
    axes[0].set_title("loss")
    axes[0].legend()
    axes[1].plot(*series("train", "lr"))
    axes[1].set_title("learning rate")
    for key in val_keys:
        axes[2].plot(*series("val", key), "o-", label=key, linewidth=2.5 if key == "pmass" else 1)
    axes[2].set_title("validation pmass")
    if val_keys:
        axes[2].legend(fontsize="small")
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(out) if out is not None else Path(run_dir) / "curves.png"
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return out
