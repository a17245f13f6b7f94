"""`lnn-nav fly`: one closed-loop episode through a real ROS 2 graph, as separate node processes.

Starts ``sim_node`` and a pilot (``controller`` with a checkpoint, or
``expert_node`` flying), waits for the simulator's latched outcome, prints
it as one JSON line and shuts every child down: SIGINT, then SIGTERM, then
SIGKILL, each after a grace period, pilot first, also on errors and Ctrl-C. Each child
runs in its own session, so a terminal's Ctrl-C reaches only this process,
which then stops the children in order.

Discovery: ``ROS_AUTOMATIC_DISCOVERY_RANGE`` is set to ``LOCALHOST`` for
this process and its children unless the environment already sets it, so
a simulation run does not talk to other machines.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from lnn_nav.share import share_path as shared_file

OUTCOME_TOPIC = "/sim_node/outcome"

#: Exit codes.
EXIT_SUCCESS, EXIT_FAILURE, EXIT_SETUP = 0, 1, 2

#: The controller's parameters in closed-loop simulation, over config/controller.yaml (which holds
#: everything else: limits, rates, timeouts), for `lnn-nav fly` and sim_closed_loop.launch.py alike.
#: Simulation time: the input timeouts then count simulated seconds, which stand still while the
#: lockstep simulator waits for the controller. sim_node stamps a step's odometry and image alike;
#: sync_inputs runs each frame with its own odometry, as in-process (without it, DDS may hand over the
#: frame before that odometry). The simulator waits for the answer anyway, so a busy machine may take
#: up to a second.
SIM_CONTROLLER_PARAMS: dict[str, object] = {"use_sim_time": True, "sync_inputs": True, "sync_timeout": 1.0}


class SetupError(RuntimeError):
    """The run could not start or a node died before the episode ended."""


def share_path(relative: str) -> Path:
    """``relative`` (e.g. ``config/sim.yaml``, ``models/cfc_ncp.safetensors``) from the share directory
    (:func:`lnn_nav.share.share_path`); a missing file is a :class:`SetupError` here."""
    try:
        return shared_file(relative)
    except FileNotFoundError as err:
        raise SetupError(str(err)) from None


def config_path(name: str) -> Path:
    """``config/<name>`` from the installed share directory, else from the source tree."""
    return share_path(f"config/{name}")


def checkpoint_camera(model: str) -> dict[str, object]:
    """sim_node parameters for the camera ``model`` was trained with (its ``camera_hfov``; empty when
    the checkpoint records none, and sim.yaml's camera flies). :class:`SetupError` on a bad checkpoint."""
    from lnn_nav.models.checkpoint import read_checkpoint_info
    from lnn_nav.models.errors import CheckpointError

    try:
        hfov = read_checkpoint_info(model)[0].camera_hfov_deg
    except (CheckpointError, OSError) as err:
        raise SetupError(str(err)) from err
    return {} if hfov is None else {"camera_hfov": float(hfov)}


def export_native(model: str, out_dir: Path) -> Path:
    """``model``'s weights for the native controller node, written into ``out_dir``; :class:`SetupError` if
    the checkpoint cannot be flown natively."""
    from lnn_nav.kernels.native import NativeError, export_weights, save_weights
    from lnn_nav.models import CheckpointError, load_policy

    try:
        return save_weights(export_weights(load_policy(model)), out_dir / "pilot.native.safetensors")
    except (CheckpointError, ValueError, NativeError, OSError) as err:
        raise SetupError(f"the native node cannot fly {model}: {err}") from err


def native_pilot(model: str, controller_yaml: Path | None, out_dir: Path) -> list[str]:
    """The native controller node's arguments for ``model``: its weights exported into ``out_dir``, the
    controller's YAML settings with the closed-loop ones (:data:`SIM_CONTROLLER_PARAMS`).
    :class:`SetupError` if the checkpoint cannot be flown natively."""
    import yaml

    from .native import native_arguments

    weights = export_native(model, out_dir)
    params: dict[str, object] = {}
    if controller_yaml is not None:
        params = dict(yaml.safe_load(controller_yaml.read_text())["controller_node"]["ros__parameters"])
    params.update(SIM_CONTROLLER_PARAMS)
    return native_arguments(str(weights), "/camera/image_raw", params)


def node_command(module: str, params_file: Path | None, params: dict[str, object]) -> list[str]:
    """``python -m lnn_nav.nodes.<module> --ros-args --params-file F -p k:=v ...``."""
    cmd = [sys.executable, "-m", f"lnn_nav.nodes.{module}", "--ros-args"]
    if params_file is not None:
        cmd += ["--params-file", str(params_file)]
    for key, value in params.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        cmd += ["-p", f"{key}:={text}"]
    return cmd


class Children:
    """Child processes that are always stopped, in reverse start order, on exit."""

    def __init__(self, log_dir: Path, grace: float = 5.0) -> None:
        self.log_dir = log_dir
        self.grace = grace
        self.procs: list[tuple] = []  # (name, Popen, log path)

    def start(self, name: str, cmd: Sequence[str], env: dict[str, str]) -> subprocess.Popen:
        log = self.log_dir / f"{name}.log"
        with open(log, "wb") as handle:
            proc = subprocess.Popen(list(cmd), env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append((name, proc, log))
        return proc

    def dead(self) -> str | None:
        """Name of a child that has exited, if any."""
        for name, proc, _ in self.procs:
            if proc.poll() is not None:
                return name
        return None

    def log_tail(self, name: str, lines: int = 20) -> str:
        for n, _, log in self.procs:
            if n == name and log.is_file():
                return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, keep: Sequence[str] = ()) -> None:
        """Stop the children one by one, last started first (the pilot before the clock it runs on),
        but those named in ``keep`` (a later ``stop()`` ends them)."""
        for name, proc, _ in reversed(self.procs):
            if name in keep:
                continue
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
                if proc.poll() is not None:
                    break
                try:
                    os.killpg(proc.pid, sig)  # the child's own session: its helpers go too
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=self.grace)
                except subprocess.TimeoutExpired:
                    pass


