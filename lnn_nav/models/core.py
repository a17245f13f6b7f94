"""The interface every recurrent core (liquid or baseline) shares."""

from __future__ import annotations

import abc
from typing import Any

import torch
from torch import Tensor, nn

from .timespans import TimespanLike, sequence_timespans, step_timespans

#: Recurrent state: one tensor ``[B, S]`` or a tuple of them (mixed memory, LSTM).
State = Tensor | tuple[Tensor, ...]


class RecurrentCore(nn.Module, abc.ABC):
    """Base class: a cell applied over batch-first sequences with per-step Δt.

    Subclasses implement :meth:`initial_state` and :meth:`cell_step`; this class
    provides the sequence ``forward`` (the ncps calling convention:
    ``forward(x, hx=None, timespans=None) -> (output, hx)``) and the onboard
    ``step``. By default both go through the same ``cell_step``, so a sequence
    run and the same data fed one step at a time agree; a subclass that
    overrides :meth:`run_sequence` for speed must keep that true (tested).
    """

    input_size: int
    output_size: int
    state_size: int
    #: How the factory built the core (``lnn_nav.models.factory.build_core``); saved with checkpoints.
    config: dict[str, Any]

    def __init__(self, *, return_sequences: bool = True, batch_first: bool = True) -> None:
        super().__init__()
        self.return_sequences = return_sequences
        self.batch_first = batch_first

    # -- to implement -------------------------------------------------------
    @abc.abstractmethod
    def initial_state(
        self,
        batch_size: int,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> State:
        """The zero state for ``batch_size`` sequences."""

    @abc.abstractmethod
    def cell_step(self, x: Tensor, state: State, ts: Tensor) -> tuple[Tensor, State]:
        """One step: ``x`` ``[B, F]``, ``ts`` ``[B, 1]`` -> (output ``[B, O]``, new state)."""

    # -- provided -----------------------------------------------------------
    def forward(
        self,
        input: Tensor,
        hx: State | None = None,
        timespans: TimespanLike = None,
    ) -> tuple[Tensor, State]:
        """Run a sequence.

        ``input``: ``[B, T, F]`` (``[T, B, F]`` if ``batch_first=False``) or an
        unbatched ``[T, F]``. ``timespans``: see :func:`sequence_timespans`.
        Returns ``[B, T, O]`` (or ``[B, O]`` when ``return_sequences=False``)
        and the final state.
        """
        if input.dim() not in (2, 3):
            raise ValueError(
                f"{type(self).__name__} expects input [B, T, {self.input_size}] or "
                f"[T, {self.input_size}], got shape {list(input.shape)}"
            )
        batched = input.dim() == 3
        x = input if batched else input.unsqueeze(0 if self.batch_first else 1)
        if not self.batch_first:
            x = x.transpose(0, 1)
            if isinstance(timespans, Tensor) and timespans.dim() >= 2:
                timespans = timespans.transpose(0, 1)
        if not batched and isinstance(timespans, Tensor) and timespans.dim() >= 1:
            timespans = timespans.unsqueeze(0)
        self._check_features(x.shape[-1], x.dtype)
        batch, seq_len = x.shape[0], x.shape[1]
        state = self._prepare_state(hx, batch, batched, x)
        ts = sequence_timespans(timespans, batch, seq_len, device=x.device, dtype=x.dtype)

        y, state = self.run_sequence(x, state, ts)
        if not self.return_sequences:
            y = y[:, -1]
        if self.return_sequences and not self.batch_first:
            y = y.transpose(0, 1)
        if not batched:
            y = y.squeeze(0 if (self.batch_first or not self.return_sequences) else 1)
            state = _map_state(state, lambda s: s.squeeze(0))
        return y, state

    def run_sequence(self, x: Tensor, state: State, ts: Tensor) -> tuple[Tensor, State]:
        """``x`` ``[B, T, F]``, ``ts`` ``[B, T, 1]`` -> (outputs ``[B, T, O]``, final state).

        The reference loop over :meth:`cell_step`; subclasses with a faster
        whole-sequence path (cuDNN RNNs, fused kernels) override it and must
        give the same result.
        """
        outputs = []
        for t in range(x.shape[1]):
            out, state = self.cell_step(x[:, t], state, ts[:, t])
            outputs.append(out)
        return torch.stack(outputs, dim=1), state

    def step(self, x: Tensor, state: State | None = None, dt: TimespanLike = None) -> tuple[Tensor, State]:
        """One onboard step: ``x`` ``[B, F]``, ``dt`` scalar/``[B]``/``[B, 1]``."""
        if x.dim() != 2:
            raise ValueError(f"step expects x of shape [B, {self.input_size}], got {list(x.shape)}")
        self._check_features(x.shape[-1], x.dtype)
        state = self._prepare_state(state, x.shape[0], True, x)
        ts = step_timespans(dt, x.shape[0], device=x.device, dtype=x.dtype)
        return self.cell_step(x, state, ts)

    def _check_features(self, features: int, dtype: torch.dtype) -> None:
        if features != self.input_size:
            raise ValueError(f"{type(self).__name__} was built for {self.input_size} input features, got {features}")
        if not dtype.is_floating_point:
            raise TypeError(f"{type(self).__name__} expects a floating-point input, got {dtype}")

    def _prepare_state(self, hx: State | None, batch: int, batched: bool, x: Tensor) -> State:
        if hx is None:
            return self.initial_state(batch, device=x.device, dtype=x.dtype)
        if not batched:
            hx = _map_state(hx, lambda s: s.unsqueeze(0))
        widths = self._state_widths()
        got = _as_tuple(hx)
        if isinstance(hx, tuple) != (len(widths) > 1) or len(got) != len(widths):
            kind = f"a tuple of {len(widths)} tensors" if len(widths) > 1 else "one tensor"
            raise ValueError(f"{type(self).__name__} expects its state as {kind}")
        for tensor, width in zip(got, widths):
            if tensor.dim() != 2 or tensor.shape[0] != batch or tensor.shape[1] != width:
                raise ValueError(f"{type(self).__name__} state must be [{batch}, {width}], got {list(tensor.shape)}")
        return hx

    def _state_widths(self) -> tuple[int, ...]:
        # Computed once: validating the state runs on every onboard step.
        widths = self.__dict__.get("_cached_state_widths")
        if widths is None:
            probe = _as_tuple(self.initial_state(1, device=torch.device("cpu")))
            widths = tuple(int(s.shape[1]) for s in probe)
            self.__dict__["_cached_state_widths"] = widths
        return widths


def _as_tuple(state: State) -> tuple[Tensor, ...]:
    return state if isinstance(state, tuple) else (state,)


def _map_state(state: State, fn) -> State:
    if isinstance(state, tuple):
        return tuple(fn(s) for s in state)
    return fn(state)
