"""Liquid time-constant networks (Hasani et al., AAAI 2021) on a wiring."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .core import RecurrentCore, State
from .memory import MemoryCell
from .wirings import FullyConnected, Wiring

MAPPINGS = ("affine", "linear", "none")

# Uniform initialisation ranges per parameter (those of the LTC paper's code / ncps).
_INIT_RANGES: dict[str, tuple[float, float]] = {
    "gleak": (0.001, 1.0),
    "vleak": (-0.2, 0.2),
    "cm": (0.4, 0.6),
    "w": (0.001, 1.0),
    "sigma": (3.0, 8.0),
    "mu": (0.3, 0.8),
    "sensory_w": (0.001, 1.0),
    "sensory_sigma": (3.0, 8.0),
    "sensory_mu": (0.3, 0.8),
}


class LTCCell(nn.Module):
    """One LTC step, solved with the fused semi-implicit Euler scheme.

    The membrane ODE ``C_m dv/dt = g_l (v_l - v) + Σ_j w_j σ(v_j) (E_j - v)``
    is unfolded ``ode_unfolds`` times over ``Δt`` (``[B, 1]``, per sample)::

        v ← (C_m/(Δt/K) · v + g_l v_l + Σ w σ E) / (C_m/(Δt/K) + g_l + Σ w σ + ε)

    which stays bounded for any step size (AAAI 2021 paper, eq. 3).
    ``implicit_param_constraints=True`` keeps ``w, sensory_w, C_m, g_l``
    positive with a softplus at run time; otherwise call
    :meth:`apply_weight_constraints` after every optimiser step (clamps at 0).
    """

    # Registered by name in __init__ (register_parameter/register_buffer), declared for the type checker.
    gleak: nn.Parameter
    vleak: nn.Parameter
    cm: nn.Parameter
    sigma: nn.Parameter
    mu: nn.Parameter
    w: nn.Parameter
    sensory_sigma: nn.Parameter
    sensory_mu: nn.Parameter
    sensory_w: nn.Parameter
    sparsity_mask: Tensor
    sensory_sparsity_mask: Tensor

    def __init__(
        self,
        wiring: Wiring,
        in_features: int | None = None,
        input_mapping: str = "affine",
        output_mapping: str = "affine",
        ode_unfolds: int = 6,
        epsilon: float = 1e-8,
        implicit_param_constraints: bool = True,
    ) -> None:
        super().__init__()
        for name, value in (("input_mapping", input_mapping), ("output_mapping", output_mapping)):
            if value not in MAPPINGS:
                raise ValueError(f"unknown {name} '{value}'; expected one of {', '.join(MAPPINGS)}")
        if ode_unfolds < 1:
            raise ValueError(f"ode_unfolds must be >= 1, got {ode_unfolds}")
        if in_features is not None:
            wiring.build(in_features)
        if not wiring.is_built():
            raise ValueError("the wiring has no input size: pass in_features or call wiring.build()")
        assert wiring.input_dim is not None and wiring.sensory_adjacency_matrix is not None
        self.wiring = wiring
        self.input_mapping = input_mapping
        self.output_mapping = output_mapping
        self.ode_unfolds = ode_unfolds
        self.epsilon = epsilon
        self.implicit_param_constraints = implicit_param_constraints
        self.state_size = wiring.units
        self.sensory_size = wiring.input_dim
        self.motor_size = wiring.output_dim

        n, s = self.state_size, self.sensory_size
        shapes = {
            "gleak": (n,),
            "vleak": (n,),
            "cm": (n,),
            "sigma": (n, n),
            "mu": (n, n),
            "w": (n, n),
            "sensory_sigma": (s, n),
            "sensory_mu": (s, n),
            "sensory_w": (s, n),
        }
        for name, shape in shapes.items():
            low, high = _INIT_RANGES[name]
            self.register_parameter(name, nn.Parameter(torch.rand(*shape) * (high - low) + low))
        # Reversal potentials start at the synapse polarity (+1 excitatory, -1 inhibitory).
        self.erev = nn.Parameter(torch.tensor(wiring.adjacency_matrix, dtype=torch.float32))
        self.sensory_erev = nn.Parameter(torch.tensor(wiring.sensory_adjacency_matrix, dtype=torch.float32))
        self.register_buffer("sparsity_mask", torch.tensor(np.abs(wiring.adjacency_matrix), dtype=torch.float32))
        self.register_buffer(
            "sensory_sparsity_mask",
            torch.tensor(np.abs(wiring.sensory_adjacency_matrix), dtype=torch.float32),
        )
        self.input_w = nn.Parameter(torch.ones(s)) if input_mapping != "none" else None
        self.input_b = nn.Parameter(torch.zeros(s)) if input_mapping == "affine" else None
        self.output_w = nn.Parameter(torch.ones(self.motor_size)) if output_mapping != "none" else None
        self.output_b = nn.Parameter(torch.zeros(self.motor_size)) if output_mapping == "affine" else None

    def _positive(self, p: Tensor) -> Tensor:
        return F.softplus(p) if self.implicit_param_constraints else p

    @torch.no_grad()
    def apply_weight_constraints(self) -> None:
        """Clamp the positive parameters at 0 (explicit-constraint training)."""
        if self.implicit_param_constraints:
            return
        for p in (self.w, self.sensory_w, self.cm, self.gleak):
            p.clamp_(min=0.0)

    def forward(self, x: Tensor, v: Tensor, ts: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` ``[B, S]``, ``v`` ``[B, N]``, ``ts`` ``[B, 1]`` -> (motor output, new state)."""
        if self.input_w is not None:
            x = x * self.input_w
        if self.input_b is not None:
            x = x + self.input_b
        # Sensory synapses do not change during the unfolds: compute once.
        sensory_act = self._positive(self.sensory_w) * torch.sigmoid(
            self.sensory_sigma * (x.unsqueeze(-1) - self.sensory_mu)
        )
        sensory_act = sensory_act * self.sensory_sparsity_mask
        num_sensory = (sensory_act * self.sensory_erev).sum(dim=1)
        den_sensory = sensory_act.sum(dim=1)

        # A zero Δt (duplicate stamps) would make C_m/Δt infinite and the update
        # inf/inf; a tiny floor makes it the identity update it should be.
        cm_t = self._positive(self.cm) / (ts.clamp(min=1e-6) / self.ode_unfolds)  # [B, N]
        w = self._positive(self.w) * self.sparsity_mask
        gleak = self._positive(self.gleak)
        leak = gleak * self.vleak
        for _ in range(self.ode_unfolds):
            act = w * torch.sigmoid(self.sigma * (v.unsqueeze(-1) - self.mu))
            numerator = cm_t * v + leak + ((act * self.erev).sum(dim=1) + num_sensory)
            denominator = cm_t + gleak + (act.sum(dim=1) + den_sensory)
            v = numerator / (denominator + self.epsilon)

        out = v[:, : self.motor_size]
        if self.output_w is not None:
            out = out * self.output_w
        if self.output_b is not None:
            out = out + self.output_b
        return out, v


