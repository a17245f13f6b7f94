"""Batch-1 step latency of our cores and policy beside ncps on the same weights."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..models import AutoNCP, CfC, LiquidPolicy, PolicyConfig, build_core, from_ncps


@dataclass
class LatencyRow:
    """One line of the latency table (microseconds per step, median of repeats)."""

    name: str
    ours_us: float
    reference_us: float | None
    reference: str

    @property
    def speedup(self) -> float | None:
        return None if self.reference_us is None else self.reference_us / self.ours_us


def time_call(fn: Callable[[], object], iters: int, repeats: int = 5, warmup: int = 20) -> float:
    """Median over ``repeats`` of the mean time per call, in microseconds."""
    with torch.inference_mode():
        for _ in range(warmup):
            fn()
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(iters):
                fn()
            samples.append((time.perf_counter() - start) / iters * 1e6)
    return statistics.median(samples)


def _ncps_modules():
    """ncps modules (or None when ncps is absent) for the cores we compare."""
    try:
        import ncps.torch as ncps_torch
        import ncps.wirings as ncps_wirings
    except ImportError:
        return None
    return ncps_torch, ncps_wirings


def _core_rows(iters: int, repeats: int) -> list[LatencyRow]:
    torch.manual_seed(0)
    features = 32
    x = torch.randn(1, features)
    dt = torch.tensor([0.05])
    rows: list[LatencyRow] = []
    ncps_pair = _ncps_modules()

    cases = []
    if ncps_pair is not None:
        ncps_torch, ncps_wirings = ncps_pair
        cases = [
            ("CfC AutoNCP(19,4)", ncps_torch.CfC(features, ncps_wirings.AutoNCP(19, 4))),
            ("CfC dense 64 units", ncps_torch.CfC(features, 64)),
            ("LTC AutoNCP(19,4)", ncps_torch.LTC(features, ncps_wirings.AutoNCP(19, 4))),
        ]
        for name, theirs in cases:
            theirs.eval()
            ours = from_ncps(theirs).eval()
            h = ours.initial_state(1)
            ts_seq = dt.view(1, 1)
            ref_us = time_call(lambda: theirs(x.unsqueeze(1), h, ts_seq), iters, repeats)  # noqa: B023 -- called within this iteration
            ours_us = time_call(lambda: ours.step(x, h, dt), iters, repeats)  # noqa: B023 -- called within this iteration
            rows.append(LatencyRow(name, ours_us, ref_us, "ncps 1.0.1 (T=1 call)"))
        # Wiring-faithful recurrence (our default) costs the same as ncps' dense block.
        ours = CfC(features, AutoNCP(19, 4)).eval()
        h = ours.initial_state(1)
        rows.append(
            LatencyRow(
                "CfC AutoNCP(19,4), recurrence=wiring",
                time_call(lambda: ours.step(x, h, dt), iters, repeats),
                None,
                "-",
            )
        )
    else:
        for name, core in (
            ("CfC AutoNCP(19,4)", build_core("cfc-ncp", features, 4)),
            ("CfC dense 64 units", CfC(features, 64)),
            ("LTC AutoNCP(19,4)", build_core("ltc", features, 4)),
        ):
            core.eval()
            h = core.initial_state(1)
            rows.append(
                LatencyRow(name, time_call(lambda: core.step(x, h, dt), iters, repeats), None, "ncps not installed")  # noqa: B023 -- called within this iteration
            )
    return rows


def _policy_row(iters: int, repeats: int) -> LatencyRow:
    torch.manual_seed(0)
    policy = LiquidPolicy(PolicyConfig()).eval()
    cfg = policy.config.encoder
    image = torch.rand(1, cfg.in_channels, cfg.height, cfg.width)
    state = policy.initial_state(1)
    ours_us = time_call(lambda: policy.step(image, 0.05, state), max(iters // 5, 20), repeats)
    return LatencyRow(f"policy cfc-ncp, {cfg.height}x{cfg.width} RGB", ours_us, None, "-")


def step_latency_table(iters: int = 2000, repeats: int = 5, threads: int = 1) -> list[LatencyRow]:
    """Measure every row in one run, on ``threads`` intra-op threads."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _core_rows(iters, repeats) + [_policy_row(iters, repeats)]
    finally:
        torch.set_num_threads(previous)


def format_table(rows: list[LatencyRow]) -> str:
    """Markdown table: ours, the reference, and the ratio side by side."""
    lines = [
        "| model (batch 1) | lnn_nav step (µs) | reference (µs) | speed-up | reference |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        ref = "-" if row.reference_us is None else f"{row.reference_us:.1f}"
        speed = "-" if row.speedup is None else f"{row.speedup:.2f}x"
        lines.append(f"| {row.name} | {row.ours_us:.1f} | {ref} | {speed} | {row.reference} |")
    return "\n".join(lines)
