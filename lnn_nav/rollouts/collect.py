"""`lnn-nav collect`: the privileged expert flies seeded worlds; each episode becomes a rosbag2."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from lnn_nav.argtypes import positive_int
from lnn_nav.data.formats import STORAGES
from lnn_nav.rollouts.options import json_object
from lnn_nav.sim.expert import DEMO_EXPERT, ExpertConfig, demo_expert
from lnn_nav.sim.kinds import RANDOMIZATION_PROFILES, WORLD_KINDS

HELP = "collect expert demonstrations in the simulator, one rosbag2 per episode"
DESCRIPTION = """\
The privileged expert flies seeded worlds of the embedded simulator and every
episode is written as a rosbag2 (MCAP by default) with the topics and types a
drone recording with `ros2 bag record` would have:

  /camera/image_raw  sensor_msgs/Image (rgb8)   /imu/data  sensor_msgs/Imu
  /odom              nav_msgs/Odometry          /goal_pose geometry_msgs/PoseStamped
  /cmd_vel           geometry_msgs/TwistStamped (the expert's command, stamped
                     with the frame it answers)
  /sim_node/world, /sim_node/outcome  std_msgs/String (JSON)

Conditions are randomised around the in-distribution preset (lighting, light
wind, mild camera artefacts). Half the episodes inject slowly varying noise
into the flown command while the clean expert command is recorded (DART), so
the data shows recoveries. Worlds come from seeds --first-seed onwards; the
held-out evaluation seeds (1000-1999) are refused. Failed expert episodes are
not written unless --keep-failures. An index (collect.json) lists every
episode and its outcome. The urban expert keeps to the centre of the street,
clear of poles and parked cars (see --expert-clearance).

