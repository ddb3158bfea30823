"""The design study (reference §5 "Ablations"): train each variant with the same data, seed and budget,
evaluate each with the evaluation suite, and write one table in the layout of the paper's.

    steervit ablate --config BASE.yaml --variants steervit,late,no-gate,linear,pointing \
        --out runs/ablate --eval core=/data/CORE --eval pods=/data/PODS --eval fgcls=/data/fgcls

A variant is a few `key=value` overrides applied on top of the base config (and the user's overrides),
so each one differs from the base in that one respect. `<out>/<variant>/` is an ordinary training run
folder (see docs/training.md) plus `ablation.json` (its evaluation) and `gate_sweep.png`; the study
table is `<out>/ablation.md` and `<out>/ablation.json`. A finished run is reused and an interrupted one
continued, so the study can be stopped and started again. See docs/ablations.md.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from .evaluation.report import fmt, markdown_table, write_json
from .io import atomic_path

if TYPE_CHECKING:  # the command line imports this module for its variant names: keep that cheap
    from omegaconf import DictConfig

log = logging.getLogger(__name__)

# Variant name -> overrides of the training config. The base config is taken to be SteerViT.
VARIANTS: dict[str, tuple[str, ...]] = {
    "steervit": (),
    "late": ("model.fusion=late",),
    "no-gate": ("model.gate=none",),
    "sigmoid-gate": ("model.gate=sigmoid",),
    "normal-gate": ("model.gate=tanh_normal",),
    "linear": ("model.connector=linear",),
    "ffn": ("model.use_ffn=true",),
    "pointing": ("train.supervision=pointing",),
    "early-only": ("model.cross_attn_layers=early",),
    "middle-only": ("model.cross_attn_layers=middle",),
    "late-only": ("model.cross_attn_layers=late",),
}
# "early" fusion is SteerViT itself (the paper's cross-backbone table says early / late).
ALIASES = {"early": "steervit", "default": "steervit"}
DEFAULT_VARIANTS = ("steervit", "late", "no-gate", "linear", "pointing")
BENCHMARKS = ("fgcls", "core", "pods")
# The paper's ablation table (reference §5), DINOv2 ViT-B/14: FG-CLS mean accuracy, CORE P@1, PODS PR-AUC.
PAPER: dict[str, dict[str, float]] = {
    "steervit": {"fgcls": 87.7, "core": 96.0, "pods": 58.1},
    "late": {"fgcls": 91.8, "core": 93.3, "pods": 36.6},
    "no-gate": {"fgcls": 83.5, "core": 94.6, "pods": 47.1},
    "linear": {"fgcls": 86.7, "core": 95.2, "pods": 56.4},
    "pointing": {"fgcls": 80.4, "core": 95.2, "pods": 45.7},
}
COLUMNS = {"fgcls": "FG-CLS: linear-probe top-1 accuracy, mean over the datasets given",
           "core": "CORE: P@1 over all queries",
           "pods": "PODS: one-vs-all PR-AUC with description prompts (else the most specific prompt kind given)"}
# The parts of a run config that make two runs the same experiment (not logging, workers, devices).
RECIPE_KEYS = ("seed", "model", "data.train", "data.val", "data.samples_per_epoch", "data.augment",
               "train.batch_size", "train.train_iters", "train.supervision", "train.pointing_sigma",
               "train.optim", "eval.max_samples")


def parse_variants(text: str | Sequence[str]) -> list[str]:
    """Comma-separated names -> known variant names, aliases resolved, duplicates dropped, order kept."""
    items = text.split(",") if isinstance(text, str) else list(text)
    names: list[str] = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        name = ALIASES.get(item, item)
        if name not in VARIANTS:
            raise ValueError(f"unknown variant {item!r}; known: {', '.join([*VARIANTS, *ALIASES])}")
        if name not in names:
            names.append(name)
    if not names:
        raise ValueError("no variant given")
    return names


def parse_evals(items: Sequence[str]) -> dict[str, str]:
    """`NAME=PATH` items (core, pods, fgcls) -> {name: path}; paths must exist."""
    evals: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        name = name.strip()
        if not sep or not path:
            raise ValueError(f"--eval {item!r} is not NAME=PATH")
        if name not in BENCHMARKS:
            raise ValueError(f"--eval {name}: not one of {', '.join(BENCHMARKS)}")
        if not Path(path).expanduser().exists():
            raise FileNotFoundError(f"--eval {name}: {path} not found")
        evals[name] = str(Path(path).expanduser().resolve())
    return evals


def variant_config(base: str | Path, name: str, overrides: Sequence[str], out: str | Path) -> DictConfig:
    """Base <- the study's overrides <- the variant's <- its run folder: same data, seed and budget for all."""
    from .train.config import load_config

    return load_config(base, [*overrides, *VARIANTS[name], f"train.out_dir={Path(out) / name}"])


def _recipe(config: dict) -> dict:
    """The RECIPE_KEYS of a resolved run config (grad checkpointing changes speed, not the run)."""
    picked = {}
    for key in RECIPE_KEYS:
        value: Any = config
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        picked[key] = value
    if isinstance(picked["model"], dict):
        picked["model"] = {k: v for k, v in picked["model"].items() if k != "grad_checkpointing"}
    return picked


def train_variant(cfg: DictConfig) -> str:
    """Train the run of `cfg` unless it is finished: "trained", "continued" or "reused".

    A run folder made with another recipe is an error rather than silently reused or overwritten."""
    from omegaconf import OmegaConf

    from .train.state import load_state
    from .train.trainer import LAST, Trainer

    run = Path(cfg.train.out_dir)
    if (run / LAST).is_file():
        state = load_state(run / LAST)
        ours, theirs = _recipe(OmegaConf.to_container(cfg, resolve=True)), _recipe(state.get("config", {}))
        changed = [k for k in ours if ours[k] != theirs[k]]
        if changed:
            raise ValueError(f"{run} holds a run made with other settings ({', '.join(changed)}): "
                             "remove it or choose another --out")
        if state["step"] >= cfg.train.train_iters and (run / "final_model" / "config.json").is_file():
            return "reused"
        Trainer(cfg).fit(resume=True)
        return "continued"
    Trainer(cfg).fit()
    return "trained"


def load_trained(cfg: DictConfig, device="cpu"):
    """The run's final model, rebuilt from its config; `load_adapter` refuses weights of another variant.

    Seeding as the trainer does first rebuilds the same trunk when it is random (`pretrained_trunk: false`)."""
    from .train.trainer import build_model, seed_everything

    seed_everything(cfg.seed)
    model = build_model(cfg)
    model.load_adapter(Path(cfg.train.out_dir) / "final_model")
    return model.to(device).eval()


def read_data(evals: dict[str, str], pods_prompts: Sequence[str] | None = None) -> dict[str, Any]:
    """Each given benchmark's data, read once for the whole study; `pods_prompts` limits PODS to those
    prompt kinds (each costs a full pass), default every kind the data allows."""
    from .evaluation import fgcls, pods
    from .evaluation.datasets import read_core, read_pods

    data: dict[str, Any] = {}
    if "core" in evals:
        data["core"] = read_core(evals["core"], "test")
    if "pods" in evals:
        pods_data = read_pods(evals["pods"])
        kinds = pods.available(pods_data)
        if pods_prompts:
            missing = [k for k in pods_prompts if k not in kinds]
            if missing:
                raise ValueError(f"PODS prompt kind(s) {missing} not available in {evals['pods']} "
                                 f"(available: {', '.join(kinds)})")
            kinds = [k for k in kinds if k in pods_prompts]
        data["pods"] = (pods_data, kinds)
    if "fgcls" in evals:
        roots = fgcls.find_datasets(evals["fgcls"], {})
        data["fgcls"] = {name: fgcls.read_splits(name, root) for name, root in roots.items()}
    return data


def evaluate_variant(model, data: dict[str, Any], *, gates: Sequence[float] = (), batch_size: int = 32,
                     workers: int = 0, seed: int = 0) -> dict[str, Any]:
    """The table's three numbers (percent) with their details, and the gate sweep when CORE is given."""
    from .evaluation import core, fgcls, pods, sweep
    from .evaluation.features import FeatureCache

    cache = FeatureCache()  # in memory: the sweep's gate 1 reuses the main evaluation's features
    loader = {"batch_size": batch_size, "workers": workers}
    out: dict[str, Any] = {}
    if "fgcls" in data:
        r = fgcls.evaluate(model, data["fgcls"], seed=seed, cache=cache, **loader)
        out["fgcls"] = {"value": r.mean, "per_dataset": {n: r.accuracy(n) for n in r.per_dataset}}
    if "core" in data:
        r = core.evaluate(model, data["core"], ks=(1,), cache=cache, **loader)
        out["core"] = {"value": r.precision(1), "per_scene": {s: v["P@1"] for s, v in r.per_scene.items()}}
    if "pods" in data:
        pods_data, kinds = data["pods"]
        r = pods.evaluate(model, pods_data, kinds, cache=cache, **loader)
        kind = "description" if "description" in kinds else kinds[-1]
        out["pods"] = {"value": r.pr_auc(kind), "granularity": kind,
                       "granularities": {k: {"pr_auc": r.pr_auc(k), "ndcg": r.ndcg(k)} for k in r.granularities}}
    if gates and "core" in data:
        r = sweep.evaluate(model, gates, data["core"], fgcls_data=data.get("fgcls"), ks=(1,), cache=cache,
                           core_options=loader, fgcls_options={"seed": seed, **loader})
        out["sweep"] = [row.to_json() for row in r.rows]
    return out


