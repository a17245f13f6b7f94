"""`lnn-nav demo`: the end-to-end demo (what `make demo` runs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from lnn_nav.argtypes import positive_int

HELP = "run the end-to-end demo and write its outputs"
DESCRIPTION = "Run the end-to-end demo and write its outputs to --out."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        default="reports/demo",
        metavar="DIR",
        help="output folder (default: %(default)s)",
    )
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        metavar="N",
        help="torch intra-op threads (default: %(default)s)",
    )


def run(args: argparse.Namespace) -> int:
    from lnn_nav.eval.demo import run_demo

    return int(run_demo(out_dir=Path(args.out), threads=args.threads))
