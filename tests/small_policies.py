"""Small but real policy configurations shared by the policy and checkpoint tests.

Small cores and 48x64 frames keep those files to seconds on a laptop CPU.
"""

from __future__ import annotations

CORE_OPTIONS = {
    "cfc-ncp": {},
    "cfc": {"units": 16, "backbone_units": 16},
    "ltc": {},
    "lstm": {"units": 16},
    "gru": {"units": 16},
    "cnn": {"units": 16},
}
H, W = 48, 64
