"""The `lnn-nav` command: parses arguments and hands off to the package modules.

Every subcommand is a module with the same four names (see :data:`MODULE_COMMANDS`); `lnn-nav info`'s
module is this one, since it reports on the package as a whole (:func:`package_version`,
:func:`share_directory`) and nothing may import this module.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from lnn_nav.share import PACKAGE_NAME, share_directory

PROGRAM_DESCRIPTION = """\
lnn_nav: liquid neural network (CfC/NCP) drone navigation for ROS 2.

A CNN encoder feeds a closed-form continuous-time (CfC) / neural circuit
policy (NCP) recurrent core that turns camera and IMU input into body-frame
velocity commands [vx, vy, vz, yaw_rate] (FLU, REP-103), published as
geometry_msgs/TwistStamped on /cmd_vel.

On a robot, build with colcon and use `ros2 launch lnn_nav ...`; on a
workstation without a ROS install, this command runs the same code."""

# Every subcommand lives in a module that defines ``HELP`` (one line), ``DESCRIPTION``,
# ``add_arguments(parser)`` and ``run(args) -> int``, and keeps heavy imports (torch, rclpy, warp)
# inside ``run`` so `--help` stays fast and works without the optional dependencies.
MODULE_COMMANDS: tuple[tuple[str, str], ...] = (
    ("demo", "lnn_nav.eval.cli_demo"),
    ("sim", "lnn_nav.sim.cli_sim"),
    ("fly", "lnn_nav.nodes.cli_fly"),
    ("export-world", "lnn_nav.sim.cli_export_world"),
    ("info", "lnn_nav.cli"),
    ("collect", "lnn_nav.rollouts.collect"),
    ("dataset", "lnn_nav.data.dataset_cli"),
    ("train", "lnn_nav.train.cli_train"),
    ("dagger", "lnn_nav.train.cli_dagger"),
    ("record", "lnn_nav.nodes.record_cli"),
    ("replay", "lnn_nav.nodes.replay_cli"),
    ("export", "lnn_nav.deploy.export_cli"),
    ("gain", "lnn_nav.deploy.gain_cli"),
    ("eval", "lnn_nav.eval.cli_eval"),
    ("calibrate", "lnn_nav.eval.cli_calibrate"),
    ("report", "lnn_nav.eval.cli_report"),
)

#: Optional dependencies (setup.py's extras): top-level module -> (pip package, extra). A command that
#: needs a missing one ends with what to install; any other missing module is a broken install (raised).
OPTIONAL_DEPENDENCIES: dict[str, tuple[str, str]] = {
    "gymnasium": ("gymnasium", "sim"),
    "warp": ("warp-lang", "sim"),
    "scipy": ("scipy", "sim"),
    "rosbags": ("rosbags", "bags"),
    "matplotlib": ("matplotlib", "plot"),
    "ncps": ("ncps", "bench"),
}

#: ROS 2 client libraries and interface packages by name (besides every ``*_msgs``, ``*_srvs``,
#: ``*_interfaces`` and ``rosidl*``): they come with a ROS 2 install, not from pip extras.
ROS_MODULES = frozenset({"rclpy", "launch", "launch_ros", "ament_index_python", "rosbag2_py"})


def _is_ros_module(top: str) -> bool:
    return top in ROS_MODULES or top.startswith("rosidl") or top.endswith(("_msgs", "_srvs", "_interfaces"))


def missing_dependency_message(command: str | None, module: str) -> str | None:
    """What `lnn-nav COMMAND` says when ``module`` (a dotted name) cannot be found; None when it is
    not an optional dependency (then the install is broken, and the error is raised as it is)."""
    top = module.split(".")[0]
    prefix = f"lnn-nav {command}: error: " if command else "lnn-nav: error: "
    if top in OPTIONAL_DEPENDENCIES:
        package, extra = OPTIONAL_DEPENDENCIES[top]
        name = top if package == top else f"{top} (the {package} package)"
        return f"{prefix}this command needs {name}, which is not installed: pip install 'lnn_nav[{extra}]'"
    if top == "px4_msgs":
        return (
            f"{prefix}this command needs px4_msgs, which is not installed: source a ROS 2 Jazzy workspace "
            "that builds px4_msgs in this shell, or run `make install` with ../shared/ros-extras beside the "
            "source tree (scripts/ros_extras.sh generates it)"
        )
    if _is_ros_module(top):
        return (
            f"{prefix}this command needs {top}, which is not installed: source a ROS 2 Jazzy install in this "
            "shell (source /opt/ros/jazzy/setup.bash), or install the ros-jazzy-* wheels (requirements/base.txt, "
            "`make install`)"
        )
    return None


def package_version() -> str:
    """Installed version of lnn_nav, or a note when running from a bare source tree."""
    try:
        return importlib.metadata.version(PACKAGE_NAME)
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed; running from source)"


# -- `lnn-nav info` (this module is its command module) -----------------------------------------------

HELP = "print versions and which optional parts (ROS, Warp) are usable"
DESCRIPTION = """\
Print package and dependency versions, whether rclpy and Warp import, and
where the share directory is; then, for each checkpoint given, what its header
says: core, inputs, the camera it was trained with, command bounds and gain,
and its training record."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", nargs="*", metavar="CKPT", help=".safetensors checkpoints to describe")


