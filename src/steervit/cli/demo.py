"""`steervit demo`: the bundled model on example scenes (what `make demo` runs)."""
from __future__ import annotations

import argparse
from pathlib import Path

from .options import add_model_options, model_from_args


def register(commands) -> None:
    p = commands.add_parser("demo", help="run a model on example scenes: overlays, scores and an index page")
    p.add_argument("--out", type=Path, default=Path("outputs/demo"), metavar="DIR",
                   help="output folder (default: outputs/demo)")
    add_model_options(p)
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    import time

    from ..demo import build_real_photos, build_scenes, describe, run, write_index
    from .options import check_output_dir

    check_output_dir(args.out)
    start = time.perf_counter()
    model = model_from_args(args)
    rows = run(model, build_scenes() + build_real_photos(), args.out)
    index = write_index(rows, args.out, str(args.model))
    width = max(len(r["prompt"]) for r in rows)
    for r in rows:
        print(f"  {r['scene']:<22} {r['prompt']:<{width}}  {describe(r)}")
    print(f"wrote {len(rows)} overlays and {index} in {time.perf_counter() - start:.0f} s")
    return 0
