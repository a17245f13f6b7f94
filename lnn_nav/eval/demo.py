"""`lnn-nav demo`: the shipped liquid controller flying closed loop, over ROS 2, with a report.

Steps (each printed as it happens):

1. load the shipped CfC-NCP controller (``models/cfc_ncp.safetensors``);
2. fly it through the ROS 2 graph (``sim_node`` + ``controller_node`` as
   separate processes over DDS on loopback, as ``lnn-nav fly`` does) in a
   forest and an urban world, in distribution and out of distribution (fog);
3. fly the same seeds in-process, where the camera frames are kept: top-down
   maps, onboard-camera GIFs with a VisualBackProp saliency overlay, and the
   liquid core's neuron traces over the flight;
4. a small benchmark on held-out worlds against one baseline (the shipped
   LSTM when present) and the expert, written up by :mod:`lnn_nav.eval.report`;
5. the batch-1 step latency table.

Everything lands in ``--out`` (``reports/demo``): ``README.md`` (start
there), ``benchmark/report.md``, PNGs, GIFs, ``summary.json``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from lnn_nav.eval.latency import format_table, step_latency_table
from lnn_nav.eval.plots import plot_wiring
from lnn_nav.models import load_policy
from lnn_nav.models.wirings import Wiring
from lnn_nav.sim.kinds import WORLD_KINDS

#: Shipped controllers, relative to the share (or source) directory.
SHIPPED = {"cfc-ncp": "models/cfc_ncp.safetensors", "lstm": "models/lstm.safetensors"}
#: (world, preset, held-out seed) flown through the ROS 2 graph.
ROS_FLIGHTS = (("forest", "in_distribution", 1003), ("urban", "in_distribution", 1003), ("forest", "fog", 1004))


class _Progress:
    def __init__(self, total: int) -> None:
        self.total, self.done, self.start = total, 0, time.perf_counter()

    def __call__(self, text: str) -> None:
        self.done += 1
        print(f"[{self.done}/{self.total}] {text}  ({time.perf_counter() - self.start:.0f} s)", flush=True)


def shipped_model(name: str = "cfc-ncp") -> Path | None:
    """Path of a shipped checkpoint (installed share directory first, then the source tree), or None."""
    from lnn_nav.nodes.fly import SetupError, share_path

    try:
        return share_path(SHIPPED[name])
    except SetupError:
        return None


def run_demo(
    out_dir: Path, threads: int = 1, latency_iters: int = 500, episodes: int = 10, ros_flights: Sequence = ROS_FLIGHTS
) -> int:
    """The demo; ``episodes`` per world and controller in the benchmark. Returns an exit code."""
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.set_num_threads(threads)
    progress = _Progress(7)
    print(
        "lnn_nav demo: the shipped CfC-NCP liquid controller flying closed loop in the embedded simulator.", flush=True
    )
    model = shipped_model("cfc-ncp")
    if model is None:
        print(
            "lnn-nav demo: error: the shipped controller models/cfc_ncp.safetensors is missing "
            "(regenerate it with `make reproduce`)"
        )
        return 2
    policy = load_policy(model).eval()
    wiring = policy.core.wiring
    n_params = sum(p.numel() for p in policy.parameters())
    progress(
        f"loaded {model.name}: {n_params} parameters, core {wiring!r}, input "
        f"{policy.config.encoder.width}x{policy.config.encoder.height} RGB + goal, "
        f"{model.stat().st_size / 1024:.0f} KiB"
    )

    ros = _ros_flights(out_dir, model, ros_flights)
    progress(
        "through the ROS 2 graph (sim_node + controller_node processes): "
        + "; ".join(f"{f['world']} {f['preset']} seed {f['seed']} -> {f['outcome']}" for f in ros)
    )

    native = _ros_flights(out_dir, model, ros_flights, native=True)
    progress(
        "the same through the native controller node (C++ on rcl, no Python or torch in the loop): "
        + "; ".join(f"{f['world']} {f['preset']} seed {f['seed']} -> {f['outcome']}" for f in native)
    )

    local = _local_flights(out_dir, model, ros_flights)
    same = sum(a["outcome"] == b["outcome"] for a, b in zip(ros, local))
    progress(
        f"the same seeds in-process (maps, saliency GIFs, neuron traces): {same}/{len(ros)} outcomes as through ROS"
    )

    bench_dir = out_dir / "benchmark"
    cells, report_path = _benchmark(bench_dir, model, episodes)
    progress(
        "benchmark on held-out worlds: "
        + "; ".join(f"{c['controller']} {c['world']} {c['success_rate']:.0%}" for c in cells)
    )

    rows = step_latency_table(iters=latency_iters, repeats=3, threads=threads)
    table = format_table(rows)
    progress(f"measured batch-1 step latency on {threads} thread(s)")

    if not isinstance(wiring, Wiring):  # nn.Module attribute: mypy sees Tensor | Module; a dense core has None
        raise TypeError(f"the shipped controller's core has no wiring to draw: {wiring!r}")
    plot_wiring(wiring, out_dir / "wiring.png", f"shipped controller core: {wiring!r}")
    summary = {
        "model": str(model),
        "parameters": n_params,
        "ros_graph_flights": ros,
        "native_graph_flights": native,
        "in_process_flights": local,
        "benchmark": [
            {k: c[k] for k in ("controller", "world", "preset", "episodes", "success_rate", "ci95")} for c in cells
        ],
        "latency_us": {r.name: {"ours": r.ours_us, "reference": r.reference_us} for r in rows},
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    (out_dir / "README.md").write_text(
        _readme(model, n_params, wiring, ros, native, local, cells, report_path, table, episodes)
    )
    progress(f"wrote {out_dir / 'README.md'} and {report_path}")
    print("\n" + table)
    return 0


def _ros_flights(out_dir: Path, model: Path, flights: Sequence, native: bool = False) -> list[dict]:
    """The flights through the graph: ``controller_node``, or with ``native`` the native controller node."""
    from lnn_nav.eval.closed_loop import eval_job
    from lnn_nav.eval.ros_agreement import fly_seed_over_ros, graph_params

    results = []
    for world, preset, seed in flights:
        # The benchmark's camera, rate and command limits: the in-process flight of the same seed
        # (_local_flights) then repeats this one step for step.
        params = graph_params(eval_job(str(model), world, [seed], preset), expert=False)
        results.append(
            {
                "world": world,
                "preset": preset,
                "seed": seed,
                **fly_seed_over_ros(
                    world,
                    seed,
                    preset,
                    str(model),
                    timeout=240.0,
                    log_dir=str(out_dir / ("native_logs" if native else "ros_logs") / f"{world}_{preset}_{seed}"),
                    native=native,
                    **params,
                ),
            }
        )
    return results


def _local_flights(out_dir: Path, model: Path, flights: Sequence) -> list[dict]:
    """The ROS flights again in-process: same worlds, frames kept for pictures."""
    from lnn_nav.eval.camera import fly_with_camera, plot_core_traces, write_saliency_gif

    results = []
    for k, (world_kind, preset, seed) in enumerate(flights):
        flight = fly_with_camera(model, world_kind, seed, preset)
        name = f"cfc_ncp_{world_kind}_{preset}"
        pictures = flight.record.save_pictures(out_dir, name)
        # What the encoder sees (its input resolution) beside what it attends to, every third frame, one
        # 64-colour palette: a few hundred kB, where full-size frames made 6-24 MB per flight.
        write_saliency_gif(
            flight, out_dir / f"{name}_saliency.gif", stride=3, side_by_side=True, scale=2, input_size=True, colors=64
        )
        if k == 0:
            plot_core_traces(
                flight,
                out_dir / "neuron_traces.png",
                f"CfC-NCP neuron states, {world_kind} seed {seed} ({flight.outcome})",
            )
        results.append(
            {
                "world": world_kind,
                "preset": preset,
                "seed": seed,
                "outcome": flight.outcome,
                "time": flight.time,
                "path_length": flight.path_length,
                "pictures": {k2: str(v.name) for k2, v in pictures.items()},
            }
        )
    return results


def _benchmark(out_dir: Path, model: Path, episodes: int) -> tuple:
    from lnn_nav.eval.closed_loop import eval_seeds, evaluate
    from lnn_nav.eval.report import load_results, write_report

    out_dir.mkdir(parents=True, exist_ok=True)
    seeds = eval_seeds(episodes)
    controllers: list[tuple[str, str | None]] = [("cfc-ncp", str(model))]  # None: the expert
    baseline = shipped_model("lstm")
    if baseline is not None:
        controllers.append(("lstm", str(baseline)))
    controllers.append(("expert", None))
    cells = []
    for name, path in controllers:
        for world in WORLD_KINDS:
            cell = evaluate(path, world, seeds, envs=min(8, episodes), workers=2, name=name)
            cells.append({**cell.summary(), "episodes_detail": cell.episodes})
    results = out_dir / "results.json"
    results.write_text(json.dumps({"seeds": [seeds[0], seeds[-1]], "cells": cells}))
    report = write_report(load_results([results]), out_dir, title="Demo benchmark (small): held-out worlds")
    return cells, report


def _readme(
    model: Path,
    n_params: int,
    wiring: Any,
    ros: list[dict],
    native: list[dict],
    local: list[dict],
    cells: list[dict],
    report_path: Path,
    table: str,
    episodes: int,
) -> str:
    ros_rows = "\n".join(
        f"| {f['world']} | {f['preset']} | {f['seed']} | {f['outcome']} | {f.get('time', float('nan')):.1f} | "
        f"{n['outcome']} | {n.get('time', float('nan')):.1f} | {g['outcome']} | {g['time']:.1f} |"
        for f, n, g in zip(ros, native, local)
    )
    ros_header = (
        "| world | conditions | seed | outcome (ROS) | sim time (s) | outcome (native node) | sim time (s) "
        "| outcome (in-process) | sim time (s) |\n| --- | --- | ---: | --- | ---: | --- | ---: | --- | ---: |"
    )
    bench_rows = "\n".join(
        f"| {c['controller']} | {c['world']} | {c['episodes']} | {c['success_rate']:.0%} "
        f"[{c['ci95'][0]:.0%}–{c['ci95'][1]:.0%}] |"
        for c in cells
    )
    pics = "\n\n".join(
        f"**{g['world']} {g['preset']} (seed {g['seed']}): {g['outcome']}**\n\n"
        f"![map]({g['pictures']['map']}) ![camera with saliency](cfc_ncp_{g['world']}_{g['preset']}_saliency.gif)"
        for g in local
    )
    report_link = f"{report_path.parent.name}/{report_path.name}"
    return f"""# lnn_nav demo report

