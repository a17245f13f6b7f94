"""The CfC cores through every public call style, inference, one CPU thread: before / after / ncps, one run.

    python benchmarks/cell_call_styles.py [--iters 1000] [--repeats 7] [--threads 1] [--out FILE.md]

For AutoNCP(19,4) and a dense 64-unit CfC (ncps 1.0.1 models converted with
``from_ncps``, same weights): ``step()``; the ncps-style call
``model(x[1, 1, F], h, timespans=...)``; short sequences at small batch.
"before" is ``RecurrentCore.forward`` (what ``CfC.forward`` ran before the
inference path: validation, then the ``lnn_nav::cfc_sequence`` op), "after"
``CfC.forward`` as it is now, "ncps" the same call on the ncps module. B=4 uses
Δt = 1 on both sides: ncps 1.0.1 cannot take per-sample timespans at B > 1.
The repeats of a row's cases are interleaved; figures are medians.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
from pathlib import Path

import torch

from lnn_nav.eval.latency import case, time_together
from lnn_nav.models import from_ncps
from lnn_nav.models.core import RecurrentCore


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=1000, help="T=1 calls per repeat (sequences: fewer)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, help="also write the table to this markdown file")
    args = parser.parse_args(argv)
    try:
        import ncps.torch as ncps_torch
        import ncps.wirings as ncps_wirings
    except ImportError:
        print("ncps is not installed (pip install ncps==1.0.1)", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    lines = [
        f"CfC call styles, inference, {args.threads} thread(s), torch {torch.__version__}, "
        f"{platform.machine()} {platform.processor() or ''}, {datetime.date.today().isoformat()}",
        "",
        "| core | call | before (µs) | after (µs) | ncps 1.0.1 (µs) | after vs before | after vs ncps |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    print("\n".join(lines), flush=True)
    n = args.iters
    for name, theirs in (
        ("AutoNCP(19,4)", ncps_torch.CfC(32, ncps_wirings.AutoNCP(19, 4))),
        ("dense 64 units", ncps_torch.CfC(32, 64)),
    ):
        theirs.eval()
        ours = from_ncps(theirs).eval()
        x = torch.randn(1, 32)
        x1 = x.unsqueeze(1)
        h = torch.randn(1, ours.state_size)
        dt = torch.tensor([0.05])
        ts1 = dt.view(1, 1)
        x16, ts16 = torch.randn(1, 16, 32), torch.full((1, 16), 0.05)
        x48, h4 = torch.randn(4, 8, 32), torch.randn(4, ours.state_size)

        def old(*a, core=ours, **k):
            return RecurrentCore.forward(core, *a, **k)

        calls = [  # label, after, before (None: unchanged), ncps, calls per repeat; timed within this iteration
            ("step()", lambda: ours.step(x, h, dt), None, lambda: theirs(x1, h, ts1), n),  # noqa: B023
            (
                "forward, T=1 (ncps-style call)",
                lambda: ours(x1, h, timespans=ts1),  # noqa: B023
                lambda: old(x1, h, timespans=ts1),  # noqa: B023
                lambda: theirs(x1, h, timespans=ts1),  # noqa: B023
                n,
            ),
            (
                "forward, B=1, T=16",
                lambda: ours(x16, h, ts16),  # noqa: B023
                lambda: old(x16, h, ts16),  # noqa: B023
                lambda: theirs(x16, h, ts16),  # noqa: B023
                n // 5,
            ),
            ("forward, B=4, T=8", lambda: ours(x48, h4), lambda: old(x48, h4), lambda: theirs(x48, h4), n // 10),  # noqa: B023
        ]
        for label, after, before, ncps_call, iters in calls:
            cases = [case(after, iters), case(ncps_call, max(iters // 10, 5))]
            if before is not None:
                cases.append(case(before, max(iters // 5, 5)))
            t = time_together(cases, args.repeats)
            after_us, ncps_us = t[0], t[1]
            before_cell = f"{t[2]:.1f}" if before is not None else "(unchanged)"
            versus = f"{t[2] / after_us:.1f}x" if before is not None else "-"
            line = (
                f"| {name} | {label} | {before_cell} | {after_us:.1f} | {ncps_us:.1f} | {versus} | "
                f"{ncps_us / after_us:.1f}x |"
            )
            print(line, flush=True)
            lines.append(line)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
