"""Fused CfC kernels: a C++ CPU extension, CUDA sources, the torch binding and the reference fallback.

The model classes use these automatically (:mod:`lnn_nav.kernels.fused` for
the CfC cell, :mod:`lnn_nav.kernels.fused_policy` for the CNN encoder and the
whole policy step in inference); set ``LNN_NAV_REFERENCE=1`` or call
:func:`set_reference` to force the reference PyTorch path everywhere, or
``LNN_NAV_REFERENCE_ENCODER=1`` / :func:`set_reference_encoder` for the
encoder and policy step alone. Nothing here imports ROS or the simulator. The names
below load on first use (module ``__getattr__``), so importing the package
does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lnn_nav import lazy_exports

#: Re-exported name -> the module of this package that defines it.
_EXPORTS = {
    "cache_root": "build",
    "load_cpu": "build",
    "load_cuda": "build",
    "load_error": "build",
    "reference": "fused",
    "reference_encoder": "fused_policy",
    "reference_encoder_forced": "fused_policy",
    "reference_forced": "fused",
    "set_reference": "fused",
    "set_reference_encoder": "fused_policy",
    "why_not_fused": "fused",
    "why_not_fused_policy": "fused_policy",
}

if TYPE_CHECKING:
    from .build import cache_root, load_cpu, load_cuda, load_error
    from .fused import reference, reference_forced, set_reference, why_not_fused
    from .fused_policy import (
        reference_encoder,
        reference_encoder_forced,
        set_reference_encoder,
        why_not_fused_policy,
    )

__all__ = [
    "cache_root",
    "load_cpu",
    "load_cuda",
    "load_error",
    "reference",
    "reference_encoder",
    "reference_encoder_forced",
    "reference_forced",
    "set_reference",
    "set_reference_encoder",
    "why_not_fused",
    "why_not_fused_policy",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
