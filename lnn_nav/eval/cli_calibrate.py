"""`lnn-nav calibrate`: choose a checkpoint's output gain in closed loop, on calibration worlds."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from lnn_nav.argtypes import positive_int
from lnn_nav.sim.kinds import WORLD_KINDS

HELP = "choose a checkpoint's output gain in closed loop on calibration worlds (not the held-out ones)"
DESCRIPTION = """\
Fly a checkpoint with each candidate output gain (see `lnn-nav gain`) on the
first --episodes calibration worlds of each --world (seeds 500000+: neither
training worlds nor the held-out evaluation seeds 1000-1999), pick the gain
with the most successes (a tie goes to the gain nearest 1), and write the
checkpoint with that gain to --out. The candidates' table goes into the
checkpoint's metadata (`calibration`) and beside it as <out>.calibration.json.

Candidates are the grid (vx, turn, 1, turn) over --vx and --turn: `turn`
sharpens the lateral velocity and the yaw rate together, the two commands
that steer round an obstacle; vx below 1 slows the cruise. Every candidate
flies the same worlds with the benchmark's settings (`lnn-nav eval`), so
the held-out success rate of the result stays an unbiased measure.

Why: behaviour cloning with a squared loss shrinks commands towards their
mean, and the crash diagnosis of `lnn-nav eval` shows the learners
under-steering; one gain does not suit every core (measured 2026-11-29:
1.3 helped the LSTM and GRU in both worlds, cost the CNN and CfC in urban).

Example (3 candidates x 2 kinds x 25 worlds, ~8 min on 2 CPU cores):
  lnn-nav calibrate models/cfc_ncp.safetensors --out runs/cfc_ncp_cal.safetensors
  lnn-nav eval --model runs/cfc_ncp_cal.safetensors --world forest urban --episodes 100"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="policy checkpoint (.safetensors)")
    parser.add_argument("--out", required=True, metavar="PATH", help="calibrated checkpoint to write (.safetensors)")
    parser.add_argument(
        "--vx",
        type=float,
        nargs="+",
        default=[1.0],
        metavar="G",
        help="forward-speed gains to try (default: %(default)s; below 1 slows the cruise, which "
        "timed out the CfC-NCP in 15-16 of 50 calibration worlds at 0.6)",
    )
    parser.add_argument(
        "--turn",
        type=float,
        nargs="+",
        default=[1.0, 1.3, 1.6],
        metavar="G",
        help="lateral-velocity and yaw-rate gains to try (default: %(default)s)",
    )
    parser.add_argument(
        "--world", nargs="+", choices=WORLD_KINDS, default=list(WORLD_KINDS), help="world kinds (default: all)"
    )
    parser.add_argument(
        "--episodes", type=positive_int, default=25, help="calibration worlds per kind (default: %(default)s)"
    )
    parser.add_argument("--workers", type=int, default=2, help="default: %(default)s")
    parser.add_argument("--envs", type=int, default=16, help="drones flown at once (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from lnn_nav.eval.calibrate import Candidate, calibrate, choose, format_gain, gain_grid
    from lnn_nav.models import CheckpointError
    from lnn_nav.models.checkpoint import read_checkpoint_info, with_output_gain

    if not Path(args.checkpoint).is_file():
        print(f"lnn-nav calibrate: error: checkpoint not found: {args.checkpoint}", file=sys.stderr)
        return 2
    if Path(args.out).resolve() == Path(args.checkpoint).resolve():
        print("lnn-nav calibrate: error: --out must differ from the checkpoint (keep the original)", file=sys.stderr)
        return 2
    try:
        read_checkpoint_info(args.checkpoint)
        grid = gain_grid(args.vx, args.turn)
    except (CheckpointError, ValueError) as exc:
        print(f"lnn-nav calibrate: error: {exc}", file=sys.stderr)
        return 2

    def report(c: Candidate) -> None:
        worlds = "  ".join(f"{w} {c.successes[w]}/{c.episodes[w]}" for w in c.successes)
        tqdm.write(
            f"gain {format_gain(c.gain):<18} {worlds}  all {c.total_successes}/{c.total_episodes} ({c.rate:.0%})"
        )
        sys.stdout.flush()  # a candidate takes minutes: show it now, also through a pipe

    total = len(grid) * len(args.world) * args.episodes
    print(
        f"calibrating {args.checkpoint}: {len(grid)} gains (vx, vy, vz, yaw rate) x {len(args.world)} world kinds "
        f"x {args.episodes} calibration worlds = {total} flights"
    )
    started = time.perf_counter()
    bar = tqdm(total=total, unit="episode", desc="calibrate")
    candidates = calibrate(
        args.checkpoint,
        grid,
        args.world,
        args.episodes,
        envs=args.envs,
        workers=args.workers,
        on_result=lambda _r: bar.update(1),
        on_candidate=report,
    )
    bar.close()
    best = choose(candidates)
    table = {
        "checkpoint": str(args.checkpoint),
        "worlds": args.world,
        "episodes_per_world": args.episodes,
        "seconds": time.perf_counter() - started,
        "chosen": list(best.gain),
        "candidates": [c.as_dict() for c in candidates],
    }
    summary = {k: table[k] for k in ("worlds", "episodes_per_world", "chosen")}
    summary["candidates"] = [
        {"gain": list(c.gain), "successes": c.successes, "episodes": c.episodes} for c in candidates
    ]
    out = with_output_gain(args.checkpoint, args.out, best.gain, metadata={"calibration": summary})
    side = out.with_name(out.stem + ".calibration.json")
    side.write_text(json.dumps(table, indent=1))
    print(
        f"chosen gain {format_gain(best.gain)}: {best.total_successes}/{best.total_episodes} calibration flights "
        f"reached the goal; wrote {out} and {side}"
    )
    return 0
