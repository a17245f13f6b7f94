"""Dispatch from the CfC model to the fused kernels, with the reference path as fallback.

:class:`~lnn_nav.models.cfc.CfC` calls the ``try_*`` functions; each returns
``None`` whenever the fused path does not apply (kernels unavailable or
switched off, an unsupported configuration, an input the reference path must
judge), and the model then runs its reference PyTorch code. Switch the fused
path off with ``LNN_NAV_REFERENCE=1`` or :func:`set_reference`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from types import ModuleType
from typing import Literal

import torch
from torch import Tensor, nn

from . import ops  # noqa: F401  (registers lnn_nav::cfc_sequence)
from .build import load_cpu, load_cuda
from .layout import CfCLayout, build_layout

_reference_forced = os.environ.get("LNN_NAV_REFERENCE", "") not in ("", "0")
# Looked up once: try_forward runs them on every call of a few µs.
_is_compiling = torch.compiler.is_compiling
_is_tracing = torch._C._is_tracing
_cpu_ext: ModuleType | None = None  # cached after the first successful load (hot path)
_PLAN_ATTR = "_fused_plan"
# The CPU sequence kernel works sample by sample (matrix-vector products with
# the weights in cache), so its time grows with batch x cell size, while the
# reference's per-step Python overhead is shared by the whole batch: beyond
# about 3M multiply-adds per step (batch x macs_per_step) the reference's
# batched matrix products win. Measured fwd+bwd, T=64, one thread, fused vs
# reference: 64-unit dense CfC (128-unit backbone, 45k MACs) 1.6x at B=32,
# 1.25x at B=48, 1.1x at B=64; 128 units (86k MACs) 2.3x at B=16, 1.0x at B=32.
# Sequences past the bound (with a margin) stay on the reference path, and so
# do their steps: the reference loop over cell_step must not run the fused
# kernels one step at a time, the slowest choice of all (measured at B=32: 126
# ms, against 33 ms reference).
CPU_PER_SAMPLE_MAX_BATCH_MACS = 2_000_000
# Inference (no autograd): forward runs step by step in one C++ call
# (forward_infer), without the sequence op's dispatch, its batched input
# projection and the packing of a differentiable parameter copy, which cost
# ~100-250 µs whatever the length. Measured on the build machine, one thread,
# step by step vs the sequence op: AutoNCP(19,4) 5.7x at B=1 T=64, 2.0x at
# T=256, 1.06x at T=1024 (2 M multiply-adds), 1.3x at B=32 T=64; a 64-unit dense
# CfC 1.8x at B=1 T=64, 1.24x at T=256 (11.5 M), 0.98x at T=1024 (46 M), 1.17x
# at B=8 T=64. Past this many multiply-adds in all (batch x steps x per step)
# the sequence op takes over; past CPU_PER_SAMPLE_MAX_BATCH_MACS in one step of
# the batch, the reference (batched matrix products), as for sequences.
INFER_MAX_MACS = 16_000_000


def set_reference(force: bool) -> None:
    """Force the reference PyTorch path (``True``) or allow the fused kernels (``False``)."""
    global _reference_forced
    _reference_forced = bool(force)


def reference_forced() -> bool:
    return _reference_forced


@contextlib.contextmanager
def reference() -> Iterator[None]:
    """Run the enclosed code on the reference path (e.g. for export or comparison)."""
    previous = _reference_forced
    set_reference(True)
    try:
        yield
    finally:
        set_reference(previous)


class FusedPlan:
    """A core's layout plus its packed parameters, cached for inference."""

    def __init__(self, layout: CfCLayout) -> None:
        self.layout = layout
        self.params = layout.parameters()
        self.macs = layout.macs_per_step  # read on every dispatch
        self.has_dropout = layout.has_dropout
        self._key: tuple | None = None
        self._packed: Tensor | None = None
        self._cpu_plan = None

    def packed(self) -> Tensor:
        """Packed parameters (no autograd); repacked when any parameter changed in place."""
        key = tuple([p._version for p in self.params])
        if key != self._key or self._packed is None:
            with torch.no_grad():
                self._packed = self.layout.pack(with_proj=True).contiguous()
            self._key = key
        return self._packed

    def cpu_plan(self, ext: ModuleType):
        """The C++ twin of this plan (it checks parameter versions itself, in nanoseconds)."""
        if self._cpu_plan is None:
            self._cpu_plan = ext.Plan(self.layout.meta, self.params)
        return self._cpu_plan

    def cpu_step(
        self, ext: ModuleType, x: Tensor, h: Tensor, dt: Tensor | None, dt_value: float
    ) -> tuple[Tensor, Tensor] | None:
        cpp = self._cpu_plan if self._cpu_plan is not None else self.cpu_plan(ext)
        result = ext.step(x, h, dt, dt_value, cpp)  # (out, h), () or (None,): see cfc_cpu.cpp
        if len(result) == 1:  # parameters changed since the last pack
            cpp.set_packed(self.packed())
            result = ext.step(x, h, dt, dt_value, cpp)
        return result if result else None

    def needs_grad(self, *tensors: Tensor) -> bool:
        if not torch.is_grad_enabled():
            return False
        return any(t.requires_grad for t in tensors) or any(p.requires_grad for p in self.params)


