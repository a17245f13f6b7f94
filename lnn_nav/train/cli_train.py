"""`lnn-nav train`: behaviour cloning from dataset folders."""

from __future__ import annotations

import argparse
import sys

HELP = "imitation training (behaviour cloning, truncated BPTT) from dataset folders"
DESCRIPTION = """\
Train a controller by behaviour cloning on dataset folders written by
`lnn-nav dataset`. Sequences are split into training and validation flights
(--val-fraction, whole sequences); truncated BPTT over --window frames with the
recurrent state carried between windows; per-frame Δt fed to the core;
photometric augmentation fixed per sequence plus pixel noise; AdamW with
warm-up and cosine decay; early stopping on the validation loss.

Writes to --out: best.safetensors and last.safetensors (load with
`lnn-nav fly --model`), metrics.csv, tensorboard/ (`tensorboard --logdir`),
train_config.json and resume.pt. Running the same command again with the same
--out resumes where it stopped (more --epochs continue a finished run).

Several processes or GPUs: torchrun --nproc_per_node N -m lnn_nav.cli train ...
(DistributedDataParallel; gloo on CPU, NCCL on GPUs).

Example:
  lnn-nav train --data data/ds/forest data/ds/urban --core cfc-ncp --out runs/cfc_ncp
"""


#: Same as lnn_nav.train.bc.MODEL_KINDS (a test keeps them equal); repeated so `--help` needs no torch.
MODEL_KINDS = ("cfc-ncp", "cfc", "ltc", "lstm", "gru", "cnn")
#: Same as lnn_nav.train.bc.AUGMENT_PROFILES (a test keeps them equal), for the same reason.
AUGMENT_PROFILES = ("basic", "strong", "mixed", "dim")

