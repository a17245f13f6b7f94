"""Fused CfC kernels: a C++ CPU extension, CUDA sources, the torch binding and the reference fallback.

The model classes use these automatically (:mod:`lnn_nav.kernels.fused`);
set ``LNN_NAV_REFERENCE=1`` or call :func:`set_reference` to force the
reference PyTorch path. Nothing here imports ROS or the simulator. The names
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
    "reference_forced": "fused",
    "set_reference": "fused",
    "why_not_fused": "fused",
}

if TYPE_CHECKING:
    from .build import cache_root, load_cpu, load_cuda, load_error
    from .fused import reference, reference_forced, set_reference, why_not_fused

__all__ = [
    "cache_root",
    "load_cpu",
    "load_cuda",
    "load_error",
    "reference",
    "reference_forced",
    "set_reference",
    "why_not_fused",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
