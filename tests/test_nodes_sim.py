"""The simulator and expert nodes on a real rclpy graph, `lnn-nav fly`, and the launch files."""

from __future__ import annotations

import json
import os
import py_compile
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy")
from geometry_msgs.msg import PoseStamped, Twist, TwistStamped  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, Imu  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from lnn_nav.nodes.conversions import command_to_twist_stamped  # noqa: E402
from lnn_nav.nodes.expert_node import ExpertNode  # noqa: E402
from lnn_nav.nodes.sim_node import LATCHED_QOS, SimNode  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SMALL_CAMERA = [Parameter("camera_width", value=32), Parameter("camera_height", value=24)]


@pytest.fixture
def graph():
    """A fresh context with an executor; yields (context, executor, spin_until)."""
    context = Context()
    rclpy.init(context=context)
    executor = SingleThreadedExecutor(context=context)

    def spin_until(condition: Callable[[], bool], timeout: float = 15.0) -> bool:
        deadline = time.monotonic() + timeout
        while not condition() and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.02)
        return condition()

    try:
        yield context, executor, spin_until
    finally:
        for node in list(executor.get_nodes()):
            executor.remove_node(node)
            node.destroy_node()
        executor.shutdown()
        context.try_shutdown()


def make_sim(context, executor, seed: int = 3, **params) -> SimNode:
    overrides = SMALL_CAMERA + [Parameter("seed", value=seed)] + [Parameter(k, value=v) for k, v in params.items()]
    sim = SimNode(context=context, parameter_overrides=overrides)
    executor.add_node(sim)
    return sim


class Pilot:
    """A test node that answers every odometry message with a fixed command stamped like it."""

    def __init__(self, context, executor, command=(0.0, 0.0, 0.0, 0.0)) -> None:
        self.node = rclpy.create_node("test_pilot", context=context)
        self.command = list(command)
        self.odom: list[Odometry] = []
        self.outcomes: list[dict] = []
        self.pub = self.node.create_publisher(TwistStamped, "/cmd_vel", 10)
        self.node.create_subscription(Odometry, "/odom", self._on_odom, 10)
        self.node.create_subscription(
            String, "/sim_node/outcome", lambda m: self.outcomes.append(json.loads(m.data)), LATCHED_QOS
        )
        executor.add_node(self.node)

    def _on_odom(self, msg: Odometry) -> None:
        self.odom.append(msg)
        self.pub.publish(command_to_twist_stamped(self.command, msg.header.stamp, "base_link"))


def stamp_ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def test_sim_node_publishes_every_sensor_with_one_stamp_per_frame(graph):
    context, executor, spin_until = graph
    listener = rclpy.create_node("test_listener", context=context)
    got = {name: [] for name in ("image", "info", "imu", "odom", "clock", "goal")}
    for name, kind, topic, qos in (
        ("image", Image, "/camera/image_raw", 10),
        ("info", CameraInfo, "/camera/camera_info", 10),
        ("imu", Imu, "/imu/data", 10),
        ("odom", Odometry, "/odom", 10),
        ("clock", Clock, "/clock", 10),
        ("goal", PoseStamped, "/goal_pose", LATCHED_QOS),
    ):
        listener.create_subscription(kind, topic, got[name].append, qos)
    executor.add_node(listener)
    # Real time at x4 gives a stream of frames without a pilot.
    sim = make_sim(context, executor, lockstep=False, real_time_factor=4.0)
    assert spin_until(lambda: len(got["image"]) >= 8 and got["goal"])

    image = got["image"][-1]
    assert (image.width, image.height, image.encoding) == (32, 24, "rgb8")
    assert image.header.frame_id == "camera_optical_frame"
    assert got["imu"][-1].header.frame_id == "base_link"
    odom = got["odom"][-1]
    assert (odom.header.frame_id, odom.child_frame_id) == ("odom", "base_link")
    goal = got["goal"][0]
    assert goal.header.frame_id == "odom"
    assert (goal.pose.position.x, goal.pose.position.y, goal.pose.position.z) == pytest.approx(sim.world.goal)
    # The odometry, IMU, camera info and clock of a frame carry its image's stamp (an
    # earlier frame: the executor may not have taken the other topics of the last one yet).
    frame = stamp_ns(got["image"][-4].header.stamp)
    for name in ("info", "imu", "odom"):
        assert frame in {stamp_ns(m.header.stamp) for m in got[name]}, name
    assert frame in {stamp_ns(c.clock) for c in got["clock"]}
    stamps = [stamp_ns(m.header.stamp) for m in got["image"]]
    assert np.allclose(np.diff(stamps), 1e9 / 15.0, atol=1)


