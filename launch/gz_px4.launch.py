"""Gazebo + PX4 SITL closed loop: gz sim, PX4 x500_mono_cam, uXRCE-DDS agent, bridge, controller, offboard.

    ros2 launch lnn_nav gz_px4.launch.py px4_dir:=$HOME/PX4-Autopilot world:=forest_seed0 model_path:=policy.safetensors
    ros2 launch lnn_nav gz_px4.launch.py px4_dir:=... headless:=true failsafe_action:=land

``world`` is a world name (``share/lnn_nav/sim/worlds/<world>.sdf``, whose
``<world name=...>`` must equal the file stem: PX4 looks the world up by
name) or a path to an ``.sdf`` file. Gazebo runs standalone
(``PX4_GZ_STANDALONE=1``): PX4 (``<px4_dir>/build/px4_sitl_default/bin/px4``,
built with ``make px4_sitl``) joins the running world and spawns
``x500_mono_cam_0`` (airframe 4010). Needs ros_gz_bridge, MicroXRCEAgent on
PATH and px4_msgs built in the workspace. Parameters come from
config/controller.yaml and config/px4_offboard.yaml; sim/bridge.yaml is
rewritten for the chosen world. Every ROS node runs on Gazebo's /clock.
The `launch` package comes with a ROS install (not as a pip wheel).
"""

import os
import tempfile

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription

PX4_AIRFRAME = "4010"  # gz_x500_mono_cam
PX4_MODEL = "gz_x500_mono_cam"
BRIDGE_WORLD = "/world/default/"  # the world sim/bridge.yaml is written for


def _world_file(world: str, share: str) -> str:
    if world.endswith(".sdf"):
        return os.path.abspath(os.path.expanduser(world))
    return os.path.join(share, "sim", "worlds", f"{world}.sdf")


def _bridge_config(share: str, world_name: str) -> str:
    """sim/bridge.yaml with its gz topics moved to ``world_name``, written to a temporary file."""
    with open(os.path.join(share, "sim", "bridge.yaml"), encoding="utf-8") as f:
        text = f.read().replace(BRIDGE_WORLD, f"/world/{world_name}/")
    fd, path = tempfile.mkstemp(prefix=f"lnn_nav_bridge_{world_name}_", suffix=".yaml")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def _launch_setup(context, *args, **kwargs):
    share = get_package_share_directory("lnn_nav")
    config = os.path.join(share, "config")
    arg = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    world_file = _world_file(arg("world"), share)
    if not os.path.isfile(world_file):
        raise RuntimeError(
            f"world file {world_file} does not exist; export it first (`lnn-nav export-world`) "
            f"or pass world:=/path/to/world.sdf"
        )
    world_name = os.path.splitext(os.path.basename(world_file))[0]
    px4_dir = os.path.abspath(os.path.expanduser(arg("px4_dir")))
    px4_bin = os.path.join(px4_dir, "build", "px4_sitl_default", "bin", "px4")
    if not os.path.isfile(px4_bin):
        raise RuntimeError(f"{px4_bin} not found: pass px4_dir:=<PX4-Autopilot> built with `make px4_sitl`")
    # gz must find PX4's models (x500_mono_cam and what it includes) to spawn the vehicle.
    resource_path = os.pathsep.join(
        filter(
            None,
            [
                os.path.join(px4_dir, "Tools", "simulation", "gz", "models"),
                os.path.join(px4_dir, "Tools", "simulation", "gz", "worlds"),
                os.path.join(share, "sim", "worlds"),
                os.environ.get("GZ_SIM_RESOURCE_PATH", ""),
            ],
        )
    )
    gz_cmd = ["gz", "sim", "-r"]
    if arg("headless").lower() in ("true", "1", "yes"):
        gz_cmd.append("-s")
    gz_cmd.append(world_file)
    sim_time = {"use_sim_time": True}
    return [
        ExecuteProcess(
            cmd=gz_cmd,
            output="screen",
            name="gz_sim",
            additional_env={"GZ_SIM_RESOURCE_PATH": resource_path},
        ),
        ExecuteProcess(
            cmd=[px4_bin],
            cwd=px4_dir,
            output="screen",
            name="px4_sitl",
            additional_env={
                "PX4_GZ_STANDALONE": "1",
                "PX4_SYS_AUTOSTART": PX4_AIRFRAME,
                "PX4_SIM_MODEL": PX4_MODEL,
                "PX4_GZ_WORLD": world_name,
                "GZ_SIM_RESOURCE_PATH": resource_path,
            },
        ),
        ExecuteProcess(cmd=["MicroXRCEAgent", "udp4", "-p", "8888"], output="screen", name="uxrce_agent"),
        Node(
            package="ros_gz_bridge",
            executable="parameter_bridge",
            name="gz_bridge",
            output="screen",
            parameters=[{"config_file": _bridge_config(share, world_name), **sim_time}],
        ),
        Node(
            package="lnn_nav",
            executable="controller_node",
            name="controller_node",
            output="screen",
            parameters=[os.path.join(config, "controller.yaml"), {"model_path": arg("model_path"), **sim_time}],
        ),
        Node(
            package="lnn_nav",
            executable="px4_offboard_node",
            name="px4_offboard_node",
            output="screen",
            parameters=[
                os.path.join(config, "px4_offboard.yaml"),
                {"failsafe_action": arg("failsafe_action"), **sim_time},
            ],
        ),
    ]


def generate_launch_description():
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "world",
                default_value="forest_seed0",
                description="world name under share/lnn_nav/sim/worlds, or an .sdf path",
            ),
            DeclareLaunchArgument(
                "px4_dir",
                default_value=os.path.expanduser("~/PX4-Autopilot"),
                description="PX4-Autopilot checkout built with `make px4_sitl`",
            ),
            DeclareLaunchArgument("headless", default_value="false", description="run gz sim without a GUI"),
            DeclareLaunchArgument(
                "model_path",
                default_value="",
                description="controller checkpoint (.safetensors); empty: the shipped CfC-NCP",
            ),
            DeclareLaunchArgument("failsafe_action", default_value="hold", description="stale commands: hold or land"),
            OpaqueFunction(function=_launch_setup),
        ]
    )
