"""Export the single-step policy for deployment: ONNX (for onnxruntime / TensorRT) and TorchScript.

The exported graph is one controller step with the recurrent state as an
explicit input and output, ``(image, dt, state_in) -> (cmd, state_out)``
(plus ``imu`` / ``goal`` inputs when the policy uses them), so any runtime can
carry the state between frames. It is traced from the reference PyTorch path
(the fused kernels are custom ops no exporter knows); a TensorRT engine built
from the ONNX file fuses the small cell itself.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import cast

import torch
from torch import Tensor, nn

from lnn_nav.kernels import reference
from lnn_nav.models.policy import LiquidPolicy

PathLike = str | Path


class PolicyStep(nn.Module):
    """``forward(image, dt, state_in[, imu][, goal]) -> (cmd, state_out)`` around a policy.

    ``image`` ``[B, C, H, W]`` float in [0, 1]; ``dt`` ``[B]`` seconds;
    ``state_in``/``state_out`` ``[B, S]``; ``cmd`` ``[B, 4]`` (vx, vy, vz, yaw_rate, FLU).
    """

    def __init__(self, policy: LiquidPolicy) -> None:
        super().__init__()
        state = policy.initial_state(1)
        if not isinstance(state, Tensor):
            raise ValueError(
                f"export needs a core with one state tensor; core '{policy.config.core}' keeps "
                f"{len(state)} (mixed_memory / LSTM). Build the policy without mixed memory to export it."
            )
        self.policy = policy.eval()
        self.state_size = int(state.shape[1])

    def forward(self, image: Tensor, dt: Tensor, state_in: Tensor, *extras: Tensor) -> tuple[Tensor, Tensor]:
        policy = self.policy
        extras_iter = iter(extras)
        imu = next(extras_iter) if policy.config.use_imu else None
        goal = next(extras_iter) if policy.config.use_goal else None
        feats = policy.encoder(image)
        x = policy._with_extras(feats, imu, goal, (image.shape[0],))
        y, state_out = policy.core.cell_step(x, state_in, dt.reshape(-1, 1))
        # A core whose initial state is one tensor (checked in __init__) steps to one tensor.
        return policy._command(y), cast(Tensor, state_out)


def _cpu_copy(policy: LiquidPolicy) -> LiquidPolicy:
    # Export traces on the CPU in float32; the caller's policy keeps its device and dtype.
    return copy.deepcopy(policy).cpu().float().eval()


def input_names(policy: LiquidPolicy) -> list[str]:
    names = ["image", "dt", "state_in"]
    return names + ["imu"] * policy.config.use_imu + ["goal"] * policy.config.use_goal


def example_inputs(policy: LiquidPolicy, batch: int = 1) -> tuple[Tensor, ...]:
    """Inputs of the exported step: a mid-grey frame, Δt = 0.05 s, a zero state."""
    enc = policy.config.encoder
    step = PolicyStep(policy)
    inputs = [
        torch.full((batch, enc.in_channels, enc.height, enc.width), 0.5),
        torch.full((batch,), 0.05),
        torch.zeros(batch, step.state_size),
    ]
    if policy.config.use_imu:
        inputs.append(torch.zeros(batch, 6))
    if policy.config.use_goal:
        inputs.append(torch.tensor([[1.0, 0.0, 0.0, 10.0]]).expand(batch, 4).contiguous())
    return tuple(inputs)


def export_onnx(policy: LiquidPolicy, path: PathLike, opset: int = 17, dynamic_batch: bool = True) -> Path:
    """Write the step as ONNX (``image, dt, state_in -> cmd, state_out``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    policy = _cpu_copy(policy)
    names = input_names(policy)
    axes: dict[str, dict[int, str]] = {n: {0: "batch"} for n in [*names, "cmd", "state_out"]}
    with reference(), torch.no_grad(), warnings.catch_warnings():
        # The TorchScript-based exporter needs no extra package (the
        # torch.export-based one needs onnxscript); its deprecation and tracer
        # notes say nothing about this fixed-shape, loop-free step.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            PolicyStep(policy),
            example_inputs(policy),
            str(path),
            dynamo=False,
            input_names=names,
            output_names=["cmd", "state_out"],
            opset_version=opset,
            dynamic_axes=axes if dynamic_batch else None,
        )
    return path


def export_torchscript(policy: LiquidPolicy, path: PathLike) -> Path:
    """Write the step as a traced TorchScript module (``torch.jit.load`` it, call it like the ONNX graph)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    policy = _cpu_copy(policy)
    with reference(), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(PolicyStep(policy), example_inputs(policy), check_trace=False)
    traced.save(str(path))
    return path


def check_onnx(policy: LiquidPolicy, path: PathLike, steps: int = 5, seed: int = 0) -> float:
    """Run the ONNX file with onnxruntime beside PyTorch for a few chained steps; max |difference|."""
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = input_names(policy)
    step = PolicyStep(_cpu_copy(policy))
    gen = torch.Generator().manual_seed(seed)
    inputs = list(example_inputs(policy))
    state_torch = state_onnx = inputs[2]
    worst = 0.0
    for _ in range(steps):
        inputs[0] = torch.rand(inputs[0].shape, generator=gen)
        inputs[1] = 0.02 + 0.08 * torch.rand(inputs[1].shape, generator=gen)
        with reference(), torch.no_grad():
            cmd, state_torch = step(inputs[0], inputs[1], state_torch, *inputs[3:])
        feed = {n: t.numpy() for n, t in zip(names, inputs)}
        feed["state_in"] = state_onnx.numpy() if isinstance(state_onnx, Tensor) else state_onnx
        cmd_onnx, state_onnx = session.run(["cmd", "state_out"], feed)
        worst = max(
            worst, float(np.abs(cmd_onnx - cmd.numpy()).max()), float(np.abs(state_onnx - state_torch.numpy()).max())
        )
    return worst
