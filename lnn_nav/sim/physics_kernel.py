"""The physics substeps of :meth:`Quadrotor.step` in one Warp call: flight controller, mixer, dynamics, gusts.

:class:`~lnn_nav.sim.flight_controller.Quadrotor` runs the cascade and the
rigid-body step at 400 Hz, 27 substeps per 15 Hz control step. In NumPy each
substep is ~150 operations on ``[N, 3]`` arrays, and for the few drones of
one environment their per-call overhead, not arithmetic, is the cost (about
0.4 ms a substep, 11 ms a control step: most of a single environment's step).
This kernel runs the same float64 arithmetic, operation for operation and in
the same order, one Warp thread per drone looping over the substeps; the
gusts' normal draws are taken from the same generators in the same order
before the call. What can differ from the NumPy reference is rounding: the
compiler may fuse a multiply and an add, and Warp's ``sin``/``cos``/``atan2``/
``exp`` are not NumPy's; the closed loop damps such differences (tested:
states within 1e-9 of the reference after seconds of flight in gusts).

``LNN_NAV_REFERENCE_PHYSICS=1`` (or :func:`set_reference_physics`) runs the
NumPy reference instead; so does a machine without Warp.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from lnn_nav.sim.flight_controller import Quadrotor

_reference_forced = os.environ.get("LNN_NAV_REFERENCE_PHYSICS", "") not in ("", "0")
_kernel: Any = None  # the compiled kernel, or False where Warp cannot run it
_kernel_ran = False


def set_reference_physics(force: bool) -> None:
    """Force the NumPy reference (``True``) or allow the Warp substeps (``False``)."""
    global _reference_forced
    _reference_forced = bool(force)


def reference_physics_forced() -> bool:
    return _reference_forced


# Offsets into the constants array (float64) the kernel reads.
_K_MASS, _K_GRAVITY, _K_F_MIN, _K_F_MAX, _K_TAN_TILT, _K_MAX_YAW_ERR = 0, 1, 2, 3, 4, 5
_K_VEL_KP, _K_VEL_KI, _K_VEL_ILIM, _K_ATT_KP, _K_MAX_RATES = 6, 9, 12, 15, 18
_K_RATE_KP, _K_RATE_KI, _K_RATE_ILIM, _K_INERTIA = 21, 24, 27, 30
_K_U_MIN, _K_U_MAX, _K_MIX_T = 33, 34, 35
_K_MIX_RP0, _K_MIX_RP1, _K_MIX_YAW, _K_YAW_LO, _K_YAW_HI = 36, 40, 44, 48, 52
_K_DRAG, _K_KF, _K_MOMENT, _K_MAX_ROTOR, _K_TWO_OVER_KP = 56, 59, 60, 72, 73
_K_SIZE = 75


def constants(quad: Quadrotor) -> np.ndarray:
    """The controller's and the model's constants, computed exactly as the NumPy reference holds them."""
    c, d, p = quad.controller, quad.dynamics, quad.params
    k = np.zeros(_K_SIZE)
    k[_K_MASS], k[_K_GRAVITY] = p.mass, p.gravity
    k[_K_F_MIN], k[_K_F_MAX], k[_K_TAN_TILT] = c._f_min, c._f_max, c._tan_tilt
    k[_K_MAX_YAW_ERR] = c.gains.max_yaw_error
    for at, values in (
        (_K_VEL_KP, c._vel_kp),
        (_K_VEL_KI, c._vel_ki),
        (_K_VEL_ILIM, c._vel_i_lim),
        (_K_ATT_KP, c._att_kp),
        (_K_MAX_RATES, c._max_rates),
        (_K_RATE_KP, c._rate_kp),
        (_K_RATE_KI, c._rate_ki),
        (_K_RATE_ILIM, c._rate_i_lim),
        (_K_INERTIA, c._inertia),
        (_K_MIX_RP0, c._mix_rp[0, 0]),
        (_K_MIX_RP1, c._mix_rp[0, 1]),
        (_K_MIX_YAW, c._mix_yaw),
        (_K_YAW_LO, c._yaw_lo_bound),
        (_K_YAW_HI, c._yaw_hi_bound),
        (_K_DRAG, d._drag),
        (_K_MOMENT, d._moment_rows[0].reshape(-1)),
        (_K_TWO_OVER_KP, 2.0 / c._vel_kp[:2]),
    ):
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        k[at : at + len(values)] = values
    k[_K_U_MIN], k[_K_U_MAX], k[_K_MIX_T] = c._u_min, c._u_max, c._mix_thrust[0]
    k[_K_KF], k[_K_MAX_ROTOR] = p.k_f, p.max_rotor_speed
    if not np.array_equal(c._inertia, d._inertia):
        raise ValueError("the controller and the model must share one inertia")
    return k


def _build() -> Any:
    """The Warp kernel (compiled at first use, then cached by Warp); ``False`` where Warp is missing."""
    try:
        from lnn_nav.sim import physics_warp
    except ImportError:
        return False
    return physics_warp.substeps


def _wind_shocks(quad: Quadrotor, n_sub: int) -> np.ndarray | None:
    """The gusts' standard-normal draws of ``n_sub`` substeps ``[n_sub, N, 3]``, as ``WindModel.sample`` takes them."""
    from lnn_nav.sim.noise import DroneStreams

    wind = quad.wind
    if wind is None or not wind.gust_std.any():
        return None
    n = quad.num_drones
    if isinstance(wind.rng, DroneStreams):
        # Per-drone streams: a drone draws 3 values a substep, only while gusty (as in sample()).
        shocks = np.zeros((n_sub, n, 3))
        for i in np.flatnonzero(wind.gust_std > 0).tolist():
            shocks[:, i, :] = wind.rng[i].standard_normal((n_sub, 3))
        return shocks
    # One generator: n_sub calls of standard_normal((N, 3)) give these values in this order.
    return wind.rng.standard_normal((n_sub, n, 3))


