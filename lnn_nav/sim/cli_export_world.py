"""`lnn-nav export-world`: a generated world as an SDFormat file for Gazebo (gz sim) / PX4 SITL."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from lnn_nav.sim.kinds import PRESET_NAMES, WORLD_KINDS

HELP = "export a generated world as an SDF file for Gazebo (gz sim) / PX4 SITL"
DESCRIPTION = """\
Generate a seeded forest or urban world and write it as an SDFormat 1.9 world
for gz sim (every obstacle a static model, season colours, sun, fog, PX4's
sensor systems) plus the WorldSpec as JSON next to it (same name, .json). The
world inside is named after the file, as PX4_GZ_WORLD expects. Gazebo itself
is not needed to export."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--world", choices=WORLD_KINDS, required=True, help="world kind")
    parser.add_argument("--seed", type=int, default=0, metavar="N", help="world seed (default: %(default)s)")
    parser.add_argument(
        "--preset",
        default="in_distribution",
        metavar="NAME",
        help=f"conditions preset: {', '.join(PRESET_NAMES)} (default: %(default)s)",
    )
    parser.add_argument(
        "--size",
        type=float,
        nargs=2,
        default=None,
        metavar=("X", "Y"),
        help="forest only: patch size in metres (default: the generator's 100 60)",
    )
    parser.add_argument("--out", required=True, metavar="PATH.sdf", help="SDF file to write")


def run(args: argparse.Namespace) -> int:
    from lnn_nav.sim.presets import make_world
    from lnn_nav.sim.sdf_export import export_world

    overrides: dict[str, Any] = {}
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
