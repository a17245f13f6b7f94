"""`lnn-nav dagger`: DAgger rounds with the privileged expert in the embedded simulator."""

from __future__ import annotations

import argparse
import sys

from lnn_nav.sim.kinds import RANDOMIZATION_PROFILES, WORLD_KINDS

HELP = "DAgger: the learner flies, the expert labels, aggregate, retrain (N rounds)"
DESCRIPTION = """\
Improve a behaviour-cloned controller with DAgger. Each round the current
controller flies --episodes fresh training worlds per world kind in the
embedded simulator while the privileged expert labels every visited state;
the flights are written as rosbag2 (--out/round_N/bags), converted to a dataset
(--out/round_N/dataset) and the controller is retrained on the demonstrations
plus every round so far, starting from its previous weights
(--out/round_N/run/best.safetensors). Worlds come from training seeds only
(300000+ forest, 400000+ urban), never the evaluation seeds.

Example:
  lnn-nav dagger --init runs/bc/best.safetensors --data data/ds/forest data/ds/urban \\
      --rounds 3 --episodes 40 --out runs/dagger
"""


#: Option (argparse ``dest``) -> the lnn_nav.train.dagger.DaggerConfig field it sets. These options
#: default to None, so an option not given leaves the field at DaggerConfig's default: the defaults
#: live there once; the help states them, and a test keeps the two equal.
CONFIG_FIELDS: dict[str, str] = {
    "rounds": "rounds",
    "world": "worlds",
    "epochs": "epochs",
    "workers": "workers",
    "envs": "envs",
    "randomize": "randomization",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--init", required=True, metavar="CKPT", help="behaviour-cloned checkpoint to start from")
    parser.add_argument("--data", nargs="+", required=True, metavar="DIR", help="demonstration dataset folder(s)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--rounds", type=int, default=None, help="default: 2")
    parser.add_argument(
        "--episodes",
        type=int,
        nargs="+",
        default=None,
        metavar="N",
        help="roll-outs per round: one number for every world kind, or one per --world entry (default: 40)",
    )
    parser.add_argument(
        "--world", nargs="+", choices=WORLD_KINDS, default=None, help="world kinds to fly (default: all)"
    )
    parser.add_argument("--epochs", type=int, default=None, help="training epochs per round (default: 4)")
    parser.add_argument("--workers", type=int, default=None, help="roll-out worker processes (default: 2)")
    parser.add_argument("--envs", type=int, default=None, help="drones flown at once (default: 16)")
    parser.add_argument(
        "--train-options",
        default="{}",
        metavar="JSON",
        help='TrainConfig overrides, e.g. \'{"lr": 1e-3, "threads": 2}\'',
    )
    parser.add_argument(
        "--expert-options",
        default="{}",
        metavar="JSON",
        help="ExpertConfig fields of the labelling expert on top of the demonstrating one, e.g. "
        "'{\"yaw_deadband\": 0.15}' (rad of heading error labelled as a sideways correction "
        "rather than a turn); under a world kind's key for that kind only, e.g. "
        '\'{"urban": {"yaw_lookahead": 6.0}}\'',
    )
    parser.add_argument(
        "--randomize",
        choices=RANDOMIZATION_PROFILES,
        default=None,
        metavar="PROFILE",
        help="randomisation profile of the roll-outs' conditions, as `lnn-nav collect --randomize`: "
        "use the one the demonstrations were collected with (default: narrow)",
    )
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from lnn_nav.data.errors import BagError
    from lnn_nav.models.errors import CheckpointError
    from lnn_nav.rollouts.options import json_object
    from lnn_nav.train.dagger import DaggerConfig, run_dagger

    given = {field: getattr(args, dest) for dest, field in CONFIG_FIELDS.items() if getattr(args, dest) is not None}
    try:
        cfg = DaggerConfig(
            init=args.init,
            data=args.data,
            out=args.out,
            train_overrides=json_object(args.train_options, "--train-options"),
            expert_overrides=json_object(args.expert_options, "--expert-options"),
            **given,
        )
        if args.episodes is not None:
            if len(args.episodes) not in (1, len(cfg.worlds)):
                raise ValueError("give one --episodes number, or one per --world entry")
            episodes = dict(zip(cfg.worlds, args.episodes)) if len(args.episodes) > 1 else args.episodes[0]
            cfg = replace(cfg, episodes=episodes)
        result = run_dagger(cfg, progress=not args.no_progress)
    except (ValueError, BagError, CheckpointError, FileNotFoundError) as err:
        print(f"lnn-nav dagger: error: {err}", file=sys.stderr)
        return 2
    print(f"final controller: {result['final']}")
    return 0
