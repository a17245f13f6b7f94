"""The `lnn-nav` command: parses arguments and hands off to the package modules."""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

PACKAGE_NAME = "lnn_nav"

DESCRIPTION = """\
lnn_nav: liquid neural network (CfC/NCP) drone navigation for ROS 2.

A CNN encoder feeds a closed-form continuous-time (CfC) / neural circuit
policy (NCP) recurrent core that turns camera and IMU input into body-frame
velocity commands [vx, vy, vz, yaw_rate] (FLU, REP-103), published as
geometry_msgs/TwistStamped on /cmd_vel.

On a robot, build with colcon and use `ros2 launch lnn_nav ...`; on a
workstation without a ROS install, this command runs the same code."""

# Subcommands that live in their own modules. Each module defines ``HELP``
# (one line), ``DESCRIPTION``, ``add_arguments(parser)`` and ``run(args) -> int``,
# and keeps heavy imports (torch, rclpy, warp) inside ``run`` so `--help` stays fast.
MODULE_COMMANDS: tuple[tuple[str, str], ...] = (
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

# Subcommands that arrive with later work. Listed so users know what is
# planned; deliberately not registered, so none of them pretends to run.
PLANNED_COMMANDS = (
    ("record", "record sensor and command topics to a rosbag2"),
    ("replay", "replay a rosbag2 through the controller"),
    ("collect", "collect expert demonstrations in the simulator"),
    ("dataset", "turn rosbag2 recordings into training sequences"),
    ("train", "imitation training (behaviour cloning)"),
    ("dagger", "DAgger rounds with the privileged expert"),
    ("eval", "closed-loop benchmark and report"),
)


def _planned() -> list[tuple[str, str]]:
    registered = {name for name, _ in MODULE_COMMANDS}
    return [(name, text) for name, text in PLANNED_COMMANDS if name not in registered]


def _epilog() -> str:
    planned = _planned()
    lines = []
    if planned:
        width = max(len(name) for name, _ in planned)
        lines.append("coming with later releases (not yet available):")
        lines += [f"  {name:<{width}}  {text}" for name, text in planned]
        lines.append("")
    lines.append("Run `lnn-nav COMMAND --help` for the options of a command.")
    return "\n".join(lines)


def package_version() -> str:
    """Installed version of lnn_nav, or a note when running from a bare source tree."""
    try:
        return importlib.metadata.version(PACKAGE_NAME)
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed; running from source)"


def share_directory() -> tuple[Path | None, str]:
    """Where launch files, configs and checkpoints are found, and how it was found."""
    try:
        from ament_index_python.packages import (
            PackageNotFoundError,
            get_package_share_directory,
        )
    except ImportError:
        pass
    else:
        try:
            return Path(get_package_share_directory(PACKAGE_NAME)), "ament index"
        except (PackageNotFoundError, OSError):
            # OSError: AMENT_PREFIX_PATH unset, i.e. no ROS workspace sourced.
            pass
    prefix_share = Path(sys.prefix) / "share" / PACKAGE_NAME
    if (prefix_share / "package.xml").is_file():
        return prefix_share, "python prefix"
    source_root = Path(__file__).resolve().parent.parent
    if (source_root / "package.xml").is_file():
        return source_root, "source tree"
    return None, "not found"


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


def cmd_info(args: argparse.Namespace) -> int:
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


def cmd_demo(args: argparse.Namespace) -> int:
    from lnn_nav.eval.demo import run_demo

    return int(run_demo(out_dir=Path(args.out), threads=args.threads))


def cmd_sim(args: argparse.Namespace) -> int:
    from lnn_nav.sim.cli_sim import run_sim

    return run_sim(args.world, args.seed, args.preset, Path(args.out), pictures=not args.no_pictures)


