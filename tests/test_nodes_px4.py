"""PX4 side: frame conversions, the offboard state machine, the node without px4_msgs, sim configs."""

from __future__ import annotations

import math
import os
import py_compile
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from lnn_nav.geometry import quaternion_yaw
from lnn_nav.nodes.frames import (
    AIRCRAFT_BASELINK_Q,
    NED_ENU_Q,
    VEHICLE_CMD_COMPONENT_ARM_DISARM,
    VEHICLE_CMD_DO_SET_MODE,
    VEHICLE_CMD_NAV_LAND,
    OdometrySample,
    OffboardConfig,
    OffboardState,
    OffboardStateMachine,
    VehicleStatusSample,
    body_flu_velocity_to_ned,
    enu_flu_to_ned_frd_quaternion,
    enu_to_ned,
    flu_to_frd,
    frd_to_flu,
    ned_frd_to_enu_flu_quaternion,
    ned_to_enu,
    quaternion_multiply,
    yaw_enu_to_ned,
    yaw_ned_to_enu,
)

ROOT = Path(__file__).resolve().parents[1]
S2 = math.sqrt(0.5)


def _yaw_quat(yaw: float) -> np.ndarray:
    return np.array([math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)])


def _rotate(q, v) -> np.ndarray:
    qv = np.concatenate([[0.0], v])
    conj = np.asarray(q) * np.array([1, -1, -1, -1])
    return quaternion_multiply(quaternion_multiply(q, qv), conj)[1:]


# ----------------------------------------------------------------------------- frames
def test_vector_conversions_hand_cases():
    np.testing.assert_allclose(flu_to_frd([1, 2, 3]), [1, -2, -3])
    np.testing.assert_allclose(frd_to_flu([1, -2, -3]), [1, 2, 3])
    np.testing.assert_allclose(enu_to_ned([1, 2, 3]), [2, 1, -3])  # east 1, north 2, up 3
    np.testing.assert_allclose(ned_to_enu([2, 1, -3]), [1, 2, 3])
    rng = np.random.default_rng(0)
    for v in rng.normal(size=(10, 3)):
        np.testing.assert_allclose(ned_to_enu(enu_to_ned(v)), v)
        np.testing.assert_allclose(frd_to_flu(flu_to_frd(v)), v)
    with pytest.raises(ValueError, match="3-vector"):
        enu_to_ned([1, 2])


def test_static_quaternions_match_px4_ros_com():
    # NED_ENU_Q = euler(roll pi, pitch 0, yaw pi/2); AIRCRAFT_BASELINK_Q = euler(pi, 0, 0).
    np.testing.assert_allclose(NED_ENU_Q, [0, S2, S2, 0], atol=1e-12)
    np.testing.assert_allclose(AIRCRAFT_BASELINK_Q, [0, 1, 0, 0])
    # NED_ENU_Q maps the vector swap: rotating a NED vector by it gives its ENU coordinates.
    np.testing.assert_allclose(_rotate(NED_ENU_Q, [1, 2, 3]), ned_to_enu([1, 2, 3]), atol=1e-12)


def test_attitude_hand_cases():
    # Level, facing north: PX4 identity; ROS yaw +pi/2 (north is +90 degrees from east, CCW).
    np.testing.assert_allclose(ned_frd_to_enu_flu_quaternion([1, 0, 0, 0]), _yaw_quat(math.pi / 2), atol=1e-12)
    # Level, facing east: PX4 yaw +pi/2; ROS identity.
    np.testing.assert_allclose(ned_frd_to_enu_flu_quaternion(_yaw_quat(math.pi / 2)), [1, 0, 0, 0], atol=1e-12)
    np.testing.assert_allclose(enu_flu_to_ned_frd_quaternion([1, 0, 0, 0]), _yaw_quat(math.pi / 2), atol=1e-12)


def test_attitude_round_trip_and_consistency_with_vectors():
    rng = np.random.default_rng(1)
    for q in rng.normal(size=(20, 4)):
        q = q / np.linalg.norm(q)
        q = -q if q[0] < 0 else q
        q_ros = ned_frd_to_enu_flu_quaternion(q)
        np.testing.assert_allclose(enu_flu_to_ned_frd_quaternion(q_ros), q, atol=1e-12)
        # A body vector: FRD rotated to NED, then to ENU == FLU rotated to ENU.
        v_frd = rng.normal(size=3)
        expected = ned_to_enu(_rotate(q, v_frd))
        np.testing.assert_allclose(_rotate(q_ros, frd_to_flu(v_frd)), expected, atol=1e-12)
        assert yaw_ned_to_enu(quaternion_yaw(q)) == pytest.approx(quaternion_yaw(q_ros), abs=1e-9) or (
            abs(abs(quaternion_yaw(q_ros) - yaw_ned_to_enu(quaternion_yaw(q))) - 2 * math.pi) < 1e-9
        )
    with pytest.raises(ValueError, match="no orientation"):
        ned_frd_to_enu_flu_quaternion([0, 0, 0, 0])


