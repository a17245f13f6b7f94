"""The CNN encoder and the whole policy step through the CPU extension, the reference path as fallback.

:class:`~lnn_nav.models.encoder.ConvEncoder` calls :func:`try_encode` and
:class:`~lnn_nav.models.policy.LiquidPolicy` calls :func:`try_policy_step`;
each returns ``None`` whenever the fused path does not apply, and the model
then runs its reference PyTorch code. They apply for inference only: eval
mode, float32 weights, CPU tensors, and no gradient wanted (under
``torch.inference_mode()``/``torch.no_grad()``, or with nothing that requires
one). Training (``forward`` with gradients) never comes here.

The C++ side (kernels in ``csrc/encoder_kernels.h``, packing and binding in
``csrc/encoder_cpu.cpp``, ``policy_step`` in ``csrc/cfc_cpu.cpp``) runs the
convolutions on channels-last maps with packed weights, normalisation and ReLU
fused, and, for a CfC core, the whole step (encoder, goal/IMU inputs, cell,
head) in one call that, at batch 1, allocates nothing but its two outputs.

Switches: ``LNN_NAV_REFERENCE_ENCODER=1``, :func:`set_reference_encoder` or
``with reference_encoder():`` turn this path off alone (the encoder and the
policy step then run as before it existed: ATen's convolutions, then the fused
CfC step); ``LNN_NAV_REFERENCE=1`` (:func:`lnn_nav.kernels.set_reference`)
turns off every fused kernel, this one included.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from . import fused

_reference_encoder = os.environ.get("LNN_NAV_REFERENCE_ENCODER", "") not in ("", "0")
_ENCODER_PLAN_ATTR = "_fused_encoder_plan"
_POLICY_PLAN_ATTR = "_fused_policy_plan"
_INPUT_NORM_IDS = {"fixed": 0, "frame": 1}
#: The floor of the C++ encoder's frame input norm (encoder_kernels.h, fill_input).
FRAME_NORM_FLOOR = 0.02
#: Batches above this stay with ATen's batched convolutions. The C++ encoder runs
#: frame by frame (in parallel over the batch); measured on the 2-core build
#: machine, 48x64 frames, one thread: 7x ATen at batch 1, 2.6-2.9x per frame at
#: batch 8 to 64, 0.9x at 128, where ATen's batched matrix products catch up.
MAX_BATCH = 64


def set_reference_encoder(force: bool) -> None:
    """Force the reference encoder and policy step (``True``) or allow the fused one (``False``)."""
    global _reference_encoder
    _reference_encoder = bool(force)


def reference_encoder_forced() -> bool:
    return _reference_encoder


@contextlib.contextmanager
def reference_encoder() -> Iterator[None]:
    """Run the enclosed code with the reference encoder and policy step (the fused CfC cell stays on)."""
    previous = _reference_encoder
    set_reference_encoder(True)
    try:
        yield
    finally:
        set_reference_encoder(previous)


def _active() -> bool:
    # Tracing and compiling see the reference ops (as in fused._active).
    return not (
        _reference_encoder or fused._reference_forced or torch.compiler.is_compiling() or torch._C._is_tracing()
    )


class _Unsupported(Exception):
    """The module's configuration has no fused form (the message says why)."""


