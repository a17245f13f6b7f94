"""Frame and goal preparation shared by training data, simulation and the nodes (numpy + OpenCV only).

No torch here: the dataset builder's worker processes import this without
paying for torch. :mod:`lnn_nav.models.inputs` builds policy tensors on top.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

#: Fields of view closer than this (deg) are one camera: datasets and checkpoints agree.
SAME_CAMERA_DEG = 0.5


def hfov_from_intrinsics(fx: float, width: int) -> float | None:
    """Horizontal field of view (deg) of a pinhole camera, ``2 atan(width / 2 fx)``, from ``CameraInfo`` ``K``.

    None when it cannot be told: an uncalibrated driver publishes ``K`` all zeros.
    """
    if not (math.isfinite(fx) and fx > 0 and width > 0):
        return None
    return math.degrees(2.0 * math.atan(width / (2.0 * fx)))


def resize_rgb(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 ``[H, W, 3]`` -> uint8 ``[height, width, 3]`` (area filter when shrinking, as cameras bin)."""
    if rgb.shape[:2] == (height, width):
        return rgb
    shrinking = height <= rgb.shape[0] and width <= rgb.shape[1]
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def goal_features(goal_body: np.ndarray) -> np.ndarray:
    """Body-frame vectors to the goal ``[..., 3]`` (m) -> ``[..., 4]``: unit direction, distance."""
    goal_body = np.asarray(goal_body, dtype=np.float32)
    distance = np.linalg.norm(goal_body, axis=-1, keepdims=True)
    direction = np.divide(goal_body, distance, out=np.zeros_like(goal_body), where=distance > 1e-9)
    out = np.concatenate([direction, distance], axis=-1).astype(np.float32)
    return out
