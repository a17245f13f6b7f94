"""`lnn-nav eval`: closed-loop success rates of controllers on held-out worlds."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lnn_nav.sim.kinds import COMBINATION_PRESET_NAMES, PRESET_NAMES, WORLD_KINDS

if TYPE_CHECKING:
    from lnn_nav.eval.closed_loop import CellResult

HELP = "closed-loop benchmark: success rates on held-out worlds, in and out of distribution"
DESCRIPTION = """\
Fly each controller (checkpoints, or `expert` for the privileged expert) in the
embedded simulator on the first --episodes held-out evaluation worlds
(seeds 1000+, never used for training) of each --world and --preset, batched
in-process. Prints a success-rate table with 95% Wilson intervals and writes
every episode's outcome and the summary to --out (JSON), and the same as CSV
beside it (<out>.cells.csv, one row per cell; <out>.episodes.csv, one per
episode). Every collision is diagnosed (lnn_nav/sim/forensics.py): what was
hit, its bearing from the heading, the speed, and how long the privileged
expert, asked at the learner's states of the last 2 s, would have turned
otherwise; each crash episode carries a `crash` block, each cell prints a
`crashes:` line, and `lnn-nav report` tabulates them. Every timeout is
diagnosed against the expert's plan the same way: where the track left it,
where the goal lay then, and the detour 8 s on (a missed turn, another
route, or slow on the plan); a `timeout` block and a `timeouts:` line.
A controller is
named by its checkpoint's file name (cfc_ncp.safetensors -> cfc_ncp), a
training run's best/last file by the run folder (runs/gru_bc/best.safetensors
-> gru_bc); `lnn-nav report` knows the core from a name starting cfc_ncp,
cfc, ltc, lstm, gru or cnn.

--ros-episodes K flies the first K seeds of every cell once more through the
ROS 2 graph, as `lnn-nav fly` does: sim_node and the controller node (or
expert_node for `expert`) as separate processes over DDS on loopback, same
seed, preset, checkpoint, camera, control rate and command limits. Each
cell's JSON gains a `ros` block (per seed: ros_outcome, inprocess_outcome,
agree) and the table a column `ros agree A/K`. Both fly the same noise
(wind, IMU and camera noise come from a stream seeded by the world seed, in
a batch or alone) and the same arithmetic (each drone's policy stepped at
batch 1 here, as the node steps it, on the odometry of the same step), so a
graph flight repeats the in-process episode; only a command or odometry
delayed past the nodes' timeouts on an overloaded machine can part them.
Every disagreement is printed and kept. expert_node flies the demonstrating
expert, as the benchmark does. Graph flights run one at a time after each
cell; node logs go next to --out in ros_logs/.

Example:
  lnn-nav eval --model models/cfc_ncp.safetensors expert --world forest urban --episodes 100
  lnn-nav eval --model models/cfc_ncp.safetensors expert --world forest --episodes 20 --ros-episodes 3
