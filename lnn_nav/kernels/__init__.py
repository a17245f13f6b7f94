"""Fused CfC kernels: a C++ CPU extension, CUDA sources, the torch binding and the reference fallback.

The model classes use these automatically (:mod:`lnn_nav.kernels.fused`);
set ``LNN_NAV_REFERENCE=1`` or call :func:`set_reference` to force the
reference PyTorch path. Nothing here imports ROS or the simulator.
"""

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
