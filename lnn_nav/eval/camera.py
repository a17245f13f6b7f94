"""One episode flown in-process with its camera kept: onboard GIFs with VisualBackProp saliency, core states.

The benchmark keeps only tracks; a picture of what the controller saw (and
what its encoder looked at) needs the frames. :func:`fly_with_camera` flies
a checkpoint on one held-out world as the benchmark flies it (the
evaluation's camera, control rate and episode limit, the policy stepped at
batch 1 as in :class:`lnn_nav.rollouts.flights.FlightJob` runs and the
controller node), so the episode ends as the benchmark's episode of that
seed does when both come from the same code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lnn_nav.models import load_policy
from lnn_nav.models.inputs import policy_inputs, resize_rgb
from lnn_nav.models.saliency import saliency_overlays


class PolicyPilot:
    """A checkpoint as an in-process pilot for :func:`lnn_nav.sim.episode.fly_episode`; keeps its core state."""

    def __init__(self, path: str | Path) -> None:
        self.policy = load_policy(path).eval()
        self.state: Any = None
        self.states: list[np.ndarray] = []

    def __call__(self, obs: dict[str, np.ndarray], env: Any) -> np.ndarray:
        dt = 1.0 / env.config.control_hz
        with torch.inference_mode():
            image, extras = policy_inputs(self.policy.config, obs["image"][None], obs["goal"][None], obs["imu"][None])
            if self.state is None:
                self.state = self.policy.initial_state(1)
            cmd, self.state = self.policy.step(image, dt, self.state, **extras)
        core_state = self.state[0] if isinstance(self.state, tuple) else self.state
        self.states.append(core_state[0].numpy().copy())
        return cmd[0].double().numpy()


@dataclass
class CameraFlight:
    """An episode with its frames (every ``frame_stride``-th control step) and the core's state per step."""

    world: str
    preset: str
    seed: int
    outcome: str
    time: float
    path_length: float
    frames: list[np.ndarray] = field(repr=False)
    frame_stride: int
    control_hz: float
    states: np.ndarray = field(repr=False)
    record: Any = field(repr=False)  # the lnn_nav.sim.episode.EpisodeRecord (maps: record.save_pictures)
    policy: Any = field(repr=False)


