"""Cascaded PX4-style flight controller (velocity -> attitude -> rate -> mixer) and the `Quadrotor` it flies.

Command convention: ``[vx, vy, vz, yaw_rate]`` in the body FLU frame, as
published on ``/cmd_vel``. The horizontal part is taken in the *heading*
frame, the body frame rotated by the current yaw only (PX4 offboard
``BODY_FRD`` velocity setpoints do the same): a forward command flies
level-forward however the drone is pitched, and ``vz`` is always world up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from lnn_nav.sim import physics_kernel
from lnn_nav.sim.dynamics import (
    QuadrotorDynamics,
    QuadrotorParams,
    QuadrotorState,
    cross,
    rotate_inverse,
    rotmat_to_rpy,
)
from lnn_nav.sim.wind import WindModel


@dataclass(frozen=True)
class ControllerGains:
    """Limits and gains of the cascade, in physical units (not PX4's normalised ones).

    Velocity loop: PI giving a desired acceleration (1/s and 1/s^2); with
    ``kp = 3`` the velocity step response has a ~0.35 s time constant (95 %
    of a 3 m/s step in 0.8 s, 4 % overshoot). ``ki = kp * drag / mass`` would
    cancel the drag pole; a somewhat larger ``ki`` wins back the integral
    that the anti-windup withholds while the tilt limit saturates.
    Attitude loop: proportional, rad/s of rate per rad of error (PX4
    ``MC_ROLL_P`` 6.5, ``MC_YAW_P`` 2.8). Rate loop: PI giving angular
    acceleration (1/s and 1/s^2), multiplied by the inertia.
    """

    max_horizontal_speed: float = 6.0  # m/s
    max_vertical_speed: float = 3.0  # m/s
    max_tilt: float = math.radians(35.0)  # rad
    max_yaw_rate: float = math.radians(120.0)  # rad/s, the command limit
    max_body_rates: tuple[float, float, float] = (math.radians(220.0), math.radians(220.0), math.radians(200.0))
    max_yaw_error: float = math.radians(30.0)  # the yaw setpoint never runs further ahead (anti wind-up)
    min_thrust_ratio: float = 0.12  # of the maximum collective thrust: keeps attitude authority in descent
    vel_kp: tuple[float, float, float] = (3.0, 3.0, 4.0)
    vel_ki: tuple[float, float, float] = (1.5, 1.5, 3.0)
    vel_i_limit: float = 4.0  # m/s^2, clamp on the integral's contribution
    att_kp: tuple[float, float, float] = (8.0, 8.0, 4.0)
    rate_kp: tuple[float, float, float] = (22.0, 22.0, 10.0)
    rate_ki: tuple[float, float, float] = (6.0, 6.0, 3.0)
    rate_i_limit: float = 10.0  # rad/s^2, clamp on the integral's contribution

    def __post_init__(self) -> None:
        for name in ("max_horizontal_speed", "max_vertical_speed", "max_yaw_rate", "max_yaw_error"):
            if not getattr(self, name) > 0:
                raise ValueError(f"ControllerGains.{name} must be > 0, got {getattr(self, name)}")
        if not 0 < self.max_tilt < math.pi / 2:
            raise ValueError(f"max_tilt must be in (0, pi/2) rad, got {self.max_tilt}")
        if not 0 <= self.min_thrust_ratio < 1:
            raise ValueError(f"min_thrust_ratio must be in [0, 1), got {self.min_thrust_ratio}")


class FlightController:
    """Velocity, attitude and rate loops with a quad-X mixer, vectorised over N drones.

    Loops, all run every physics step on the held command:

    1. velocity PI -> desired acceleration, the thrust vector
       ``m (a + g e_z)`` with PX4's priorities: vertical thrust first, then the
       tilt limit and the remaining thrust budget cut the horizontal part;
    2. desired attitude from that thrust direction and the yaw setpoint
       (integrated from the yaw-rate command): Mellinger & Kumar, "Minimum
       snap trajectory generation and control for quadrotors", ICRA 2011,
       eqs. 9-10 (collective thrust is the thrust vector projected on the
       current body z);
    3. attitude P with tilt priority (Brescianini et al. 2013, as in PX4):
       the tilt error first, the heading error about the desired thrust axis
       second -> body-rate setpoint, plus the yaw-rate feedforward;
    4. rate PI -> torque ``J alpha + w x J w`` (the gyroscopic term fed forward);
    5. mixer: inverse allocation, with PX4's desaturation order (roll/pitch
       kept, thrust shifted to make room, yaw only what still fits).
    """

    def __init__(self, params: QuadrotorParams, gains: ControllerGains | None = None, num_drones: int = 1) -> None:
        self.params = params
        self.gains = gains or ControllerGains()
        self.num_drones = int(num_drones)
        g = self.gains
        self._vel_kp = np.array(g.vel_kp)
        self._vel_ki = np.array(g.vel_ki)
        self._att_kp = np.array(g.att_kp)
        self._rate_kp = np.array(g.rate_kp)
        self._rate_ki = np.array(g.rate_ki)
        self._max_rates = np.array(g.max_body_rates)
        # Integrator clamps, in integrator units (the gains' outputs are what is limited).
        self._vel_i_lim = g.vel_i_limit / np.maximum(self._vel_ki, 1e-12)
        self._rate_i_lim = g.rate_i_limit / np.maximum(self._rate_ki, 1e-12)
        self._inertia = np.array(params.inertia)
        self._tan_tilt = math.tan(g.max_tilt)
        self._f_max = params.max_total_thrust
        self._f_min = g.min_thrust_ratio * self._f_max
        # Inverse allocation: omega^2 = A^-1 [T, tau]. Columns laid out for row-wise products.
        a_inv = np.linalg.inv(params.allocation_matrix)
        self._mix_thrust = a_inv[:, 0].copy()  # [4], the same for every rotor
        self._mix_rp = a_inv[:, 1:3].T[None, :, :].copy()  # [1, 2, 4]
        self._mix_yaw = a_inv[:, 3].copy()  # [4], +/- c
        self._u_min = params.idle_rotor_speed**2
        self._u_max = params.max_rotor_speed**2
        # Per rotor, the u bound that limits tau_z from below / above (depends on the sign of c).
        self._yaw_lo_bound = np.where(self._mix_yaw > 0, self._u_min, self._u_max)
        self._yaw_hi_bound = np.where(self._mix_yaw > 0, self._u_max, self._u_min)
        self.command = np.zeros((self.num_drones, 4))
        self.yaw_setpoint = np.zeros(self.num_drones)
        self.vel_integral = np.zeros((self.num_drones, 3))
        self.rate_integral = np.zeros((self.num_drones, 3))

    def reset(self, yaws: np.ndarray, indices: np.ndarray | None = None) -> None:
        """Clear integrators and commands; the yaw setpoint starts at ``yaws``."""
        idx = slice(None) if indices is None else np.asarray(indices)
        self.command[idx] = 0.0
        self.yaw_setpoint[idx] = yaws
        self.vel_integral[idx] = 0.0
        self.rate_integral[idx] = 0.0

    def set_command(self, commands: np.ndarray) -> np.ndarray:
        """Hold ``[N, 4]`` body commands ``[vx, vy, vz, yaw_rate]``, clamped to the limits; returns the clamped copy.

        The horizontal speed is scaled down as a vector (direction kept);
        ``vz`` and the yaw rate are clipped.
        """
        cmd = _rows(commands, self.num_drones, 4, "commands").copy()
        if not np.isfinite(cmd).all():
            raise ValueError("velocity commands must be finite")
        g = self.gains
        speed = np.sqrt(cmd[:, 0] ** 2 + cmd[:, 1] ** 2)
        scale = np.minimum(1.0, g.max_horizontal_speed / np.maximum(speed, 1e-12))
        cmd[:, 0] *= scale
        cmd[:, 1] *= scale
        cmd[:, 2] = np.clip(cmd[:, 2], -g.max_vertical_speed, g.max_vertical_speed)
        cmd[:, 3] = np.clip(cmd[:, 3], -g.max_yaw_rate, g.max_yaw_rate)
        self.command = cmd
        return cmd.copy()

    def update(self, state: QuadrotorState, dt: float) -> np.ndarray:
        """One controller tick: rotor speed commands ``[N, 4]`` (rad/s) for the held command."""
        p, g = self.params, self.gains
        r = state.rotation
        cmd = self.command
        yaw = np.arctan2(r[:, 1, 0], r[:, 0, 0])
        cy, sy = np.cos(yaw), np.sin(yaw)

        # 1. Velocity loop in the world frame; the setpoint is the heading-frame command rotated by yaw.
        v_sp = np.empty((self.num_drones, 3))
        v_sp[:, 0] = cy * cmd[:, 0] - sy * cmd[:, 1]
        v_sp[:, 1] = sy * cmd[:, 0] + cy * cmd[:, 1]
        v_sp[:, 2] = cmd[:, 2]
        err = v_sp - state.velocity
        acc_sp = self._vel_kp * err + self._vel_ki * self.vel_integral
        f = p.mass * acc_sp
        f[:, 2] += p.mass * p.gravity

        # Thrust vector limits (PX4 PositionControl): vertical first, then tilt, then the total.
        f_z = f[:, 2]
        sat_low, sat_high = f_z <= self._f_min, f_z >= self._f_max
        f_z = np.minimum(np.maximum(f_z, self._f_min), self._f_max)
        f_xy = np.sqrt(f[:, 0] ** 2 + f[:, 1] ** 2)
        f_xy_max = np.minimum(f_z * self._tan_tilt, np.sqrt(np.maximum(self._f_max**2 - f_z**2, 0.0)))
        xy_scale = np.minimum(1.0, f_xy_max / np.maximum(f_xy, 1e-12))
        f[:, 0] *= xy_scale
        f[:, 1] *= xy_scale
        f[:, 2] = f_z

        # Anti-windup as in PX4 PositionControl: tracking anti-reset windup on xy
        # (Rundqwist 1990, gain 2 / kp), and no integration of z into a saturated thrust.
        err_i = err
        if (xy_scale < 1.0).any() or sat_low.any() or sat_high.any():
            err_i = err.copy()
            shortfall = acc_sp[:, :2] * (1.0 - xy_scale)[:, None]
            err_i[:, :2] -= (2.0 / self._vel_kp[:2]) * shortfall
            err_i[(sat_low & (err[:, 2] <= 0.0)) | (sat_high & (err[:, 2] >= 0.0)), 2] = 0.0
        i_lim = self._vel_i_lim
        self.vel_integral = np.minimum(np.maximum(self.vel_integral + err_i * dt, -i_lim), i_lim)

        # 2. Desired attitude: body z along the thrust vector, heading from the yaw setpoint.
        self.yaw_setpoint = self.yaw_setpoint + cmd[:, 3] * dt
        lead = np.minimum(np.maximum(_wrap(self.yaw_setpoint - yaw), -g.max_yaw_error), g.max_yaw_error)
        self.yaw_setpoint = yaw + lead
        b3_d = f / np.sqrt((f * f).sum(axis=1))[:, None]
        x_c = np.zeros((self.num_drones, 3))
        x_c[:, 0] = np.cos(self.yaw_setpoint)
        x_c[:, 1] = np.sin(self.yaw_setpoint)
        b2_d = cross(b3_d, x_c)
        b2_d /= np.sqrt((b2_d * b2_d).sum(axis=1))[:, None]
        b1_d = cross(b2_d, b3_d)
        b3 = r[:, :, 2]
        thrust = np.maximum((f * b3).sum(axis=1), 0.0)

        # 3. Attitude P with tilt priority (Brescianini, Hehn & D'Andrea, "Nonlinear quadrocopter
        # attitude control", ETH 2013; PX4 AttitudeControl): first the shortest rotation taking
        # body z to b3_d, then the heading error left about b3_d, so that a yaw error never tilts
        # the drone (which a full SO(3) error would do while turning at speed).
        k = cross(b3, b3_d)  # world axis * sin(tilt error)
        sin_a = np.sqrt((k * k).sum(axis=1))
        cos_a = (b3 * b3_d).sum(axis=1)
        angle_per_sin = np.arctan2(sin_a, cos_a) / np.maximum(sin_a, 1e-300)
        e_tilt = rotate_inverse(r, k * angle_per_sin[:, None])  # rotation vector in the body frame, z = 0
        # Body x after the tilt correction (Rodrigues, with (1 - cos) / sin^2 = 1 / (1 + cos)).
        x_b = r[:, :, 0]
        x_red = (
            cos_a[:, None] * x_b + cross(k, x_b) + k * ((k * x_b).sum(axis=1) / np.maximum(1.0 + cos_a, 1e-9))[:, None]
        )
        yaw_err = np.arctan2((cross(x_red, b1_d) * b3_d).sum(axis=1), (x_red * b1_d).sum(axis=1))
        rates_sp = self._att_kp * e_tilt
        rates_sp[:, 2] = self._att_kp[2] * yaw_err
        # Yaw-rate feedforward: the setpoint turns about world z, i.e. about R^T e_z in the
        # body frame (PX4 AttitudeControl), not about body z: they differ by the tilt.
        rates_sp += r[:, 2, :] * cmd[:, 3:4]
        rates_sp = np.minimum(np.maximum(rates_sp, -self._max_rates), self._max_rates)

        # 4. Rate PI. PX4's D term is left out: with the 30 ms rotor lag and no sensor
        # noise to filter it only added attitude overshoot in this model.
        omega = state.angular_velocity
        rate_err = rates_sp - omega
        ri_lim = self._rate_i_lim
        self.rate_integral = np.minimum(np.maximum(self.rate_integral + rate_err * dt, -ri_lim), ri_lim)
        alpha = self._rate_kp * rate_err + self._rate_ki * self.rate_integral
        torque = self._inertia * alpha + cross(omega, self._inertia * omega)

        return self._mix(thrust, torque)

    def _mix(self, thrust: np.ndarray, torque: np.ndarray) -> np.ndarray:
        """Rotor speeds for a collective thrust and body torque, desaturated like PX4's mixer.

        Roll and pitch are kept whole when they fit; the common (thrust) part
        is shifted to make room, and scaled only when the roll/pitch spread
        alone exceeds the rotor range; yaw, the weakest and least urgent
        axis, gets whatever still fits.
        """
        span = self._u_max - self._u_min
        u_rp = (self._mix_rp * torque[:, :2, None]).sum(axis=1)  # [N, 4], zero mean
        spread = u_rp.max(axis=1) - u_rp.min(axis=1)
        u_rp *= np.minimum(1.0, span / np.maximum(spread, 1e-12))[:, None]
        u_t = thrust * self._mix_thrust[0]
        u_t = np.minimum(np.maximum(u_t, self._u_min - u_rp.min(axis=1)), self._u_max - u_rp.max(axis=1))
        u = u_rp + u_t[:, None]
        # Yaw: each rotor bounds tau_z through u_i + c_i tau_z in [u_min, u_max].
        c = self._mix_yaw
        lo = ((self._yaw_lo_bound - u) / c).max(axis=1)
        hi = ((self._yaw_hi_bound - u) / c).min(axis=1)
        tau_z = np.minimum(np.maximum(torque[:, 2], lo), hi)
        u = u + c * tau_z[:, None]
        return np.sqrt(np.minimum(np.maximum(u, self._u_min), self._u_max))


def _rows(values: np.ndarray, n: int, width: int, name: str) -> np.ndarray:
    """``values`` as a float64 ``[n, width]`` array, or a ValueError naming the shapes."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size != n * width:
        raise ValueError(f"{name} must be shaped [{n}, {width}] (one row per drone), got {list(arr.shape)}")
    return arr.reshape(n, width)


