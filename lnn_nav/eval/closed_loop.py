"""Closed-loop evaluation in the embedded simulator: a checkpoint (or the expert) on held-out worlds.

Batched in-process (several drones rendered and simulated together per
worker, each drone's policy stepped at batch 1 as the controller node steps
it) on the held-out evaluation seeds, which no training data ever used.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from lnn_nav.rollouts.flights import DEFAULT_CAMERA_HFOV, FlightJob, camera_hfov_for, fly_episodes
from lnn_nav.sim.presets import CALIBRATION_SEED_BASE, EVAL_SEEDS

#: Calibration worlds ``eval_seeds(..., calibration=True)`` draws from: as many as the held-out set.
CALIBRATION_SEEDS: range = range(CALIBRATION_SEED_BASE, CALIBRATION_SEED_BASE + len(EVAL_SEEDS))


def eval_seeds(count: int, offset: int = 0, calibration: bool = False) -> list[int]:
    """The first ``count`` held-out evaluation seeds (after ``offset``), or calibration seeds (500000+).

    Calibration worlds are where recipes, epochs and gains are chosen, so the
    held-out seeds are flown once per final result.
    """
    if offset < 0:
        # A negative slice start would count from the end and pick seeds silently.
        raise ValueError(f"the seed offset must be >= 0, got {offset}")
    pool = CALIBRATION_SEEDS if calibration else EVAL_SEEDS
    seeds = list(pool[offset : offset + count])
    if len(seeds) < count:
        raise ValueError(
            f"only {len(pool)} {'calibration' if calibration else 'evaluation'} seeds exist; asked for {offset}+{count}"
        )
    return seeds


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a success rate (sensible at 0 % and 100 %, unlike the normal one)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # At 0 % and 100 % the bound is exactly p in exact arithmetic; rounding can
    # put it a hair inside (0/11 gave lo 1e-17), which made a negative error bar.
    return (min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half)))


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


@dataclass
class CellResult:
    controller: str
    kind: str
    preset: str
    episodes: list[dict[str, Any]]
    camera_hfov: float = DEFAULT_CAMERA_HFOV  # deg, the camera the cell flew

    @property
    def successes(self) -> int:
        return sum(e["outcome"] == "success" for e in self.episodes)

    @property
    def rate(self) -> float:
        return self.successes / max(len(self.episodes), 1)

    def summary(self) -> dict[str, Any]:
        n = len(self.episodes)
        lo, hi = wilson_interval(self.successes, n)
        counts: dict[str, int] = {}
        for e in self.episodes:
            counts[e["outcome"]] = counts.get(e["outcome"], 0) + 1
        done = [e for e in self.episodes if e["outcome"] == "success"]
        return {
            "controller": self.controller,
            "world": self.kind,
            "preset": self.preset,
            "episodes": n,
            "success_rate": self.rate,
            "ci95": [lo, hi],
            "outcomes": counts,
            "collision_rate": (counts.get("collision", 0) + counts.get("out_of_bounds", 0)) / max(n, 1),
            "mean_time_to_goal": sum(e["time"] for e in done) / len(done) if done else None,
            "mean_min_clearance": _mean([e.get("min_clearance") for e in self.episodes]),
            "camera_hfov": self.camera_hfov,
        }


def eval_job(
    checkpoint: str | None,
    kind: str,
    seeds: Sequence[int],
    preset: str = "in_distribution",
    envs: int = 16,
    max_episode_time: float = 60.0,
    keep_tracks: bool = True,
    camera_hfov: float | None = None,
) -> FlightJob:
    """The flights of one evaluation cell: the preset's fixed conditions, no DART noise, nothing recorded.

    Also the one place that says which camera, control rate and episode limit
    the evaluation flies, for runs that must match it (the ROS 2 graph check).
    ``camera_hfov`` None: the camera the checkpoint was trained with (:func:`camera_hfov_for`).
    """
    if camera_hfov is None:
        camera_hfov, _ = camera_hfov_for(checkpoint)
    return FlightJob(
        kind=kind,
        seeds=list(seeds),
        out_dir="",
        preset=preset,
        randomize_conditions=False,
        envs=envs,
        noise=0.0,
        learner=checkpoint,
        record=False,
        max_episode_time=max_episode_time,
        rng_seed=12345,
        keep_tracks=keep_tracks,
        camera_hfov=camera_hfov,
    )


def evaluate(
    checkpoint: str | None,
    kind: str,
    seeds: Sequence[int],
    preset: str = "in_distribution",
    envs: int = 16,
    workers: int = 2,
    max_episode_time: float = 60.0,
    on_result: Callable[[dict[str, Any]], None] | None = None,
    name: str | None = None,
    keep_tracks: bool = True,
    camera_hfov: float | None = None,
) -> CellResult:
    """Fly ``checkpoint`` (the expert when None) on ``seeds``; every episode's outcome."""
    job = eval_job(checkpoint, kind, seeds, preset, envs, max_episode_time, keep_tracks, camera_hfov)
    results = fly_episodes(job, workers=workers, on_result=on_result)
    return CellResult(name or (checkpoint or "expert"), kind, preset, results, job.camera_hfov)
