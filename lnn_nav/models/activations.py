"""Backbone activations by name, including LeCun's scaled tanh."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn


class LeCunTanh(nn.Module):
    """``1.7159 * tanh(0.666 * x)`` (LeCun et al., "Efficient BackProp", 1998).

    The constant 0.666 (not 2/3) matches the ncps implementation, so imported
    models give the same outputs.
    """

    def forward(self, x: Tensor) -> Tensor:
        return 1.7159 * torch.tanh(0.666 * x)


_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "lecun_tanh": LeCunTanh,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
}


def make_activation(name: str) -> nn.Module:
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation '{name}'; expected one of {', '.join(sorted(_ACTIVATIONS))}") from None
