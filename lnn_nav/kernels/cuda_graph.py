"""The full controller step (encoder + core + head) captured in a CUDA graph, state kept on the GPU.

Onboard the policy runs at a fixed batch every camera frame; replaying one
captured graph removes the per-kernel launch cost of the encoder and the
core. Inputs are copied into static device buffers, the recurrent state
never leaves the device, and Δt is validated on the host before the copy
(a check on the device would need a sync, which capture forbids).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn


class GraphedPolicyStep:
    """``cmd = step(image, dt)`` for a :class:`~lnn_nav.models.policy.LiquidPolicy` on CUDA.

    ``image`` ``[B, C, H, W]`` (float in [0, 1], on any device), ``dt`` seconds
    (a number or ``[B]``). Returns the command ``[B, 4]`` in a static buffer
    that the next call overwrites (``.clone()`` it to keep it). The recurrent
    state persists between calls; :meth:`reset` zeroes it.
    """

    def __init__(self, policy: nn.Module, batch: int = 1, warmup: int = 3) -> None:
        if not torch.cuda.is_available():
            raise RuntimeError("GraphedPolicyStep needs a CUDA device; run policy.step() on the CPU")
        device = next(policy.parameters()).device
        if device.type != "cuda":
            raise ValueError(f"move the policy to a CUDA device first (it is on {device})")
        # A LiquidPolicy, used duck-typed: the kernels sit below lnn_nav.models and cannot name it,
        # and nn.Module's __getattr__ would type its config, encoder and core as Tensor | Module.
        liquid: Any = policy
        self.policy = liquid.eval()
        cfg = liquid.config
        enc = cfg.encoder
        self.image = torch.zeros(batch, enc.in_channels, enc.height, enc.width, device=device)
        self.dt = torch.full((batch, 1), 0.05, device=device)
        self.imu = torch.zeros(batch, 6, device=device) if cfg.use_imu else None
        self.goal = torch.zeros(batch, 4, device=device) if cfg.use_goal else None
        state = liquid.initial_state(batch, device=device)
        if not isinstance(state, Tensor):
            raise ValueError("GraphedPolicyStep supports cores with a single state tensor")
        self.state: Tensor = state
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.no_grad(), torch.cuda.stream(stream):
            for _ in range(warmup):  # allocations, cuDNN algorithm choice, kernel packing
                self._body()
            self.state.zero_()
        torch.cuda.current_stream(device).wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(self.graph):
            self.command = self._body()

    def _body(self) -> Tensor:
        policy = self.policy
        feats = policy.encoder(self.image)
        x = policy._with_extras(feats, self.imu, self.goal, (self.image.shape[0],))
        y, new_state = policy.core.cell_step(x, self.state, self.dt)
        self.state.copy_(new_state)  # inside the graph: the state stays on the device
        return policy._command(y)

    def reset(self) -> None:
        self.state.zero_()

    def __call__(
        self, image: Tensor, dt: Tensor | float, imu: Tensor | None = None, goal: Tensor | None = None
    ) -> Tensor:
        if isinstance(dt, Tensor):
            values = dt.detach().to("cpu", torch.float64).reshape(-1)
            bad = not bool(((values >= 0) & (values < math.inf)).all())
        else:
            bad = not 0.0 <= float(dt) < math.inf
        if bad:
            raise ValueError("timespans contain NaN, Inf or negative values; Δt must be finite and >= 0")
        self.image.copy_(image, non_blocking=True)
        if isinstance(dt, Tensor):
            self.dt.copy_(dt.reshape(-1, 1), non_blocking=True)
        else:
            self.dt.fill_(float(dt))
        for buffer, value, name in ((self.imu, imu, "imu"), (self.goal, goal, "goal")):
            if buffer is not None:
                if value is None:
                    raise ValueError(f"this policy uses {name}; pass {name}")
                buffer.copy_(value, non_blocking=True)
        self.graph.replay()
        return self.command
