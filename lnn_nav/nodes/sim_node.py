"""The embedded simulator as a ROS 2 node: one drone, camera/IMU/odometry out, velocity commands in.

``SimNode`` wraps :class:`lnn_nav.sim.env.FlightBatch` (N = 1) and is the
graph's clock: it publishes ``/clock`` and stamps every message with
simulation time, so consumers run with ``use_sim_time:=true``.

Frames: ``odom`` is the world frame of the simulator (ENU, the world
spec's coordinates, not re-centred on the start), ``base_link`` the body
(FLU), ``camera_optical_frame`` the camera (z forward, x right, y down).

Commands (``/cmd_vel`` TwistStamped, or Twist on ``/cmd_vel_unstamped``)
are ``[vx, vy, vz, yaw_rate]`` and go to the simulated flight controller as
PX4 offboard body velocities do: in the heading frame (body FLU rotated by
yaw only), which equals body FLU for a level drone.

Stepping:

* ``lockstep`` (default): after publishing a frame the node waits for the
  command that answers it (header stamp equal to the frame's stamp, or any
  command received after the frame when ``lockstep_match_stamp`` is false),
  then flies one control period. If none arrives within ``command_timeout``
  wall seconds it steps with the last command and warns. Until the first
  command of the episode arrives the first frame is re-published every
  half a second (the episode clock stands still), so a controller that
  starts late misses nothing; it may see that first frame more than once.
* real time: a wall timer steps at ``control_hz * real_time_factor`` with
  the latest command.

Either way a command older than ``cmd_timeout_sim`` simulated seconds is
replaced by zero (hover). The clock starts at 1 s (a zero stamp means
"latest" to tf) and never runs backwards across episodes.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseStamped, TransformStamped, Twist, TwistStamped
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.clock import Clock as RosClock
from rclpy.clock import ClockType
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, Imu
from std_msgs.msg import String
from std_srvs.srv import Trigger

from lnn_nav.nodes.conversions import (
    array_to_imu_msg,
    camera_info_msg,
    odometry_msg,
    rgb_to_image_msg,
    twist_to_command,
)
from lnn_nav.nodes.runtime import NodeExit, run_node
from lnn_nav.sim.camera import CameraConfig
from lnn_nav.sim.env import EnvConfig, FlightBatch
from lnn_nav.sim.presets import world_from
from lnn_nav.sim.world import WorldSpec

_NS_PER_S = 1_000_000_000
#: Process exit codes with exit_on_outcome (those of `lnn-nav fly`).
EXIT_SUCCESS, EXIT_FAILURE = 0, 1
_CLOCK_START_NS = _NS_PER_S
#: Wall seconds between offers of an episode's first frame while no pilot has answered yet.
START_REOFFER_S = 0.5

#: QoS of the latched topics (goal, outcome, world): late joiners get the last message.
LATCHED_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)

# name -> (default, description). Types follow the defaults.
PARAMETERS: dict[str, tuple[Any, str]] = {
    "world": ("forest", "world kind: forest or urban"),
    "seed": (0, "world seed of the first episode"),
    "preset": ("in_distribution", "conditions preset (in_distribution, fog, dusk, ...)"),
    "world_file": ("", "WorldSpec JSON to fly instead of a generated world (world/seed/preset then ignored)"),
    "control_hz": (15.0, "control rate: one command and one frame per 1/control_hz simulated seconds"),
    "camera_width": (128, "image width (px)"),
    "camera_height": (96, "image height (px)"),
    "camera_hfov": (90.0, "horizontal field of view (deg)"),
    "lockstep": (True, "wait for the command answering each frame before stepping (else real time)"),
    "lockstep_match_stamp": (True, "lockstep: the command's header stamp must equal the frame's stamp"),
    "command_timeout": (2.0, "lockstep: wall seconds to wait for a command before stepping with the last one"),
    "cmd_timeout_sim": (0.5, "a command older than this many simulated seconds is replaced by hover"),
    "real_time_factor": (1.0, "real-time mode: simulated seconds per wall second"),
    "max_episode_time": (60.0, "simulated seconds before an episode ends as timeout"),
    "end_on_outcome": (True, "stop stepping when an episode ends (else start the next one)"),
    "exit_on_outcome": (
        False,
        "with end_on_outcome: exit once the episode ends, code 0 on success and 1 on a collision or "
        "timeout, so `ros2 launch` and scripts end with the episode (after exit_grace)",
    ),
    "exit_grace": (1.0, "wall seconds between the outcome and the exit, for the latched outcome to be delivered"),
    "reset_same_world": (False, "~/reset and auto-reset replay the same world instead of seed + 1"),
    "publish_depth": (False, "also publish z-depth on /camera/depth/image_raw (32FC1, metres)"),
    "imu_noise": (True, "IMU noise and bias (BMI088-class); false gives ideal readings"),
}


def outcome_of(step: dict[str, np.ndarray]) -> str | None:
    """The episode outcome after a step of a one-drone batch, or None while it runs."""
    if step["success"][0]:
        return "success"
    if step["collision"][0]:
        return "collision"
    if step["out_of_bounds"][0]:
        return "out_of_bounds"
    if step["truncated"][0]:
        return "timeout"
    return None


def _stamp(ns: int) -> Time:
    return Time(sec=ns // _NS_PER_S, nanosec=ns % _NS_PER_S)


def _depth_image_msg(depth: np.ndarray, stamp, frame_id: str) -> Image:
    msg = Image()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(depth.shape[0]), int(depth.shape[1])
    msg.encoding = "32FC1"
    msg.is_bigendian = 0
    msg.step = msg.width * 4
    msg.data = np.ascontiguousarray(depth, dtype="<f4").tobytes()
    return msg


class SimNode(Node):
    """One simulated drone in a forest or urban world, driven by ``/cmd_vel``."""

    def __init__(self, node_name: str = "sim_node", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        for name, (default, text) in PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=text))
        p = {name: self.get_parameter(name).value for name in PARAMETERS}
        self.params = p
        self.camera = CameraConfig(
            width=int(p["camera_width"]), height=int(p["camera_height"]), hfov_deg=float(p["camera_hfov"])
        )
        self.seed = int(p["seed"])
        world = self._make_world(self.seed)
        config = EnvConfig(
            kind=world.kind,
            preset=str(world.params.get("preset", p["preset"])),
            camera=self.camera,
            control_hz=float(p["control_hz"]),
            max_episode_time=float(p["max_episode_time"]),
            with_depth=bool(p["publish_depth"]),
            imu_noise=bool(p["imu_noise"]),
        )
        self.period_ns = int(round(_NS_PER_S / config.control_hz))
        self.world: WorldSpec = world
        self.batch = FlightBatch(1, config, np.random.default_rng(self.seed), world_source=lambda rng: self.world)
        self._last_obs: dict[str, np.ndarray] | None = None

        self.pub_image = self.create_publisher(Image, "/camera/image_raw", 10)
        self.pub_info = self.create_publisher(CameraInfo, "/camera/camera_info", 10)
        self.pub_depth = self.create_publisher(Image, "/camera/depth/image_raw", 10) if p["publish_depth"] else None
        self.pub_imu = self.create_publisher(Imu, "/imu/data", 10)
        self.pub_odom = self.create_publisher(Odometry, "/odom", 10)
        self.pub_clock = self.create_publisher(Clock, "/clock", 10)
        self.pub_goal = self.create_publisher(PoseStamped, "/goal_pose", LATCHED_QOS)
        self.pub_outcome = self.create_publisher(String, "~/outcome", LATCHED_QOS)
        self.pub_world = self.create_publisher(String, "~/world", LATCHED_QOS)
        self.pub_tf = self._tf_publisher()
        self.create_subscription(TwistStamped, "/cmd_vel", self._on_cmd_stamped, 10)
        self.create_subscription(Twist, "/cmd_vel_unstamped", self._on_cmd_unstamped, 10)
        self.create_service(Trigger, "~/reset", self._on_reset)

        self.clock_ns = _CLOCK_START_NS
        self.command = np.zeros(4)
        self.command_sim_ns = -1  # sim time the last command arrived; -1: none this episode
        self.frame_ns = 0  # stamp of the last published frame
        self.answered = True
        self.frame_wall_ns = 0
        self.running = False
        self.positions: list[np.ndarray] = []

        self._start_episode()
        if p["lockstep"]:
            self.create_timer(0.05, self._check_command_timeout)
        else:
            rate = config.control_hz * float(p["real_time_factor"])
            if rate <= 0:
                raise ValueError(f"real_time_factor must be > 0, got {p['real_time_factor']}")
            self.create_timer(1.0 / rate, self._real_time_tick)
        mode = "lockstep" if p["lockstep"] else f"real time x{p['real_time_factor']}"
        self.get_logger().info(
            f"{self.world.kind} world seed {self.world.seed} ({config.preset}), "
            f"{self.camera.width}x{self.camera.height} camera, {config.control_hz:g} Hz, {mode}"
        )

    # -- worlds and episodes ---------------------------------------------------
    def _make_world(self, seed: int) -> WorldSpec:
        return world_from(str(self.params["world_file"]), str(self.params["world"]), seed, str(self.params["preset"]))

    def _start_episode(self) -> None:
        self.batch.reset(np.array([0]), [self.world])
        self.clock_ns += self.period_ns  # a fresh stamp: no command of the last episode matches
        self.command[:] = 0.0
        self.command_sim_ns = -1
        self.positions = [self.batch.quad.position[0].copy()]
        self.running = True
        self.pub_world.publish(String(data=json.dumps(self.world.to_dict())))
        goal = PoseStamped()
        goal.header.stamp = _stamp(self.clock_ns)
        goal.header.frame_id = "odom"
        goal.pose.position.x, goal.pose.position.y, goal.pose.position.z = self.world.goal
        goal.pose.orientation.w = 1.0
        self.pub_goal.publish(goal)
        self._publish_frame()

    def _next_world(self) -> None:
        if not self.params["reset_same_world"] and not self.params["world_file"]:
            self.seed += 1
            self.world = self._make_world(self.seed)

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self._next_world()
        self._start_episode()
        response.success = True
        response.message = f"new episode: {self.world.kind} world seed {self.world.seed}"
        self.get_logger().info(response.message)
        return response

    def _finish(self, outcome: str) -> None:
        track = np.array(self.positions)
        result = {
            "outcome": outcome,
            "time": round(float(self.batch.time[0]), 3),
            "seed": int(self.world.seed),
            "world": self.world.kind,
            "preset": str(self.world.params.get("preset", self.params["preset"])),
            "path_length": round(float(np.linalg.norm(np.diff(track, axis=0), axis=1).sum()), 3),
        }
        self.pub_outcome.publish(String(data=json.dumps(result)))
        self.get_logger().info(f"episode over: {json.dumps(result)}")
        self.running = False
        if not self.params["end_on_outcome"]:
            self._next_world()
            self._start_episode()
        elif self.params["exit_on_outcome"]:
            code = EXIT_SUCCESS if outcome == "success" else EXIT_FAILURE

            def _exit() -> None:
                raise NodeExit(code, f"episode over: {outcome}")

            # A wall-clock timer: simulated time stands still once the episode has ended.
            self.create_timer(float(self.params["exit_grace"]), _exit, clock=RosClock(clock_type=ClockType.STEADY_TIME))

    # -- commands and stepping ---------------------------------------------------
    def _on_cmd_stamped(self, msg: TwistStamped) -> None:
        stamp_ns = int(msg.header.stamp.sec) * _NS_PER_S + int(msg.header.stamp.nanosec)
        self._on_command(twist_to_command(msg), stamp_ns == self.frame_ns)

    def _on_cmd_unstamped(self, msg: Twist) -> None:
        self._on_command(twist_to_command(msg), False)

    def _on_command(self, command: np.ndarray, matches_frame: bool) -> None:
        if not np.isfinite(command).all():
            self.get_logger().warn("ignoring a command with NaN or Inf", throttle_duration_sec=5.0)
            return
        self.command = np.asarray(command, dtype=np.float64)
        self.command_sim_ns = self.clock_ns
        if not (self.params["lockstep"] and self.running and not self.answered):
            return
        if matches_frame or not self.params["lockstep_match_stamp"]:
            self.answered = True
            self._step()

    def _current_command(self) -> np.ndarray:
        max_age_ns = float(self.params["cmd_timeout_sim"]) * _NS_PER_S
        if self.command_sim_ns < 0 or self.clock_ns - self.command_sim_ns > max_age_ns:
            return np.zeros(4)
        return self.command

    def _check_command_timeout(self) -> None:
        if not self.running or self.answered:
            return
        waited = (time.monotonic_ns() - self.frame_wall_ns) / _NS_PER_S
        if self.command_sim_ns < 0 and self.batch.time[0] == 0.0:
            # Nobody has answered yet this episode: hold the start, offer the frame again.
            if waited >= START_REOFFER_S:
                self._publish_frame(fresh=False)
            return
        if waited < float(self.params["command_timeout"]):
            return
        self.get_logger().warn(
            f"no command for frame {self.frame_ns / _NS_PER_S:.3f} within {waited:.1f} s; "
            "stepping with the last command",
            throttle_duration_sec=5.0,
        )
        self.answered = True
        self._step()

    def _real_time_tick(self) -> None:
        if self.running:
            self._step()

    def _step(self) -> None:
        result = self.batch.step(self._current_command()[None, :])
        self.clock_ns += self.period_ns
        self.positions.append(self.batch.quad.position[0].copy())
        self._publish_frame()
        outcome = outcome_of(result)
        if outcome is not None:
            self._finish(outcome)

    # -- publishing --------------------------------------------------------------
    def _publish_frame(self, fresh: bool = True) -> None:
        """Publish clock, camera, IMU, odometry and tf for the current state, all with one stamp.

        ``fresh=False`` offers the last frame again as it was: observing anew would draw camera and
        IMU noise again and put this episode's noise out of step with the same seed flown in-process.
        """
        if fresh or self._last_obs is None:
            self._last_obs = self.batch.observe()
        obs = self._last_obs
        stamp = _stamp(self.clock_ns)
        self.pub_clock.publish(Clock(clock=stamp))
        quad = self.batch.quad
        self.pub_odom.publish(
            odometry_msg(quad.position[0], quad.quaternion[0], quad.velocity_body[0], quad.body_rates[0], stamp)
        )
        self.pub_imu.publish(array_to_imu_msg(obs["imu"][0], stamp, "base_link"))
        self.pub_info.publish(camera_info_msg(self.camera, stamp, "camera_optical_frame"))
        if self.pub_depth is not None:
            self.pub_depth.publish(_depth_image_msg(obs["depth"][0], stamp, "camera_optical_frame"))
        if self.pub_tf is not None:
            self._publish_tf(stamp)
        self.frame_ns = self.clock_ns
        self.frame_wall_ns = time.monotonic_ns()
        self.answered = False
        # The image goes last: a controller answering it sees odometry and IMU of the same step.
        self.pub_image.publish(rgb_to_image_msg(obs["image"][0], stamp, "camera_optical_frame"))

    def _tf_publisher(self):
        try:
            from tf2_msgs.msg import TFMessage
        except ImportError:
            self.get_logger().info("tf2_msgs is not installed: not publishing the odom -> base_link transform")
            return None
        self._tf_message = TFMessage
        return self.create_publisher(TFMessage, "/tf", 10)

    def _publish_tf(self, stamp: Time) -> None:
        quad = self.batch.quad
        t = TransformStamped()
        t.header.stamp = stamp
        t.header.frame_id = "odom"
        t.child_frame_id = "base_link"
        t.transform.translation.x, t.transform.translation.y, t.transform.translation.z = (
            float(v) for v in quad.position[0]
        )
        w, x, y, z = (float(v) for v in quad.quaternion[0])
        t.transform.rotation.w, t.transform.rotation.x, t.transform.rotation.y, t.transform.rotation.z = w, x, y, z
        self.pub_tf.publish(self._tf_message(transforms=[t]))

    def destroy_node(self) -> None:
        self.batch.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    sys.exit(run_node(SimNode, args))


if __name__ == "__main__":
    main()
