"""The controller node on a real rclpy graph: commands per frame, fail-safes, services, lifecycle."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable

import cv2
import numpy as np
import pytest
import torch

rclpy = pytest.importorskip("rclpy")

from builtin_interfaces.msg import Time  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from geometry_msgs.msg import TwistStamped  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image  # noqa: E402
from std_srvs.srv import SetBool, Trigger  # noqa: E402

from lnn_nav.models import EncoderConfig, LiquidPolicy, PolicyConfig, save_policy  # noqa: E402
from lnn_nav.nodes.controller import ControllerNode  # noqa: E402
from lnn_nav.nodes.conversions import rgb_to_image_msg  # noqa: E402
from lnn_nav.nodes.runtime import EXECUTOR_KINDS, make_executor  # noqa: E402

pytestmark = pytest.mark.ros

FRAME = np.random.default_rng(1).integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
BASE_S = 1000  # frame stamps far from the wall clock that stamps fail-safe commands


def _policy_file(tmp_path, nan: bool = False, camera_hfov_deg=None):
    torch.manual_seed(0)
    policy = LiquidPolicy(PolicyConfig(encoder=EncoderConfig(height=48, width=64), camera_hfov_deg=camera_hfov_deg))
    if nan:
        with torch.no_grad():
            policy.head.weight.fill_(float("nan"))
    return str(save_policy(policy, tmp_path / ("nan.safetensors" if nan else "policy.safetensors")))


def _stamp(i: int) -> Time:
    return Time(sec=BASE_S + i // 20, nanosec=(i % 20) * 50_000_000)


def _key(stamp: Time):
    return (stamp.sec, stamp.nanosec)


class Graph:
    """A controller node and a test node, spun by one executor in a background thread."""

    def __init__(self, model_path: str, compressed: bool = False, executor: str = "events", **params) -> None:
        self.ns = f"/t{uuid.uuid4().hex[:10]}"
        self.context = Context()
        rclpy.init(context=self.context)
        overrides = {
            "model_path": model_path,
            "image_topic": f"{self.ns}/camera/image_raw",
            "image_transport": "compressed" if compressed else "raw",
            **params,
        }
        self.node = ControllerNode(
            context=self.context,
            cli_args=[
                "--ros-args",
                "-r",
                f"/cmd_vel:={self.ns}/cmd_vel",
                "-r",
                f"/diagnostics:={self.ns}/diagnostics",
                "-r",
                f"/clock:={self.ns}/clock",
            ],
            parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()],
        )
        self.peer = rclpy.create_node("controller_test_peer", context=self.context)
        self.commands: list[TwistStamped] = []
        self.lock = threading.Lock()
        self.peer.create_subscription(TwistStamped, f"{self.ns}/cmd_vel", self._on_cmd, 100)
        if compressed:
            self.image_pub = self.peer.create_publisher(CompressedImage, f"{self.ns}/camera/image_raw/compressed", 10)
        else:
            self.image_pub = self.peer.create_publisher(Image, f"{self.ns}/camera/image_raw", 10)
        # The executor the node's process spins with (its `executor` parameter, events by default).
        self.executor, _ = make_executor(executor, context=self.context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.peer)
        self._running = True
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        while self._running and self.context.ok():
            self.executor.spin_once(timeout_sec=0.02)

    def _on_cmd(self, msg: TwistStamped) -> None:
        with self.lock:
            self.commands.append(msg)

    def close(self) -> None:
        self._running = False
        self.thread.join(timeout=5)
        self.executor.shutdown()
        self.node.destroy_node()
        self.peer.destroy_node()
        self.context.try_shutdown()

    def snapshot(self) -> list[TwistStamped]:
        with self.lock:
            return list(self.commands)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.01)
        return predicate()

    def wait_connected(self) -> None:
        assert self.wait_for(
            lambda: (
                self.image_pub.get_subscription_count() > 0 and self.peer.count_publishers(f"{self.ns}/cmd_vel") > 0
            ),
            10.0,
        )

    def send(self, i: int, msg=None) -> None:
        msg = msg if msg is not None else rgb_to_image_msg(FRAME, _stamp(i), "camera")
        msg.header.stamp = _stamp(i)
        self.image_pub.publish(msg)

    def commands_for(self, i: int) -> list[TwistStamped]:
        return [c for c in self.snapshot() if _key(c.header.stamp) == _key(_stamp(i))]

    def send_and_wait(self, i: int, msg=None) -> TwistStamped:
        # Best-effort, depth-1 QoS may drop a frame: resend the same stamp until it is answered.
        for _ in range(20):
            self.send(i, msg)
            if self.wait_for(lambda: self.commands_for(i), 0.5):
                return self.commands_for(i)[0]
        raise AssertionError(f"no command for frame {i}")

    def call(self, srv_type, name: str, request):
        client = self.peer.create_client(srv_type, f"/controller_node/{name}")
        assert client.wait_for_service(timeout_sec=10.0)
        future = client.call_async(request)
        assert self.wait_for(future.done, 10.0)
        return future.result()


@pytest.fixture
def graph_factory():
    graphs: list[Graph] = []

    def make(*args, **kwargs) -> Graph:
        g = Graph(*args, **kwargs)
        graphs.append(g)
        return g

    yield make
    for g in graphs:
        g.close()


def _is_zero(cmd: TwistStamped) -> bool:
    t = cmd.twist
    return (t.linear.x, t.linear.y, t.linear.z, t.angular.z) == (0.0, 0.0, 0.0, 0.0)


@pytest.mark.parametrize("executor", EXECUTOR_KINDS)
def test_one_command_per_frame_stamped_with_the_frame_stamp(tmp_path, graph_factory, executor):
    g = graph_factory(_policy_file(tmp_path), executor=executor, image_timeout=5.0, max_speed_xy=0.5)
    g.wait_connected()
    for i in range(5):
        cmd = g.send_and_wait(i)
        assert cmd.header.frame_id == "base_link"
        assert np.hypot(cmd.twist.linear.x, cmd.twist.linear.y) <= 0.5 + 1e-9
        assert not _is_zero(cmd)
    time.sleep(0.2)
    assert [len(g.commands_for(i)) for i in range(5)] == [1] * 5
    assert g.node.counters["frames"] == 5 and g.node.counters["nonfinite_outputs"] == 0


def test_a_speed_limit_set_while_flying_clamps_the_next_frame(tmp_path, graph_factory):
    # The limits are read from a cache on every frame; `ros2 param set` must still reach it.
    g = graph_factory(_policy_file(tmp_path), image_timeout=5.0, max_speed_xy=0.5)
    g.wait_connected()
    first = g.send_and_wait(0)
    assert 0.0 < np.hypot(first.twist.linear.x, first.twist.linear.y) <= 0.5 + 1e-9
    result = g.node.set_parameters([Parameter("max_speed_xy", value=0.01)])
    assert result[0].successful
    cmd = g.send_and_wait(1)
    assert np.hypot(cmd.twist.linear.x, cmd.twist.linear.y) <= 0.01 + 1e-9
    assert g.node.set_parameters([Parameter("max_speed_xy", value=-1.0)])[0].successful is False
    later = g.send_and_wait(2).twist  # a refused value leaves the limit as it was
    assert np.hypot(later.linear.x, later.linear.y) <= 0.01 + 1e-9


@pytest.mark.parametrize("executor", EXECUTOR_KINDS)
def test_stale_camera_hovers_within_the_timeout_and_resumes_on_fresh_frames(tmp_path, graph_factory, executor):
    g = graph_factory(_policy_file(tmp_path), executor=executor, image_timeout=0.25, failsafe_rate_hz=20.0)
    g.wait_connected()
    for i in range(3):
        g.send_and_wait(i)
    last_frame = time.monotonic()
    before = len(g.snapshot())
    assert g.wait_for(lambda: any(_is_zero(c) for c in g.snapshot()[before:]), 2.0)
    # image_timeout + one fail-safe period, plus slack for a loaded CI machine.
    assert time.monotonic() - last_frame <= 0.25 + 0.05 + 0.25
    assert g.node._failsafe_active and "camera" in g.node._failsafe_reason
    time.sleep(0.3)
    hovers = [c for c in g.snapshot()[before:] if _is_zero(c)]
    assert len(hovers) >= 4  # keeps hovering at the fail-safe rate
    cmd = g.send_and_wait(40)  # 2 s gap: fresh frame, state reset
    assert not _is_zero(cmd)
    assert g.wait_for(lambda: not g.node._failsafe_active, 1.0)
    assert g.node.counters["state_resets"] >= 1


def test_nan_weights_give_zero_commands_and_are_counted(tmp_path, graph_factory):
    g = graph_factory(_policy_file(tmp_path, nan=True), image_timeout=5.0)
    g.wait_connected()
    cmd = g.send_and_wait(0)
    assert _is_zero(cmd)
    assert g.node.counters["nonfinite_outputs"] == 1
    assert _is_zero(g.send_and_wait(1)) and g.node.counters["nonfinite_outputs"] == 2


def test_malformed_images_are_dropped_and_counted(tmp_path, graph_factory):
    g = graph_factory(_policy_file(tmp_path), image_timeout=5.0)
    g.wait_connected()
    g.send_and_wait(0)  # matched and flowing
    short = rgb_to_image_msg(FRAME, _stamp(1), "camera")
    short.data = bytes(short.data)[:-5]
    unknown = rgb_to_image_msg(FRAME, _stamp(2), "camera")
    unknown.encoding = "yuv422"
    for count, (i, msg) in enumerate(((1, short), (2, unknown)), start=1):
        g.send(i, msg)  # one at a time: the depth-1 queue keeps only the newest
        assert g.wait_for(lambda: g.node.counters["malformed_inputs"] == count, 3.0)  # noqa: B023 -- called within this iteration
    assert not g.commands_for(1) and not g.commands_for(2)
    assert not _is_zero(g.send_and_wait(3))  # still running


def _padded_bgr(i: int) -> Image:
    # bgr8 with 8 bytes of row padding and a frame id whose length moves every later field's alignment
    msg = rgb_to_image_msg(FRAME, _stamp(i), "cam_front_left", encoding="bgr8")
    rows = np.frombuffer(bytes(msg.data), dtype=np.uint8).reshape(48, 64 * 3)
    msg.data = np.hstack([rows, np.full((48, 8), 255, np.uint8)]).tobytes()
    msg.step = 64 * 3 + 8
    return msg


def test_raw_io_flies_the_same_commands_as_rclpy_messages(tmp_path, graph_factory):
    # The CDR path (default) and rclpy's message conversion, frame for frame: same values, same stamps.
    model = _policy_file(tmp_path)
    runs = {}
    for raw_io in (True, False):
        for _attempt in range(3):
            g = graph_factory(model, image_timeout=5.0, raw_io=raw_io)
            g.wait_connected()
            cmds = [g.send_and_wait(i, _padded_bgr(i) if i % 2 else None) for i in range(6)]
            assert g.node.counters["malformed_inputs"] == 0
            # A frame resent after a slow answer steps the state twice: such a run is no comparison.
            if g.node.counters["frames"] == 6:
                break
        runs[raw_io] = [(_key(c.header.stamp), c.header.frame_id, *_twist_values(c)) for c in cmds]
    assert runs[True] == runs[False]
    assert all(not np.allclose(r[2:], 0.0) for r in runs[True])


def test_raw_io_reads_other_encapsulations_and_drops_bytes_that_are_no_image(tmp_path, graph_factory):
    from rclpy.serialization import serialize_message

    g = graph_factory(_policy_file(tmp_path), image_timeout=5.0)
    g.wait_connected()
    assert not _is_zero(g.send_and_wait(0))
    # The same frame in XCDR2 (encapsulation 0x0007, as another rmw may send it): rclpy's deserialiser reads it.
    xcdr2 = bytearray(serialize_message(rgb_to_image_msg(FRAME, _stamp(1), "camera")))
    xcdr2[1] = 7
    for _ in range(20):
        g.image_pub.publish(bytes(xcdr2))
        if g.wait_for(lambda: g.commands_for(1), 0.5):
            break
    assert g.commands_for(1) and not _is_zero(g.commands_for(1)[0])
    assert g.node.counters["malformed_inputs"] == 0
    for count, junk in enumerate((b"\x00\x01\x00\x00abc", bytes(xcdr2[:40])), start=1):
        g.image_pub.publish(junk)
        assert g.wait_for(lambda: g.node.counters["malformed_inputs"] == count, 3.0)  # noqa: B023 -- this iteration
    assert not _is_zero(g.send_and_wait(3))  # still flying
    # A stamp at the edge of its fields (int32 sec, uint32 nanosec beyond a second) is echoed as sent.
    edge = rgb_to_image_msg(FRAME, Time(sec=2**31 - 1, nanosec=2**32 - 1), "camera")
    for _ in range(20):
        g.image_pub.publish(edge)
        if g.wait_for(lambda: any(_key(c.header.stamp) == (2**31 - 1, 2**32 - 1) for c in g.snapshot()), 0.5):
            break
    assert any(_key(c.header.stamp) == (2**31 - 1, 2**32 - 1) for c in g.snapshot())
    assert not _is_zero(g.send_and_wait(4))


def test_compressed_transport_decodes_jpeg_and_drops_corrupt_data(tmp_path, graph_factory):
    g = graph_factory(_policy_file(tmp_path), compressed=True, image_timeout=5.0)
    g.wait_connected()
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(FRAME, cv2.COLOR_RGB2BGR))
    good = CompressedImage(format="jpeg", data=jpeg.tobytes())
    g.send_and_wait(0, good)
    g.send(1, CompressedImage(format="jpeg", data=jpeg.tobytes()[:40]))
    assert g.wait_for(lambda: g.node.counters["malformed_inputs"] >= 1, 3.0)
    assert not g.commands_for(1)
    g.send_and_wait(2, CompressedImage(format="jpeg", data=jpeg.tobytes()))


def test_estop_service_zeroes_commands_until_re_enabled(tmp_path, graph_factory):
    g = graph_factory(_policy_file(tmp_path), image_timeout=5.0)
    g.wait_connected()
    assert not _is_zero(g.send_and_wait(0))
    assert g.call(SetBool, "enable", SetBool.Request(data=False)).success
    assert _is_zero(g.send_and_wait(1)) and _is_zero(g.send_and_wait(2))
    assert g.call(SetBool, "enable", SetBool.Request(data=True)).success
    assert not _is_zero(g.send_and_wait(3))
    assert g.call(Trigger, "reset_state", Trigger.Request()).success


def test_lifecycle_transitions_gate_commanding(tmp_path, graph_factory):
    g = graph_factory(_policy_file(tmp_path), autostart=False, image_timeout=5.0)
    assert g.node._policy is None
    assert g.node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert g.node._policy is not None
    g.wait_connected()
    g.send(0)
    time.sleep(0.3)
    assert not g.commands_for(0)  # configured but inactive: silent
    assert g.node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    g.send_and_wait(1)
    before = len(g.snapshot())
    assert g.node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    assert g.wait_for(lambda: len(g.snapshot()) > before, 2.0)
    g.send(2)
    time.sleep(0.3)
    after = g.snapshot()[before:]
    assert len(after) == 1 and _is_zero(after[0])
    assert g.node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
    assert g.node._policy is None


def test_cuda_requested_without_cuda_fails_configure(tmp_path, graph_factory):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    g = graph_factory(_policy_file(tmp_path), autostart=False, device="cuda")
    assert g.node.trigger_configure() == TransitionCallbackReturn.FAILURE
    assert g.node._policy is None


def test_an_empty_model_path_flies_the_shipped_cfc_ncp_not_an_untrained_policy(graph_factory):
    from lnn_nav.models import load_policy
    from lnn_nav.nodes.controller import shipped_model_path

    shipped = load_policy(shipped_model_path())
    g = graph_factory("")
    assert g.node._active and g.node._policy is not None
    assert g.node._policy.config == shipped.config
    for name, tensor in shipped.state_dict().items():
        assert torch.equal(g.node._policy.state_dict()[name], tensor), name


def test_an_untrained_policy_flies_only_with_allow_untrained(graph_factory):
    # This test relies on an untrained policy: it asks for one with allow_untrained.
    g = graph_factory("", allow_untrained=True, image_timeout=5.0)
    assert g.node._active and g.node._policy.config == LiquidPolicy().config
    g.wait_connected()
    g.send_and_wait(0)


def test_without_a_checkpoint_or_allow_untrained_the_node_refuses_and_never_commands(tmp_path):
    """The shipped checkpoint missing (a broken install) and no model_path: an error naming what to set,
    and exit code 1 (the test below: no /cmd_vel publisher is created)."""
    ns = f"/t{uuid.uuid4().hex[:10]}"
    script = (
        "import sys\n"
        "import lnn_nav.nodes.controller as c\n"
        "from lnn_nav.nodes.fly import SetupError\n"
        "def missing():\n"
        "    raise SetupError('models/cfc_ncp.safetensors not found; looked in: /nowhere')\n"
        "c.shipped_model_path = missing\n"
        "sys.exit(c.main())\n"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            "--ros-args",
            "-r",
            f"/cmd_vel:={ns}/cmd_vel",
            "-r",
            f"/diagnostics:={ns}/diagnostics",
        ],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert "model_path is empty and the shipped checkpoint is missing" in proc.stderr
    assert "set model_path" in proc.stderr and "allow_untrained:=true" in proc.stderr
    assert "UNTRAINED policy." not in proc.stderr  # never flew one
    assert "Traceback" not in proc.stderr


def test_without_a_checkpoint_configure_fails_and_creates_no_command_publisher(graph_factory, monkeypatch):
    from lnn_nav.nodes import controller
    from lnn_nav.nodes.fly import SetupError

    def missing():
        raise SetupError("models/cfc_ncp.safetensors not found; looked in: /nowhere")

    monkeypatch.setattr(controller, "shipped_model_path", missing)
    g = graph_factory("", autostart=False)
    assert g.node.trigger_configure() == TransitionCallbackReturn.FAILURE
    assert g.node._policy is None and g.node._cmd_pub is None
    assert g.peer.count_publishers(f"{g.ns}/cmd_vel") == 0


def test_diagnostics_report_state_and_counters(tmp_path, graph_factory):
    g = graph_factory(_policy_file(tmp_path), image_timeout=5.0)
    arrays: list[DiagnosticArray] = []
    g.peer.create_subscription(DiagnosticArray, f"{g.ns}/diagnostics", arrays.append, 10)
    g.wait_connected()
    g.send_and_wait(0)
    assert g.wait_for(lambda: arrays, 3.0)
    values = {kv.key: kv.value for kv in arrays[-1].status[0].values}
    assert values["state"] == "active" and values["enabled"] == "True"
    for key in (
        "frame_rate_hz",
        "step_latency_mean_ms",
        "malformed_inputs",
        "nonfinite_outputs",
        "last_failsafe_reason",
    ):
        assert key in values


def test_a_camera_other_than_the_trained_one_is_reported_in_the_log_and_diagnostics(tmp_path, graph_factory):
    from lnn_nav.nodes.conversions import camera_info_msg
    from lnn_nav.sim.camera import CameraConfig

    g = graph_factory(_policy_file(tmp_path, camera_hfov_deg=90.0), image_timeout=5.0)
    arrays: list[DiagnosticArray] = []
    g.peer.create_subscription(DiagnosticArray, f"{g.ns}/diagnostics", arrays.append, 10)
    info_pub = g.peer.create_publisher(CameraInfo, f"{g.ns}/camera/camera_info", 10)  # beside the image topic
    g.wait_connected()
    assert g.wait_for(lambda: info_pub.get_subscription_count() > 0, 10.0)

    def status_after(hfov: float, frame: int):
        arrays.clear()
        info_pub.publish(camera_info_msg(CameraConfig(width=64, height=48, hfov_deg=hfov), _stamp(frame), "camera"))
        g.send_and_wait(frame)
        assert g.wait_for(lambda: len(arrays) >= 2, 5.0)
        return arrays[-1].status[0]

    wide = status_after(120.0, 0)
    values = {kv.key: kv.value for kv in wide.values}
    assert wide.level == DiagnosticStatus.WARN and wide.message.startswith("flying; camera field of view 120.0 deg")
    assert "90.0 deg it was trained with" in values["camera_mismatch"]
    same = status_after(90.0, 1)  # the right camera clears it
    assert same.level == DiagnosticStatus.OK and same.message == "flying"
    assert {kv.key: kv.value for kv in same.values}["camera_mismatch"] == ""


def test_camera_mismatch_judges_the_field_of_view_of_camera_info():
    from lnn_nav.nodes.controller_logic import camera_mismatch

    fx90 = 32.0  # 64 px wide, 90 degrees
    assert camera_mismatch(90.0, fx90, 64) is None
    assert camera_mismatch(90.0, fx90 * 1.01, 64) is None  # 89.4 deg: within the 1 degree tolerance
    assert "120.0 deg" in camera_mismatch(90.0, 32.0 / math.tan(math.radians(60.0)), 64)
    assert camera_mismatch(90.0, 0.0, 64) is None  # an uncalibrated driver's K of zeros: cannot judge
    assert camera_mismatch(None, 10.0, 64) is None  # a checkpoint that does not record its camera


def test_saliency_image_arrives_with_the_frame_stamp_when_enabled(tmp_path, graph_factory):
    g = graph_factory(_policy_file(tmp_path), image_timeout=5.0, publish_saliency=True)
    pictures: list[Image] = []
    g.peer.create_subscription(Image, "/controller_node/saliency", pictures.append, 10)
    g.wait_connected()
    assert g.wait_for(lambda: g.node._saliency_pub.get_subscription_count() > 0, 10.0)
    for i in range(20):  # the frame or its picture may be dropped: resend with a new stamp
        g.send_and_wait(i)
        if g.wait_for(lambda: any(_key(p.header.stamp) == _key(_stamp(i)) for p in pictures), 1.0):  # noqa: B023 -- called within this iteration
            break
    picture = next(p for p in pictures if _key(p.header.stamp) == _key(_stamp(i)))
    assert picture.encoding == "rgb8" and picture.header.frame_id == "camera"
    assert (picture.height, picture.width, picture.step) == (48, 64, 64 * 3)  # the policy input
    assert len(picture.data) == 48 * 64 * 3
    assert g.node.counters["saliency_images"] >= 1


def test_saliency_is_not_published_by_default_nor_computed_without_a_subscriber(tmp_path, graph_factory):
    off = graph_factory(_policy_file(tmp_path), image_timeout=5.0)
    unwatched = graph_factory(_policy_file(tmp_path), image_timeout=5.0, publish_saliency=True)
    for g in (off, unwatched):
        g.wait_connected()
        for i in range(3):
            g.send_and_wait(i)
        assert g.node.counters["saliency_images"] == 0
    assert off.node._saliency_pub is None


def test_goal_policy_needs_odometry_and_a_latched_goal(tmp_path, graph_factory):
    from geometry_msgs.msg import PoseStamped
    from nav_msgs.msg import Odometry
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    from lnn_nav.nodes.conversions import odometry_msg

    torch.manual_seed(0)
    policy = LiquidPolicy(PolicyConfig(encoder=EncoderConfig(height=48, width=64), use_goal=True))
    path = str(save_policy(policy, tmp_path / "goal.safetensors"))
    g = graph_factory(path, image_timeout=5.0, odom_timeout=5.0)
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    odom_pub = g.peer.create_publisher(Odometry, "/odom", 10)
    g.wait_connected()
    assert _is_zero(g.send_and_wait(0))  # no goal, no odometry yet: hover
    goal = PoseStamped()
    goal.header.frame_id = "odom"
    goal.pose.position.x = 10.0
    goal_pub = g.peer.create_publisher(PoseStamped, "/goal_pose", latched)
    goal_pub.publish(goal)  # published once; transient-local delivers it on matching
    odom = odometry_msg([0, 0, 1], [1, 0, 0, 0], [0, 0, 0], [0, 0, 0], _stamp(0))
    assert g.wait_for(lambda: odom_pub.get_subscription_count() > 0, 5.0)
    for i in range(1, 30):
        odom_pub.publish(odom)
        cmd = g.send_and_wait(i)
        if not _is_zero(cmd):
            break
    assert not _is_zero(cmd), f"still hovering: {g.node._watchdog.stale(g.node._now_ns())}"


def _sim_time(sec: int, nanosec: int = 0) -> Time:
    return Time(sec=sec, nanosec=nanosec)


def test_under_sim_time_input_staleness_follows_the_clock_topic_not_the_wall_clock(tmp_path, graph_factory):
    g = graph_factory(_policy_file(tmp_path), use_sim_time=True, image_timeout=0.25, failsafe_rate_hz=20.0)
    clock_pub = g.peer.create_publisher(Clock, f"{g.ns}/clock", 10)
    assert g.wait_for(lambda: clock_pub.get_subscription_count() > 0, 10.0)

    def set_clock(stamp: Time) -> None:
        clock_pub.publish(Clock(clock=stamp))
        ns = stamp.sec * 1_000_000_000 + stamp.nanosec
        assert g.wait_for(lambda: g.node._now_ns() == ns, 5.0)

    set_clock(_sim_time(100))
    g.wait_connected()
    assert not _is_zero(g.send_and_wait(0))
    time.sleep(0.6)  # wall time well past image_timeout; simulated time stands still
    assert g.node._watchdog.stale(g.node._now_ns()) == []
    set_clock(_sim_time(100, 100_000_000))  # 0.1 s simulated: still fresh
    assert g.wait_for(lambda: not g.node._failsafe_active, 1.0)
    set_clock(_sim_time(100, 500_000_000))  # 0.5 s simulated since the frame: stale
    assert g.wait_for(lambda: g.node._failsafe_active, 2.0)
    assert "camera: no data for 0.50 s" in g.node._failsafe_reason
    hover = [c for c in g.snapshot() if _key(c.header.stamp) == (100, 500_000_000)]
    assert hover and _is_zero(hover[0])  # the fail-safe stamps its hover with simulated time


class _ProcessPeer:
    """Watches a controller process from outside: diagnostics, commands and (optionally) /clock."""

    def __init__(self, ns: str) -> None:
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("controller_process_peer", context=self.context)
        self.diagnostics: list[DiagnosticArray] = []
        self.commands: list[TwistStamped] = []
        self.node.create_subscription(DiagnosticArray, f"{ns}/diagnostics", self.diagnostics.append, 10)
        self.node.create_subscription(TwistStamped, f"{ns}/cmd_vel", self.commands.append, 100)
        self.clock_pub = self.node.create_publisher(Clock, f"{ns}/clock", 10)
        self.clock_running = False
        self.sim_ns = 0
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._running = True
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        next_tick = time.monotonic()
        while self._running and self.context.ok():
            self.executor.spin_once(timeout_sec=0.01)
            if self.clock_running and time.monotonic() >= next_tick:
                self.sim_ns += 10_000_000
                self.clock_pub.publish(Clock(clock=Time(sec=self.sim_ns // 10**9, nanosec=self.sim_ns % 10**9)))
                next_tick = time.monotonic() + 0.01

    def active(self) -> bool:
        return any(
            kv.key == "state" and kv.value == "active"
            for array in list(self.diagnostics)
            for kv in array.status[0].values
        )

    def close(self) -> None:
        self._running = False
        self.thread.join(timeout=5)
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


def _controller_process(params: dict[str, str], remaps: dict[str, str]) -> list[str]:
    """``python -m lnn_nav.nodes.controller --ros-args -p K:=V ... -r FROM:=TO ...`` (as ros2 run starts it)."""
    cmd = [sys.executable, "-m", "lnn_nav.nodes.controller", "--ros-args"]
    for name, value in params.items():
        cmd += ["-p", f"{name}:={value}"]
    for topic, target in remaps.items():
        cmd += ["-r", f"{topic}:={target}"]
    return cmd


@pytest.mark.parametrize("use_sim_time", [False, True], ids=["wall_time", "sim_time"])
def test_sigint_stops_the_controller_process_within_3_s_with_exit_code_0(tmp_path, use_sim_time):
    ns = f"/t{uuid.uuid4().hex[:10]}"
    cmd = _controller_process(
        {"model_path": _policy_file(tmp_path), "use_sim_time": str(use_sim_time).lower()},
        {topic: f"{ns}{topic}" for topic in ("/diagnostics", "/cmd_vel", "/clock")},
    )
    peer = _ProcessPeer(ns)
    peer.clock_running = use_sim_time
    proc = subprocess.Popen(cmd, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60.0
        while not peer.active() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert peer.active(), f"controller never reported 'active' (exit code {proc.poll()})"
        # A simulator that paused or exited: no /clock, so no sim-time timer ever wakes the node.
        peer.clock_running = False
        time.sleep(0.3)
        before = len(peer.commands)
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=3.0)
        elapsed = time.monotonic() - started
        text = stderr.decode(errors="replace")
        assert proc.returncode == 0, text
        assert elapsed <= 3.0
        assert "Traceback" not in text and "Error" not in text, text
        assert "published one zero command" in text
        if use_sim_time:  # the clock is stopped: no fail-safe hover can pass for the final command
            deadline = time.monotonic() + 1.0
            while len(peer.commands) == before and time.monotonic() < deadline:
                time.sleep(0.01)
            final = peer.commands[before:]
            assert len(final) == 1 and _is_zero(final[0])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        peer.close()


def _goal_graph(tmp_path, graph_factory, **params):
    """A goal policy's controller with a latched goal 10 m ahead; its odometry publisher and the policy."""
    from geometry_msgs.msg import PoseStamped
    from nav_msgs.msg import Odometry
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    torch.manual_seed(0)
    policy = LiquidPolicy(PolicyConfig(encoder=EncoderConfig(height=48, width=64), use_goal=True)).eval()
    path = str(save_policy(policy, tmp_path / "goal.safetensors"))
    g = graph_factory(path, image_timeout=5.0, odom_timeout=5.0, expected_rate=15.0, **params)
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    goal = PoseStamped()
    goal.header.frame_id = "odom"
    goal.pose.position.x, goal.pose.position.z = 10.0, 1.0
    goal_pub = g.peer.create_publisher(PoseStamped, "/goal_pose", latched)
    goal_pub.publish(goal)
    odom_pub = g.peer.create_publisher(Odometry, "/odom", 10)
    g.wait_connected()
    assert g.wait_for(lambda: odom_pub.get_subscription_count() > 0 and g.node._goal is not None, 5.0)
    return g, odom_pub, policy, goal


