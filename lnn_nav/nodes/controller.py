"""The controller node: camera (+ IMU, + odometry and goal) -> liquid policy -> ``/cmd_vel``.

A lifecycle node (``rclpy.lifecycle``). Configuring loads the checkpoint,
activating starts commanding. Every camera frame is answered on ``/cmd_vel``
with its own stamp: the policy's command, or a zero twist (hover) when a
required input is stale or missing. A fail-safe timer, independent of the
camera callback, publishes the hover when the camera itself goes quiet
(while frames come it only logs: a hover of its own, stamped with the
current simulated time, would pass for the answer to the frame a lockstep
simulator waits on). ``~/enable`` (false) is an e-stop. With ``autostart``
(default) the node configures and activates itself, so a plain ``ros2 run``
flies: the checkpoint ``model_path`` names, or with none the shipped CfC-NCP
(``models/cfc_ncp.safetensors`` in the share directory, else the source
tree's ``models/``). An untrained policy flies only with ``allow_untrained``;
without a checkpoint and without it, configuring fails with an error and
nothing is published. With ``publish_saliency`` it also publishes ``~/saliency``: the
policy's input frame with its VisualBackProp saliency drawn over it
(:mod:`lnn_nav.models.saliency`), computed only while someone subscribes.

Inputs arrive on separate topics, and DDS does not order one topic against
another: a frame can be handled before the odometry stamped with it. By
default a frame runs with the latest odometry/IMU at hand (a real drone's
odometry is faster than its camera, so that is at most one odometry period
old). With ``sync_inputs`` a frame waits until the goal, the odometry (goal
policies) and the IMU (IMU policies) stamped at or after it have arrived,
for at most ``sync_timeout`` wall seconds, then runs with what there is
(counted in ``unsynced_frames``). The simulator stamps all of a step's
messages alike, so a graph flight with ``sync_inputs`` sees exactly the
inputs of the same step in-process.
"""

from __future__ import annotations

import math
import signal
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import rclpy
import torch
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped, TwistStamped
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.clock import Clock, ClockType
from rclpy.duration import Duration
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.publisher import Publisher
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
from rclpy.serialization import deserialize_message
from rclpy.signals import SignalHandlerOptions
from rclpy.timer import Timer
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, Imu
from std_msgs.msg import Header
from std_srvs.srv import SetBool, Trigger

from lnn_nav.data.cdr import read_image, read_stamp, write_twist_stamped
from lnn_nav.models import CheckpointError, LiquidPolicy, load_policy
from lnn_nav.models.core import State
from lnn_nav.models.saliency import overlay, visual_backprop

from .controller_logic import (
    DtTracker,
    InputWatchdog,
    RateMeter,
    camera_info_topic,
    camera_mismatch,
    clamp_command,
)
from .conversions import (
    ImageConversionError,
    command_to_twist_stamped,
    compressed_image_to_rgb,
    goal_input,
    image_msg_to_rgb,
    imu_msg_to_array,
    preprocess_for_policy,
    rgb_to_image_msg,
    stamp_to_nanoseconds,
)
from .fly import SetupError, share_path
from .params import float_param, int_param
from .runtime import EXECUTOR_KINDS, ShutdownRequest, make_executor, spin_until

NODE_NAME = "controller_node"
#: The checkpoint flown when model_path is empty, relative to the share (or source) directory.
SHIPPED_MODEL = "models/cfc_ncp.safetensors"
CMD_FRAME = "base_link"
_WARN_EVERY_S = 5.0
_ZERO = np.zeros(4)
_FINAL_ACK_S = 0.25  # how long the final zero command may wait for reliable subscribers

# The camera drives the loop: only the newest frame matters (sensor-data QoS, depth 1).
SENSOR_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=qos_profile_sensor_data.reliability,
    durability=qos_profile_sensor_data.durability,
)
# A goal is published once (RViz, a mission node): latch it.
GOAL_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
# Saliency is for eyes (rqt, RViz): only the newest picture matters. Reliable
# writers serve both reliable and best-effort readers.
SALIENCY_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE)


