"""Gymnasium environments: closed-loop camera flight in forest and urban worlds.

:class:`NavigationVectorEnv` runs N drones at once, each in its own world
(one vectorised quadrotor model, one batched Warp render call per step);
:class:`NavigationEnv` is the single-drone ``gymnasium.Env`` on top of it.

Observation (per drone):

* ``image``: uint8 ``[H, W, 3]`` forward camera (RGB);
* ``depth``: float32 ``[H, W]`` z-depth in metres;
* ``imu``: float32 ``[6]`` accel xyz (m/s²) then gyro xyz (rad/s), body FLU;
* ``goal``: float32 ``[3]`` vector from the drone to the goal in the body frame (m);
* ``velocity``: float32 ``[3]`` body-frame FLU velocity (m/s).

Action: ``[vx, vy, vz, yaw_rate]`` in the heading frame (body FLU rotated by
yaw only, the PX4 offboard body-velocity convention), clamped by the flight
controller's limits. An episode ends on success (within 1.5 m of the goal),
on collision (the drone as a sphere of its arm radius against obstacles and
the ground), on leaving the world or on the time limit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv

from . import register_envs
from .camera import CameraConfig
from .camera_effects import apply_camera_effects
from .collision import CollisionChecker
from .dynamics import rotate_inverse
from .flight_controller import Quadrotor
from .imu import ImuModel
from .kinds import WORLD_KINDS
from .noise import DroneStreams
from .presets import make_world, sample_training_conditions
from .render_pool import RenderPool
from .wind import WindModel
from .world import WorldSpec

SUCCESS_RADIUS = 1.5  # m, from the goal point


@dataclass
class EnvConfig:
    """What every env of a batch shares."""

    kind: str = "forest"
    preset: str = "in_distribution"
    camera: CameraConfig = field(default_factory=CameraConfig)
    control_hz: float = 15.0
    max_episode_time: float = 60.0  # s
    randomize_conditions: bool = False  # training: draw conditions around the in-distribution preset
    render_workers: int = 1
    with_depth: bool = True
    imu_noise: bool = True
    world_overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in WORLD_KINDS:
            raise ValueError(f"unknown world kind '{self.kind}'; expected one of {', '.join(WORLD_KINDS)}")
        if not 1.0 <= self.control_hz <= 100.0:
            raise ValueError(f"control_hz must be in [1, 100], got {self.control_hz}")
        if self.max_episode_time <= 0:
            raise ValueError("max_episode_time must be > 0 s")


def observation_space(camera: CameraConfig) -> spaces.Dict:
    h, w = camera.height, camera.width
    return spaces.Dict(
        {
            "image": spaces.Box(0, 255, (h, w, 3), np.uint8),
            "depth": spaces.Box(0.0, np.float32(camera.far), (h, w), np.float32),
            "imu": spaces.Box(-np.inf, np.inf, (6,), np.float32),
            "goal": spaces.Box(-np.inf, np.inf, (3,), np.float32),
            "velocity": spaces.Box(-np.inf, np.inf, (3,), np.float32),
        }
    )


def action_space(quad: Quadrotor) -> spaces.Box:
    g = quad.controller.gains
    high = np.array([g.max_horizontal_speed, g.max_horizontal_speed, g.max_vertical_speed, g.max_yaw_rate], np.float32)
    return spaces.Box(-high, high, dtype=np.float32)


class FlightBatch:
    """N drones, each in its own world: physics, sensors, rendering, episode bookkeeping.

    Not a Gymnasium class itself: the vector and single envs wrap it. World
    for each new episode: from ``world_source(rng)`` if given, else a fresh
    seeded world of ``config.kind`` under ``config.preset``.
    """

    def __init__(
        self,
        num_envs: int,
        config: EnvConfig,
        rng: np.random.Generator,
        world_source: Callable[[np.random.Generator], WorldSpec] | None = None,
    ) -> None:
        self.n = num_envs
        self.config = config
        self.rng = rng
        self.world_source = world_source
        self.control_dt = 1.0 / config.control_hz
        self.worlds: list[WorldSpec] = [self._next_world() for _ in range(num_envs)]
        # One broad-phase grid per env, built when its world changes (a shared
        # LRU cache would thrash with more envs than cache slots).
        self.checkers: list[CollisionChecker] = [CollisionChecker(w) for w in self.worlds]
        # One wind model, one wind per drone: each from its own world's conditions.
        # Wind, IMU and camera noise: one stream per drone, re-seeded from the world seed at each
        # episode start (lnn_nav.sim.noise), so an episode does not depend on the batch it flies in.
        self.noise = DroneStreams(num_envs, rng)
        for i, world in enumerate(self.worlds):
            self.noise.seed(i, world.seed)
        self.quad = Quadrotor(
            num_envs, wind=WindModel.from_conditions([w.conditions for w in self.worlds], num_envs, self.noise)
        )
        self.imu = ImuModel(num_drones=num_envs, rng=self.noise) if config.imu_noise else ImuModel.ideal(num_envs)
        self.renderer = RenderPool(self.worlds, config.camera, workers=config.render_workers)
        self.time = np.zeros(num_envs)
        self.goal = np.zeros((num_envs, 3))
        self.done = np.zeros(num_envs, dtype=bool)

    def reseed(self, rng: np.random.Generator) -> None:
        """Draw new worlds from ``rng`` from now on (reset(seed=...)); noise follows each world's seed."""
        self.rng = rng

    # -- worlds ---------------------------------------------------------------
    def _next_world(self) -> WorldSpec:
        if self.world_source is not None:
            return self.world_source(self.rng)
        seed = int(self.rng.integers(0, 2**31 - 1))
        world = make_world(self.config.kind, seed, self.config.preset, **self.config.world_overrides)
        if self.config.randomize_conditions:
            world = WorldSpec.from_dict(
                {**world.to_dict(), "conditions": sample_training_conditions(self.rng).__dict__}
            )
        return world

    # -- episodes -------------------------------------------------------------
    def reset(self, indices: np.ndarray, worlds: Sequence[WorldSpec] | None = None) -> None:
        """Start new episodes for ``indices`` (new worlds unless given)."""
        for k, i in enumerate(indices):
            world = worlds[k] if worlds is not None else self._next_world()
            self.worlds[i] = world
            self.noise.seed(int(i), world.seed)
            self.checkers[i] = CollisionChecker(world)
            self.renderer.set_world(int(i), world)
        wind = self.quad.wind
        if wind is None:  # __init__ gives the Quadrotor one; only a later quad.set_wind(None) takes it away
            raise RuntimeError("the env's Quadrotor has no wind model: each world's conditions set its wind")
        wind.set_conditions(indices, [self.worlds[i].conditions for i in indices])
        starts = np.array([self.worlds[i].start for i in indices]).reshape(-1, 4)
        self.quad.reset(starts[:, :3], starts[:, 3], indices=indices)
        self.imu.reset(indices)
        self.time[indices] = 0.0
        self.goal[indices] = [self.worlds[i].goal for i in indices]
        self.done[indices] = False

    def step(self, actions: np.ndarray) -> dict[str, np.ndarray]:
        """Fly one control period; returns per-drone outcome arrays."""
        actions = np.asarray(actions, dtype=np.float64).reshape(self.n, 4)
        if not np.isfinite(actions).all():
            raise ValueError("actions contain NaN or Inf; a controller must fail safe before the simulator")
        before = np.linalg.norm(self.goal - self.quad.position, axis=1)
        self.quad.step(actions, self.control_dt)
        self.time += self.control_dt
        pos = self.quad.position
        collided = np.zeros(self.n, dtype=bool)
        out = np.zeros(self.n, dtype=bool)
        radius = self.quad.params.collision_radius
        for i, checker in enumerate(self.checkers):
            c, o = checker.check(pos[i : i + 1], radius)
            collided[i], out[i] = bool(c[0]), bool(o[0])
        distance = np.linalg.norm(self.goal - pos, axis=1)
        success = (distance < SUCCESS_RADIUS) & ~collided
        timeout = self.time >= self.config.max_episode_time - 1e-9
        terminated = success | collided | out
        truncated = timeout & ~terminated
        reward = (before - distance) + 10.0 * success - 10.0 * (collided | out) - 0.01
        return {
            "reward": reward,
            "terminated": terminated,
            "truncated": truncated,
            "success": success,
            "collision": collided,
            "out_of_bounds": out,
            "distance_to_goal": distance,
            "time": self.time.copy(),
        }

    # -- sensing --------------------------------------------------------------
    def observe(self) -> dict[str, np.ndarray]:
        images = self.renderer.render(self.quad.position, self.quad.quaternion)
        rgb = images.rgb
        for i, world in enumerate(self.worlds):
            rgb[i] = apply_camera_effects(rgb[i], world.conditions, self.noise[i])
        rotation = self.quad.state.rotation
        goal_body = rotate_inverse(rotation, self.goal - self.quad.position)
        imu = self.imu.measure(self.quad.specific_force, self.quad.body_rates, self.control_dt)
        return {
            "image": rgb,
            "depth": np.minimum(images.depth, np.float32(self.config.camera.far)),
            "imu": imu.astype(np.float32),
            "goal": goal_body.astype(np.float32),
            "velocity": self.quad.velocity_body.astype(np.float32),
        }

    def close(self) -> None:
        self.renderer.close()


