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
  lnn-nav train --data data/ds/forest data/ds/urban --model cfc-ncp --out runs/cfc_ncp
"""


#: Same as lnn_nav.train.bc.MODEL_KINDS (a test keeps them equal); repeated so `--help` needs no torch.
MODEL_KINDS = ("cfc-ncp", "cfc", "ltc", "lstm", "gru", "cnn")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", nargs="+", required=True, metavar="DIR", help="dataset folder(s)")
    parser.add_argument("--model", choices=MODEL_KINDS, default="cfc-ncp", help="recurrent core (default: %(default)s)")
    parser.add_argument("--out", required=True, metavar="DIR", help="run folder")
    parser.add_argument("--epochs", type=int, default=30, help="default: %(default)s")
    parser.add_argument("--batch-size", type=int, default=16, help="sequences in flight (default: %(default)s)")
    parser.add_argument("--window", type=int, default=32, help="truncated-BPTT window, frames (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (default: %(default)s)")
    parser.add_argument("--weight-decay", type=float, default=1e-4, help="default: %(default)s")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="default: %(default)s")
    parser.add_argument(
        "--patience", type=int, default=6, help="early-stopping patience, epochs (default: %(default)s)"
    )
    parser.add_argument("--max-steps-per-epoch", type=int, default=0, help="cap steps per epoch (0: a full pass)")
    parser.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument(
        "--core-options",
        default="{}",
        metavar="JSON",
        help="core options, e.g. '{\"units\": 32}' (default: the factory defaults)",
    )
    parser.add_argument("--no-augment", action="store_true", help="no photometric augmentation")
    parser.add_argument(
        "--augment",
        choices=("basic", "strong"),
        default="basic",
        help="photometric augmentation per sequence: basic (brightness, contrast, colour balance) "
        "or strong (also hue, saturation/grayscale, gamma, light haze, blur; "
        "lnn_nav.train.bc.STRONG_AUGMENT) (default: %(default)s)",
    )
    parser.add_argument(
        "--input-norm",
        choices=("fixed", "frame"),
        default=None,
        help="encoder input normalisation: fixed (ImageNet mean/std) or frame (each frame's own "
        "mean and std, so global brightness/contrast/colour shifts cancel) (default: fixed for a "
        "new encoder, the source's with --init-encoder)",
    )
    parser.add_argument("--use-imu", action="store_true", help="feed the IMU to the core too")
    parser.add_argument("--no-goal", action="store_true", help="do not feed the goal direction/distance")
    parser.add_argument(
        "--steer-weight",
        type=float,
        default=0.0,
        metavar="B",
        help="weight each frame 1 + B * (|vy| + |yaw rate|) of its label, in units of the command "
        "scale: turning frames count more, against a squared loss's pull towards the mean command "
        "(default: %(default)s, the plain mean; the shipped controllers' last fine-tune used 6, "
        "scripts/reproduce.sh)",
    )
    parser.add_argument(
        "--init",
        metavar="CKPT",
        help="start from these weights (e.g. the previous DAgger round), keeping that checkpoint's own "
        "core (--model and --core-options are not used); one trained on "
        "frames of another size continues at the dataset's size, its encoder's bottleneck "
        'resampled (docs/experiments.md: "Training at a finer resolution")',
    )
    parser.add_argument(
        "--init-encoder",
        metavar="CKPT",
        help="start only the camera encoder from this checkpoint and train a new core "
        "(--model, --core-options) and head on it, e.g. a wider NCP on the shipped "
        'controller\'s vision (docs/experiments.md: "A new core on the trained encoder"); not with --init',
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")


def run(args: argparse.Namespace) -> int:
    from lnn_nav.data.dataset import DatasetError
    from lnn_nav.rollouts.options import json_object
    from lnn_nav.train.bc import TrainConfig, train

    try:
        cfg = TrainConfig(
            data=args.data,
            out=args.out,
            model=args.model,
            core_options=json_object(args.core_options, "--core-options"),
            epochs=args.epochs,
            batch_size=args.batch_size,
            window=args.window,
            lr=args.lr,
            weight_decay=args.weight_decay,
            val_fraction=args.val_fraction,
            patience=args.patience,
            seed=args.seed,
            threads=args.threads,
            augment=not args.no_augment,
            augment_profile=args.augment,
            input_norm=args.input_norm,
            use_goal=not args.no_goal,
            use_imu=args.use_imu,
            max_steps_per_epoch=args.max_steps_per_epoch,
            init=args.init,
            init_encoder=args.init_encoder,
            steer_weight=args.steer_weight,
        )
        summary = train(cfg, progress=not args.no_progress)
    except (ValueError, DatasetError, FileNotFoundError) as err:
        print(f"lnn-nav train: error: {err}", file=sys.stderr)
        return 2
    print(
        f"best validation loss {summary['best_val_loss']:.4f} after {summary['epochs']} epochs "
        f"({summary['seconds']:.0f} s): {summary['best']}"
    )
    return 0
