"""The Warp kernel behind :mod:`lnn_nav.sim.physics_kernel`: one thread per drone, all substeps of a control step.

Each line mirrors the NumPy reference (``FlightController.update`` and
``_mix`` in :mod:`lnn_nav.sim.flight_controller`, ``QuadrotorDynamics.step``
and ``_integrate_quaternion`` in :mod:`lnn_nav.sim.dynamics`,
``WindModel.sample`` in :mod:`lnn_nav.sim.wind`), in float64 and in the same
order of operations; the comments name the reference's steps. Keep the two in
step: ``tests/test_sim_physics_kernel.py`` compares them.
"""

from __future__ import annotations

import warp as wp

wp.config.log_level = wp.LOG_WARNING
wp.set_module_options({"enable_backward": False})

_PI = wp.constant(wp.float64(3.141592653589793))
_TWO_PI = wp.constant(wp.float64(6.283185307179586))


@wp.func
def _c(k: wp.array(dtype=wp.float64), i: int) -> wp.vec3d:
    return wp.vec3d(k[i], k[i + 1], k[i + 2])


@wp.func
def _wrap(angle: wp.float64) -> wp.float64:
    # (angle + pi) % (2 pi) - pi with NumPy's remainder: fmod, then into [0, 2 pi).
    m = wp.mod(angle + _PI, _TWO_PI)
    if m != wp.float64(0.0) and m < wp.float64(0.0):
        m = m + _TWO_PI
    return m - _PI


@wp.func
def _clamp3(v: wp.vec3d, lim: wp.vec3d) -> wp.vec3d:
    # np.minimum(np.maximum(v, -lim), lim)
    return wp.vec3d(
        wp.min(wp.max(v[0], -lim[0]), lim[0]),
        wp.min(wp.max(v[1], -lim[1]), lim[1]),
        wp.min(wp.max(v[2], -lim[2]), lim[2]),
    )


