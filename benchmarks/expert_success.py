"""Privileged-expert success rate over seeded worlds, flown with the full flight model.

    python benchmarks/expert_success.py --world forest --episodes 200 [--first-seed 1000] [--preset NAME]

All episodes fly at once in one vectorised quadrotor model (400 Hz physics,
PX4-style controller, the world's wind), checked for collisions against
each world; no camera is rendered (the expert does not look), which is what
makes 200 episodes take minutes instead of an hour. Prints the success
rate and every failure (seed, outcome, time, position).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from tqdm import tqdm

from lnn_nav.sim.collision import CollisionChecker
from lnn_nav.sim.env import SUCCESS_RADIUS
from lnn_nav.sim.expert import PrivilegedExpert
from lnn_nav.sim.flight_controller import Quadrotor
from lnn_nav.sim.kinds import WORLD_KINDS
from lnn_nav.sim.presets import make_world
from lnn_nav.sim.wind import WindModel


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", choices=WORLD_KINDS, default="forest")
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--first-seed", type=int, default=1000)
    parser.add_argument("--preset", default="in_distribution")
    parser.add_argument("--control-hz", type=float, default=15.0)
    parser.add_argument("--max-time", type=float, default=90.0, help="simulated seconds per episode")
    args = parser.parse_args(argv)

    seeds = list(range(args.first_seed, args.first_seed + args.episodes))
    worlds = [make_world(args.world, s, args.preset) for s in seeds]
    experts = [PrivilegedExpert(w) for w in worlds]
    checkers = [CollisionChecker(w) for w in worlds]
    n, dt = len(worlds), 1.0 / args.control_hz
    quad = Quadrotor(n, wind=WindModel.from_conditions([w.conditions for w in worlds], n, rng=0))
    quad.reset(np.array([w.start[:3] for w in worlds]), [w.start[3] for w in worlds])
    goals = np.array([w.goal for w in worlds])
    done = np.zeros(n, dtype=bool)
    outcome = ["timeout"] * n
    start = time.perf_counter()
    for k in tqdm(range(int(args.max_time / dt)), desc=f"{args.world} x{n}", unit="step", leave=False):
        cmd = np.zeros((n, 4))
        for i in np.flatnonzero(~done):
            cmd[i] = experts[i].command(quad.position[i : i + 1], quad.yaw[i : i + 1], dt)[0]
        quad.step(cmd, dt)
        t = (k + 1) * dt
        for i in np.flatnonzero(~done):
            hit, out = checkers[i].check(quad.position[i : i + 1], quad.params.collision_radius)
            if hit[0] or out[0]:
                done[i] = True
                outcome[i] = (
                    f"{'collision' if hit[0] else 'out_of_bounds'} at {t:.1f} s, {np.round(quad.position[i], 1)}"
                )
            elif np.linalg.norm(quad.position[i] - goals[i]) < SUCCESS_RADIUS:
                done[i], outcome[i] = True, "success"
        if done.all():
            break
    successes = outcome.count("success")
    print(
        f"{args.world} ({args.preset}), seeds {seeds[0]}-{seeds[-1]}: expert success {successes}/{n} "
        f"({100.0 * successes / n:.1f} %), {time.perf_counter() - start:.0f} s"
    )
    for seed, text in zip(seeds, outcome):
        if text != "success":
            print(f"  seed {seed}: {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