def _encoder_layout(encoder: Any) -> tuple[list[int], list[float], list[Tensor]]:
    """``meta``, ``eps`` and source tensors of a ConvEncoder (see EncoderLayout in csrc/encoder_kernels.h)."""
    cfg = encoder.config
    if encoder.mean.dtype != torch.float32 or encoder.mean.device.type != "cpu":
        raise _Unsupported("the fused encoder runs float32 on the CPU")
    if cfg.input_norm == "frame" and cfg.input_norm_floor != FRAME_NORM_FLOOR:
        raise _Unsupported(f"frame input norm with a floor other than {FRAME_NORM_FLOOR} (the C++ encoder's)")
    meta = [
        int(cfg.in_channels),
        int(cfg.height),
        int(cfg.width),
        len(encoder.convs),
        _INPUT_NORM_IDS[cfg.input_norm],
        int(cfg.output_activation == "tanh"),
        int(cfg.feature_dim),
        0,
    ]
    eps: list[float] = []
    sources: list[Tensor] = []
    for block in encoder.convs:
        layers = list(block)
        conv, act = layers[0], layers[-1]
        norm = layers[1] if len(layers) == 3 else None
        if not isinstance(conv, nn.Conv2d) or not isinstance(act, nn.ReLU) or len(layers) not in (2, 3):
            raise _Unsupported("a convolution block other than Conv2d [+ norm] + ReLU")
        k = conv.kernel_size[0]
        if (
            conv.kernel_size != (k, k)
            or conv.stride[0] != conv.stride[1]
            or conv.padding != (k // 2, k // 2)
            or conv.dilation != (1, 1)
            or conv.groups != 1
            or conv.padding_mode != "zeros"
            or conv.bias is None
        ):
            raise _Unsupported("a convolution other than square, 'same'-padded, undilated, with bias")
        kind, groups, eps_value = 0, 1, 0.0
        sources += [conv.weight, conv.bias]
        if isinstance(norm, nn.GroupNorm):
            if not norm.affine:
                raise _Unsupported("GroupNorm without affine parameters")
            kind, groups, eps_value = 2, int(norm.num_groups), float(norm.eps)
            sources += [norm.weight, norm.bias]
        elif isinstance(norm, nn.BatchNorm2d):
            if not norm.affine or norm.running_mean is None or norm.running_var is None:
                raise _Unsupported("BatchNorm without affine parameters or running statistics")
            kind, eps_value = 1, float(norm.eps)
            sources += [norm.weight, norm.bias, norm.running_mean, norm.running_var]
        elif norm is not None:
            raise _Unsupported(f"normalisation {type(norm).__name__}")
        meta += [int(conv.out_channels), k, int(conv.stride[0]), kind, groups]
        eps.append(eps_value)
    bottleneck = encoder.bottleneck
    if bottleneck.bias is None:
        raise _Unsupported("a bottleneck without bias")
    sources += [encoder.mean, encoder.std, bottleneck.weight, bottleneck.bias]
    if any(t.dtype != torch.float32 or t.device.type != "cpu" for t in sources):
        raise _Unsupported("the fused encoder runs float32 on the CPU")
    return meta, eps, sources


def _new_plan(ext: Any, encoder: Any, head: nn.Linear | None = None, buffers: tuple[Tensor, ...] = ()) -> Any:
    meta, eps, sources = _encoder_layout(encoder)
    if head is not None:
        if head.bias is None or any(t.dtype != torch.float32 for t in (head.weight, *buffers)):
            raise _Unsupported("a policy head other than a float32 Linear with bias")
        meta[7] = int(head.in_features)
        sources += [head.weight, head.bias, *buffers]
    return ext.EncoderPlan(meta, eps, sources)


def _encoder_plan(encoder: Any, ext: Any) -> Any:
    plan = encoder.__dict__.get(_ENCODER_PLAN_ATTR)
    if plan is None:
        try:
            plan = _new_plan(ext, encoder)
        except _Unsupported:
            plan = False
        encoder.__dict__[_ENCODER_PLAN_ATTR] = plan
    return plan or None


def invalidate(module: nn.Module) -> None:
    """Forget the packed weights of an encoder or policy (after ``.to()`` replaced its tensors)."""
    module.__dict__.pop(_ENCODER_PLAN_ATTR, None)
    module.__dict__.pop(_POLICY_PLAN_ATTR, None)


def _needs_grad(module: nn.Module, *tensors: Tensor | None) -> bool:
    if not torch.is_grad_enabled():
        return False
    return any(t is not None and t.requires_grad for t in tensors) or any(p.requires_grad for p in module.parameters())


def _extension() -> Any:
    return fused._cpu_ext if fused._cpu_ext is not None else fused._extension(torch.device("cpu"))


def try_encode(encoder: nn.Module, images: Tensor) -> Tensor | None:
    """ConvEncoder features ``[B, F]`` through the C++ encoder, or ``None`` for the reference path."""
    if not _active() or encoder.training or images.device.type != "cpu" or images.dim() != 4:
        return None
    if images.shape[0] > MAX_BATCH or _needs_grad(encoder, images):
        return None
    ext = _extension()
    if ext is None:
        return None
    plan = _encoder_plan(encoder, ext)
    if plan is None:
        return None
    result = ext.encode(images, plan)
    return result[0] if result else None


def _policy_plan(policy: Any, encoder: Any, head: Any, ext: Any) -> Any:
    """The policy's encoder + head plan; rebuilt when a module or tensor it packs was replaced.

    Read through the module dicts, not attribute access: ``nn.Module.__getattr__``
    costs about a microsecond a name, a sizeable part of a 0.1 ms step.
    """
    params, buffers = head._parameters, policy._buffers
    key = (encoder, head, params["weight"], params["bias"], buffers["output_gain"], buffers["command_scale"])
    cached = policy.__dict__.get(_POLICY_PLAN_ATTR)
    if cached is not None and all(a is b for a, b in zip(cached[0], key)):
        return cached[1]
    try:
        plan = _new_plan(ext, encoder, head, key[4:])
    except _Unsupported:
        plan = False
    policy.__dict__[_POLICY_PLAN_ATTR] = (key, plan)
    return plan


def why_not_fused_policy(policy: Any) -> str | None:
    """``None`` if ``policy.step`` takes the fused path on the CPU, else the reason."""
    if fused._reference_forced:
        return "the reference path is forced (LNN_NAV_REFERENCE=1 or set_reference(True))"
    if _reference_encoder:
        return "the reference encoder is forced (LNN_NAV_REFERENCE_ENCODER=1 or set_reference_encoder(True))"
    if policy.training:
        return "training mode"
    reason = fused.why_not_fused(policy.core) if type(policy.core).__name__ == "CfC" else "the core is not a CfC"
    if reason is not None:
        return reason
    try:
        _encoder_layout(policy.encoder)
    except _Unsupported as err:
        return str(err)
    return None


def try_policy_step(
    policy: Any,
    image: Tensor,
    dt: Any,
    state: Any,
    imu: Tensor | None,
    goal: Tensor | None,
) -> tuple[Tensor, Tensor] | None:
    """``LiquidPolicy.step`` for a CfC core in one C++ call, or ``None`` for the reference path.

    The caller has checked that the core is a CfC. Inputs the reference would
    refuse (shapes, dtypes, a missing or unexpected goal/IMU, a bad Δt) come
    back ``None`` so that the reference raises its errors.
    """
    modules = policy._modules
    encoder, core, head = modules["encoder"], modules["core"], modules["head"]
    if not _active() or policy.training or encoder.training or core.training:
        return None
    if (state is not None and not isinstance(state, Tensor)) or len(image) > MAX_BATCH:
        return None
    config = policy.config
    if (imu is None) == config.use_imu or (goal is None) == config.use_goal:
        return None  # the reference names what is missing or unexpected
    if _needs_grad(policy, image, state, imu, goal):
        return None
    if isinstance(dt, Tensor):
        dt_tensor, dt_value = dt, 0.0
    elif dt is None:
        dt_tensor, dt_value = None, 1.0
    elif isinstance(dt, (float, int)) and not isinstance(dt, bool):
        dt_tensor, dt_value = None, float(dt)
    else:
        return None
    core_plan = fused._plan(core)
    ext = _extension()
    if core_plan is None or ext is None:
        return None
    plan = _policy_plan(policy, encoder, head, ext)
    if not plan:
        return None
    cpp = core_plan.cpu_plan(ext)
    clip = config.goal_distance_clip
    result = ext.policy_step(image, imu, goal, state, dt_tensor, dt_value, plan, cpp, clip)
    if len(result) == 1:  # the core's parameters changed since the last pack
        cpp.set_packed(core_plan.packed())
        result = ext.policy_step(image, imu, goal, state, dt_tensor, dt_value, plan, cpp, clip)
    return result if result else None
