"""The PX4 offboard bridge: ``/cmd_vel`` (heading-frame FLU) -> PX4 velocity setpoints over uXRCE-DDS.

A heartbeat timer (``rate_hz``, at least 10 Hz as PX4 requires) runs
:class:`~lnn_nav.nodes.frames.OffboardStateMachine` and publishes what it
says: ``OffboardControlMode`` (velocity), ``TrajectorySetpoint`` (NED
velocity and yawspeed, position/acceleration/yaw NaN) and
``VehicleCommand`` (offboard mode, arm, land). Timestamps are microseconds
of the node clock.

``px4_msgs`` is not on PyPI: it is built from source in a colcon workspace,
and must match the PX4 version the vehicle runs. It is imported lazily, so
this module imports without it; ``main`` exits with code 2 and says how to
build it.

Topic names are parameters. PX4 publishes a message whose definition has
``MESSAGE_VERSION = N > 0`` as ``<topic>_vN``. The defaults match the PX4
that ``../shared/ros-extras`` bundles (and the ``px4_msgs`` generated from
its sources): ``VehicleStatus`` is version 2, so its topic is
``/fmu/out/vehicle_status_v2``; ``VehicleOdometry``, ``VehicleCommand``,
``TrajectorySetpoint`` and ``OffboardControlMode`` are version 0 and keep
their plain names. Other firmware versions differ (PX4 v1.14 publishes
``/fmu/out/vehicle_status``, v1.16 ``/fmu/out/vehicle_status_v1``): check
``ros2 topic list`` and set ``vehicle_status_topic`` (and any other renamed
topic) to match. A SITL instance ``N > 0`` uses the namespace ``px4_N`` and
``MAV_SYS_ID`` ``N + 1`` (``target_system``).
"""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np

from lnn_nav.geometry import quaternion_yaw

from .frames import (
    OdometrySample,
    OffboardConfig,
    OffboardState,
    OffboardStateMachine,
    Outputs,
    VehicleStatusSample,
)

NODE_NAME = "px4_offboard_node"
EXIT_NO_PX4_MSGS = 2
_WARN_EVERY_S = 5.0
_US_PER_NS = 1000
#: State changes logged as warnings (the rest at info).
_WARN_STATES = (OffboardState.STALE, OffboardState.FAILSAFE_ACTION, OffboardState.RELEASED)

PX4_MSGS_HINT = (
    "px4_msgs is not importable. It is not a pip package: build it from source in your colcon "
    "workspace, matching the PX4 version the vehicle runs (e.g. branch release/1.15 for PX4 v1.15):\n"
    "    cd ~/ros2_ws/src && git clone -b <px4 release branch> https://github.com/PX4/px4_msgs.git\n"
    "    cd ~/ros2_ws && colcon build --packages-select px4_msgs && source install/setup.bash\n"
    "then run `ros2 run lnn_nav px4_offboard_node` in that shell."
)


# The node's built-in defaults, equal to config/px4_offboard.yaml (tests/test_node_defaults.py holds them to it).
# name -> (default, description, (low, high) or None); a module-level table, so that reading it needs
# neither rclpy nor px4_msgs.
PARAMETERS: dict[str, tuple[Any, str, tuple[Any, Any] | None]] = {
    "rate_hz": (20.0, "heartbeat/setpoint rate (Hz); PX4 needs at least 2, use >= 10", (10.0, 250.0)),
    "heartbeats_before_offboard": (
        10,
        "setpoints streamed before the offboard request (PX4 rejects offboard without a stream)",
        (10, 1000),
    ),
    "request_interval": (1.0, "resend period (s) of mode/arm/land commands", (0.1, 10.0)),
    "takeoff_altitude": (2.0, "climb (m) above the arming point before tracking", (0.2, 100.0)),
    "takeoff_speed": (0.7, "climb rate (m/s) of the takeoff", (0.1, 5.0)),
    "stale_timeout": (0.5, "command age (s) after which zero velocity is sent", (0.05, 10.0)),
    "failsafe_timeout": (3.0, "command age (s) after which the failsafe action runs", (0.1, 60.0)),
    "failsafe_action": ("hold", "hold (zero velocity, stay in offboard) or land (VEHICLE_CMD_NAV_LAND)", None),
    "altitude_hold": (
        False,
        "hold the take-off height (P loop on PX4's altitude) instead of following the command's vz",
        None,
    ),
    "altitude_gain": (1.0, "altitude_hold: vertical speed (m/s) per metre of height error", (0.05, 10.0)),
    "max_hold_speed": (1.0, "altitude_hold: vertical speed limit (m/s)", (0.1, 5.0)),
    "cmd_vel_topic": ("/cmd_vel", "geometry_msgs/TwistStamped heading-frame (FLU) velocity commands", None),
    "offboard_control_mode_topic": ("/fmu/in/offboard_control_mode", "px4_msgs/OffboardControlMode topic", None),
    "trajectory_setpoint_topic": ("/fmu/in/trajectory_setpoint", "px4_msgs/TrajectorySetpoint topic", None),
    "vehicle_command_topic": ("/fmu/in/vehicle_command", "px4_msgs/VehicleCommand topic", None),
    "vehicle_status_topic": (
        "/fmu/out/vehicle_status_v2",
        "px4_msgs/VehicleStatus topic: <topic>_vN for MESSAGE_VERSION N > 0 (PX4 v1.14: /fmu/out/vehicle_status)",
        None,
    ),
    "vehicle_odometry_topic": ("/fmu/out/vehicle_odometry", "px4_msgs/VehicleOdometry topic", None),
    "target_system": (1, "MAVLink system id of the vehicle (MAV_SYS_ID)", (0, 255)),
    "target_component": (1, "MAVLink component id of the autopilot", (0, 255)),
    "source_system": (1, "MAVLink system id of this node", (0, 255)),
    "source_component": (1, "MAVLink component id of this node", (0, 255)),
}


