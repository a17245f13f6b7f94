"""Closed-form continuous-time cells and the CfC layer (dense or wired)."""

from __future__ import annotations

from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..kernels import fused
from .activations import make_activation
from .core import RecurrentCore, State
from .memory import MemoryCell
from .timespans import TimespanLike
from .wirings import Wiring

CFC_MODES = ("default", "pure", "no_gate")
RECURRENCE_KINDS = ("wiring", "dense")


class CfCCell(nn.Module):
    """One CfC step (Hasani et al., Nature Machine Intelligence 2022, eq. 10).

    With ``z = backbone([x, h])``:

    * ``default``: ``h' = tanh(f1(z)) * (1 - σ(a(z)·Δt + b(z))) + σ(a(z)·Δt + b(z)) * tanh(f2(z))``
    * ``no_gate``: ``h' = tanh(f1(z)) + σ(a(z)·Δt + b(z)) * tanh(f2(z))``
    * ``pure`` (the direct closed-form solution, eq. 5): ``h' = -A·exp(-Δt(|w_τ| + |f1(z)|))·f1(z) + A``

    ``Δt`` is ``[B, 1]``: each sample its own elapsed time. ``sparsity_mask``
    (``[input + hidden, hidden]``, 0/1) zeroes absent synapses in ``f1``/``f2``;
    the time heads ``a``, ``b`` stay dense, as in ncps.
    """

    sparsity_mask: Tensor | None  # a buffer when the cell has a mask

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        mode: str = "default",
        backbone_activation: str = "lecun_tanh",
        backbone_units: int = 128,
        backbone_layers: int = 1,
        backbone_dropout: float = 0.0,
        sparsity_mask: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        if mode not in CFC_MODES:
            raise ValueError(f"unknown CfC mode '{mode}'; expected one of {', '.join(CFC_MODES)}")
        if backbone_layers < 0:
            raise ValueError(f"backbone_layers must be >= 0, got {backbone_layers}")
        if backbone_layers > 0 and backbone_units < 1:
            raise ValueError(f"backbone_units must be >= 1, got {backbone_units}")
        if not 0.0 <= backbone_dropout < 1.0:
            raise ValueError(f"backbone_dropout must be in [0, 1), got {backbone_dropout}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.mode = mode
        self.backbone_layers = backbone_layers

        widths = [input_size + hidden_size] + [backbone_units] * backbone_layers
        self.backbone = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.backbone_activation = make_activation(backbone_activation)
        # Dropout after every backbone layer (ncps applies it only from the
        # second layer on, so a one-layer backbone never drops anything).
        self.backbone_dropout = nn.Dropout(backbone_dropout) if backbone_dropout > 0 else None
        head_in = widths[-1]

        if sparsity_mask is not None:
            mask = np.abs(np.asarray(sparsity_mask)).astype(np.float32)
            if mask.shape != (input_size + hidden_size, hidden_size):
                raise ValueError(
                    f"sparsity_mask must be [{input_size + hidden_size}, {hidden_size}], got {list(mask.shape)}"
                )
            if backbone_layers > 0:
                raise ValueError("a sparsity mask needs backbone_layers=0 (heads see [x, h])")
            # Stored as [out, in] to multiply nn.Linear weights directly.
            self.register_buffer("sparsity_mask", torch.from_numpy(mask.T.copy()))
        else:
            self.sparsity_mask = None

        self.ff1 = nn.Linear(head_in, hidden_size)
        if mode == "pure":
            self.w_tau = nn.Parameter(torch.zeros(1, hidden_size))
            self.A = nn.Parameter(torch.ones(1, hidden_size))
        else:
            self.ff2 = nn.Linear(head_in, hidden_size)
            self.time_a = nn.Linear(head_in, hidden_size)
            self.time_b = nn.Linear(head_in, hidden_size)
        for p in self.parameters():
            if p.dim() == 2 and p.shape[0] > 1:
                nn.init.xavier_uniform_(p)

    def _head(self, layer: nn.Linear, z: Tensor) -> Tensor:
        if self.sparsity_mask is None:
            return layer(z)
        return F.linear(z, layer.weight * self.sparsity_mask, layer.bias)

    def forward(self, x: Tensor, h: Tensor, ts: Tensor) -> Tensor:
        z = torch.cat([x, h], dim=1)
        for layer in self.backbone:
            z = self.backbone_activation(layer(z))
            if self.backbone_dropout is not None:
                z = self.backbone_dropout(z)
        ff1 = self._head(self.ff1, z)
        if self.mode == "pure":
            return -self.A * torch.exp(-ts * (torch.abs(self.w_tau) + torch.abs(ff1))) * ff1 + self.A
        ff1 = torch.tanh(ff1)
        ff2 = torch.tanh(self._head(self.ff2, z))
        t_interp = torch.sigmoid(self.time_a(z) * ts + self.time_b(z))
        if self.mode == "no_gate":
            return ff1 + t_interp * ff2
        return ff1 * (1.0 - t_interp) + t_interp * ff2


class WiredCfCCell(nn.Module):
    """CfC on a wiring: one sparse CfC layer per wiring layer, run in sequence.

    Layer ``l`` sees the previous layer's new outputs (layer 0 sees the input)
    plus its own neurons' previous state. Which of its own neurons it sees is
    ``recurrence``:

    * ``"wiring"`` (default): the wiring's own synapses among the layer's
      neurons (for an NCP, the recurrent command-neuron synapses as wired), plus
      each neuron's self-connection, which carries the neuron's own state the
      way the leak term does in an LTC neuron.
    * ``"dense"``: every neuron of the layer sees every other one. This is what
      ncps does (it ignores the wiring there, ncps issue #53); used when
      importing ncps models so their outputs are reproduced exactly.

    The state is the concatenation of the layers' neurons in layer order.
    """

    motor_index: Tensor  # buffer

    def __init__(self, input_size: int, wiring: Wiring, mode: str = "default", recurrence: str = "wiring") -> None:
        super().__init__()
        if recurrence not in RECURRENCE_KINDS:
            raise ValueError(f"unknown recurrence '{recurrence}'; expected one of {', '.join(RECURRENCE_KINDS)}")
        wiring.build(input_size)
        assert wiring.sensory_adjacency_matrix is not None
        self.wiring = wiring
        self.recurrence = recurrence
        self.input_size = input_size
        self.layer_sizes: list[int] = [len(layer) for layer in wiring.layers]
        self.cells = nn.ModuleList()
        in_features = input_size
        previous: list[int] | None = None
        for neurons in wiring.layers:
            if previous is None:
                feed = wiring.sensory_adjacency_matrix[:, neurons]
            else:
                feed = wiring.adjacency_matrix[np.ix_(previous, neurons)]
            if recurrence == "dense":
                recur = np.ones((len(neurons), len(neurons)))
            else:
                recur = np.abs(wiring.adjacency_matrix[np.ix_(neurons, neurons)])
                np.fill_diagonal(recur, 1)
            mask = np.concatenate([np.abs(feed), recur], axis=0)
            self.cells.append(
                CfCCell(
                    in_features,
                    len(neurons),
                    mode,
                    backbone_layers=0,
                    backbone_units=0,
                    sparsity_mask=mask,
                )
            )
            in_features = len(neurons)
            previous = neurons
        self.state_size = wiring.units
        self.output_size = wiring.output_dim
        # Where the motor neurons (ids 0..output_dim-1) sit in the layer-ordered
        # state. For an NCP that is the whole last layer; for a one-layer wiring
        # it is a slice of it (ncps returns every neuron there).
        order = [n for layer in wiring.layers for n in layer]
        motor = [order.index(n) for n in range(wiring.output_dim)]
        last_start = wiring.units - self.layer_sizes[-1]
        self._motor_is_last_layer = motor == list(range(last_start, wiring.units))
        self.register_buffer("motor_index", torch.tensor(motor, dtype=torch.long), persistent=False)

    def forward(self, x: Tensor, h: Tensor, ts: Tensor) -> tuple[Tensor, Tensor]:
        """Returns (motor neurons ``[B, output_dim]``, new full state ``[B, units]``)."""
        states = torch.split(h, self.layer_sizes, dim=1)
        new_states = []
        inputs = x
        for cell, h_layer in zip(self.cells, states):
            inputs = cell(inputs, h_layer, ts)
            new_states.append(inputs)
        state = torch.cat(new_states, dim=1)
        out = inputs if self._motor_is_last_layer else state.index_select(1, self.motor_index)
        return out, state


class CfC(RecurrentCore):
    """A CfC recurrent layer over batch-first sequences (ncps ``CfC`` interface).

    ``units`` is a neuron count (dense CfC with a backbone) or a
    :class:`~lnn_nav.models.wirings.Wiring` (wired CfC, e.g. an NCP).
    ``forward(x, hx=None, timespans=None) -> (output, hx)``; ``timespans``
    may be a scalar, ``[B, T]`` or ``[B, T, 1]``.
    """

    def __init__(
        self,
        input_size: int,
        units: int | Wiring,
        proj_size: int | None = None,
        return_sequences: bool = True,
        batch_first: bool = True,
        mixed_memory: bool = False,
        mode: str = "default",
        activation: str = "lecun_tanh",
        backbone_units: int | None = None,
        backbone_layers: int | None = None,
        backbone_dropout: float | None = None,
        recurrence: str = "wiring",
    ) -> None:
        super().__init__(return_sequences=return_sequences, batch_first=batch_first)
        if input_size < 1:
            raise ValueError(f"input_size must be >= 1, got {input_size}")
        self.input_size = input_size
        self.mode = mode
        self.mixed_memory = mixed_memory
        self.cell: CfCCell | WiredCfCCell
        if isinstance(units, Wiring):
            given = {
                "backbone_units": backbone_units,
                "backbone_layers": backbone_layers,
                "backbone_dropout": backbone_dropout,
            }
            bad = [k for k, v in given.items() if v is not None]
            if bad:
                raise ValueError(f"{', '.join(bad)} cannot be used with a wiring (wired CfC has no backbone)")
            self.cell = WiredCfCCell(input_size, units, mode, recurrence)
            self.wiring: Wiring | None = units
            self.state_size = units.units
            cell_out = self.cell.output_size
        else:
            if units < 1:
                raise ValueError(f"units must be >= 1, got {units}")
            self.cell = CfCCell(
                input_size,
                units,
                mode,
                activation,
                128 if backbone_units is None else backbone_units,
                1 if backbone_layers is None else backbone_layers,
                0.0 if backbone_dropout is None else backbone_dropout,
            )
            self.wiring = None
            self.state_size = units
            cell_out = units
        self.memory = MemoryCell(input_size, self.state_size) if mixed_memory else None
        self.proj = nn.Linear(cell_out, proj_size) if proj_size is not None else None
        self.output_size = proj_size if proj_size is not None else cell_out

    def initial_state(
        self,
        batch_size: int,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> State:
        h = torch.zeros(batch_size, self.state_size, device=device, dtype=dtype)
        return (h, torch.zeros_like(h)) if self.mixed_memory else h

    # The fused kernels (lnn_nav.kernels) take over forward (inference),
    # step, cell_step and run_sequence whenever they apply and return None
    # otherwise; the code below them is the reference they are tested against.
    def forward(
        self,
        input: Tensor,
        hx: State | None = None,
        timespans: TimespanLike = None,
    ) -> tuple[Tensor, State]:
        # Inference on short sequences (the ncps-style T=1 call included): one C++
        # call; training (gradients) and everything else: RecurrentCore.forward.
        result = fused.try_forward(self, input, hx, timespans)
        return result if result is not None else super().forward(input, hx, timespans)

    def step(self, x: Tensor, state: State | None = None, dt: TimespanLike = None) -> tuple[Tensor, State]:
        result = fused.try_step(self, x, state, dt)
        return result if result is not None else super().step(x, state, dt)

    def run_sequence(self, x: Tensor, state: State, ts: Tensor) -> tuple[Tensor, State]:
        # A tuple state only with mixed memory, which the fused path declines (returns None).
        result = fused.try_run_sequence(self, x, cast(Tensor, state), ts)
        return result if result is not None else super().run_sequence(x, state, ts)

    def _apply(self, fn, recurse: bool = True):
        fused.invalidate(self)  # .to()/.double() may replace the tensors the plan packs
        return super()._apply(fn, recurse)

    def cell_step(self, x: Tensor, state: State, ts: Tensor) -> tuple[Tensor, State]:
        if self.memory is None:
            result = fused.try_cell_step(self, x, cast(Tensor, state), ts)  # no memory: one tensor
            if result is not None:
                return result
        if self.memory is not None:
            h, c = state
            h, c = self.memory(x, (h, c))
        else:
            h, c = state, None
        if isinstance(self.cell, WiredCfCCell):
            out, h = self.cell(x, h, ts)
        else:
            h = out = self.cell(x, h, ts)
        if self.proj is not None:
            out = self.proj(out)
        return out, ((h, c) if c is not None else h)
