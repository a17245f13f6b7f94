"""Replay a rosbag2 with its recorded timing: the replay node with config/replay.yaml.

    ros2 launch lnn_nav replay.launch.py bag:=flight_001
    ros2 launch lnn_nav replay.launch.py bag:=flight_001 rate:=0.5 topics:="/camera/image_raw /imu/data"
    ros2 launch lnn_nav replay.launch.py bag:=flight_001 controller:=true model_path:=policy.safetensors
    ros2 launch lnn_nav replay.launch.py bag:=flight_001 wait_for_subscribers:=true wait_timeout:=30

Parameters come from config/replay.yaml; a launch argument left empty keeps
the file's value. ``topics`` and ``remap`` take entries separated by spaces
or commas (remap entries are ``FROM:=TO``). With controller:=true the
controller node runs open loop against the recording: the replay publishes
/clock, the controller runs on it (use_sim_time) and its commands go to
``policy_cmd_topic``, beside the recorded /cmd_vel. The launch ends when
playback ends (never with loop:=true) or stops on an error.
The `launch` package comes with a ROS install (not as a pip wheel); without
one, `lnn-nav replay` runs the same node.
"""

import os
import re

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction, Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription

TRUE = ("true", "1", "yes")
FLOAT_ARGS = ("rate", "start_offset", "delay", "wait_timeout")
LIST_ARGS = ("topics", "remap")


def _launch_setup(context, *args, **kwargs):
    config = os.path.join(get_package_share_directory("lnn_nav"), "config")
    arg = lambda name: LaunchConfiguration(name).perform(context).strip()  # noqa: E731
    if not arg("bag"):
        raise RuntimeError("no recording given: pass bag:=<rosbag2 directory or .mcap/.db3 file>")
    with_controller = arg("controller").lower() in TRUE
    overrides = {"bag": os.path.abspath(os.path.expanduser(arg("bag")))}
    overrides.update({name: float(arg(name)) for name in FLOAT_ARGS if arg(name)})
    for name in LIST_ARGS:
        entries = [e for e in re.split(r"[\s,\[\]]+", arg(name)) if e]
        if entries:
            overrides[name] = entries
    for name in ("loop", "wait_for_subscribers"):
        if arg(name):
            overrides[name] = arg(name).lower() in TRUE
    if with_controller:
        overrides["publish_clock"] = True  # the controller runs on the recording's time
    elif arg("publish_clock"):
        overrides["publish_clock"] = arg("publish_clock").lower() in TRUE
    actions = [
        Node(
            package="lnn_nav",
            executable="replay_node",
            name="replay_node",
            output="screen",
            parameters=[os.path.join(config, "replay.yaml"), overrides],
            on_exit=Shutdown(reason="replay finished"),
        ),
    ]
    if with_controller:
        actions.append(
            Node(
                package="lnn_nav",
                executable="controller_node",
                name="controller_node",
                output="screen",
                parameters=[
                    os.path.join(config, "controller.yaml"),
                    {"model_path": arg("model_path"), "use_sim_time": True},
                ],
                remappings=[("/cmd_vel", arg("policy_cmd_topic"))],
            )
        )
    return actions


def generate_launch_description():
    return LaunchDescription(
        [
            DeclareLaunchArgument("bag", description="rosbag2 directory, or a single .mcap/.db3 file"),
            DeclareLaunchArgument("rate", default_value="", description="playback speed factor (empty: replay.yaml's)"),
            DeclareLaunchArgument("start_offset", default_value="", description="seconds into the recording to start"),
            DeclareLaunchArgument("delay", default_value="", description="wall seconds before the first message"),
            DeclareLaunchArgument("loop", default_value="", description="true: start again after the last message"),
            DeclareLaunchArgument(
                "wait_for_subscribers",
                default_value="",
                description="true: hold the first message until every replayed topic has a subscriber",
            ),
            DeclareLaunchArgument(
                "wait_timeout", default_value="", description="wait_for_subscribers: start anyway after this many s"
            ),
            DeclareLaunchArgument(
                "topics", default_value="", description="bag topics to replay, space or comma separated (empty: all)"
            ),
            DeclareLaunchArgument(
                "remap", default_value="", description="FROM:=TO entries, space separated: publish bag topic FROM on TO"
            ),
            DeclareLaunchArgument(
                "publish_clock", default_value="", description="true: publish /clock with the recorded time"
            ),
            DeclareLaunchArgument(
                "controller",
                default_value="false",
                description="true: run the controller open loop on the replayed inputs",
            ),
            DeclareLaunchArgument(
                "model_path",
                default_value="",
                description="controller checkpoint (.safetensors), with controller:=true; empty: the shipped CfC-NCP",
            ),
            DeclareLaunchArgument(
                "policy_cmd_topic",
                default_value="/cmd_vel_policy",
                description="where the open-loop controller's commands go",
            ),
            OpaqueFunction(function=_launch_setup),
        ]
    )