#: Option (argparse ``dest``) -> the lnn_nav.train.bc.TrainConfig field it sets. These options default
#: to None, so an option not given leaves the field at TrainConfig's default: the defaults live there
#: once; the help states them, and a test keeps the two equal.
CONFIG_FIELDS: dict[str, str] = {
    "core": "model",
    "epochs": "epochs",
    "batch_size": "batch_size",
    "window": "window",
    "lr": "lr",
    "weight_decay": "weight_decay",
    "val_fraction": "val_fraction",
    "patience": "patience",
    "max_steps_per_epoch": "max_steps_per_epoch",
    "train_seed": "seed",
    "threads": "threads",
    "augment": "augment_profile",
    "input_norm": "input_norm",
    "input_norm_floor": "input_norm_floor",
    "steer_weight": "steer_weight",
    "init": "init",
    "init_encoder": "init_encoder",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", nargs="+", required=True, metavar="DIR", help="dataset folder(s)")
    parser.add_argument("--core", choices=MODEL_KINDS, default=None, help="recurrent core kind (default: cfc-ncp)")
    parser.add_argument("--out", required=True, metavar="DIR", help="run folder")
    parser.add_argument("--epochs", type=int, default=None, help="default: 30")
    parser.add_argument("--batch-size", type=int, default=None, help="sequences in flight (default: 16)")
    parser.add_argument("--window", type=int, default=None, help="truncated-BPTT window, frames (default: 32)")
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate (default: 0.002)")
    parser.add_argument("--weight-decay", type=float, default=None, help="default: 0.0001")
    parser.add_argument("--val-fraction", type=float, default=None, help="default: 0.1")
    parser.add_argument("--patience", type=int, default=None, help="early-stopping patience, epochs (default: 6)")
    parser.add_argument(
        "--max-steps-per-epoch", type=int, default=None, help="cap steps per epoch (default: 0, a full pass)"
    )
    parser.add_argument(
        "--train-seed",
        type=int,
        default=None,
        metavar="N",
        help="seed of the training's randomness: initial weights, validation split, batch order, "
        "augmentation (default: 0; world seeds are `collect --first-seed`)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: 0, torch's default)")
    parser.add_argument(
        "--core-options",
        default=None,
        metavar="JSON",
        help="core options, e.g. '{\"units\": 32}' (default: the factory defaults)",
    )
    parser.add_argument("--no-augment", action="store_true", help="no photometric augmentation")
    parser.add_argument(
        "--augment",
        choices=AUGMENT_PROFILES,
        default=None,
        help="photometric augmentation per sequence: basic (brightness, contrast, colour balance) "
        "or strong (also hue, saturation/grayscale, gamma, light haze, blur; "
        "lnn_nav.train.bc.STRONG_AUGMENT) or mixed (strong on half the sequences, basic on the rest) "
        "or dim (mixed, with a quarter of the sequences darkened to dusk: low exposure and contrast, "
        "more sensor noise, a warm or cool cast; lnn_nav.train.bc.DIM_AUGMENT) "
        "(default: basic)",
    )
    parser.add_argument(
        "--input-norm",
        choices=("fixed", "frame"),
        default=None,
        help="encoder input normalisation: fixed (ImageNet mean/std) or frame (each frame's own "
        "mean and std, so global brightness/contrast/colour shifts cancel) (default: fixed for a "
        "new encoder, the source's with --init-encoder)",
    )
    parser.add_argument(
        "--input-norm-floor",
        type=float,
        default=None,
        metavar="S",
        help="with --input-norm frame: the smallest spread a frame is divided by, in [0, 1] pixel units; "
        "flatter frames (dusk, fog) are scaled by S instead, so their noise is not amplified to unit "
        "scale (default: 0.02, or the source's with --init-encoder; only 0.02 takes the C++ encoder, "
        "others run the PyTorch one)",
    )
    parser.add_argument("--use-imu", action="store_true", help="feed the IMU to the core too")
    parser.add_argument("--no-goal", action="store_true", help="do not feed the goal direction/distance")
    parser.add_argument(
        "--steer-weight",
        type=float,
        default=None,
        metavar="B",
        help="weight each frame 1 + B * (|vy| + |yaw rate|) of its label, in units of the command "
        "scale: turning frames count more, against a squared loss's pull towards the mean command "
        "(default: 0.0, the plain mean; the shipped controllers' last fine-tune used 6, "
        "scripts/reproduce.sh)",
    )
    parser.add_argument(
        "--init",
        metavar="CKPT",
        help="start from these weights (e.g. the previous DAgger round), keeping that checkpoint's own "
        "core (--core and --core-options are not used); one trained on "
        "frames of another size continues at the dataset's size, its encoder's bottleneck "
        'resampled (docs/experiments.md: "Training at a finer resolution")',
    )
    parser.add_argument(
        "--init-encoder",
        metavar="CKPT",
        help="start only the camera encoder from this checkpoint and train a new core "
        "(--core, --core-options) and head on it, e.g. a wider NCP on the shipped "
        'controller\'s vision (docs/experiments.md: "A new core on the trained encoder"); not with --init',
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")


def run(args: argparse.Namespace) -> int:
    from lnn_nav.data.dataset import DatasetError
    from lnn_nav.rollouts.options import json_object
    from lnn_nav.train.bc import TrainConfig, train

    given = {field: getattr(args, dest) for dest, field in CONFIG_FIELDS.items() if getattr(args, dest) is not None}
    try:
        if args.core_options is not None:
            given["core_options"] = json_object(args.core_options, "--core-options")
        # The switches turn a TrainConfig default off (augment, use_goal) or on (use_imu).
        if args.no_augment:
            given["augment"] = False
        if args.no_goal:
            given["use_goal"] = False
        if args.use_imu:
            given["use_imu"] = True
        cfg = TrainConfig(data=args.data, out=args.out, **given)
        summary = train(cfg, progress=not args.no_progress)
    except (ValueError, DatasetError, FileNotFoundError) as err:
        print(f"lnn-nav train: error: {err}", file=sys.stderr)
        return 2
    print(
        f"best validation loss {summary['best_val_loss']:.4f} after {summary['epochs']} epochs "
        f"({summary['seconds']:.0f} s): {summary['best']}"
    )
    return 0
