"""`steervit ablate`: the design study as one command (docs/ablations.md).

    steervit ablate --config BASE.yaml --variants steervit,late,no-gate,linear,pointing \
        train.train_iters=20000 --out runs/ablate --eval core=/data/CORE --eval pods=/data/PODS

Only the arguments live here; the work is in steervit.ablate, imported when the command runs.
"""
from __future__ import annotations

import argparse
import sys

from ..evaluation.sweep import GATE_FACTORS
from .options import EXIT_ERROR, add_device_option, add_loader_options, gate_factor_list


def register(commands) -> None:
    from ..ablate import ALIASES, DEFAULT_VARIANTS, VARIANTS

    known = "; ".join(f"{name} ({' '.join(o) or 'the base config'})" for name, o in VARIANTS.items())
    p = commands.add_parser(
        "ablate", help="design study: train and evaluate model variants, one table in the paper's layout",
        description=f"Variants: {known}; aliases: "
                    + ", ".join(f"{a} = {n}" for a, n in ALIASES.items()) + ". See docs/ablations.md.")
    p.add_argument("--config", required=True, metavar="CONFIG",
                   help="the base training config (a preset or YAML file), taken to be SteerViT")
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS), metavar="A,B,...",
                   help=f"comma-separated variant names (default: {','.join(DEFAULT_VARIANTS)})")
    p.add_argument("--out", default="runs/ablate", metavar="DIR",
                   help="study folder: one run folder per variant, ablation.md/json (default: runs/ablate)")
    p.add_argument("--eval", action="append", default=[], metavar="NAME=PATH",
                   help="a benchmark to evaluate every variant on: core=PATH, pods=PATH or fgcls=PATH "
                        "(as the --data of `steervit eval NAME`); repeatable")
    p.add_argument("--gates", type=gate_factor_list, default=list(GATE_FACTORS), metavar="F,F,...",
                   help="gate factors of each variant's sweep, needs core (default: 0,0.2,0.4,0.6,0.8,1)")
    p.add_argument("--no-sweep", action="store_true", help="skip the gate-factor sweeps")
    p.add_argument("--pods-prompts", type=lambda v: [k.strip() for k in v.split(",") if k.strip()],
                   metavar="KIND,...", help="PODS prompt kinds to evaluate (supercategory, name, description; "
                                            "default: all the data allows; the table uses description)")
    add_device_option(p)
    add_loader_options(p)
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="overrides of the base config for every variant, e.g. train.train_iters=20000")
    p.set_defaults(func=cmd_ablate)


def cmd_ablate(args: argparse.Namespace) -> int:
    from ..ablate import parse_evals, parse_variants, run_study
    from ..train.trainer import NonFiniteLossError
    from .train import setup_logging

    names = parse_variants(args.variants)
    evals = parse_evals(args.eval)
    setup_logging(True)
    try:
        table = run_study(args.config, names, overrides=args.overrides, out=args.out, evals=evals,
                          gates=() if args.no_sweep else args.gates, device=args.device,
                          batch_size=args.batch_size, workers=args.workers, pods_prompts=args.pods_prompts,
                          say=lambda line: print(f"steervit ablate: {line}", flush=True))
    except NonFiniteLossError as err:
        print(f"steervit: training stopped: {err}", file=sys.stderr)
        return EXIT_ERROR
    print(f"{len(table['rows'])} variants; table in {args.out}/ablation.md and {args.out}/ablation.json")
    return 0