def _twist_values(cmd: TwistStamped) -> np.ndarray:
    t = cmd.twist
    return np.array([t.linear.x, t.linear.y, t.linear.z, t.angular.z])


def test_sync_inputs_runs_a_frame_with_the_odometry_stamped_with_it(tmp_path, graph_factory):
    """DDS may hand the frame over before the odometry of the same step: with sync_inputs the frame
    waits for it, and the command is the policy's answer to exactly that pose."""
    from lnn_nav.nodes.controller_logic import clamp_command
    from lnn_nav.nodes.conversions import goal_input, odometry_msg, preprocess_for_policy

    g, odom_pub, policy, goal = _goal_graph(
        tmp_path,
        graph_factory,
        sync_inputs=True,
        sync_timeout=1.0,
        max_speed_xy=50.0,
        max_speed_z=20.0,
        max_yaw_rate=10.0,
    )
    old = odometry_msg([0, 0, 1], [1, 0, 0, 0], [0, 0, 0], [0, 0, 0], _stamp(-1))
    yaw = math.pi / 2  # the new pose faces left: the goal is to its right
    new = odometry_msg([2, 1, 1], [math.cos(yaw / 2), 0, 0, math.sin(yaw / 2)], [0, 0, 0], [0, 0, 0], _stamp(0))
    odom_pub.publish(old)
    assert g.wait_for(lambda: g.node._odom is not None, 5.0)
    g.send(0)
    assert g.wait_for(lambda: g.node._pending is not None, 5.0)
    time.sleep(0.3)
    assert g.commands_for(0) == []  # held: the odometry at hand is older than the frame
    odom_pub.publish(new)
    assert g.wait_for(lambda: g.commands_for(0), 5.0)

    def expected(odom) -> np.ndarray:
        image = preprocess_for_policy(FRAME, 48, 64)
        goal_t = torch.from_numpy(goal_input(odom, goal)).reshape(1, -1)
        with torch.inference_mode():
            cmd, _ = policy.step(image, 1.0 / 15.0, None, goal=goal_t)
        return clamp_command(cmd[0].double().numpy(), 50.0, 20.0, 10.0)

    got = _twist_values(g.commands_for(0)[0])
    np.testing.assert_allclose(got, expected(new), rtol=0, atol=1e-6)
    assert not np.allclose(got, expected(old), atol=1e-4)  # the test tells the two poses apart
    assert g.node.counters["unsynced_frames"] == 0


