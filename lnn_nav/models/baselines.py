"""Baseline cores with the liquid cores' interface: LSTM, GRU, feed-forward."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .core import RecurrentCore, State


class _TorchRNNCore(RecurrentCore):
    """Shared body of the LSTM and GRU baselines.

    Δt is ignored unless ``time_input=True``, in which case it is appended to
    the input features: that gives a discrete-time RNN the same timing
    information a liquid core gets, for a fair comparison.
    """

    rnn: nn.RNNBase

    def __init__(
        self,
        input_size: int,
        units: int,
        proj_size: int | None,
        time_input: bool,
        return_sequences: bool,
        batch_first: bool,
    ) -> None:
        super().__init__(return_sequences=return_sequences, batch_first=batch_first)
        if units < 1:
            raise ValueError(f"units must be >= 1, got {units}")
        self.input_size = input_size
        self.units = units
        self.time_input = time_input
        self.state_size = units
        self.proj = nn.Linear(units, proj_size) if proj_size is not None else None
        self.output_size = proj_size if proj_size is not None else units

    def _rnn_input(self, x: Tensor, ts: Tensor) -> Tensor:
        return torch.cat([x, ts], dim=-1) if self.time_input else x

    def _readout(self, y: Tensor) -> Tensor:
        return self.proj(y) if self.proj is not None else y

    def run_sequence(self, x: Tensor, state: State, ts: Tensor) -> tuple[Tensor, State]:
        # One nn.LSTM/GRU call over all steps: same math as stepping, much faster.
        y, new = self.rnn(self._rnn_input(x, ts), _to_torch_rnn_state(state))
        return self._readout(y), _from_torch_rnn_state(new)

    def cell_step(self, x: Tensor, state: State, ts: Tensor) -> tuple[Tensor, State]:
        y, new = self.run_sequence(x.unsqueeze(1), state, ts.unsqueeze(1))
        return y[:, 0], new


def _to_torch_rnn_state(state: State):
    if isinstance(state, tuple):
        return tuple(s.unsqueeze(0) for s in state)
    return state.unsqueeze(0)


def _from_torch_rnn_state(state) -> State:
    if isinstance(state, tuple):
        return tuple(s[0] for s in state)
    return state[0]


class LSTMCore(_TorchRNNCore):
    """``nn.LSTM`` with a state tuple ``(h, c)``, each ``[B, units]``."""

    def __init__(
        self,
        input_size: int,
        units: int,
        proj_size: int | None = None,
        time_input: bool = False,
        return_sequences: bool = True,
        batch_first: bool = True,
    ) -> None:
        super().__init__(input_size, units, proj_size, time_input, return_sequences, batch_first)
        self.rnn = nn.LSTM(input_size + int(time_input), units, batch_first=True)

    def initial_state(
        self,
        batch_size: int,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> State:
        h = torch.zeros(batch_size, self.units, device=device, dtype=dtype)
        return (h, torch.zeros_like(h))


class GRUCore(_TorchRNNCore):
    """``nn.GRU`` with a state tensor ``[B, units]``."""

    def __init__(
        self,
        input_size: int,
        units: int,
        proj_size: int | None = None,
        time_input: bool = False,
        return_sequences: bool = True,
        batch_first: bool = True,
    ) -> None:
        super().__init__(input_size, units, proj_size, time_input, return_sequences, batch_first)
        self.rnn = nn.GRU(input_size + int(time_input), units, batch_first=True)

    def initial_state(
        self,
        batch_size: int,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> State:
        return torch.zeros(batch_size, self.units, device=device, dtype=dtype)


class FeedForwardCore(RecurrentCore):
    """No memory: an MLP applied to each frame on its own (the "CNN" baseline).

    Its state is an empty ``[B, 0]`` tensor so it plugs into the same loops.
    """

    def __init__(
        self,
        input_size: int,
        units: int = 64,
        output_size: int | None = None,
        layers: int = 1,
        time_input: bool = False,
        return_sequences: bool = True,
        batch_first: bool = True,
    ) -> None:
        super().__init__(return_sequences=return_sequences, batch_first=batch_first)
        if layers < 0:
            raise ValueError(f"layers must be >= 0, got {layers}")
        self.input_size = input_size
        self.time_input = time_input
        self.state_size = 0
        widths = [input_size + int(time_input)] + [units] * layers
        blocks: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):
            blocks += [nn.Linear(a, b), nn.ReLU()]
        if output_size is not None:
            blocks.append(nn.Linear(widths[-1], output_size))
        self.mlp = nn.Sequential(*blocks)
        self.output_size = output_size if output_size is not None else widths[-1]

    def initial_state(
        self,
        batch_size: int,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> State:
        return torch.zeros(batch_size, 0, device=device, dtype=dtype)

    def cell_step(self, x: Tensor, state: State, ts: Tensor) -> tuple[Tensor, State]:
        x = torch.cat([x, ts], dim=-1) if self.time_input else x
        return self.mlp(x), state

    def run_sequence(self, x: Tensor, state: State, ts: Tensor) -> tuple[Tensor, State]:
        # Frames are independent: one batched MLP call over [B, T, F].
        return self.cell_step(x, state, ts)