def sweep_plot(path: Path, rows: list[dict], paper_curve: bool) -> Path:
    from .evaluation.plots import pareto_plot
    from .evaluation.sweep import PAPER as SWEEP_PAPER

    return pareto_plot(path, [r["gate_factor"] for r in rows], [r["quality"] for r in rows],
                       [r["core_P@1"] for r in rows], SWEEP_PAPER["(gate, quality, CORE)"] if paper_curve else ())


def run_study(base: str | Path, names: Sequence[str], *, overrides: Sequence[str] = (), out: str | Path = "runs/ablate",
              evals: dict[str, str] | None = None, gates: Sequence[float] = (), device: str = "auto",
              batch_size: int = 32, workers: int = 0, pods_prompts: Sequence[str] | None = None,
              say: Callable[[str], None] = print) -> dict[str, Any]:
    """Train (or reuse) and evaluate every variant, then write `<out>/ablation.{md,json}`; returns the table."""
    import torch

    from .train.config import check_config

    out, evals = Path(out), dict(evals or {})
    configs = {name: variant_config(base, name, overrides, out) for name in names}
    for cfg in configs.values():  # every typo fails before the first variant trains
        check_config(cfg)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    data = read_data(evals, pods_prompts)
    rows = []
    for name, cfg in configs.items():
        run = Path(cfg.train.out_dir)
        status = train_variant(cfg)
        eval_file = run / "ablation.json"
        wanted = {"evals": evals, "gates": [float(g) for g in gates],
                  "pods_prompts": list(data["pods"][1]) if "pods" in data else None}
        saved = json.loads(eval_file.read_text()) if eval_file.is_file() else {}
        if status == "reused" and {k: saved.get(k) for k in wanted} == wanted:
            results = saved["results"]
            say(f"{name}: reused run and evaluation ({run})")
        else:
            say(f"{name}: {status} ({run}); evaluating on {', '.join(evals) or 'nothing'}")
            model = load_trained(cfg, device)
            results = evaluate_variant(model, data, gates=gates, batch_size=batch_size, workers=workers,
                                       seed=cfg.seed)
            del model
            write_json(eval_file, {"variant": name, **wanted, "results": results})
        if results.get("sweep"):
            sweep_plot(run / "gate_sweep.png", results["sweep"], paper_curve=name == "steervit")
        rows.append(_row(name, cfg, results))
    study = {"base_config": str(base), "overrides": list(overrides), "evals": evals,
             "gates": [float(g) for g in gates], "seed": configs[names[0]].seed,
             "train_iters": configs[names[0]].train.train_iters,
             "batch_size": configs[names[0]].train.batch_size}
    table = {"benchmark": "ablation", "metric": "percent", "columns": COLUMNS, "setup": study, "rows": rows,
             "paper": PAPER}
    write_json(out / "ablation.json", table)
    with atomic_path(out / "ablation.md") as tmp:
        tmp.write_text(markdown(table))
    return table