"""

#: Checkpoint names a training run writes (``runs/cfc_ncp_ft/best.safetensors``): they say nothing of the model.
_RUN_FILE_STEMS = ("best", "last")


def controller_name(model: str) -> str:
    """The controller's name in results: ``expert``, else the checkpoint's stem, or its run folder's
    name for a run's ``best``/``last`` file (the report finds the core from that name: ``cfc_ncp_ft``)."""
    if model == "expert":
        return model
    path = Path(model)
    return path.parent.name if path.stem in _RUN_FILE_STEMS and path.parent.name else path.stem


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        nargs="+",
        required=True,
        metavar="CKPT",
        help="checkpoint(s) to fly; the word `expert` flies the privileged expert",
    )
    parser.add_argument(
        "--world", nargs="+", choices=WORLD_KINDS, default=list(WORLD_KINDS), help="world kinds (default: all)"
    )
    parser.add_argument(
        "--preset",
        nargs="+",
        default=["in_distribution"],
        metavar="NAME",
        help=f"conditions: {', '.join(PRESET_NAMES)}; or a combination: "
        f"{', '.join(COMBINATION_PRESET_NAMES)} (default: in_distribution)",
    )
    parser.add_argument("--episodes", type=int, default=100, help="per cell (default: %(default)s)")
    parser.add_argument(
        "--seed-offset",
        type=int,
        default=0,
        metavar="K",
        help="skip the first K held-out seeds: --seed-offset 100 flies 1100+, a fresh set to "
        "confirm a checkpoint that was chosen by its results on 1000-1099 (default: %(default)s)",
    )
    parser.add_argument(
        "--calibration",
        action="store_true",
        help="fly calibration worlds (seeds 500000+) instead of the held-out ones: where recipes, "
        "epochs and gains are chosen, so the held-out seeds stay a test set",
    )
    parser.add_argument("--workers", type=int, default=2, help="default: %(default)s")
    parser.add_argument("--envs", type=int, default=16, help="drones flown at once (default: %(default)s)")
    parser.add_argument(
        "--camera-hfov",
        type=float,
        default=None,
        metavar="DEG",
        help="camera horizontal field of view in degrees (default: the camera each checkpoint "
        "records, i.e. its training bags' CameraInfo, else 90; a value that differs from the "
        "recorded one is flown with a warning)",
    )
    parser.add_argument("--out", default="reports/eval/results.json", metavar="PATH", help="default: %(default)s")
    parser.add_argument(
        "--no-tracks",
        action="store_true",
        help="leave each episode's trajectory out of --out (the report's maps need them; results kept in "
        "a repository, like models/eval/, go without: ~10x smaller)",
    )
    parser.add_argument(
        "--ros-episodes",
        type=int,
        default=0,
        metavar="K",
        help="also fly the first K seeds of each cell through the ROS 2 graph and report whether "
        "the outcomes agree (default: %(default)s)",
    )


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from lnn_nav.eval.closed_loop import eval_seeds, evaluate
    from lnn_nav.eval.crashes import crash_line
    from lnn_nav.eval.timeouts import timeout_line
    from lnn_nav.models.errors import CheckpointError
    from lnn_nav.nodes.availability import graph_unavailable
    from lnn_nav.rollouts.flights import camera_hfov_for
    from lnn_nav.sim.camera import CameraConfig
    from lnn_nav.sim.presets import ALL_PRESETS, COMBINATION_PRESETS, presets_for

    unknown = [p for p in args.preset if p not in ALL_PRESETS]
    if unknown:
        print(
            f"lnn-nav eval: error: unknown preset(s) {', '.join(unknown)}; expected one of {', '.join(ALL_PRESETS)}",
            file=sys.stderr,
        )
        return 2
    for model in args.model:
        if model != "expert" and not Path(model).is_file():
            print(f"lnn-nav eval: error: checkpoint not found: {model}", file=sys.stderr)
            return 2
    try:
        if args.camera_hfov is not None:
            CameraConfig(hfov_deg=args.camera_hfov)
    except ValueError as err:
        print(f"lnn-nav eval: error: --camera-hfov: {err}", file=sys.stderr)
        return 2
    cameras: dict[str, float] = {}
    for model in args.model:
        try:
            cameras[model], warning = camera_hfov_for(None if model == "expert" else model, args.camera_hfov)
        except CheckpointError as err:
            print(f"lnn-nav eval: error: {err}", file=sys.stderr)
            return 2
        if warning:
            print(f"lnn-nav eval: warning: {warning}", file=sys.stderr)
    if not 0 <= args.ros_episodes <= args.episodes:
        print(
            f"lnn-nav eval: error: --ros-episodes must be between 0 and --episodes ({args.episodes}), "
            f"got {args.ros_episodes}",
            file=sys.stderr,
        )
        return 2
    if args.ros_episodes:
        # Before the in-process flights, which may take hours: a graph that cannot start fails now.
        reason = graph_unavailable()
        if reason is not None:
            print(f"lnn-nav eval: error: --ros-episodes needs the ROS 2 graph: {reason}", file=sys.stderr)
            return 2
    try:
        seeds = eval_seeds(args.episodes, args.seed_offset, args.calibration)
    except ValueError as err:
        print(f"lnn-nav eval: error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    cells = []
    started = time.perf_counter()
    for model in args.model:
        for world in args.world:
            for preset in args.preset:
                if preset not in presets_for(world) and preset not in COMBINATION_PRESETS:
                    continue  # dense_forest in an urban world: the preset does not apply there
                bar = tqdm(total=len(seeds), desc=f"{controller_name(model)} {world} {preset}", unit="episode")
                cell = evaluate(
                    None if model == "expert" else model,
                    world,
                    seeds,
                    preset,
                    envs=args.envs,
                    workers=args.workers,
                    on_result=lambda _r: bar.update(1),  # noqa: B023 -- called within this iteration
                    name=controller_name(model),
                    camera_hfov=cameras[model],
                )
                bar.close()
                episodes = cell.episodes
                if args.no_tracks:
                    episodes = [{k: v for k, v in e.items() if k != "track"} for e in episodes]
                entry = {**cell.summary(), "episodes_detail": episodes}
                ros_column = ""
                if args.ros_episodes:
                    entry["ros"] = ros = _fly_over_ros(model, cell, seeds[: args.ros_episodes], out.parent)
                    ros_column = f"  ros agree {ros['agreements']}/{ros['flown']}"
                cells.append(entry)
                print(
                    f"{entry['controller']:<24} {world:<7} {preset:<16} success {cell.successes}/"
                    f"{entry['episodes']} ({entry['success_rate']:.0%}, 95% CI {entry['ci95'][0]:.0%}-"
                    f"{entry['ci95'][1]:.0%})  {entry['outcomes']}{ros_column}"
                )
                for why in (crash_line(entry), timeout_line(entry)):
                    if why:
                        print(f"    {why}")
                for e in entry.get("ros", {}).get("episodes", []):
                    if not e["agree"]:
                        why = f"  ({e['error'].splitlines()[0]}; logs in {e['logs']})" if "error" in e else ""
                        print(
                            f"    seed {e['seed']}: ROS graph {e['ros_outcome']}, in-process "
                            f"{e['inprocess_outcome']}{why}"
                        )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "seconds": time.perf_counter() - started,
                "seeds": [seeds[0], seeds[-1]],
                "calibration": args.calibration,
                "ros_episodes": args.ros_episodes,
                "camera_hfov": args.camera_hfov,
                # --camera-hfov as given (null: each checkpoint's own); the field of view
                # each controller flew, by name, as every cell also records it.
                "cameras": {controller_name(m): cameras[m] for m in args.model},
                "cells": cells,
            },
            indent=1,
        )
    )
    from lnn_nav.eval.tables import write_results_csv

    tables = write_results_csv(cells, out)
    print(f"wrote {out} and {', '.join(str(t) for t in tables)}")
    return 0


def _fly_over_ros(model: str, cell: CellResult, seeds: Sequence[int], out_dir: Path) -> dict[str, Any]:
    """The cell's first ``seeds`` through the ROS 2 graph; its ``ros`` block (one progress line per flight)."""
    from lnn_nav.eval.ros_agreement import check_cell_over_ros

    def report(flight: dict[str, Any]) -> None:
        print(
            f"  ROS 2 graph: {cell.controller} {cell.kind} {cell.preset} seed {flight['seed']} -> {flight['outcome']}",
            flush=True,
        )

    logs = out_dir / "ros_logs" / cell.controller
    return check_cell_over_ros(
        None if model == "expert" else model, cell.kind, cell.preset, seeds, cell.episodes, logs, on_flight=report
    )
