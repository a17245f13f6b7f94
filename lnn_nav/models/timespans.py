"""Δt handling: every accepted timespan layout normalised to one shape."""

from __future__ import annotations

import math

import torch
from torch import Tensor

TimespanLike = float | int | Tensor | None


def sequence_timespans(
    timespans: TimespanLike,
    batch: int,
    seq_len: int,
    *,
    device: torch.device,
    dtype: torch.dtype,
) -> Tensor:
    """Return Δt for a batch-first sequence as a ``[B, T, 1]`` tensor.

    Accepted: ``None`` (Δt = 1, the CfC/ncps convention for regularly sampled
    data), a Python number or 0-d tensor (one Δt for everything), ``[B, T]``
    and ``[B, T, 1]``; ``[B]`` only when ``T == 1`` and ``[T]`` only when
    ``B == 1``, where neither can be mistaken for the other. Each sample
    keeps its own Δt: this is where ncps mixes the batch and unit axes
    (its issues #81-#85).
    """
    if timespans is None:
        return torch.ones(batch, seq_len, 1, device=device, dtype=dtype)
    if not isinstance(timespans, Tensor):
        return torch.full((batch, seq_len, 1), _checked_float(timespans), device=device, dtype=dtype)
    ts = timespans.to(device=device, dtype=dtype)
    shape = tuple(ts.shape)
    if ts.dim() == 0:
        out = ts.reshape(1, 1, 1).expand(batch, seq_len, 1)
    elif shape == (batch, seq_len):
        out = ts.unsqueeze(-1)
    elif shape == (batch, seq_len, 1):
        out = ts
    elif seq_len == 1 and shape in ((batch,), (batch, 1)):
        out = ts.reshape(batch, 1, 1)
    elif batch == 1 and shape == (seq_len,):
        out = ts.reshape(1, seq_len, 1)
    else:
        raise ValueError(
            f"timespans of shape {list(shape)} do not fit a batch of {batch} sequences "
            f"of {seq_len} steps; expected a scalar, [B, T]=[{batch}, {seq_len}] or "
            f"[B, T, 1]=[{batch}, {seq_len}, 1]"
        )
    _check_finite_nonneg(out)
    return out


def step_timespans(dt: TimespanLike, batch: int, *, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Return Δt for one step as a ``[B, 1]`` tensor (scalar, ``[B]`` or ``[B, 1]``)."""
    if dt is None:
        return torch.ones(batch, 1, device=device, dtype=dtype)
    if not isinstance(dt, Tensor):
        return torch.full((batch, 1), _checked_float(dt), device=device, dtype=dtype)
    ts = dt.to(device=device, dtype=dtype)
    if ts.dim() == 0:
        out = ts.reshape(1, 1).expand(batch, 1)
    elif tuple(ts.shape) in ((batch,), (batch, 1)):
        out = ts.reshape(batch, 1)
    else:
        raise ValueError(
            f"dt of shape {list(ts.shape)} does not fit a batch of {batch}; "
            f"expected a scalar, [{batch}] or [{batch}, 1]"
        )
    _check_finite_nonneg(out)
    return out


def _checked_float(value: float) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError("timespans contain NaN or Inf; Δt must be finite")
    if value < 0:
        raise ValueError("timespans contain negative values; Δt must be >= 0")
    return value


def _check_finite_nonneg(ts: Tensor) -> None:
    # A NaN or negative Δt silently poisons the recurrent state for the rest of
    # the episode, so it is refused here rather than discovered downstream.
    # One comparison covers all three cases (NaN compares false) with a single
    # host sync, which matters at batch 1 onboard. Skipped while tracing or
    # compiling, where data-dependent checks cannot run.
    if torch.jit.is_tracing() or torch.compiler.is_compiling():
        return
    if ts.numel() == 1:  # batch-1 onboard step: one read, checked in Python
        _checked_float(ts.item())
        return
    if bool(((ts >= 0) & (ts < math.inf)).all()):
        return
    if not bool(torch.isfinite(ts).all()):
        raise ValueError("timespans contain NaN or Inf; Δt must be finite")
    raise ValueError("timespans contain negative values; Δt must be >= 0")
