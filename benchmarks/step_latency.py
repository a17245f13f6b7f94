"""Batch-1 step latency on one CPU thread: lnn_nav beside ncps, same weights, same run.

    python benchmarks/step_latency.py [--iters 2000] [--threads 1] [--out FILE.md]

Prints a markdown table with the ratio ncps/lnn_nav per model (> 1: we are
faster). Wall-clock figures belong here, not in the tests.
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import torch

from lnn_nav.eval.latency import format_table, step_latency_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=2000, help="calls per timing repeat (default 2000)")
    parser.add_argument("--repeats", type=int, default=5, help="timing repeats; the median is reported")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--out", type=Path, help="also write the table to this markdown file")
    args = parser.parse_args(argv)

    rows = step_latency_table(args.iters, args.repeats, args.threads)
    header = (
        f"Step latency, batch 1, {args.threads} thread(s), torch {torch.__version__}, "
        f"{platform.machine()} {platform.processor() or ''}".strip()
    )
    table = format_table(rows)
    print(header)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(f"{header}\n\n{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