def test_sync_inputs_runs_a_frame_without_its_odometry_after_sync_timeout_and_counts_it(tmp_path, graph_factory):
    from lnn_nav.nodes.conversions import odometry_msg

    g, odom_pub, _, _ = _goal_graph(tmp_path, graph_factory, sync_inputs=True, sync_timeout=0.2)
    odom_pub.publish(odometry_msg([0, 0, 1], [1, 0, 0, 0], [0, 0, 0], [0, 0, 0], _stamp(0)))
    assert g.wait_for(lambda: g.node._odom is not None, 5.0)
    assert not _is_zero(g.send_and_wait(0))  # odometry stamped with the frame: runs at once
    assert g.node.counters["unsynced_frames"] == 0
    g.send(1)  # no odometry stamped 1 ever comes
    assert g.wait_for(lambda: g.commands_for(1), 5.0)
    assert not _is_zero(g.commands_for(1)[0])  # ran with the latest odometry, not a hover
    assert g.node.counters["unsynced_frames"] == 1


def test_without_sync_inputs_a_frame_runs_at_once_with_the_latest_odometry(tmp_path, graph_factory):
    from lnn_nav.nodes.conversions import odometry_msg

    g, odom_pub, _, _ = _goal_graph(tmp_path, graph_factory)
    odom_pub.publish(odometry_msg([0, 0, 1], [1, 0, 0, 0], [0, 0, 0], [0, 0, 0], _stamp(-1)))
    assert g.wait_for(lambda: g.node._odom is not None, 5.0)
    assert not _is_zero(g.send_and_wait(0))
    assert g.node._pending is None and g.node.counters["unsynced_frames"] == 0