# The node's built-in defaults; config/controller.yaml sets the same values (tests/test_node_defaults.py
# holds them to it), so `ros2 run` without the YAML flies the same controller as with it.
# name -> (default, description).
PARAMETERS: dict[str, tuple[Any, str]] = {
    "autostart": (True, "configure and activate at startup (false: wait for a lifecycle manager)"),
    "model_path": (
        "",
        "policy checkpoint (.safetensors); empty: the shipped CfC-NCP (models/cfc_ncp.safetensors "
        "in the package's share directory)",
    ),
    "allow_untrained": (
        False,
        "with an empty model_path, fly a freshly initialised, UNTRAINED policy instead "
        "of the shipped one (tests and demos only: its commands are meaningless)",
    ),
    "device": ("cpu", "torch device: cpu, cuda or cuda:N"),
    "image_topic": ("/camera/image_raw", "camera topic; with image_transport=compressed, <image_topic>/compressed"),
    "image_transport": ("raw", "raw (sensor_msgs/Image) or compressed (sensor_msgs/CompressedImage)"),
    "camera_info_topic": (
        "",
        "sensor_msgs/CameraInfo checked against the camera the checkpoint records; "
        "empty: camera_info beside image_topic",
    ),
    "sync_inputs": (
        False,
        "run each frame with the odometry/IMU stamped at or after it, waiting up to "
        "sync_timeout (true in lockstep simulation); false: the latest at hand",
    ),
    "executor": (
        "events",
        f"how the process spins: {' or '.join(EXECUTOR_KINDS)} (rclpy's default); events falls back to "
        "single_threaded where rclpy lacks it. Read at start-up (ros2 run / launch)",
    ),
    "raw_io": (
        True,
        "read camera frames (image_transport raw) and write /cmd_vel as serialized CDR, without a Python "
        "message object per frame; false: rclpy's message conversion (the reference). Read at configure",
    ),
    "publish_saliency": (
        False,
        "publish ~/saliency (sensor_msgs/Image, rgb8, policy input size): the frame "
        "with its VisualBackProp saliency, computed only while subscribed",
    ),
}
# name -> (default, descriptor with the allowed range).
RANGED: dict[str, tuple[Any, ParameterDescriptor]] = {
    "expected_rate": (15.0, float_param("nominal frame rate (Hz): dt of the first frame", 1.0, 1000.0)),
    "max_dt": (0.5, float_param("frame gap (s) above which the recurrent state resets", 0.001, 10.0)),
    # The benchmark's simulated flight controller's limits (config/controller.yaml says why; a test
    # holds them equal to lnn_nav.sim.flight_controller.ControllerGains): deployed as measured.
    "max_speed_xy": (6.0, float_param("horizontal speed limit (m/s)", 0.0, 50.0)),
    "max_speed_z": (3.0, float_param("vertical speed limit (m/s)", 0.0, 20.0)),
    "max_yaw_rate": (math.radians(120.0), float_param("yaw rate limit (rad/s)", 0.0, 10.0)),
    "failsafe_rate_hz": (20.0, float_param("fail-safe check and hover publishing rate (Hz)", 1.0, 200.0)),
    "image_timeout": (0.25, float_param("camera age (s) that triggers hover", 0.01, 10.0)),
    "imu_timeout": (0.1, float_param("IMU age (s) that triggers hover (IMU policies)", 0.01, 10.0)),
    "odom_timeout": (0.25, float_param("odometry age (s) that triggers hover (goal policies)", 0.01, 10.0)),
    "sync_timeout": (0.05, float_param("wall seconds a frame waits for its odometry/IMU (sync_inputs)", 0.001, 1.0)),
    "torch_threads": (0, int_param("torch CPU threads; 0 keeps torch's default", 0, 256)),
}


def shipped_model_path() -> Path:
    """The shipped CfC-NCP checkpoint: in the installed share directory, else in the source tree (an
    editable install); :class:`~lnn_nav.nodes.fly.SetupError` naming where it looked when absent."""
    return share_path(SHIPPED_MODEL)


class _Frame(NamedTuple):
    """A converted camera frame waiting for the inputs stamped with it (``sync_inputs``)."""

    rgb: np.ndarray
    header: Any
    stamp_ns: int
    received: float  # time.monotonic() at arrival
    started: float  # time.perf_counter() at arrival: the step latency counts the wait


def _rgb_view(msg: Image) -> np.ndarray:
    return image_msg_to_rgb(msg, copy=False)