def test_yaw_conversion():
    assert yaw_ned_to_enu(0.0) == pytest.approx(math.pi / 2)  # north
    assert yaw_ned_to_enu(math.pi / 2) == pytest.approx(0.0)  # east
    assert yaw_enu_to_ned(math.pi / 2) == pytest.approx(0.0)
    assert abs(yaw_ned_to_enu(-math.pi / 2)) == pytest.approx(math.pi)  # west
    for yaw in np.linspace(-3.1, 3.1, 13):
        assert yaw_enu_to_ned(yaw_ned_to_enu(yaw)) == pytest.approx(yaw)


def test_body_velocity_to_ned_and_yaw_rate_sign():
    v, r = body_flu_velocity_to_ned([1, 0, 0, 0], 0.0)  # facing north, forward
    np.testing.assert_allclose(v, [1, 0, 0], atol=1e-12)
    v, r = body_flu_velocity_to_ned([0, 1, 0, 0], 0.0)  # facing north, left = west
    np.testing.assert_allclose(v, [0, -1, 0], atol=1e-12)
    v, r = body_flu_velocity_to_ned([0, 0, 1, 0], 0.3)  # up = -down, whatever the heading
    np.testing.assert_allclose(v, [0, 0, -1], atol=1e-12)
    v, r = body_flu_velocity_to_ned([1, 1, 0, 0], math.pi / 2)  # facing east: forward east, left north
    np.testing.assert_allclose(v, [1, 1, 0], atol=1e-12)
    # CCW (left) turn in FLU is a negative NED yawspeed (NED yaw is clockwise positive).
    _, r = body_flu_velocity_to_ned([0, 0, 0, 0.5], 0.0)
    assert r == -0.5
    with pytest.raises(ValueError, match="4 values"):
        body_flu_velocity_to_ned([1, 2, 3], 0.0)


# ----------------------------------------------------------------------------- state machine
DT = 0.05
DISARMED = VehicleStatusSample(arming_state=1, nav_state=4)
ARMED_OFFBOARD = VehicleStatusSample(arming_state=2, nav_state=14)


def _odom(z: float = 0.0, yaw: float = 0.0) -> OdometrySample:
    return OdometrySample((0.0, 0.0, z), yaw)


def _assert_velocity_setpoint(out):
    assert out.offboard_mode is not None and out.offboard_mode.velocity and not out.offboard_mode.position
    assert out.setpoint is not None
    assert all(math.isnan(p) for p in out.setpoint.position_ned)
    assert all(math.isfinite(v) for v in out.setpoint.velocity_ned)
    assert math.isnan(out.setpoint.yaw) and math.isfinite(out.setpoint.yawspeed)


class Flight:
    """Drives a state machine tick by tick with a fake PX4."""

    def __init__(self, **config):
        self.sm = OffboardStateMachine(OffboardConfig(**config))
        self.t = 0.0
        self.log = []

    def tick(self, status, odom, cmd=None, cmd_time=None):
        out = self.sm.tick(self.t, status, odom, cmd, cmd_time)
        if out.setpoint is not None:
            _assert_velocity_setpoint(out)
        self.log.append(out)
        self.t += DT
        return out

    def to_tracking(self):
        while self.sm.state is not OffboardState.TAKEOFF:
            armed = any(c.command == VEHICLE_CMD_COMPONENT_ARM_DISARM for o in self.log for c in o.commands)
            self.tick(ARMED_OFFBOARD if armed else DISARMED, _odom())
        out = self.tick(ARMED_OFFBOARD, _odom(-2.0))
        # Up there without a command yet: tracking hovers at once (stale) until one comes.
        assert out.state is OffboardState.STALE and out.setpoint.velocity_ned == (0.0, 0.0, 0.0)


