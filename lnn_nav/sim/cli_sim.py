"""`lnn-nav sim`: fly pilots through seeded worlds of the embedded simulator and save pictures."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from lnn_nav.sim.kinds import PRESET_NAMES, WORLD_KINDS

HELP = "fly the privileged expert in embedded-simulator worlds; save maps and camera GIFs"
DESCRIPTION = """\
Fly the privileged expert through seeded forest or urban worlds of the
embedded simulator (no ROS needed) and write a top-down map, an onboard-camera
GIF and a JSON line per episode. It flies the expert at its default tuning
(ExpertConfig: 3 m/s); `lnn-nav collect` records the demonstrating expert of
each world kind. A trained controller flies with `lnn-nav fly` (one episode
over the ROS 2 graph) or `lnn-nav eval` (many, in-process)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--world", choices=WORLD_KINDS, default="forest", help="world kind (default: %(default)s)")
    parser.add_argument("--seed", type=int, nargs="+", default=[0], metavar="N", help="world seed(s) (default: 0)")
    parser.add_argument(
        "--preset",
        default="in_distribution",
        metavar="NAME",
        help=f"conditions preset: {', '.join(PRESET_NAMES)} (default: %(default)s)",
    )
    parser.add_argument("--out", default="reports/sim", metavar="DIR", help="output folder (default: %(default)s)")
    parser.add_argument("--no-pictures", action="store_true", help="skip the map and GIF (faster)")


def run(args: argparse.Namespace) -> int:
    return run_sim(args.world, args.seed, args.preset, Path(args.out), pictures=not args.no_pictures)


def run_sim(
    kind: str,
    seeds: Sequence[int],
    preset: str,
    out_dir: Path,
    pictures: bool = True,
    width: int = 128,
    height: int = 96,
) -> int:
    """Fly the expert over ``seeds``; print one line per episode and a summary; write JSON (+ map, GIF)."""
    import numpy as np

    from lnn_nav.sim.camera import CameraConfig
    from lnn_nav.sim.env import NavigationEnv
    from lnn_nav.sim.episode import ExpertPilot, fly_episode
    from lnn_nav.sim.expert import PrivilegedExpert
    from lnn_nav.sim.presets import make_world

    out_dir.mkdir(parents=True, exist_ok=True)
    env = NavigationEnv(
        kind=kind, preset=preset, camera=CameraConfig(width=width, height=height), max_episode_time=120.0
    )
    pilot = ExpertPilot()
    results = []
    try:
        for seed in seeds:
            world = make_world(kind, seed, preset)
            record = fly_episode(env, pilot, world=world, keep_frames=pictures)
            line = {
                "world": kind,
                "preset": preset,
                "seed": seed,
                "outcome": record.outcome,
                "time_s": round(record.time, 2),
                "path_length_m": round(record.path_length, 2),
                "straight_line_m": round(float(np.linalg.norm(np.subtract(world.goal, world.start[:3]))), 2),
            }
            results.append(line)
            print(
                f"{kind} seed {seed} ({preset}): {record.outcome} in {record.time:.1f} s, "
                f"path {record.path_length:.1f} m",
                flush=True,
            )
            if pictures:
                planned = PrivilegedExpert(world).path(world.start[:2])
                paths = record.save_pictures(out_dir, f"{kind}_{seed}", planned)
                print("  wrote " + ", ".join(str(p) for p in paths.values()), flush=True)
    finally:
        env.close()
    successes = sum(r["outcome"] == "success" for r in results)
    print(f"expert success: {successes}/{len(results)}")
    (out_dir / f"{kind}_{preset}_episodes.json").write_text(json.dumps(results, indent=1))
    return 0 if results else 1
