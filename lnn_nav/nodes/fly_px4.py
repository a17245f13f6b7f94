"""`lnn-nav fly --px4`: one closed-loop episode with PX4 in the loop (PX4 SITL in SIH mode).

PX4 flies the vehicle and estimates its state; ``px4_world_node`` places
that state in an lnn_nav world, renders the camera from it and judges the
episode; the controller node flies from the camera and sends ``/cmd_vel``
through ``px4_offboard_node`` to PX4. The processes, in start order:

1. the Micro XRCE-DDS agent (``<bundle>/agent/run.sh``, DDS on 127.0.0.1);
2. PX4 SITL, SIH quadrotor, headless (``<bundle>/scripts/run_px4_sih.sh``), in a
   scratch working directory, its logger off;
3. ``px4_world_node`` (the world, its camera and the referee);
4. ``px4_offboard_node`` with config/px4_offboard.yaml (takeoff to the
   world's start height), the same file ``gz_px4.launch.py`` gives it;
5. the controller node with config/controller.yaml, as on a drone.

The bundle is the ros-extras folder (PX4 SIH build, agent, scripts):
``--px4-bundle``, else ``$LNN_NAV_ROS_EXTRAS``, else ``../shared/ros-extras``
beside the source tree. Everything is stopped in reverse order at the end,
also on errors and Ctrl-C. PX4 runs in real time: an episode takes its
flight time plus about 20 s of start-up and takeoff.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from lnn_nav.nodes.fly import (
    Children,
    SetupError,
    checkpoint_camera,
    config_path,
    node_command,
    report_episode,
    wait_for_outcome,
)
from lnn_nav.nodes.px4_sitl import Px4Sitl, agent_command, find_bundle

WORLD_OUTCOME_TOPIC = "/px4_world_node/outcome"


def fly_px4(
    world: str,
    seed: int,
    preset: str,
    model: str,
    bundle: str | None = None,
    timeout: float = 240.0,
    max_episode_time: float | None = None,
    log_dir: str | None = None,
    altitude_hold: bool = False,
) -> dict | None:
    """Fly one episode with PX4 in the loop; the outcome dict, or None if none came within ``timeout``."""
    from lnn_nav.sim.presets import make_world

    if not Path(model).is_file():
        raise SetupError(f"model checkpoint not found: {model}")
    found = find_bundle(bundle)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env = dict(os.environ)
    env.setdefault("PX4_PARAM_SDLOG_BACKEND", "0")  # no ulog: the episode's record is the outcome
    # PX4's DDS participant joins the ROS domain of the nodes (PX4's own default is domain 0).
    env.setdefault("PX4_PARAM_UXRCE_DDS_DOM_ID", env.get("ROS_DOMAIN_ID", "0"))
    logs = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="lnn_nav_fly_px4_"))
    logs.mkdir(parents=True, exist_ok=True)
    spec = make_world(world, seed, preset)
    children = Children(logs)
    px4 = Px4Sitl(found, logs / "px4", env)
    try:
        children.start("agent", agent_command(found, logs, sys.prefix), env)
        px4.start()
        px4.wait_ready()
        world_params: dict[str, object] = {"world": world, "seed": seed, "preset": preset, "exit_on_outcome": True}
        world_params.update(checkpoint_camera(model))
        if max_episode_time is not None:
            world_params["max_episode_time"] = float(max_episode_time)
        children.start("px4_world_node", node_command("px4_world_node", None, world_params), env)
        children.start(
            "px4_offboard_node",
            node_command(
                "px4_offboard",
                config_path("px4_offboard.yaml"),
                {"takeoff_altitude": float(spec.start[2]), "altitude_hold": altitude_hold},
            ),
            env,
        )
        children.start(
            "controller",
            node_command("controller", config_path("controller.yaml"), {"model_path": str(Path(model).resolve())}),
            env,
        )
        print(
            f"lnn-nav fly --px4: {world} seed {seed} ({preset}), PX4 SIH from {found}, model {model}; logs in {logs}",
            file=sys.stderr,
        )
        return wait_for_outcome(children, timeout, WORLD_OUTCOME_TOPIC)
    except SetupError as err:
        tail = px4.log_tail()
        raise SetupError(f"{err}\n--- px4.out ---\n{tail}" if tail else str(err)) from err
    finally:
        # The pilot first, then the world and the bridge, PX4 before the agent it talks through.
        children.stop(keep=("agent",))
        px4.stop()
        children.stop()


def run_fly_px4(
    world: str,
    seed: int,
    preset: str,
    model: str,
    bundle: str | None = None,
    timeout: float = 240.0,
    max_episode_time: float | None = None,
    log_dir: str | None = None,
) -> int:
    """Fly one episode; print the outcome JSON. 0 on success, 1 on another outcome, 2 on setup errors."""
    return report_episode(
        "lnn-nav fly --px4",
        lambda: fly_px4(world, seed, preset, model, bundle, timeout, max_episode_time, log_dir),
        timeout,
    )
