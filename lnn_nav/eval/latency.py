"""Batch-1 step latency of our cores and policy beside a reference (ncps, or our reference path) in one run.

Every figure is timed beside its reference in the same run, their repeats
interleaved (:func:`time_together`), so that load from other jobs on the
machine falls on both alike; the ratio is what to read on a busy machine.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..kernels import fused_policy
from ..models import AutoNCP, CfC, LiquidPolicy, PolicyConfig, build_core, from_ncps, load_policy

#: The shipped controller (48x64 RGB + goal, CfC-NCP), where this is a source checkout.
SHIPPED_POLICY = Path(__file__).resolve().parents[2] / "models" / "cfc_ncp.safetensors"


@dataclass
class LatencyRow:
    """One line of the latency table (microseconds per call, median of repeats)."""

    name: str
    ours_us: float
    reference_us: float | None
    reference: str

    @property
    def speedup(self) -> float | None:
        return None if self.reference_us is None else self.reference_us / self.ours_us


#: A timed case: a call, how many calls per repeat, and a context each repeat runs in.
Case = tuple[Callable[[], object], int, Callable[[], contextlib.AbstractContextManager]]


def case(
    fn: Callable[[], object],
    iters: int,
    context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> Case:
    """``iters`` calls of ``fn`` per repeat, each repeat inside ``context()``."""
    return fn, max(1, int(iters)), context


def time_together(cases: Sequence[Case], repeats: int = 5, warmup: int = 20) -> list[float]:
    """Per case, the median over ``repeats`` of the mean µs per call; the repeats of the cases interleaved.

    Runs under ``torch.inference_mode()``, as an onboard controller does.
    """
    with torch.inference_mode():
        for fn, iters, context in cases:
            with context():
                for _ in range(min(warmup, iters)):
                    fn()
        samples: list[list[float]] = [[] for _ in cases]
        for _ in range(repeats):
            for (fn, iters, context), out in zip(cases, samples):
                with context():
                    start = time.perf_counter()
                    for _ in range(iters):
                        fn()
                    out.append((time.perf_counter() - start) / iters * 1e6)
    return [statistics.median(s) for s in samples]


def time_call(fn: Callable[[], object], iters: int, repeats: int = 5, warmup: int = 20) -> float:
    """Median over ``repeats`` of the mean time per call, in microseconds."""
    return time_together([case(fn, iters)], repeats, warmup)[0]


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
            ours_us, ref_us = time_together(
                [  # the lambdas are timed here, within this iteration (B023)
                    case(lambda: ours.step(x, h, dt), iters),  # noqa: B023
                    case(lambda: theirs(x.unsqueeze(1), h, ts_seq), max(iters // 10, 10)),  # noqa: B023
                ],
                repeats,
            )
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


def _with_threads(threads: int, fn: Callable[[], list[LatencyRow]]) -> list[LatencyRow]:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return fn()
    finally:
        torch.set_num_threads(previous)


def step_latency_table(iters: int = 2000, repeats: int = 5, threads: int = 1) -> list[LatencyRow]:
    """Measure every row in one run, on ``threads`` intra-op threads."""
    return _with_threads(threads, lambda: _core_rows(iters, repeats) + [_policy_row(iters, repeats)])


def call_style_table(iters: int = 2000, repeats: int = 5, threads: int = 1) -> list[LatencyRow]:
    """The CfC cores through each public call style, inference, beside ncps 1.0.1 on the same weights.

    ``step()``; the ncps-style ``model(x[1, 1, F], h, timespans=...)``; short
    sequences (B=1, T=16 with Δt; B=4, T=8 with Δt = 1, as ncps 1.0.1 cannot take
    per-sample timespans at B > 1). Empty without ncps.
    """
    ncps_pair = _ncps_modules()
    if ncps_pair is None:
        return []
    ncps_torch, ncps_wirings = ncps_pair

    def rows() -> list[LatencyRow]:
        torch.manual_seed(0)
        features = 32
        out: list[LatencyRow] = []
        for name, theirs in (
            ("CfC AutoNCP(19,4)", ncps_torch.CfC(features, ncps_wirings.AutoNCP(19, 4))),
            ("CfC dense 64 units", ncps_torch.CfC(features, 64)),
        ):
            theirs.eval()
            ours = from_ncps(theirs).eval()
            x = torch.randn(1, features)
            x1 = x.unsqueeze(1)
            h = torch.randn(1, ours.state_size)
            dt = torch.tensor([0.05])
            ts1 = dt.view(1, 1)
            x16, ts16 = torch.randn(1, 16, features), torch.full((1, 16), 0.05)
            x48, h4 = torch.randn(4, 8, features), torch.randn(4, ours.state_size)
            calls = [  # (row, ours, theirs, calls per repeat); the lambdas are timed within this iteration (B023)
                ("step()", lambda: ours.step(x, h, dt), lambda: theirs(x1, h, ts1), iters),  # noqa: B023
                (
                    "forward, T=1 (ncps-style call)",
                    lambda: ours(x1, h, timespans=ts1),  # noqa: B023
                    lambda: theirs(x1, h, timespans=ts1),  # noqa: B023
                    iters,
                ),
                ("forward, B=1, T=16", lambda: ours(x16, h, ts16), lambda: theirs(x16, h, ts16), iters // 8),  # noqa: B023
                ("forward, B=4, T=8", lambda: ours(x48, h4), lambda: theirs(x48, h4), iters // 16),  # noqa: B023
            ]
            for label, mine, reference, n in calls:
                ours_us, ref_us = time_together([case(mine, n), case(reference, max(n // 10, 5))], repeats)
                out.append(LatencyRow(f"{name}: {label}", ours_us, ref_us, "ncps 1.0.1, same call"))
        return out

    return _with_threads(threads, rows)


def _policies(checkpoint: Path | None) -> list[tuple[str, LiquidPolicy]]:
    found = []
    if checkpoint is not None and checkpoint.is_file():
        policy = load_policy(checkpoint)
        enc = policy.config.encoder
        extras = " + goal" if policy.config.use_goal else ""
        found.append((f"shipped {checkpoint.name}, {enc.height}x{enc.width} RGB{extras}", policy))
    torch.manual_seed(0)
    demo = LiquidPolicy(PolicyConfig()).eval()  # EncoderConfig defaults: the 96x128 demo size
    found.append((f"demo size, {demo.config.encoder.height}x{demo.config.encoder.width} RGB", demo))
    return found


def policy_latency_table(
    iters: int = 400, repeats: int = 5, threads: int = 1, checkpoint: Path | None = SHIPPED_POLICY
) -> list[LatencyRow]:
    """Full ``policy.step`` (uint8 frame -> command): the fused path beside the reference encoder path.

    The reference is what ``policy.step`` ran before the fused encoder
    (``LNN_NAV_REFERENCE_ENCODER=1``): ATen's convolutions, then the fused CfC step.
    """

    def rows() -> list[LatencyRow]:
        out: list[LatencyRow] = []
        for name, policy in _policies(checkpoint):
            cfg = policy.config
            enc = cfg.encoder
            image = torch.randint(0, 256, (1, enc.in_channels, enc.height, enc.width), dtype=torch.uint8)
            extras = {"goal": torch.tensor([[0.6, 0.8, 0.0, 5.0]])} if cfg.use_goal else {}
            if cfg.use_imu:
                extras["imu"] = torch.zeros(1, 6)
            state = policy.initial_state(1)
            ours_us, ref_us = time_together(
                [  # the lambdas are timed within this iteration (B023)
                    case(lambda: policy.step(image, 0.05, state, **extras), iters),  # noqa: B023
                    case(
                        lambda: policy.step(image, 0.05, state, **extras),  # noqa: B023
                        max(iters // 5, 5),
                        fused_policy.reference_encoder,
                    ),
                ],
                repeats,
            )
            out.append(
                LatencyRow(f"policy {name}: step", ours_us, ref_us, "ATen encoder + fused cell (reference switch)")
            )
        return out

    return _with_threads(threads, rows)


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