def test_waits_for_px4_then_heartbeats_before_offboard_then_arms():
    f = Flight()
    for _ in range(5):
        out = f.tick(None, None)
        assert out.state is OffboardState.WAIT_FOR_PX4 and out.offboard_mode is None and out.setpoint is None
    first_request = None
    for i in range(40):
        out = f.tick(DISARMED, _odom())
        if out.commands and first_request is None:
            first_request = i
            # Offboard first, then arm (px4_ros_com offboard_control order), in one tick.
            assert [c.command for c in out.commands] == [VEHICLE_CMD_DO_SET_MODE, VEHICLE_CMD_COMPONENT_ARM_DISARM]
            assert out.commands[0].params == (1.0, 6.0) and out.commands[1].params == (1.0,)
    heartbeats_before = sum(1 for o in f.log[5 : 5 + first_request] if o.setpoint is not None)
    assert heartbeats_before >= 10
    assert all(o.setpoint.velocity_ned == (0.0, 0.0, 0.0) for o in f.log[5 : 5 + first_request])
    # Requests repeat at request_interval (1 s = 20 ticks) while PX4 has not complied.
    request_ticks = [i for i, o in enumerate(f.log) if o.commands]
    assert len(request_ticks) == 2 and request_ticks[1] - request_ticks[0] == 20
    # Armed but not yet offboard: only the mode request is resent.
    f.t += 1.0
    out = f.tick(VehicleStatusSample(2, 4), _odom())
    assert [c.command for c in out.commands] == [VEHICLE_CMD_DO_SET_MODE]


def test_takeoff_climbs_then_tracks_commands():
    f = Flight(takeoff_altitude=2.0, takeoff_speed=0.7)
    for _ in range(12):
        f.tick(DISARMED, _odom(z=-0.1))
    out = f.tick(ARMED_OFFBOARD, _odom(z=-0.1))
    assert out.state is OffboardState.TAKEOFF
    assert out.setpoint.velocity_ned == (0.0, 0.0, -0.7)
    out = f.tick(ARMED_OFFBOARD, _odom(z=-1.5))  # 1.4 m above the start: still climbing
    assert out.state is OffboardState.TAKEOFF
    out = f.tick(ARMED_OFFBOARD, _odom(z=-2.05, yaw=math.pi / 2), cmd=[1.0, 0.0, 0.0, 0.2], cmd_time=f.t)
    assert out.state is OffboardState.TRACKING
    np.testing.assert_allclose(out.setpoint.velocity_ned, [0.0, 1.0, 0.0], atol=1e-12)  # heading east
    assert out.setpoint.yawspeed == pytest.approx(-0.2)
    assert not out.commands


@pytest.mark.parametrize(("z_ned", "expected_vz"), [(-2.0, 0.0), (-1.5, 0.5), (-2.3, -0.3), (-6.0, -1.0)])
def test_altitude_hold_steers_to_the_takeoff_height_and_ignores_the_commands_vz(z_ned, expected_vz):
    # Armed at z = 0 (NED), take-off height 2 m: the target is z = -2. expected_vz is the climb rate (up
    # positive): 0.5 m too low climbs at 0.5 m/s, far too high descends at the 1 m/s limit.
    f = Flight(altitude_hold=True, altitude_gain=1.0, max_hold_speed=1.0)
    f.to_tracking()
    out = f.tick(ARMED_OFFBOARD, _odom(z=z_ned), cmd=[1.0, 0.0, 0.8, 0.0], cmd_time=f.t)
    assert out.state is OffboardState.TRACKING
    assert out.setpoint.velocity_ned[2] == pytest.approx(-expected_vz)  # NED z: climb is negative
    assert out.setpoint.velocity_ned[0] == pytest.approx(1.0)  # the horizontal command is untouched


def test_stale_commands_hover_then_recover():
    f = Flight(stale_timeout=0.5, failsafe_timeout=3.0)
    f.to_tracking()
    cmd, sent = [1.0, 0.5, 0.0, 0.0], f.t
    out = f.tick(ARMED_OFFBOARD, _odom(-2.0), cmd, sent)
    assert out.state is OffboardState.TRACKING and out.setpoint.velocity_ned[0] == pytest.approx(1.0)
    while f.t - sent <= 0.5:
        assert f.tick(ARMED_OFFBOARD, _odom(-2.0), cmd, sent).state is OffboardState.TRACKING
    for _ in range(10):
        out = f.tick(ARMED_OFFBOARD, _odom(-2.0), cmd, sent)
        assert out.state is OffboardState.STALE and out.setpoint.velocity_ned == (0.0, 0.0, 0.0)
        assert out.setpoint.yawspeed == 0.0 and not out.commands
    out = f.tick(ARMED_OFFBOARD, _odom(-2.0), cmd, f.t)  # commands are back
    assert out.state is OffboardState.TRACKING and out.setpoint.velocity_ned[0] == pytest.approx(1.0)


