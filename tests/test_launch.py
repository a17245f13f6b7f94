"""The launch files and `ros2 run`, run as a user runs them: the real `ros2` CLI, launch and launch_ros.

They need what a ROS 2 install has and PyPI lacks (ros2cli, launch, launch_ros, composition_interfaces):
`make install` adds them to .venv from ../shared/ros-extras (scripts/ros_extras.sh), a robot has them
from apt. Where they are missing, every test here skips with the one reason why. lnn_nav must be laid out
as ROS tools expect (``lib/lnn_nav/<executable>``, the ament index): colcon does it, and for a pip
install scripts/ament_layout.py (`make install` runs it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy")

from geometry_msgs.msg import TwistStamped  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from std_msgs.msg import String  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models" / "cfc_ncp.safetensors"
pytestmark = [pytest.mark.ros]


def ros2_cli_unavailable() -> str | None:
    """Why `ros2 launch lnn_nav ...` cannot run here, or None."""
    ros2 = shutil.which("ros2", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    if ros2 is None:
        return (
            "the ros2 CLI is not installed: `make install` adds ros2cli, launch and launch_ros from "
            "../shared/ros-extras (scripts/ros_extras.sh); on a robot, source the ROS 2 install"
        )
    try:
        import composition_interfaces.srv  # noqa: F401  (launch_ros.actions needs it)
        import launch_ros.actions  # noqa: F401
        from ament_index_python.packages import PackageNotFoundError, get_package_prefix
    except ImportError as err:
        return f"launch_ros cannot be imported ({err}): run scripts/ros_extras.sh .venv"
    try:
        prefix = Path(get_package_prefix("lnn_nav"))
    except PackageNotFoundError:
        return "lnn_nav is not in the ament index (AMENT_PREFIX_PATH): run scripts/ament_layout.py .venv"
    if not (prefix / "lib" / "lnn_nav" / "controller_node").exists():
        return f"{prefix}/lib/lnn_nav has no node executables: run scripts/ament_layout.py {prefix}"
    return None


@pytest.fixture(scope="module")
def ros2() -> str:
    reason = ros2_cli_unavailable()
    if reason is not None:
        pytest.skip(reason)
    path = shutil.which("ros2", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    assert path is not None
    return path


class Proc:
    """A `ros2 ...` process in its own session, its output in a file; always stopped (SIGINT, then KILL)."""

    def __init__(self, cmd: list[str], log: Path) -> None:
        self.log = log
        with open(log, "wb") as handle:
            self.popen = subprocess.Popen(
                cmd, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"still running after {timeout:g} s:\n{self.text()[-3000:]}") from None

    def stop(self, sig: int = signal.SIGINT, grace: float = 15.0) -> int:
        for s in (sig, signal.SIGKILL):
            if self.popen.poll() is not None:
                break
            try:
                os.killpg(self.popen.pid, s)
            except ProcessLookupError:
                break
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        return self.popen.wait(timeout=grace)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    started: list[Proc] = []

    def start(name: str, *cmd: str) -> Proc:
        proc = Proc(list(cmd), tmp_path / f"{name}.log")
        started.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in reversed(started):
            proc.stop()


@pytest.fixture
def graph() -> Iterator[tuple[rclpy.node.Node, Callable[..., bool]]]:
    """A node of the test's own, and spin_until(condition, timeout)."""
    context = Context()
    rclpy.init(context=context)
    executor = SingleThreadedExecutor(context=context)
    node = rclpy.create_node("launch_test", context=context)
    executor.add_node(node)

    def spin_until(condition: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not condition() and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        return condition()

    try:
        yield node, spin_until
    finally:
        executor.remove_node(node)
        node.destroy_node()
        executor.shutdown()
        context.try_shutdown()


def episode_over(log: str) -> dict:
    """The outcome JSON sim_node logs at the end of an episode."""
    found = re.findall(r"episode over: (\{.*?\})", log)
    assert found, f"no 'episode over' line in:\n{log[-3000:]}"
    return json.loads(found[-1])


# ----------------------------------------------------------------------------- closed loop


@pytest.mark.slow
def test_sim_closed_loop_launch_flies_one_episode_to_its_outcome_as_lnn_nav_fly_does(ros2, procs) -> None:
    # A training-range world seed (neither held-out nor calibration): this checks the plumbing, not skill.
    world, seed = "forest", 3
    launch = procs("launch", ros2, "launch", "lnn_nav", "sim_closed_loop.launch.py", f"world:={world}", f"seed:={seed}")
    code = launch.wait(timeout=300)
    launched = episode_over(launch.text())
    # The launch ends with the episode, and its exit status says how it ended.
    assert code == (0 if launched["outcome"] == "success" else 1), launch.text()[-2000:]
    assert "process has finished cleanly" in launch.text()  # the controller was stopped, not killed

    fly = procs(
        "fly",
        sys.executable,
        "-m",
        "lnn_nav.cli",
        "fly",
        "--world",
        world,
        "--seed",
        str(seed),
        "--model",
        str(SHIPPED),
    )
    fly_code = fly.wait(timeout=300)
    flown = json.loads(fly.text().strip().splitlines()[-1])
    # One configuration: the same YAML and simulation overrides give the same episode step for step.
    assert flown == launched
    assert fly_code == code


@pytest.mark.slow
def test_sim_closed_loop_launch_flies_the_native_node_through_the_same_episode(ros2, procs) -> None:
    # native:=true: the checkpoint exported and flown by the native controller node (C++ on rcl); the same
    # episode as the in-process flight of that seed, step for step.
    from lnn_nav.eval.camera import fly_with_camera

    world, seed = "forest", 3
    launch = procs(
        "launch",
        ros2,
        "launch",
        "lnn_nav",
        "sim_closed_loop.launch.py",
        f"world:={world}",
        f"seed:={seed}",
        "native:=true",
    )
    code = launch.wait(timeout=300)
    text = launch.text()
    launched = episode_over(text)
    assert code == (0 if launched["outcome"] == "success" else 1), text[-2000:]
    assert "native_controller" in text and "process has finished cleanly" in text
    if "no command for frame" in text or "sync_timeout" in text:
        pytest.skip("the machine was too loaded for lockstep: a command or odometry came after its timeout")
    local = fly_with_camera(str(SHIPPED), world, seed, "in_distribution")
    assert (launched["outcome"], launched["time"]) == (local.outcome, round(local.time, 3))
    assert launched["path_length"] == pytest.approx(local.path_length, abs=0.01)


def test_sim_closed_loop_launch_with_a_missing_checkpoint_fails_with_its_name(ros2, procs, tmp_path: Path) -> None:
    missing = tmp_path / "nope.safetensors"
    launch = procs("launch", ros2, "launch", "lnn_nav", "sim_closed_loop.launch.py", f"model_path:={missing}")
    assert launch.wait(timeout=120) != 0
    assert str(missing) in launch.text()


# ----------------------------------------------------------------------------- on a drone

# A camera (with the odometry and goal the shipped controller flies to) in a process of its own, as a
# driver would be. It prints each frame's stamp (ns) once the frame is published.
CAMERA = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import rclpy
    from geometry_msgs.msg import PoseStamped
    from nav_msgs.msg import Odometry
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    topic, frames = sys.argv[1], int(sys.argv[2])
    rclpy.init()
    node = rclpy.create_node("camera_driver")
    image_pub = node.create_publisher(Image, topic, 10)
    odom_pub = node.create_publisher(Odometry, "/odom", 10)
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    goal_pub = node.create_publisher(PoseStamped, "/goal_pose", latched)
    while image_pub.get_subscription_count() == 0:
        rclpy.spin_once(node, timeout_sec=0.05)
    goal = PoseStamped()
    goal.header.frame_id = "odom"
    goal.pose.position.x, goal.pose.position.z = 20.0, 2.0
    goal_pub.publish(goal)
    rng = np.random.default_rng(0)
    for k in range(frames):
        stamp = node.get_clock().now().to_msg()
        odom = Odometry()
        odom.header.stamp, odom.header.frame_id, odom.child_frame_id = stamp, "odom", "base_link"
        odom.pose.pose.position.z = 2.0
        odom.pose.pose.orientation.w = 1.0
        odom_pub.publish(odom)
        img = Image()
        img.header.stamp, img.header.frame_id = stamp, "camera"
        img.height, img.width, img.encoding, img.step = 96, 128, "rgb8", 128 * 3
        img.data = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8).tobytes()
        image_pub.publish(img)
        print(stamp.sec * 1_000_000_000 + stamp.nanosec, flush=True)
        rclpy.spin_once(node, timeout_sec=0.0)
        time.sleep(1 / 15)  # the rate the shipped controllers fly at
    node.destroy_node()
    rclpy.shutdown()
    """
)


def collect_commands(node, topic: str) -> list[TwistStamped]:
    received: list[TwistStamped] = []
    node.create_subscription(TwistStamped, topic, received.append, 100)
    return received


def stamps_of(commands: list[TwistStamped]) -> set[int]:
    return {c.header.stamp.sec * 1_000_000_000 + c.header.stamp.nanosec for c in commands}


def run_camera(procs, topic: str, frames: int) -> set[int]:
    camera = procs("camera", sys.executable, "-c", CAMERA, topic, str(frames))
    assert camera.wait(timeout=120) == 0, camera.text()
    return {int(line) for line in camera.text().split() if line.isdigit()}


@pytest.mark.slow
def test_drone_launch_answers_a_camera_in_another_process_on_cmd_vel(ros2, procs, graph) -> None:
    node, spin_until = graph
    commands = collect_commands(node, "/cmd_vel")
    # image_topic given on the command line is the one the controller listens to (a launch argument
    # that sets a parameter): frames on the default /camera/image_raw would go unanswered.
    procs(
        "launch",
        ros2,
        "launch",
        "lnn_nav",
        "drone.launch.py",
        f"model_path:={SHIPPED}",
        "image_topic:=/front/image_raw",
    )
    assert spin_until(lambda: bool(commands), timeout=90), "no hover command: the controller did not come up"
    sent = run_camera(procs, "/front/image_raw", 60)
    # Each command answering a frame carries its stamp. A busy machine skips frames (the node runs the
    # newest one it has, as a drone must: 22 of 60 at 30 Hz on a loaded 2-core machine), so many, not all.
    spin_until(lambda: sent <= stamps_of(commands), timeout=10)
    answers = [c for c in commands if stamps_of([c]) <= sent]
    assert len(answers) >= max(10, len(sent) // 4), f"{len(answers)} of {len(sent)} frames answered"
    # The policy flew (it commands motion toward the goal), not only the fail-safe hover.
    assert any(abs(c.twist.linear.x) + abs(c.twist.angular.z) > 1e-3 for c in answers)


@pytest.mark.slow
def test_drone_launch_runs_the_native_node_under_the_controllers_name_with_its_yaml(ros2, procs, graph) -> None:
    from std_srvs.srv import SetBool

    node, spin_until = graph
    commands = collect_commands(node, "/cmd_vel")
    # native:=true: the launch exports model_path's checkpoint itself (native_weights:=FILE takes an exported one).
    launch = procs(
        "launch",
        ros2,
        "launch",
        "lnn_nav",
        "drone.launch.py",
        "native:=true",
        f"model_path:={SHIPPED}",
        "image_topic:=/front/image_raw",
    )
    # The Python node's services, under its name: a drop-in for whatever calls them.
    client = node.create_client(SetBool, "/controller_node/enable")
    assert spin_until(client.service_is_ready, timeout=60), launch.text()[-2000:]
    sent = run_camera(procs, "/front/image_raw", 45)
    spin_until(lambda: sent <= stamps_of(commands), timeout=10)
    answers = [c for c in commands if stamps_of([c]) <= sent]
    assert len(answers) >= max(10, len(sent) // 4), f"{len(answers)} of {len(sent)} frames answered"
    assert any(abs(c.twist.linear.x) + abs(c.twist.angular.z) > 1e-3 for c in answers)
    assert "unknown parameter" not in launch.text()


@pytest.mark.slow
def test_ros2_run_takes_parameters_and_remaps_from_the_command_line(ros2, procs, graph) -> None:
    node, spin_until = graph
    remapped = collect_commands(node, "/drone1/cmd_vel")
    default = collect_commands(node, "/cmd_vel")
    procs(
        "controller",
        ros2,
        "run",
        "lnn_nav",
        "controller_node",
        "--ros-args",
        "-p",
        f"model_path:={SHIPPED}",
        "-p",
        "max_speed_xy:=0.25",  # a parameter: the clamp shows in every command
        "-r",
        "/cmd_vel:=/drone1/cmd_vel",  # a remap: commands leave on the drone's own topic
    )
    assert spin_until(lambda: bool(remapped), timeout=90), "nothing on the remapped /drone1/cmd_vel"
    sent = run_camera(procs, "/camera/image_raw", 45)
    spin_until(lambda: sent <= stamps_of(remapped), timeout=10)
    assert len(sent & stamps_of(remapped)) >= max(10, len(sent) // 4)
    assert not default, "a command went out on /cmd_vel despite the remap"
    speeds = [(c.twist.linear.x**2 + c.twist.linear.y**2) ** 0.5 for c in remapped if stamps_of([c]) <= sent]
    assert max(speeds) <= 0.25 + 1e-6 and max(speeds) > 0.2  # clamped by the parameter, and flying at it


# ----------------------------------------------------------------------------- record and replay


@pytest.mark.slow
def test_record_launch_records_live_topics_and_replay_launch_plays_them_back(
    ros2, procs, graph, tmp_path: Path
) -> None:
    node, spin_until = graph
    bag = tmp_path / "flight"
    recorder = procs(
        "record",
        ros2,
        "launch",
        "lnn_nav",
        "record.launch.py",
        f"output:={bag}",
        "topics:=/chatter /cmd_vel",
        "storage:=mcap",
    )
    chatter = node.create_publisher(String, "/chatter", 10)
    cmd = node.create_publisher(TwistStamped, "/cmd_vel", 10)
    assert spin_until(lambda: chatter.get_subscription_count() > 0 and cmd.get_subscription_count() > 0, timeout=60), (
        recorder.text()
    )
    for k in range(20):
        chatter.publish(String(data=f"hello {k}"))
        twist = TwistStamped()
        twist.twist.linear.x = float(k)
        cmd.publish(twist)
        spin_until(lambda: False, timeout=0.02)
    assert chatter.wait_for_all_acked(rclpy.duration.Duration(seconds=5))
    assert recorder.stop(signal.SIGINT) == 0, recorder.text()  # Ctrl-C: the bag is closed cleanly
    assert (bag / "metadata.yaml").is_file(), recorder.text()

    heard: list[String] = []
    node.create_subscription(String, "/replayed/chatter", heard.append, 100)
    replay = procs(
        "replay",
        ros2,
        "launch",
        "lnn_nav",
        "replay.launch.py",
        f"bag:={bag}",
        "topics:=/chatter",
        "remap:=/chatter:=/replayed/chatter",
        # Discovery on a loaded machine can take longer than any fixed delay: the first message
        # waits until this test's subscription is matched.
        "wait_for_subscribers:=true",
        "wait_timeout:=60",
        "delay:=0.5",
    )
    assert replay.wait(timeout=120) == 0, replay.text()  # the launch ends when the bag has played
    spin_until(lambda: len(heard) >= 20, timeout=10)
    assert [m.data for m in heard] == [f"hello {k}" for k in range(20)]
