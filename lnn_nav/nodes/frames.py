"""ROS (ENU world, FLU body) <-> PX4 (NED world, FRD body) frames, and the offboard state machine.

Pure functions and one pure class, no ROS imports: everything here is tested
without a ROS graph or PX4. Quaternions are ``(w, x, y, z)`` arrays, as in
``px4_msgs/VehicleOdometry.q`` (rotation body FRD -> world NED).

The quaternion conversions follow px4_ros_com's ``frame_transforms``
(``src/lib/frame_transforms.cpp``): ``NED_ENU_Q`` is roll pi, yaw pi/2
(a pi rotation about ``(1, 1, 0)/sqrt 2``), ``AIRCRAFT_BASELINK_Q`` is roll
pi (FRD <-> FLU), and an attitude converts as
``q_enu_flu = NED_ENU_Q * q_ned_frd * AIRCRAFT_BASELINK_Q`` (both static
rotations are their own inverse, so the same product goes back).

The policy commands ``[vx, vy, vz, yaw_rate]`` in the *heading* frame: body
FLU with roll and pitch removed (x forward along the heading, z up), yaw rate
counter-clockwise positive about up. PX4's ``TrajectorySetpoint`` takes NED
velocity and ``yawspeed`` about NED down (clockwise seen from above), so the
yaw rate flips sign.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

_SQRT_HALF = math.sqrt(0.5)
#: ENU <-> NED static rotation (w, x, y, z): pi about (1, 1, 0)/sqrt 2.
NED_ENU_Q = np.array([0.0, _SQRT_HALF, _SQRT_HALF, 0.0])
#: FRD (aircraft) <-> FLU (base_link) static rotation (w, x, y, z): pi about x.
AIRCRAFT_BASELINK_Q = np.array([0.0, 1.0, 0.0, 0.0])


# ----------------------------------------------------------------------------- vectors
def _vec3(v: ArrayLike) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64).reshape(-1)
    if a.size != 3:
        raise ValueError(f"expected a 3-vector, got {a.size} values")
    return a


def flu_to_frd(v: ArrayLike) -> np.ndarray:
    """Body FLU -> body FRD: ``(x, -y, -z)``."""
    a = _vec3(v)
    return np.array([a[0], -a[1], -a[2]])


def frd_to_flu(v: ArrayLike) -> np.ndarray:
    """Body FRD -> body FLU: ``(x, -y, -z)`` (the same reflection)."""
    return flu_to_frd(v)


def enu_to_ned(v: ArrayLike) -> np.ndarray:
    """World ENU -> world NED: ``(y, x, -z)``."""
    a = _vec3(v)
    return np.array([a[1], a[0], -a[2]])


def ned_to_enu(v: ArrayLike) -> np.ndarray:
    """World NED -> world ENU: ``(y, x, -z)`` (the same swap)."""
    return enu_to_ned(v)


# ----------------------------------------------------------------------------- quaternions
def quaternion_multiply(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """Hamilton product ``a * b`` of ``(w, x, y, z)`` quaternions."""
    w1, x1, y1, z1 = np.asarray(a, dtype=np.float64).reshape(4)
    w2, x2, y2, z2 = np.asarray(b, dtype=np.float64).reshape(4)
    return np.array(
        [
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ]
    )


def _canonical(q: np.ndarray) -> np.ndarray:
    """Unit quaternion with ``w >= 0`` (q and -q are the same rotation)."""
    n = np.linalg.norm(q)
    if not np.isfinite(n) or n < 1e-12:
        raise ValueError(f"quaternion {q.tolist()} has no orientation (zero or non-finite norm)")
    q = q / n
    return -q if q[0] < 0 else q


def ned_frd_to_enu_flu_quaternion(q_ned_frd: ArrayLike) -> np.ndarray:
    """PX4 attitude (body FRD -> NED) -> ROS attitude (body FLU -> ENU), ``w >= 0``."""
    q = quaternion_multiply(NED_ENU_Q, quaternion_multiply(q_ned_frd, AIRCRAFT_BASELINK_Q))
    return _canonical(q)


def enu_flu_to_ned_frd_quaternion(q_enu_flu: ArrayLike) -> np.ndarray:
    """ROS attitude (body FLU -> ENU) -> PX4 attitude (body FRD -> NED), ``w >= 0``."""
    q = quaternion_multiply(NED_ENU_Q, quaternion_multiply(q_enu_flu, AIRCRAFT_BASELINK_Q))
    return _canonical(q)


def wrap_angle(a: float) -> float:
    """An angle wrapped into [-pi, pi)."""
    return (a + math.pi) % (2.0 * math.pi) - math.pi


def yaw_ned_to_enu(yaw_ned: float) -> float:
    """Heading from north, clockwise (NED/FRD) -> heading from east, counter-clockwise (ENU/FLU)."""
    return wrap_angle(math.pi / 2.0 - yaw_ned)


def yaw_enu_to_ned(yaw_enu: float) -> float:
    """Heading from east, counter-clockwise (ENU/FLU) -> heading from north, clockwise (NED/FRD)."""
    return wrap_angle(math.pi / 2.0 - yaw_enu)


def body_flu_velocity_to_ned(command: ArrayLike, yaw_ned: float) -> tuple[np.ndarray, float]:
    """Heading-frame command ``[vx, vy, vz, yaw_rate]`` (FLU, CCW+) -> (NED velocity, NED yawspeed).

    ``yaw_ned`` is the vehicle's heading in NED (0 = north, +pi/2 = east).
    Forward goes along the heading, left 90 degrees counter-clockwise of it
    seen from above, up is -down; the yaw rate changes sign (NED yawspeed is
    about down, clockwise positive).
    """
    c = np.asarray(command, dtype=np.float64).reshape(-1)
    if c.size != 4:
        raise ValueError(f"command needs 4 values (vx, vy, vz, yaw_rate), got {c.size}")
    fwd, right, down = flu_to_frd(c[:3])
    cy, sy = math.cos(yaw_ned), math.sin(yaw_ned)
    velocity = np.array([cy * fwd - sy * right, sy * fwd + cy * right, down])
    return velocity, -float(c[3])


# ----------------------------------------------------------------------------- state machine
#: px4_msgs/VehicleStatus and VehicleCommand constants this module needs.
ARMING_STATE_ARMED = 2
NAVIGATION_STATE_OFFBOARD = 14
VEHICLE_CMD_NAV_LAND = 21
VEHICLE_CMD_DO_SET_MODE = 176
VEHICLE_CMD_COMPONENT_ARM_DISARM = 400
#: DO_SET_MODE parameters for offboard: param1 = 1 (custom mode), param2 = 6 (PX4 main mode OFFBOARD).
OFFBOARD_MODE_PARAMS = (1.0, 6.0)


class OffboardState(enum.Enum):
    """Where the offboard sequence stands (see :class:`OffboardStateMachine`)."""

    WAIT_FOR_PX4 = "wait_for_px4"
    HEARTBEAT = "heartbeat"
    REQUEST_OFFBOARD_ARM = "request_offboard_arm"
    TAKEOFF = "takeoff"
    TRACKING = "tracking"
    STALE = "stale"
    FAILSAFE_ACTION = "failsafe_action"
    RELEASED = "released"


#: ``px4_msgs/VehicleStatus.latest_disarming_reason`` values, for the log line when PX4 lets go.
DISARM_REASONS = {
    1: "stick gesture",
    2: "RC switch",
    3: "internal command",
    4: "external command",
    5: "mission start",
    6: "landing detected",
    7: "no takeoff after arming (COM_DISARM_PRFLT)",
    8: "kill switch",
    13: "RC button",
    14: "failsafe",
}


@dataclass(frozen=True)
class VehicleStatusSample:
    """The ``px4_msgs/VehicleStatus`` fields the state machine reads (and the disarm reason it logs)."""

    arming_state: int
    nav_state: int
    disarm_reason: int = 0  # latest_disarming_reason (0: none given)

    def release_reason(self) -> str:
        """Why PX4 no longer flies offboard for us, in words (for the ``-> released`` log line)."""
        if not self.armed:
            reason = DISARM_REASONS.get(self.disarm_reason, f"reason {self.disarm_reason}")
            return f"PX4 disarmed: {reason}"
        return f"PX4 left offboard: nav_state {self.nav_state}"

    @property
    def armed(self) -> bool:
        return self.arming_state == ARMING_STATE_ARMED

    @property
    def offboard(self) -> bool:
        return self.nav_state == NAVIGATION_STATE_OFFBOARD


@dataclass(frozen=True)
class OdometrySample:
    """PX4 local position (NED, metres) and heading (NED yaw, radians)."""

    position_ned: tuple[float, float, float]
    yaw_ned: float


@dataclass(frozen=True)
class OffboardModeFlags:
    """``px4_msgs/OffboardControlMode``: which setpoint fields PX4 should control."""

    position: bool = False
    velocity: bool = True
    acceleration: bool = False
    attitude: bool = False
    body_rate: bool = False


VELOCITY_MODE = OffboardModeFlags()
_NAN3 = (math.nan, math.nan, math.nan)


@dataclass(frozen=True)
class VelocitySetpoint:
    """``px4_msgs/TrajectorySetpoint`` for velocity control: position, acceleration and yaw NaN."""

    velocity_ned: tuple[float, float, float]
    yawspeed: float
    position_ned: tuple[float, float, float] = _NAN3
    acceleration_ned: tuple[float, float, float] = _NAN3
    yaw: float = math.nan


@dataclass(frozen=True)
class VehicleCommandRequest:
    """A ``px4_msgs/VehicleCommand`` to send: the command id and param1..param7."""

    command: int
    params: tuple[float, ...] = ()


@dataclass
class Outputs:
    """What to publish on one heartbeat tick (``None``: publish nothing of that kind)."""

    state: OffboardState
    offboard_mode: OffboardModeFlags | None = None
    setpoint: VelocitySetpoint | None = None
    commands: list[VehicleCommandRequest] = field(default_factory=list)


def _zero_setpoint() -> VelocitySetpoint:
    return VelocitySetpoint(velocity_ned=(0.0, 0.0, 0.0), yawspeed=0.0)


@dataclass
class OffboardConfig:
    """Parameters of :class:`OffboardStateMachine` (seconds, metres, m/s)."""

    heartbeats_before_offboard: int = 10
    request_interval: float = 1.0
    takeoff_altitude: float = 2.0
    takeoff_speed: float = 0.7
    takeoff_tolerance: float = 0.1
    stale_timeout: float = 0.5
    failsafe_timeout: float = 3.0
    failsafe_action: str = "hold"
    #: Hold the take-off height with a P loop on PX4's altitude instead of following the command's
    #: vz (controllers trained at one height whose vz wanders under other dynamics).
    altitude_hold: bool = False
    altitude_gain: float = 1.0  # 1/s: vertical speed per metre of height error
    max_hold_speed: float = 1.0  # m/s

    def __post_init__(self) -> None:
        if self.heartbeats_before_offboard < 10:
            raise ValueError(
                f"heartbeats_before_offboard is {self.heartbeats_before_offboard}; PX4 needs a "
                f"setpoint stream before it accepts offboard, send at least 10"
            )
        if self.failsafe_action not in ("hold", "land"):
            raise ValueError(f"failsafe_action is {self.failsafe_action!r}; expected 'hold' or 'land'")
        if not 0.0 < self.stale_timeout < self.failsafe_timeout:
            raise ValueError(
                f"need 0 < stale_timeout < failsafe_timeout, got {self.stale_timeout} and {self.failsafe_timeout}"
            )
        for name in (
            "request_interval",
            "takeoff_altitude",
            "takeoff_speed",
            "takeoff_tolerance",
            "altitude_gain",
            "max_hold_speed",
        ):
            if not getattr(self, name) > 0.0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")


class OffboardStateMachine:
    """The offboard sequence of px4_ros_com's offboard_control example, plus takeoff and fail-safes.

    ``WAIT_FOR_PX4``: nothing is published until a vehicle status and an
    odometry sample have arrived. ``HEARTBEAT``: OffboardControlMode
    (velocity) and zero-velocity setpoints stream for
    ``heartbeats_before_offboard`` ticks (PX4 refuses offboard without a
    stream). ``REQUEST_OFFBOARD_ARM``: DO_SET_MODE offboard, then ARM, resent
    every ``request_interval`` until PX4 reports armed and offboard.
    ``TAKEOFF``: climb at ``takeoff_speed`` until ``takeoff_altitude`` above
    the point where the climb began. ``TRACKING``: controller commands,
    rotated from the heading frame to NED. ``STALE``: zero velocity while the
    newest command is older than ``stale_timeout``; a fresh command resumes
    tracking. ``FAILSAFE_ACTION``: once the command is older than
    ``failsafe_timeout`` (or none came that long after takeoff): ``hold``
    streams zero velocity for good, ``land`` sends NAV_LAND (resent while PX4
    stays in offboard) and then publishes nothing. Both are final.
    ``RELEASED``: the vehicle left offboard or disarmed after the takeoff
    began (a pilot or PX4 itself took over): nothing more is published, so
    the bridge never fights the pilot for the vehicle. Final as well.
    """

    def __init__(self, config: OffboardConfig | None = None) -> None:
        self.config = config or OffboardConfig()
        self.state = OffboardState.WAIT_FOR_PX4
        self.heartbeats = 0
        self._last_request: float | None = None
        self._takeoff_start_z: float | None = None
        self._tracking_since: float | None = None

    def tick(
        self,
        now: float,
        status: VehicleStatusSample | None,
        odometry: OdometrySample | None,
        last_command: ArrayLike | None,
        last_command_time: float | None,
    ) -> Outputs:
        """Advance one heartbeat period and say what to publish. ``now`` and command time in seconds."""
        state = self.state
        if state in (OffboardState.TAKEOFF, OffboardState.TRACKING, OffboardState.STALE):
            if status is not None and not (status.armed and status.offboard):
                self.state = OffboardState.RELEASED
                return Outputs(self.state)
        if state is OffboardState.RELEASED:
            return Outputs(state)
        if state is OffboardState.WAIT_FOR_PX4:
            if status is None or odometry is None:
                return Outputs(state)
            self.state = state = OffboardState.HEARTBEAT
        if state is OffboardState.HEARTBEAT:
            if self.heartbeats >= self.config.heartbeats_before_offboard:
                self.state = state = OffboardState.REQUEST_OFFBOARD_ARM
            else:
                return self._heartbeat(state)
        if state is OffboardState.REQUEST_OFFBOARD_ARM:
            if status is not None and status.armed and status.offboard and odometry is not None:
                self._takeoff_start_z = odometry.position_ned[2]
                self.state = state = OffboardState.TAKEOFF
            else:
                out = self._heartbeat(state)
                if self._last_request is None or now - self._last_request >= self.config.request_interval:
                    self._last_request = now
                    if status is None or not status.offboard:
                        out.commands.append(VehicleCommandRequest(VEHICLE_CMD_DO_SET_MODE, OFFBOARD_MODE_PARAMS))
                    if status is None or not status.armed:
                        out.commands.append(VehicleCommandRequest(VEHICLE_CMD_COMPONENT_ARM_DISARM, (1.0,)))
                return out
        if state is OffboardState.TAKEOFF:
            if odometry is not None:
                assert self._takeoff_start_z is not None  # set when TAKEOFF was entered
                altitude = self._takeoff_start_z - odometry.position_ned[2]
            else:
                altitude = 0.0
            if altitude < self.config.takeoff_altitude - self.config.takeoff_tolerance:
                climb = VelocitySetpoint(velocity_ned=(0.0, 0.0, -self.config.takeoff_speed), yawspeed=0.0)
                return self._heartbeat(state, climb)
            self._tracking_since = now
            self.state = state = OffboardState.TRACKING
        if state is OffboardState.FAILSAFE_ACTION:
            return self._failsafe(now, status)
        # TRACKING or STALE: the command's age decides.
        since = last_command_time if last_command is not None and last_command_time is not None else None
        start = since if since is not None else self._tracking_since
        assert start is not None  # _tracking_since is set when TRACKING was entered (STALE comes after it)
        age = now - start
        if age > self.config.failsafe_timeout:
            self.state = OffboardState.FAILSAFE_ACTION
            self._last_request = None
            return self._failsafe(now, status)
        if since is None or age > self.config.stale_timeout:
            self.state = OffboardState.STALE
            return self._heartbeat(OffboardState.STALE)
        assert last_command is not None  # since is not None only with a command
        self.state = OffboardState.TRACKING
        yaw = odometry.yaw_ned if odometry is not None else 0.0
        velocity, yawspeed = body_flu_velocity_to_ned(last_command, yaw)
        if self.config.altitude_hold and odometry is not None and self._takeoff_start_z is not None:
            target = self._takeoff_start_z - self.config.takeoff_altitude  # NED: up is negative
            hold = self.config.altitude_gain * (target - odometry.position_ned[2])
            velocity[2] = min(max(hold, -self.config.max_hold_speed), self.config.max_hold_speed)
        velocity_ned = (float(velocity[0]), float(velocity[1]), float(velocity[2]))
        setpoint = VelocitySetpoint(velocity_ned=velocity_ned, yawspeed=yawspeed)
        return self._heartbeat(OffboardState.TRACKING, setpoint)

    def _heartbeat(self, state: OffboardState, setpoint: VelocitySetpoint | None = None) -> Outputs:
        self.heartbeats += 1
        return Outputs(state, VELOCITY_MODE, setpoint or _zero_setpoint())

    def _failsafe(self, now: float, status: VehicleStatusSample | None) -> Outputs:
        state = OffboardState.FAILSAFE_ACTION
        if self.config.failsafe_action == "hold":
            if status is not None and not (status.armed and status.offboard):
                self.state = OffboardState.RELEASED
                return Outputs(self.state)
            return self._heartbeat(state)
        if status is not None and not status.offboard and self._last_request is not None:
            return Outputs(state)  # PX4 took the land command: leave it alone
        # Hover until PX4 switches to land, so a lost command never leaves the vehicle without setpoints.
        out = self._heartbeat(state)
        if self._last_request is None or now - self._last_request >= self.config.request_interval:
            self._last_request = now
            out.commands.append(VehicleCommandRequest(VEHICLE_CMD_NAV_LAND))
        return out