def test_lockstep_steps_on_the_answering_command_and_moves_the_drone_that_way(graph):
    context, executor, spin_until = graph
    sim = make_sim(context, executor)
    start = sim.batch.quad.position[0].copy()
    yaw = float(sim.batch.quad.yaw[0])
    pilot = Pilot(context, executor, command=(2.0, 0.0, 0.0, 0.0))  # forward, heading frame
    assert spin_until(lambda: len(pilot.odom) >= 30)
    stamps = [stamp_ns(m.header.stamp) for m in pilot.odom]
    assert all(b > a for a, b in zip(stamps, stamps[1:])), "one new frame per command"
    last = pilot.odom[-1].pose.pose.position
    moved = np.array([last.x, last.y]) - start[:2]
    forward = np.array([np.cos(yaw), np.sin(yaw)])
    assert moved @ forward > 1.5
    assert abs(moved @ np.array([-forward[1], forward[0]])) < 0.5


def test_unstamped_twist_drives_lockstep_when_stamps_need_not_match(graph):
    context, executor, spin_until = graph
    sim = make_sim(context, executor, lockstep_match_stamp=False)
    node = rclpy.create_node("test_unstamped", context=context)
    pub = node.create_publisher(Twist, "/cmd_vel_unstamped", 10)
    node.create_subscription(Odometry, "/odom", lambda m: pub.publish(Twist()), 10)
    executor.add_node(node)
    assert spin_until(lambda: sim.batch.time[0] >= 1.0)


def test_lockstep_steps_on_after_the_command_timeout_when_the_pilot_falls_silent(graph):
    context, executor, spin_until = graph
    sim = make_sim(context, executor, command_timeout=0.1)
    pilot = Pilot(context, executor)
    assert spin_until(lambda: pilot.odom)
    executor.remove_node(pilot.node)  # answered once, then silent
    assert spin_until(lambda: sim.batch.time[0] >= 0.3, timeout=10.0)
    assert sim.running and sim.world.seed == 3


def test_reset_service_starts_a_new_episode_on_the_next_seed(graph):
    context, executor, spin_until = graph
    sim = make_sim(context, executor, seed=5)
    client_node = rclpy.create_node("test_client", context=context)
    executor.add_node(client_node)
    client = client_node.create_client(Trigger, "/sim_node/reset")
    assert spin_until(client.service_is_ready)
    future = client.call_async(Trigger.Request())
    assert spin_until(future.done)
    response = future.result()
    assert response.success
    assert "seed 6" in response.message
    assert sim.world.seed == 6
    assert sim.batch.time[0] == 0.0


def test_a_dive_into_the_ground_ends_the_episode_as_collision(graph):
    context, executor, spin_until = graph
    make_sim(context, executor)
    pilot = Pilot(context, executor, command=(0.0, 0.0, -3.0, 0.0))
    assert spin_until(lambda: pilot.outcomes, timeout=20.0)
    outcome = pilot.outcomes[0]
    assert outcome["outcome"] == "collision"
    assert outcome["seed"] == 3 and outcome["world"] == "forest"
    assert 0.0 < outcome["time"] < 3.0


def test_expert_node_flies_the_simulator_to_the_goal_through_the_graph(graph):
    context, executor, spin_until = graph
    make_sim(context, executor, seed=3)
    expert = ExpertNode(context=context, parameter_overrides=[Parameter("seed", value=3), Parameter("fly", value=True)])
    executor.add_node(expert)
    outcomes: list[dict] = []
    node = rclpy.create_node("test_outcome", context=context)
    node.create_subscription(String, "/sim_node/outcome", lambda m: outcomes.append(json.loads(m.data)), LATCHED_QOS)
    executor.add_node(node)
    assert spin_until(lambda: outcomes, timeout=60.0)
    assert outcomes[0]["outcome"] == "success"
    assert outcomes[0]["path_length"] > 10.0