def _first_launch(kernel: Any, **kwargs: Any) -> None:
    """The first launch compiles the kernel (seconds, then cached by Warp); where that fails, the NumPy
    reference flies on, said once."""
    global _kernel, _kernel_ran
    import warp as wp

    try:
        wp.launch(kernel, **kwargs)
    except Exception as err:  # a compiler or loader error: nothing was written to the state
        warnings.warn(
            f"the Warp physics kernel could not run ({type(err).__name__}: {err}); the NumPy physics runs instead",
            RuntimeWarning,
            stacklevel=3,
        )
        _kernel = False
        raise _Unavailable from err
    _kernel_ran = True


class _Unavailable(Exception):
    pass


def try_step(quad: Quadrotor, n_sub: int, h: float) -> bool:
    """Run ``n_sub`` physics substeps of ``h`` s on ``quad`` (its command already held); False: use the reference."""
    global _kernel
    if _reference_forced:
        return False
    if _kernel is None:
        _kernel = _build()
    if _kernel is False:
        return False
    import warp as wp

    from lnn_nav.sim import physics_warp as pw

    cache = quad.__dict__.get("_physics_cache")
    if cache is None:
        consts = constants(quad)
        # The wrapper shares the constants' memory; kept with them (a Warp array costs ~40 us to make).
        cache = {"consts": consts, "k": wp.array(consts, dtype=wp.float64, device="cpu", copy=False)}
        cache["no_shocks"] = wp.zeros((1, 1, 3), dtype=wp.float64, device="cpu")
        quad.__dict__["_physics_cache"] = cache
    s, fc, wind = quad.state, quad.controller, quad.wind
    n = quad.num_drones
    for name, arr in (("position", s.position), ("velocity", s.velocity), ("angular_velocity", s.angular_velocity)):
        if arr.shape != (n, 3) or arr.dtype != np.float64:
            raise ValueError(f"state.{name} must be a float64 [{n}, 3] array")
    # One buffer in, one out: a Warp array per state field would cost more than the substeps.
    buf = np.zeros((n, pw.B_SIZE))
    buf[:, pw.B_CMD : pw.B_CMD + 4] = fc.command
    buf[:, pw.B_POS : pw.B_POS + 3] = s.position
    buf[:, pw.B_VEL : pw.B_VEL + 3] = s.velocity
    buf[:, pw.B_QUAT : pw.B_QUAT + 4] = s.quaternion
    buf[:, pw.B_ROT : pw.B_ROT + 9] = s.rotation.reshape(n, 9)
    buf[:, pw.B_OMEGA : pw.B_OMEGA + 3] = s.angular_velocity
    buf[:, pw.B_ROTOR : pw.B_ROTOR + 4] = s.rotor_speeds
    buf[:, pw.B_YAW_SP] = fc.yaw_setpoint
    buf[:, pw.B_VEL_INT : pw.B_VEL_INT + 3] = fc.vel_integral
    buf[:, pw.B_RATE_INT : pw.B_RATE_INT + 3] = fc.rate_integral
    shocks = _wind_shocks(quad, n_sub)
    gusty = shocks is not None
    if wind is not None:
        buf[:, pw.B_WIND_MEAN : pw.B_WIND_MEAN + 3] = wind.mean
        buf[:, pw.B_GUST : pw.B_GUST + 3] = wind.gust
        if gusty:
            # WindModel.sample's decay and scale, the same for every substep of one step.
            decay = np.exp(-h / wind.gust_tau)
            buf[:, pw.B_DECAY] = decay
            buf[:, pw.B_SCALE : pw.B_SCALE + 3] = wind._axis_std * np.sqrt(1.0 - decay[:, None] * decay[:, None])
    launch = wp.launch if _kernel_ran else _first_launch
    try:
        launch(
            _kernel,
            dim=n,
            inputs=[
                n_sub,
                h,
                math.exp(-h / quad.params.motor_time_constant),
                int(wind is not None),
                int(gusty),
                cache["k"],
                wp.array(buf, dtype=wp.float64, device="cpu", copy=False),
                cache["no_shocks"] if shocks is None else wp.array(shocks, dtype=wp.float64, device="cpu", copy=False),
            ],
            device="cpu",
        )
    except _Unavailable:
        return False
    # Position and velocity in place, the rest as new arrays: as the NumPy reference leaves them.
    s.position[...] = buf[:, pw.B_POS : pw.B_POS + 3]
    s.velocity[...] = buf[:, pw.B_VEL : pw.B_VEL + 3]
    s.angular_velocity[...] = buf[:, pw.B_OMEGA : pw.B_OMEGA + 3]
    s.quaternion = buf[:, pw.B_QUAT : pw.B_QUAT + 4].copy()
    s.rotation = buf[:, pw.B_ROT : pw.B_ROT + 9].reshape(n, 3, 3).copy()
    s.rotor_speeds = buf[:, pw.B_ROTOR : pw.B_ROTOR + 4].copy()
    s.specific_force = buf[:, pw.B_SF : pw.B_SF + 3].copy()
    fc.yaw_setpoint = buf[:, pw.B_YAW_SP].copy()
    fc.vel_integral = buf[:, pw.B_VEL_INT : pw.B_VEL_INT + 3].copy()
    fc.rate_integral = buf[:, pw.B_RATE_INT : pw.B_RATE_INT + 3].copy()
    if wind is not None:
        if gusty:
            wind.gust = buf[:, pw.B_GUST : pw.B_GUST + 3].copy()
        quad.wind_velocity = buf[:, pw.B_WIND : pw.B_WIND + 3].copy()
    return True
