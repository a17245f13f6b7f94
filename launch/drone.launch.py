"""The liquid-network controller on a drone: camera (and IMU) in, /cmd_vel out.

    ros2 launch lnn_nav drone.launch.py model_path:=/path/policy.safetensors image_topic:=/camera/color/image_raw

Parameters come from config/controller.yaml; model_path, device,
image_topic and camera_info_topic override it. The controller checks the
camera's ``sensor_msgs/CameraInfo`` against the camera the checkpoint
was trained with; camera_info_topic empty (the default) takes it beside
image_topic, as image_transport does (``/camera/color/image_raw`` ->
``/camera/color/camera_info``). Pair it with a camera driver and the PX4
offboard bridge. The `launch` package comes with a ROS install (not as a
pip wheel).

    ros2 launch lnn_nav drone.launch.py native_weights:=/path/policy.native.safetensors
    ros2 launch lnn_nav drone.launch.py native:=true [model_path:=...]

runs the native controller node instead (no Python or torch in the loop; weights from
``lnn-nav export CKPT --format native``) under the controller's name, reading config/controller.yaml's
limits, timeouts and rates as ROS parameters.
"""

import os
import tempfile
from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription
from lnn_nav.nodes.controller_logic import camera_info_topic

TRUE = ("true", "1", "yes")


def controller_overrides(model_path: str, device: str, image_topic: str, info_topic: str = "") -> dict:
    """The controller's parameters the launch arguments set over config/controller.yaml."""
    return {
        "model_path": model_path,
        "device": device,
        "image_topic": image_topic,
        "camera_info_topic": info_topic or camera_info_topic(image_topic),
    }


def _launch_setup(context, *args, **kwargs):
    config = os.path.join(get_package_share_directory("lnn_nav"), "config", "controller.yaml")
    arg = lambda name: LaunchConfiguration(name).perform(context).strip()  # noqa: E731
    # Parameters, not a remapping of /camera/image_raw: a remapping would miss the compressed transport's
    # <image_topic>/compressed and the camera_info the node derives from its image_topic parameter.
    weights = arg("native_weights")
    if not weights and arg("native").lower() in TRUE:
        # model_path's checkpoint (or the shipped one) exported now for the native node.
        from lnn_nav.nodes.fly import export_native, share_path

        model = arg("model_path") or str(share_path("models/cfc_ncp.safetensors"))
        weights = str(export_native(model, Path(tempfile.mkdtemp(prefix="lnn_nav_native_"))))
    if weights:
        # The native node under the Python node's name reads the same YAML (its limits, timeouts, rates; the
        # torch-only keys it leaves alone) and offers the same ~/enable and ~/reset_state services.
        native = {"weights": weights, "image_topic": arg("image_topic")}
        return [
            Node(
                package="lnn_nav",
                executable="native_controller_node",
                name="controller_node",
                output="screen",
                parameters=[config, native],
            ),
        ]
    overrides = controller_overrides(arg("model_path"), arg("device"), arg("image_topic"), arg("camera_info_topic"))
    return [
        Node(
            package="lnn_nav",
            executable="controller_node",
            name="controller_node",
            output="screen",
            parameters=[config, overrides],
        ),
    ]


def generate_launch_description():
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "model_path",
                default_value="",
                description="controller checkpoint (.safetensors); empty: the shipped CfC-NCP",
            ),
            DeclareLaunchArgument(
                "native_weights",
                default_value="",
                description="weights from `lnn-nav export CKPT --format native`: run the native controller node "
                "(no Python or torch in the loop) instead of controller_node",
            ),
            DeclareLaunchArgument(
                "native",
                default_value="false",
                description="true: the native controller node on model_path's checkpoint (the shipped one when "
                "empty), exported now into a temporary folder",
            ),
            DeclareLaunchArgument("image_topic", default_value="/camera/image_raw", description="camera image topic"),
            DeclareLaunchArgument(
                "camera_info_topic",
                default_value="",
                description="camera's sensor_msgs/CameraInfo topic; empty: camera_info beside "
                "image_topic (as image_transport derives it)",
            ),
            DeclareLaunchArgument("device", default_value="cpu", description="torch device: cpu or cuda"),
            OpaqueFunction(function=_launch_setup),
        ]
    )