def cmd_fly(args: argparse.Namespace) -> int:
    if args.px4:
        if args.expert:
            print("lnn-nav fly: --px4 flies a controller checkpoint (--model), not the expert", file=sys.stderr)
            return 2
        from lnn_nav.nodes.fly_px4 import run_fly_px4

        return run_fly_px4(
            args.world,
            args.seed,
            args.preset,
            args.model,
            bundle=args.px4_bundle,
            timeout=args.timeout,
            max_episode_time=args.max_episode_time,
            log_dir=args.log_dir,
        )
    from lnn_nav.nodes.fly import run_fly

    return run_fly(
        args.world,
        seed=args.seed,
        preset=args.preset,
        model=args.model,
        expert=args.expert,
        timeout=args.timeout,
        max_episode_time=args.max_episode_time,
        log_dir=args.log_dir,
    )


def cmd_export_world(args: argparse.Namespace) -> int:
    from lnn_nav.sim.presets import make_world
    from lnn_nav.sim.sdf_export import export_world

    overrides = {}
    if args.size is not None:
        if args.world != "forest":
            print(
                "lnn-nav export-world: error: --size applies to forest worlds only "
                "(urban worlds are sized by their block grid)",
                file=sys.stderr,
            )
            return 2
        overrides["size"] = tuple(args.size)
    try:
        world = make_world(args.world, args.seed, args.preset, **overrides)
        sdf_path, json_path = export_world(world, args.out)
    except ValueError as exc:
        print(f"lnn-nav export-world: error: {exc}", file=sys.stderr)
        return 2
    n = len(world.cylinders) + len(world.boxes) + len(world.spheres)
    print(f"wrote {sdf_path} ({n} obstacles, world '{sdf_path.stem}') and {json_path}")
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser; with ``only`` (a MODULE_COMMANDS name), that one module command's module is imported.

    Each module command pulls its own dependencies in at import (the simulator
    for collect, torch for train, ...): `lnn-nav train` should not need the
    simulator's packages installed, nor wait for them to import.
    """
    parser = argparse.ArgumentParser(
        prog="lnn-nav",
        description=DESCRIPTION,
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    demo = sub.add_parser(
        "demo",
        help="run the end-to-end demo and write its outputs",
        description="Run the end-to-end demo and write its outputs to --out.",
    )
    demo.add_argument(
        "--out",
        default="reports/demo",
        metavar="DIR",
        help="output folder (default: %(default)s)",
    )
    demo.add_argument(
        "--threads",
        type=_positive_int,
        default=1,
        metavar="N",
        help="torch intra-op threads (default: %(default)s)",
    )
    demo.set_defaults(handler=cmd_demo)

    sim = sub.add_parser(
        "sim",
        help="fly the privileged expert in embedded-simulator worlds; save maps and camera GIFs",
        description="Fly the privileged expert through seeded forest or urban worlds of the "
        "embedded simulator (no ROS needed) and write a top-down map, an onboard-camera GIF "
        "and a JSON line per episode. It flies the expert at its default tuning (ExpertConfig: "
        "3 m/s); `lnn-nav collect` records the demonstrating expert of each world kind. A trained "
        "controller flies with `lnn-nav fly` (one episode over the ROS 2 graph) or `lnn-nav eval` "
        "(many, in-process).",
    )
    sim.add_argument("--world", choices=("forest", "urban"), default="forest", help="world kind (default: %(default)s)")
    sim.add_argument("--seed", type=int, nargs="+", default=[0], metavar="N", help="world seed(s) (default: 0)")
    sim.add_argument(
        "--preset",
        default="in_distribution",
        metavar="NAME",
        help="conditions preset: in_distribution, fall, winter, dusk, fog, dense_forest, "
        "gusty_wind, camera_noise (default: %(default)s)",
    )
    sim.add_argument("--out", default="reports/sim", metavar="DIR", help="output folder (default: %(default)s)")
    sim.add_argument("--no-pictures", action="store_true", help="skip the map and GIF (faster)")
    sim.set_defaults(handler=cmd_sim)

    fly = sub.add_parser(
        "fly",
        help="fly one closed-loop episode through the ROS 2 graph (sim node + controller or expert)",
        description="Start the simulator node and a pilot (the controller node with --model, or the "
        "privileged expert node with --expert) as separate ROS 2 processes, fly one episode and "
        "print its outcome as JSON. Exit code 0 on success, 1 on collision, out of bounds or "
        "timeout, 2 when the run cannot start. Sets ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST for "
        "itself and the nodes unless the environment already sets it; ROS_DOMAIN_ID is left as is.",
    )
    fly.add_argument("--world", choices=("forest", "urban"), default="forest", help="world kind (default: %(default)s)")
    pilot = fly.add_mutually_exclusive_group(required=True)
    pilot.add_argument("--model", metavar="PATH", help="controller checkpoint (.safetensors)")
    pilot.add_argument("--expert", action="store_true", help="fly the privileged expert instead of a model")
    fly.add_argument("--seed", type=int, default=0, metavar="N", help="world seed (default: %(default)s)")
    fly.add_argument(
        "--preset",
        "--ood",
        dest="preset",
        default="in_distribution",
        metavar="PRESET",
        help="conditions preset: in_distribution, fall, winter, dusk, fog, dense_forest, "
        "gusty_wind, camera_noise (default: %(default)s)",
    )
    fly.add_argument(
        "--px4",
        action="store_true",
        help="PX4 in the loop: PX4 SITL (SIH) flies the vehicle, px4_world_node renders the camera from "
        "PX4's odometry and judges the episode, the controller flies through px4_offboard_node "
        "(docs/gazebo_px4.md); needs the PX4 SIH bundle and px4_msgs",
    )
    fly.add_argument(
        "--px4-bundle",
        metavar="DIR",
        default=None,
        help="the ros-extras folder with PX4 SIH and the XRCE-DDS agent (default: $LNN_NAV_ROS_EXTRAS, else "
        "../shared/ros-extras beside the source tree)",
    )
    fly.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        metavar="S",
        help="wall-clock seconds to wait for the outcome (default: %(default)s)",
    )
    fly.add_argument(
        "--max-episode-time",
        type=float,
        default=None,
        metavar="S",
        help="simulated seconds (with --px4: seconds from takeoff) before the episode ends as timeout "
        "(default: config/sim.yaml, 60)",
    )
    fly.add_argument(
        "--log-dir",
        metavar="DIR",
        default=None,
        help="where the nodes' logs (and PX4's working directory) go (default: a new temporary folder)",
    )
    fly.set_defaults(handler=cmd_fly)

    export = sub.add_parser(
        "export-world",
        help="export a generated world as an SDF file for Gazebo (gz sim) / PX4 SITL",
        description="Generate a seeded forest or urban world and write it as an SDFormat 1.9 world "
        "for gz sim (every obstacle a static model, season colours, sun, fog, PX4's sensor systems) "
        "plus the WorldSpec as JSON next to it (same name, .json). The world inside is named after "
        "the file, as PX4_GZ_WORLD expects. Gazebo itself is not needed to export.",
    )
    export.add_argument("--world", choices=("forest", "urban"), required=True, help="world kind")
    export.add_argument("--seed", type=int, default=0, metavar="N", help="world seed (default: %(default)s)")
    export.add_argument(
        "--preset",
        default="in_distribution",
        metavar="NAME",
        help="conditions preset: in_distribution, fall, winter, dusk, fog, dense_forest, "
        "gusty_wind, camera_noise (default: %(default)s)",
    )
    export.add_argument(
        "--size",
        type=float,
        nargs=2,
        default=None,
        metavar=("X", "Y"),
        help="forest only: patch size in metres (default: the generator's 100 60)",
    )
    export.add_argument("--out", required=True, metavar="PATH.sdf", help="SDF file to write")
    export.set_defaults(handler=cmd_export_world)

    info = sub.add_parser(
        "info",
        help="print versions and which optional parts (ROS, Warp) are usable",
        description="Print package and dependency versions, whether rclpy and "
        "Warp import, and where the share directory is; then, for each checkpoint "
        "given, what its header says: core, inputs, the camera it was trained "
        "with, command bounds and gain, and its training record.",
    )
    info.add_argument("checkpoint", nargs="*", metavar="CKPT", help=".safetensors checkpoints to describe")
    info.set_defaults(handler=cmd_info)

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
    parser = build_parser(only=first if first in dict(MODULE_COMMANDS) else None)
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    return handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
