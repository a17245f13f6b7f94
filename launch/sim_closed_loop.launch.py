"""Closed loop in the embedded simulator: sim_node + controller_node (+ the privileged expert).

    ros2 launch lnn_nav sim_closed_loop.launch.py model_path:=policy.safetensors world:=urban seed:=4
    ros2 launch lnn_nav sim_closed_loop.launch.py use_expert:=true          # the expert flies

Parameters come from config/sim.yaml, config/controller.yaml and
config/expert.yaml; the launch arguments override world, seed and preset.
With use_expert:=true the expert node flies (fly:=true) and the controller
is not started. Every node runs on the simulator's /clock (use_sim_time).
The `launch` package comes with a ROS install (not as a pip wheel); without
one, `lnn-nav fly` runs the same graph.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from launch import LaunchDescription


def generate_launch_description():
    config = os.path.join(get_package_share_directory("lnn_nav"), "config")
    world = LaunchConfiguration("world")
    seed = ParameterValue(LaunchConfiguration("seed"), value_type=int)
    preset = LaunchConfiguration("preset")
    use_expert = LaunchConfiguration("use_expert")
    world_params = {"world": world, "seed": seed, "preset": preset}
    return LaunchDescription(
        [
            DeclareLaunchArgument("world", default_value="forest", description="forest or urban"),
            DeclareLaunchArgument("seed", default_value="0", description="world seed"),
            DeclareLaunchArgument("preset", default_value="in_distribution", description="conditions preset"),
            DeclareLaunchArgument(
                "model_path",
                default_value="",
                description="controller checkpoint (.safetensors); empty: the shipped CfC-NCP",
            ),
            DeclareLaunchArgument("use_expert", default_value="false", description="fly the privileged expert instead"),
            Node(
                package="lnn_nav",
                executable="sim_node",
                name="sim_node",
                output="screen",
                parameters=[os.path.join(config, "sim.yaml"), world_params],
            ),
            Node(
                package="lnn_nav",
                executable="controller_node",
                name="controller_node",
                output="screen",
                parameters=[
                    os.path.join(config, "controller.yaml"),
                    # The simulator stamps a step's odometry and image alike: run each frame with its own.
                    {
                        "model_path": LaunchConfiguration("model_path"),
                        "use_sim_time": True,
                        "sync_inputs": True,
                        "sync_timeout": 1.0,
                    },
                ],
                condition=UnlessCondition(use_expert),
            ),
            Node(
                package="lnn_nav",
                executable="expert_node",
                name="expert_node",
                output="screen",
                parameters=[os.path.join(config, "expert.yaml"), world_params, {"fly": True, "use_sim_time": True}],
                condition=IfCondition(use_expert),
            ),
        ]
    )
