"""Rigid-body quadrotor dynamics (quad-X, rotor lag, linear drag), vectorised over N drones.

Frames: world ENU (z up), body FLU (x forward, y left, z up), REP-103.
Quaternions are ``(w, x, y, z)`` and rotate body vectors into the world
frame. Everything is float64 NumPy arrays with the drone index first.

Every operation here acts row by row (no matrix products that BLAS could
block differently for different N), so one drone simulated inside a batch
follows bit for bit the trajectory it follows alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from lnn_nav.geometry import quat_to_matrix


def cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cross product of ``[N, 3]`` arrays (np.cross costs ~10x more on small arrays)."""
    a2 = np.concatenate((a, a), axis=1)
    b2 = np.concatenate((b, b), axis=1)
    return a2[:, 1:4] * b2[:, 2:5] - a2[:, 2:5] * b2[:, 1:4]


def quat_from_yaw(yaw: np.ndarray) -> np.ndarray:
    """Level attitude with heading ``yaw`` (rad, ENU: 0 = east, counter-clockwise)."""
    yaw = np.asarray(yaw, dtype=np.float64).reshape(-1)
    q = np.zeros((yaw.shape[0], 4))
    q[:, 0] = np.cos(0.5 * yaw)
    q[:, 3] = np.sin(0.5 * yaw)
    return q