@wp.func
def _cross(a: wp.vec3d, b: wp.vec3d) -> wp.vec3d:
    # dynamics.cross: a[1:4] * b[2:5] - a[2:5] * b[1:4] on the doubled rows.
    return wp.vec3d(a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


@wp.func
def _dot(a: wp.vec3d, b: wp.vec3d) -> wp.float64:
    # (a * b).sum(axis=1): left to right.
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


@wp.func
def _rotate(r: wp.mat33d, v: wp.vec3d) -> wp.vec3d:
    # (r * v[:, None, :]).sum(axis=2)
    return wp.vec3d(
        r[0, 0] * v[0] + r[0, 1] * v[1] + r[0, 2] * v[2],
        r[1, 0] * v[0] + r[1, 1] * v[1] + r[1, 2] * v[2],
        r[2, 0] * v[0] + r[2, 1] * v[1] + r[2, 2] * v[2],
    )


@wp.func
def _rotate_inverse(r: wp.mat33d, v: wp.vec3d) -> wp.vec3d:
    # (r * v[:, :, None]).sum(axis=1)
    return wp.vec3d(
        r[0, 0] * v[0] + r[1, 0] * v[1] + r[2, 0] * v[2],
        r[0, 1] * v[0] + r[1, 1] * v[1] + r[2, 1] * v[2],
        r[0, 2] * v[0] + r[1, 2] * v[1] + r[2, 2] * v[2],
    )


@wp.func
def _mul(a: wp.vec3d, b: wp.vec3d) -> wp.vec3d:
    return wp.vec3d(a[0] * b[0], a[1] * b[1], a[2] * b[2])


# Columns of the per-drone buffer (physics_kernel packs and unpacks it).
B_CMD, B_POS, B_VEL, B_QUAT, B_ROT, B_OMEGA, B_ROTOR, B_SF = 0, 4, 7, 10, 14, 23, 26, 30
B_YAW_SP, B_VEL_INT, B_RATE_INT, B_WIND_MEAN, B_GUST, B_DECAY, B_SCALE, B_WIND = 33, 34, 37, 40, 43, 46, 47, 50
B_SIZE = 53


@wp.func
def _b3(b: wp.array2d(dtype=wp.float64), i: int, at: int) -> wp.vec3d:
    return wp.vec3d(b[i, at], b[i, at + 1], b[i, at + 2])


@wp.func
def _b4(b: wp.array2d(dtype=wp.float64), i: int, at: int) -> wp.vec4d:
    return wp.vec4d(b[i, at], b[i, at + 1], b[i, at + 2], b[i, at + 3])


@wp.kernel
def substeps(
    n_sub: int,
    h: wp.float64,
    motor_decay: wp.float64,
    has_wind: int,
    gusty: int,
    k: wp.array(dtype=wp.float64),
    b: wp.array2d(dtype=wp.float64),
    shocks: wp.array3d(dtype=wp.float64),
):
    i = wp.tid()
    zero = wp.float64(0.0)
    one = wp.float64(1.0)
    # Constants (physics_kernel.constants; offsets as there).
    mass = k[0]
    gravity = k[1]
    f_min = k[2]
    f_max = k[3]
    tan_tilt = k[4]
    max_yaw_err = k[5]
    vel_kp = _c(k, 6)
    vel_ki = _c(k, 9)
    vel_ilim = _c(k, 12)
    att_kp = _c(k, 15)
    max_rates = _c(k, 18)
    rate_kp = _c(k, 21)
    rate_ki = _c(k, 24)
    rate_ilim = _c(k, 27)
    inertia = _c(k, 30)
    u_min = k[33]
    u_max = k[34]
    mix_t = k[35]
    drag = _c(k, 56)
    k_f = k[59]
    max_rotor = k[72]
    two_over_kp_x = k[73]
    two_over_kp_y = k[74]

    # State into locals (the buffer's columns: B_* above).
    cmd = _b4(b, i, 0)
    pos = _b3(b, i, 4)
    vel = _b3(b, i, 7)
    qw = b[i, 10]
    qx = b[i, 11]
    qy = b[i, 12]
    qz = b[i, 13]
    r = wp.mat33d(
        b[i, 14], b[i, 15], b[i, 16],
        b[i, 17], b[i, 18], b[i, 19],
        b[i, 20], b[i, 21], b[i, 22],
    )  # fmt: skip
    omega = _b3(b, i, 23)
    rotor = _b4(b, i, 26)
    sf = wp.vec3d(zero, zero, zero)
    yaw_sp = b[i, 33]
    vel_int = _b3(b, i, 34)
    rate_int = _b3(b, i, 37)
    w_mean = _b3(b, i, 40)
    g_now = _b3(b, i, 43)
    g_decay = b[i, 46]
    g_scale = _b3(b, i, 47)
    wind = wp.vec3d(zero, zero, zero)

    for step in range(n_sub):
        # -- WindModel.sample: gust = gust * decay + scale * shocks; wind = mean + gust.
        if has_wind != 0:
            if gusty != 0:
                shock = wp.vec3d(shocks[step, i, 0], shocks[step, i, 1], shocks[step, i, 2])
                g_now = g_now * g_decay + _mul(g_scale, shock)
            wind = w_mean + g_now

        # -- FlightController.update. 1. velocity loop in the world frame.
        yaw = wp.atan2(r[1, 0], r[0, 0])
        cy = wp.cos(yaw)
        sy = wp.sin(yaw)
        v_sp = wp.vec3d(cy * cmd[0] - sy * cmd[1], sy * cmd[0] + cy * cmd[1], cmd[2])
        err = v_sp - vel
        acc_sp = _mul(vel_kp, err) + _mul(vel_ki, vel_int)
        f = mass * acc_sp
        f = wp.vec3d(f[0], f[1], f[2] + mass * gravity)
        f_z = f[2]
        sat_low = f_z <= f_min
        sat_high = f_z >= f_max
        f_z = wp.min(wp.max(f_z, f_min), f_max)
        f_xy = wp.sqrt(f[0] * f[0] + f[1] * f[1])
        f_xy_max = wp.min(f_z * tan_tilt, wp.sqrt(wp.max(f_max * f_max - f_z * f_z, zero)))
        xy_scale = wp.min(one, f_xy_max / wp.max(f_xy, wp.float64(1e-12)))
        f = wp.vec3d(f[0] * xy_scale, f[1] * xy_scale, f_z)
        # Anti-windup (a zero shortfall leaves the error as it is, as in the reference's shared branch).
        short = one - xy_scale
        err_ix = err[0] - two_over_kp_x * (acc_sp[0] * short)
        err_iy = err[1] - two_over_kp_y * (acc_sp[1] * short)
        err_iz = err[2]
        if (sat_low and err[2] <= zero) or (sat_high and err[2] >= zero):
            err_iz = zero
        vel_int = _clamp3(vel_int + wp.vec3d(err_ix, err_iy, err_iz) * h, vel_ilim)

        # 2. Desired attitude.
        yaw_sp = yaw_sp + cmd[3] * h
        lead = wp.min(wp.max(_wrap(yaw_sp - yaw), -max_yaw_err), max_yaw_err)
        yaw_sp = yaw + lead
        f_norm = wp.sqrt(_dot(f, f))
        b3_d = wp.vec3d(f[0] / f_norm, f[1] / f_norm, f[2] / f_norm)
        x_c = wp.vec3d(wp.cos(yaw_sp), wp.sin(yaw_sp), zero)
        b2_d = _cross(b3_d, x_c)
        b2_norm = wp.sqrt(_dot(b2_d, b2_d))
        b2_d = wp.vec3d(b2_d[0] / b2_norm, b2_d[1] / b2_norm, b2_d[2] / b2_norm)
        b1_d = _cross(b2_d, b3_d)
        b3 = wp.vec3d(r[0, 2], r[1, 2], r[2, 2])
        thrust = wp.max(_dot(f, b3), zero)

        # 3. Attitude P with tilt priority.
        kv = _cross(b3, b3_d)
        sin_a = wp.sqrt(_dot(kv, kv))
        cos_a = _dot(b3, b3_d)
        angle_per_sin = wp.atan2(sin_a, cos_a) / wp.max(sin_a, wp.float64(1e-300))
        e_tilt = _rotate_inverse(r, kv * angle_per_sin)
        x_b = wp.vec3d(r[0, 0], r[1, 0], r[2, 0])
        x_red = cos_a * x_b + _cross(kv, x_b) + kv * (_dot(kv, x_b) / wp.max(one + cos_a, wp.float64(1e-9)))
        yaw_err = wp.atan2(_dot(_cross(x_red, b1_d), b3_d), _dot(x_red, b1_d))
        rates_sp = _mul(att_kp, e_tilt)
        rates_sp = wp.vec3d(rates_sp[0], rates_sp[1], att_kp[2] * yaw_err)
        rates_sp = rates_sp + wp.vec3d(r[2, 0], r[2, 1], r[2, 2]) * cmd[3]
        rates_sp = _clamp3(rates_sp, max_rates)

        # 4. Rate PI.
        rate_err = rates_sp - omega
        rate_int = _clamp3(rate_int + rate_err * h, rate_ilim)
        alpha = _mul(rate_kp, rate_err) + _mul(rate_ki, rate_int)
        torque = _mul(inertia, alpha) + _cross(omega, _mul(inertia, omega))

        # -- FlightController._mix.
        span = u_max - u_min
        u0 = k[36] * torque[0] + k[40] * torque[1]
        u1 = k[37] * torque[0] + k[41] * torque[1]
        u2 = k[38] * torque[0] + k[42] * torque[1]
        u3 = k[39] * torque[0] + k[43] * torque[1]
        spread = wp.max(wp.max(wp.max(u0, u1), u2), u3) - wp.min(wp.min(wp.min(u0, u1), u2), u3)
        rp_scale = wp.min(one, span / wp.max(spread, wp.float64(1e-12)))
        u0 = u0 * rp_scale
        u1 = u1 * rp_scale
        u2 = u2 * rp_scale
        u3 = u3 * rp_scale
        rp_min = wp.min(wp.min(wp.min(u0, u1), u2), u3)
        rp_max = wp.max(wp.max(wp.max(u0, u1), u2), u3)
        u_t = wp.min(wp.max(thrust * mix_t, u_min - rp_min), u_max - rp_max)
        u0 = u0 + u_t
        u1 = u1 + u_t
        u2 = u2 + u_t
        u3 = u3 + u_t
        lo = wp.max(
            wp.max(wp.max((k[48] - u0) / k[44], (k[49] - u1) / k[45]), (k[50] - u2) / k[46]), (k[51] - u3) / k[47]
        )
        hi = wp.min(
            wp.min(wp.min((k[52] - u0) / k[44], (k[53] - u1) / k[45]), (k[54] - u2) / k[46]), (k[55] - u3) / k[47]
        )
        tau_z = wp.min(wp.max(torque[2], lo), hi)
        u0 = u0 + k[44] * tau_z
        u1 = u1 + k[45] * tau_z
        u2 = u2 + k[46] * tau_z
        u3 = u3 + k[47] * tau_z
        rotor_cmd = wp.vec4d(
            wp.sqrt(wp.min(wp.max(u0, u_min), u_max)),
            wp.sqrt(wp.min(wp.max(u1, u_min), u_max)),
            wp.sqrt(wp.min(wp.max(u2, u_min), u_max)),
            wp.sqrt(wp.min(wp.max(u3, u_min), u_max)),
        )

        # -- QuadrotorDynamics.step.
        w2 = wp.vec4d(rotor[0] * rotor[0], rotor[1] * rotor[1], rotor[2] * rotor[2], rotor[3] * rotor[3])
        v_air = vel
        if has_wind != 0:
            v_air = vel - wind
        force_body = _mul(-drag, _rotate_inverse(r, v_air))
        force_body = wp.vec3d(force_body[0], force_body[1], force_body[2] + k_f * (w2[0] + w2[1] + w2[2] + w2[3]))
        sf = wp.vec3d(force_body[0] / mass, force_body[1] / mass, force_body[2] / mass)
        accel = _rotate(r, sf)
        accel = wp.vec3d(accel[0], accel[1], accel[2] - gravity)
        moments = wp.vec3d(
            k[60] * w2[0] + k[61] * w2[1] + k[62] * w2[2] + k[63] * w2[3],
            k[64] * w2[0] + k[65] * w2[1] + k[66] * w2[2] + k[67] * w2[3],
            k[68] * w2[0] + k[69] * w2[1] + k[70] * w2[2] + k[71] * w2[3],
        )
        gyro = moments - _cross(omega, _mul(inertia, omega))
        omega_dot = wp.vec3d(gyro[0] / inertia[0], gyro[1] / inertia[1], gyro[2] / inertia[2])
        vel = vel + accel * h
        pos = pos + vel * h
        omega = omega + omega_dot * h
        # _integrate_quaternion: q <- q (x) exp(omega h / 2), renormalised.
        rate = wp.sqrt(_dot(omega, omega))
        half = wp.float64(0.5) * rate * h
        s = wp.sin(half) / wp.max(rate, wp.float64(1e-300))
        dw = wp.cos(half)
        dx = s * omega[0]
        dy = s * omega[1]
        dz = s * omega[2]
        nw = qw * dw - qx * dx - qy * dy - qz * dz
        nx = qw * dx + qx * dw + qy * dz - qz * dy
        ny = qw * dy - qx * dz + qy * dw + qz * dx
        nz = qw * dz + qx * dy - qy * dx + qz * dw
        qn = wp.sqrt(nw * nw + nx * nx + ny * ny + nz * nz)
        qw = nw / qn
        qx = nx / qn
        qy = ny / qn
        qz = nz / qn
        # geometry.quat_to_matrix(normalise=False)
        xx = qx * qx
        yy = qy * qy
        zz = qz * qz
        xy = qx * qy
        xz = qx * qz
        yz = qy * qz
        wx = qw * qx
        wy = qw * qy
        wz = qw * qz
        two = wp.float64(2.0)
        r = wp.mat33d(
            one - two * (yy + zz), two * (xy - wz), two * (xz + wy),
            two * (xy + wz), one - two * (xx + zz), two * (yz - wx),
            two * (xz - wy), two * (yz + wx), one - two * (xx + yy),
        )  # fmt: skip
        # First-order motor lag, exact for the held command.
        c0 = wp.min(wp.max(rotor_cmd[0], zero), max_rotor)
        c1 = wp.min(wp.max(rotor_cmd[1], zero), max_rotor)
        c2 = wp.min(wp.max(rotor_cmd[2], zero), max_rotor)
        c3 = wp.min(wp.max(rotor_cmd[3], zero), max_rotor)
        rotor = wp.vec4d(
            c0 + (rotor[0] - c0) * motor_decay,
            c1 + (rotor[1] - c1) * motor_decay,
            c2 + (rotor[2] - c2) * motor_decay,
            c3 + (rotor[3] - c3) * motor_decay,
        )

    # Locals back into the buffer.
    for j in range(3):
        b[i, 4 + j] = pos[j]
        b[i, 7 + j] = vel[j]
        b[i, 23 + j] = omega[j]
        b[i, 30 + j] = sf[j]
        b[i, 34 + j] = vel_int[j]
        b[i, 37 + j] = rate_int[j]
        b[i, 43 + j] = g_now[j]
        b[i, 50 + j] = wind[j]
        for m in range(3):
            b[i, 14 + 3 * j + m] = r[j, m]
    b[i, 10] = qw
    b[i, 11] = qx
    b[i, 12] = qy
    b[i, 13] = qz
    for j in range(4):
        b[i, 26 + j] = rotor[j]
    b[i, 33] = yaw_sp
