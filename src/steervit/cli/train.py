"""`steervit train` and `steervit cache-text` (also `python -m steervit.train`, e.g. under torchrun).

    steervit train --config paper data.text_cache=/data/cache train.out_dir=runs/paper
    steervit train --config paper train.out_dir=runs/paper --resume
    steervit train --config paper train.out_dir=runs/new --resume-from runs/paper/last.pt
    torchrun --nproc_per_node=4 -m steervit.train --config paper ...
    steervit cache-text --config paper --out /data/cache

Everything after the options is `key=value` overrides of the config (see steervit.train.config).
"""
from __future__ import annotations

import argparse
import logging
import sys

from .options import EXIT_ERROR, add_device_option, positive_int


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, metavar="CONFIG",
                   help="a preset (paper, released, smoke) or a YAML file (ours, or a published training config)")
    p.add_argument("--resume", action="store_true", help="continue from <train.out_dir>/last.pt")
    p.add_argument("--resume-from", metavar="CHECKPOINT", help="continue from this training checkpoint")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. train.batch_size=8")
    p.set_defaults(func=cmd_train)


def add_cache_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, metavar="CONFIG", help="the training config whose data to cache")
    p.add_argument("--out", metavar="DIR", help="cache folder (default: the config's data.text_cache)")
    p.add_argument("--batch-size", type=positive_int, default=256, metavar="N")
    p.add_argument("--shard-rows", type=positive_int, default=100_000, metavar="N",
                   help="expressions per safetensors shard (default: 100000)")
    add_device_option(p)
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    p.set_defaults(func=cmd_cache_text)


def register(commands) -> None:
    add_train_arguments(commands.add_parser("train", help="train the adapter (CA layers, connector, head)"))
    add_cache_arguments(commands.add_parser(
        "cache-text", help="encode every expression of the configured data once, for text-encoder-free training"))


def setup_logging(main_process: bool) -> None:
    logging.basicConfig(level=logging.INFO if main_process else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def cmd_train(args: argparse.Namespace) -> int:
    from ..train import distributed
    from ..train.config import check_config, load_config
    from ..train.trainer import NonFiniteLossError, NoUsableSampleError, Trainer

    cfg = load_config(args.config, args.overrides)
    check_config(cfg)  # before joining the process group, so a typo fails fast everywhere
    info = distributed.setup(cfg.train.device)
    setup_logging(info.is_main)
    try:
        trainer = Trainer(cfg, dist_info=info)
        summary = trainer.fit(resume=args.resume_from or args.resume)
    except (NonFiniteLossError, NoUsableSampleError) as err:
        print(f"steervit: training stopped: {err}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        distributed.teardown()
    if info.is_main:
        print(f"trained to step {summary['step']}; best validation pmass {summary['best_pmass']:.4f}; "
              f"run folder {cfg.train.out_dir}")
    return 0


def cmd_cache_text(args: argparse.Namespace) -> int:
    from ..data import load_mixture
    from ..loading import resolve_device
    from ..text import TextEncoder
    from ..train.config import check_config, load_config, sources
    from ..train.text_cache import build_text_cache, unique_expressions

    setup_logging(True)
    cfg = load_config(args.config, args.overrides)
    check_config(cfg)
    out = args.out or cfg.data.text_cache
    if not out:
        raise ValueError("give --out DIR or set data.text_cache in the config")
    record_lists = [load_mixture(sources(cfg, "train")).records]
    if cfg.data.val:
        record_lists.append(load_mixture(sources(cfg, "val")).records)
    expressions = unique_expressions(record_lists)
    encoder = TextEncoder(cfg.model.text_encoder).to(resolve_device(args.device))
    build_text_cache(encoder, expressions, out, batch_size=args.batch_size, shard_rows=args.shard_rows)
    print(f"cached {len(expressions)} expressions ({cfg.model.text_encoder}, width {encoder.dim}) in {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m steervit.train ...`: the `train` command on its own, for torchrun."""
    from . import run_command

    parser = argparse.ArgumentParser(prog="python -m steervit.train", description="Train a SteerViT adapter.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks instead of one-line errors")
    add_train_arguments(parser)
    return run_command(parser.parse_args(argv))
