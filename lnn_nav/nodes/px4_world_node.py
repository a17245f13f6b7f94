"""An lnn_nav world around a PX4-flown vehicle: camera, odometry, goal and the episode's outcome.

PX4 (SITL in SIH mode here, a real autopilot's estimator anywhere) flies the
vehicle and estimates its state; this node places that state in an lnn_nav
forest or urban world and closes the loop through the camera:

- ``/fmu/out/vehicle_odometry`` (NED position, FRD->NED attitude) is mapped into
  the world (ENU): the point PX4 starts from is the world's start, and the
  heading it starts with is the world's start heading (:class:`WorldFrame`).
- At ``camera_rate`` it renders ``/camera/image_raw`` (and ``camera_info``) from
  that pose with the embedded renderer (the world's conditions and camera
  effects included), and publishes ``/odom`` (world frame ``odom``) and the
  latched ``/goal_pose``: what the controller node flies from.
- It judges the episode against the world's geometry as the embedded simulator
  does (:class:`EpisodeJudge`): a collision (the drone as a sphere), leaving
  the world, reaching the goal (1.5 m) or running out of time. The episode
  starts once PX4's takeoff has lifted the vehicle off (``airborne_height``).
  The outcome is latched on ``~/outcome`` as JSON and logged (``episode over:``);
  with ``exit_on_outcome`` the process then exits 0 on success, 1 otherwise.

The controller's ``/cmd_vel`` reaches PX4 through ``px4_offboard_node``;
commands are in the heading frame, so the fixed yaw between PX4's frame and
the world's changes nothing about them. Time is PX4's (odometry timestamps),
which runs in real time: this node and the controller use the wall clock.
"""

from __future__ import annotations

import json
import math
import sys
from collections import deque
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from lnn_nav.geometry import quaternion_yaw
from lnn_nav.nodes.frames import (
    ARMING_STATE_ARMED,
    ned_frd_to_enu_flu_quaternion,
    ned_to_enu,
    quaternion_multiply,
)

NODE_NAME = "px4_world_node"
EXIT_SUCCESS, EXIT_FAILURE = 0, 1
CLIMB_FREEZE = 0.25  # m/s of climb that fixes the world frame when the arming status has not arrived yet
GROUND_WINDOW = 2.0  # s of heights the ground is taken from at that moment
_US = 1e-6

# name -> (default, description). Types follow the defaults.
PARAMETERS: dict[str, tuple[Any, str]] = {
    "world": ("forest", "world kind: forest or urban"),
    "seed": (0, "world seed"),
    "preset": ("in_distribution", "conditions preset (in_distribution, fog, dusk, ...)"),
    "world_file": ("", "WorldSpec JSON to fly instead of a generated world (world/seed/preset then ignored)"),
    "camera_rate": (15.0, "camera frames per second (the controller answers each)"),
    "camera_width": (128, "image width (px)"),
    "camera_height": (96, "image height (px)"),
    "camera_hfov": (90.0, "horizontal field of view (deg)"),
    "odometry_rate": (50.0, "/odom messages per second at most"),
    "max_episode_time": (60.0, "seconds from takeoff before the episode ends as timeout"),
    "airborne_height": (
        0.5,
        "m above the ground at which the episode starts (PX4's takeoff climbs on to the start height)",
    ),
    "takeoff_timeout": (20.0, "s after take-off began: the episode starts then even below airborne_height"),
    "log_period": (2.0, "wall seconds between progress lines (position, distance to goal); 0: none"),
    "exit_on_outcome": (False, "exit once the episode ends: code 0 on success, 1 on a collision or timeout"),
    "exit_grace": (1.0, "wall seconds between the outcome and the exit, for the latched outcome to be delivered"),
    "vehicle_odometry_topic": ("/fmu/out/vehicle_odometry", "px4_msgs/VehicleOdometry topic"),
    "vehicle_status_topic": (
        "/fmu/out/vehicle_status_v2",
        "px4_msgs/VehicleStatus topic (arming fixes the world frame)",
    ),
}