def _wrap(angle: np.ndarray) -> np.ndarray:
    """Angles to [-pi, pi)."""
    return (angle + math.pi) % (2.0 * math.pi) - math.pi


class Quadrotor:
    """N quadrotors under velocity control: dynamics + flight controller + wind.

    ``step(commands, control_dt)`` holds the commands for ``control_dt`` and
    sub-steps physics and controller at ``physics_dt`` (shortened so that a
    whole number of sub-steps fills ``control_dt``). Ground contact is not
    modelled here: touching the ground is a collision for the environment.
    """

    def __init__(
        self,
        num_drones: int = 1,
        params: QuadrotorParams | None = None,
        gains: ControllerGains | None = None,
        wind: WindModel | None = None,
        physics_dt: float = 1.0 / 400.0,
    ) -> None:
        if num_drones < 1:
            raise ValueError(f"num_drones must be >= 1, got {num_drones}")
        if not 0 < physics_dt <= 0.01:
            raise ValueError(f"physics_dt must be in (0, 0.01] s (>= 100 Hz), got {physics_dt}")
        self.num_drones = int(num_drones)
        self.params = params or QuadrotorParams()
        self.dynamics = QuadrotorDynamics(self.params)
        self.controller = FlightController(self.params, gains, self.num_drones)
        self.physics_dt = float(physics_dt)
        self.wind: WindModel | None = None
        self.set_wind(wind)
        self.state = QuadrotorState.hovering(self.params, np.zeros((self.num_drones, 3)))
        self.wind_velocity = np.zeros((self.num_drones, 3))
        self.time = 0.0

    def set_wind(self, wind: WindModel | None) -> None:
        if wind is not None and wind.num_drones != self.num_drones:
            raise ValueError(f"wind model is for {wind.num_drones} drones, this Quadrotor has {self.num_drones}")
        self.wind = wind

    def reset(self, positions: np.ndarray, yaws: ArrayLike | None = None, indices: np.ndarray | None = None) -> None:
        """Hover, at rest, at ``positions`` ``[N, 3]`` with headings ``yaws`` ``[N]``.

        With ``indices``, only those drones are reset (``positions`` and
        ``yaws`` then hold one row per index); the others fly on.
        """
        if indices is None:
            self.state = QuadrotorState.hovering(self.params, _rows(positions, self.num_drones, 3, "positions"), yaws)
            self.controller.reset(self.yaw)
            if self.wind is not None:
                self.wind.reset()
            self.wind_velocity = np.zeros((self.num_drones, 3)) if self.wind is None else self.wind.current()
            self.time = 0.0
            return
        idx = np.asarray(indices).reshape(-1)
        fresh = QuadrotorState.hovering(self.params, _rows(positions, len(idx), 3, "positions"), yaws)
        s = self.state
        s.position[idx] = fresh.position
        s.velocity[idx] = fresh.velocity
        s.quaternion[idx] = fresh.quaternion
        s.angular_velocity[idx] = fresh.angular_velocity
        s.rotor_speeds[idx] = fresh.rotor_speeds
        s.rotation[idx] = fresh.rotation
        assert s.specific_force is not None  # QuadrotorState.__post_init__ replaces None with zeros
        s.specific_force[idx] = fresh.specific_force
        self.controller.reset(rotmat_to_rpy(fresh.rotation)[:, 2], idx)
        if self.wind is not None:
            self.wind.reset(idx)
            self.wind_velocity[idx] = self.wind.current()[idx]

    def step(self, commands: np.ndarray, control_dt: float) -> None:
        """Fly ``[N, 4]`` body commands ``[vx, vy, vz, yaw_rate]`` for ``control_dt`` seconds.

        Each drone's air velocity comes from ``self.wind`` (which holds one
        wind per drone, so drones in different worlds feel different winds).
        """
        if not control_dt > 0:
            raise ValueError(f"control_dt must be > 0 s, got {control_dt}")
        self.controller.set_command(commands)
        n_sub = max(1, math.ceil(control_dt / self.physics_dt - 1e-9))
        h = control_dt / n_sub
        if physics_kernel.try_step(self, n_sub, h):
            self.time += control_dt
            return
        state = self.state
        sample = None if self.wind is None else self.wind.sample
        for _ in range(n_sub):
            if sample is not None:
                self.wind_velocity = _rows(sample(h), self.num_drones, 3, "wind velocity")
            rotor_cmd = self.controller.update(state, h)
            self.dynamics.step(state, rotor_cmd, None if sample is None else self.wind_velocity, h)
        self.time += control_dt

    # -- views ----------------------------------------------------------------
    @property
    def position(self) -> np.ndarray:
        """``[N, 3]`` world ENU, m."""
        return self.state.position

    @property
    def velocity_world(self) -> np.ndarray:
        """``[N, 3]`` world ENU, m/s."""
        return self.state.velocity

    @property
    def velocity_body(self) -> np.ndarray:
        """``[N, 3]`` body FLU, m/s (what a body-frame odometry twist carries)."""
        return rotate_inverse(self.state.rotation, self.state.velocity)

    @property
    def velocity_heading(self) -> np.ndarray:
        """``[N, 3]`` in the heading frame (yaw-only rotation): the frame of the velocity commands."""
        yaw = self.yaw
        v = self.state.velocity
        c, s = np.cos(yaw), np.sin(yaw)
        return np.stack([c * v[:, 0] + s * v[:, 1], -s * v[:, 0] + c * v[:, 1], v[:, 2]], axis=1)

    @property
    def quaternion(self) -> np.ndarray:
        """``[N, 4]`` (w, x, y, z), body FLU -> world ENU."""
        return self.state.quaternion

    @property
    def yaw(self) -> np.ndarray:
        """``[N]`` heading, rad, ENU (0 = east, counter-clockwise positive)."""
        r = self.state.rotation
        return np.arctan2(r[:, 1, 0], r[:, 0, 0])

    @property
    def rpy(self) -> np.ndarray:
        """``[N, 3]`` roll, pitch, yaw (rad, z-y'-x'')."""
        return rotmat_to_rpy(self.state.rotation)

    @property
    def body_rates(self) -> np.ndarray:
        """``[N, 3]`` body FLU angular velocity, rad/s."""
        return self.state.angular_velocity

    @property
    def specific_force(self) -> np.ndarray:
        """``[N, 3]`` body FLU, m/s^2: the ideal accelerometer reading (+g on z at hover)."""
        assert self.state.specific_force is not None  # QuadrotorState.__post_init__ replaces None with zeros
        return self.state.specific_force

    @property
    def rotor_speeds(self) -> np.ndarray:
        """``[N, 4]`` rad/s, PX4 quad-X order."""
        return self.state.rotor_speeds
