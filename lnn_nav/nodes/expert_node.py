"""The privileged expert as a ROS 2 node: odometry in, velocity commands out.

The expert plans on ground truth, so it needs the world itself, not just
sensor data. It takes the world from, in order of preference:

1. the simulator's latched ``world_topic`` (default ``/sim_node/world``,
   a WorldSpec as JSON), which follows the simulator through resets;
2. ``world_file`` (a WorldSpec JSON, e.g. one exported for Gazebo);
3. ``world``/``seed``/``preset``, generating the same world the simulator
   does from the same parameters (both nodes read them from the same YAML).

Options 2 and 3 cannot follow a simulator reset to another world; it is a
simulation-only node either way (no expert exists for a real flight).

Each ``/odom`` message gives position and yaw; the command
``[vx, vy, vz, yaw_rate]`` (heading frame, see :mod:`lnn_nav.sim.expert`)
goes out as TwistStamped on ``expert/cmd_vel`` stamped with the odometry
stamp, and also on ``/cmd_vel`` when ``fly`` is true. The simulator stamps
odometry and image of a step alike, so in lockstep the stamp answers the
frame.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from geometry_msgs.msg import TwistStamped
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from std_msgs.msg import String

from lnn_nav.geometry import quaternion_yaw
from lnn_nav.nodes.conversions import command_to_twist_stamped, stamp_to_seconds
from lnn_nav.nodes.runtime import run_node
from lnn_nav.nodes.sim_node import LATCHED_QOS
from lnn_nav.sim.expert import ExpertConfig, PrivilegedExpert, demo_expert
from lnn_nav.sim.presets import world_from
from lnn_nav.sim.world import WorldSpec

#: Value of a tuning parameter that means "the demonstrating expert's for the world kind" (demo_expert):
#: the urban expert plans with another clearance cost than the forest's, and the world can change
#: kind with the simulator's.
USE_DEMO = -1.0
_DEMO_PARAMETERS = ("cruise_speed", "clearance_weight", "clearance_scale", "inflate", "yaw_lookahead")

PARAMETERS: dict[str, tuple[Any, str]] = {
    "world": ("forest", "world kind: forest or urban (as the simulator's)"),
    "seed": (0, "world seed (as the simulator's)"),
    "preset": ("in_distribution", "conditions preset (as the simulator's)"),
    "world_file": ("", "WorldSpec JSON to plan in instead of world/seed/preset"),
    "world_topic": ("/sim_node/world", "latched WorldSpec JSON from the simulator; empty: do not listen"),
    "fly": (False, "also publish the commands on /cmd_vel (the expert flies the drone)"),
    "control_hz": (15.0, "expected odometry rate; Δt for the command slew limit when stamps give none"),
    # The demonstrating expert of the world kind by default (USE_DEMO), so the node flies and
    # labels as `lnn-nav collect` and DAgger do.
    "cruise_speed": (USE_DEMO, "cruise speed (m/s); -1: the demonstrating expert's"),
    "clearance_weight": (
        USE_DEMO,
        "cost of flying close to obstacles in the plan; -1: the demonstrating expert's for the world kind",
    ),
    "clearance_scale": (
        USE_DEMO,
        "distance (m) over which that cost falls off; -1: the demonstrating expert's for the world kind",
    ),
    "inflate": (
        USE_DEMO,
        "distance (m) the plan keeps between the drone's centre and obstacles; -1: the demonstrating expert's",
    ),
    "yaw_lookahead": (
        USE_DEMO,
        "distance (m) along the plan the heading looks ahead (the flight path "
        f"tracks the plan {ExpertConfig.lookahead:g} m ahead); -1: the demonstrating expert's",
    ),
    "yaw_deadband": (
        0.0,
        "heading error (rad) labelled as a sideways correction rather than a turn "
        "(a DAgger labeller option, as lnn-nav dagger --expert-options)",
    ),
}


class ExpertNode(Node):
    """Privileged expert commands for every odometry message."""

    def __init__(self, node_name: str = "expert_node", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        for name, (default, text) in PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=text))
        p = {name: self.get_parameter(name).value for name in PARAMETERS}
        self.params = p
        world = world_from(str(p["world_file"]), str(p["world"]), int(p["seed"]), str(p["preset"]))
        self.expert = PrivilegedExpert(world, self.expert_config(world.kind))
        self.last_stamp: float | None = None
        self.pub_expert = self.create_publisher(TwistStamped, "expert/cmd_vel", 10)
        self.pub_cmd = self.create_publisher(TwistStamped, "/cmd_vel", 10) if p["fly"] else None
        self.create_subscription(Odometry, "/odom", self._on_odom, 10)
        if p["world_topic"]:
            self.create_subscription(String, p["world_topic"], self._on_world, LATCHED_QOS)
        self.get_logger().info(
            f"expert for {world.kind} world seed {world.seed}" + (", flying on /cmd_vel" if p["fly"] else "")
        )

    def expert_config(self, kind: str) -> ExpertConfig:
        """The expert for worlds of ``kind``: the demonstrating expert's, with the parameters set explicitly."""
        p = self.params
        explicit = {name: float(p[name]) for name in _DEMO_PARAMETERS if float(p[name]) != USE_DEMO}
        try:
            return ExpertConfig(**{**demo_expert(kind), **explicit, "yaw_deadband": float(p["yaw_deadband"])})
        except ValueError as err:
            raise ValueError(f"expert_node: bad parameter: {err}") from err

    def _on_world(self, msg: String) -> None:
        try:
            world = WorldSpec.from_dict(json.loads(msg.data))
        except (ValueError, TypeError) as err:
            self.get_logger().error(f"ignoring an unreadable world on {self.params['world_topic']}: {err}")
            return
        if world.to_dict() == self.expert.world.to_dict():
            return
        try:
            config = self.expert_config(world.kind)
        except ValueError as err:
            self.get_logger().error(f"ignoring the simulator's {world.kind} world: {err}")
            return
        self.expert = PrivilegedExpert(world, config)
        self.last_stamp = None
        self.get_logger().info(f"planning in the simulator's {world.kind} world seed {world.seed}")

    def _on_odom(self, msg: Odometry) -> None:
        t = stamp_to_seconds(msg.header.stamp)
        nominal = 1.0 / float(self.params["control_hz"])
        if self.last_stamp is None or t <= self.last_stamp or t - self.last_stamp > 1.0:
            # First message, a repeat, a jump back (new episode) or a gap: start the slew limit afresh.
            self.expert.reset()
            dt = nominal
        else:
            dt = t - self.last_stamp
        self.last_stamp = t
        p, q = msg.pose.pose.position, msg.pose.pose.orientation
        yaw = quaternion_yaw((q.w, q.x, q.y, q.z))
        command = self.expert.command(np.array([[p.x, p.y, p.z]]), np.array([yaw]), dt)[0]
        out = command_to_twist_stamped(command, msg.header.stamp, "base_link")
        self.pub_expert.publish(out)
        if self.pub_cmd is not None:
            self.pub_cmd.publish(out)


def main(args: list[str] | None = None) -> None:
    run_node(ExpertNode, args)


if __name__ == "__main__":
    main()
