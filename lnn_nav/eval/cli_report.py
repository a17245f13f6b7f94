"""`lnn-nav report`: closed-loop benchmark results -> markdown report with charts, maps and the targets."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "turn `lnn-nav eval` results into a report: success table, bar charts, maps, targets"
DESCRIPTION = """\
Read one or more results files written by `lnn-nav eval` (one per controller
or per run; their cells merge) and write DIR/report.md with:
  - the targets (CfC-NCP's success in distribution per world, averaged
    out of distribution and in its worst OOD condition, --target-*; whether the liquid cores degrade less than
    the baselines), each stated as met, not met or not run, with numbers;
  - success-rate tables (rows controllers, columns world x condition, 95%
    Wilson intervals, OOD means per world and overall) and bar charts;
  - the drop from in- to out-of-distribution per controller, liquid cores
    against LSTM/GRU/CNN;
  - collision rate, time to goal, path length relative to the expert (same
    seeds) and obstacle clearance;
  - top-down trajectory maps where the episodes carry tracks;
  - where `lnn-nav eval --ros-episodes` ran, how many outcomes through the
    ROS 2 graph agree with the in-process ones, and which seeds differ;
  - with --camera CKPT..., each checkpoint flown again in-process on the
    mapped worlds (per world: in distribution and the OOD condition where
    controllers differ most) and its onboard camera written as a GIF, the
    frame beside its VisualBackProp saliency (about 10-40 s per flight).

Exit code 0 when the report is written (whether or not targets are met),
2 when a results file is missing or not in the expected form.

Example:
  lnn-nav report reports/eval/cfc_ncp.json reports/eval/lstm.json --out reports/benchmark
  lnn-nav report models/eval/*.json --out docs/benchmark --camera models/cfc_ncp.safetensors
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", nargs="+", metavar="RESULTS.json", help="files written by `lnn-nav eval --out`")
    parser.add_argument("--out", default="reports/benchmark", metavar="DIR", help="default: %(default)s")
    parser.add_argument(
        "--title",
        default="Closed-loop benchmark: liquid controllers vs baselines",
        help="report heading (default: %(default)s)",
    )
    parser.add_argument("--no-maps", action="store_true", help="skip the top-down trajectory maps (faster)")
    parser.add_argument(
        "--camera",
        nargs="+",
        default=[],
        metavar="CKPT",
        help="checkpoints to fly again for onboard-camera GIFs with saliency (named as "
        "`lnn-nav eval` names them: cfc_ncp.safetensors -> cfc_ncp)",
    )
    # Defaults live in lnn_nav.eval.targets.Targets; the help repeats them (a test keeps the two equal).
    parser.add_argument(
        "--target-in-distribution",
        type=float,
        default=None,
        metavar="RATE",
        help="CfC-NCP's success rate to reach in distribution, in each world (default: 0.95)",
    )
    parser.add_argument(
        "--target-ood",
        type=float,
        default=None,
        metavar="RATE",
        help="CfC-NCP's success rate to reach averaged over the out-of-distribution presets (default: 0.85)",
    )
    parser.add_argument(
        "--target-min-ood-cell",
        type=float,
        default=None,
        metavar="RATE",
        help="CfC-NCP's success rate to reach in every out-of-distribution condition (default: 0.6)",
    )


def run(args: argparse.Namespace) -> int:
    from lnn_nav.eval.report import (
        ResultsError,
        Targets,
        check_targets,
        load_results,
        ros_agreement_line,
        write_report,
    )

    try:
        chosen = {
            "in_distribution": args.target_in_distribution,
            "ood_mean": args.target_ood,
            "min_ood_cell": args.target_min_ood_cell,
        }
        targets = Targets(**{k: v for k, v in chosen.items() if v is not None})
    except ValueError as exc:
        print(f"lnn-nav report: error: {exc}", file=sys.stderr)
        return 2
    try:
        cells = load_results(args.results)
        if not cells:
            raise ResultsError(f"no result cells in {', '.join(args.results)}")
    except ResultsError as exc:
        print(f"lnn-nav report: error: {exc}", file=sys.stderr)
        return 2
    from lnn_nav.eval.cli_eval import controller_name

    missing = [c for c in args.camera if not Path(c).is_file()]
    if missing:
        print(f"lnn-nav report: error: checkpoint not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    cameras = {controller_name(c): c for c in args.camera}
    path = write_report(
        cells,
        Path(args.out),
        title=args.title,
        maps=not args.no_maps,
        cameras=cameras,
        on_progress=lambda text: print(text, flush=True),
        targets=targets,
    )
    for check in check_targets(cells, targets):
        print(f"{check.status:<8} {check.target}: {check.text}")
    ros = ros_agreement_line(cells)
    if ros is not None:
        print(ros)
    print(f"wrote {path}")
    return 0