class NavigationVectorEnv(VectorEnv):
    """N drones in N worlds, stepped together (Gymnasium ``VectorEnv``, next-step autoreset).

    ``world_seeds``: if given, episodes draw their worlds from this sequence in
    order (held-out evaluation seeds), cycling when it runs out.
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": ["rgb_array"]}

    def __init__(
        self,
        num_envs: int = 4,
        world_seeds: Sequence[int] | None = None,
        render_mode: str | None = None,
        **config: Any,
    ) -> None:
        self.config = EnvConfig(**config)
        self.num_envs = num_envs
        self.render_mode = render_mode
        self._world_seeds = list(world_seeds) if world_seeds is not None else None
        self._seed_cursor = 0
        self._rng = np.random.default_rng()
        self._batch: FlightBatch | None = None
        probe = Quadrotor(1)
        self.single_observation_space = observation_space(self.config.camera)
        self.single_action_space = action_space(probe)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self._autoreset = np.zeros(num_envs, dtype=bool)

    def _world_from_seed_list(self, rng: np.random.Generator) -> WorldSpec:
        assert self._world_seeds is not None
        seed = self._world_seeds[self._seed_cursor % len(self._world_seeds)]
        self._seed_cursor += 1
        return make_world(self.config.kind, int(seed), self.config.preset, **self.config.world_overrides)

    @property
    def batch(self) -> FlightBatch:
        if self._batch is None:
            raise RuntimeError("call reset() before step()")
        return self._batch

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
            self._seed_cursor = 0
        worlds = (options or {}).get("worlds")
        source = self._world_from_seed_list if self._world_seeds is not None else None
        if self._batch is None:
            self._batch = FlightBatch(self.num_envs, self.config, self._rng, source)
            self._seed_cursor = 0  # construction drew placeholder worlds; episodes start at the first seed
        else:
            self._batch.reseed(self._rng)
        self._batch.reset(np.arange(self.num_envs), worlds)
        self._autoreset[:] = False
        return self._batch.observe(), self._infos()

    def step(self, actions: np.ndarray):
        batch = self.batch
        actions = np.array(actions, dtype=np.float64).reshape(self.num_envs, 4)
        resetting = np.flatnonzero(self._autoreset)
        actions[resetting] = 0.0  # next-step autoreset: this step's action is ignored there
        out = batch.step(actions)
        if len(resetting):
            # Reset after the step, so a new episode starts from its world's start (time 0), as the
            # first episodes and sim_node's do, not one hover period later.
            batch.reset(resetting)
            start = self._infos()
            for key in ("success", "collision", "out_of_bounds", "distance_to_goal", "time"):
                out[key][resetting] = start[key][resetting]
        for key in ("reward", "terminated", "truncated"):
            out[key][resetting] = 0.0 if key == "reward" else False
        self._autoreset = out["terminated"] | out["truncated"]
        obs = batch.observe()
        info = {k: out[k] for k in ("success", "collision", "out_of_bounds", "distance_to_goal", "time")}
        return obs, out["reward"], out["terminated"], out["truncated"], info

    def _infos(self) -> dict[str, np.ndarray]:
        b = self.batch
        distance = np.linalg.norm(b.goal - b.quad.position, axis=1)
        zeros = np.zeros(self.num_envs, dtype=bool)
        return {
            "success": zeros,
            "collision": zeros.copy(),
            "out_of_bounds": zeros.copy(),
            "distance_to_goal": distance,
            "time": b.time.copy(),
        }

    @property
    def worlds(self) -> list[WorldSpec]:
        return list(self.batch.worlds)

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        return self.batch.observe()["image"]

    def close(self, **kwargs: Any) -> None:
        if self._batch is not None:
            self._batch.close()
            self._batch = None


class NavigationEnv(gym.Env):
    """One drone, one world per episode (``lnn_nav/Forest-v0``, ``lnn_nav/Urban-v0``).

    ``reset(seed=...)`` seeds the world generator, so a seed fixes the world;
    ``options={"world": WorldSpec}`` flies a given world instead.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}

    def __init__(self, render_mode: str | None = None, **config: Any) -> None:
        self.config = EnvConfig(**config)
        self.render_mode = render_mode
        self.observation_space = observation_space(self.config.camera)
        self.action_space = action_space(Quadrotor(1))
        self._batch: FlightBatch | None = None
        self._last_obs: dict[str, np.ndarray] | None = None

    @property
    def world(self) -> WorldSpec:
        assert self._batch is not None, "call reset() first"
        return self._batch.worlds[0]

    @property
    def quadrotor(self) -> Quadrotor:
        assert self._batch is not None, "call reset() first"
        return self._batch.quad

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if self._batch is None:
            self._batch = FlightBatch(1, self.config, self.np_random)
        self._batch.reseed(self.np_random)
        world = (options or {}).get("world")
        self._batch.reset(np.array([0]), [world] if world is not None else None)
        obs = self._single(self._batch.observe())
        self._last_obs = obs
        info = {
            "success": False,
            "collision": False,
            "out_of_bounds": False,
            "distance_to_goal": float(np.linalg.norm(self._batch.goal[0] - self._batch.quad.position[0])),
            "time": 0.0,
            "world_seed": self.world.seed,
        }
        return obs, info

    def step(self, action: np.ndarray):
        assert self._batch is not None, "call reset() before step()"
        out = self._batch.step(np.asarray(action, dtype=np.float64).reshape(1, 4))
        obs = self._single(self._batch.observe())
        self._last_obs = obs
        info = {
            k: (bool(out[k][0]) if out[k].dtype == bool else float(out[k][0]))
            for k in ("success", "collision", "out_of_bounds", "distance_to_goal", "time")
        }
        return obs, float(out["reward"][0]), bool(out["terminated"][0]), bool(out["truncated"][0]), info

    @staticmethod
    def _single(obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: v[0] for k, v in obs.items()}

    def render(self):
        if self.render_mode != "rgb_array" or self._last_obs is None:
            return None
        return self._last_obs["image"]

    def close(self) -> None:
        if self._batch is not None:
            self._batch.close()
            self._batch = None


# Whoever imports the environments can make them by id (gymnasium.make("lnn_nav/Forest-v0")).
register_envs()
