"""Fly batches of simulated episodes and record each one as a rosbag2 (demonstrations and DAgger).

One :func:`fly_worker` call owns a :class:`~lnn_nav.sim.env.FlightBatch` of
several drones, each in its own seeded world, renders in-process, and writes
every finished episode as its own rosbag2 directory with the topics of
:mod:`lnn_nav.data.messages`. The pilot that flies and the command that is
recorded can differ:

* expert demonstrations with noise injection (DART, Laskey et al. 2017):
  the drone flies the expert's command plus slowly varying noise, the bag
  records the clean expert command, so the data shows how to recover from
  the small errors a learner will make;
* DAgger (Ross et al. 2011): the learner flies, the expert labels every
  visited state.

:func:`fly_episodes` spreads seeds over worker processes and reports
progress. Workers are separate processes (spawned: Warp and torch are not
fork-safe), so this module has no module-level torch import.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lnn_nav.models.preprocess import SAME_CAMERA_DEG
from lnn_nav.sim.expert import demo_expert

if TYPE_CHECKING:
    from lnn_nav.sim.camera import CameraConfig
    from lnn_nav.sim.world import WorldSpec

_NS = 1_000_000_000
#: First frame's stamp: the simulator node's clock also starts at 1 s (0 reads as "unset").
FIRST_STAMP_NS = _NS
#: The simulator's camera when nothing says otherwise (CameraConfig's default, the simulator node's).
DEFAULT_CAMERA_HFOV = 90.0


@dataclass
class FlightJob:
    """What a worker flies. ``learner``: checkpoint path for DAgger (the expert flies when None)."""

    kind: str
    seeds: list[int]
    out_dir: str
    preset: str = "in_distribution"
    randomize_conditions: bool = True
    randomization: str = "narrow"  # the lnn_nav.sim.presets.RANDOMIZATION profile randomize_conditions draws from
    envs: int = 8
    control_hz: float = 15.0
    max_episode_time: float = 60.0
    camera_width: int = 128
    camera_height: int = 96
    camera_hfov: float = DEFAULT_CAMERA_HFOV  # deg, horizontal field of view (see camera_hfov_for)
    noise: float = 0.5  # DART noise scale (1.0: 0.6 m/s lateral, 0.3 m/s forward, 0.4 rad/s yaw std)
    keep_failures: bool = False
    learner: str | None = None
    learner_threads: int = 1
    storage: str = "mcap"
    name_suffix: str = ""
    rng_seed: int = 0
    record: bool = True  # False: fly and report only (closed-loop evaluation)
    world_overrides: dict[str, Any] = field(default_factory=dict)  # make_world options (e.g. a small forest)
    # ExpertConfig fields; None: the demonstrating expert of the world kind (demo_expert; see
    # DEMO_EXPERT for why it differs from the default).
    expert: dict[str, Any] | None = None
    keep_tracks: bool = False  # put each episode's trajectory in its result (maps in reports)

    def __post_init__(self) -> None:
        if self.expert is None:
            self.expert = demo_expert(self.kind)


@dataclass
class EpisodeResult:
    kind: str
    seed: int
    outcome: str
    frames: int
    time: float
    path_length: float
    bag: str | None
    expert_reachable: bool = True
    min_clearance: float | None = None  # m, closest approach of the drone's centre to an obstacle surface
    track: list[list[float]] | None = None  # xyz every 3rd control step (job.keep_tracks)
    crash: dict[str, Any] | None = None  # collisions: what was hit, from where (lnn_nav.sim.forensics)
    timeout: dict[str, Any] | None = None  # timeouts: where the track left the plan, the detour (forensics)


@dataclass
class _Episode:
    seed: int
    world_json: str
    goal: np.ndarray
    rgb: list[np.ndarray] = field(default_factory=list)
    imu: list[np.ndarray] = field(default_factory=list)
    quat: list[np.ndarray] = field(default_factory=list)
    pos: list[np.ndarray] = field(default_factory=list)
    vel: list[np.ndarray] = field(default_factory=list)
    rates: list[np.ndarray] = field(default_factory=list)
    label: list[np.ndarray] = field(default_factory=list)
    # Every episode, recorded or not: the states and flown commands a crash report needs.
    yaw: list[float] = field(default_factory=list)
    world_vel: list[np.ndarray] = field(default_factory=list)
    flown: list[np.ndarray] = field(default_factory=list)


class _OUNoise:
    """Per-drone Ornstein-Uhlenbeck noise on ``[vx, vy, vz, yaw_rate]`` (slowly varying, zero mean)."""

    STD = np.array([0.3, 0.6, 0.0, 0.4])

    def __init__(self, n: int, scale: float, dt: float, rng: np.random.Generator, tau: float = 1.0) -> None:
        self.rng = rng
        self.decay = math.exp(-dt / tau)
        self.kick = math.sqrt(1.0 - self.decay**2)
        self.scale = np.full(n, scale)
        self.value = np.zeros((n, 4))

    def reset(self, i: int, scale: float) -> None:
        self.scale[i] = scale
        self.value[i] = self.rng.normal(size=4) * self.STD * scale

    def sample(self) -> np.ndarray:
        shocks = self.rng.normal(size=self.value.shape) * self.STD * self.scale[:, None]
        self.value = self.decay * self.value + self.kick * shocks
        return self.value


def camera_hfov_for(learner: str | None, requested: float | None = None) -> tuple[float, str | None]:
    """The camera (horizontal field of view, deg) to fly ``learner`` with, and a warning or None.

    ``requested`` (a command-line value) wins; otherwise the camera the checkpoint
    records (its training bags' CameraInfo), else :data:`DEFAULT_CAMERA_HFOV`.
    The warning says when ``requested`` is not the camera the checkpoint was trained
    with: legitimate as a stress test, a silent mistake otherwise.
    """
    trained: float | None = None
    if learner is not None:
        from lnn_nav.models.checkpoint import read_checkpoint_info

        trained = read_checkpoint_info(learner)[0].camera_hfov_deg
    if requested is None:
        return (trained if trained is not None else DEFAULT_CAMERA_HFOV), None
    if trained is not None and abs(trained - requested) > SAME_CAMERA_DEG:
        return requested, (f"{learner} was trained with a {trained:.1f} deg camera and flies a {requested:.1f} deg one")
    return requested, None


def write_episode_bag(
    path: Path, ep: _Episode, outcome: str, control_hz: float, storage: str = "mcap", camera: CameraConfig | None = None
) -> None:
    """Write one episode's frames as a rosbag2 (topics of :mod:`lnn_nav.data.messages`).

    With ``camera``, each frame also gets its ``CameraInfo``, as from a camera driver:
    the dataset reads the field of view from it and training records it in the checkpoint.
    """
    from lnn_nav.data import messages as m
    from lnn_nav.data.bags import BagWriter

    period = int(round(_NS / control_hz))
    tmp = path.with_name(path.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    # Written under a temporary name and moved into place when complete; its file is named for where it ends
    # up (path/path.mcap, as metadata.yaml lists it), so a finished bag does not look unfinished.
    with BagWriter(tmp, storage=storage, typestore=m.STORE, name=path.name) as bag:
        for topic, msgtype in m.SIM_TOPICS.items():
            if topic != m.TOPIC_CAMERA_INFO or camera is not None:
                bag.add_topic(topic, msgtype)
        t0 = FIRST_STAMP_NS
        bag.write(m.TOPIC_WORLD, t0, m.string(ep.world_json))
        bag.write(m.TOPIC_GOAL, t0, m.pose_stamped(ep.goal, t0))
        for k in range(len(ep.rgb)):
            t = t0 + k * period
            bag.write(m.TOPIC_IMU, t, m.imu(ep.imu[k], ep.quat[k], t))
            bag.write(
                m.TOPIC_ODOM,
                t,
                m.odometry(ep.pos[k], ep.quat[k], ep.vel[k], ep.rates[k], t),
            )
            bag.write(m.TOPIC_IMAGE, t, m.image(ep.rgb[k], t))
            if camera is not None:
                bag.write(m.TOPIC_CAMERA_INFO, t, m.camera_info(camera.width, camera.height, camera.intrinsics(), t))
            bag.write(m.TOPIC_CMD, t, m.twist_stamped(ep.label[k], t))
        end = t0 + len(ep.rgb) * period
        bag.write(m.TOPIC_OUTCOME, end, m.string(json.dumps({"outcome": outcome, "seed": ep.seed})))
    # A bag of the same name is this episode flown before (a DAgger round or a collect re-run after
    # a crash): seeds fix the episode, so the new one replaces it. Only a bag folder is replaced.
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists():
        raise FileExistsError(f"{path} exists and is not a bag folder; not replacing it")
    tmp.rename(path)


def _outcome(out: dict[str, np.ndarray], i: int) -> str:
    if out["success"][i]:
        return "success"
    if out["collision"][i]:
        return "collision"
    if out["out_of_bounds"][i]:
        return "out_of_bounds"
    return "timeout"


class _Learner:
    """A checkpoint flying N drones, state reset per episode; each drone stepped on its own.

    One ``policy.step`` per drone, batch 1, as the controller node runs it:
    a batched float32 convolution or matmul sums in another order than a
    batch-1 one, and a marginal world amplifies the last bits (a batch of 10
    LSTM forest episodes and the same seeds one at a time ended 2 of 10
    differently). Stepping each drone alone makes an episode's outcome
    independent of ``envs``, ``workers`` and its batch neighbours, and the
    same as through the ROS 2 graph. It costs little: rendering dominates.
    """

    def __init__(self, path: str, n: int, threads: int) -> None:
        import torch

        from lnn_nav.models.checkpoint import load_policy
        from lnn_nav.models.inputs import policy_inputs

        torch.set_num_threads(threads)
        self.torch = torch
        self.policy = load_policy(path).eval()
        self.inputs = policy_inputs
        self.state: Any = None
        self.n = n
        self.fresh = np.ones(n, dtype=bool)

    def reset(self, i: int) -> None:
        self.fresh[i] = True

    def __call__(self, obs: dict[str, np.ndarray], dt: float, active: np.ndarray | None = None) -> np.ndarray:
        """Commands ``[N, 4]`` for the drones' observations; rows of drones not ``active`` are zero."""
        torch = self.torch
        if self.state is None:
            self.state = [None] * self.n
        cmd = np.zeros((self.n, 4))
        with torch.inference_mode():
            image, extras = self.inputs(self.policy.config, obs["image"], obs["goal"], obs["imu"])
            for i in range(self.n) if active is None else np.flatnonzero(active):
                if self.fresh[i]:
                    self.state[i] = self.policy.initial_state(1)
                    self.fresh[i] = False
                step = {k: v[i : i + 1] for k, v in extras.items()}
                out, self.state[i] = self.policy.step(image[i : i + 1], dt, self.state[i], **step)
                cmd[i] = out[0].double().numpy()
        return cmd


def training_world(job: FlightJob, seed: int) -> WorldSpec:
    """World ``seed`` as ``job`` flies it: under its randomisation profile, the conditions and (forests) the
    density that profile draws for that seed, so re-running a seed re-creates its episode."""
    from lnn_nav.sim.forest import DEFAULT_TREE_DENSITY
    from lnn_nav.sim.presets import make_world, sample_training_conditions, training_density_scale
    from lnn_nav.sim.world import WorldSpec  # noqa: F811 -- the class at run time (the annotation's is typing-only)

    overrides = dict(job.world_overrides)
    scale = training_density_scale(seed, job.randomization) if job.randomize_conditions else 1.0
    if job.kind == "forest" and scale != 1.0:
        overrides["density"] = overrides.get("density", DEFAULT_TREE_DENSITY) * scale
    world = make_world(job.kind, seed, job.preset, **overrides)
    if job.randomize_conditions:
        conditions = sample_training_conditions(np.random.default_rng([seed, 7]), job.randomization)
        world = WorldSpec.from_dict({**world.to_dict(), "conditions": conditions.__dict__})
    return world


def fly_worker(job: FlightJob, progress: Any | None = None) -> list[dict[str, Any]]:
    """Fly every seed of ``job`` (``job.envs`` at a time); returns one result dict per episode."""
    from lnn_nav.sim.camera import CameraConfig
    from lnn_nav.sim.collision import signed_distance
    from lnn_nav.sim.env import EnvConfig, FlightBatch
    from lnn_nav.sim.expert import ExpertConfig, PrivilegedExpert
    from lnn_nav.sim.forensics import crash_report, timeout_report

    out_dir = Path(job.out_dir)
    if job.record:
        out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(job.rng_seed)
    pending = list(job.seeds)
    n = max(1, min(job.envs, len(pending)))
    camera = CameraConfig(width=job.camera_width, height=job.camera_height, hfov_deg=job.camera_hfov)
    config = EnvConfig(
        kind=job.kind,
        preset=job.preset,
        camera=camera,
        control_hz=job.control_hz,
        max_episode_time=job.max_episode_time,
        render_workers=1,
    )
    dt = 1.0 / job.control_hz

    def world_for(seed: int) -> WorldSpec:
        return training_world(job, seed)

    first = [world_for(pending.pop(0)) for _ in range(n)]
    batch = FlightBatch(n, config, rng, world_source=lambda _rng: first[0])
    learner = _Learner(job.learner, n, job.learner_threads) if job.learner else None
    noise = _OUNoise(n, job.noise, dt, rng)
    experts: list[Any] = [None] * n
    episodes: list[_Episode | None] = [None] * n
    results: list[dict[str, Any]] = []

    def start(i: int, world: WorldSpec) -> None:
        assert job.expert is not None  # FlightJob.__post_init__ replaces None with the kind's demo_expert
        experts[i] = PrivilegedExpert(world, ExpertConfig(**job.expert))
        episodes[i] = _Episode(world.seed, json.dumps(world.to_dict()), np.asarray(world.goal, dtype=np.float64))
        # Half the demonstrations clean, half with noise of random strength.
        noise.reset(i, 0.0 if rng.random() < 0.5 else job.noise * rng.uniform(0.5, 1.5))
        if learner is not None:
            learner.reset(i)

    batch.reset(np.arange(n), first)
    for i, world in enumerate(first):
        start(i, world)
    active = np.ones(n, dtype=bool)
    try:
        while active.any():
            obs = batch.observe()
            quad = batch.quad
            pos, yaw, quat = quad.position, quad.yaw, quad.quaternion
            labels = np.zeros((n, 4))
            # tolist(): drone numbers as Python ints, the type start() and _outcome() take (same indexing).
            for i in np.flatnonzero(active).tolist():
                if learner is not None and not job.record:
                    continue  # evaluation: no labels needed
                # With a learner flying, the expert still slews from its *own* previous label,
                # as in a demonstration. Slewing from the drone's actual velocity instead (tried)
                # makes every label "current velocity + 0.2 m/s towards the plan": a learner that
                # cannot see its velocity learns to hold course, and DAgger rounds got worse
                # (forest roll-out success 40/60 -> 24/60 after one such round).
                labels[i] = experts[i].command(pos[i : i + 1], yaw[i : i + 1], dt)[0]
            if learner is not None:
                flown = learner(obs, dt, active)
            else:
                flown = labels + noise.sample()
            flown[~active] = 0.0
            for i in np.flatnonzero(active).tolist():
                ep = episodes[i]
                assert ep is not None  # an active drone is mid-episode: start() gave it one
                ep.yaw.append(float(yaw[i]))
                ep.world_vel.append(quad.state.velocity[i].copy())
                ep.flown.append(flown[i].copy())
                if not job.record:  # only the track (and the crash report's states) are needed
                    ep.pos.append(pos[i].copy())
                    continue
                ep.rgb.append(obs["image"][i].copy())
                ep.imu.append(obs["imu"][i].copy())
                ep.quat.append(quat[i].copy())
                ep.pos.append(pos[i].copy())
                ep.vel.append(obs["velocity"][i].copy())
                ep.rates.append(quad.body_rates[i].copy())
                ep.label.append(labels[i].copy())
            out = batch.step(flown)
            done = np.flatnonzero(active & (out["terminated"] | out["truncated"]))
            restart, new_worlds = [], []
            for i in done.tolist():
                ep = episodes[i]
                assert ep is not None  # done is a subset of active, and active drones are mid-episode
                outcome = _outcome(out, i)
                track = np.array(ep.pos + [batch.quad.position[i].copy()])
                keep = job.record and (outcome == "success" or job.keep_failures or learner is not None)
                name = f"{job.kind}_{ep.seed:06d}{job.name_suffix}"
                bag = None
                if keep and len(ep.rgb) > 1:
                    write_episode_bag(out_dir / name, ep, outcome, job.control_hz, job.storage, camera)
                    bag = name
                clearance = float(signed_distance(batch.worlds[i], track, include_ground=False).min())
                crash = None
                if outcome == "collision":
                    crash = crash_report(
                        batch.worlds[i],
                        np.array(ep.pos),
                        np.array(ep.yaw),
                        np.array(ep.world_vel),
                        np.array(ep.flown),
                        track[-1],
                        dt,
                        experts[i],
                        hfov_deg=camera.hfov_deg,
                    )
                timeout = timeout_report(batch.worlds[i], track, dt, experts[i]) if outcome == "timeout" else None
                result = EpisodeResult(
                    job.kind,
                    ep.seed,
                    outcome,
                    len(ep.pos),
                    float(out["time"][i]),
                    float(np.linalg.norm(np.diff(track, axis=0), axis=1).sum()),
                    bag,
                    bool(experts[i].reachable),
                    clearance,
                    np.round(track[::3], 2).tolist() if job.keep_tracks else None,
                    crash,
                    timeout,
                )
                results.append(asdict(result))
                if progress is not None:
                    progress.put(asdict(result))
                episodes[i] = None
                if pending:
                    restart.append(i)
                    new_worlds.append(world_for(pending.pop(0)))
                else:
                    active[i] = False
            if restart:
                batch.reset(np.array(restart), new_worlds)
                for i, world in zip(restart, new_worlds):
                    start(i, world)
    finally:
        batch.close()
    return results


def _exit_with_parent(parent: int) -> None:
    """Exit this worker once its parent is gone.

    A parent killed by a signal runs no ``finally``, so it never terminates its
    workers; they were reparented and flew on unseen, two CPUs' worth each.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _worker_main(job: FlightJob, progress: Any, results: Any, parent: int) -> None:
    _exit_with_parent(parent)
    try:
        results.put(("ok", fly_worker(job, progress)))
    except BaseException as err:  # noqa: BLE001 - reported to the parent, which raises
        import traceback

        results.put(("error", f"{type(err).__name__}: {err}\n{traceback.format_exc()}"))


def fly_episodes(
    job: FlightJob,
    workers: int = 1,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Split ``job.seeds`` over ``workers`` processes (in-process when 1); results in seed order."""
    seeds = list(job.seeds)
    if workers <= 1 or len(seeds) <= 1:

        class _Direct:
            def put(self, item: dict[str, Any]) -> None:
                if on_result is not None:
                    on_result(item)

        results = fly_worker(job, _Direct())
    else:
        ctx = mp.get_context("spawn")
        progress, outq = ctx.Queue(), ctx.Queue()
        chunks = [seeds[k::workers] for k in range(workers)]
        procs = []
        for k, chunk in enumerate(c for c in chunks if c):
            sub = FlightJob(
                **{
                    **asdict(job),
                    "seeds": chunk,
                    "rng_seed": job.rng_seed * 1000 + k,
                    "envs": max(1, job.envs // workers),
                }
            )
            p = ctx.Process(target=_worker_main, args=(sub, progress, outq, os.getpid()), daemon=True)
            p.start()
            procs.append(p)
        results, finished = [], 0
        try:
            while finished < len(procs):
                try:
                    item = progress.get(timeout=0.2)
                    if on_result is not None:
                        on_result(item)
                    continue
                except queue.Empty:
                    pass
                try:
                    status, payload = outq.get_nowait()
                except queue.Empty:
                    if not any(p.is_alive() for p in procs) and outq.empty():
                        time.sleep(0.5)
                        if outq.empty():
                            raise RuntimeError("a flight worker died without reporting (out of memory?)") from None
                    continue
                if status == "error":
                    raise RuntimeError(f"flight worker failed: {payload}")
                results.extend(payload)
                finished += 1
            while True:  # progress messages still queued behind the results
                try:
                    item = progress.get_nowait()
                except queue.Empty:
                    break
                if on_result is not None:
                    on_result(item)
        finally:
            for p in procs:
                if p.is_alive():
                    p.terminate()
                p.join(timeout=5)
    order = {s: k for k, s in enumerate(seeds)}
    return sorted(results, key=lambda r: order.get(r["seed"], 0))


def summarize(results: Sequence[dict[str, Any]]) -> tuple[int, int, dict[str, int]]:
    """``(episodes, frames kept, outcome counts)``."""
    counts: dict[str, int] = {}
    for r in results:
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    frames = sum(r["frames"] for r in results if r["bag"])
    return len(results), frames, counts
