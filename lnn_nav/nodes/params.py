"""Parameter descriptors with ranges, shared by the nodes (ranges show in `ros2 param describe`)."""

from __future__ import annotations

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor


def float_param(description: str, low: float, high: float) -> ParameterDescriptor:
    """A floating-point parameter limited to ``[low, high]``."""
    return ParameterDescriptor(
        description=description,
        floating_point_range=[FloatingPointRange(from_value=low, to_value=high, step=0.0)],
    )


def int_param(description: str, low: int, high: int) -> ParameterDescriptor:
    """An integer parameter limited to ``[low, high]``."""
    return ParameterDescriptor(
        description=description, integer_range=[IntegerRange(from_value=low, to_value=high, step=1)]
    )
