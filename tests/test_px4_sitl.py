"""px4_offboard_node against real PX4 SITL (SIH, headless) through the Micro XRCE-DDS Agent.

Needs the ros-extras bundle (``../shared/ros-extras`` next to the repository, or ``$LNN_NAV_ROS_EXTRAS``)
for PX4, the agent and its loopback profile, and ``px4_msgs`` generated into this venv from the bundle's
message sources (``scripts/gen_msgs.sh``). Without them every test here skips with the reason.

Each test starts its own agent (a free UDP port) and its own PX4 instance (a free instance number >= 1,
in a temporary working directory, logger off), then ``python -m lnn_nav.nodes.px4_offboard`` with
``--ros-args`` parameters. A probe node in the test watches PX4's own status and odometry and publishes
``/cmd_vel``. PX4's DDS domain follows ``ROS_DOMAIN_ID`` (tests/conftest.py picks a random one) and
everything stays on 127.0.0.1 (the agent's Fast DDS profile, PX4's ``UXRCE_DDS_PTCFG=1``,
``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``). A flight summary is printed (``pytest -s``) and written
to ``px4_flight_summary.json`` in the test's tmp dir.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from lnn_nav.nodes import px4_sitl

pytestmark = [pytest.mark.slow, pytest.mark.ros]

ROOT = Path(__file__).resolve().parents[1]
BUNDLE_FILES = ("agent/run.sh", "agent/fastdds_localhost.xml", "px4/bin/px4", "scripts/run_px4_sih.sh")

ARMING_STATE_DISARMED = 1
ARMING_STATE_ARMED = 2
NAV_OFFBOARD = 14
NAV_AUTO_LAND = 18

RATE_HZ = 20.0
TAKEOFF_ALTITUDE = 2.0
SPEED = 1.5  # m/s of the forward and left legs
YAW_RATE = 0.6  # rad/s, CCW (FLU), to turn away from PX4's initial heading (north) before the legs
YAW_SECONDS = 2.5
FORWARD_SECONDS = 5.0
LEFT_SECONDS = 4.0
SETTLE_SECONDS = 1.0  # start of a leg left out of the tracking error (acceleration)
VELOCITY_ANGLE_TOLERANCE_DEG = 20.0
DISPLACEMENT_ANGLE_TOLERANCE_DEG = 30.0
HOLD_FROM_S = 3.5  # after the last command: past failsafe_timeout (3 s), the hold failsafe is on
HOLD_SECONDS = 3.0


# ----------------------------------------------------------------------------- requirements
def _bundle_dir() -> Path:
    env = os.environ.get("LNN_NAV_ROS_EXTRAS")
    return Path(env).resolve() if env else (ROOT.parent / "shared" / "ros-extras").resolve()


def _missing_requirement() -> str | None:
    """Why this machine cannot run PX4 SITL here, or None."""
    bundle = _bundle_dir()
    if not bundle.is_dir():
        return f"ros-extras bundle not found at {bundle} (set LNN_NAV_ROS_EXTRAS to its path)"
    missing = [f for f in BUNDLE_FILES if not (bundle / f).is_file()]
    if missing:
        return f"ros-extras bundle at {bundle} lacks {', '.join(missing)}"
    if not (Path(sys.prefix) / "lib" / "libfastrtps.so.2.14").exists():
        return f"{sys.prefix}/lib/libfastrtps.so.2.14 missing: the XRCE agent needs 'ros-jazzy-rclpy[fastrtps]'"
    try:
        import rclpy  # noqa: F401
    except ImportError as err:
        return f"rclpy not importable ({err})"
    try:
        from px4_msgs.msg import (  # noqa: F401
            OffboardControlMode,
            TrajectorySetpoint,
            VehicleCommand,
            VehicleOdometry,
            VehicleStatus,
        )
    except ImportError as err:
        return f"px4_msgs not importable ({err}); generate it with {bundle}/scripts/gen_msgs.sh"
    return None


@pytest.fixture(scope="module")
def bundle() -> Path:
    reason = _missing_requirement()
    if reason:
        pytest.skip(reason)
    return _bundle_dir()


@pytest.fixture(scope="module")
def agent_dir(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundle's agent/, or a working copy where a copy of the bundle lost its lib/ symlinks
    (:func:`lnn_nav.nodes.px4_sitl.agent_dir`)."""
    return px4_sitl.agent_dir(bundle, tmp_path_factory.mktemp("xrce"))