class LTC(RecurrentCore):
    """An LTC recurrent layer over batch-first sequences (ncps ``LTC`` interface).

    ``units`` is a neuron count (fully connected wiring) or a wiring (e.g. an
    NCP). Output is the motor neurons after the output mapping.
    """

    def __init__(
        self,
        input_size: int,
        units: int | Wiring,
        return_sequences: bool = True,
        batch_first: bool = True,
        mixed_memory: bool = False,
        input_mapping: str = "affine",
        output_mapping: str = "affine",
        ode_unfolds: int = 6,
        epsilon: float = 1e-8,
        implicit_param_constraints: bool = True,
    ) -> None:
        super().__init__(return_sequences=return_sequences, batch_first=batch_first)
        wiring = units if isinstance(units, Wiring) else FullyConnected(units)
        self.input_size = input_size
        self.wiring = wiring
        self.cell = LTCCell(
            wiring,
            input_size,
            input_mapping,
            output_mapping,
            ode_unfolds,
            epsilon,
            implicit_param_constraints,
        )
        self.mixed_memory = mixed_memory
        self.state_size = wiring.units
        self.output_size = wiring.output_dim
        self.memory = MemoryCell(input_size, self.state_size) if mixed_memory else None

    def apply_weight_constraints(self) -> None:
        self.cell.apply_weight_constraints()

    def initial_state(
        self,
        batch_size: int,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> State:
        v = torch.zeros(batch_size, self.state_size, device=device, dtype=dtype)
        return (v, torch.zeros_like(v)) if self.mixed_memory else v

    def cell_step(self, x: Tensor, state: State, ts: Tensor) -> tuple[Tensor, State]:
        if self.memory is not None:
            v, c = state
            v, c = self.memory(x, (v, c))
            out, v = self.cell(x, v, ts)
            return out, (v, c)
        return self.cell(x, state, ts)
