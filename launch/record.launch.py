"""Record a flight to a rosbag2: the recorder node with config/recorder.yaml.

    ros2 launch lnn_nav record.launch.py output:=flight_001
    ros2 launch lnn_nav record.launch.py topics:="/camera/image_raw /imu/data /cmd_vel" storage:=sqlite3
    ros2 launch lnn_nav record.launch.py all_topics:=true exclude:="/diagnostics|/rosout"

Parameters come from config/recorder.yaml (by default the controller's
inputs and /cmd_vel, what `lnn-nav dataset` reads); a launch argument left
empty keeps the file's value. ``topics`` takes names separated by spaces or
commas (a YAML-style ``[/a, /b]`` works too). Ctrl-C (or the end of an
enclosing launch) closes the bag cleanly. Run it beside
sim_closed_loop.launch.py (use_sim_time:=true) to record simulated flights.
The `launch` package comes with a ROS install (not as a pip wheel); without
one, `lnn-nav record` runs the same node.
"""

import os
import re

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription

# Arguments passed on as string parameters when not empty.
STRING_ARGS = ("output", "exclude", "storage", "compression")
TRUE = ("true", "1", "yes")


def _launch_setup(context, *args, **kwargs):
    config = os.path.join(get_package_share_directory("lnn_nav"), "config", "recorder.yaml")
    arg = lambda name: LaunchConfiguration(name).perform(context).strip()  # noqa: E731
    overrides = {name: arg(name) for name in STRING_ARGS if arg(name)}
    topics = [t for t in re.split(r"[\s,\[\]]+", arg("topics")) if t]
    if topics:
        overrides["topics"] = topics
    if arg("all_topics"):
        overrides["all_topics"] = arg("all_topics").lower() in TRUE
    overrides["use_sim_time"] = arg("use_sim_time").lower() in TRUE
    return [
        Node(
            package="lnn_nav",
            executable="recorder_node",
            name="recorder_node",
            output="screen",
            parameters=[config, overrides],
        ),
    ]


def generate_launch_description():
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "output", default_value="", description="bag directory to create (empty: rosbag2_YYYY_MM_DD-HH_MM_SS)"
            ),
            DeclareLaunchArgument(
                "topics",
                default_value="",
                description="topics to record, space or comma separated (empty: recorder.yaml's)",
            ),
            DeclareLaunchArgument(
                "all_topics", default_value="", description="true: every topic on the graph (empty: recorder.yaml's)"
            ),
            DeclareLaunchArgument(
                "exclude", default_value="", description="regular expression of topics not to record"
            ),
            DeclareLaunchArgument("storage", default_value="", description="mcap or sqlite3 (empty: recorder.yaml's)"),
            DeclareLaunchArgument(
                "compression", default_value="", description="none, chunk, message or file (empty: recorder.yaml's)"
            ),
            DeclareLaunchArgument(
                "use_sim_time",
                default_value="false",
                description="stamp messages with /clock time (recording a simulation)",
            ),
            OpaqueFunction(function=_launch_setup),
        ]
    )
