"""Batch-1 latency on one CPU thread, each figure beside its reference from the same run.

    python benchmarks/step_latency.py [--iters 2000] [--repeats 5] [--threads 1] [--out FILE.md]

Three tables, the repeats of each pair interleaved:

* cores through ``step()`` beside ncps 1.0.1 on the same weights (the T=1 call);
* the CfC cores through every public call style in inference (``step()``, the
  ncps-style ``model(x[1, 1, F], h, timespans=...)``, short sequences at small
  batch) beside ncps making the same call;
* the full policy step (uint8 frame -> command) beside the reference encoder
  path (``LNN_NAV_REFERENCE_ENCODER=1``: ATen's convolutions, then the fused
  cell), for the shipped controller and the 96x128 demo size.

Ratios are reference / ours (> 1: we are faster). Wall-clock figures belong
here, not in the tests.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
from pathlib import Path

import torch

from lnn_nav.eval.latency import call_style_table, format_table, policy_latency_table, step_latency_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=2000, help="calls per timing repeat (default 2000)")
    parser.add_argument("--repeats", type=int, default=5, help="timing repeats; the median is reported")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--out", type=Path, help="also write the tables to this markdown file")
    args = parser.parse_args(argv)

    header = (
        f"Latency, batch 1 unless stated, {args.threads} thread(s), torch {torch.__version__}, "
        f"{platform.machine()} {platform.processor() or ''}, {datetime.date.today().isoformat()}".strip()
    )
    print(header, flush=True)
    blocks = []
    for title, rows in (
        ("Cores, step() beside ncps", lambda: step_latency_table(args.iters, args.repeats, args.threads)),
        ("CfC call styles (inference) beside ncps", lambda: call_style_table(args.iters, args.repeats, args.threads)),
        (
            "Full policy step beside the reference encoder path",
            lambda: policy_latency_table(max(args.iters // 5, 20), args.repeats, args.threads),
        ),
    ):
        table = format_table(rows())
        block = f"{title}\n\n{table}\n"
        print(block, flush=True)
        blocks.append(block)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(header + "\n\n" + "\n".join(blocks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
