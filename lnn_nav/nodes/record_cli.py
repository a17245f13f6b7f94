"""`lnn-nav record`: record topics of the ROS 2 graph to a rosbag2 (front of the recorder node)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lnn_nav.argtypes import byte_size, positive_float
from lnn_nav.data.formats import COMPRESSIONS, STORAGES

HELP = "record topics of the ROS 2 graph to a rosbag2 (MCAP or SQLite3)"
DESCRIPTION = """\
Record topics to a rosbag2, like `ros2 bag record`, without a rosbag2 install:
runs lnn_nav's recorder node in this process. Message types come from the
graph (publishers that start later are picked up), messages are written as
received (serialized CDR), QoS follows the publishers (best-effort sensor
drivers and latched topics included). Ctrl-C or SIGTERM closes the bag
cleanly; a killed recorder loses at most the last --flush-period seconds.

Discovery follows the environment (ROS_DOMAIN_ID, ROS_AUTOMATIC_DISCOVERY_RANGE),
so it hears the same graph as the nodes it records.

examples:
  lnn-nav record /camera/image_raw /imu/data /cmd_vel -o flight_001
  lnn-nav record -a --exclude '^/rosout' --max-bag-duration 60 --compression chunk
  lnn-nav record /camera/image_raw /imu/data --stop-after 30 -s sqlite3"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("topics", nargs="*", metavar="TOPIC", help="topics to record")
    parser.add_argument("-a", "--all", action="store_true", help="record every topic on the graph")
    parser.add_argument("--exclude", default="", metavar="REGEX", help="do not record topics matching REGEX")
    parser.add_argument(
        "-o",
        "--output",
        default="",
        metavar="DIR",
        help="bag directory to create (default: rosbag2_YYYY_MM_DD-HH_MM_SS)",
    )
    parser.add_argument("-s", "--storage", choices=STORAGES, default="mcap", help="storage (default: %(default)s)")
    parser.add_argument(
        "--compression",
        choices=COMPRESSIONS,
        default="none",
        help="zstd: chunk (MCAP only, recommended), message or file (default: %(default)s)",
    )
    parser.add_argument(
        "-b",
        "--max-bag-size",
        type=byte_size,
        default=0,
        metavar="BYTES",
        help="split when a file holds this many message bytes, e.g. 2G (default: no split)",
    )
    parser.add_argument(
        "-d",
        "--max-bag-duration",
        type=positive_float,
        default=None,
        metavar="S",
        help="split every S seconds of recording (default: no split)",
    )
    parser.add_argument(
        "--stop-after",
        type=positive_float,
        default=None,
        metavar="S",
        help="stop after S seconds (default: until Ctrl-C / SIGTERM)",
    )
    parser.add_argument(
        "--flush-period",
        type=positive_float,
        default=1.0,
        metavar="S",
        help="flush to disk every S seconds (default: %(default)s)",
    )
    parser.add_argument(
        "--queue-depth",
        type=int,
        default=1000,
        metavar="N",
        help="subscription queue depth per topic (default: %(default)s)",
    )
    parser.add_argument("--use-sim-time", action="store_true", help="stamp messages with /clock time")


def run(args: argparse.Namespace) -> int:
    if not args.topics and not args.all:
        print("lnn-nav record: error: name topics to record, or --all", file=sys.stderr)
        return 2
    if args.output and Path(args.output).exists():
        print(f"lnn-nav record: error: {args.output} exists already; choose a new output", file=sys.stderr)
        return 2

    from rclpy.parameter import Parameter

    from lnn_nav.nodes.recorder_node import run_recorder

    overrides = [
        Parameter("all_topics", value=bool(args.all)),
        Parameter("exclude", value=args.exclude),
        Parameter("output", value=args.output),
        Parameter("storage", value=args.storage),
        Parameter("compression", value=args.compression),
        Parameter("max_bag_size", value=int(args.max_bag_size)),
        Parameter("max_bag_duration", value=float(args.max_bag_duration or 0.0)),
        Parameter("flush_period", value=float(args.flush_period)),
        Parameter("queue_depth", value=int(args.queue_depth)),
        Parameter("use_sim_time", value=bool(args.use_sim_time)),
    ]
    if args.topics:
        overrides.append(Parameter("topics", value=list(args.topics)))
    try:
        node = run_recorder(overrides, stop_after=args.stop_after)
    except (ValueError, FileExistsError) as err:
        print(f"lnn-nav record: error: {err}", file=sys.stderr)
        return 2
    print(node.summary())
    return 0
