"""The native controller node (rcl + the torch-free runtime) on a real graph: the Python controller's commands
for the same frames, goal and odometry; its fail-safes; its refusals."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

rclpy = pytest.importorskip("rclpy")

from builtin_interfaces.msg import Time  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from geometry_msgs.msg import PoseStamped, TwistStamped  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from lnn_nav.kernels.native import export_weights, save_weights  # noqa: E402
from lnn_nav.models import EncoderConfig, LiquidPolicy, PolicyConfig  # noqa: E402
from lnn_nav.models.preprocess import resize_rgb  # noqa: E402
from lnn_nav.nodes import native  # noqa: E402
from lnn_nav.nodes.controller_logic import DtTracker, clamp_command  # noqa: E402
from lnn_nav.nodes.conversions import goal_input, rgb_to_image_msg  # noqa: E402

pytestmark = pytest.mark.ros

LIMITS = (0.5, 3.0, 2.0943951023931953)  # max_speed_xy small enough that the clamp acts


@pytest.fixture(scope="module")
def node_binary() -> tuple[Path, dict[str, str]]:
    try:
        return native.build()
    except RuntimeError as err:
        if "no C++ compiler" in str(err):
            pytest.skip(str(err))
        raise


def _weights(tmp_path: Path, use_goal: bool, use_imu: bool = False) -> tuple[LiquidPolicy, Path]:
    torch.manual_seed(4)
    cfg = PolicyConfig(encoder=EncoderConfig(height=48, width=64), use_goal=use_goal, use_imu=use_imu)
    policy = LiquidPolicy(cfg).eval()
    if use_imu:
        return policy, tmp_path / "unused"
    return policy, save_weights(export_weights(policy), tmp_path / "policy.native.safetensors")


class Peer:
    """The test's side of the graph: camera, odometry and goal publishers, the command subscriber."""

    def __init__(self, ns: str) -> None:
        self.ns = ns
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("native_controller_test_peer", context=self.context)
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.image_pub = self.node.create_publisher(Image, f"{ns}/camera/image_raw", reliable)
        self.odom_pub = self.node.create_publisher(Odometry, f"{ns}/odom", reliable)
        latched = QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
        )
        self.goal_pub = self.node.create_publisher(PoseStamped, f"{ns}/goal_pose", latched)
        self.commands: list[TwistStamped] = []
        self.lock = threading.Lock()
        self.node.create_subscription(TwistStamped, f"{ns}/cmd_vel", self._on_cmd, 100)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._running = True
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        while self._running and self.context.ok():
            self.executor.spin_once(timeout_sec=0.02)

    def _on_cmd(self, msg: TwistStamped) -> None:
        with self.lock:
            self.commands.append(msg)

    def snapshot(self) -> list[TwistStamped]:
        with self.lock:
            return list(self.commands)

    def wait_for(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.01)
        return predicate()

    def answer(self, stamp: Time) -> TwistStamped | None:
        for c in self.snapshot():
            if (c.header.stamp.sec, c.header.stamp.nanosec) == (stamp.sec, stamp.nanosec):
                return c
        return None

    def close(self) -> None:
        self._running = False
        self.thread.join(timeout=5)
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


def _call(peer: Peer, service: str, srv_type, request):
    """A service call from the test's peer, waited for (the service's full name)."""
    client = peer.node.create_client(srv_type, service)
    assert client.wait_for_service(timeout_sec=10.0), service
    future = client.call_async(request)
    assert peer.wait_for(future.done, 10.0)
    return future.result()