def test_while_frames_arrive_each_is_answered_and_the_failsafe_timer_adds_no_hover(tmp_path, graph_factory):
    """A goal policy without its goal: every frame gets a hover stamped with the frame; the timer flags the
    fail-safe but publishes nothing of its own (stamped with the current simulated time, a lockstep
    simulator would take it for the answer to its frame)."""
    from nav_msgs.msg import Odometry

    from lnn_nav.nodes.conversions import odometry_msg

    torch.manual_seed(0)
    policy = LiquidPolicy(PolicyConfig(encoder=EncoderConfig(height=48, width=64), use_goal=True))
    path = str(save_policy(policy, tmp_path / "goal.safetensors"))
    g = graph_factory(path, image_timeout=5.0, odom_timeout=5.0, failsafe_rate_hz=50.0)
    odom_pub = g.peer.create_publisher(Odometry, "/odom", 10)
    g.wait_connected()
    assert g.wait_for(lambda: odom_pub.get_subscription_count() > 0, 5.0)
    odom_pub.publish(odometry_msg([0, 0, 1], [1, 0, 0, 0], [0, 0, 0], [0, 0, 0], _stamp(0)))
    for i in range(5):
        assert _is_zero(g.send_and_wait(i))
    time.sleep(0.3)  # 15 fail-safe timer periods
    frames = {_key(_stamp(i)) for i in range(5)}
    assert all(_key(c.header.stamp) in frames for c in g.snapshot())
    assert g.node._failsafe_active and "goal: nothing received yet" in g.node._failsafe_reason
    assert g.node.counters["failsafe_commands"] == 0