def wait_for_outcome(children: Children, timeout: float, topic: str = OUTCOME_TOPIC) -> dict | None:
    """Listen on an outcome ``topic`` (latched JSON) until it arrives, a child dies or ``timeout`` passes."""
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from std_msgs.msg import String

    from lnn_nav.nodes.sim_node import LATCHED_QOS

    context = Context()
    rclpy.init(args=[], context=context)
    try:
        node = rclpy.create_node("lnn_nav_fly", context=context)
        received: list[String] = []
        node.create_subscription(String, topic, received.append, LATCHED_QOS)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        deadline = time.monotonic() + timeout
        while not received and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
            died = children.dead()
            if died is not None and not received:
                raise SetupError(f"{died} exited before the episode ended:\n{children.log_tail(died)}")
        executor.shutdown()
        node.destroy_node()
        return json.loads(received[0].data) if received else None
    finally:
        context.try_shutdown()


def fly_over_ros(
    world: str,
    seed: int = 0,
    preset: str = "in_distribution",
    model: str | None = None,
    expert: bool = False,
    timeout: float = 300.0,
    max_episode_time: float | None = None,
    camera_size: tuple | None = None,
    log_dir: str | None = None,
    sim_params: dict[str, object] | None = None,
    pilot_params: dict[str, object] | None = None,
    native: bool = False,
) -> dict | None:
    """Fly one episode through the graph; the outcome dict, or None if none came within ``timeout``.

    ``native``: the checkpoint flies in the native controller node (C++ on rcl; ``pilot_params`` do not
    apply) instead of the Python one.

    ``sim_params`` and ``pilot_params`` are ROS parameters for ``sim_node``
    and the pilot node that override their YAML and the arguments above: a
    caller comparing against another run (``lnn-nav eval --ros-episodes``)
    pins the control rate, camera and command limits that run used.

    Raises :class:`SetupError` when the run cannot start or a node dies early.
    The children are always stopped before this returns or raises.
    """
    if expert == (model is not None):
        raise SetupError("give exactly one pilot, --model PATH or --expert")
    if model is not None and not Path(model).is_file():
        raise SetupError(f"model checkpoint not found: {model}")
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env = dict(os.environ)
    logs = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="lnn_nav_fly_"))
    logs.mkdir(parents=True, exist_ok=True)
    children = Children(logs)
    try:
        sim_args: dict[str, object] = {"world": world, "seed": seed, "preset": preset}
        if max_episode_time is not None:
            sim_args["max_episode_time"] = float(max_episode_time)
        if camera_size is not None:
            sim_args["camera_width"], sim_args["camera_height"] = camera_size
        if model is not None:
            sim_args.update(checkpoint_camera(model))
        sim_args.update(sim_params or {})
        children.start("sim_node", node_command("sim_node", config_path("sim.yaml"), sim_args), env)
        if expert:
            pilot = node_command(
                "expert_node",
                config_path("expert.yaml"),
                {"world": world, "seed": seed, "preset": preset, "fly": True, **(pilot_params or {})},
            )
            children.start("expert_node", pilot, env)
        else:
            assert model is not None  # checked on entry: exactly one of model and expert
            try:
                controller_yaml: Path | None = config_path("controller.yaml")
            except SetupError:
                controller_yaml = None
            if native:
                pilot = [sys.executable, "-m", "lnn_nav.nodes.native", *native_pilot(model, controller_yaml, logs)]
                children.start("native_controller", pilot, env)
            else:
                pilot = node_command(
                    "controller",
                    controller_yaml,
                    {"model_path": str(Path(model).resolve()), **SIM_CONTROLLER_PARAMS, **(pilot_params or {})},
                )
                children.start("controller", pilot, env)
        print(
            f"lnn-nav fly: {world} seed {seed} ({preset}), pilot {'expert' if expert else model}; node logs in {logs}",
            file=sys.stderr,
        )
        return wait_for_outcome(children, timeout)
    finally:
        children.stop()