def _start(binary_env, weights: Path, ns: str, *extra: str) -> subprocess.Popen:
    binary, env = binary_env
    env = dict(env, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    cmd = [
        str(binary),
        "--weights",
        str(weights),
        "--image-topic",
        f"{ns}/camera/image_raw",
        "--cmd-topic",
        f"{ns}/cmd_vel",
        "--odom-topic",
        f"{ns}/odom",
        "--goal-topic",
        f"{ns}/goal_pose",
        "--max-speed-xy",
        str(LIMITS[0]),
        "--image-timeout",
        "0.5",
        "--odom-timeout",
        "5.0",
        *extra,
    ]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _stop(proc: subprocess.Popen) -> tuple[int, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return proc.returncode, err


def _frames() -> list[tuple[Time, Image, np.ndarray]]:
    """Frames at the policy's size and at twice it (shrunk by the node), rgb8 and bgr8, varying Δt."""
    rng = np.random.default_rng(2)
    out, t = [], 1000.0
    for i in range(6):
        t += [0.05, 0.07, 0.1, 0.033, 0.2, 0.06][i]
        stamp = Time(sec=int(t), nanosec=int(round((t % 1) * 1e9)))
        size = (96, 128) if i % 3 == 1 else (48, 64)
        rgb = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
        msg = rgb_to_image_msg(rgb, stamp, "camera", encoding="bgr8" if i % 2 else "rgb8")
        out.append((stamp, msg, rgb))
    return out


def _expected(
    policy: LiquidPolicy, answered: list[tuple[Time, np.ndarray]], goal: np.ndarray | None, hovered: int = 0
) -> list:
    """The Python controller's commands for the frames the node answered, in order (its Δt, step, clamp); the
    first ``hovered`` frames only move the Δt tracker (an input was missing: hover, network not advanced)."""
    tracker, state, out = DtTracker(1.0 / 15.0, 0.5), None, []
    for i, (stamp, rgb) in enumerate(answered):
        step = tracker.update(stamp.sec * 1_000_000_000 + stamp.nanosec)
        if step.reset is not None:
            state = None
        if i < hovered:
            out.append(np.zeros(4))
            continue
        image = torch.from_numpy(resize_rgb(rgb, 48, 64)).permute(2, 0, 1).unsqueeze(0)
        extras = {"goal": torch.from_numpy(goal).reshape(1, 4)} if goal is not None else {}
        with torch.inference_mode():
            cmd, state = policy.step(image, step.dt, state, **extras)
        out.append(clamp_command(cmd[0].to(torch.float64).numpy(), *LIMITS))
    return out


def _fly(peer: Peer, frames) -> list[tuple[Time, np.ndarray, np.ndarray]]:
    """Sends each frame once (waiting for its answer); returns (stamp, frame, command) of those answered."""
    answered = []
    for stamp, msg, rgb in frames:
        peer.image_pub.publish(msg)
        if peer.wait_for(lambda s=stamp: peer.answer(s) is not None, 3.0):
            c = peer.answer(stamp)
            assert c is not None
            t = c.twist
            # A velocity command and nothing else (rosidl's C init leaves unassigned fields as they were).
            assert (t.angular.x, t.angular.y) == (0.0, 0.0), f"a command that is not a velocity command: {t}"
            answered.append((stamp, rgb, np.array([t.linear.x, t.linear.y, t.linear.z, t.angular.z])))
    return answered


def _connected(peer: Peer, proc: subprocess.Popen) -> None:
    """Until the node answers a warm-up frame (discovery can match one side before the other, and a frame
    sent then is lost). Its stamp lies 100 s before the test's frames: the gap restarts the node's state,
    so the frames that follow start as from rest."""
    ok = peer.wait_for(
        lambda: peer.image_pub.get_subscription_count() > 0 and peer.node.count_publishers(f"{peer.ns}/cmd_vel") > 0,
        15.0,
    )
    assert ok, f"the node never connected: {proc.poll()} {proc.stderr.read() if proc.poll() is not None else ''}"
    warm = rgb_to_image_msg(np.zeros((48, 64, 3), np.uint8), Time(sec=900), "camera")
    for _ in range(30):
        peer.image_pub.publish(warm)
        if peer.wait_for(lambda: peer.answer(warm.header.stamp) is not None, 0.5):
            return
    raise AssertionError("the node answered no warm-up frame")


def test_native_node_flies_the_python_controllers_commands(node_binary, tmp_path: Path) -> None:
    policy, weights = _weights(tmp_path, use_goal=False)
    ns = f"/n{uuid.uuid4().hex[:8]}"
    peer = Peer(ns)
    proc = _start(node_binary, weights, ns)
    try:
        _connected(peer, proc)
        answered = _fly(peer, _frames())
        assert len(answered) >= 5, f"only {len(answered)} of 6 frames answered"
        expected = _expected(policy, [(s, rgb) for s, rgb, _ in answered], None)
        for (_, _, got), want in zip(answered, expected):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
        assert all(np.hypot(*got[:2]) <= LIMITS[0] + 1e-9 for _, _, got in answered)
        assert any(not np.allclose(got, 0.0) for _, _, got in answered)
        assert all(c.header.frame_id == "base_link" for c in peer.snapshot())
    finally:
        code, err = _stop(proc)
        peer.close()
    assert code == 0, err
    assert "stopped; frames" in err


def test_native_node_shrinks_any_larger_frame_as_opencv_does(node_binary, tmp_path: Path) -> None:
    """Larger frames of any size: whole factors that differ per axis (320x144 -> 5 x 3, as 1280x720 is 20 x 15),
    fractional ones (OpenCV's area table), one axis at size and one fractional; the commands are the Python node's,
    whose resize is cv2.resize(INTER_AREA). A frame smaller than the policy's input is dropped (the Python node would
    enlarge it)."""
    policy, weights = _weights(tmp_path, use_goal=False)
    ns = f"/n{uuid.uuid4().hex[:8]}"
    peer = Peer(ns)
    proc = _start(node_binary, weights, ns)
    rng = np.random.default_rng(5)
    frames, t = [], 1000.0
    # (Camera-sized frames, 1280x720 and up, lose fragments on a loaded machine's best-effort camera QoS.)
    for i, size in enumerate([(144, 320), (75, 100), (50, 64), (61, 97), (240, 320), (49, 65)]):
        t += 0.07
        stamp = Time(sec=int(t), nanosec=int(round((t % 1) * 1e9)))
        rgb = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
        frames.append((stamp, rgb_to_image_msg(rgb, stamp, "camera", encoding="bgr8" if i % 2 else "rgb8"), rgb))
    try:
        _connected(peer, proc)
        answered = _fly(peer, frames)
        assert len(answered) >= 5, f"only {len(answered)} of 6 frames answered"
        expected = _expected(policy, [(s, rgb) for s, rgb, _ in answered], None)
        for (_, _, got), want in zip(answered, expected):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
        small = rgb_to_image_msg(np.zeros((40, 64, 3), np.uint8), Time(sec=1100), "camera")
        peer.image_pub.publish(small)
        assert not peer.wait_for(lambda: peer.answer(small.header.stamp) is not None, 1.0)
    finally:
        code, err = _stop(proc)
        peer.close()
    assert code == 0, err
    assert "does not enlarge them, got 64x40" in err


def test_native_node_flies_to_the_goal_from_odometry(node_binary, tmp_path: Path) -> None:
    policy, weights = _weights(tmp_path, use_goal=True)
    ns = f"/n{uuid.uuid4().hex[:8]}"
    peer = Peer(ns)
    proc = _start(node_binary, weights, ns)
    odom = Odometry()
    odom.header.frame_id = "map"
    odom.pose.pose.position.x, odom.pose.pose.position.y, odom.pose.pose.position.z = 1.0, -2.0, 1.5
    q = np.array([0.9, 0.1, -0.05, 0.4])  # not unit: the node normalises it, as goal_input does
    odom.pose.pose.orientation.w, odom.pose.pose.orientation.x = float(q[0]), float(q[1])
    odom.pose.pose.orientation.y, odom.pose.pose.orientation.z = float(q[2]), float(q[3])
    goal = PoseStamped()
    goal.header.frame_id = "map"
    goal.pose.position.x, goal.pose.position.y, goal.pose.position.z = 20.0, 5.0, 2.0
    try:
        _connected(peer, proc)
        frames = _frames()
        # Before the goal: every frame is a hover, the network not advanced.
        peer.odom_pub.publish(odom)
        first = _fly(peer, frames[:1])
        assert first and np.allclose(first[0][2], 0.0)
        peer.goal_pub.publish(goal)
        time.sleep(0.3)  # the latched goal arrives
        peer.odom_pub.publish(odom)
        time.sleep(0.1)
        answered = _fly(peer, frames[1:])
        assert len(answered) >= 4
        expected = _expected(policy, [(s, rgb) for s, rgb, _ in first + answered], goal_input(odom, goal), hovered=1)
        for (_, _, got), want in zip(answered, expected[1:]):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    finally:
        code, err = _stop(proc)
        peer.close()
    assert code == 0, err
    assert "new goal (20.00, 5.00, 2.00) in 'map'" in err


def test_native_node_drops_bad_frames_hovers_on_a_stale_camera_and_ends_with_a_zero(node_binary, tmp_path) -> None:
    _, weights = _weights(tmp_path, use_goal=False)
    ns = f"/n{uuid.uuid4().hex[:8]}"
    peer = Peer(ns)
    proc = _start(node_binary, weights, ns, "--failsafe-rate", "20")
    try:
        _connected(peer, proc)
        frames = _frames()
        assert _fly(peer, frames[:1])
        bad = rgb_to_image_msg(np.zeros((48, 64, 3), np.uint8), Time(sec=1001, nanosec=0), "camera")
        bad.encoding = "yuv422"
        odd = rgb_to_image_msg(np.zeros((40, 64, 3), np.uint8), Time(sec=1001, nanosec=1), "camera")  # too small
        for msg in (bad, odd):  # one at a time: the node's depth-1 camera queue keeps only the newest
            peer.image_pub.publish(msg)
            time.sleep(0.3)
        assert peer.answer(bad.header.stamp) is None and peer.answer(odd.header.stamp) is None
        before = len(peer.snapshot())
        # No frames for longer than image_timeout (0.5 s): hovers at the fail-safe rate, stamped now.
        assert peer.wait_for(lambda: len(peer.snapshot()) - before >= 3, 3.0)
        hovers = peer.snapshot()[before:]
        assert all(np.allclose([h.twist.linear.x, h.twist.linear.y, h.twist.angular.z], 0.0) for h in hovers)
        assert all(h.header.stamp.sec > 1_600_000_000 for h in hovers)  # the wall clock, not a frame's
        resumed = _fly(peer, frames[1:2])
        assert resumed and not np.allclose(resumed[0][2], 0.0)
        count = len(peer.snapshot())
    finally:
        code, err = _stop(proc)
    try:
        assert peer.wait_for(lambda: len(peer.snapshot()) > count, 3.0)  # the final zero
        final = peer.snapshot()[-1].twist
        assert (final.linear.x, final.linear.y, final.linear.z, final.angular.z) == (0.0, 0.0, 0.0, 0.0)
    finally:
        peer.close()
    assert code == 0, err
    assert "dropped a camera frame: image encoding 'yuv422' is not supported" in err
    assert "does not enlarge them" in err and "fail-safe: hovering" in err and "fail-safe cleared" in err


def test_native_node_refuses_what_it_cannot_fly(node_binary, tmp_path: Path) -> None:
    binary, env = node_binary
    env = dict(env, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(binary), *args], env=env, capture_output=True, text=True, timeout=30)

    missing = run("--weights", str(tmp_path / "missing.safetensors"))
    assert missing.returncode == 2 and "cannot open" in missing.stderr
    checkpoint = run("--weights", str(Path(__file__).resolve().parent.parent / "models" / "cfc_ncp.safetensors"))
    assert checkpoint.returncode == 2 and "--format native" in checkpoint.stderr
    (tmp_path / "junk").write_bytes(os.urandom(64))
    assert run("--weights", str(tmp_path / "junk")).returncode == 2
    assert run().returncode == 2 and "--weights (or the weights parameter) is required" in run().stderr
    _, weights = _weights(tmp_path, use_goal=False)
    bad = run("--weights", str(weights), "--max-speed-xy", "fast")
    assert bad.returncode == 2 and "needs a number" in bad.stderr
    assert run("--weights", str(weights), "--frobnicate", "1").returncode == 2
    # The same refusals through ROS parameters, each a clean exit 2 after rcl is up.
    ros = ("--ros-args", "-p")
    torch_ckpt = run(*ros, "model_path:=models/cfc_ncp.safetensors")
    assert (
        torch_ckpt.returncode == 2 and "lnn-nav export models/cfc_ncp.safetensors --format native" in torch_ckpt.stderr
    )
    compressed = run("--weights", str(weights), *ros, "image_transport:=compressed")
    assert compressed.returncode == 2 and "raw frames only" in compressed.stderr
    not_a_number = run(*ros, f"weights:={weights}", "-p", "max_speed_xy:=fast")
    assert not_a_number.returncode == 2 and "parameter max_speed_xy needs a number" in not_a_number.stderr
    # The Python node's declared ranges hold at start too (a flag or a parameter).
    too_fast = run("--weights", str(weights), "--max-speed-xy", "1000")
    assert too_fast.returncode == 2 and "max_speed_xy must be in [0, 50], got 1000" in too_fast.stderr
    missing_by_parameter = run(*ros, f"weights:={tmp_path / 'missing.safetensors'}")
    assert missing_by_parameter.returncode == 2 and "cannot open" in missing_by_parameter.stderr


def test_native_node_reads_the_python_nodes_parameter_file(node_binary, tmp_path: Path) -> None:
    """config/controller.yaml's format under the Python node's name (a launch remaps the native node to it): its
    limits and topics apply, its torch-only keys are accepted, a command-line flag wins over a parameter."""
    binary, env = node_binary
    policy, weights = _weights(tmp_path, use_goal=False)
    ns = f"/n{uuid.uuid4().hex[:8]}"
    parameters = {
        "autostart": True,
        "device": "cpu",
        "raw_io": True,
        "executor": "events",
        "max_speed_xy": 9.0,  # the flag's 0.5 wins
        "image_timeout": 0.5,
        "expected_rate": 15.0,
    }
    config = tmp_path / "controller.yaml"
    # A namespace-agnostic entry ("/**" matching no namespace at all, as rclcpp reads it) sets the topic: the
    # node answers nothing unless it applies.
    anywhere = {"ros__parameters": {"image_topic": f"{ns}/camera/image_raw"}}
    config.write_text(
        yaml.safe_dump({"controller_node": {"ros__parameters": parameters}, "/**/controller_node": anywhere})
    )
    peer = Peer(ns)
    cmd = [str(binary), "--max-speed-xy", str(LIMITS[0]), "--ros-args", "--params-file", str(config)]
    cmd += ["-r", "__node:=controller_node", "-p", f"weights:={weights}", "-p", f"cmd_topic:={ns}/cmd_vel"]
    proc = subprocess.Popen(
        cmd,
        env=dict(env, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _connected(peer, proc)
        answered = _fly(peer, _frames())
        assert len(answered) >= 5, f"only {len(answered)} of 6 frames answered"
        expected = _expected(policy, [(s, rgb) for s, rgb, _ in answered], None)
        for (_, _, got), want in zip(answered, expected):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
        assert any(np.hypot(*want[:2]) > LIMITS[0] - 1e-9 for want in expected), "the clamp never acted"
    finally:
        code, err = _stop(proc)
        peer.close()
    assert code == 0, err
    assert "unknown parameter" not in err


def test_the_node_sources_ship_with_the_package() -> None:
    import ast

    setup = Path(__file__).resolve().parent.parent / "setup.py"
    call = next(n for n in ast.walk(ast.parse(setup.read_text())) if isinstance(n, ast.Call) and n.keywords)
    package_data = ast.literal_eval(next(k.value for k in call.keywords if k.arg == "package_data"))
    assert any(native.SOURCE.match(p) for p in package_data["lnn_nav.nodes"])
    assert all(any(h.match(p) for p in package_data["lnn_nav.nodes"]) for h in native.NODE_HEADERS)
    assert any(native.RUNTIME.match(p) for p in package_data["lnn_nav.kernels"])
    assert "native_controller_node = lnn_nav.nodes.native:main" in setup.read_text()


def test_native_node_e_stop_and_reset_services(node_binary, tmp_path: Path) -> None:
    from std_srvs.srv import SetBool, Trigger

    policy, weights = _weights(tmp_path, use_goal=False)
    ns = f"/n{uuid.uuid4().hex[:8]}"
    peer = Peer(ns)
    proc = _start(node_binary, weights, ns, "--ros-args", "-r", f"__ns:={ns}")

    def call(srv_type, name: str, request):
        return _call(peer, f"{ns}/native_controller/{name}", srv_type, request)

    try:
        _connected(peer, proc)
        frames = _frames()
        assert _fly(peer, frames[:1])
        statuses: list = []
        peer.node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: statuses.extend(m.status), 10)
        stopped = call(SetBool, "enable", SetBool.Request(data=False))
        assert stopped.success and stopped.message == "e-stop: zero commands"

        def e_stop_reported() -> bool:
            return any(
                st.name == "native_controller: lnn_nav controller"
                and st.level == DiagnosticStatus.WARN
                and st.message == "e-stop: commanding zero"
                and {kv.key: kv.value for kv in st.values}.get("enabled") == "False"
                for st in list(statuses)
            )

        assert peer.wait_for(e_stop_reported, 3.0)
        during = _fly(peer, frames[1:3])
        assert during and all(np.allclose(got, 0.0) for _, _, got in during)
        assert call(SetBool, "enable", SetBool.Request(data=True)).message == "enabled"
        # Re-enabled: the network restarts from rest, as a fresh node on these frames would fly them.
        after = _fly(peer, frames[3:])
        expected = _expected(policy, [(s, rgb) for s, rgb, _ in after], None)
        for (_, _, got), want in zip(after, expected):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
        reset = call(Trigger, "reset_state", Trigger.Request())
        assert reset.success and reset.message == "recurrent state reset"
    finally:
        code, err = _stop(proc)
        peer.close()
    assert code == 0, err
    assert "e-stop: commanding zero" in err and "enabled: commanding resumes" in err


def test_native_node_lifecycle_as_the_python_nodes(node_binary, tmp_path: Path) -> None:
    """--no-autostart waits in 'unconfigured' answering no frame; configure + activate (by id and by label, as
    `ros2 lifecycle set` sends them) fly the Python controller's commands; deactivate sends one zero and stops."""
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState, GetAvailableTransitions, GetState
    from std_srvs.srv import SetBool

    policy, weights = _weights(tmp_path, use_goal=False)
    ns = f"/n{uuid.uuid4().hex[:8]}"
    peer = Peer(ns)
    proc = _start(node_binary, weights, ns, "--no-autostart", "--ros-args", "-r", f"__ns:={ns}")

    def call(srv_type, name: str, request):
        return _call(peer, f"{ns}/native_controller/{name}", srv_type, request)

    def state() -> str:
        return call(GetState, "get_state", GetState.Request()).current_state.label

    def cpu_seconds() -> float:
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    try:
        assert state() == "unconfigured"
        # Waiting, not spinning: an unconfigured node's loop sleeps between its diagnostics.
        before_cpu, t0 = cpu_seconds(), time.monotonic()
        time.sleep(2.0)
        assert cpu_seconds() - before_cpu < 0.1 * (time.monotonic() - t0), "the idle node spins"
        frames = _frames()
        assert peer.wait_for(lambda: peer.image_pub.get_subscription_count() > 0, 15.0)
        peer.image_pub.publish(frames[0][1])
        assert not peer.wait_for(lambda: bool(peer.snapshot()), 1.0), "an unconfigured node commanded"
        configure = ChangeState.Request(transition=Transition(id=Transition.TRANSITION_CONFIGURE))
        assert call(ChangeState, "change_state", configure).success
        assert state() == "inactive"
        offered = call(GetAvailableTransitions, "get_available_transitions", GetAvailableTransitions.Request())
        assert {t.transition.label for t in offered.available_transitions} >= {"activate", "cleanup", "shutdown"}
        assert not call(ChangeState, "change_state", configure).success  # not from 'inactive'
        activate = ChangeState.Request(transition=Transition(label="activate"))
        assert call(ChangeState, "change_state", activate).success
        assert state() == "active"
        _connected(peer, proc)
        answered = _fly(peer, frames)
        assert len(answered) >= 5, f"only {len(answered)} of 6 frames answered"
        expected = _expected(policy, [(s, rgb) for s, rgb, _ in answered], None)
        for (_, _, got), want in zip(answered, expected):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
        before = len(peer.snapshot())
        deactivate = ChangeState.Request(transition=Transition(id=Transition.TRANSITION_DEACTIVATE))
        assert call(ChangeState, "change_state", deactivate).success
        assert peer.wait_for(lambda: len(peer.snapshot()) > before, 3.0)
        last = peer.snapshot()[-1].twist
        assert (last.linear.x, last.linear.y, last.linear.z, last.angular.z) == (0.0, 0.0, 0.0, 0.0)
        settled = len(peer.snapshot())
        peer.image_pub.publish(frames[0][1])
        assert not peer.wait_for(lambda: len(peer.snapshot()) > settled, 1.0), "an inactive node commanded"
        assert state() == "inactive"
        # An e-stop while inactive changes the flag, not /cmd_vel (another controller may be flying).
        assert call(SetBool, "enable", SetBool.Request(data=False)).success
        assert not peer.wait_for(lambda: len(peer.snapshot()) > settled, 0.5), "an inactive node sent a zero"
        # A label names the transition whatever the id says (rclcpp, rclpy): id 3 is activate, the label wins.
        shutdown = ChangeState.Request(transition=Transition(id=Transition.TRANSITION_ACTIVATE, label="shutdown"))
        assert call(ChangeState, "change_state", shutdown).success
        assert state() == "finalized"
        assert not call(
            ChangeState, "change_state", ChangeState.Request(transition=Transition(label="nonsense"))
        ).success
    finally:
        code, err = _stop(proc)
        peer.close()
    assert code == 0, err
    assert "waiting in 'unconfigured'" in err and "inactive: published one zero command" in err


def test_native_node_checks_camera_info_against_the_trained_camera(node_binary, tmp_path: Path) -> None:
    from sensor_msgs.msg import CameraInfo

    torch.manual_seed(4)
    cfg = PolicyConfig(encoder=EncoderConfig(height=48, width=64), camera_hfov_deg=90.0)
    weights = save_weights(export_weights(LiquidPolicy(cfg).eval()), tmp_path / "policy.native.safetensors")
    ns = f"/n{uuid.uuid4().hex[:8]}"
    peer = Peer(ns)
    info_pub = peer.node.create_publisher(CameraInfo, f"{ns}/camera/camera_info", 10)  # beside the image topic
    statuses: list = []
    peer.node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: statuses.extend(m.status), 10)
    # A long camera timeout: no fail-safe hover (an ERROR) hides the camera check's WARN between frames.
    proc = _start(node_binary, weights, ns, "--image-timeout", "10", "--ros-args", "-r", f"__node:=cam_{ns[2:]}")

    def reported(level: int, message: str, mismatch: str) -> bool:
        return any(
            st.name == f"cam_{ns[2:]}: lnn_nav controller"
            and (st.level, st.message) == (level, message)
            and {kv.key: kv.value for kv in st.values}.get("camera_mismatch") == mismatch
            for st in list(statuses)
        )

    def info(hfov_deg: float) -> CameraInfo:
        msg = CameraInfo(width=640, height=480)
        msg.k[0] = 320.0 / np.tan(np.radians(hfov_deg) / 2.0)
        return msg

    wrong = "camera field of view 60.0 deg (CameraInfo) differs from the 90.0 deg it was trained with"
    try:
        _connected(peer, proc)
        assert peer.wait_for(lambda: info_pub.get_subscription_count() > 0, 10.0)
        info_pub.publish(info(60.0))
        assert peer.wait_for(lambda: reported(DiagnosticStatus.WARN, f"flying; {wrong}", wrong), 5.0)
        statuses.clear()
        info_pub.publish(info(90.3))  # within the 1 deg tolerance
        assert peer.wait_for(lambda: reported(DiagnosticStatus.OK, "flying", ""), 5.0)
    finally:
        code, err = _stop(proc)
        peer.close()
    assert code == 0, err
    assert f"{wrong}: the policy's commands are not to be trusted with this camera" in err


def test_native_node_parameter_services_as_ros2_param_uses_them(node_binary, tmp_path: Path) -> None:
    """list / get / describe / set (one by one and atomically): a limit set while flying clamps the next frames;
    read-only, wrongly typed and inconsistent values are refused and change nothing."""
    from rcl_interfaces.msg import Parameter, ParameterEvent, ParameterType, ParameterValue
    from rcl_interfaces.srv import (
        DescribeParameters,
        GetParameters,
        ListParameters,
        SetParameters,
        SetParametersAtomically,
    )

    _, weights = _weights(tmp_path, use_goal=False)
    ns = f"/n{uuid.uuid4().hex[:8]}"
    peer = Peer(ns)
    proc = _start(node_binary, weights, ns, "--ros-args", "-r", f"__ns:={ns}")

    def call(srv_type, name: str, request):
        return _call(peer, f"{ns}/native_controller/{name}", srv_type, request)

    def param(name: str, **value) -> Parameter:
        return Parameter(name=name, value=ParameterValue(**value))

    events: list = []
    peer.node.create_subscription(ParameterEvent, "/parameter_events", events.append, 100)

    def get(*names: str) -> list:
        return list(call(GetParameters, "get_parameters", GetParameters.Request(names=list(names))).values)

    double, string = ParameterType.PARAMETER_DOUBLE, ParameterType.PARAMETER_STRING
    try:
        listed = set(call(ListParameters, "list_parameters", ListParameters.Request()).result.names)
        assert {"weights", "image_topic", "max_speed_xy", "image_timeout", "sync_inputs", "use_sim_time"} <= listed
        speed, topic = get("max_speed_xy", "image_topic")
        assert (speed.type, speed.double_value) == (double, LIMITS[0])
        assert (topic.type, topic.string_value) == (string, f"{ns}/camera/image_raw")
        assert get("max_speed_xy", "nonsense") == []  # an undeclared name: an empty answer (rclpy, rclcpp)
        topic_d, speed_d = call(
            DescribeParameters, "describe_parameters", DescribeParameters.Request(names=["image_topic", "max_speed_xy"])
        ).descriptors
        assert topic_d.read_only and topic_d.type == string
        assert not speed_d.read_only and (speed_d.floating_point_range[0].to_value == 50.0)
        results = call(
            SetParameters,
            "set_parameters",
            SetParameters.Request(
                parameters=[
                    param("max_speed_xy", type=double, double_value=0.2),
                    param("image_topic", type=string, string_value="/elsewhere"),
                    param("max_speed_z", type=ParameterType.PARAMETER_INTEGER, integer_value=1),
                    param("expected_rate", type=double, double_value=1.0),  # 1 s frames with max_dt 0.5: inconsistent
                    param("nonsense", type=double, double_value=1.0),
                    param("max_speed_z", type=double, double_value=1e6),  # beyond the declared [0, 20]
                ]
            ),
        ).results
        assert [r.successful for r in results] == [True, False, False, False, False, False]

        def announced() -> bool:  # the accepted change on /parameter_events, as rclcpp's nodes announce it
            return any(
                e.node == f"{ns}/native_controller"
                and [(p.name, p.value.double_value) for p in e.changed_parameters] == [("max_speed_xy", 0.2)]
                for e in list(events)
            )

        assert peer.wait_for(announced, 5.0)
        assert "read-only" in results[1].reason and "is a double, not integer" in results[2].reason
        assert "max_dt" in results[3].reason and "not declared" in results[4].reason
        assert "must be in [0, 20]" in results[5].reason
        # Atomically, the final values are judged together: a lower max_dt with a higher rate, in either order.
        for order in ((("max_dt", 0.05), ("expected_rate", 30.0)), (("expected_rate", 30.0), ("max_dt", 0.05))):
            both = [param(name, type=double, double_value=value) for name, value in order]
            request = SetParametersAtomically.Request(parameters=both)
            assert call(SetParametersAtomically, "set_parameters_atomically", request).result.successful
        restore = [
            param("max_dt", type=double, double_value=0.5),
            param("expected_rate", type=double, double_value=15.0),
        ]
        request = SetParametersAtomically.Request(parameters=restore)
        assert call(SetParametersAtomically, "set_parameters_atomically", request).result.successful
        atomic = call(
            SetParametersAtomically,
            "set_parameters_atomically",
            SetParametersAtomically.Request(
                parameters=[
                    param("max_speed_xy", type=double, double_value=0.1),
                    param("image_timeout", type=double, double_value=-1.0),
                ]
            ),
        ).result
        assert not atomic.successful
        speed, rate = get("max_speed_xy", "expected_rate")
        assert (speed.double_value, rate.double_value) == (0.2, 15.0)  # the set one kept, the refused ones undone
        _connected(peer, proc)
        answered = _fly(peer, _frames())
        assert answered and all(np.hypot(*got[:2]) <= 0.2 + 1e-9 for _, _, got in answered)
        assert max(np.hypot(*got[:2]) for _, _, got in answered) > 0.19  # flying at the new limit
    finally:
        code, err = _stop(proc)
        peer.close()
    assert code == 0, err
    assert "parameter max_speed_xy set" in err


def test_a_sourced_ros_install_is_found_when_the_wheels_are_not(tmp_path: Path, monkeypatch) -> None:
    # A fake /opt/ros/jazzy: rcl's headers in include/rcl/rcl, libraries in lib; this Python's prefix has none.
    install = tmp_path / "opt_ros_jazzy"
    (install / "include" / "rcl" / "rcl").mkdir(parents=True)
    (install / "include" / "sensor_msgs").mkdir()
    (install / "lib").mkdir()
    monkeypatch.setattr(native.sys, "prefix", str(tmp_path / "venv"))
    monkeypatch.setenv("AMENT_PREFIX_PATH", f"{tmp_path / 'ws' / 'install'}{os.pathsep}{install}")
    link = native.ros_link_environment()
    assert link.libdir == install / "lib" and link.libpython == Path()
    assert install / "include" / "sensor_msgs" in link.includes
    assert link.env["LD_LIBRARY_PATH"].split(os.pathsep)[0] == str(install / "lib")
    assert "libpython" not in " ".join(native.link_flags(link, ["rcl"]))
    monkeypatch.setenv("AMENT_PREFIX_PATH", "")
    with pytest.raises(RuntimeError, match="no rcl headers"):
        native.ros_link_environment()


@pytest.mark.slow
def test_native_node_flies_the_in_process_episode_step_for_step(node_binary, tmp_path: Path) -> None:
    # The shipped CfC-NCP through sim_node and the native node, lockstep on /clock with each frame's own
    # odometry: the same episode as the batched in-process benchmark flies on that seed (outcome, time, path).
    from lnn_nav.eval.camera import fly_with_camera
    from lnn_nav.eval.closed_loop import eval_job
    from lnn_nav.eval.ros_agreement import fly_seed_over_ros, graph_params

    model = str(Path(__file__).resolve().parent.parent / "models" / "cfc_ncp.safetensors")
    world, preset, seed = "forest", "in_distribution", 1003
    params = graph_params(eval_job(model, world, [seed], preset), expert=False)
    ros = fly_seed_over_ros(world, seed, preset, model, timeout=240.0, log_dir=str(tmp_path), native=True, **params)
    local = fly_with_camera(model, world, seed, preset)
    log = (tmp_path / "native_controller.log").read_text()
    sim_log = (tmp_path / "sim_node.log").read_text()
    # What parts the two flights is only an overloaded machine: a command later than sim_node's command
    # timeout, or a frame whose odometry came later than sync_timeout. Either is logged; then the flights
    # may differ, and this run says nothing about the node.
    import re

    frames = int(re.search(r"stopped; frames (\d+)", log).group(1))
    steps = round(float(local.time) * float(params["sim_params"]["control_hz"])) + 1
    if "no command" in sim_log or "sync_timeout" in log or frames != steps:
        # (a frame offered twice, when the first answer was slow, is stepped twice)
        pytest.skip("the machine was too loaded for lockstep: a command, odometry or frame was late")
    assert (ros["outcome"], round(ros["time"], 3)) == (local.outcome, round(local.time, 3)), ros
    assert round(ros["path_length"], 2) == round(local.path_length, 2)
    assert "non-finite outputs 0" in log and "dropped frames 0" in log


def test_under_sim_time_a_goal_policy_hovers_until_its_goal_and_stamps_hovers_with_clock(node_binary, tmp_path) -> None:
    from rclpy.qos import qos_profile_sensor_data
    from rosgraph_msgs.msg import Clock

    _, weights = _weights(tmp_path, use_goal=True)
    ns = f"/n{uuid.uuid4().hex[:8]}"
    peer = Peer(ns)
    # A best-effort /clock (rclcpp's ClockQoS), on a topic of this test's own.
    clock_pub = peer.node.create_publisher(Clock, f"{ns}/clock", qos_profile_sensor_data)
    proc = _start(node_binary, weights, ns, "--use-sim-time", "--ros-args", "-r", f"/clock:={ns}/clock")
    odom = Odometry()  # frame "" as the goal's would be before one arrives
    odom.pose.pose.orientation.w = 1.0
    try:
        _connected(peer, proc)  # before any /clock: the warm-up frame is answered, with a hover
        peer.odom_pub.publish(odom)
        time.sleep(0.2)
        flown = _fly(peer, _frames()[:3])
        assert flown and all(np.allclose(got, 0.0) for _, _, got in flown)  # no goal: hover, never fly
        for _ in range(10):
            clock_pub.publish(Clock(clock=Time(sec=500)))
            time.sleep(0.05)
        # The camera goes quiet in simulated time once the clock has run past image_timeout (0.5 s).
        clock_pub.publish(Clock(clock=Time(sec=502)))
        assert peer.wait_for(lambda: any(c.header.stamp.sec == 502 for c in peer.snapshot()), 3.0)
    finally:
        code, err = _stop(proc)
        peer.close()
    assert code == 0, err
    assert "fail-safe: hovering (zero command): goal" in err
