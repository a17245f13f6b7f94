"""`lnn-nav demo`: what the package can do today, shown end to end, and what is coming.

The closed-loop flight of the learned controller (shipped checkpoint, ROS 2
graph, benchmark report) needs the nodes and a trained controller, which land
with later issues. Until then this runs the liquid model library for real
(saying plainly that the policy is untrained and its frames synthetic) and
flies the privileged expert through a forest and an urban world of the
embedded simulator.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import List

import numpy as np
import torch

from .eval.latency import format_table, step_latency_table
from .eval.plots import plot_neuron_traces, plot_wiring
from .models import LiquidPolicy, PolicyConfig, load_policy, save_policy

COMING = [
    "rosbag recording, dataset building, imitation training, a shipped controller (issue: imitation learning)",
    "closed-loop flight of the shipped CfC-NCP controller and the liquid-vs-baseline report (issue: benchmark and demo)",
]


class _Progress:
    def __init__(self, total: int) -> None:
        self.total, self.done, self.start = total, 0, time.perf_counter()

    def __call__(self, text: str) -> None:
        self.done += 1
        print(f"[{self.done}/{self.total}] {text}  ({time.perf_counter() - self.start:.1f} s)", flush=True)


def synthetic_flight_inputs(steps: int, height: int, width: int, seed: int = 0):
    """Frames of a drifting striped pattern at jittery ~15 Hz, with one dropped-frame gap.

    Not a simulator: a stand-in that exercises irregular Δt honestly. Returns
    (uint8 frames ``[T, 3, H, W]``, Δt ``[T]`` in seconds).
    """
    rng = np.random.default_rng(seed)
    dt = 1.0 / 15.0 * rng.uniform(0.7, 1.3, size=steps)
    dt[steps // 2] = 0.4  # a dropped-frame gap: Δt is an input, not a constant
    t = np.cumsum(dt)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = np.empty((steps, 3, height, width), dtype=np.uint8)
    for k in range(steps):
        phase = 2.0 * t[k]
        stripes = 0.5 + 0.5 * np.sin(xx / 6.0 + phase) * np.cos(yy / 11.0 - 0.5 * phase)
        frames[k, 0] = (255 * stripes).astype(np.uint8)
        frames[k, 1] = (255 * (1.0 - stripes) * (yy / height)).astype(np.uint8)
        frames[k, 2] = (255 * stripes * (xx / width)).astype(np.uint8)
    return torch.from_numpy(frames), torch.from_numpy(dt.astype(np.float32))


def run_demo(out_dir: Path, threads: int = 1, latency_iters: int = 500) -> int:
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    progress = _Progress(8)
    print("lnn_nav demo: the liquid model library, the embedded simulator and the ROS 2 closed loop.")
    print("NOTE: no trained controller ships yet, so the learned policy here is untrained; "
          "see 'coming' below.\n", flush=True)

    policy = LiquidPolicy(PolicyConfig()).eval()
    wiring = policy.core.wiring
    n_params = sum(p.numel() for p in policy.parameters())
    progress(f"built the default CfC-NCP policy (untrained): {n_params} parameters, {wiring!r}")

    ckpt = out_dir / "policy_untrained.safetensors"
    save_policy(policy, ckpt, metadata={"note": "untrained, made by lnn-nav demo"})
    reloaded = load_policy(ckpt)
    progress(f"saved and reloaded the checkpoint ({ckpt.stat().st_size / 1024:.0f} KiB, safetensors)")

    cfg = policy.config.encoder
    frames, dt = synthetic_flight_inputs(60, cfg.height, cfg.width)
    with torch.inference_mode():
        seq_cmd, _ = reloaded(frames.unsqueeze(0), dt.unsqueeze(0))
        state, step_cmds, traces = None, [], []
        for k in range(frames.shape[0]):
            cmd, state = policy.step(frames[k : k + 1], dt[k : k + 1], state)
            step_cmds.append(cmd)
            traces.append(state[0].clone())
    step_cmd = torch.cat(step_cmds).unsqueeze(0)
    parity = (step_cmd - seq_cmd).abs().max().item()
    progress(f"60 frames at irregular Δt: onboard step() vs sequence forward() max |Δ| = {parity:.2e}")

    # Layer-ordered state -> neuron type labels for the trace plot.
    order = [n for layer in wiring.layers for n in layer]
    labels = [wiring.neuron_type(n) for n in order]
    plot_wiring(wiring, out_dir / "wiring.png", f"default policy core: {wiring!r}")
    plot_neuron_traces(
        np.cumsum(dt.numpy()),
        torch.stack(traces).numpy(),
        labels,
        out_dir / "neuron_traces.png",
        "CfC-NCP neuron states over synthetic frames (untrained weights; Δt gap at mid-sequence)",
    )
    progress("plotted the wiring and the neuron traces")

    flights = _expert_flights(out_dir)
    progress("flew the privileged expert in the embedded simulator: " + "; ".join(
        f"{f['world']} seed {f['seed']} {f['outcome']} in {f['time_s']:.1f} s" for f in flights))

    ros_flights = _ros_flights(out_dir, ckpt)
    progress("flew through the ROS 2 graph (separate node processes): " + "; ".join(
        f"{f['pilot']} -> {f.get('outcome', 'no outcome')}" for f in ros_flights))

    rows = step_latency_table(iters=latency_iters, repeats=3, threads=threads)
    table = format_table(rows)
    progress(f"measured batch-1 step latency on {threads} thread(s)")

    commands = step_cmd[0].numpy()
    report = _report(n_params, wiring, parity, table, commands, threads, flights, ros_flights)
    (out_dir / "README.md").write_text(report)
    (out_dir / "summary.json").write_text(
        json.dumps(
            {
                "policy_parameters": n_params,
                "step_vs_sequence_max_abs_diff": parity,
                "latency_us": {r.name: {"ours": r.ours_us, "reference": r.reference_us} for r in rows},
                "expert_flights": flights,
                "ros_graph_flights": ros_flights,
                "learned_controller_closed_loop": "not available yet",
            },
            indent=2,
        )
    )
    progress(f"wrote {out_dir / 'README.md'}")
    print("\n" + table)
    print("\nComing (not available yet):")
    for item in COMING:
        print(f"  - {item}")
    return 0


def _expert_flights(out_dir: Path) -> List[dict]:
    """The privileged expert through one forest and one urban world, with map and camera GIF."""
    from .sim.camera import CameraConfig
    from .sim.env import NavigationEnv
    from .sim.episode import ExpertPilot, fly_episode
    from .sim.expert import PrivilegedExpert
    from .sim.presets import make_world

    flights = []
    for kind, seed in (("forest", 3), ("urban", 5)):
        world = make_world(kind, seed)
        env = NavigationEnv(kind=kind, camera=CameraConfig(), max_episode_time=120.0)
        try:
            record = fly_episode(env, ExpertPilot(), world=world, frame_stride=2)
        finally:
            env.close()
        record.save_pictures(out_dir, f"expert_{kind}", PrivilegedExpert(world).path(world.start[:2]))
        flights.append({"world": kind, "seed": seed, "outcome": record.outcome, "time_s": record.time,
                        "path_length_m": record.path_length})  # fmt: skip
    return flights


def _ros_flights(out_dir: Path, untrained_ckpt: Path) -> List[dict]:
    """sim_node + a pilot node as separate processes over DDS (loopback), as `lnn-nav fly` runs them."""
    from .nodes.fly import SetupError, fly_over_ros

    runs = [
        ("expert_node", dict(world="forest", seed=3, expert=True)),
        # The untrained policy: shows the controller node in the loop, not flying skill.
        ("controller_node (untrained policy)", dict(world="forest", seed=3, model=str(untrained_ckpt), max_episode_time=6.0)),
    ]
    results = []
    for pilot, kwargs in runs:
        try:
            outcome = fly_over_ros(timeout=180.0, log_dir=str(out_dir / "ros_logs"), **kwargs)
        except SetupError as err:
            outcome = {"outcome": f"setup error: {err}"}
        results.append({"pilot": pilot, **(outcome or {"outcome": "no outcome within 180 s"})})
    return results


def _report(
    n_params: int,
    wiring,
    parity: float,
    table: str,
    commands: np.ndarray,
    threads: int,
    flights: List[dict],
    ros_flights: List[dict],
) -> str:
    ros_rows = "\n".join(
        f"| {f['pilot']} | {f.get('world', '-')} | {f.get('seed', '-')} | {f['outcome']} | "
        f"{f.get('time', float('nan')):.1f} |" for f in ros_flights
    )
    coming = "\n".join(f"- {item}" for item in COMING)
    flight_rows = "\n".join(
        f"| {f['world']} | {f['seed']} | {f['outcome']} | {f['time_s']:.1f} | {f['path_length_m']:.1f} |" for f in flights
    )
    lo, hi = commands.min(axis=0), commands.max(axis=0)
    ranges = ", ".join(f"{n} [{a:+.2f}, {b:+.2f}]" for n, a, b in zip(("vx", "vy", "vz", "yaw_rate"), lo, hi))
    return f"""# lnn_nav demo report

