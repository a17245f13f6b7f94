"""Fly one episode with any pilot and keep what people want to look at afterwards."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .env import NavigationEnv
from .expert import ExpertConfig, PrivilegedExpert
from .viz import plot_top_down, write_gif
from .world import WorldSpec

#: A pilot maps (observation, env) to a command ``[vx, vy, vz, yaw_rate]``.
Pilot = Callable[[dict[str, np.ndarray], NavigationEnv], np.ndarray]


class ExpertPilot:
    """The privileged expert as a pilot (re-planned for each new world)."""

    def __init__(self, config: ExpertConfig | None = None) -> None:
        self.config = config
        self._expert: PrivilegedExpert | None = None
        self._world: WorldSpec | None = None

    def expert_for(self, world: WorldSpec) -> PrivilegedExpert:
        if self._expert is None or self._world is not world:
            self._expert, self._world = PrivilegedExpert(world, self.config), world
        return self._expert

    def __call__(self, obs: dict[str, np.ndarray], env: NavigationEnv) -> np.ndarray:
        quad = env.quadrotor
        expert = self.expert_for(env.world)
        return expert.command(quad.position, quad.yaw, 1.0 / env.config.control_hz)[0]


@dataclass
class EpisodeRecord:
    """Trajectory, commands, frames and outcome of one episode."""

    world: WorldSpec
    positions: list[np.ndarray] = field(default_factory=list)
    commands: list[np.ndarray] = field(default_factory=list)
    frames: list[np.ndarray] = field(default_factory=list)
    outcome: str = "running"
    time: float = 0.0
    path_length: float = 0.0

    @property
    def success(self) -> bool:
        return self.outcome == "success"

    def save_pictures(self, out_dir: Path, name: str, planned: np.ndarray | None = None) -> dict[str, Path]:
        """Top-down map (PNG) and onboard-camera GIF."""
        track = np.array(self.positions)
        title = f"{self.world.kind} seed {self.world.seed}: {self.outcome} in {self.time:.1f} s"
        crash = {name: track[-1]} if self.outcome in ("collision", "out_of_bounds") else None
        paths = {"map": plot_top_down(self.world, out_dir / f"{name}_map.png", {name: track}, planned, title, crash)}
        if self.frames:
            # One 64-colour palette at the camera's resolution: a few hundred kB a flight, not 6-24 MB.
            paths["gif"] = write_gif(self.frames, out_dir / f"{name}_camera.gif", scale=1, colors=64)
        return paths


def fly_episode(
    env: NavigationEnv,
    pilot: Pilot,
    seed: int | None = None,
    world: WorldSpec | None = None,
    keep_frames: bool = True,
    frame_stride: int = 1,
) -> EpisodeRecord:
    """Reset ``env`` (seeded, or on ``world``), fly ``pilot`` until the episode ends."""
    obs, info = env.reset(seed=seed, options={"world": world} if world is not None else None)
    record = EpisodeRecord(env.world)
    record.positions.append(env.quadrotor.position[0].copy())
    step = 0
    while True:
        if keep_frames and step % frame_stride == 0:
            record.frames.append(obs["image"].copy())
        action = np.asarray(pilot(obs, env), dtype=np.float64)
        record.commands.append(action)
        obs, reward, terminated, truncated, info = env.step(action)
        record.positions.append(env.quadrotor.position[0].copy())
        step += 1
        if terminated or truncated:
            break
    if info["success"]:
        record.outcome = "success"
    elif info["collision"]:
        record.outcome = "collision"
    elif info["out_of_bounds"]:
        record.outcome = "out_of_bounds"
    else:
        record.outcome = "timeout"
    record.time = info["time"]
    track = np.array(record.positions)
    record.path_length = float(np.linalg.norm(np.diff(track, axis=0), axis=1).sum())
    return record
