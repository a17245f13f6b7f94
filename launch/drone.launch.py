"""The liquid-network controller on a drone: camera (and IMU) in, /cmd_vel out.

    ros2 launch lnn_nav drone.launch.py model_path:=/path/policy.safetensors image_topic:=/camera/color/image_raw

Parameters come from config/controller.yaml; model_path and device
override it, and the controller's /camera/image_raw is remapped to
image_topic. Pair it with a camera driver and the PX4 offboard bridge. The
`launch` package comes with a ROS install (not as a pip wheel).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    config = os.path.join(get_package_share_directory("lnn_nav"), "config", "controller.yaml")
    return LaunchDescription([
        DeclareLaunchArgument("model_path", description="controller checkpoint (.safetensors)"),
        DeclareLaunchArgument("image_topic", default_value="/camera/image_raw", description="camera image topic"),
        DeclareLaunchArgument("device", default_value="cpu", description="torch device: cpu or cuda"),
        Node(
            package="lnn_nav", executable="controller_node", name="controller_node", output="screen",
            parameters=[config, {"model_path": LaunchConfiguration("model_path"),
                                 "device": LaunchConfiguration("device")}],
            remappings=[("/camera/image_raw", LaunchConfiguration("image_topic"))],
        ),
    ])
