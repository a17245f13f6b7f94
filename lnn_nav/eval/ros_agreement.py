"""The in-process benchmark checked against the ROS 2 graph: the same seeds flown as `lnn-nav fly` flies them.

`lnn-nav eval` flies controllers batched in one process; a deployed
controller runs as a node fed over DDS. :func:`check_cell_over_ros` flies the
first seeds of an evaluation cell again through the graph (``sim_node`` and
the ``controller`` node, or ``expert_node``, as separate processes, via
:func:`lnn_nav.nodes.fly.fly_over_ros`) and compares the outcome categories
(success, collision, out_of_bounds, timeout) seed by seed.

What "agree" means: same world (same seed and preset, the preset's fixed
conditions), camera, control rate, episode limit, command limits and noise
(each drone's noise stream is seeded by its world seed), and the same
arithmetic: the benchmark steps each drone's policy at batch 1, as the node
does, and the node runs each frame with the odometry stamped with it
(``sync_inputs``). A graph flight then repeats the in-process episode step
for step. What can still part them is timing (:func:`known_differences`): a
late command or a frame run without its odometry on an overloaded machine.
Disagreements are reported, never hidden.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lnn_nav.eval.closed_loop import eval_job
from lnn_nav.rollouts.flights import FlightJob

#: ``ros_outcome`` of a graph flight that ended without an episode outcome.
SETUP_ERROR = "setup_error"
NO_OUTCOME = "no_outcome"

#: Wall seconds one graph flight may take. A 60 s (simulated) episode in lockstep runs
#: in well under this on a busy 2-core machine; more means the graph is stuck.
ROS_TIMEOUT_S = 600.0


def fly_seed_over_ros(
    world: str,
    seed: int,
    preset: str,
    model: str | None,
    timeout: float = ROS_TIMEOUT_S,
    log_dir: str | None = None,
    **options: Any,
) -> dict[str, Any]:
    """One flight through the ROS 2 graph (``expert_node`` when ``model`` is None); its outcome dict.

    Never None and never raising :class:`~lnn_nav.nodes.fly.SetupError`: a
    run that could not start, or lost a node, has ``outcome`` ``setup_error``
    and one that produced no outcome in ``timeout`` wall seconds
    ``no_outcome``, each with the reason in ``error`` (a batch of flights goes
    on after one of them fails). ``options`` go to :func:`fly_over_ros`.
    """
    from lnn_nav.nodes.fly import SetupError, fly_over_ros

    try:
        result = fly_over_ros(
            world,
            seed=seed,
            preset=preset,
            model=model,
            expert=model is None,
            timeout=timeout,
            log_dir=log_dir,
            **options,
        )
    except SetupError as err:
        return {"outcome": SETUP_ERROR, "seed": seed, "error": str(err)}
    if result is None:
        return {"outcome": NO_OUTCOME, "seed": seed, "error": f"no outcome within {timeout:g} s (wall clock)"}
    return result


def graph_params(job: FlightJob, expert: bool) -> dict[str, dict[str, object]]:
    """``sim_params`` and ``pilot_params`` that make a graph flight fly as ``job``'s in-process flights do."""
    sim: dict[str, object] = {
        "control_hz": float(job.control_hz),
        "camera_width": int(job.camera_width),
        "camera_height": int(job.camera_height),
        "camera_hfov": float(job.camera_hfov),
        "max_episode_time": float(job.max_episode_time),
        "imu_noise": True,
        "lockstep": True,
        "end_on_outcome": True,
    }
    if expert:
        return {"sim_params": sim, "pilot_params": {"control_hz": float(job.control_hz)}}
    # The command limits and first-frame dt come from config/controller.yaml, as for every user of the
    # node: they equal the simulated flight controller's limits and the control rate the benchmark flies
    # (tests/test_one_configuration.py holds them so), so nothing is overridden here but the threads.
    pilot: dict[str, object] = {"torch_threads": int(job.learner_threads)}
    return {"sim_params": sim, "pilot_params": pilot}