def invalidate(core: nn.Module) -> None:
    """Forget a core's plan (after ``.to()``, ``.half()``, ... replaced its tensors)."""
    core.__dict__.pop(_PLAN_ATTR, None)


def _plan(core: nn.Module) -> FusedPlan | None:
    # False caches "no fused layout", so build_layout runs once per core either way.
    plan: FusedPlan | Literal[False] | None = core.__dict__.get(_PLAN_ATTR)
    if plan is None:
        layout, _ = build_layout(core)
        plan = FusedPlan(layout) if layout is not None else False
        core.__dict__[_PLAN_ATTR] = plan
    if plan is False or (plan.layout.has_dropout and core.training):
        return None
    return plan


def why_not_fused(core: nn.Module) -> str | None:
    """``None`` if ``core`` can use the fused kernels on the CPU, else the reason."""
    if _reference_forced:
        return "the reference path is forced (LNN_NAV_REFERENCE=1 or set_reference(True))"
    layout, reason = build_layout(core)
    if layout is None:
        return reason
    if layout.has_dropout and core.training:
        return "backbone dropout is active (training mode)"
    if _extension(torch.device("cpu")) is None:
        from .build import CPU_NAME, load_error

        return f"the CPU extension did not build ({load_error(CPU_NAME)})"
    return None


def _extension(device: torch.device) -> ModuleType | None:
    global _cpu_ext
    if device.type == "cpu":
        if _cpu_ext is None:
            _cpu_ext = load_cpu()
        return _cpu_ext
    if device.type == "cuda":
        return load_cuda()
    return None


def _active() -> bool:
    # Tracing and compiling (TorchScript, torch.export, ONNX) see the reference
    # ops, which every exporter understands. This runs on every onboard step,
    # where its cost shows (a batch-1 step takes a few µs): is_compiling comes
    # first, being a constant under torch.compile, so the tracing query is
    # never traced; torch._C._is_tracing is torch.jit.is_tracing without its
    # Python wrapper (is_scripting, always False in Python, as this module is
    # never scripted).
    return not (_reference_forced or torch.compiler.is_compiling() or torch._C._is_tracing())


def _per_sample_pays(plan: FusedPlan, x: Tensor) -> bool:
    """Whether the fused kernels beat the reference's batched matrix products for this batch."""
    return x.device.type != "cpu" or x.shape[0] * plan.macs <= CPU_PER_SAMPLE_MAX_BATCH_MACS


def try_step(core: nn.Module, x: Tensor, state, dt) -> tuple[Tensor, Tensor] | None:
    """The onboard step without autograd on the CPU, its validation done in C++."""
    if not _active() or not isinstance(state, Tensor) or not isinstance(x, Tensor):
        return None
    plan = _plan(core)
    if plan is None or plan.needs_grad(x, state):
        return None
    if isinstance(dt, Tensor):
        dt_tensor, dt_value = dt, 0.0
    elif dt is None:
        dt_tensor, dt_value = None, 1.0
    elif isinstance(dt, (float, int)) and not isinstance(dt, bool):
        dt_tensor, dt_value = None, float(dt)
    else:
        return None
    ext = _cpu_ext if _cpu_ext is not None else _extension(torch.device("cpu"))
    if ext is None:
        return None
    # A CUDA (or otherwise unusual) input comes back None from the CPU kernel
    # and takes the validated path through cell_step.
    return plan.cpu_step(ext, x, state, dt_tensor, dt_value)