class _CdrImage(NamedTuple):
    """The fields of a serialized ``sensor_msgs/Image`` that the controller reads; ``data`` is a view of the
    received bytes (no copy)."""

    header: Header
    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: memoryview


class ControllerNode(LifecycleNode):
    """Runs a :class:`~lnn_nav.models.LiquidPolicy` on each camera frame and publishes ``/cmd_vel``."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._declare_parameters()
        self._policy: LiquidPolicy | None = None
        self._device = torch.device("cpu")
        self._state: State | None = None
        self._active = False
        self._enabled = True
        self._input_subs: list[Any] = []
        self._cmd_pub: Publisher | None = None
        self._raw_io = False  # set with the endpoints at configure
        self._saliency_pub: Publisher | None = None
        self._failsafe_timer: Timer | None = None
        self._dt: DtTracker | None = None
        self._watchdog: InputWatchdog | None = None
        self._imu: np.ndarray | None = None
        self._odom: Odometry | None = None
        self._goal: PoseStamped | None = None
        self._imu_stamp_ns = -1
        self._pending: _Frame | None = None
        self._sync_timer: Timer | None = None
        self._failsafe_reason = ""
        self._failsafe_active = False
        self._camera_mismatch: str | None = None
        self._meter = RateMeter()
        self._meter_since = time.monotonic()
        self.counters = {
            "frames": 0,
            "commands": 0,
            "malformed_inputs": 0,
            "dropped_frames": 0,
            "nonfinite_outputs": 0,
            "state_resets": 0,
            "failsafe_commands": 0,
            "saliency_images": 0,
            "unsynced_frames": 0,
            "superseded_frames": 0,
        }
        self._cache_hot_parameters()
        self.add_post_set_parameters_callback(self._cache_hot_parameters)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diag_timer = self.create_timer(1.0, self._publish_diagnostics)
        self.create_service(SetBool, "~/enable", self._on_enable)
        self.create_service(Trigger, "~/reset_state", self._on_reset_state)
        if self.get_parameter("autostart").value:
            if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
                self.trigger_activate()

    # ----------------------------------------------------------------- parameters
    def _declare_parameters(self) -> None:
        for name, (default, text) in PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=text))
        for name, (default, descriptor) in RANGED.items():
            self.declare_parameter(name, default, descriptor)

    def _param(self, name: str) -> Any:
        return self.get_parameter(name).value

    def _cache_hot_parameters(self, parameters: list[Parameter] | None = None) -> None:
        """Keep the values read on every frame in plain attributes (a get_parameter costs microseconds,
        several times that on a cold cache after the wait between frames); ``ros2 param set`` still
        takes effect at the next frame through this post-set callback."""
        self._sync_inputs = bool(self._param("sync_inputs"))
        self._limits = (
            float(self._param("max_speed_xy")),
            float(self._param("max_speed_z")),
            float(self._param("max_yaw_rate")),
        )

    # The policy, the Δt tracker and the watchdog exist from configure on (the policy until cleanup);
    # the callbacks that use them run only in that window: subscriptions and timers are created by
    # configure and destroyed by cleanup, and the frame callbacks return early while inactive.
    @property
    def _loaded_policy(self) -> LiquidPolicy:
        if self._policy is None:
            raise RuntimeError(f"{self.get_name()} is not configured: no policy loaded")
        return self._policy

    @property
    def _dt_tracker(self) -> DtTracker:
        if self._dt is None:
            raise RuntimeError(f"{self.get_name()} is not configured: no frame-interval tracker")
        return self._dt

    @property
    def _input_watchdog(self) -> InputWatchdog:
        if self._watchdog is None:
            raise RuntimeError(f"{self.get_name()} is not configured: no input watchdog")
        return self._watchdog

    # ----------------------------------------------------------------- lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        device = str(self._param("device"))
        try:
            self._device = torch.device(device)
        except RuntimeError as err:
            self.get_logger().error(f"invalid device {device!r}: {err}")
            return TransitionCallbackReturn.FAILURE
        if self._device.type == "cuda" and not torch.cuda.is_available():
            self.get_logger().error(
                f"device {device!r} requested but CUDA is not available to torch "
                f"(torch {torch.__version__}, built with CUDA: {torch.version.cuda}); "
                f"set device:=cpu or install a CUDA build of torch"
            )
            return TransitionCallbackReturn.FAILURE
        if self._param("torch_threads") > 0:
            torch.set_num_threads(int(self._param("torch_threads")))
        model_path = str(self._param("model_path"))
        if not model_path and self._param("allow_untrained"):
            self.get_logger().warning(
                "model_path is empty and allow_untrained is true: flying a freshly initialised, UNTRAINED "
                "policy. Its commands are meaningless; use it for tests and demos only."
            )
            policy = LiquidPolicy().to(self._device).eval()
        else:
            if not model_path:
                # No checkpoint named: the shipped one, never an untrained policy behind the user's back.
                try:
                    model_path = str(shipped_model_path())
                except SetupError as err:
                    self.get_logger().error(
                        f"model_path is empty and the shipped checkpoint is missing ({err}): set model_path "
                        f"to a .safetensors checkpoint, or allow_untrained:=true to fly an UNTRAINED policy "
                        f"(tests and demos only); not commanding"
                    )
                    return TransitionCallbackReturn.FAILURE
                self.get_logger().info(f"model_path is empty: flying the shipped controller {model_path}")
            try:
                policy = load_policy(model_path, map_location=self._device)
            except CheckpointError as err:
                self.get_logger().error(f"cannot load the policy: {err}")
                return TransitionCallbackReturn.FAILURE
        self._policy = policy
        cfg = policy.config
        self._dt = DtTracker(1.0 / self._param("expected_rate"), self._param("max_dt"))
        timeouts = {"camera": self._param("image_timeout")}
        if cfg.use_imu:
            timeouts["imu"] = self._param("imu_timeout")
        if cfg.use_goal:
            timeouts["odom"] = self._param("odom_timeout")
            timeouts["goal"] = None
        self._watchdog = InputWatchdog(timeouts)
        try:
            self._warm_up()
        except (RuntimeError, ValueError) as err:
            self.get_logger().error(f"policy warm-up step failed: {err}")
            self._release()
            return TransitionCallbackReturn.FAILURE
        self._create_endpoints()
        self.get_logger().info(
            f"policy loaded ({model_path or 'untrained default'}) on {self._device}: core "
            f"{cfg.core}, input {cfg.encoder.height}x{cfg.encoder.width}, imu={cfg.use_imu}, "
            f"goal={cfg.use_goal}"
        )
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._reset_recurrent_state()
        now = self._now_ns()
        self._input_watchdog.arm(now if now > 0 else None)  # 0: simulated time before the first /clock
        self._failsafe_active = False
        self._active = True
        self.get_logger().info("active: publishing commands on /cmd_vel")
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        self._publish_final_zero()
        self.get_logger().info("inactive: published one zero command, commanding stopped")
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self._active:
            self._active = False
            self._publish_final_zero()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _create_endpoints(self) -> None:
        cfg = self._loaded_policy.config
        self._raw_io = bool(self._param("raw_io"))
        self._cmd_pub = self.create_publisher(TwistStamped, "/cmd_vel", 10)
        if self._param("publish_saliency"):
            self._saliency_pub = self.create_publisher(Image, "~/saliency", SALIENCY_QOS)
        topic = str(self._param("image_topic"))
        transport = str(self._param("image_transport"))
        if transport == "compressed":
            sub = self.create_subscription(
                CompressedImage, f"{topic}/compressed", lambda m: self._on_image(m, compressed_image_to_rgb), SENSOR_QOS
            )
        else:
            if transport != "raw":
                self.get_logger().warning(
                    f"image_transport {transport!r} is not supported; using raw (expected raw or compressed)"
                )
            if self._raw_io:
                sub = self.create_subscription(Image, topic, self._on_cdr_image, SENSOR_QOS, raw=True)
            else:
                sub = self.create_subscription(Image, topic, self._on_raw_image, SENSOR_QOS)
        self._input_subs = [sub]
        if cfg.camera_hfov_deg is not None:
            info_topic = str(self._param("camera_info_topic")) or camera_info_topic(topic)
            self._input_subs.append(self.create_subscription(CameraInfo, info_topic, self._on_camera_info, SENSOR_QOS))
            self.get_logger().info(
                f"checking the camera against the {cfg.camera_hfov_deg:g} deg it was trained with: CameraInfo on "
                f"{self.resolve_topic_name(info_topic)}"
            )
        if cfg.use_imu:
            self._input_subs.append(self.create_subscription(Imu, "/imu/data", self._on_imu, SENSOR_QOS))
        if cfg.use_goal:
            self._input_subs.append(self.create_subscription(Odometry, "/odom", self._on_odom, SENSOR_QOS))
            self._input_subs.append(self.create_subscription(PoseStamped, "/goal_pose", self._on_goal, GOAL_QOS))
        self._failsafe_timer = self.create_timer(1.0 / self._param("failsafe_rate_hz"), self._on_failsafe_timer)
        if self._param("sync_inputs"):
            # Wall time: under use_sim_time a lockstep simulator's clock stands still while it waits
            # for this node's command, and a timer on it would never fire.
            period = max(self._param("sync_timeout") / 4, 0.005)  # a timed-out frame runs at most 25% late
            self._sync_timer = self.create_timer(
                period, self._on_sync_timer, clock=Clock(clock_type=ClockType.STEADY_TIME)
            )

    def _release(self) -> None:
        for sub in self._input_subs:
            self.destroy_subscription(sub)
        self._input_subs = []
        if self._failsafe_timer is not None:
            self.destroy_timer(self._failsafe_timer)
            self._failsafe_timer = None
        if self._sync_timer is not None:
            self.destroy_timer(self._sync_timer)
            self._sync_timer = None
        self._pending = None
        self._imu_stamp_ns = -1
        if self._cmd_pub is not None:
            self.destroy_publisher(self._cmd_pub)
            self._cmd_pub = None
        if self._saliency_pub is not None:
            self.destroy_publisher(self._saliency_pub)
            self._saliency_pub = None
        self._policy = None
        self._state = None
        self._imu = self._odom = self._goal = None
        if self._device.type == "cuda":
            torch.cuda.empty_cache()

    def _warm_up(self) -> None:
        cfg = self._loaded_policy.config
        image = torch.zeros(1, 3, cfg.encoder.height, cfg.encoder.width, dtype=torch.uint8)
        extras = {}
        if cfg.use_imu:
            extras["imu"] = torch.zeros(1, 6)
        if cfg.use_goal:
            extras["goal"] = torch.zeros(1, 4)
        with torch.inference_mode():
            self._loaded_policy.step(
                image.to(self._device),
                self._dt_tracker.nominal_dt,
                None,
                **{k: v.to(self._device) for k, v in extras.items()},
            )

    # ----------------------------------------------------------------- callbacks
    def _on_image(self, msg: Any, convert: Any) -> None:
        if not self._active:
            return
        started = time.perf_counter()
        try:
            rgb = convert(msg)
        except ImageConversionError as err:
            self.counters["malformed_inputs"] += 1
            self.get_logger().warning(f"dropped a camera frame: {err}", throttle_duration_sec=_WARN_EVERY_S)
            return
        self._input_watchdog.mark("camera", self._now_ns())
        self.counters["frames"] += 1
        frame = _Frame(rgb, msg.header, stamp_to_nanoseconds(msg.header.stamp), time.monotonic(), started)
        if self._sync_inputs and not self._inputs_reach(frame.stamp_ns):
            if self._pending is not None:
                # Only the newest frame matters; the older one never got its inputs in time.
                self.counters["superseded_frames"] += 1
            self._pending = frame
            return
        self._pending = None
        self._run_frame(frame)

    def _on_raw_image(self, msg: Image) -> None:
        # A view of the message's buffer, not a copy: the frame is resized or read in place at once,
        # and a frame kept for sync_inputs keeps the message's buffer alive.
        self._on_image(msg, _rgb_view)

    def _on_cdr_image(self, raw: bytes) -> None:
        # The plain little-endian CDR every rmw here writes is read in place; anything else (big-endian,
        # XCDR2) goes through rclpy's deserialiser, and bytes that fail both are a malformed frame.
        if not self._active:
            return
        view = read_image(raw)
        if view is None:
            try:
                msg = deserialize_message(raw, Image)
            except Exception as err:  # the rmw's error type is not part of rclpy's API
                self.counters["malformed_inputs"] += 1
                self.get_logger().warning(
                    f"dropped a camera frame: {len(raw)} bytes that are not a sensor_msgs/Image ({err})",
                    throttle_duration_sec=_WARN_EVERY_S,
                )
                return
            self._on_image(msg, _rgb_view)
            return
        # The stamp as sent (sec, nanosec), not rebuilt from nanoseconds: the command echoes it field for
        # field, as the message path does, whatever the sender put there.
        sec, nanosec = read_stamp(raw) or (0, 0)
        header = Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=view.frame_id)
        frame = _CdrImage(header, view.height, view.width, view.encoding, view.is_bigendian, view.step, view.data)
        self._on_image(frame, _rgb_view)

    def _inputs_reach(self, stamp_ns: int) -> bool:
        """Whether the goal is in and the odometry (goal policies) and IMU (IMU policies) at hand are stamped at or
        after ``stamp_ns``."""
        cfg = self._loaded_policy.config
        if cfg.use_goal and self._goal is None:
            return False  # latched, so on its way when the node has just started
        if cfg.use_imu and self._imu_stamp_ns < stamp_ns:
            return False
        if cfg.use_goal and (self._odom is None or stamp_to_nanoseconds(self._odom.header.stamp) < stamp_ns):
            return False
        return True

    def _run_pending(self, timed_out: bool = False) -> None:
        """Run the waiting frame once its inputs are in (or, ``timed_out``, with the latest ones)."""
        frame = self._pending
        if frame is None or not self._active:
            return
        if not timed_out and not self._inputs_reach(frame.stamp_ns):
            return
        self._pending = None
        if timed_out:
            self.counters["unsynced_frames"] += 1
            self.get_logger().warning(
                f"no odometry/IMU stamped with the frame within sync_timeout={self._param('sync_timeout')} s; "
                "running it with the latest inputs",
                throttle_duration_sec=_WARN_EVERY_S,
            )
        self._run_frame(frame)

    def _on_sync_timer(self) -> None:
        frame = self._pending
        if frame is not None and time.monotonic() - frame.received >= self._param("sync_timeout"):
            self._run_pending(timed_out=True)

    def _run_frame(self, frame: _Frame) -> None:
        rgb, started, stamp = frame.rgb, frame.started, frame.header.stamp
        now_ns = self._now_ns()
        step = self._dt_tracker.update(frame.stamp_ns)
        if step.reset is not None:
            self.get_logger().info(f"resetting the recurrent state: {step.reset}")
            self._state = None
            self.counters["state_resets"] += 1
        stale = self._input_watchdog.stale(now_ns)
        if not self._enabled or stale:
            # E-stop or a missing input: hover, and do not advance the network on partial inputs.
            self.counters["dropped_frames"] += int(bool(stale))
            self._publish_command(_ZERO, stamp)
            return
        try:
            extras = self._extra_inputs()
        except ValueError as err:
            self.counters["dropped_frames"] += 1
            self.get_logger().warning(f"dropped a frame: {err}", throttle_duration_sec=_WARN_EVERY_S)
            self._publish_command(_ZERO, stamp)
            return
        cfg = self._loaded_policy.config
        image = preprocess_for_policy(rgb, cfg.encoder.height, cfg.encoder.width)
        if self._device.type != "cpu":
            image = image.to(self._device)
        with torch.inference_mode():
            out, new_state = self._loaded_policy.step(image, step.dt, self._state, **extras)
        cmd = out[0].to("cpu", torch.float64).numpy()
        if not np.all(np.isfinite(cmd)):
            self.counters["nonfinite_outputs"] += 1
            self.counters["state_resets"] += 1
            self._state = None
            self.get_logger().warning(
                f"policy output is not finite ({cmd.tolist()}); commanding zero and resetting the recurrent state",
                throttle_duration_sec=_WARN_EVERY_S,
            )
            self._publish_command(_ZERO, stamp)
        else:
            self._state = new_state
            self._publish_command(clamp_command(cmd, *self._limits), stamp)
        self._meter.record(time.perf_counter() - started)
        if self._saliency_pub is not None and self._saliency_pub.get_subscription_count() > 0:
            self._publish_saliency(image, frame.header)

    def _extra_inputs(self) -> dict:
        """The policy's IMU/goal inputs; ValueError (the frame is answered with a hover) while one has never
        arrived: the watchdog calls a never-seen input stale only after its timeout, not before."""
        cfg = self._loaded_policy.config
        extras = {}
        if cfg.use_imu and self._imu is None:
            raise ValueError("no IMU sample received yet")
        if cfg.use_goal and (self._odom is None or self._goal is None):
            raise ValueError(f"no {'odometry' if self._odom is None else 'goal'} received yet")
        if cfg.use_imu:
            extras["imu"] = torch.from_numpy(self._imu).reshape(1, -1).to(self._device)
        if cfg.use_goal:
            goal = goal_input(self._odom, self._goal)
            extras["goal"] = torch.from_numpy(goal).reshape(1, -1).to(self._device)
        return extras

    def _on_camera_info(self, msg: CameraInfo) -> None:
        problem = camera_mismatch(self._loaded_policy.config.camera_hfov_deg, float(msg.k[0]), int(msg.width))
        if problem and problem != self._camera_mismatch:
            self.get_logger().warning(f"{problem}: the policy's commands are not to be trusted with this camera")
        elif problem:
            self.get_logger().warning(problem, throttle_duration_sec=_WARN_EVERY_S)
        self._camera_mismatch = problem

    def _on_imu(self, msg: Imu) -> None:
        values = imu_msg_to_array(msg)
        if not np.all(np.isfinite(values)):
            self.counters["malformed_inputs"] += 1
            self.get_logger().warning("dropped an IMU sample with NaN/Inf values", throttle_duration_sec=_WARN_EVERY_S)
            return
        self._imu = values
        self._imu_stamp_ns = stamp_to_nanoseconds(msg.header.stamp)
        self._input_watchdog.mark("imu", self._now_ns())
        self._run_pending()

    def _on_odom(self, msg: Odometry) -> None:
        self._odom = msg
        self._input_watchdog.mark("odom", self._now_ns())
        self._run_pending()

    def _on_goal(self, msg: PoseStamped) -> None:
        self._goal = msg
        self._input_watchdog.mark("goal", self._now_ns())
        p = msg.pose.position
        self.get_logger().info(f"new goal ({p.x:.2f}, {p.y:.2f}, {p.z:.2f}) in {msg.header.frame_id!r}")
        self._run_pending()

    def _on_failsafe_timer(self) -> None:
        if not self._active:
            return
        stale = self._input_watchdog.stale_inputs(self._now_ns())
        if stale:
            reason = "; ".join(stale.values())
            if not self._failsafe_active:
                self.get_logger().warning(f"fail-safe: hovering (zero command): {reason}")
            self._failsafe_active = True
            self._failsafe_reason = reason
            if "camera" in stale:
                # While frames come, each one is answered (with a hover when an input is missing);
                # a hover of the timer's own, stamped with the current (simulated) time, would
                # read as the answer to the frame a lockstep simulator is waiting on.
                self.counters["failsafe_commands"] += 1
                self._publish_command(_ZERO, self.get_clock().now().to_msg())
        elif self._failsafe_active:
            self._failsafe_active = False
            self.get_logger().info("fail-safe cleared: inputs are fresh again, resuming")

    def _on_enable(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        if request.data and not self._enabled:
            # The network sat idle during the stop: restart it from rest.
            self._reset_recurrent_state()
            self.get_logger().info("enabled: commanding resumes")
        elif not request.data and self._enabled:
            self.get_logger().warning("e-stop: commanding zero until re-enabled")
            if self._active:
                self._publish_command(_ZERO, self.get_clock().now().to_msg())
        self._enabled = bool(request.data)
        response.success = True
        response.message = "enabled" if self._enabled else "e-stop: zero commands"
        return response

    def _on_reset_state(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self._reset_recurrent_state()
        response.success = True
        response.message = "recurrent state reset"
        return response

    # ----------------------------------------------------------------- helpers
    def _reset_recurrent_state(self) -> None:
        self._state = None
        if self._dt is not None:
            self._dt.reset()

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _publish_command(self, cmd: np.ndarray, stamp: Any) -> None:
        if self._cmd_pub is None:
            return
        if self._raw_io:
            vx, vy, vz, yaw_rate = (float(x) for x in cmd)
            self._cmd_pub.publish(
                write_twist_stamped(stamp.sec, stamp.nanosec, CMD_FRAME, (vx, vy, vz, 0.0, 0.0, yaw_rate))
            )
        else:
            self._cmd_pub.publish(command_to_twist_stamped(cmd, stamp, CMD_FRAME))
        self.counters["commands"] += 1

    def _publish_saliency(self, image: torch.Tensor, header: Any) -> None:
        """The policy's input frame with its saliency over it, stamped like the camera frame.

        After the command has gone out (and outside the step latency): one
        more encoder pass, so it costs nothing while nobody looks.
        """
        assert self._saliency_pub is not None  # _run_frame calls this only when the publisher exists
        saliency = visual_backprop(self._loaded_policy.encoder, image)[0]
        frame = image[0].permute(1, 2, 0).to("cpu").numpy()
        self._saliency_pub.publish(rgb_to_image_msg(overlay(frame, saliency), header.stamp, header.frame_id))
        self.counters["saliency_images"] += 1

    def _publish_final_zero(self) -> None:
        """One zero command, waited on briefly so it is delivered before the publisher goes away."""
        if self._cmd_pub is None:
            return
        self._publish_command(_ZERO, self.get_clock().now().to_msg())
        self._cmd_pub.wait_for_all_acked(Duration(seconds=_FINAL_ACK_S))

    def _lifecycle_label(self) -> str:
        if self._active:
            return "active"
        return "inactive" if self._policy is not None else "unconfigured"

    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        rate, mean_lat, max_lat = self._meter.take(now - self._meter_since)
        self._meter_since = now
        status = DiagnosticStatus()
        status.name = f"{self.get_name()}: lnn_nav controller"
        status.hardware_id = str(self._device)
        state = self._lifecycle_label()
        if self._active and not self._enabled:
            status.level, status.message = DiagnosticStatus.WARN, "e-stop: commanding zero"
        elif self._active and self._failsafe_active:
            status.level, status.message = DiagnosticStatus.ERROR, f"fail-safe hover: {self._failsafe_reason}"
        elif self._active and self._camera_mismatch:
            status.level, status.message = DiagnosticStatus.WARN, f"flying; {self._camera_mismatch}"
        elif self._active:
            status.level, status.message = DiagnosticStatus.OK, "flying"
        else:
            status.level, status.message = DiagnosticStatus.WARN, f"{state}: not commanding"
        values = {
            "state": state,
            "enabled": str(self._enabled),
            "frame_rate_hz": f"{rate:.2f}",
            "step_latency_mean_ms": f"{mean_lat * 1e3:.2f}",
            "step_latency_max_ms": f"{max_lat * 1e3:.2f}",
            "failsafe_active": str(self._failsafe_active),
            "last_failsafe_reason": self._failsafe_reason,
            "camera_mismatch": self._camera_mismatch or "",
            **{k: str(v) for k, v in self.counters.items()},
        }
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [status]
        self._diag_pub.publish(msg)


def main(args: list[str] | None = None) -> int:
    """``ros2 run lnn_nav controller_node``: spin until SIGINT/SIGTERM; exit 1 if autostart fails or the
    ``executor`` parameter names no executor.

    On SIGINT or SIGTERM the node publishes one zero command (hover) while
    the context is still valid, then shuts down and exits with 0.
    """
    # rclpy's own handlers would shut the context down inside the signal,
    # before the final zero command could go out: we stop the loop ourselves.
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop = ShutdownRequest()
    previous = stop.install()
    node = ControllerNode()
    try:
        executor, which = make_executor(str(node.get_parameter("executor").value))
    except ValueError as err:
        node.get_logger().error(f"{err}; exiting")
        node.destroy_node()
        rclpy.try_shutdown()
        stop.restore(previous)
        return 1
    node.get_logger().info(which)
    code = 0
    try:
        if node.get_parameter("autostart").value and not node._active:
            node.get_logger().error("autostart failed: the node did not reach 'active'; exiting")
            code = 1
        else:
            executor.add_node(node)
            spin_until(executor, stop)
        if stop.signal is not None:  # what bool(stop) tests, spelled out so that mypy narrows it
            node.get_logger().info(f"{signal.Signals(stop.signal).name}: stopping")
        if node._active and rclpy.ok():
            node.trigger_deactivate()
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
        stop.restore(previous)
    return code


if __name__ == "__main__":
    sys.exit(main())
