"""The fused CfC sequence as a torch custom op with its backward (``lnn_nav::cfc_sequence``).

Registered through ``torch.library`` so autograd, fake tensors (torch.compile,
torch.export) and ``opcheck`` see one operator; the device kernels behind it
are the CPU and CUDA extensions. Forward: the input projection of layer 0 for
all steps is one matrix product, then the recurrence runs in the extension.
Backward recomputes each step's activations from the stored states.
"""

from __future__ import annotations

from types import ModuleType

import torch
from torch import Tensor

from .build import load_cpu, load_cuda
from .layout import first_matrix


def extension_for(device: torch.device) -> ModuleType:
    """The loaded extension for ``device``; raises if there is none."""
    module = load_cuda() if device.type == "cuda" else load_cpu() if device.type == "cpu" else None
    if module is None:
        raise RuntimeError(f"lnn_nav fused CfC kernels are not available for device '{device}'")
    return module


def _projection_parts(packed: Tensor, meta: list[int]) -> tuple[Tensor, Tensor, int, int, int, int]:
    w_off, b_off, features, width = first_matrix(meta)
    weight = packed.narrow(0, w_off, features * width).view(features, width)
    bias = packed.narrow(0, b_off, width)
    return weight, bias, w_off, b_off, features, width


def _input_projection(x: Tensor, packed: Tensor, meta: list[int]) -> Tensor:
    weight, bias, _, _, features, width = _projection_parts(packed, meta)
    batch, steps = x.shape[0], x.shape[1]
    return torch.addmm(bias, x.reshape(batch * steps, features), weight).view(batch, steps, width)


@torch.library.custom_op("lnn_nav::cfc_sequence", mutates_args=())
def cfc_sequence(x: Tensor, h0: Tensor, ts: Tensor, packed: Tensor, meta: list[int]) -> Tensor:
    """States ``[B, T, S]`` of a CfC core over ``x`` ``[B, T, F]`` with Δt ``ts`` ``[B, T]``."""
    packed = packed.contiguous()
    proj = _input_projection(x.contiguous(), packed, meta)
    return extension_for(x.device).seq_forward(proj, h0.contiguous(), ts.contiguous(), packed, meta)


@cfc_sequence.register_fake
def _(x: Tensor, h0: Tensor, ts: Tensor, packed: Tensor, meta: list[int]) -> Tensor:
    return x.new_empty((x.shape[0], x.shape[1], h0.shape[1]))


@torch.library.custom_op("lnn_nav::cfc_sequence_backward", mutates_args=())
def cfc_sequence_backward(
    grad_states: Tensor, x: Tensor, h0: Tensor, ts: Tensor, packed: Tensor, meta: list[int], states: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gradients of :func:`cfc_sequence` w.r.t. ``x``, ``h0``, ``ts`` and ``packed``."""
    packed = packed.contiguous()
    x = x.contiguous()
    proj = _input_projection(x, packed, meta)
    d_proj, d_h0, d_ts, d_packed = extension_for(x.device).seq_backward(
        grad_states.contiguous(), proj, h0.contiguous(), ts.contiguous(), packed, meta, states.contiguous()
    )
    # The input rows and bias of layer 0's first matrix, for all steps at once.
    weight, _, w_off, b_off, features, width = _projection_parts(packed, meta)
    d_proj = d_proj.view(-1, width)
    x2 = x.view(-1, features)
    d_packed[w_off : w_off + features * width] += (x2.t() @ d_proj).reshape(-1)
    d_packed[b_off : b_off + width] += d_proj.sum(0)
    d_x = (d_proj @ weight.t()).view(x.shape)
    return d_x, d_h0, d_ts, d_packed


@cfc_sequence_backward.register_fake
def _(grad_states, x, h0, ts, packed, meta, states):
    return torch.empty_like(x), torch.empty_like(h0), torch.empty_like(ts), torch.empty_like(packed)


def _setup_context(ctx, inputs, output) -> None:
    x, h0, ts, packed, meta = inputs
    ctx.meta = meta
    ctx.save_for_backward(x, h0, ts, packed, output)


def _backward(ctx, grad_states: Tensor):
    x, h0, ts, packed, states = ctx.saved_tensors
    d_x, d_h0, d_ts, d_packed = cfc_sequence_backward(grad_states, x, h0, ts, packed, ctx.meta, states)
    return d_x, d_h0, d_ts, d_packed, None


cfc_sequence.register_autograd(_backward, setup_context=_setup_context)
