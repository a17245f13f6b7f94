"""lnn_nav.geometry: the quaternion helpers the simulator, the datasets and the nodes share."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lnn_nav.geometry import quat_to_matrix, quaternion_yaw


def _yaw_pitch(yaw: float, pitch: float) -> np.ndarray:
    """(w, x, y, z) of a rotation by ``yaw`` about z, then ``pitch`` about the new y (ZYX)."""
    cy, sy, cp, sp = math.cos(yaw / 2), math.sin(yaw / 2), math.cos(pitch / 2), math.sin(pitch / 2)
    return np.array([cy * cp, -sy * sp, cy * sp, sy * cp])


def test_a_yaw_turns_the_body_x_axis_in_the_world_plane_and_reads_back() -> None:
    q = _yaw_pitch(0.7, 0.0)
    (r,) = quat_to_matrix(q)
    np.testing.assert_allclose(r @ [1.0, 0.0, 0.0], [math.cos(0.7), math.sin(0.7), 0.0], atol=1e-12)
    assert quaternion_yaw(q) == pytest.approx(0.7)
    assert quaternion_yaw(_yaw_pitch(-2.5, 0.3)) == pytest.approx(-2.5)  # pitch leaves the yaw as it is


def test_matrices_are_rotations_and_normalising_only_rescales() -> None:
    rng = np.random.default_rng(3)
    q = rng.normal(size=(64, 4))
    unit = q / np.linalg.norm(q, axis=1, keepdims=True)
    r = quat_to_matrix(q)
    np.testing.assert_allclose(r @ r.transpose(0, 2, 1), np.broadcast_to(np.eye(3), r.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-12)
    np.testing.assert_allclose(r, quat_to_matrix(unit, normalise=False), atol=1e-12)


def test_a_zero_quaternion_is_refused_where_orientations_come_from_messages() -> None:
    with pytest.raises(ValueError, match="zero norm"):
        quat_to_matrix([0.0, 0.0, 0.0, 0.0])