def run_fly(
    world: str,
    seed: int = 0,
    preset: str = "in_distribution",
    model: str | None = None,
    expert: bool = False,
    timeout: float = 300.0,
    max_episode_time: float | None = None,
    camera_size: tuple | None = None,
    log_dir: str | None = None,
    native: bool = False,
) -> int:
    """Fly one episode; print the outcome JSON. Returns 0 on success, 1 on another outcome, 2 on setup errors."""
    return report_episode(
        "lnn-nav fly",
        lambda: fly_over_ros(
            world, seed, preset, model, expert, timeout, max_episode_time, camera_size, log_dir, native=native
        ),
        timeout,
    )


def report_episode(label: str, fly: Callable[[], dict | None], timeout: float) -> int:
    """Run ``fly`` (one episode), print its outcome JSON or why there is none; the command's exit code:
    0 on success, 1 on another outcome or none within ``timeout``, 2 on setup errors, 130 on Ctrl-C."""

    def _terminate(signum, frame):  # SIGTERM: unwind through fly's cleanup, which stops the processes
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        result = fly()
    except SetupError as err:
        print(f"{label}: {err}", file=sys.stderr)
        return EXIT_SETUP
    except KeyboardInterrupt:
        print(f"{label}: interrupted; the processes it started are stopped", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    if result is None:
        print(f"{label}: no outcome within {timeout:g} s (wall clock)", file=sys.stderr)
        return EXIT_FAILURE
    print(json.dumps(result), flush=True)
    return EXIT_SUCCESS if result.get("outcome") == "success" else EXIT_FAILURE
