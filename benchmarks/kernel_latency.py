"""Fused CfC kernels beside our reference path and ncps, same weights, same run.

    python benchmarks/kernel_latency.py [--device cpu|cuda|all] [--iters 2000] [--out FILE.md]

Rows: batch-1 step on one CPU thread (AutoNCP(19,4) and a 64-unit dense CfC),
sequence forward+backward at B=32, T=64, and on CUDA also the batch-1 step,
the graph-replayed core step and the full graph-captured controller step.
Ratios are reference time / fused time (> 1: fused is faster). The repeats
of the cases compared in one row are interleaved, so on a shared or loaded
machine a burst of load falls on all of them alike.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from lnn_nav.eval.latency import Case, case
from lnn_nav.kernels import reference, why_not_fused
from lnn_nav.models import LiquidPolicy, PolicyConfig, from_ncps

FEATURES = 32
Row = tuple[str, float, float | None, float | None]  # name, fused, ours-reference, ncps (µs)


def timed_together(cases: Sequence[Case], device: str, repeats: int = 5) -> list[float]:
    """Per case, the median over repeats of the mean microseconds per call; repeats interleaved."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for fn, iters, context in cases:
        with context():
            for _ in range(max(3, iters // 20)):
                fn()
    sync()
    samples: list[list[float]] = [[] for _ in cases]
    for _ in range(repeats):
        for (fn, iters, context), out in zip(cases, samples):
            with context():
                start = time.perf_counter()
                for _ in range(iters):
                    fn()
                sync()
                out.append((time.perf_counter() - start) / iters * 1e6)
    return [statistics.median(s) for s in samples]


def timed(fn: Callable[[], object], iters: int, device: str, repeats: int = 5) -> float:
    """Median over repeats of the mean microseconds per call."""
    return timed_together([case(fn, iters)], device, repeats)[0]


def _models(device: str):
    import ncps.torch as ncps_torch
    import ncps.wirings as ncps_wirings

    torch.manual_seed(0)
    for name, theirs in (
        ("CfC AutoNCP(19,4)", ncps_torch.CfC(FEATURES, ncps_wirings.AutoNCP(19, 4))),
        ("CfC dense 64 units", ncps_torch.CfC(FEATURES, 64)),
    ):
        theirs = theirs.to(device)
        ours = from_ncps(theirs)
        assert why_not_fused(ours.cpu()) is None, why_not_fused(ours)
        yield name, theirs, ours.to(device)


def step_rows(device: str, iters: int) -> list[Row]:
    rows = []
    for name, theirs, ours in _models(device):
        theirs.eval()
        ours.eval()
        x = torch.randn(1, FEATURES, device=device)
        h = ours.initial_state(1, device=torch.device(device))
        dt = torch.tensor([0.05], device=device)
        with torch.inference_mode():
            fused_us, ref_us, ncps_us = timed_together(
                [  # the lambdas are timed here, within this iteration (B023)
                    case(lambda: ours.step(x, h, dt), iters),  # noqa: B023
                    case(lambda: ours.step(x, h, dt), iters // 5, reference),  # noqa: B023
                    case(lambda: theirs(x.unsqueeze(1), h, dt.view(1, 1)), iters // 5),  # noqa: B023
                ],
                device,
            )
        rows.append((f"{name}: step, batch 1", fused_us, ref_us, ncps_us))
        if device == "cuda":
            rows.append(
                (f"{name}: step, batch 1, CUDA graph replay", graphed_core_step(ours, x, h, dt, iters), None, None)
            )
    return rows


def graphed_core_step(core, x, h, dt, iters: int) -> float:
    ts = dt.view(1, 1)
    with torch.no_grad():
        for _ in range(3):
            core.cell_step(x, h, ts)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            core.cell_step(x, h, ts)
    return timed(graph.replay, iters, "cuda")


def sequence_rows(device: str, iters: int, batch: int = 32, steps: int = 64) -> list[Row]:
    rows = []
    for name, theirs, ours in _models(device):
        theirs.train()
        ours.train()
        x = torch.randn(batch, steps, FEATURES, device=device, requires_grad=True)

        def ours_fn():
            y, _ = ours(x)  # noqa: B023 -- called within this iteration
            y.sum().backward()

        def ncps_fn():
            y, _ = theirs(x)  # noqa: B023 -- called within this iteration
            y.sum().backward()

        fused_us, ref_us, ncps_us = timed_together(
            [case(ours_fn, iters), case(ours_fn, iters, reference), case(ncps_fn, iters)], device, repeats=3
        )
        rows.append((f"{name}: sequence fwd+bwd B={batch} T={steps}", fused_us, ref_us, ncps_us))
    return rows


def controller_rows(iters: int) -> list[Row]:
    from lnn_nav.kernels.cuda_graph import GraphedPolicyStep

    torch.manual_seed(0)
    policy = LiquidPolicy(PolicyConfig()).cuda().eval()
    cfg = policy.config.encoder
    image = torch.rand(1, cfg.in_channels, cfg.height, cfg.width, device="cuda")
    graphed = GraphedPolicyStep(policy)
    graph_us = timed(lambda: graphed(image, 0.05), iters, "cuda")
    state = policy.initial_state(1, device=torch.device("cuda"))
    with torch.inference_mode():
        eager_us = timed(lambda: policy.step(image, 0.05, state), iters // 5, "cuda")
    return [
        (
            f"policy cfc-ncp {cfg.height}x{cfg.width}: full step, CUDA graph (eager in 'ours ref')",
            graph_us,
            eager_us,
            None,
        )
    ]


def format_rows(rows: list[Row]) -> str:
    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}"

    def ratio(ref: float | None, fused: float) -> str:
        return "-" if ref is None else f"{ref / fused:.1f}x"

    lines = [
        "| case | fused (µs) | our reference (µs) | ncps 1.0.1 (µs) | vs reference | vs ncps |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, fused_us, ref_us, ncps_us in rows:
        lines.append(
            f"| {name} | {num(fused_us)} | {num(ref_us)} | {num(ncps_us)} | "
            f"{ratio(ref_us, fused_us)} | {ratio(ncps_us, fused_us)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda", "all"), default="cpu")
    parser.add_argument("--iters", type=int, default=2000, help="calls per timing repeat for steps")
    parser.add_argument("--seq-iters", type=int, default=5, help="calls per repeat for sequences")
    parser.add_argument("--threads", type=int, default=1, help="CPU intra-op threads (default 1)")
    parser.add_argument("--out", type=Path, help="also write the tables to this markdown file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    text = []
    for device in devices:
        if device == "cuda" and not torch.cuda.is_available():
            print("no CUDA device: skipping the CUDA rows", file=sys.stderr)
            continue
        where = (
            torch.cuda.get_device_name()
            if device == "cuda"
            else f"{platform.machine()} {platform.processor()}, {args.threads} thread(s)"
        )
        rows = step_rows(device, args.iters) + sequence_rows(device, args.seq_iters)
        if device == "cuda":
            rows += controller_rows(args.iters)
        block = f"{device.upper()} ({where}), torch {torch.__version__}\n\n{format_rows(rows)}\n"
        print(block, flush=True)
        text.append(block)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
