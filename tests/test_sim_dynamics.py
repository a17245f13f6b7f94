"""Quadrotor dynamics, flight controller, wind and IMU: the flight behaviour the simulator promises."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lnn_nav.geometry import quat_to_matrix
from lnn_nav.sim.dynamics import (
    QuadrotorDynamics,
    QuadrotorParams,
    QuadrotorState,
    hover_rotor_speed,
    quat_from_rpy,
    rotmat_to_rpy,
)
from lnn_nav.sim.flight_controller import ControllerGains, Quadrotor
from lnn_nav.sim.imu import ImuModel
from lnn_nav.sim.wind import WindModel
from lnn_nav.sim.world import Conditions

CONTROL_DT = 1.0 / 15.0
START = np.array([[0.0, 0.0, 5.0]])


def fly(commands, seconds: float, yaw: float = 0.0, wind: WindModel | None = None) -> tuple[Quadrotor, np.ndarray]:
    """Fly one drone from hover at START; returns it and the world velocity after each control step."""
    quad = Quadrotor(1, wind=wind)
    quad.reset(START, [yaw])
    velocities = []
    for _ in range(round(seconds / CONTROL_DT)):
        quad.step(np.array([commands], dtype=float), CONTROL_DT)
        velocities.append(quad.velocity_world[0].copy())
    return quad, np.array(velocities)


# -- dynamics ------------------------------------------------------------------
def test_hover_rotor_speed_gives_thrust_equal_to_weight():
    params = QuadrotorParams()
    thrust = 4 * params.k_f * hover_rotor_speed(params) ** 2
    assert thrust == pytest.approx(params.mass * params.gravity, rel=1e-3)


def test_hover_state_does_not_accelerate():
    params = QuadrotorParams()
    state = QuadrotorState.hovering(params, START, [0.4])
    omega = np.full((1, 4), hover_rotor_speed(params))
    QuadrotorDynamics(params).step(state, omega, None, 0.01)
    np.testing.assert_allclose(state.velocity, 0.0, atol=1e-12)
    np.testing.assert_allclose(state.angular_velocity, 0.0, atol=1e-12)


def test_motors_off_free_fall_accelerates_at_minus_g():
    params = QuadrotorParams()
    state = QuadrotorState.hovering(params, START)
    state.rotor_speeds[:] = 0.0
    dyn = QuadrotorDynamics(params)
    sf = dyn.step(state, np.zeros((1, 4)), None, 0.01)
    np.testing.assert_allclose(state.velocity[0], [0.0, 0.0, -params.gravity * 0.01], atol=1e-12)
    np.testing.assert_allclose(sf, 0.0, atol=1e-12)  # an accelerometer in free fall reads zero


def test_motors_off_fall_reaches_the_drag_terminal_velocity():
    params = QuadrotorParams()
    state = QuadrotorState.hovering(params, START)
    state.rotor_speeds[:] = 0.0
    dyn = QuadrotorDynamics(params)
    for _ in range(int(40.0 / 0.01)):  # ~13 drag time constants (m / d_z = 2.5 s)
        dyn.step(state, np.zeros((1, 4)), None, 0.01)
    terminal = -params.mass * params.gravity / params.drag[2]
    assert state.velocity[0, 2] == pytest.approx(terminal, rel=1e-3)


def test_attitude_integration_keeps_unit_quaternions():
    params = QuadrotorParams()
    state = QuadrotorState.hovering(params, np.zeros((3, 3)))
    state.angular_velocity[:] = [[3.0, -2.0, 1.0], [0.0, 0.0, 5.0], [1e-9, 0.0, 0.0]]
    dyn = QuadrotorDynamics(params)
    omega = np.full((3, 4), hover_rotor_speed(params))
    for _ in range(400):
        dyn.step(state, omega, None, 1.0 / 400.0)
    np.testing.assert_allclose(np.linalg.norm(state.quaternion, axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(state.rotation, quat_to_matrix(state.quaternion), atol=1e-12)


def test_rpy_round_trip():
    rpy = np.array([[0.3, -0.2, 2.5], [-1.0, 0.5, -3.0]])
    q = quat_from_rpy(rpy[:, 0], rpy[:, 1], rpy[:, 2])
    np.testing.assert_allclose(rotmat_to_rpy(quat_to_matrix(q)), rpy, atol=1e-12)


# -- flight controller -----------------------------------------------------------
def test_zero_command_holds_position_for_ten_seconds():
    quad, _ = fly([0.0, 0.0, 0.0, 0.0], 10.0, yaw=0.7)
    assert np.linalg.norm(quad.position[0] - START[0]) < 0.05


def test_forward_step_reaches_three_metres_per_second_without_large_overshoot():
    _, v = fly([3.0, 0.0, 0.0, 0.0], 4.0)
    t = np.arange(1, len(v) + 1) * CONTROL_DT
    assert t[np.argmax(v[:, 0] >= 0.95 * 3.0)] <= 1.5
    assert v[:, 0].max() < 3.0 * 1.2
    assert abs(v[-1, 0] - 3.0) < 0.1
    assert np.abs(v[:, 1:]).max() < 0.1  # no cross-coupling into y or z


def test_vertical_step_reaches_two_metres_per_second_up():
    quad, v = fly([0.0, 0.0, 2.0, 0.0], 3.0)
    t = np.arange(1, len(v) + 1) * CONTROL_DT
    assert t[np.argmax(v[:, 2] >= 0.95 * 2.0)] <= 1.5
    assert v[:, 2].max() < 2.0 * 1.2
    assert abs(v[-1, 2] - 2.0) < 0.1
    assert quad.position[0, 2] > START[0, 2] + 4.0


def test_yaw_rate_command_gives_that_yaw_rate():
    quad = Quadrotor(1)
    quad.reset(START, [0.0])
    yaws = []
    for _ in range(45):
        quad.step(np.array([[0.0, 0.0, 0.0, 1.0]]), CONTROL_DT)
        yaws.append(quad.yaw[0])
    yaws = np.unwrap(yaws)
    rate = (yaws[-1] - yaws[-16]) / (15 * CONTROL_DT)  # over the last second
    assert rate == pytest.approx(1.0, rel=0.02)


@pytest.mark.parametrize(
    "yaw, command, direction",
    [
        (math.pi / 2, [2.0, 0.0], [0.0, 1.0]),  # facing north, forward is +y world
        (0.0, [0.0, 2.0], [0.0, 1.0]),  # facing east, left is +y world (FLU)
        (math.pi, [2.0, 0.0], [-1.0, 0.0]),
    ],
)
def test_body_frame_commands_follow_the_heading(yaw, command, direction):
    _, v = fly([*command, 0.0, 0.0], 3.0, yaw=yaw)
    np.testing.assert_allclose(v[-1, :2], 2.0 * np.array(direction), atol=0.1)


def test_tilt_limit_holds_for_an_extreme_command():
    quad = Quadrotor(1)
    quad.reset(START, [0.0])
    max_tilt = 0.0
    for _ in range(45):
        quad.step(np.array([[50.0, -30.0, 10.0, 5.0]]), CONTROL_DT)
        max_tilt = max(max_tilt, math.acos(quad.state.rotation[0, 2, 2]))
    assert max_tilt <= ControllerGains().max_tilt + math.radians(1.0)


def test_commands_beyond_the_limits_are_clamped():
    gains = ControllerGains()
    quad = Quadrotor(1)
    clamped = quad.controller.set_command(np.array([[30.0, 40.0, -10.0, 9.0]]))
    np.testing.assert_allclose(clamped[0], [3.6, 4.8, -gains.max_vertical_speed, gains.max_yaw_rate])


def test_flown_speed_stays_within_the_speed_limit():
    _, v = fly([20.0, 0.0, 10.0, 0.0], 8.0)
    gains = ControllerGains()
    assert np.hypot(v[:, 0], v[:, 1]).max() <= gains.max_horizontal_speed * 1.05
    assert v[:, 2].max() <= gains.max_vertical_speed * 1.05
    assert np.hypot(v[-1, 0], v[-1, 1]) > gains.max_horizontal_speed * 0.95


def test_velocity_loop_holds_a_drone_against_steady_wind():
    quad, v = fly([0.0, 0.0, 0.0, 0.0], 10.0, wind=WindModel(mean=(3.0, 0.0)))
    assert np.linalg.norm(quad.position[0] - START[0]) < 1.5
    assert np.abs(v[-15:]).max() < 0.05  # settled: the integrator carries the drag


def test_open_loop_hover_drifts_with_the_wind():
    params = QuadrotorParams()
    state = QuadrotorState.hovering(params, START)
    omega = np.full((1, 4), hover_rotor_speed(params))
    dyn = QuadrotorDynamics(params)
    wind = np.array([[3.0, 0.0, 0.0]])
    for _ in range(int(5.0 * 400)):
        dyn.step(state, omega, wind, 1.0 / 400.0)
    assert state.position[0, 0] - START[0, 0] > 5.0


def test_batched_drones_fly_exactly_as_each_flies_alone():
    rng = np.random.default_rng(3)
    n = 64
    commands = rng.uniform([-8, -8, -4, -3], [8, 8, 4, 3], size=(n, 4))  # some beyond the limits
    starts = rng.uniform([-5, -5, 2], [5, 5, 8], size=(n, 3))
    yaws = rng.uniform(-math.pi, math.pi, size=n)
    batch = Quadrotor(n)
    batch.reset(starts, yaws)
    for _ in range(5):
        batch.step(commands, CONTROL_DT)
    for i in range(n):
        alone = Quadrotor(1)
        alone.reset(starts[i : i + 1], yaws[i : i + 1])
        for _ in range(5):
            alone.step(commands[i : i + 1], CONTROL_DT)
        assert np.array_equal(alone.position[0], batch.position[i])
        assert np.array_equal(alone.quaternion[0], batch.quaternion[i])


def test_commands_of_the_wrong_shape_are_refused_with_the_expected_shape():
    quad = Quadrotor(2)
    with pytest.raises(ValueError, match=r"commands must be shaped \[2, 4\]"):
        quad.step(np.zeros((3, 4)), CONTROL_DT)


def test_resetting_some_drones_leaves_the_others_flying():
    quad = Quadrotor(3)
    quad.reset(np.zeros((3, 3)) + START, [0.0, 0.0, 0.0])
    quad.step(np.array([[2.0, 0, 0, 0]] * 3), 0.5)
    before = quad.position.copy()
    quad.reset(np.array([[9.0, 9.0, 9.0]]), [1.0], indices=[1])
    np.testing.assert_array_equal(quad.position[[0, 2]], before[[0, 2]])
    np.testing.assert_array_equal(quad.position[1], [9.0, 9.0, 9.0])
    assert quad.yaw[1] == pytest.approx(1.0)
    np.testing.assert_array_equal(quad.velocity_world[1], 0.0)


def test_body_velocity_is_world_velocity_seen_from_the_drone():
    quad, _ = fly([2.0, 0.0, 0.0, 0.0], 3.0, yaw=math.pi / 2)
    assert quad.velocity_body[0, 0] == pytest.approx(np.linalg.norm(quad.velocity_world[0]), abs=0.02)
    assert quad.velocity_heading[0] == pytest.approx([2.0, 0.0, 0.0], abs=0.1)


# -- wind --------------------------------------------------------------------------
def test_calm_wind_is_exactly_zero():
    wind = WindModel(mean=(0.0, 0.0), gust_std=0.0, rng=1, num_drones=4)
    assert not wind.sample(0.01).any()


def test_gusts_have_the_configured_mean_and_std():
    wind = WindModel(mean=(2.0, -1.0), gust_std=1.5, gust_tau=0.5, rng=0, num_drones=500)
    samples = np.array([wind.sample(0.1) for _ in range(200)])  # ~40 correlation times, 500 drones
    np.testing.assert_allclose(samples.mean(axis=(0, 1)), [2.0, -1.0, 0.0], atol=0.05)
    np.testing.assert_allclose(samples.std(axis=(0, 1)), [1.5, 1.5, 0.75], rtol=0.05)


def test_wind_from_conditions_uses_the_world_knobs():
    wind = WindModel.from_conditions(Conditions(wind_mean=(1.0, 2.0), gust_std=0.0), num_drones=2)
    np.testing.assert_array_equal(wind.sample(0.1), [[1.0, 2.0, 0.0]] * 2)


def test_wind_can_differ_per_drone():
    conditions = [Conditions(wind_mean=(1.0, 0.0)), Conditions(wind_mean=(0.0, -2.0), gust_std=0.5)]
    wind = WindModel.from_conditions(conditions, num_drones=2, rng=0)
    samples = np.array([wind.sample(0.1) for _ in range(50)])
    np.testing.assert_array_equal(samples[:, 0], [[1.0, 0.0, 0.0]] * 50)  # calm gusts stay exactly zero
    assert samples[:, 1].std(axis=0)[0] > 0.1
    wind.set_conditions([0], Conditions(wind_mean=(0.0, 0.0)))
    np.testing.assert_array_equal(wind.sample(0.1)[0], 0.0)


def test_each_drone_feels_its_own_worlds_wind():
    wind = WindModel(num_drones=2)
    wind.set_conditions([1], Conditions(wind_mean=(0.0, 4.0)))
    quad = Quadrotor(2, wind=wind)
    quad.reset(np.zeros((2, 3)) + START, [0.0, 0.0])
    quad.step(np.zeros((2, 4)), 0.5)
    assert abs(quad.position[0, 1] - quad.position[1, 1]) > 0.01  # only drone 1 is blown north
    assert np.abs(quad.position[0] - START[0]).max() < 1e-9  # calm air: drone 0 stays put


def test_wind_and_imu_are_deterministic_by_seed():
    def run(seed: int) -> np.ndarray:
        wind = WindModel((1.0, 0.0), 0.8, 1.0, rng=seed, num_drones=3)
        imu = ImuModel(rng=seed, num_drones=3)
        rows = [
            np.concatenate([wind.sample(0.05), imu.measure(np.ones((3, 3)), np.zeros((3, 3)), 0.05)], axis=1)
            for _ in range(10)
        ]
        return np.concatenate(rows)

    np.testing.assert_array_equal(run(7), run(7))
    assert not np.array_equal(run(7), run(8))


# -- IMU -------------------------------------------------------------------------
def test_imu_reads_plus_g_on_z_at_hover():
    quad, _ = fly([0.0, 0.0, 0.0, 0.0], 1.0)
    imu = ImuModel(rng=0)
    reading = np.array([imu.measure(quad.specific_force, quad.body_rates, CONTROL_DT)[0] for _ in range(200)])
    np.testing.assert_allclose(quad.specific_force[0], [0.0, 0.0, 9.81], atol=1e-6)
    bias_bound = 5 * 0.05  # five sigma of the default turn-on bias plus the noise on the mean
    np.testing.assert_allclose(reading[:, :3].mean(axis=0), [0.0, 0.0, 9.81], atol=bias_bound)
    np.testing.assert_allclose(reading[:, 3:].mean(axis=0), 0.0, atol=5 * 0.005)


def test_imu_noise_std_matches_the_configuration():
    imu = ImuModel(
        accel_noise_std=0.2,
        gyro_noise_std=0.01,
        accel_bias_std=0.0,
        gyro_bias_std=0.0,
        accel_bias_walk=0.0,
        gyro_bias_walk=0.0,
        rng=0,
        num_drones=1000,
    )
    readings = np.array([imu.measure(np.zeros((1000, 3)), np.zeros((1000, 3)), 0.01) for _ in range(20)])
    std = readings.reshape(-1, 6).std(axis=0)
    np.testing.assert_allclose(std, [0.2] * 3 + [0.01] * 3, rtol=0.03)


def test_imu_bias_walks_with_the_configured_intensity():
    imu = ImuModel(0.0, 0.0, 0.0, 0.0, accel_bias_walk=0.1, gyro_bias_walk=0.01, rng=0, num_drones=4000)
    for _ in range(100):
        reading = imu.measure(np.zeros((4000, 3)), np.zeros((4000, 3)), 0.04)
    # After 4 s the bias spread is walk * sqrt(4 s).
    np.testing.assert_allclose(reading.std(axis=0), [0.2] * 3 + [0.02] * 3, rtol=0.05)


def test_ideal_imu_returns_the_truth():
    sf, gyro = np.array([[0.1, -0.2, 9.7]]), np.array([[0.01, 0.02, -0.3]])
    np.testing.assert_array_equal(ImuModel.ideal().measure(sf, gyro, 0.1), np.concatenate([sf, gyro], axis=1))
