"""The full policy step and the CNN encoder on the CPU: the fused path beside the reference paths, one run.

    python benchmarks/policy_step.py [--iters 300] [--repeats 7] [--threads 1] [--alternatives] [--out FILE.md]

Rows, for the shipped controller (models/cfc_ncp.safetensors: 48x64 RGB + goal,
GroupNorm, CfC-NCP) and the 96x128 demo size (EncoderConfig defaults, CfC-NCP):

* full ``policy.step`` (uint8 frame + goal -> command, batch 1, inference):
  fused (one C++ call: encoder, inputs, cell, head) beside the reference encoder
  path (``LNN_NAV_REFERENCE_ENCODER=1``: ATen's convolutions, then the fused
  cell: what ``step`` ran before) and the all-reference path (``LNN_NAV_REFERENCE=1``);
* the encoder alone: fused beside ATen;
* with ``--alternatives``, what else was tried for the encoder (each beside the
  same ATen reference): channels-last eager, ``torch.jit.freeze`` of a trace,
  and that with ``torch.jit.optimize_for_inference`` (oneDNN).

The repeats of the cases of a row are interleaved (load from other jobs falls
on all of them alike); figures are medians, "best" the fastest repeat (what the
machine does when nothing else runs). The largest difference between the
fused and reference commands is printed with each model.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lnn_nav.eval.latency import SHIPPED_POLICY
from lnn_nav.kernels import fused_policy, reference
from lnn_nav.kernels.native import NativeError, NativePolicy, export_weights
from lnn_nav.models import LiquidPolicy, PolicyConfig, load_policy

Timed = tuple[str, Callable[[], object], int, Callable[[], contextlib.AbstractContextManager]]


def timed_together(cases: list[Timed], repeats: int) -> dict[str, tuple[float, float]]:
    """name -> (median, best) µs per call; the repeats of the cases interleaved, in inference mode."""
    samples: dict[str, list[float]] = {name: [] for name, *_ in cases}
    with torch.inference_mode():
        for _, fn, iters, context in cases:
            with context():
                for _ in range(min(iters, 20)):
                    fn()
        for _ in range(repeats):
            for name, fn, iters, context in cases:
                with context():
                    start = time.perf_counter()
                    for _ in range(iters):
                        fn()
                    samples[name].append((time.perf_counter() - start) / iters * 1e6)
    return {name: (statistics.median(s), min(s)) for name, s in samples.items()}


class _Body(nn.Module):
    """The encoder after its input normalisation (what jit and oneDNN see)."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.convs = encoder.convs
        self.bottleneck = encoder.bottleneck
        self.tanh = encoder.config.output_activation == "tanh"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = conv(x)
        y = self.bottleneck(x.flatten(1))
        return torch.tanh(y) if self.tanh else y


def _alternatives(encoder: nn.Module, image: torch.Tensor) -> list[tuple[str, Callable[[], object]]]:
    """Other ways to run the encoder (normalisation of the frame included, as the reference does)."""

    def normalised(x: torch.Tensor, memory_format=torch.contiguous_format) -> torch.Tensor:
        x = (x.float() / 255.0 - encoder.mean) / encoder.std
        return x.contiguous(memory_format=memory_format)

    x = normalised(image)
    body = _Body(encoder).eval()
    out = []
    channels_last = copy.deepcopy(body).to(memory_format=torch.channels_last)
    out.append(("encoder, ATen channels-last", lambda: channels_last(normalised(image, torch.channels_last))))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frozen = torch.jit.freeze(torch.jit.trace(body, x).eval())
        optimised = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(body, x).eval()))
    out.append(("encoder, torch.jit.freeze(trace)", lambda: frozen(normalised(image))))
    out.append(("encoder, jit.freeze + optimize_for_inference", lambda: optimised(normalised(image))))
    return out


def _models() -> list[tuple[str, LiquidPolicy]]:
    found = []
    if SHIPPED_POLICY.is_file():
        policy = load_policy(SHIPPED_POLICY)
        enc = policy.config.encoder
        found.append((f"shipped ({SHIPPED_POLICY.name}, {enc.height}x{enc.width} RGB + goal)", policy))
    torch.manual_seed(0)
    demo = LiquidPolicy(PolicyConfig()).eval()
    found.append((f"demo size ({demo.config.encoder.height}x{demo.config.encoder.width} RGB)", demo))
    return found