The shipped CfC-NCP controller (`{model.name}`, {n_params} parameters, core
{wiring!r}) flies from its camera and the goal direction, closed loop, in the
embedded simulator. It was trained by behaviour cloning on expert flights
recorded as rosbag2, then DAgger (see docs/training.md in the repository).

## Through the ROS 2 graph

`sim_node` and `controller_node` as separate processes over Fast DDS on
loopback, exactly as `lnn-nav fly` runs them; then the same worlds in-process
(where frames are kept for the pictures below). Held-out worlds (seeds 1000+)
that no training flight used. Both runs fly the same noise (IMU, wind gusts,
camera: one stream per drone, seeded by the world) and the same inputs
(the controller runs each frame with the odometry stamped with it). The native
controller node (C++ on rcl around the torch-free policy runtime, no Python or
torch in the loop) flies the same worlds through the same graph.

{ros_header}
{ros_rows}

{pics}

![neuron traces](neuron_traces.png)

![wiring](wiring.png)

## Small benchmark ({episodes} held-out worlds per cell)

| controller | world | episodes | success [95% CI] |
| --- | --- | ---: | --- |
{bench_rows}

Full write-up with charts and maps: [`{report_link}`]({report_link}).
The full benchmark (100 worlds per cell, out-of-distribution conditions, all
baselines) is `lnn-nav eval` + `lnn-nav report` (docs/evaluation.md).

## Batch-1 step latency (this machine, this run)

{table}
"""
