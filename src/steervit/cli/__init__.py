"""The `steervit` command line: every subcommand registered here, in one place.

Each module of this package is one group of commands with `register(commands)`, which adds its
subparsers with `set_defaults(func=...)`; heavy imports (torch, timm, transformers) happen inside
the commands, so parsing and `--help` stay cheap. Every command ends in `run_command`: the one error
path (one line and exit code 2 for errors a user can fix; `--debug` shows the traceback).

The library never imports this package: loading a model from options is `steervit.loading`.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from .options import EXIT_ERROR, one_line

# The command groups, in the order `steervit --help` lists them.
COMMAND_MODULES = ("images", "checkpoints", "demo", "benchmarks", "train", "offline_data", "ablate", "export",
                   "serve")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="steervit", description="Language-steered Vision Transformers.")
    parser.add_argument("--version", action="version", version=f"steervit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks instead of one-line errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of `steervit` and `python -m steervit`; returns the exit code."""
    return run_command(build_parser().parse_args(argv))


def run_command(args: argparse.Namespace) -> int:
    """Run the parsed command; expected failures become one line on stderr and exit code 2."""
    try:
        return int(args.func(args) or 0)
    except (OSError, ValueError) as err:  # FileNotFoundError, CheckpointError, bad values
        if getattr(args, "debug", False):
            raise
        print(f"steervit: error: {one_line(err)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("steervit: interrupted", file=sys.stderr)
        return 130
