"""Closed loop in the embedded simulator: sim_node + controller_node (+ the privileged expert).

    ros2 launch lnn_nav sim_closed_loop.launch.py world:=urban seed:=1003      # the shipped CfC-NCP
    ros2 launch lnn_nav sim_closed_loop.launch.py model_path:=policy.safetensors preset:=fog
    ros2 launch lnn_nav sim_closed_loop.launch.py use_expert:=true             # the expert flies

Parameters come from config/sim.yaml, config/controller.yaml and
config/expert.yaml; the launch arguments override world, seed and preset,
and the simulated camera takes the field of view the checkpoint was trained
with. The controller runs with exactly the parameters `lnn-nav fly` gives it
(``lnn_nav.nodes.fly.SIM_CONTROLLER_PARAMS`` over the YAML), so both fly the
same episode on the same seed. With use_expert:=true the expert node flies
(fly:=true) and the controller is not started. Every node runs on the
simulator's /clock (use_sim_time).

The launch ends with the episode (exit_on_outcome:=true, the default): the
outcome is logged as JSON (``episode over: {...}``, also latched on
``/sim_node/outcome``), and ``ros2 launch`` exits 0 on success and 1 on a
collision or timeout, so it can be scripted. exit_on_outcome:=false keeps
the graph up after the episode.
"""

import os
import tempfile
from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, EmitEvent, LogInfo, OpaqueFunction, RegisterEventHandler
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch_ros.actions import Node

from launch import LaunchDescription
from lnn_nav.nodes.fly import SIM_CONTROLLER_PARAMS, checkpoint_camera, native_pilot, share_path

TRUE = ("true", "1", "yes")


class EpisodeFailed(RuntimeError):
    """The episode ended in a collision or a timeout: `ros2 launch` then exits 1."""


def _on_sim_exit(event, context):
    if event.returncode == 0:
        return [LogInfo(msg="sim_closed_loop: episode over: success"), EmitEvent(event=Shutdown(reason="episode over"))]
    # An exception in an event handler is what makes `ros2 launch` exit non-zero; it shuts the
    # launch down (the controller with it) and logs the reason.
    raise EpisodeFailed(
        f"sim_closed_loop: the episode did not succeed (sim_node exit code {event.returncode}; "
        "its 'episode over' line above gives the outcome)"
    )


def _launch_setup(context, *args, **kwargs):
    config = os.path.join(get_package_share_directory("lnn_nav"), "config")
    arg = lambda name: context.launch_configurations[name].strip()  # noqa: E731
    use_expert = arg("use_expert").lower() in TRUE
    exit_on_outcome = arg("exit_on_outcome").lower() in TRUE
    model_path = arg("model_path")
    world_params = {"world": arg("world"), "seed": int(arg("seed")), "preset": arg("preset")}
    sim_params: dict = {**world_params, "exit_on_outcome": exit_on_outcome}
    if not use_expert:
        # The camera the controller was trained with, as `lnn-nav fly` flies it.
        sim_params.update(checkpoint_camera(model_path or str(share_path("models/cfc_ncp.safetensors"))))
    sim_node = Node(
        package="lnn_nav",
        executable="sim_node",
        name="sim_node",
        output="screen",
        parameters=[os.path.join(config, "sim.yaml"), sim_params],
    )
    if use_expert:
        pilot = Node(
            package="lnn_nav",
            executable="expert_node",
            name="expert_node",
            output="screen",
            parameters=[os.path.join(config, "expert.yaml"), world_params, {"fly": True, "use_sim_time": True}],
        )
    elif arg("native").lower() in TRUE:
        # The checkpoint's weights for the native node, exported now, with the Python node's settings.
        weights_dir = Path(tempfile.mkdtemp(prefix="lnn_nav_native_"))
        model = model_path or str(share_path("models/cfc_ncp.safetensors"))
        pilot = Node(
            package="lnn_nav",
            executable="native_controller_node",
            name="native_controller",
            output="screen",
            arguments=native_pilot(model, Path(config) / "controller.yaml", weights_dir),
        )
    else:
        pilot = Node(
            package="lnn_nav",
            executable="controller_node",
            name="controller_node",
            output="screen",
            parameters=[os.path.join(config, "controller.yaml"), {"model_path": model_path, **SIM_CONTROLLER_PARAMS}],
        )
    actions = [sim_node, pilot]
    if exit_on_outcome:
        actions.append(RegisterEventHandler(OnProcessExit(target_action=sim_node, on_exit=_on_sim_exit)))
    return actions


def generate_launch_description():
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
            DeclareLaunchArgument(
                "native",
                default_value="false",
                description="fly the checkpoint in the native controller node (C++ on rcl) instead of controller_node",
            ),
            DeclareLaunchArgument(
                "exit_on_outcome",
                default_value="true",
                description="end the launch with the episode: exit 0 on success, 1 on a collision or timeout",
            ),
            OpaqueFunction(function=_launch_setup),
        ]
    )