class Px4MsgsMissing(ImportError):
    """px4_msgs cannot be imported (not built, or the workspace is not sourced)."""


def import_px4_msgs() -> Any:
    """Import ``px4_msgs.msg`` or raise :class:`Px4MsgsMissing` with the build instructions."""
    try:
        from px4_msgs import msg
    except ImportError as err:
        raise Px4MsgsMissing(f"{PX4_MSGS_HINT}\n(import error: {err})") from err
    return msg


def px4_qos() -> Any:
    """The QoS of PX4's uXRCE-DDS topics: best effort, transient local, keep last 1 (px4_ros_com's)."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(
        reliability=ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL,
        history=HistoryPolicy.KEEP_LAST,
        depth=1,
    )


def _make_node_class() -> type:
    """Build the node class on first use, so importing this module needs neither rclpy nor px4_msgs."""
    from geometry_msgs.msg import TwistStamped
    from rcl_interfaces.msg import ParameterDescriptor
    from rclpy.node import Node

    from lnn_nav.nodes.params import float_param, int_param

    px4 = import_px4_msgs()

    class Px4OffboardNode(Node):
        """Streams PX4 offboard velocity setpoints from ``/cmd_vel``; see the module docstring."""

        def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
            super().__init__(node_name, **kwargs)
            self._declare_parameters()
            p = self._param
            self.machine = OffboardStateMachine(
                OffboardConfig(
                    heartbeats_before_offboard=int(p("heartbeats_before_offboard")),
                    request_interval=float(p("request_interval")),
                    takeoff_altitude=float(p("takeoff_altitude")),
                    takeoff_speed=float(p("takeoff_speed")),
                    stale_timeout=float(p("stale_timeout")),
                    failsafe_timeout=float(p("failsafe_timeout")),
                    failsafe_action=str(p("failsafe_action")),
                    altitude_hold=bool(p("altitude_hold")),
                    altitude_gain=float(p("altitude_gain")),
                    max_hold_speed=float(p("max_hold_speed")),
                )
            )
            self._status: VehicleStatusSample | None = None
            self._odometry: OdometrySample | None = None
            self._command: np.ndarray | None = None
            self._command_time: float | None = None
            self._state = self.machine.state
            self.counters = {"setpoints": 0, "vehicle_commands": 0, "rejected_commands": 0}
            self._mode_pub = self.create_publisher(px4.OffboardControlMode, p("offboard_control_mode_topic"), px4_qos())
            self._setpoint_pub = self.create_publisher(
                px4.TrajectorySetpoint, p("trajectory_setpoint_topic"), px4_qos()
            )
            self._command_pub = self.create_publisher(px4.VehicleCommand, p("vehicle_command_topic"), px4_qos())
            self.create_subscription(px4.VehicleStatus, p("vehicle_status_topic"), self._on_status, px4_qos())
            self.create_subscription(px4.VehicleOdometry, p("vehicle_odometry_topic"), self._on_odometry, px4_qos())
            self.create_subscription(TwistStamped, p("cmd_vel_topic"), self._on_cmd_vel, 10)
            self._timer = self.create_timer(1.0 / float(p("rate_hz")), self._on_timer)
            self.get_logger().info(
                f"waiting for PX4 on {p('vehicle_status_topic')} and {p('vehicle_odometry_topic')}; "
                f"failsafe action: {p('failsafe_action')}"
            )

        # ------------------------------------------------------------- parameters
        def _declare_parameters(self) -> None:
            for name, (default, text, limits) in PARAMETERS.items():
                if limits is None:
                    descriptor = ParameterDescriptor(description=text)
                elif isinstance(default, float):
                    descriptor = float_param(text, *limits)
                else:
                    descriptor = int_param(text, *limits)
                self.declare_parameter(name, default, descriptor)

        def _param(self, name: str) -> Any:
            return self.get_parameter(name).value

        # ------------------------------------------------------------- callbacks
        def _on_status(self, msg: Any) -> None:
            self._status = VehicleStatusSample(
                int(msg.arming_state), int(msg.nav_state), int(getattr(msg, "latest_disarming_reason", 0))
            )

        def _on_odometry(self, msg: Any) -> None:
            north, east, down = (float(v) for v in msg.position)  # px4_msgs: float32[3]
            position = (north, east, down)
            q = np.asarray(msg.q, dtype=np.float64)
            if not (np.all(np.isfinite(position)) and np.all(np.isfinite(q))):
                return  # PX4 sends NaN while its estimate is invalid
            self._odometry = OdometrySample(position, quaternion_yaw(q))

        def _on_cmd_vel(self, msg: TwistStamped) -> None:
            t = msg.twist
            cmd = np.array([t.linear.x, t.linear.y, t.linear.z, t.angular.z], dtype=np.float64)
            if not np.all(np.isfinite(cmd)):
                self.counters["rejected_commands"] += 1
                self.get_logger().warning(
                    f"ignored a non-finite /cmd_vel {cmd.tolist()}", throttle_duration_sec=_WARN_EVERY_S
                )
                return
            self._command = cmd
            self._command_time = self._now_s()

        def _on_timer(self) -> None:
            out = self.machine.tick(self._now_s(), self._status, self._odometry, self._command, self._command_time)
            if out.state is not self._state:
                message = f"offboard: {self._state.value} -> {out.state.value}"
                if out.state is OffboardState.RELEASED and self._status is not None:
                    message += f" ({self._status.release_reason()})"
                # One severity per call site: rclpy raises ValueError when one line logs at two severities.
                if out.state in _WARN_STATES:
                    self.get_logger().warning(message)
                else:
                    self.get_logger().info(message)
                self._state = out.state
            self.publish(out)

        # ------------------------------------------------------------- publishing
        def _now_s(self) -> float:
            return self.get_clock().now().nanoseconds * 1e-9

        def _timestamp_us(self) -> int:
            return self.get_clock().now().nanoseconds // _US_PER_NS

        def publish(self, out: Outputs) -> None:
            """Publish one tick's outputs: mode heartbeat, setpoint, then the vehicle commands."""
            stamp = self._timestamp_us()
            if out.offboard_mode is not None:
                mode = px4.OffboardControlMode()
                mode.position = out.offboard_mode.position
                mode.velocity = out.offboard_mode.velocity
                mode.acceleration = out.offboard_mode.acceleration
                mode.attitude = out.offboard_mode.attitude
                mode.body_rate = out.offboard_mode.body_rate
                mode.timestamp = stamp
                self._mode_pub.publish(mode)
            if out.setpoint is not None:
                sp = px4.TrajectorySetpoint()
                sp.position = [float(v) for v in out.setpoint.position_ned]
                sp.velocity = [float(v) for v in out.setpoint.velocity_ned]
                sp.acceleration = [float(v) for v in out.setpoint.acceleration_ned]
                sp.jerk = [math.nan] * 3
                sp.yaw = float(out.setpoint.yaw)
                sp.yawspeed = float(out.setpoint.yawspeed)
                sp.timestamp = stamp
                self._setpoint_pub.publish(sp)
                self.counters["setpoints"] += 1
            for request in out.commands:
                cmd = px4.VehicleCommand()
                cmd.command = int(request.command)
                params = list(request.params) + [0.0] * (7 - len(request.params))
                (cmd.param1, cmd.param2, cmd.param3, cmd.param4, cmd.param5, cmd.param6, cmd.param7) = (
                    float(v) for v in params
                )
                cmd.target_system = int(self._param("target_system"))
                cmd.target_component = int(self._param("target_component"))
                cmd.source_system = int(self._param("source_system"))
                cmd.source_component = int(self._param("source_component"))
                cmd.from_external = True
                cmd.timestamp = stamp
                self._command_pub.publish(cmd)
                self.counters["vehicle_commands"] += 1
                self.get_logger().info(f"vehicle command {request.command} params {params[:2]}")

    return Px4OffboardNode


