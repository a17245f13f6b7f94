"""Closed-loop calibration of a checkpoint's output gain on calibration worlds.

Behaviour cloning with a squared loss shrinks a controller's commands
towards their mean; the crash diagnosis shows the shipped learners
under-steering past obstacles. An output gain (``PolicyConfig.output_gain``)
gives some of that back, but the right amount differs per core and world
(measured 2026-11-29), so it is chosen per checkpoint, in closed loop, on
worlds that are neither training nor held-out (``CALIBRATION_SEED_BASE``):
the held-out success rates stay an unbiased measure of the calibrated
controller. Every candidate flies the same worlds, so candidates are compared
pairwise, world by world.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lnn_nav.eval.closed_loop import evaluate, wilson_interval
from lnn_nav.models.checkpoint import with_output_gain
from lnn_nav.sim.presets import CALIBRATION_SEED_BASE, check_training_seeds

Gain = tuple[float, float, float, float]
UNITY: Gain = (1.0, 1.0, 1.0, 1.0)
_FLIGHT_KEYS = ("seed", "outcome", "time", "path_length", "min_clearance")


def calibration_seeds(count: int) -> list[int]:
    """The first ``count`` calibration worlds (never held-out evaluation seeds)."""
    if count < 1:
        raise ValueError(f"need at least one calibration world per kind, got {count}")
    seeds = list(range(CALIBRATION_SEED_BASE, CALIBRATION_SEED_BASE + count))
    check_training_seeds(seeds)  # the same guard as training data: held-out seeds stay unseen
    return seeds


def gain_grid(vx: Sequence[float], turn: Sequence[float]) -> list[Gain]:
    """Candidates (vx, turn, 1, turn): ``turn`` sharpens lateral velocity and yaw rate together.

    They steer the drone round an obstacle together; vz stays 1 (altitude
    holding is not where the learners fail). Order kept, duplicates dropped.
    """
    grid: list[Gain] = []
    for v in vx:
        for t in turn:
            if v <= 0 or t <= 0 or not (math.isfinite(v) and math.isfinite(t)):
                raise ValueError(f"gains must be finite and > 0, got vx {v}, turn {t}")
            gain = (float(v), float(t), 1.0, float(t))
            if gain not in grid:
                grid.append(gain)
    return grid


@dataclass
class Candidate:
    """One gain's flights on the calibration worlds."""

    gain: Gain
    successes: dict[str, int] = field(default_factory=dict)  # per world kind
    episodes: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, dict[str, int]] = field(default_factory=dict)
    flights: list[dict[str, Any]] = field(default_factory=list)  # world, seed, outcome, time, path_length

    @property
    def total_successes(self) -> int:
        return sum(self.successes.values())

    @property
    def total_episodes(self) -> int:
        return sum(self.episodes.values())

    @property
    def rate(self) -> float:
        return self.total_successes / max(self.total_episodes, 1)

    def as_dict(self) -> dict[str, Any]:
        lo, hi = wilson_interval(self.total_successes, self.total_episodes)
        return {**asdict(self), "gain": list(self.gain), "success_rate": self.rate, "ci95": [lo, hi]}


def distance_from_unity(gain: Sequence[float]) -> float:
    """How far a gain moves the checkpoint's commands (sum of |log g|): ties go to the smaller change."""
    return sum(abs(math.log(g)) for g in gain)


def choose(candidates: Sequence[Candidate]) -> Candidate:
    """Most successes over all calibration worlds; a tie goes to the gain nearest 1 (the trained commands)."""
    if not candidates:
        raise ValueError("no candidates to choose from")
    return max(candidates, key=lambda c: (c.total_successes, -distance_from_unity(c.gain)))


def calibrate(
    checkpoint: str,
    gains: Sequence[Gain],
    worlds: Sequence[str],
    episodes: int,
    envs: int = 16,
    workers: int = 2,
    max_episode_time: float = 60.0,
    on_result: Callable[[dict[str, Any]], None] | None = None,
    on_candidate: Callable[[Candidate], None] | None = None,
) -> list[Candidate]:
    """Fly ``checkpoint`` with each gain on the first ``episodes`` calibration worlds of each kind.

    The benchmark's flights (``evaluate``: in-distribution conditions, no
    DART noise), only on other seeds. Each candidate is a copy of the
    checkpoint with the gain (``with_output_gain``) in a temporary folder.
    """
    seeds = calibration_seeds(episodes)
    results: list[Candidate] = []
    with tempfile.TemporaryDirectory(prefix="lnn_nav_calibrate_") as tmp:
        for i, gain in enumerate(gains):
            path = with_output_gain(checkpoint, Path(tmp) / f"candidate_{i}.safetensors", gain)
            candidate = Candidate(tuple(float(g) for g in gain))  # type: ignore[arg-type]
            for world in worlds:
                cell = evaluate(
                    str(path),
                    world,
                    seeds,
                    envs=envs,
                    workers=workers,
                    max_episode_time=max_episode_time,
                    on_result=on_result,
                    name=f"gain {format_gain(gain)}",
                    keep_tracks=False,
                )
                summary = cell.summary()
                candidate.successes[world] = cell.successes
                candidate.episodes[world] = summary["episodes"]
                candidate.outcomes[world] = summary["outcomes"]
                candidate.flights += [{"world": world, **{k: e[k] for k in _FLIGHT_KEYS}} for e in cell.episodes]
            results.append(candidate)
            if on_candidate is not None:
                on_candidate(candidate)
    return results


def format_gain(gain: Sequence[float]) -> str:
    return " ".join(f"{g:g}" for g in gain)