@pytest.mark.parametrize("action", ["hold", "land"])
def test_failsafe_after_the_longer_timeout(action):
    f = Flight(stale_timeout=0.5, failsafe_timeout=2.0, failsafe_action=action)
    f.to_tracking()
    cmd, sent = [1.0, 0.0, 0.0, 0.0], f.t
    states = []
    while f.t - sent < 2.5:
        states.append(f.tick(ARMED_OFFBOARD, _odom(-2.0), cmd, sent))
    first_failsafe = next(o for o in states if o.state is OffboardState.FAILSAFE_ACTION)
    stale = [o for o in states if o.state is OffboardState.STALE]
    assert len(stale) >= 25  # 0.5 s .. 2.0 s of zero setpoints first
    lands = [c for o in states for c in o.commands if c.command == VEHICLE_CMD_NAV_LAND]
    if action == "hold":
        assert not lands and first_failsafe.setpoint.velocity_ned == (0.0, 0.0, 0.0)
    else:
        assert len(lands) == 1 and first_failsafe.commands[0].command == VEHICLE_CMD_NAV_LAND
    # Final: fresh commands do not resume tracking.
    out = f.tick(ARMED_OFFBOARD, _odom(-2.0), cmd, f.t)
    assert out.state is OffboardState.FAILSAFE_ACTION and out.setpoint.velocity_ned == (0.0, 0.0, 0.0)
    if action == "land":
        f.t += 1.0
        assert [c.command for c in f.tick(ARMED_OFFBOARD, _odom(-2.0)).commands] == [VEHICLE_CMD_NAV_LAND]
        landing = VehicleStatusSample(arming_state=2, nav_state=18)  # AUTO_LAND: PX4 took it
        out = f.tick(landing, _odom(-1.5))
        assert out.offboard_mode is None and out.setpoint is None and not out.commands


def test_no_command_after_takeoff_ends_in_failsafe():
    f = Flight(stale_timeout=0.5, failsafe_timeout=1.0)
    f.to_tracking()
    states = [f.tick(ARMED_OFFBOARD, _odom(-2.0)).state for _ in range(30)]
    assert states[0] is OffboardState.STALE and states[-1] is OffboardState.FAILSAFE_ACTION


def test_pilot_takeover_releases_the_vehicle():
    f = Flight()
    f.to_tracking()
    out = f.tick(VehicleStatusSample(arming_state=2, nav_state=2), _odom(-2.0), [1, 0, 0, 0], f.t)  # POSCTL
    assert out.state is OffboardState.RELEASED
    assert out.offboard_mode is None and out.setpoint is None and not out.commands
    assert f.tick(ARMED_OFFBOARD, _odom(-2.0), [1, 0, 0, 0], f.t).state is OffboardState.RELEASED


def test_config_validation():
    with pytest.raises(ValueError, match="at least 10"):
        OffboardConfig(heartbeats_before_offboard=5)
    with pytest.raises(ValueError, match="hold' or 'land"):
        OffboardConfig(failsafe_action="rtl")
    with pytest.raises(ValueError, match="stale_timeout < failsafe_timeout"):
        OffboardConfig(stale_timeout=2.0, failsafe_timeout=1.0)