_NODE_CLASS: type | None = None


def node_class() -> type:
    """The ``Px4OffboardNode`` class (imports rclpy and px4_msgs on first call)."""
    global _NODE_CLASS
    if _NODE_CLASS is None:
        _NODE_CLASS = _make_node_class()
    return _NODE_CLASS


def main(args: list[str] | None = None) -> int:
    """``ros2 run lnn_nav px4_offboard_node``: spin until Ctrl-C; exit 2 without px4_msgs.

    On Ctrl-C the setpoint stream stops; PX4's offboard-loss failsafe
    (``COM_OBL_RC_ACT`` after ``COM_OF_LOSS_T``) then takes the vehicle.
    """
    try:
        cls = node_class()
    except Px4MsgsMissing as err:
        print(f"[{NODE_NAME}] error: {err}", file=sys.stderr)
        return EXIT_NO_PX4_MSGS
    import rclpy

    from lnn_nav.nodes.runtime import spin_until_shutdown

    rclpy.init(args=args)
    node = None
    try:
        try:
            node = cls()
        except ValueError as err:  # inconsistent parameters (OffboardConfig says which)
            print(f"[{NODE_NAME}] error: invalid parameters: {err}", file=sys.stderr)
            return 1
        spin_until_shutdown(node)
        node.get_logger().warning("stopping: the setpoint stream ends, PX4's offboard-loss failsafe takes over")
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
