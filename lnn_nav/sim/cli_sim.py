"""`lnn-nav sim`: fly pilots through seeded worlds of the embedded simulator and save pictures."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .camera import CameraConfig
from .env import NavigationEnv
from .episode import ExpertPilot, fly_episode
from .expert import PrivilegedExpert
from .presets import make_world


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