def known_differences(expert: bool) -> list[str]:
    """What still differs between a graph flight and the in-process flight of the same seed."""
    notes = [
        "same world, preset conditions, camera, control rate, episode limit and command limits as in-process",
        "the same noise: wind gusts, IMU and camera noise come from one stream per drone seeded by the world "
        "seed (lnn_nav.sim.noise), in sim_node as in the batched benchmark",
        "the same arithmetic: the benchmark steps each drone's policy at batch 1, as the node does, on the "
        "same inputs (the node runs each frame with the odometry stamped with it: sync_inputs)",
        "sim_node steps in lockstep on the command that answers each frame, delivered over DDS; a command "
        "later than sim_node's command_timeout (2 s wall clock, logged) is replaced by the last one, and a "
        "frame whose odometry takes over sync_timeout (1 s) runs with the previous one (counted in the "
        "controller's diagnostics): only an overloaded machine parts the two flights",
    ]
    if expert:
        notes.append(
            "expert_node flies the demonstrating expert (its default parameters), as in-process; it "
            "plans from the odometry it receives rather than the simulator state"
        )
    else:
        notes.append(
            "the controller node takes the goal from the latest odometry it has received and hovers "
            "until odometry and goal have arrived; in-process both come with the frame"
        )
    return notes


def compare_outcomes(inprocess: Sequence[Mapping[str, Any]], ros: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Seed by seed, the graph flights ``ros`` against the in-process episodes of the same seeds.

    ``agree`` is outcome equality; a graph flight without an outcome
    (``setup_error``, ``no_outcome``) does not agree and is also counted in
    ``errors``, so a broken graph is not mistaken for a controller that
    behaves differently.
    """
    by_seed = {e["seed"]: e for e in inprocess}
    episodes = []
    for flight in ros:
        seed = flight["seed"]
        if seed not in by_seed:
            raise ValueError(f"graph flight on seed {seed} has no in-process episode; flown seeds: {sorted(by_seed)}")
        local = by_seed[seed]
        entry: dict[str, Any] = {
            "seed": seed,
            "ros_outcome": flight["outcome"],
            "inprocess_outcome": local["outcome"],
            "agree": flight["outcome"] == local["outcome"],
            "ros_time": flight.get("time"),
            "inprocess_time": local.get("time"),
        }
        for key in ("error", "logs"):
            if key in flight:
                entry[key] = flight[key]
        episodes.append(entry)
    return {
        "flown": len(episodes),
        "agreements": sum(e["agree"] for e in episodes),
        "errors": sum(e["ros_outcome"] in (SETUP_ERROR, NO_OUTCOME) for e in episodes),
        "episodes": episodes,
    }


def check_cell_over_ros(
    checkpoint: str | None,
    kind: str,
    preset: str,
    seeds: Sequence[int],
    inprocess: Sequence[Mapping[str, Any]],
    log_root: Path,
    max_episode_time: float = 60.0,
    timeout: float = ROS_TIMEOUT_S,
    on_flight: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Fly ``seeds`` of a cell through the graph (the expert when ``checkpoint`` is None); the cell's ``ros`` block.

    ``inprocess``: the cell's in-process episodes (``CellResult.episodes``).
    Node logs of each flight stay under ``log_root/<world>_<preset>_<seed>``.
    """
    expert = checkpoint is None
    job = eval_job(checkpoint, kind, seeds, preset, max_episode_time=max_episode_time)
    params = graph_params(job, expert)
    flights = []
    with _sigterm_unwinds():
        for seed in seeds:
            logs = log_root / f"{kind}_{preset}_{seed}"
            flight = fly_seed_over_ros(kind, seed, preset, checkpoint, timeout=timeout, log_dir=str(logs), **params)
            flight = {**flight, "seed": seed, "logs": str(logs)}
            flights.append(flight)
            if on_flight is not None:
                on_flight(flight)
    return {
        **compare_outcomes(inprocess, flights),
        "pilot": "expert_node" if expert else "controller",
        "notes": known_differences(expert),
    }


@contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt meanwhile, so fly_over_ros still stops its node processes (each in its
    own session, out of reach of a signal to this one)."""

    def _terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous, installed = signal.signal(signal.SIGTERM, _terminate), True
    except ValueError:  # not the main thread, where alone Python handles signals
        previous, installed = None, False
    try:
        yield
    finally:
        if installed:
            signal.signal(signal.SIGTERM, previous)