def try_forward(core: nn.Module, x: Tensor, hx=None, timespans=None) -> tuple[Tensor, Tensor] | None:
    """``CfC.forward`` without autograd for short sequences at small batch, or ``None``.

    The ncps-style call ``model(x[B, 1, F], h, timespans=...)`` lands here. One C++
    call (``forward_infer``) checks the arguments and whether a gradient is
    wanted, and runs the steps; inputs it does not take as they are (another
    layout, dtype or device, a Δt the reference must refuse, more than
    ``INFER_MAX_MACS`` multiply-adds in all or ``CPU_PER_SAMPLE_MAX_BATCH_MACS``
    in one step) come back ``None`` and the reference path judges them.
    """
    # Kept lean: the T=1 call of a small core takes a few µs in all, and each
    # Python check costs ~0.1-0.3 µs of it; the rest is checked in C++.
    plan = core.__dict__.get(_PLAN_ATTR)
    if plan is None:
        plan = _plan(core)
    if not plan or _reference_forced or (plan.has_dropout and core.training) or not core.batch_first:
        return None
    if _is_compiling() or _is_tracing():
        return None
    ext, cpp = _cpu_ext, plan._cpu_plan
    if ext is None or cpp is None:
        ext = _extension(torch.device("cpu"))
        if ext is None:
            return None
        cpp = plan.cpu_plan(ext)
    forward_infer = ext.forward_infer
    result = forward_infer(x, hx, timespans, cpp, plan.macs, INFER_MAX_MACS, CPU_PER_SAMPLE_MAX_BATCH_MACS)
    if len(result) == 1:  # parameters changed since the last pack
        cpp.set_packed(plan.packed())
        result = forward_infer(x, hx, timespans, cpp, plan.macs, INFER_MAX_MACS, CPU_PER_SAMPLE_MAX_BATCH_MACS)
    if not result:
        return None
    return result if core.return_sequences else (result[0][:, -1], result[1])


def try_cell_step(core: nn.Module, x: Tensor, h: Tensor, ts: Tensor) -> tuple[Tensor, Tensor] | None:
    """One step with validated ``ts`` ``[B, 1]``: fused kernel, or the sequence op when gradients flow."""
    if not _active():
        return None
    plan = _plan(core)
    if plan is None:
        return None
    ext = _extension(x.device)  # cached after the first load
    if ext is None or not _per_sample_pays(plan, x):
        return None
    if plan.needs_grad(x, h, ts):
        states = torch.ops.lnn_nav.cfc_sequence(
            x.unsqueeze(1), h, ts.reshape(-1, 1), plan.layout.pack(with_proj=False), plan.layout.meta_seq
        )
        new_h = states[:, 0]
        return plan.layout.outputs(new_h), new_h
    if x.device.type == "cpu":
        return plan.cpu_step(ext, x, h, ts, 0.0)
    result = ext.step(x, h, ts.reshape(-1), plan.packed(), plan.layout.meta)
    return (result[0], result[1]) if result else None


def try_run_sequence(core: nn.Module, x: Tensor, h0: Tensor, ts: Tensor) -> tuple[Tensor, Tensor] | None:
    """A whole sequence (``x`` ``[B, T, F]``, ``ts`` ``[B, T, 1]``) through the custom op."""
    if _reference_forced or torch.jit.is_tracing() or torch.jit.is_scripting():
        return None
    plan = _plan(core)
    if plan is None or not isinstance(h0, Tensor) or _extension(x.device) is None:
        return None
    if x.dtype != plan.params[0].dtype or h0.dtype != x.dtype:
        return None
    if not _per_sample_pays(plan, x):
        return None
    if plan.needs_grad(x, h0, ts):
        packed = plan.layout.pack(with_proj=False)
    else:
        packed = plan.packed().narrow(0, 0, plan.layout.seq_size)
    states = torch.ops.lnn_nav.cfc_sequence(x, h0, ts.reshape(ts.shape[0], ts.shape[1]), packed, plan.layout.meta_seq)
    return plan.layout.outputs(states), states[:, -1]