def quat_from_rpy(roll: np.ndarray, pitch: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """Quaternion of the intrinsic z-y'-x'' (yaw, pitch, roll) rotation, REP-103."""
    roll, pitch, yaw = (np.asarray(a, dtype=np.float64).reshape(-1) for a in (roll, pitch, yaw))
    cr, sr = np.cos(0.5 * roll), np.sin(0.5 * roll)
    cp, sp = np.cos(0.5 * pitch), np.sin(0.5 * pitch)
    cy, sy = np.cos(0.5 * yaw), np.sin(0.5 * yaw)
    return np.stack(
        [
            cr * cp * cy + sr * sp * sy,
            sr * cp * cy - cr * sp * sy,
            cr * sp * cy + sr * cp * sy,
            cr * cp * sy - sr * sp * cy,
        ],
        axis=1,
    )


def rotmat_to_rpy(r: np.ndarray) -> np.ndarray:
    """``[N, 3, 3]`` rotation matrices to ``[N, 3]`` roll, pitch, yaw (rad, z-y'-x'')."""
    roll = np.arctan2(r[:, 2, 1], r[:, 2, 2])
    pitch = np.arcsin(np.clip(-r[:, 2, 0], -1.0, 1.0))
    yaw = np.arctan2(r[:, 1, 0], r[:, 0, 0])
    return np.stack([roll, pitch, yaw], axis=1)


def rotate(r: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``R v`` row by row: body to world for ``[N, 3, 3]`` and ``[N, 3]``."""
    return (r * v[:, None, :]).sum(axis=2)


def rotate_inverse(r: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``R^T v`` row by row: world to body."""
    return (r * v[:, :, None]).sum(axis=1)


@dataclass(frozen=True)
class QuadrotorParams:
    """Physical parameters of a quad-X multirotor.

    Defaults describe a 1 kg, 0.34 m motor-to-motor quad on 8-inch props (an
    x500-class frame scaled down to the size that flies between trees):
    thrust-to-weight 2.45, hover at 64 % of the maximum rotor speed. Inertia
    is that of four 0.12 kg motor+arm point masses at the arm tips plus a
    0.5 kg central body (a 10 x 10 x 5 cm box), rounded up.

    Rotors, in PX4's quad-X order (front-right, back-left, front-left,
    back-right), spin CCW, CCW, CW, CW seen from above; thrust is
    ``k_f * omega**2`` along body +z and the reaction torque about body z is
    ``-/+ k_m * omega**2`` for a CCW/CW rotor.

    ``drag`` is a linear, body-frame, per-axis coefficient (N per m/s of air
    velocity): rotor drag is linear in the airspeed (Faessler, Franchi &
    Scaramuzza, "Differential flatness of quadrotor dynamics subject to
    rotor drag", RA-L 2018) and dominates at the speeds flown here. With
    motors off the drone falls at a terminal ``mass * gravity / drag[2]``.
    """

    mass: float = 1.0  # kg
    inertia: tuple[float, float, float] = (0.0095, 0.0095, 0.0170)  # kg m^2, body x, y, z
    arm_length: float = 0.17  # m, centre to rotor axis
    collision_radius: float = 0.25  # m, arm + prop radius: the drone as a sphere
    k_f: float = 6.0e-6  # N / (rad/s)^2
    k_m: float = 9.6e-8  # N m / (rad/s)^2 (k_m / k_f = 0.016 m, typical of 8-10" props)
    motor_time_constant: float = 0.03  # s, first-order rotor speed lag
    max_rotor_speed: float = 1000.0  # rad/s (about 9500 rpm)
    idle_rotor_speed: float = 80.0  # rad/s, the lowest speed the flight controller commands while armed
    drag: tuple[float, float, float] = (0.30, 0.30, 0.40)  # N / (m/s), body x, y, z
    gravity: float = 9.81  # m/s^2

    def __post_init__(self) -> None:
        for name in (
            "mass",
            "arm_length",
            "collision_radius",
            "k_f",
            "k_m",
            "motor_time_constant",
            "max_rotor_speed",
            "gravity",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"QuadrotorParams.{name} must be > 0, got {getattr(self, name)}")
        if len(self.inertia) != 3 or min(self.inertia) <= 0:
            raise ValueError(f"inertia must be three positive values, got {self.inertia}")
        if len(self.drag) != 3 or min(self.drag) < 0:
            raise ValueError(f"drag must be three values >= 0, got {self.drag}")
        if not 0 <= self.idle_rotor_speed < self.max_rotor_speed:
            raise ValueError("idle_rotor_speed must be in [0, max_rotor_speed)")
        if 4 * self.k_f * self.max_rotor_speed**2 <= self.mass * self.gravity:
            raise ValueError("the rotors cannot lift the mass: 4 k_f max_rotor_speed^2 <= mass g")
        object.__setattr__(self, "inertia", tuple(float(v) for v in self.inertia))
        object.__setattr__(self, "drag", tuple(float(v) for v in self.drag))

    @property
    def rotor_positions(self) -> np.ndarray:
        """``[4, 2]`` rotor x, y in the body frame (m), PX4 quad-X order."""
        a = self.arm_length / math.sqrt(2.0)
        return np.array([[a, -a], [-a, a], [a, a], [-a, -a]])

    @property
    def rotor_directions(self) -> np.ndarray:
        """``[4]`` +1 for a CCW rotor (seen from above), -1 for CW."""
        return np.array([1.0, 1.0, -1.0, -1.0])

    @property
    def allocation_matrix(self) -> np.ndarray:
        """``[4, 4]`` A with ``[thrust, tau_x, tau_y, tau_z] = A @ omega**2``.

        A thrust ``f`` at body ``(x, y, 0)`` along +z gives the moment
        ``(y f, -x f, 0)``; a CCW rotor's drag torque on the body is ``-k_m omega^2``.
        """
        pos = self.rotor_positions
        return np.stack(
            [
                np.full(4, self.k_f),
                self.k_f * pos[:, 1],
                -self.k_f * pos[:, 0],
                -self.k_m * self.rotor_directions,
            ]
        )

    @property
    def max_total_thrust(self) -> float:
        return 4.0 * self.k_f * self.max_rotor_speed**2


def hover_rotor_speed(params: QuadrotorParams) -> float:
    """Rotor speed (rad/s) at which four rotors carry the weight."""
    return math.sqrt(params.mass * params.gravity / (4.0 * params.k_f))


@dataclass
class QuadrotorState:
    """State of N drones, structure-of-arrays.

    ``rotation`` and ``specific_force`` are derived: :class:`QuadrotorDynamics`
    keeps ``rotation`` equal to the matrix of ``quaternion`` and
    ``specific_force`` to the non-gravitational acceleration of the last step
    (body frame, what an accelerometer measures: ``R^T (a - g)``).
    """

    position: np.ndarray  # [N, 3] world ENU, m
    velocity: np.ndarray  # [N, 3] world ENU, m/s
    quaternion: np.ndarray  # [N, 4] (w, x, y, z), body FLU -> world ENU
    angular_velocity: np.ndarray  # [N, 3] body FLU, rad/s
    rotor_speeds: np.ndarray  # [N, 4] rad/s, PX4 quad-X order
    specific_force: np.ndarray | None = None  # [N, 3] body, m/s^2 (zeros when not given)
    rotation: np.ndarray = field(init=False, repr=False)  # [N, 3, 3], from the quaternion

    def __post_init__(self) -> None:
        self.position = np.array(self.position, dtype=np.float64).reshape(-1, 3)
        n = self.position.shape[0]
        self.velocity = np.array(self.velocity, dtype=np.float64).reshape(n, 3)
        self.quaternion = np.array(self.quaternion, dtype=np.float64).reshape(n, 4)
        self.quaternion /= np.linalg.norm(self.quaternion, axis=1, keepdims=True)
        self.angular_velocity = np.array(self.angular_velocity, dtype=np.float64).reshape(n, 3)
        self.rotor_speeds = np.array(self.rotor_speeds, dtype=np.float64).reshape(n, 4)
        self.rotation = quat_to_matrix(self.quaternion, normalise=False)
        if self.specific_force is None:
            self.specific_force = np.zeros((n, 3))
        else:
            self.specific_force = np.array(self.specific_force, dtype=np.float64).reshape(n, 3)

    @property
    def num_drones(self) -> int:
        return self.position.shape[0]

    @classmethod
    def hovering(
        cls,
        params: QuadrotorParams,
        positions: np.ndarray,
        yaws: ArrayLike | None = None,
    ) -> QuadrotorState:
        """Level, at rest, rotors at hover speed (accelerometer reading +g)."""
        positions = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
        n = positions.shape[0]
        yaw = np.zeros(n) if yaws is None else np.asarray(yaws, dtype=np.float64).reshape(n)
        sf = np.zeros((n, 3))
        sf[:, 2] = params.gravity
        return cls(
            positions,
            np.zeros((n, 3)),
            quat_from_yaw(yaw),
            np.zeros((n, 3)),
            np.full((n, 4), hover_rotor_speed(params)),
            specific_force=sf,
        )

    def copy(self) -> QuadrotorState:
        assert self.specific_force is not None  # __post_init__ replaces None with zeros
        return QuadrotorState(
            self.position.copy(),
            self.velocity.copy(),
            self.quaternion.copy(),
            self.angular_velocity.copy(),
            self.rotor_speeds.copy(),
            specific_force=self.specific_force.copy(),
        )


class QuadrotorDynamics:
    """Newton-Euler quadrotor model stepped with semi-implicit (symplectic) Euler.

    Why semi-implicit Euler rather than RK4: at the default 400 Hz the step is
    12x shorter than the rotor lag and about 40x shorter than the attitude
    loop's time constant, so the integration error is far below the model
    error; velocity-then-position (symplectic) Euler does not pump energy into
    the oscillatory modes the way explicit Euler does, and it evaluates the
    forces once per step instead of four times, which matters because NumPy's
    per-call overhead, not arithmetic, dominates for small N. The parts that
    are stiff or geometric are integrated exactly instead: the rotor lag by
    its exponential solution and the attitude by the quaternion exponential
    map (constant body rate over the step), then renormalised.
    """

    def __init__(self, params: QuadrotorParams | None = None) -> None:
        self.params = params or QuadrotorParams()
        p = self.params
        self._inertia = np.array(p.inertia)
        self._drag = np.array(p.drag)
        # Rows tau_x, tau_y, tau_z of the allocation matrix, laid out for a
        # row-wise product with omega^2 [N, 4] (see the module docstring).
        self._moment_rows = p.allocation_matrix[1:][None, :, :]

    def step(
        self,
        state: QuadrotorState,
        rotor_cmd: np.ndarray,
        wind_velocity: np.ndarray | None,
        dt: float,
    ) -> np.ndarray:
        """Advance ``state`` in place by ``dt`` seconds; returns the body specific force ``[N, 3]``.

        ``rotor_cmd`` ``[N, 4]`` are rotor speed commands (rad/s, clipped to
        ``[0, max_rotor_speed]``); ``wind_velocity`` ``[N, 3]`` is the air
        velocity in the world frame (``None`` for still air). The specific
        force returned (and kept in ``state.specific_force``) is the one that
        acted during the step.
        """
        p = self.params
        r = state.rotation
        w2 = state.rotor_speeds * state.rotor_speeds

        # Forces in the body frame: thrust along +z, drag against the air-relative velocity.
        v_air = state.velocity if wind_velocity is None else state.velocity - wind_velocity
        force_body = -self._drag * rotate_inverse(r, v_air)
        force_body[:, 2] += p.k_f * w2.sum(axis=1)
        specific_force = force_body / p.mass
        accel = rotate(r, specific_force)
        accel[:, 2] -= p.gravity

        # Euler's rigid-body equations, J dw/dt = tau - w x J w (the gyroscopic term).
        omega = state.angular_velocity
        moments = (self._moment_rows * w2[:, None, :]).sum(axis=2)
        omega_dot = (moments - cross(omega, self._inertia * omega)) / self._inertia

        # Semi-implicit Euler: velocities first, positions with the new velocities.
        state.velocity += accel * dt
        state.position += state.velocity * dt
        omega += omega_dot * dt
        state.quaternion = _integrate_quaternion(state.quaternion, omega, dt)
        state.rotation = quat_to_matrix(state.quaternion, normalise=False)

        # First-order motor lag, exact for a command held over the step.
        cmd = np.clip(rotor_cmd, 0.0, p.max_rotor_speed)
        decay = math.exp(-dt / p.motor_time_constant)
        state.rotor_speeds = cmd + (state.rotor_speeds - cmd) * decay

        state.specific_force = specific_force
        return specific_force


def _integrate_quaternion(q: np.ndarray, omega_body: np.ndarray, dt: float) -> np.ndarray:
    """``q <- q (x) exp(omega dt / 2)``: exact for a body rate held constant over ``dt``."""
    rate = np.sqrt((omega_body * omega_body).sum(axis=1))
    half = 0.5 * rate * dt
    # sin(half) / rate; where the rate underflows the axis terms vanish anyway.
    s = np.sin(half) / np.maximum(rate, 1e-300)
    dw = np.cos(half)
    dx, dy, dz = s * omega_body[:, 0], s * omega_body[:, 1], s * omega_body[:, 2]
    w, x, y, z = q[:, 0], q[:, 1], q[:, 2], q[:, 3]
    out = np.empty_like(q)
    out[:, 0] = w * dw - x * dx - y * dy - z * dz
    out[:, 1] = w * dx + x * dw + y * dz - z * dy
    out[:, 2] = w * dy - x * dz + y * dw + z * dx
    out[:, 3] = w * dz + x * dy - y * dx + z * dw
    out /= np.sqrt((out * out).sum(axis=1))[:, None]
    return out