def _probe_import(module: str) -> str:
    """Try an import and say what happened, without letting a failure escape."""
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        return f"not available ({exc})"
    version = getattr(mod, "__version__", None)
    file = getattr(mod, "__file__", None)
    origin = Path(file).parent if file else "built-in"
    return f"ok ({version}, {origin})" if version else f"ok ({origin})"


def run(args: argparse.Namespace) -> int:
    try:
        import torch

        torch_text = f"{torch.__version__} (CUDA available: {torch.cuda.is_available()})"
    except ImportError as exc:
        torch_text = f"not available ({exc})"
    share, how = share_directory()
    rows = [
        ("lnn_nav", package_version()),
        ("python", sys.version.split()[0]),
        ("torch", torch_text),
        ("rclpy", _probe_import("rclpy")),
        ("warp", _probe_import("warp")),
        ("share dir", f"{share} ({how})" if share else how),
    ]
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    status = 0
    for path in args.checkpoint:
        try:
            lines = describe_checkpoint(path)
        except (OSError, ValueError) as err:  # CheckpointError is a ValueError
            print(f"lnn-nav info: error: {path}: {err}", file=sys.stderr)
            status = 2
            continue
        print(f"\ncheckpoint {path}")
        for key, value in lines:
            print(f"  {key:<9}  {value}")
    return status


def describe_checkpoint(path: str) -> list:
    """``(field, text)`` rows of what a checkpoint's header says (no weights loaded)."""
    from lnn_nav.models.checkpoint import read_checkpoint_info
    from lnn_nav.rollouts.flights import DEFAULT_CAMERA_HFOV

    config, meta = read_checkpoint_info(path)
    enc, opts = config.encoder, config.core_options
    inputs = [f"{enc.width}x{enc.height} camera"] + ["goal"] * config.use_goal + ["IMU"] * config.use_imu
    camera = (
        f"{config.camera_hfov_deg:.1f} deg horizontal field of view (from its training bags' CameraInfo)"
        if config.camera_hfov_deg is not None
        else f"not recorded (flown with the simulator's {DEFAULT_CAMERA_HFOV:g} deg)"
    )
    scale = ", ".join(f"{k} {v:g}" for k, v in zip(("vx", "vy", "vz", "yaw rate"), config.command_scale))
    rows = [
        ("core", f"{config.core}" + (f" ({opts['units']} units)" if "units" in opts else "")),
        ("inputs", " + ".join(inputs)),
        ("camera", camera),
        ("commands", f"at most {scale} (m/s, rad/s); output gain {' '.join(f'{g:g}' for g in config.output_gain)}"),
    ]
    if meta:
        trained = []
        if "epoch" in meta:
            trained.append(f"epoch {meta['epoch']}")
        if "val_loss" in meta:
            trained.append(f"validation loss {float(meta['val_loss']):.4f}")
        if meta.get("trained_on"):
            trained.append(f"on {', '.join(map(str, meta['trained_on']))}")
        if "output_gain_of" in meta:
            trained.append(f"gain applied to {meta['output_gain_of']}")
        rows.append(("trained", "; ".join(trained) or "no training record"))
    return rows


# -- the command line -----------------------------------------------------------------------------------


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser; with ``only`` (a MODULE_COMMANDS name), only that command's module is imported.

    Each command module pulls its own dependencies in at import (the expert's defaults for collect,
    ...): `lnn-nav train` should not need the simulator's packages installed, nor wait for them to import.
    """
    parser = argparse.ArgumentParser(
        prog="lnn-nav",
        description=PROGRAM_DESCRIPTION,
        epilog="Run `lnn-nav COMMAND --help` for the options of a command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name, module_name in MODULE_COMMANDS:
        if only is not None and name != only:
            continue
        module = importlib.import_module(module_name)
        command = sub.add_parser(
            name,
            help=module.HELP,
            description=module.DESCRIPTION,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(command)
        command.set_defaults(handler=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # The command is the first word (the top level has only --help and --version).
    first = argv[0] if argv else None
    command = first if first in dict(MODULE_COMMANDS) else None
    try:
        parser = build_parser(only=command)
        args = parser.parse_args(argv)
        handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
        if handler is None:
            parser.print_help()
            return 2
        return handler(args)
    except ModuleNotFoundError as exc:
        message = missing_dependency_message(command, exc.name) if exc.name else None
        if message is None:
            raise
        print(message, file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