@dataclass(frozen=True)
class WorldFrame:
    """PX4's local frame placed in an lnn_nav world.

    ``origin_enu``: the vehicle's position on the ground when the episode's frame was fixed (PX4 local
    frame, ENU); ``origin_yaw``: its ENU heading then. The world's start ``(x, y, z, yaw)`` is where
    that point and heading land, the world's ground at PX4's origin height.
    """

    origin_enu: tuple[float, float, float]
    origin_yaw: float
    start: tuple[float, float, float, float]

    @property
    def rotation(self) -> float:
        """Yaw (rad) that turns PX4's ENU frame into the world's."""
        return self.start[3] - self.origin_yaw

    def position(self, position_ned: np.ndarray) -> np.ndarray:
        """World position of a PX4 NED position."""
        local = ned_to_enu(position_ned) - np.asarray(self.origin_enu)
        c, s = math.cos(self.rotation), math.sin(self.rotation)
        return np.array(
            [self.start[0] + c * local[0] - s * local[1], self.start[1] + s * local[0] + c * local[1], local[2]]
        )

    def attitude(self, q_ned_frd: np.ndarray) -> np.ndarray:
        """World attitude (body FLU -> world ENU, w x y z) of a PX4 attitude (body FRD -> NED)."""
        half = self.rotation / 2.0
        turn = np.array([math.cos(half), 0.0, 0.0, math.sin(half)])
        return quaternion_multiply(turn, ned_frd_to_enu_flu_quaternion(q_ned_frd))

    def vector(self, v_ned: np.ndarray) -> np.ndarray:
        """A NED vector (velocity) in the world frame."""
        v = ned_to_enu(v_ned)
        c, s = math.cos(self.rotation), math.sin(self.rotation)
        return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1], v[2]])

    @classmethod
    def at(cls, position_ned: np.ndarray, q_ned_frd: np.ndarray, start: tuple[float, ...]) -> WorldFrame:
        enu = ned_to_enu(position_ned)
        yaw = quaternion_yaw(ned_frd_to_enu_flu_quaternion(q_ned_frd))
        x, y, z, start_yaw = (float(v) for v in start)
        return cls((float(enu[0]), float(enu[1]), float(enu[2])), yaw, (x, y, z, start_yaw))


class EpisodeJudge:
    """The embedded simulator's episode rules on a PX4-flown track: success within the goal radius,
    a collision of the drone's sphere with the world, leaving the world, or a timeout."""

    def __init__(self, world: Any, max_episode_time: float, airborne_height: float) -> None:
        from lnn_nav.sim.collision import CollisionChecker, signed_distance
        from lnn_nav.sim.dynamics import QuadrotorParams
        from lnn_nav.sim.env import SUCCESS_RADIUS

        self.world = world
        self.radius = QuadrotorParams().collision_radius
        self.checker = CollisionChecker(world, max_radius=self.radius)
        self._clearance = signed_distance
        self.success_radius = SUCCESS_RADIUS
        self.goal = np.asarray(world.goal, dtype=np.float64)
        self.max_episode_time = max_episode_time
        self.airborne_height = airborne_height
        self.t0: float | None = None
        self.positions: list[np.ndarray] = []
        self.min_clearance = math.inf

    @property
    def started(self) -> bool:
        return self.t0 is not None

    def start(self, t: float) -> None:
        """Start the episode at ``t`` whatever the height (a take-off that never lifted off far enough)."""
        if self.t0 is None:
            self.t0 = t

    def elapsed(self, t: float) -> float:
        return 0.0 if self.t0 is None else t - self.t0

    def update(self, t: float, position: np.ndarray) -> str | None:
        """Judge the vehicle at ``position`` (world) at time ``t`` (s): the outcome, or None while it flies."""
        if self.t0 is None:
            if position[2] < self.airborne_height:
                return None  # on the ground: the episode starts once PX4's takeoff has lifted off
            self.t0 = t
        self.positions.append(np.asarray(position, dtype=np.float64).copy())
        p = self.positions[-1][None, :]
        self.min_clearance = min(self.min_clearance, float(self._clearance(self.world, p, include_ground=False)[0]))
        collided, out = self.checker.check(p, self.radius)
        if bool(collided[0]):
            return "collision"
        if bool(out[0]):
            return "out_of_bounds"
        if float(np.linalg.norm(self.goal - position)) < self.success_radius:
            return "success"
        if t - self.t0 >= self.max_episode_time:
            return "timeout"
        return None

    def result(self, outcome: str, t: float) -> dict[str, Any]:
        track = np.array(self.positions) if self.positions else np.zeros((1, 3))
        return {
            "outcome": outcome,
            "time": round(self.elapsed(t), 3),
            "seed": int(self.world.seed),
            "world": self.world.kind,
            "preset": str(self.world.params.get("preset", "")),
            "path_length": round(float(np.linalg.norm(np.diff(track, axis=0), axis=1).sum()), 3),
            "min_clearance": round(self.min_clearance, 3) if math.isfinite(self.min_clearance) else None,
            "flown_by": "px4",
        }