# ----------------------------------------------------------------------------- node, configs
def test_node_without_px4_msgs_exits_2_with_build_hint():
    pytest.importorskip("rclpy")
    try:
        import px4_msgs  # noqa: F401

        pytest.skip("px4_msgs is installed here")
    except ImportError:
        pass
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    proc = subprocess.run(
        [sys.executable, "-m", "lnn_nav.nodes.px4_offboard"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "px4_msgs" in proc.stderr and "colcon build" in proc.stderr
    assert "github.com/PX4/px4_msgs" in proc.stderr


@pytest.mark.ros
def test_node_logs_every_state_change_and_keeps_running():
    """The node itself (real rclpy and px4_msgs, no PX4): takeoff -> stale -> tracking -> stale -> failsafe.

    rclpy refuses to log at two severities from one call site (ValueError); the state-change log once
    did exactly that (info, then warning for STALE), so the node died at the first stale command.
    """
    rclpy = pytest.importorskip("rclpy")
    pytest.importorskip("px4_msgs.msg")
    import time
    from types import SimpleNamespace

    from geometry_msgs.msg import TwistStamped
    from rclpy.context import Context
    from rclpy.parameter import Parameter

    from lnn_nav.nodes.px4_offboard import node_class

    context = Context()
    rclpy.init(context=context)
    node = None
    try:
        node = node_class()(
            context=context,
            parameter_overrides=[
                Parameter("stale_timeout", value=0.05),
                Parameter("failsafe_timeout", value=0.2),
            ],
        )

        def odometry(z: float) -> SimpleNamespace:
            return SimpleNamespace(position=[0.0, 0.0, z], q=[1.0, 0.0, 0.0, 0.0])

        seen = [node.machine.state]

        def tick() -> None:
            node._on_timer()
            if node.machine.state is not seen[-1]:
                seen.append(node.machine.state)

        node._on_status(SimpleNamespace(arming_state=1, nav_state=4))
        node._on_odometry(odometry(0.0))
        for _ in range(12):
            tick()
        node._on_status(SimpleNamespace(arming_state=2, nav_state=14))
        tick()
        node._on_odometry(odometry(-2.0))
        tick()  # up, no command yet: stale (the first warning)
        cmd = TwistStamped()
        cmd.twist.linear.x = 1.0
        node._on_cmd_vel(cmd)
        tick()
        time.sleep(0.1)
        tick()
        time.sleep(0.2)
        tick()
        assert [s.value for s in seen] == [
            "wait_for_px4",
            "heartbeat",
            "request_offboard_arm",
            "takeoff",
            "stale",
            "tracking",
            "stale",
            "failsafe_action",
        ]
        assert node.counters["vehicle_commands"] == 2 and node.counters["setpoints"] >= 16
    finally:
        if node is not None:
            node.destroy_node()
        context.try_shutdown()


def test_px4_offboard_yaml_matches_node_parameters():
    params = yaml.safe_load((ROOT / "config" / "px4_offboard.yaml").read_text())
    p = params["px4_offboard_node"]["ros__parameters"]
    assert p["rate_hz"] >= 10 and p["failsafe_action"] in ("hold", "land")
    assert p["vehicle_status_topic"] == "/fmu/out/vehicle_status_v2"  # VehicleStatus MESSAGE_VERSION 2
    OffboardConfig(
        heartbeats_before_offboard=p["heartbeats_before_offboard"],
        stale_timeout=p["stale_timeout"],
        failsafe_timeout=p["failsafe_timeout"],
        failsafe_action=p["failsafe_action"],
    )


def test_bridge_yaml_has_the_four_mappings():
    entries = yaml.safe_load((ROOT / "sim" / "bridge.yaml").read_text())
    by_ros = {e["ros_topic_name"]: e for e in entries}
    assert set(by_ros) == {"/camera/image_raw", "/camera/camera_info", "/imu/data", "/clock"}
    types = {k: (e["ros_type_name"], e["gz_type_name"]) for k, e in by_ros.items()}
    assert types == {
        "/camera/image_raw": ("sensor_msgs/msg/Image", "gz.msgs.Image"),
        "/camera/camera_info": ("sensor_msgs/msg/CameraInfo", "gz.msgs.CameraInfo"),
        "/imu/data": ("sensor_msgs/msg/Imu", "gz.msgs.IMU"),
        "/clock": ("rosgraph_msgs/msg/Clock", "gz.msgs.Clock"),
    }
    assert all(e["direction"] == "GZ_TO_ROS" for e in entries)
    for key in ("/camera/image_raw", "/camera/camera_info", "/imu/data"):
        assert by_ros[key]["gz_topic_name"].startswith("/world/default/model/x500_mono_cam_0/")


def test_gz_px4_launch_compiles(tmp_path):
    py_compile.compile(str(ROOT / "launch" / "gz_px4.launch.py"), cfile=str(tmp_path / "l.pyc"), doraise=True)


def test_console_script_registered():
    assert "px4_offboard_node = lnn_nav.nodes.px4_offboard:main" in (ROOT / "setup.py").read_text()


def test_release_reason_names_why_px4_let_go() -> None:
    # The "-> released" log line says why: PX4's latest disarming reason, or the mode it switched to.
    assert VehicleStatusSample(1, 14, disarm_reason=7).release_reason() == (
        "PX4 disarmed: no takeoff after arming (COM_DISARM_PRFLT)"
    )
    assert VehicleStatusSample(1, 18, disarm_reason=6).release_reason() == "PX4 disarmed: landing detected"
    assert VehicleStatusSample(1, 4, disarm_reason=99).release_reason() == "PX4 disarmed: reason 99"
    assert VehicleStatusSample(2, 2).release_reason() == "PX4 left offboard: nav_state 2"
