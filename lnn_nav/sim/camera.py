"""Pinhole camera model: mounting on the body, pixel rays, intrinsics and projection."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lnn_nav.geometry import quat_to_matrix


@dataclass(frozen=True)
class CameraConfig:
    """A forward-looking pinhole camera fixed to the drone body.

    Pixel coordinates follow OpenCV / ``sensor_msgs/CameraInfo``: pixel centres
    sit at integer ``(u, v)``, ``u`` to the right and ``v`` down, so a centred
    principal point is ``((width - 1) / 2, (height - 1) / 2)``. The optical
    frame is REP-103's ``camera_optical_frame``: z forward (body +x), x right
    (body -y), y down (body -z). ``tilt_deg`` pitches the camera up (positive)
    about the body y axis, as racing drones mount it; ``offset`` is the optical
    centre in the body FLU frame (m). ``near``/``far`` clip z-depth (m).
    """

    width: int = 128
    height: int = 96
    hfov_deg: float = 90.0
    tilt_deg: float = 0.0
    offset: tuple[float, float, float] = (0.1, 0.0, 0.05)
    near: float = 0.05
    far: float = 120.0

    def __post_init__(self) -> None:
        if self.width < 1 or self.height < 1:
            raise ValueError(f"image size must be >= 1 pixel, got {self.width}x{self.height}")
        if not 0.0 < self.hfov_deg < 180.0:
            raise ValueError(f"hfov_deg must be in (0, 180), got {self.hfov_deg}")
        if not 0.0 < self.near < self.far:
            raise ValueError(f"need 0 < near < far, got near={self.near}, far={self.far}")
        object.__setattr__(self, "offset", tuple(float(v) for v in self.offset))

    @property
    def vfov_deg(self) -> float:
        """Vertical field of view implied by square pixels."""
        fx, fy, _, _ = self.intrinsics()
        return math.degrees(2.0 * math.atan(self.height / 2.0 / fy))

    def intrinsics(self) -> tuple[float, float, float, float]:
        """``(fx, fy, cx, cy)`` in pixels: square pixels, principal point at the image centre."""
        fx = self.width / 2.0 / math.tan(math.radians(self.hfov_deg) / 2.0)
        return fx, fx, (self.width - 1) / 2.0, (self.height - 1) / 2.0

    def camera_matrix(self) -> np.ndarray:
        """The 3x3 ``K`` matrix (``CameraInfo.k``)."""
        fx, fy, cx, cy = self.intrinsics()
        return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])

    def mount_rotation(self) -> np.ndarray:
        """Rotation body FLU <- optical frame; columns are the optical x, y, z axes in the body."""
        t = math.radians(self.tilt_deg)
        forward = [math.cos(t), 0.0, math.sin(t)]
        right = [0.0, -1.0, 0.0]
        down = [math.sin(t), 0.0, -math.cos(t)]
        return np.array([right, down, forward]).T


def camera_pose(
    position_world: np.ndarray, quaternion_wxyz: np.ndarray, camera: CameraConfig | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Camera origins ``[N, 3]`` and rotations world <- optical ``[N, 3, 3]`` from body poses.

    ``quaternion_wxyz`` rotates body (FLU) to world (ENU).
    """
    camera = camera or CameraConfig()
    pos = np.asarray(position_world, dtype=np.float64).reshape(-1, 3)
    r_wb = quat_to_matrix(quaternion_wxyz)
    if len(r_wb) != len(pos):
        raise ValueError(f"{len(pos)} positions but {len(r_wb)} quaternions")
    origins = pos + r_wb @ np.asarray(camera.offset)
    return origins, r_wb @ camera.mount_rotation()


def project(
    points_world: np.ndarray, origin: np.ndarray, rotation: np.ndarray, camera: CameraConfig | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates ``[P, 2]`` (u, v) and z-depth ``[P]`` of world points for one camera.

    ``origin``/``rotation`` are one row of :func:`camera_pose`. Points behind
    the camera get z-depth <= 0 and meaningless pixel coordinates.
    """
    camera = camera or CameraConfig()
    fx, fy, cx, cy = camera.intrinsics()
    p = (np.asarray(points_world, dtype=np.float64).reshape(-1, 3) - np.reshape(origin, (1, 3))) @ np.reshape(
        rotation, (3, 3)
    )
    z = p[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = np.stack([fx * p[:, 0] / z + cx, fy * p[:, 1] / z + cy], axis=1)
    return uv, z
