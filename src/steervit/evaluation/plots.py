"""The benchmark figures (matplotlib, imported only when a figure is drawn, headless backend)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..io import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def pareto_plot(path: Path, gates: Sequence[float], quality: Sequence[float | None], core: Sequence[float],
                paper: Sequence[tuple[float, float, float]] = ()) -> Path:
    """CORE P@1 against representation quality, one point per gate factor (x = gate factor if no quality)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4))
    has_quality = all(q is not None for q in quality)
    xs = list(quality) if has_quality else list(gates)
    ax.plot(xs, core, "o-", color="tab:blue", label="this run")
    for g, x, y in zip(gates, xs, core):
        ax.annotate(f"f={g:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    if has_quality and paper:
        ax.plot([p[1] for p in paper], [p[2] for p in paper], "s--", color="grey", alpha=0.6, label="paper")
    ax.set_xlabel("representation quality (mean of FG-CLS and ADE20k)" if has_quality else "gate factor")
    ax.set_ylabel("CORE P@1 (%)")
    ax.set_title("steerability vs representation quality")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def gate_sweep_plot(path: Path, gates: Sequence[float], curves: dict[str, Sequence[float]],
                    paper: dict[str, tuple[Sequence[float], Sequence[float]]] | None = None,
                    title: str = "gate sweep") -> Path:
    """The paper's gate-sweep table as a figure: each measure (percent) against the gate factor, its
    values written at the points; the paper's columns, label -> (gate factors, values), dashed beside
    in the same colour order."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    colours = plt.get_cmap("tab10")
    for i, (label, values) in enumerate(curves.items()):
        ax.plot(list(gates), list(values), "o-", color=colours(i), label=label)
        for g, v in zip(gates, values):
            ax.annotate(f"{v:.1f}", (g, v), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=7)
    for i, (label, (paper_gates, values)) in enumerate((paper or {}).items()):
        ax.plot(list(paper_gates), list(values), "s--", color=colours(i), alpha=0.45, label=label)
    ax.set_xlabel("gate factor f (effective gate tanh(f·g))")
    ax.set_ylabel("percent")
    ax.set_title(title)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def divergence_plot(path: Path, blocks: Sequence[int], curves: dict[str, Sequence[float]],
                    cross_attn_blocks: Sequence[int] = ()) -> Path:
    """1 - cosine to the plain trunk after each block; dotted lines mark blocks with cross-attention."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for b in cross_attn_blocks:
        ax.axvline(b, color="grey", linestyle=":", linewidth=0.8)
    for label, values in curves.items():
        ax.plot(list(blocks), list(values), "o-", label=label, markersize=3)
    ax.set_xlabel("block")
    ax.set_ylabel("1 - cosine(steered, plain)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def embedding_panel(path: Path, coords, labels: Sequence[int], classes: Sequence[str], title: str) -> Path:
    """A 2-D scatter of one prompt's features, coloured by class."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    cmap = plt.get_cmap("tab20")
    for c, name in enumerate(classes):
        pts = [xy for xy, label in zip(coords, labels) if label == c]
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=8, color=cmap(c % 20), label=name or "(all)")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    if len(classes) > 1:
        ax.legend(fontsize=6, markerscale=1.5, loc="best")
    return _save(fig, path)
