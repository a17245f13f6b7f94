"""Quaternion helpers shared by the simulator, the datasets and the nodes (NumPy only).

Quaternions are ``(w, x, y, z)`` and rotate body vectors into the world frame,
as ``geometry_msgs/Quaternion`` orientations and the simulator's state do.
Here, at the root of the package, because the simulator, the datasets and the
nodes all need them and none of those may import another for it.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike


def quat_to_matrix(quaternion_wxyz: ArrayLike, *, normalise: bool = True) -> np.ndarray:
    """Rotation matrices ``[N, 3, 3]`` (body -> world) from quaternions ``[N, 4]`` or ``[4]``.

    ``normalise``: divide by the norm first (and refuse a zero quaternion), for
    orientations read from messages; the simulator's own, already unit, skip it
    on the physics step.
    """
    q = np.asarray(quaternion_wxyz, dtype=np.float64).reshape(-1, 4)
    if normalise:
        norm = np.linalg.norm(q, axis=1, keepdims=True)
        if np.any(norm < 1e-9):
            raise ValueError("quaternion with zero norm; expected unit quaternions (w, x, y, z)")
        q = q / norm
    w, x, y, z = q[:, 0], q[:, 1], q[:, 2], q[:, 3]
    xx, yy, zz = x * x, y * y, z * z
    xy, xz, yz = x * y, x * z, y * z
    wx, wy, wz = w * x, w * y, w * z
    r = np.empty((q.shape[0], 3, 3))
    r[:, 0, 0] = 1.0 - 2.0 * (yy + zz)
    r[:, 0, 1] = 2.0 * (xy - wz)
    r[:, 0, 2] = 2.0 * (xz + wy)
    r[:, 1, 0] = 2.0 * (xy + wz)
    r[:, 1, 1] = 1.0 - 2.0 * (xx + zz)
    r[:, 1, 2] = 2.0 * (yz - wx)
    r[:, 2, 0] = 2.0 * (xz - wy)
    r[:, 2, 1] = 2.0 * (yz + wx)
    r[:, 2, 2] = 1.0 - 2.0 * (xx + yy)
    return r


def quaternion_yaw(q: ArrayLike) -> float:
    """Yaw (ZYX Euler, radians in (-pi, pi]) of one ``(w, x, y, z)`` quaternion, in its own world frame."""
    w, x, y, z = np.asarray(q, dtype=np.float64).reshape(4)
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))