def _make_node_class() -> type:
    """Build the node class on first use: importing this module needs neither rclpy nor px4_msgs."""
    from geometry_msgs.msg import PoseStamped
    from nav_msgs.msg import Odometry
    from rcl_interfaces.msg import ParameterDescriptor
    from rclpy.clock import Clock, ClockType
    from rclpy.node import Node
    from sensor_msgs.msg import CameraInfo, Image
    from std_msgs.msg import String

    from lnn_nav.geometry import quat_to_matrix
    from lnn_nav.nodes.conversions import camera_info_msg, odometry_msg, rgb_to_image_msg
    from lnn_nav.nodes.px4_offboard import import_px4_msgs, px4_qos
    from lnn_nav.nodes.runtime import NodeExit
    from lnn_nav.nodes.sim_node import LATCHED_QOS
    from lnn_nav.sim.camera import CameraConfig
    from lnn_nav.sim.camera_effects import apply_camera_effects
    from lnn_nav.sim.presets import world_from
    from lnn_nav.sim.render import Renderer

    px4 = import_px4_msgs()

    class Px4WorldNode(Node):
        """See the module docstring."""

        def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
            super().__init__(node_name, **kwargs)
            for name, (default, text) in PARAMETERS.items():
                self.declare_parameter(name, default, ParameterDescriptor(description=text))
            p = {name: self.get_parameter(name).value for name in PARAMETERS}
            self.params = p
            self.world = world_from(str(p["world_file"]), str(p["world"]), int(p["seed"]), str(p["preset"]))
            self.camera = CameraConfig(
                width=int(p["camera_width"]), height=int(p["camera_height"]), hfov_deg=float(p["camera_hfov"])
            )
            self.renderer = Renderer(self.world, self.camera, device="cpu")
            self.noise = np.random.default_rng(self.world.seed)
            self.judge = EpisodeJudge(self.world, float(p["max_episode_time"]), float(p["airborne_height"]))
            self.frame: WorldFrame | None = None
            self.pose: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
            self.outcome: str | None = None
            self._last_odom_wall = -math.inf
            self._last_log_wall = -math.inf
            self.wall = Clock(clock_type=ClockType.STEADY_TIME)

            self.pub_image = self.create_publisher(Image, "/camera/image_raw", 10)
            self.pub_info = self.create_publisher(CameraInfo, "/camera/camera_info", 10)
            self.pub_odom = self.create_publisher(Odometry, "/odom", 10)
            self.pub_goal = self.create_publisher(PoseStamped, "/goal_pose", LATCHED_QOS)
            self.pub_outcome = self.create_publisher(String, "~/outcome", LATCHED_QOS)
            self.create_subscription(px4.VehicleOdometry, p["vehicle_odometry_topic"], self._on_odometry, px4_qos())
            self.create_subscription(px4.VehicleStatus, p["vehicle_status_topic"], self._on_status, px4_qos())
            self.armed = False
            self._frozen_at: float | None = None  # PX4 time (s) the world frame was fixed
            self._ground: deque[tuple[float, float]] = deque()  # (PX4 time, height) before take-off
            self.create_timer(1.0 / float(p["camera_rate"]), self._on_camera)
            goal = PoseStamped()
            goal.header.stamp = self.get_clock().now().to_msg()
            goal.header.frame_id = "odom"
            goal.pose.position.x, goal.pose.position.y, goal.pose.position.z = (float(v) for v in self.world.goal)
            goal.pose.orientation.w = 1.0
            self.pub_goal.publish(goal)
            self.get_logger().info(
                f"{self.world.kind} world seed {self.world.seed} ({self.world.params.get('preset', '')}), "
                f"{self.camera.width}x{self.camera.height} camera at {p['camera_rate']:g} Hz; waiting for PX4 on "
                f"{p['vehicle_odometry_topic']}"
            )

        def _on_odometry(self, msg: Any) -> None:
            position = np.asarray(msg.position, dtype=np.float64)
            q = np.asarray(msg.q, dtype=np.float64)
            if not (np.all(np.isfinite(position)) and np.all(np.isfinite(q))):
                return  # PX4 sends NaN while its estimate is not valid yet
            t = float(msg.timestamp) * _US
            if self._frozen_at is None:
                # On the ground the estimate settles (PX4's first heights can be off by half a metre): the
                # point the vehicle takes off from becomes the world's start. Fixed at arming, or once it
                # climbs (the status stream can lag the odometry by a second), at the lowest height of
                # the last GROUND_WINDOW seconds, so the metres already climbed are not taken for ground.
                up = -float(msg.velocity[2]) if int(msg.velocity_frame) == 1 else 0.0
                self._ground.append((t, -float(position[2])))
                while self._ground and self._ground[0][0] < t - GROUND_WINDOW:
                    self._ground.popleft()
                self.frame = WorldFrame.at(position, q, self.world.start)
                if self.armed or up > CLIMB_FREEZE:
                    ground = min(z for _, z in self._ground)
                    self.frame = replace(self.frame, origin_enu=(*self.frame.origin_enu[:2], ground))
                    self._frozen_at = t
                    self.get_logger().info(
                        f"take-off: PX4's position {tuple(round(v, 2) for v in self.frame.origin_enu)} (ENU) and "
                        f"heading {math.degrees(self.frame.origin_yaw):.0f} deg are the world's start "
                        f"{tuple(round(v, 2) for v in self.world.start)}"
                    )
            elif not self.judge.started and t - self._frozen_at > float(self.params["takeoff_timeout"]):
                self.get_logger().warning(
                    f"still below {self.params['airborne_height']} m {self.params['takeoff_timeout']} s after take-off "
                    "began: the episode starts anyway"
                )
                self.judge.start(t)
            assert self.frame is not None
            world_pos = self.frame.position(position)
            attitude = self.frame.attitude(q)
            velocity = np.asarray(msg.velocity, dtype=np.float64)
            velocity = np.where(np.isfinite(velocity), velocity, 0.0)
            if int(msg.velocity_frame) == 3:  # body FRD
                body_v = np.array([velocity[0], -velocity[1], -velocity[2]])
            else:  # NED (or FRD navigation): into the world, then the body
                body_v = quat_to_matrix(attitude)[0].T @ self.frame.vector(velocity)
            rates = np.asarray(msg.angular_velocity, dtype=np.float64)
            rates = np.where(np.isfinite(rates), rates, 0.0) * np.array([1.0, -1.0, -1.0])  # FRD -> FLU
            self.pose = (world_pos, attitude, body_v, rates)
            if self.outcome is None and self._frozen_at is not None:
                outcome = self.judge.update(t, world_pos)
                if outcome is not None:
                    self._finish(outcome, t)
            now = self.wall.now().nanoseconds * 1e-9
            period = float(self.params["log_period"])
            if period > 0 and self.outcome is None and now - self._last_log_wall >= period:
                self._last_log_wall = now
                t = float(msg.timestamp) * _US
                self.get_logger().info(
                    f"t {self.judge.elapsed(t):5.1f} s  position ({world_pos[0]:.1f}, {world_pos[1]:.1f}, "
                    f"{world_pos[2]:.2f})  heading {math.degrees(quaternion_yaw(attitude)):.0f} deg  "
                    f"goal {np.linalg.norm(self.judge.goal - world_pos):.1f} m"
                    + ("" if self.judge.started else "  (taking off)")
                )
            if now - self._last_odom_wall >= 1.0 / float(self.params["odometry_rate"]):
                self._last_odom_wall = now
                self.pub_odom.publish(odometry_msg(world_pos, attitude, body_v, rates, self.get_clock().now().to_msg()))

        def _on_status(self, msg: Any) -> None:
            self.armed = int(msg.arming_state) == ARMING_STATE_ARMED

        def _on_camera(self) -> None:
            if self.pose is None or self.outcome is not None:
                return
            position, attitude, _, _ = self.pose
            rgb = self.renderer.render(position[None, :], attitude[None, :]).rgb[0]
            rgb = apply_camera_effects(rgb, self.world.conditions, self.noise)
            stamp = self.get_clock().now().to_msg()
            self.pub_image.publish(rgb_to_image_msg(np.ascontiguousarray(rgb), stamp, "camera_optical"))
            self.pub_info.publish(camera_info_msg(self.camera, stamp, "camera_optical"))

        def _finish(self, outcome: str, t: float) -> None:
            self.outcome = outcome
            result = self.judge.result(outcome, t)
            self.pub_outcome.publish(String(data=json.dumps(result)))
            self.get_logger().info(f"episode over: {json.dumps(result)}")
            if self.params["exit_on_outcome"]:
                code = EXIT_SUCCESS if outcome == "success" else EXIT_FAILURE

                def _exit() -> None:
                    raise NodeExit(code, f"episode over: {outcome}")

                self.create_timer(float(self.params["exit_grace"]), _exit, clock=self.wall)

    return Px4WorldNode


def main(args: list[str] | None = None) -> None:
    """``ros2 run lnn_nav px4_world_node``; exit 2 without px4_msgs."""
    from lnn_nav.nodes.px4_offboard import Px4MsgsMissing
    from lnn_nav.nodes.runtime import run_node

    try:
        cls = _make_node_class()
    except Px4MsgsMissing as err:
        print(f"[{NODE_NAME}] error: {err}", file=sys.stderr)
        sys.exit(2)
    sys.exit(run_node(cls, args))


if __name__ == "__main__":
    main()