def _fmt(v: float) -> str:
    return f"{v:,.1f}".replace(",", " ")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=300, help="fused calls per repeat (references: a fifth)")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved timing repeats")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--alternatives", action="store_true", help="also time the encoder alternatives tried")
    parser.add_argument("--out", type=Path, help="also write the table to this markdown file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    ref_iters = max(args.iters // 5, 5)
    header = (
        f"Policy step and encoder, batch 1, {args.threads} thread(s), torch {torch.__version__}, "
        f"{platform.machine()} {platform.processor() or ''}, {datetime.date.today().isoformat()}"
    )
    lines = [
        header,
        "",
        "| model | case | fused (µs) p50 / best | reference (µs) p50 / best | speed-up (p50) | reference |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    print("\n".join(lines), flush=True)
    for name, policy in _models():
        cfg = policy.config
        enc = cfg.encoder
        gen = torch.Generator().manual_seed(0)
        image = torch.randint(0, 256, (1, enc.in_channels, enc.height, enc.width), dtype=torch.uint8, generator=gen)
        extras = {"goal": torch.tensor([[0.6, 0.8, 0.0, 5.0]])} if cfg.use_goal else {}
        state = 0.5 * torch.randn(1, policy.core.state_size, generator=gen)
        with torch.inference_mode():
            fast = policy.step(image, 0.05, state, **extras)
            with fused_policy.reference_encoder():
                ref = policy.step(image, 0.05, state, **extras)
        diff = max(float((a - b).abs().max()) for a, b in zip(fast, ref))

        def step(p=policy, i=image, s=state, e=extras):
            return p.step(i, 0.05, s, **e)

        # The torch-free runtime (lnn_nav.kernels.native; CfC cores), called through ctypes from here.
        natives = []
        try:
            runtime = NativePolicy(export_weights(policy))
        except (ValueError, NativeError) as err:
            print(f"{name}: no native runtime row ({err})", file=sys.stderr)
        else:
            frame = np.ascontiguousarray(image[0].permute(1, 2, 0).numpy())
            h0, g0 = state[0].numpy().copy(), (extras["goal"][0].numpy() if extras else None)
            # The node's frame: interleaved channels (HWC), which the fused step reads as a channels-last view.
            hwc = torch.from_numpy(frame).permute(2, 0, 1).unsqueeze(0)
            natives = [
                (
                    "fused, HWC frame",
                    lambda p=policy, i=hwc, s=state, e=extras: p.step(i, 0.05, s, **e),
                    args.iters,
                    contextlib.nullcontext,
                ),
                (
                    "native",
                    lambda r=runtime, f=frame, h=h0, g=g0: r.step(f, 0.05, h, goal=g),
                    args.iters,
                    contextlib.nullcontext,
                ),
            ]
            native_diff = max(
                float(np.abs(a - b[0].numpy()).max()) for a, b in zip(runtime.step(frame, 0.05, h0, goal=g0), fast)
            )

        t = timed_together(
            [
                ("fused", step, args.iters, contextlib.nullcontext),
                ("reference encoder", step, ref_iters, fused_policy.reference_encoder),
                ("all reference", step, ref_iters, reference),
                ("encoder fused", lambda p=policy, i=image: p.encoder(i), args.iters, contextlib.nullcontext),
                (
                    "encoder ATen",
                    lambda p=policy, i=image: p.encoder(i),
                    ref_iters,
                    fused_policy.reference_encoder,
                ),
            ]
            + natives
            + [
                (label, fn, ref_iters, contextlib.nullcontext)
                for label, fn in (_alternatives(policy.encoder, image) if args.alternatives else [])
            ],
            args.repeats,
        )
        rows = [
            ("full step", "fused", "reference encoder", "ATen encoder + fused cell (LNN_NAV_REFERENCE_ENCODER=1)"),
            ("full step", "fused", "all reference", "all reference (LNN_NAV_REFERENCE=1)"),
            ("encoder", "encoder fused", "encoder ATen", "ATen (reference path)"),
        ]
        rows += [
            ("encoder", label, "encoder ATen", "ATen (reference path)") for label in t if label.startswith("encoder, ")
        ]
        if natives:
            rows.append(
                ("full step", "native", "fused, HWC frame", "the fused torch step, same HWC frame (runtime via ctypes)")
            )
        out = []
        for what, mine, theirs, label in rows:
            (m50, mbest), (r50, rbest) = t[mine], t[theirs]
            case = what if mine in ("fused", "encoder fused") else mine
            out.append(
                f"| {name} | {case} | {_fmt(m50)} / {_fmt(mbest)} | {_fmt(r50)} / {_fmt(rbest)} | "
                f"{r50 / m50:.2f}x | {label} |"
            )
        out.append(f"| {name} | max abs difference of command and state, fused vs reference | {diff:.2g} | | | |")
        if natives:
            out.append(
                f"| {name} | max abs difference of command and state, native vs fused | {native_diff:.2g} | | | |"
            )
        print("\n".join(out), flush=True)
        lines += out
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
