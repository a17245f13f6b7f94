"""`lnn-nav fly`: one closed-loop episode through the ROS 2 graph (simulator node + controller or expert)."""

from __future__ import annotations

import argparse
import sys

from lnn_nav.sim.kinds import PRESET_NAMES, WORLD_KINDS

HELP = "fly one closed-loop episode through the ROS 2 graph (sim node + controller or expert)"
DESCRIPTION = """\
Start the simulator node and a pilot (the controller node with --model, or the
privileged expert node with --expert) as separate ROS 2 processes, fly one
episode and print its outcome as JSON. Exit code 0 on success, 1 on collision,
out of bounds or timeout, 2 when the run cannot start. Sets
ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST for itself and the nodes unless the
environment already sets it; ROS_DOMAIN_ID is left as is."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--world", choices=WORLD_KINDS, default="forest", help="world kind (default: %(default)s)")
    pilot = parser.add_mutually_exclusive_group(required=True)
    pilot.add_argument("--model", metavar="PATH", help="controller checkpoint (.safetensors)")
    pilot.add_argument("--expert", action="store_true", help="fly the privileged expert instead of a model")
    parser.add_argument("--seed", type=int, default=0, metavar="N", help="world seed (default: %(default)s)")
    parser.add_argument(
        "--preset",
        "--ood",  # the option's first name, kept as an alias (CHANGELOG, 2026-12-06)
        dest="preset",
        default="in_distribution",
        metavar="NAME",
        help=f"conditions preset: {', '.join(PRESET_NAMES)} (default: %(default)s; --ood is an older name)",
    )
    parser.add_argument(
        "--px4",
        action="store_true",
        help="PX4 in the loop: PX4 SITL (SIH) flies the vehicle, px4_world_node renders the camera from "
        "PX4's odometry and judges the episode, the controller flies through px4_offboard_node "
        "(docs/gazebo_px4.md); needs the PX4 SIH bundle and px4_msgs",
    )
    parser.add_argument(
        "--px4-bundle",
        metavar="DIR",
        default=None,
        help="the ros-extras folder with PX4 SIH and the XRCE-DDS agent (default: $LNN_NAV_ROS_EXTRAS, else "
        "../shared/ros-extras beside the source tree)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        metavar="S",
        help="wall-clock seconds to wait for the outcome (default: %(default)s)",
    )
    parser.add_argument(
        "--max-episode-time",
        type=float,
        default=None,
        metavar="S",
        help="simulated seconds (with --px4: seconds from takeoff) before the episode ends as timeout "
        "(default: config/sim.yaml, 60)",
    )
    parser.add_argument(
        "--native",
        action="store_true",
        help="fly the checkpoint in the native controller node (C++ on rcl, no Python or torch in the loop; "
        "CfC cores) instead of the Python controller_node",
    )
    parser.add_argument(
        "--log-dir",
        metavar="DIR",
        default=None,
        help="where the nodes' logs (and PX4's working directory) go (default: a new temporary folder)",
    )


def run(args: argparse.Namespace) -> int:
    if args.native and (args.expert or args.px4):
        print(
            "lnn-nav fly: --native flies a controller checkpoint (--model) in the embedded simulator", file=sys.stderr
        )
        return 2
    if args.px4:
        if args.expert:
            print("lnn-nav fly: --px4 flies a controller checkpoint (--model), not the expert", file=sys.stderr)
            return 2
        from lnn_nav.nodes.fly_px4 import run_fly_px4

        return run_fly_px4(
            args.world,
            args.seed,
            args.preset,
            args.model,
            bundle=args.px4_bundle,
            timeout=args.timeout,
            max_episode_time=args.max_episode_time,
            log_dir=args.log_dir,
        )
    from lnn_nav.nodes.fly import run_fly

    return run_fly(
        args.world,
        seed=args.seed,
        preset=args.preset,
        model=args.model,
        expert=args.expert,
        timeout=args.timeout,
        max_episode_time=args.max_episode_time,
        log_dir=args.log_dir,
        native=args.native,
    )