def fly_with_camera(
    checkpoint: str | Path,
    world_kind: str,
    seed: int,
    preset: str = "in_distribution",
    frame_stride: int = 1,
    max_episode_time: float = 60.0,
) -> CameraFlight:
    """Fly ``checkpoint`` on held-out world ``seed`` as the benchmark does, keeping the camera frames."""
    from lnn_nav.sim.camera import CameraConfig
    from lnn_nav.sim.env import NavigationEnv
    from lnn_nav.sim.episode import fly_episode
    from lnn_nav.sim.presets import make_world

    from .closed_loop import eval_job

    job = eval_job(str(checkpoint), world_kind, [seed], preset, envs=1, max_episode_time=max_episode_time)
    env = NavigationEnv(
        kind=world_kind,
        preset=preset,
        control_hz=job.control_hz,
        camera=CameraConfig(width=job.camera_width, height=job.camera_height, hfov_deg=job.camera_hfov),
        max_episode_time=job.max_episode_time,
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(job.learner_threads)  # the benchmark's thread count: the same float arithmetic
    pilot = PolicyPilot(checkpoint)
    try:
        record = fly_episode(env, pilot, world=make_world(world_kind, seed, preset), frame_stride=frame_stride)
    finally:
        env.close()
        torch.set_num_threads(threads)
    return CameraFlight(
        world_kind,
        preset,
        seed,
        record.outcome,
        float(record.time),
        float(record.path_length),
        record.frames,
        frame_stride,
        float(job.control_hz),
        np.stack(pilot.states),
        record,
        pilot.policy,
    )


def write_saliency_gif(
    flight: CameraFlight,
    path: str | Path,
    stride: int = 1,
    side_by_side: bool = False,
    scale: int = 2,
    input_size: bool = False,
    colors: int | None = None,
) -> Path:
    """The flight's camera with its saliency over it as a GIF playing in real time.

    ``stride`` keeps every ``stride``-th stored frame; ``side_by_side`` puts
    the plain frame left of the overlay (the overlay alone hides what the
    saliency covers); ``input_size`` shows the frames as the policy gets
    them (resized to its encoder's input), a quarter of the camera's pixels;
    ``colors`` gives the GIF one shared palette (:func:`lnn_nav.sim.viz.write_gif`).
    """
    from lnn_nav.sim.viz import write_gif

    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    frames = flight.frames[::stride]
    if not frames:
        raise ValueError("the flight kept no frames")
    if input_size:
        cfg = flight.policy.config.encoder
        frames = [resize_rgb(f, cfg.height, cfg.width) for f in frames]
    overlays = saliency_overlays(flight.policy, np.stack(frames))
    if side_by_side:
        gap = np.full((frames[0].shape[0], 2, 3), 255, dtype=np.uint8)
        overlays = [np.concatenate([f, gap, o], axis=1) for f, o in zip(frames, overlays)]
    fps = flight.control_hz / (flight.frame_stride * stride)
    return write_gif(list(overlays), Path(path), fps=fps, scale=scale, colors=colors)


def plot_core_traces(flight: CameraFlight, path: str | Path, title: str = "") -> Path:
    """The recurrent core's state over the flight, one trace per neuron, grouped by NCP layer where wired.

    Columns of the state are neuron ids; a wiring numbers its motor neurons
    first, so labels go by id (``wiring.neuron_type(id)``), not by layer.
    """
    from .plots import plot_neuron_traces

    wiring = getattr(flight.policy.core, "wiring", None)
    units = flight.states.shape[1]
    labels = [wiring.neuron_type(n) for n in range(units)] if wiring is not None else ["hidden"] * units
    times = np.arange(len(flight.states)) / flight.control_hz
    title = title or (
        f"{flight.policy.config.core} state, {flight.world} {flight.preset} seed {flight.seed} ({flight.outcome})"
    )
    return plot_neuron_traces(times, flight.states, labels, Path(path), title)


def camera_section(
    flights: Sequence[CameraFlight],
    names: Sequence[str],
    stems: Sequence[str],
    benchmark: Sequence[dict[str, Any] | None],
) -> str:
    """Markdown for the report: each GIF (``camera_<stem>.gif``, traces ``neurons_<stem>.png``) with its
    controller, world and outcome, and the benchmark's episode."""
    lines = [
        "Each controller flown once more in-process, with the camera kept, on the mapped worlds (without "
        "tracks in the results, each world's first held-out seed): "
        "left the frame as the policy gets it (resized to its input), right the same frame with its "
        "VisualBackProp saliency (which pixels the CNN encoder's features come from); 5 frames a second, "
        "in real time.\n"
    ]
    for flight, name, stem, episode in zip(flights, names, stems, benchmark):
        width = 2 * flight.policy.config.encoder.width + 2
        bench = ""
        if episode is not None:
            bench = f"; the benchmark's episode of this seed: {episode.get('outcome')}"
            if episode.get("outcome") != flight.outcome:
                # Both step the policy at batch 1 on the same noise; results from older code (batched
                # policy, shared noise) or another checkpoint of the same name fly differently.
                bench += " (results from other code or another checkpoint)"
        # Written at the policy's input size; shown four times larger (HTML: markdown cannot size a picture).
        gif, traces = f"camera_{stem}.gif", f"neurons_{stem}.png"
        lines.append(
            f"**{name}**, {flight.world} {flight.preset}, seed {flight.seed}: {flight.outcome} after "
            f'{flight.time:.1f} s{bench}.\n\n<img src="{gif}" width="{4 * width}" '
            f'alt="{name} camera, {flight.world} {flight.preset}">\n\n'
            f"<details><summary>its core's neuron states over the flight</summary>\n\n"
            f"![{name} neuron states]({traces})\n\n</details>\n"
        )
    return "\n".join(lines)