# ----------------------------------------------------------------------------- processes
def _udp_port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("0.0.0.0", port))  # the ports PX4 and the agent bind (bind only: nothing is sent)
        except OSError:
            return False
    return True


def _free_udp_port() -> int:
    for _ in range(50):
        port = random.randint(20000, 29999)
        if _udp_port_free(port):
            return port
    raise RuntimeError("no free UDP port for the XRCE agent")


def _px4_lock_held(instance: int) -> bool:
    """PX4 holds an flock on /tmp/px4_lock-N while instance N runs."""
    path = Path(f"/tmp/px4_lock-{instance}")
    if not path.exists():
        return False
    try:
        with open(path) as f:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(f, fcntl.LOCK_UN)
    except BlockingIOError:
        return True
    except OSError:
        return True  # another user's file: treat as taken
    return False


def _free_px4_instance() -> int:
    """An instance number >= 1 (instance 0 is everyone's default) whose lock and MAVLink ports are free."""
    candidates = list(range(1, 10))
    random.shuffle(candidates)
    for n in candidates:
        ports = (18570 + n, 14580 + n, 14280 + n, 13030 + n, 19450 + n)
        if not _px4_lock_held(n) and all(_udp_port_free(p) for p in ports):
            return n
    raise RuntimeError("no free PX4 SITL instance in 1..9")


def _remove_px4_leftovers(instance: int) -> None:
    """PX4 leaves /tmp/px4_lock-N and /tmp/px4-sock-N behind; remove ours once nobody holds the lock."""
    if _px4_lock_held(instance):
        return
    for path in (Path(f"/tmp/px4_lock-{instance}"), Path(f"/tmp/px4-sock-{instance}")):
        with contextlib.suppress(OSError):
            path.unlink()


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path} unreadable)"


def _stop_process(proc: subprocess.Popen, first: int, wait_s: float) -> int | None:
    """Send ``first`` (SIGINT/SIGTERM), then SIGKILL after ``wait_s``; the exit status of the first try."""
    if proc.poll() is not None:
        return proc.returncode
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(first)
    try:
        return proc.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
        return None


def _ros_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["ROS_LOG_DIR"] = str(tmp / "ros_log")
    env["PYTHONUNBUFFERED"] = "1"
    env["RCUTILS_LOGGING_BUFFERED_STREAM"] = "0"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


@dataclass
class Stack:
    """The agent and PX4 of one test."""

    bundle: Path
    tmp: Path
    instance: int
    agent_port: int
    workdir: Path
    agent_log: Path
    started: dict[str, float] = field(default_factory=dict)

    @property
    def target_system(self) -> int:
        return self.instance + 1  # rcS: MAV_SYS_ID = instance + 1


