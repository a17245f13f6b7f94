"""Small but real policy configurations shared by the policy and checkpoint tests.

Small cores and 48x64 frames keep those files to seconds on a laptop CPU.
"""

from __future__ import annotations

import torch

from lnn_nav.models import NCP, AutoNCP, CfC, FullyConnected

CORE_OPTIONS = {
    "cfc-ncp": {},
    "cfc": {"units": 16, "backbone_units": 16},
    "ltc": {},
    "lstm": {"units": 16},
    "gru": {"units": 16},
    "cnn": {"units": 16},
}
H, W = 48, 64


def small_core(kind: str, mode: str = "default", features: int = 6) -> CfC:
    """A small CfC of each wiring kind the fused kernels handle (seeded: the same weights every call)."""
    torch.manual_seed(3)
    if kind == "autoncp":
        return CfC(features, AutoNCP(12, 3, seed=5), mode=mode)
    if kind == "autoncp-dense":
        return CfC(features, AutoNCP(12, 3, seed=5), mode=mode, recurrence="dense")
    if kind == "ncp":
        return CfC(features, NCP(5, 4, 2, 3, 3, 4, 2, seed=1), mode=mode)
    if kind == "fully-connected":
        return CfC(features, FullyConnected(7, 2), mode=mode)
    if kind == "dense":
        return CfC(features, 9, mode=mode, backbone_units=11)
    if kind == "dense-deep-proj":
        return CfC(features, 9, proj_size=4, mode=mode, activation="silu", backbone_units=10, backbone_layers=2)
    if kind == "dense-no-backbone":
        return CfC(features, 9, mode=mode, backbone_layers=0)
    raise ValueError(kind)


KINDS = ("autoncp", "autoncp-dense", "ncp", "fully-connected", "dense", "dense-deep-proj", "dense-no-backbone")
