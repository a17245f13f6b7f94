"""`lnn-nav replay`: publish a rosbag2 with its recorded timing (front of the replay node)."""

from __future__ import annotations

import argparse
import sys

from lnn_nav.argtypes import non_negative_float, positive_float

HELP = "replay a rosbag2 on the ROS 2 graph with its recorded timing (optionally driving /clock)"
DESCRIPTION = """\
Publish a rosbag2's messages (MCAP or SQLite3, ours or `ros2 bag`'s) with their
recorded timing, like `ros2 bag play`, without a rosbag2 install: runs
lnn_nav's replay node in this process. The recorded bytes are published as
they are. With --clock, /clock carries the recorded time, so a controller
started with use_sim_time:=true runs open-loop against a recorded flight:

  lnn-nav replay flight_001 --clock --topics /camera/image_raw /imu/data /odom /goal_pose
  ros2 run lnn_nav controller_node --ros-args -p use_sim_time:=true -r /cmd_vel:=/cmd_vel_replayed

Only message types of installed packages can be published; topics of other
types are named and skipped. Exit code 0 when the recording was played, 1
when playback stopped on a damaged message, 2 when it cannot start
(missing bag, unknown topic, no publishable topic).

Discovery follows the environment (ROS_DOMAIN_ID, ROS_AUTOMATIC_DISCOVERY_RANGE)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bag", metavar="BAG", help="rosbag2 directory, or a single .mcap/.db3 file")
    parser.add_argument("-r", "--rate", type=positive_float, default=1.0, help="speed factor (default: %(default)s)")
    parser.add_argument(
        "--start-offset",
        type=non_negative_float,
        default=0.0,
        metavar="S",
        help="start S seconds into the recording (default: %(default)s)",
    )
    parser.add_argument("-l", "--loop", action="store_true", help="play again and again until Ctrl-C")
    parser.add_argument(
        "--topics", nargs="+", default=None, metavar="TOPIC", help="replay only these recorded topics (default: all)"
    )
    parser.add_argument("--remap", nargs="+", default=[], metavar="FROM:=TO", help="publish recorded topic FROM on TO")
    parser.add_argument(
        "--clock",
        nargs="?",
        type=positive_float,
        const=100.0,
        default=None,
        metavar="HZ",
        help="publish /clock with the recorded time, HZ times a second between messages (default when given: 100)",
    )
    parser.add_argument(
        "--delay",
        type=non_negative_float,
        default=0.0,
        metavar="S",
        help="wait S seconds before the first message (default: %(default)s)",
    )
    parser.add_argument(
        "--wait-for-subscribers",
        nargs="?",
        type=non_negative_float,
        const=10.0,
        default=None,
        metavar="S",
        help="wait (up to S seconds, default 10) until every replayed topic has a subscriber",
    )


def run(args: argparse.Namespace) -> int:
    from rclpy.parameter import Parameter

    from lnn_nav.data.errors import BagError
    from lnn_nav.nodes.replay_node import run_replay

    overrides = [
        Parameter("bag", value=args.bag),
        Parameter("rate", value=float(args.rate)),
        Parameter("start_offset", value=float(args.start_offset)),
        Parameter("loop", value=bool(args.loop)),
        Parameter("delay", value=float(args.delay)),
        Parameter("publish_clock", value=args.clock is not None),
        Parameter("clock_frequency", value=float(args.clock or 100.0)),
        Parameter("wait_for_subscribers", value=args.wait_for_subscribers is not None),
        Parameter("wait_timeout", value=float(args.wait_for_subscribers or 0.0)),
    ]
    if args.topics:
        overrides.append(Parameter("topics", value=list(args.topics)))
    if args.remap:
        overrides.append(Parameter("remap", value=list(args.remap)))
    try:
        node = run_replay(overrides)
    except (BagError, ValueError) as err:
        print(f"lnn-nav replay: error: {err}", file=sys.stderr)
        return 2
    if node.error is not None:
        print(f"lnn-nav replay: error: playback stopped early: {node.error}", file=sys.stderr)
        return 1
    total = sum(node.counts.values())
    print(f"replayed {total} messages from {args.bag}" + (f" ({node.loops_done} full loops)" if args.loop else ""))
    for topic, count in sorted(node.counts.items()):
        print(f"  {topic}: {count}")
    return 0
