"""`lnn-nav gain`: a copy of a checkpoint whose commands are sharpened by an output gain."""

from __future__ import annotations

import argparse
import sys

HELP = "copy a checkpoint with an output gain (tanh(g * head) * scale): sharper steering, same envelope"
DESCRIPTION = """\
Write a copy of a policy checkpoint whose output layer is sharpened per
command: cmd = tanh(g * head(y)) * command_scale, for g = (vx, vy, vz, yaw_rate).
The weights are untouched and the commands stay inside the checkpoint's
bounds (command_scale), so the controller node's limits still hold.

Why: behaviour cloning with a squared loss pulls commands towards their mean.
The crash diagnosis of `lnn-nav eval` shows it: the shipped controllers
flew straight, or turned away too gently, past obstacles the expert would
have turned away from at full rate. A gain above 1 gives some of that back.
To choose it per checkpoint, in closed loop on calibration worlds (not the
held-out ones the benchmark flies), use `lnn-nav calibrate`. By hand:

  lnn-nav gain models/cfc_ncp.safetensors --gain 1 1.3 1 1.3 --out runs/cfc_ncp_g13.safetensors
  lnn-nav eval --model runs/cfc_ncp_g13.safetensors --world forest urban --episodes 100

Every path that runs the policy (controller node, eval, export, fused
kernels) applies the gain; training from the copy (--init) trains through it."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="policy checkpoint (.safetensors)")
    parser.add_argument(
        "--gain",
        type=float,
        nargs=4,
        required=True,
        metavar=("VX", "VY", "VZ", "YAW"),
        help="per-command gain, each > 0 (1 1 1 1: unchanged)",
    )
    parser.add_argument("--out", required=True, metavar="PATH", help="checkpoint to write (.safetensors)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lnn_nav.models import CheckpointError
    from lnn_nav.models.checkpoint import with_output_gain

    if Path(args.out).resolve() == Path(args.checkpoint).resolve():
        print("lnn-nav gain: error: --out must differ from the checkpoint (keep the original)", file=sys.stderr)
        return 2
    try:
        out = with_output_gain(args.checkpoint, args.out, args.gain)
    except (CheckpointError, FileNotFoundError, ValueError) as exc:
        print(f"lnn-nav gain: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"wrote {out} (output gain vx {args.gain[0]:g}, vy {args.gain[1]:g}, vz {args.gain[2]:g}, "
        f"yaw rate {args.gain[3]:g})"
    )
    return 0