def _row(name: str, cfg: DictConfig, results: dict) -> dict[str, Any]:
    from .train.state import load_state
    from .train.trainer import LAST

    state = load_state(Path(cfg.train.out_dir) / LAST)
    best = float(state["best_metric"])
    return {"variant": name, "overrides": list(VARIANTS[name]), "run": str(cfg.train.out_dir),
            "steps": int(state["step"]), "val_pmass": 100 * best if best > float("-inf") else None,
            **{b: results[b]["value"] for b in BENCHMARKS if b in results},
            "paper": PAPER.get(name, {}), "details": results}


def markdown(table: dict) -> str:
    """The paper's layout: rows = variants, FG-CLS / CORE / PODS, ours then the paper's."""
    s = table["setup"]
    headers = ["variant", "change", "FG-CLS", "CORE", "PODS", "paper FG-CLS", "paper CORE", "paper PODS",
               "val pmass", "steps"]
    rows = [[r["variant"], " ".join(r["overrides"]) or "(base)", *(r.get(b) for b in BENCHMARKS),
             *(r["paper"].get(b) for b in BENCHMARKS), r["val_pmass"], r["steps"]] for r in table["rows"]]
    lines = [
        "# Ablation study", "",
        f"Base config `{s['base_config']}`" + (f" with `{' '.join(s['overrides'])}`" if s["overrides"] else "")
        + f"; seed {s['seed']}, {s['train_iters']} steps of batch {s['batch_size']} for every variant.",
        "Evaluated on: " + (", ".join(f"{k} = `{v}`" for k, v in s["evals"].items()) or "nothing (`--eval`)")
        + ". Numbers in percent; `-` = not evaluated or not in the paper.", "",
        markdown_table(headers, rows),
        *(f"- {COLUMNS[b]}" for b in BENCHMARKS),
        "- paper: reference §5 \"Ablations\" (DINOv2 ViT-B/14, the full recipe); val pmass: best validation "
        "softmax mass inside the mask during training.",
    ]
    if s["gates"]:
        lines.append(f"- gate sweep ({', '.join(fmt(g, 2) for g in s['gates'])}): `<run>/gate_sweep.png` and "
                     "`<run>/ablation.json` of each variant.")
    return "\n".join(lines) + "\n"