def test_a_goal_without_odometry_yet_is_answered_with_a_hover_not_a_crash(tmp_path, graph_factory):
    """The watchdog calls a never-seen input stale only after its timeout; until then a frame must still
    hover (this used to raise in the frame callback and stop the node's executor)."""
    g, odom_pub, _, _ = _goal_graph(tmp_path, graph_factory)  # goal latched, odom_timeout 5 s, no odometry
    for i in range(3):
        assert _is_zero(g.send_and_wait(i))
    assert g.node.counters["dropped_frames"] >= 3
    from lnn_nav.nodes.conversions import odometry_msg

    odom_pub.publish(odometry_msg([0, 0, 1], [1, 0, 0, 0], [0, 0, 0], [0, 0, 0], _stamp(3)))
    assert g.wait_for(lambda: g.node._odom is not None, 5.0)
    assert not _is_zero(g.send_and_wait(4))  # flies once the odometry is in


def test_an_unknown_executor_parameter_exits_1_naming_the_choices(tmp_path):
    proc = subprocess.run(
        _controller_process(
            {"model_path": _policy_file(tmp_path), "executor": "multi"},
            {"/cmd_vel": f"/t{uuid.uuid4().hex[:10]}/cmd_vel"},
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    assert "executor 'multi' is not one of events, single_threaded" in proc.stderr
    assert "Traceback" not in proc.stderr