Example:
  lnn-nav collect --world forest --episodes 200 --workers 2 --out data/demos/forest
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--world", choices=WORLD_KINDS, required=True, help="world kind")
    parser.add_argument(
        "--episodes", type=positive_int, default=100, metavar="N", help="episodes (default: %(default)s)"
    )
    parser.add_argument(
        "--first-seed",
        type=int,
        default=None,
        metavar="S",
        help="first world seed (default: 100000 for forest, 200000 for urban)",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=min(2, os.cpu_count() or 1),
        metavar="K",
        help="worker processes (default: %(default)s)",
    )
    parser.add_argument(
        "--envs",
        type=positive_int,
        default=8,
        metavar="E",
        help="drones flown at once, over all workers (default: %(default)s)",
    )
    parser.add_argument(
        "--noise",
        type=float,
        default=0.5,
        metavar="X",
        help="noise-injection scale (0 = clean demonstrations only; default: %(default)s)",
    )
    parser.add_argument("--no-randomize", action="store_true", help="fly the exact in-distribution conditions")
    parser.add_argument(
        "--randomize",
        choices=RANDOMIZATION_PROFILES,
        default="narrow",
        metavar="PROFILE",
        help="randomisation profile (lnn_nav.sim.presets.RANDOMIZATION): narrow (summer, midday, "
        "clear air), wide (summer-to-fall palettes, morning to afternoon sun, light haze, more "
        "wind and camera artefacts), wider (wide with 7-17 h sun, darker exposures and wind "
        "up to 2.2 m/s with 1.2 m/s gusts) or widest (wider, forests up to 1.4x as dense); winter, "
        "preset fog, gusty wind and the dense forest stay beyond all "
        "(default: %(default)s)",
    )
    parser.add_argument("--keep-failures", action="store_true", help="also write episodes the expert failed")
    parser.add_argument("--storage", choices=STORAGES, default="mcap", help="bag storage (default: %(default)s)")
    parser.add_argument(
        "--camera",
        type=int,
        nargs=2,
        default=(128, 96),
        metavar=("W", "H"),
        help="camera resolution (default: 128 96, as the simulator node)",
    )
    parser.add_argument(
        "--camera-hfov",
        type=float,
        default=90.0,
        metavar="DEG",
        help="camera horizontal field of view in degrees (default: %(default)s, as the simulator "
        "node); fly the learner with the same value (`lnn-nav eval --camera-hfov`)",
    )
    parser.add_argument(
        "--expert-speed",
        type=float,
        default=None,
        metavar="V",
        help=f"expert cruise speed in m/s (default: {DEMO_EXPERT['cruise_speed']}, what DAgger and eval also use)",
    )
    parser.add_argument(
        "--expert-margin",
        type=float,
        default=None,
        metavar="M",
        help="distance in m the expert's plan keeps between the drone's centre and obstacles "
        f"(default: {DEMO_EXPERT['inflate']}; the drone's radius is 0.25)",
    )
    forest, urban = (ExpertConfig(**demo_expert(kind)) for kind in WORLD_KINDS)
    parser.add_argument(
        "--expert-clearance",
        type=float,
        nargs=2,
        default=None,
        metavar=("WEIGHT", "SCALE"),
        help="the plan's cost of passing close to obstacles: its weight and the distance in m "
        f"over which it falls off (default: {forest.clearance_weight:g} {forest.clearance_scale:g} "
        f"in forest; {urban.clearance_weight:g} {urban.clearance_scale:g} in urban, which keeps the "
        "expert on the street's centre line)",
    )
    parser.add_argument(
        "--expert-options",
        default=None,
        metavar="JSON",
        help="any other ExpertConfig fields on top of the world's demonstrating expert, applied "
        "last, e.g. '{\"lookahead\": 4.5}' (as lnn-nav dagger --expert-options)",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (one bag per episode)")


def expert_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """``ExpertConfig`` fields of the expert that flies: the world's demonstrating expert, then the options.

    Raises ``ValueError`` naming the option at fault (a bad value, bad JSON, an unknown field).
    """
    expert = demo_expert(args.world)
    clearance = args.expert_clearance or (None, None)
    for option, key, value in (
        ("--expert-speed", "cruise_speed", args.expert_speed),
        ("--expert-margin", "inflate", args.expert_margin),
        ("--expert-clearance", "clearance_weight", clearance[0]),
        ("--expert-clearance", "clearance_scale", clearance[1]),
        ("--expert-options", None, args.expert_options),
    ):
        if value is None:
            continue
        try:
            if key is None:
                expert.update(json_object(value))
            else:
                expert[key] = value
            ExpertConfig(**expert)
        except (ValueError, TypeError) as err:  # TypeError: a field ExpertConfig does not have
            raise ValueError(f"{option}: {err}") from None
    return expert


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from lnn_nav.rollouts.flights import FlightJob, fly_episodes, summarize
    from lnn_nav.sim.camera import CameraConfig
    from lnn_nav.sim.presets import TRAIN_SEED_BASE, check_training_seeds

    try:
        CameraConfig(hfov_deg=args.camera_hfov)
    except ValueError as err:
        print(f"lnn-nav collect: error: --camera-hfov: {err}", file=sys.stderr)
        return 2
    first = args.first_seed
    if first is None:
        first = TRAIN_SEED_BASE * (1 if args.world == "forest" else 2)
    seeds = list(range(first, first + args.episodes))
    try:
        check_training_seeds(seeds)
    except ValueError as err:
        print(f"lnn-nav collect: error: {err}", file=sys.stderr)
        return 2
    try:
        expert = expert_from_args(args)
    except ValueError as err:
        print(f"lnn-nav collect: error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    job = FlightJob(
        expert=expert,
        kind=args.world,
        seeds=seeds,
        out_dir=str(out),
        randomize_conditions=not args.no_randomize,
        randomization=args.randomize,
        envs=args.envs,
        noise=args.noise,
        keep_failures=args.keep_failures,
        storage=args.storage,
        camera_width=args.camera[0],
        camera_height=args.camera[1],
        camera_hfov=args.camera_hfov,
        rng_seed=first,
    )
    started = time.perf_counter()
    bar = tqdm(total=len(seeds), unit="episode", desc=f"collect {args.world}")
    frames = [0]

    def on_result(result: dict[str, Any]) -> None:
        frames[0] += result["frames"]
        bar.update(1)
        bar.set_postfix(frames=frames[0], last=result["outcome"])

    try:
        results = fly_episodes(job, workers=args.workers, on_result=on_result)
    finally:
        bar.close()
    elapsed = time.perf_counter() - started
    n, kept, counts = summarize(results)
    index: dict[str, Any] = {
        "job": {k: v for k, v in asdict(job).items() if k != "seeds"},
        "seeds": [seeds[0], seeds[-1]],
        "episodes": results,
        "outcomes": counts,
        "frames": kept,
        "seconds": elapsed,
    }
    (out / "collect.json").write_text(json.dumps(index, indent=1))
    bags: list[str] = [r["bag"] for r in results if r["bag"]]
    print(
        f"{n} episodes in {elapsed:.0f} s ({sum(r['frames'] for r in results) / elapsed:.0f} frames/s): "
        f"{', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}; wrote {len(bags)} bags "
        f"({kept} frames) to {out}"
    )
    return 0 if bags else 1