**Status: closed-loop flight of the learned controller is not available yet.**
This report shows the liquid model library working end to end and the
embedded simulator flown by the privileged expert. The policy is
**untrained** and its camera frames are **synthetic** (a drifting pattern at
jittery ~15 Hz with one 0.4 s gap), so its commands mean nothing for flight;
they show shapes, bounds and timing.

## Embedded simulator: the privileged expert

The expert plans on ground truth (every obstacle, the exact pose) and flies
the same quadrotor model, flight controller and Warp camera the learned
controller will fly.

| world | seed | outcome | time (s) | path (m) |
| --- | ---: | --- | ---: | ---: |
{flight_rows}

![forest map](expert_forest_map.png) ![urban map](expert_urban_map.png)

Onboard camera: `expert_forest_camera.gif`, `expert_urban_camera.gif`.

## Through the ROS 2 graph

`sim_node` and a pilot node as separate processes over Fast DDS (loopback),
exactly as `lnn-nav fly` runs them; the untrained policy is in the loop to
show the controller node working, not to fly well (a timeout or collision is
the expected outcome).

| pilot | world | seed | outcome | sim time (s) |
| --- | --- | ---: | --- | ---: |
{ros_rows}

## Policy

- default `LiquidPolicy`: CNN encoder (96×128 RGB) → CfC on {wiring!r} → bounded head
- {n_params} parameters; checkpoint `policy_untrained.safetensors` (config + tensors, no code on load)
- onboard `step()` and training `forward()` agree on the same 60 frames: max |Δ| = {parity:.2e}
- command ranges over the 60 frames: {ranges}

![wiring](wiring.png)

![neuron traces](neuron_traces.png)

## Batch-1 step latency ({threads} CPU thread(s), this machine, this run)

{table}

## Coming

{coming}
"""