def test_expert_node_flies_the_demonstrating_expert_and_refuses_bad_parameters(graph):
    from lnn_nav.sim.expert import DEMO_EXPERT, demo_expert

    context, executor, _ = graph
    expert = ExpertNode(context=context, parameter_overrides=[Parameter("seed", value=3)])
    assert expert.expert.config.cruise_speed == DEMO_EXPERT["cruise_speed"]
    assert expert.expert.config.clearance_weight == DEMO_EXPERT["clearance_weight"]
    assert expert.expert.config.inflate == DEMO_EXPERT["inflate"]
    assert expert.expert.config.yaw_deadband == 0.0
    assert expert.expert.config.yaw_lookahead == demo_expert("forest").get("yaw_lookahead")
    expert.destroy_node()
    # The urban expert plans with its own clearance cost; a parameter set explicitly wins.
    urban = ExpertNode(
        context=context, parameter_overrides=[Parameter("world", value="urban"), Parameter("inflate", value=0.7)]
    )
    assert urban.expert.config.clearance_weight == demo_expert("urban")["clearance_weight"]
    assert urban.expert.config.clearance_scale == demo_expert("urban")["clearance_scale"]
    assert urban.expert.config.inflate == 0.7
    assert urban.expert.config.yaw_lookahead == demo_expert("urban").get("yaw_lookahead")
    urban.destroy_node()
    turning = ExpertNode(context=context, parameter_overrides=[Parameter("yaw_lookahead", value=5.0)])
    assert turning.expert.config.yaw_lookahead == 5.0
    turning.destroy_node()
    banded = ExpertNode(context=context, parameter_overrides=[Parameter("yaw_deadband", value=0.15)])
    assert banded.expert.config.yaw_deadband == 0.15  # a DAgger labeller over the graph
    banded.destroy_node()
    with pytest.raises(ValueError, match="expert_node: bad parameter.*cruise_speed"):
        ExpertNode(context=context, parameter_overrides=[Parameter("cruise_speed", value=9.0)])
    with pytest.raises(ValueError, match="expert_node: bad parameter.*yaw_deadband"):
        ExpertNode(context=context, parameter_overrides=[Parameter("yaw_deadband", value=-0.1)])


def test_expert_node_replans_in_the_world_the_simulator_publishes(graph):
    context, executor, spin_until = graph
    make_sim(context, executor, seed=8)
    expert = ExpertNode(context=context, parameter_overrides=[Parameter("seed", value=0)])
    executor.add_node(expert)
    assert spin_until(lambda: expert.expert.world.seed == 8)


def test_lnn_nav_fly_refuses_a_missing_model_before_starting_anything(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "lnn_nav.cli", "fly", "--model", str(tmp_path / "missing.safetensors")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert "missing.safetensors" in result.stderr


def test_lnn_nav_fly_expert_reaches_the_goal_and_exits_zero():
    result = subprocess.run(
        [sys.executable, "-m", "lnn_nav.cli", "fly", "--expert", "--world", "forest", "--seed", "3", "--timeout", "60"],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=ROOT,
        env=dict(os.environ),
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["outcome"] == "success" and outcome["seed"] == 3


@pytest.mark.parametrize(
    "name", ["sim_closed_loop.launch.py", "drone.launch.py", "record.launch.py", "replay.launch.py"]
)
def test_launch_file_compiles_and_describes_itself_when_launch_is_installed(name):
    # The `launch` package ships with a ROS install, not as a pip wheel: without
    # it the file can only be compiled here.
    path = ROOT / "launch" / name
    py_compile.compile(str(path), doraise=True)
    try:
        # A bare `import launch` would find this repository's launch/ folder.
        import launch_ros  # noqa: F401

        from launch import LaunchDescription  # noqa: F401
    except ImportError:
        return
    import importlib.util

    spec = importlib.util.spec_from_file_location(name.replace(".", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.generate_launch_description().entities
