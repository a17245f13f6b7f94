"""`lnn-nav export`: a trained policy as ONNX and/or TorchScript, with the state as an explicit input/output."""

from __future__ import annotations

import argparse
import sys

HELP = "export a policy checkpoint as ONNX / TorchScript / native runtime weights (image, dt, state -> cmd, state)"
DESCRIPTION = """\
Export one controller step of a policy checkpoint for deployment:
  inputs  image [B, C, H, W] float in [0, 1], dt [B] seconds, state_in [B, S]
          (+ imu [B, 6], goal [B, 4] when the policy uses them)
  outputs cmd [B, 4] (vx, vy, vz, yaw_rate; FLU), state_out [B, S]
Feed state_out back as the next state_in (zeros at the start of a flight).
The ONNX file is checked against PyTorch with onnxruntime unless --no-check.
For a TensorRT engine on a Jetson, see docs/deploy.md.

--format native writes PREFIX.native.safetensors: the packed weights of the
torch-free policy runtime (lnn_nav.kernels.native; CfC and CfC-NCP cores),
its input a uint8 [H, W, C] frame; checked against the PyTorch step unless
--no-check. See docs/deploy.md, "Without torch"."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="policy checkpoint (.safetensors)")
    parser.add_argument(
        "--out",
        required=True,
        metavar="PREFIX",
        help="output path without extension: writes PREFIX.onnx and/or PREFIX.pt (native: PREFIX.native.safetensors)",
    )
    parser.add_argument(
        "--format",
        choices=("onnx", "torchscript", "both", "native"),
        default="both",
        help="what to write (default: %(default)s; native: the torch-free runtime's weights)",
    )
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default: %(default)s)")
    parser.add_argument(
        "--static-batch",
        action="store_true",
        help="fix the batch size at 1 (some TensorRT versions build faster engines)",
    )
    parser.add_argument("--no-check", action="store_true", help="skip the comparison with PyTorch")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lnn_nav.deploy.export import check_onnx, export_onnx, export_torchscript
    from lnn_nav.models import CheckpointError, load_policy

    try:
        policy = load_policy(args.checkpoint)
    except (CheckpointError, FileNotFoundError, ValueError) as exc:
        print(f"lnn-nav export: error: {exc}", file=sys.stderr)
        return 2
    prefix = Path(args.out)
    if args.format == "native":
        return _export_native(policy, prefix, check=not args.no_check)
    try:
        if args.format in ("onnx", "both"):
            path = export_onnx(policy, prefix.with_suffix(".onnx"), args.opset, not args.static_batch)
            print(f"wrote {path}")
            if not args.no_check:
                worst = check_onnx(policy, path)
                print(f"onnxruntime vs PyTorch over 5 chained steps: max |diff| {worst:.2e}")
                if worst > 1e-4:
                    print("lnn-nav export: error: the ONNX graph disagrees with PyTorch", file=sys.stderr)
                    return 1
        if args.format in ("torchscript", "both"):
            print(f"wrote {export_torchscript(policy, prefix.with_suffix('.pt'))}")
    except ValueError as exc:
        print(f"lnn-nav export: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _export_native(policy: object, prefix: object, check: bool) -> int:
    from pathlib import Path

    from lnn_nav.kernels.native import NativeError, check_weights, export_weights, save_weights

    try:
        weights = export_weights(policy)
        path = save_weights(weights, Path(f"{prefix}.native.safetensors"))
        print(f"wrote {path}")
        if check:
            worst = check_weights(policy, weights)
            print(f"native runtime vs PyTorch over 5 chained steps: max |diff| {worst:.2e}")
            if worst > 1e-5:
                print("lnn-nav export: error: the native runtime disagrees with PyTorch", file=sys.stderr)
                return 1
    except (ValueError, NativeError) as exc:
        print(f"lnn-nav export: error: {exc}", file=sys.stderr)
        return 2
    return 0