@pytest.fixture
def px4_stack(bundle: Path, agent_dir: Path, tmp_path: Path) -> Iterator[Stack]:
    """Agent (loopback profile) + PX4 SIH; PX4 stopped with run_px4_sih.sh stop, then the agent."""
    instance = _free_px4_instance()
    stack = Stack(
        bundle=bundle,
        tmp=tmp_path,
        instance=instance,
        agent_port=_free_udp_port(),
        workdir=tmp_path / "px4",
        agent_log=tmp_path / "agent.log",
    )
    env = _ros_env(tmp_path)
    t0 = time.monotonic()
    with open(stack.agent_log, "w") as log:
        agent = subprocess.Popen(
            [str(agent_dir / "run.sh"), sys.prefix, "udp4", "-p", str(stack.agent_port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    px4_script = str(bundle / "scripts" / "run_px4_sih.sh")
    try:
        time.sleep(0.5)
        assert agent.poll() is None, f"the XRCE agent exited at once:\n{_tail(stack.agent_log)}"
        px4_env = dict(
            env,
            PX4_UXRCE_DDS_PORT=str(stack.agent_port),
            PX4_UXRCE_DDS_NS="",  # instance N > 0 would add /px4_N: keep the node's default topic names
            PX4_PARAM_SDLOG_BACKEND="0",  # no ulog: the working dir stays small
            PX4_PARAM_UXRCE_DDS_PTCFG="1",  # localhost-only DDS participant (the script's default, stated)
            PX4_START_TIMEOUT="90",
        )
        start = subprocess.run(
            [px4_script, "start", str(stack.workdir), str(instance)],
            env=px4_env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert start.returncode == 0, f"run_px4_sih.sh start failed:\n{start.stdout}\n{start.stderr}"
        stack.started["agent_and_px4_start_s"] = round(time.monotonic() - t0, 2)
        yield stack
    finally:
        try:  # the script bounds its own waits (px4-shutdown, SIGTERM, SIGKILL)
            stop = subprocess.run(
                [px4_script, "stop", str(stack.workdir)], capture_output=True, text=True, timeout=60, env=env
            )
            if stop.returncode != 0:
                print(f"run_px4_sih.sh stop: rc {stop.returncode}\n{stop.stdout}\n{stop.stderr}")
        except subprocess.TimeoutExpired:
            print(f"run_px4_sih.sh stop did not return in 60 s; see {stack.workdir}/px4.out")
        _stop_process(agent, signal.SIGINT, 10.0)
        _remove_px4_leftovers(instance)


@pytest.fixture
def start_bridge(px4_stack: Stack) -> Iterator[Callable[..., tuple[subprocess.Popen, Path]]]:
    """Start ``python -m lnn_nav.nodes.px4_offboard --ros-args -p ...``; SIGINT it at teardown."""
    procs: list[subprocess.Popen] = []

    def start(**params: Any) -> tuple[subprocess.Popen, Path]:
        log_path = px4_stack.tmp / "px4_offboard_node.log"
        args = [sys.executable, "-m", "lnn_nav.nodes.px4_offboard", "--ros-args"]
        for name, value in params.items():
            args += ["-p", f"{name}:={value}"]
        with open(log_path, "w") as log:
            proc = subprocess.Popen(
                args,
                cwd=ROOT,
                env=_ros_env(px4_stack.tmp),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        procs.append(proc)
        return proc, log_path

    yield start
    for proc in procs:
        _stop_process(proc, signal.SIGINT, 15.0)


# ----------------------------------------------------------------------------- the probe
def heading_ned(q: tuple[float, ...]) -> float:
    """Heading (rad, NED: 0 north, +pi/2 east) of the body x axis of a body FRD -> NED quaternion (w, x, y, z)."""
    w, x, y, z = q
    north = 1.0 - 2.0 * (y * y + z * z)  # first column of the rotation matrix: body x in NED
    east = 2.0 * (x * y + w * z)
    return math.atan2(east, north)


def wrap(a: float) -> float:
    return (a + math.pi) % (2.0 * math.pi) - math.pi


@dataclass
class OdomSample:
    t: float
    position: tuple[float, ...]  # NED, m
    velocity: tuple[float, ...]  # NED, m/s
    heading: float  # NED, rad
    command: str = ""  # the /cmd_vel the probe was publishing


class Probe:
    """A test node: PX4 status + odometry in, ``/cmd_vel`` out at 20 Hz while ``command`` is set."""

    def __init__(self) -> None:
        import rclpy
        from geometry_msgs.msg import TwistStamped
        from px4_msgs.msg import VehicleOdometry, VehicleStatus
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

        self.node_proc: subprocess.Popen | None = None  # the bridge under test, once started
        self.node_log: Path | None = None
        self.px4_console: Path | None = None  # PX4's px4.out: commander and estimator lines in failures
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("px4_sitl_probe", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        qos = QoSProfile(
            reliability=ReliabilityPolicy.BEST_EFFORT,
            durability=DurabilityPolicy.TRANSIENT_LOCAL,
            history=HistoryPolicy.KEEP_LAST,
            depth=1,
        )
        status_topic = f"/fmu/out/vehicle_status_v{VehicleStatus.MESSAGE_VERSION}"
        self.node.create_subscription(VehicleStatus, status_topic, self._on_status, qos)
        self.node.create_subscription(VehicleOdometry, "/fmu/out/vehicle_odometry", self._on_odom, qos)
        self._twist = TwistStamped
        self._cmd_pub = self.node.create_publisher(TwistStamped, "/cmd_vel", 10)
        self.node.create_timer(1.0 / RATE_HZ, self._on_timer)
        self.command: tuple[float, float, float, float] | None = None
        self.status: tuple[int, int] | None = None  # (arming_state, nav_state)
        self.status_log: list[tuple[float, int, int]] = []
        self.odom: list[OdomSample] = []
        self.frames: tuple[int, int] | None = None

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()

    def _on_status(self, msg: Any) -> None:
        s = (int(msg.arming_state), int(msg.nav_state))
        if s != self.status:
            self.status_log.append((time.monotonic(), *s))
        self.status = s

    def _on_odom(self, msg: Any) -> None:
        position = tuple(float(v) for v in msg.position)
        velocity = tuple(float(v) for v in msg.velocity)
        q = tuple(float(v) for v in msg.q)
        if not all(math.isfinite(v) for v in (*position, *velocity, *q)):
            return
        self.frames = (int(msg.pose_frame), int(msg.velocity_frame))
        command = "" if self.command is None else " ".join(f"{v:g}" for v in self.command)
        self.odom.append(OdomSample(time.monotonic(), position, velocity, heading_ned(q), command))

    def _on_timer(self) -> None:
        if self.command is None:
            return
        msg = self._twist()
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.header.frame_id = "base_link"
        msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z, msg.twist.angular.z = self.command
        self._cmd_pub.publish(msg)

    # ------------------------------------------------------------------ waiting
    def describe(self) -> str:
        last = self.odom[-1] if self.odom else None
        odom = (
            f"pos {tuple(round(v, 2) for v in last.position)} vel {tuple(round(v, 2) for v in last.velocity)} "
            f"heading {math.degrees(last.heading):.0f} deg"
            if last
            else "no odometry"
        )
        px4 = f"; PX4 console:\n{_px4_console(self.px4_console)}" if self.px4_console is not None else ""
        if self.node_proc is None or self.node_log is None:
            return f"status (arming, nav) {self.status}, {odom}{px4}"
        node = "running" if self.node_proc.poll() is None else f"exited rc {self.node_proc.returncode}"
        return (
            f"status (arming, nav) {self.status}, {odom}, node {node}; node log tail:\n{_tail(self.node_log, 15)}{px4}"
        )

    def spin_until(self, condition: Callable[[], bool], timeout: float, what: str) -> float:
        """Spin until ``condition()``; the monotonic time it became true. Fails after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.02)
            if condition():
                return time.monotonic()
            if self.node_proc is not None and self.node_proc.poll() is not None:
                pytest.fail(f"px4_offboard_node exited while waiting for {what}: {self.describe()}")
        pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}: {self.describe()}")

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.02)

    # ------------------------------------------------------------------ readings
    def armed_offboard(self) -> bool:
        return self.status == (ARMING_STATE_ARMED, NAV_OFFBOARD)

    def latest(self) -> OdomSample:
        assert self.odom, "no odometry"
        return self.odom[-1]

    def since(self, t: float) -> list[OdomSample]:
        return [o for o in self.odom if o.t >= t]


@pytest.fixture
def probe(px4_stack: Stack) -> Iterator[Probe]:
    """The test's own node, up before the bridge starts (so it sees the whole sequence)."""
    node = Probe()
    node.px4_console = px4_stack.workdir / "px4.out"
    try:
        yield node
    finally:
        node.close()


def _px4_console(path: Path, lines: int = 15) -> str:
    """PX4's console lines past start-up (commander, estimator, failsafe), without the DDS topic list."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError as err:
        return f"(cannot read {path}: {err})"
    kept = [line for line in text if line.strip() and "uxrce_dds_client] successfully created" not in line]
    return "\n".join(kept[-lines:])


# ----------------------------------------------------------------------------- flight phases
class _GroundDisarm(Exception):
    """PX4 disarmed on the ground after arming, before the climb: PX4's doing, not the bridge's."""


def _to_altitude(
    probe: Probe, start_bridge: Callable[..., tuple[subprocess.Popen, Path]], summary: dict[str, Any], **params: Any
) -> tuple[float, subprocess.Popen, Path]:
    """Start the bridge with ``params``, see PX4 offboard + armed and climbed to the takeoff altitude.

    Returns the takeoff's start z (NED) and the bridge's process and log. Under a heavily loaded machine
    PX4 SIH has been seen (once in CI) to disarm on the ground seconds after arming, its estimate 30 m off,
    before any climb; the bridge then correctly reports ``released``. That start is retried once with a
    new bridge, and the retry and PX4's console are kept in the flight summary.
    """
    for attempt in (1, 2):
        t_node = time.monotonic()
        proc, log = start_bridge(**params)
        probe.node_proc, probe.node_log = proc, log
        try:
            return _climb(probe, t_node, summary), proc, log
        except _GroundDisarm as err:
            if attempt == 2:
                pytest.fail(f"PX4 disarmed on the ground before the climb, twice: {err}")
            summary["ground_disarm_retry"] = str(err)
            print(f"PX4 disarmed on the ground before the climb; starting the bridge again: {err}")
            _stop_process(proc, signal.SIGINT, 15.0)
    raise AssertionError("unreachable")


def _climb(probe: Probe, t_node: float, summary: dict[str, Any]) -> float:
    t_seen = probe.spin_until(lambda: probe.status is not None and bool(probe.odom), 60, "PX4 status and odometry")
    assert probe.frames == (1, 1), f"odometry frames (pose, velocity) {probe.frames}; expected NED (1, 1)"
    t_arm = probe.spin_until(lambda: probe.status is not None and probe.status[0] == ARMING_STATE_ARMED, 60, "arming")
    z_ground = probe.latest().position[2]  # where the climb starts (EKF2's z drifts a little on the ground)
    t_off = probe.spin_until(lambda: probe.status is not None and probe.status[1] == NAV_OFFBOARD, 30, "offboard")
    t_both = probe.spin_until(probe.armed_offboard, 30, "armed and in offboard together")
    target = z_ground - TAKEOFF_ALTITUDE

    def climbed() -> bool:
        z = probe.latest().position[2]
        if probe.status is not None and probe.status[0] == ARMING_STATE_DISARMED and z_ground - z < 0.3:
            raise _GroundDisarm(probe.describe())
        return z <= target + 0.15

    t_top = probe.spin_until(climbed, 60, f"climb to {TAKEOFF_ALTITUDE} m (z {target:.2f} NED)")
    # Settle: the bridge hovers (zero command) once up.
    probe.spin_until(lambda: abs(probe.latest().velocity[2]) < 0.15, 15, "vertical speed to settle after the climb")
    summary.update(
        px4_seen_s=round(t_seen - t_node, 2),
        armed_s=round(t_arm - t_node, 2),
        offboard_s=round(t_off - t_node, 2),
        armed_and_offboard_s=round(t_both - t_node, 2),
        climb_s=round(t_top - t_both, 2),
        climb_m=round(z_ground - probe.latest().position[2], 2),
    )
    assert probe.armed_offboard(), probe.describe()
    return z_ground


def _leg(probe: Probe, command: tuple[float, float, float, float], seconds: float) -> list[OdomSample]:
    t0 = time.monotonic()
    probe.command = command
    probe.spin_for(seconds)
    assert probe.armed_offboard(), f"left offboard during the leg {command}: {probe.describe()}"
    return probe.since(t0)


def _leg_figures(samples: list[OdomSample], body: tuple[float, float]) -> dict[str, float]:
    """Direction of travel against the heading, distance and velocity tracking error of one leg.

    ``body`` is the commanded (forward, left) velocity. PX4's velocity setpoint for it at heading h is
    north = f cos h + l sin h, east = f sin h - l cos h (left is 90 degrees counter-clockwise of the
    heading seen from above, i.e. heading - 90 degrees in NED). The direction is measured twice from
    PX4's odometry: the position displacement over the leg, and the mean velocity once settled (EKF2's
    position wanders with the simulated GPS by up to about 0.3 m/s; its velocity does not).
    """
    start, end = samples[0], samples[-1]
    dn, de = end.position[0] - start.position[0], end.position[1] - start.position[1]
    heading = math.atan2(
        sum(math.sin(s.heading) for s in samples), sum(math.cos(s.heading) for s in samples)
    )  # circular mean over the leg
    expected = wrap(heading + math.atan2(-body[1], body[0]))
    direction = math.atan2(de, dn)
    settled = [s for s in samples if s.t >= start.t + SETTLE_SECONDS]
    assert settled, "no odometry in the settled part of the leg"
    f, left = body
    errors = []
    for s in settled:
        vn = f * math.cos(s.heading) + left * math.sin(s.heading)
        ve = f * math.sin(s.heading) - left * math.cos(s.heading)
        errors.append((s.velocity[0] - vn) ** 2 + (s.velocity[1] - ve) ** 2 + s.velocity[2] ** 2)
    mean_vn = sum(s.velocity[0] for s in settled) / len(settled)
    mean_ve = sum(s.velocity[1] for s in settled) / len(settled)
    velocity_direction = math.atan2(mean_ve, mean_vn)
    return {
        "heading_deg": round(math.degrees(heading), 1),
        "expected_direction_deg": round(math.degrees(expected), 1),
        "displacement_direction_deg": round(math.degrees(direction), 1),
        "displacement_direction_error_deg": round(math.degrees(abs(wrap(direction - expected))), 1),
        "displacement_m": round(math.hypot(dn, de), 2),
        "velocity_direction_deg": round(math.degrees(velocity_direction), 1),
        "velocity_direction_error_deg": round(math.degrees(abs(wrap(velocity_direction - expected))), 1),
        "settled_speed_mps": round(math.hypot(mean_vn, mean_ve), 2),
        "tracking_rms_mps": round(math.sqrt(sum(errors) / len(errors)), 3),
        "altitude_change_m": round(start.position[2] - end.position[2], 2),
        "heading_change_deg": round(math.degrees(wrap(end.heading - start.heading)), 1),
        "samples": len(samples),
    }


def _report(summary: dict[str, Any], probe: Probe, tmp: Path) -> None:
    """Print the summary and write it, with PX4's odometry and status changes, under the test's tmp dir."""
    t0 = probe.odom[0].t if probe.odom else 0.0
    with open(tmp / "px4_odometry.csv", "w") as f:
        f.write("t,north,east,down,v_north,v_east,v_down,heading_deg,command\n")
        for s in probe.odom:
            row = [s.t - t0, *s.position, *s.velocity, math.degrees(s.heading)]
            f.write(",".join(f"{v:.3f}" for v in row) + f",{s.command}\n")
    path = tmp / "px4_flight_summary.json"
    path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nPX4 SIH flight summary ({path}):\n{json.dumps(summary, indent=2)}")


def _node_log_has(log: Path, *fragments: str) -> None:
    text = log.read_text(errors="replace")
    for fragment in fragments:
        assert fragment in text, f"{fragment!r} not in the node log:\n{_tail(log, 30)}"


def _stop_node(proc: subprocess.Popen, log: Path) -> None:
    rc = _stop_process(proc, signal.SIGINT, 15.0)
    assert rc == 0, f"px4_offboard_node did not exit cleanly on SIGINT (rc {rc}):\n{_tail(log)}"


# ----------------------------------------------------------------------------- tests
def test_bridge_defaults_match_the_bundled_px4_topic_names(bundle: Path) -> None:
    """The node's default topics are the ones this PX4 publishes (<topic>_vN for MESSAGE_VERSION N > 0)."""
    from px4_msgs.msg import OffboardControlMode, TrajectorySetpoint, VehicleCommand, VehicleOdometry, VehicleStatus

    from lnn_nav.nodes.px4_offboard import PARAMETERS

    def versioned(base: str, cls: Any) -> str:
        version = getattr(cls, "MESSAGE_VERSION", 0)  # only versioned messages define it
        return f"{base}_v{version}" if version else base

    assert PARAMETERS["vehicle_status_topic"][0] == versioned("/fmu/out/vehicle_status", VehicleStatus)
    assert PARAMETERS["vehicle_odometry_topic"][0] == versioned("/fmu/out/vehicle_odometry", VehicleOdometry)
    assert PARAMETERS["vehicle_command_topic"][0] == versioned("/fmu/in/vehicle_command", VehicleCommand)
    assert PARAMETERS["trajectory_setpoint_topic"][0] == versioned("/fmu/in/trajectory_setpoint", TrajectorySetpoint)
    assert PARAMETERS["offboard_control_mode_topic"][0] == versioned(
        "/fmu/in/offboard_control_mode", OffboardControlMode
    )
    source = (bundle / "msgs" / "px4_msgs" / "PX4_SOURCE.txt").read_text()
    assert f"VehicleStatus {VehicleStatus.MESSAGE_VERSION}" in source  # px4_msgs generated from this PX4


def test_offboard_takeoff_velocity_tracking_and_hold_on_stale_commands(
    px4_stack: Stack, start_bridge: Callable[..., tuple[subprocess.Popen, Path]], probe: Probe
) -> None:
    t_test = time.monotonic()
    probe.command = (0.0, 0.0, 0.0, 0.0)  # fresh zero commands: the bridge hovers when the climb ends
    summary: dict[str, Any] = {"failsafe_action": "hold", "px4_instance": px4_stack.instance, **px4_stack.started}
    _, proc, log = _to_altitude(
        probe,
        start_bridge,
        summary,
        failsafe_action="hold",
        takeoff_altitude=TAKEOFF_ALTITUDE,
        stale_timeout=0.5,
        failsafe_timeout=3.0,
        target_system=px4_stack.target_system,
    )

    # Turn left (CCW in FLU) first, so that forward is not PX4's initial heading (north): a forward command
    # that ignored the heading, or swapped north and east, would then go the wrong way.
    turn = _leg(probe, (0.0, 0.0, 0.0, YAW_RATE), YAW_SECONDS)
    yaw_change = wrap(turn[-1].heading - turn[0].heading)
    summary["turn"] = {"command_rad_s": YAW_RATE, "heading_change_deg": round(math.degrees(yaw_change), 1)}
    assert yaw_change < -0.4, f"+yaw_rate (CCW) must turn the heading counter-clockwise (NED yaw down): {yaw_change}"
    _leg(probe, (0.0, 0.0, 0.0, 0.0), 1.5)  # stop turning

    forward = _leg_figures(_leg(probe, (SPEED, 0.0, 0.0, 0.0), FORWARD_SECONDS), (SPEED, 0.0))
    _leg(probe, (0.0, 0.0, 0.0, 0.0), 1.5)
    left = _leg_figures(_leg(probe, (0.0, SPEED, 0.0, 0.0), LEFT_SECONDS), (0.0, SPEED))
    summary.update(forward=forward, left=left)

    # Stale commands: stop publishing. Zero velocity after stale_timeout, the hold failsafe after
    # failsafe_timeout: the vehicle hovers in place and stays in offboard.
    probe.command = None
    t_stop = time.monotonic()
    probe.spin_for(HOLD_FROM_S + HOLD_SECONDS)
    hold = probe.since(t_stop + HOLD_FROM_S)
    assert hold, probe.describe()
    speeds = [math.hypot(*s.velocity[:2]) for s in hold]
    drift = math.dist(hold[0].position[:2], hold[-1].position[:2])
    summary["hold"] = {
        "from_s_after_last_command": HOLD_FROM_S,
        "seconds_observed": round(hold[-1].t - hold[0].t, 1),
        "max_horizontal_speed_mps": round(max(speeds), 3),
        "mean_horizontal_speed_mps": round(sum(speeds) / len(speeds), 3),
        "mean_vertical_speed_mps": round(sum(s.velocity[2] for s in hold) / len(hold), 3),
        "horizontal_drift_m": round(drift, 3),
        "altitude_change_m": round(hold[0].position[2] - hold[-1].position[2], 3),
        "status": probe.status,
    }
    _node_log_has(
        log,
        "offboard: wait_for_px4 -> heartbeat",
        "offboard: request_offboard_arm -> takeoff",
        "offboard: tracking -> stale",
        "-> failsafe_action",
    )
    _stop_node(proc, log)
    summary["test_s"] = round(time.monotonic() - t_test, 1)
    _report(summary, probe, px4_stack.tmp)

    for name, leg, seconds in (("forward", forward, FORWARD_SECONDS), ("left", left, LEFT_SECONDS)):
        assert leg["velocity_direction_error_deg"] <= VELOCITY_ANGLE_TOLERANCE_DEG, f"{name}: {leg}"
        assert leg["displacement_direction_error_deg"] <= DISPLACEMENT_ANGLE_TOLERANCE_DEG, f"{name}: {leg}"
        # Plausible distance and speed: the commanded speed, less the acceleration at the leg's start
        # (PX4 SIH settles at about 80 % of the commanded speed within a leg).
        assert 0.5 * SPEED * seconds < leg["displacement_m"] < 1.3 * SPEED * seconds, f"{name}: {leg}"
        assert 0.6 * SPEED < leg["settled_speed_mps"] < 1.2 * SPEED, f"{name}: {leg}"
        assert leg["tracking_rms_mps"] < 0.4 * SPEED, f"{name}: {leg}"
        assert abs(leg["altitude_change_m"]) < 0.6, f"{name}: {leg}"
    # Zero velocity, not a position lock. PX4 SIH hovers with a wander: EKF2's velocity reads 0.1-0.3 m/s,
    # and its GPS-fed position (like SIH's ground truth) drifts by up to about 0.4 m/s, because EKF2's
    # velocity lags the simulated GPS here. A stale command still followed would keep going at about
    # 1.2 m/s (4-5 m in the window); PX4's own offboard-loss failsafe would leave offboard.
    assert summary["hold"]["max_horizontal_speed_mps"] < 0.5, summary["hold"]
    assert summary["hold"]["mean_horizontal_speed_mps"] < 0.3, summary["hold"]
    assert abs(summary["hold"]["mean_vertical_speed_mps"]) < 0.2, summary["hold"]
    assert drift < 0.4 * SPEED * HOLD_SECONDS, summary["hold"]
    assert summary["hold"]["status"] == (ARMING_STATE_ARMED, NAV_OFFBOARD), summary["hold"]


def test_stale_commands_with_failsafe_land_make_px4_land(
    px4_stack: Stack, start_bridge: Callable[..., tuple[subprocess.Popen, Path]], probe: Probe
) -> None:
    t_test = time.monotonic()
    probe.command = (0.0, 0.0, 0.0, 0.0)
    summary: dict[str, Any] = {"failsafe_action": "land", "px4_instance": px4_stack.instance, **px4_stack.started}
    z_ground, proc, log = _to_altitude(
        probe,
        start_bridge,
        summary,
        failsafe_action="land",
        takeoff_altitude=TAKEOFF_ALTITUDE,
        stale_timeout=0.5,
        failsafe_timeout=2.0,
        target_system=px4_stack.target_system,
    )
    probe.command = None
    t_stop = time.monotonic()
    t_land = probe.spin_until(
        lambda: probe.status is not None and probe.status[1] == NAV_AUTO_LAND, 20, "PX4's AUTO_LAND nav_state (18)"
    )
    t_disarm = probe.spin_until(
        lambda: probe.status is not None and probe.status[0] == ARMING_STATE_DISARMED, 40, "landing and disarm"
    )
    summary["land"] = {
        "land_mode_after_stop_s": round(t_land - t_stop, 2),
        "disarmed_after_stop_s": round(t_disarm - t_stop, 2),
        "height_at_disarm_m": round(z_ground - probe.latest().position[2], 2),
        "max_descent_rate_mps": round(max(s.velocity[2] for s in probe.since(t_land) if s.t <= t_disarm), 2),
        "status_changes": [(round(t - t_test, 2), a, n) for t, a, n in probe.status_log],
    }
    _node_log_has(log, "offboard: tracking -> stale", "-> failsafe_action", "vehicle command 21")
    _stop_node(proc, log)
    summary["test_s"] = round(time.monotonic() - t_test, 1)
    _report(summary, probe, px4_stack.tmp)
    assert 2.0 - 0.5 <= t_land - t_stop, summary["land"]  # not before failsafe_timeout
    assert summary["land"]["max_descent_rate_mps"] > 0.3, summary["land"]  # NED: down is positive
    # Disarmed in AUTO_LAND: PX4's land detector says it is down. EKF2's z drifts by a few decimetres.
    assert abs(summary["land"]["height_at_disarm_m"]) < 0.75, summary["land"]
