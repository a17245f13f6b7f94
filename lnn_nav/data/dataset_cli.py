"""`lnn-nav dataset`: rosbag2 recordings -> memory-mapped training sequences."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

HELP = "turn rosbag2 recordings into training sequences"
DESCRIPTION = """\
Read rosbag2 recordings (MCAP or SQLite3; a bag directory, a single .mcap/.db3,
or a folder holding many bags) and write training sequences to --out.

Each camera frame (sensor_msgs/Image or CompressedImage, on --image-topic or
its /compressed sibling) takes the latest command (TwistStamped by header
stamp, or Twist by receive time), IMU sample and odometry at or before its
stamp and at most --max-age old: an as-of join, nothing from the future. A
frame without a fresh command is dropped and counted. The goal input is the
body-frame direction and distance from /odom to /goal_pose. Frames are resized
to --size with the filter the controller node uses. Gaps over --max-gap split
sequences; each frame keeps its own Δt.

Prints, per run, the frames/s achieved and, for comparison, the rate of a
plain `rosbags` read (bytes only, no decoding, one process) of up to 8 of the
same bags, measured in the same run after the conversion (so from the same
warm page cache). benchmarks/dataset_throughput.py compares the two in one
process each, interleaved.

Example:
  lnn-nav dataset data/demos/forest data/demos/urban --out data/ds/bc
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "bags", nargs="+", metavar="BAG", help="rosbag2 directories, .mcap/.db3 files, or folders of them"
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="dataset folder to create")
    parser.add_argument(
        "--size", type=int, nargs=2, default=(64, 48), metavar=("W", "H"), help="image size stored (default: 64 48)"
    )
    parser.add_argument("--image-topic", default="/camera/image_raw", help="default: %(default)s")
    parser.add_argument("--command-topic", default="/cmd_vel", help="default: %(default)s")
    parser.add_argument("--imu-topic", default="/imu/data", help="default: %(default)s")
    parser.add_argument("--odom-topic", default="/odom", help="default: %(default)s")
    parser.add_argument("--goal-topic", default="/goal_pose", help="default: %(default)s")
    parser.add_argument(
        "--camera-info-topic",
        default="/camera/camera_info",
        help="sensor_msgs/CameraInfo giving the camera's field of view, which training records in "
        "the checkpoint (optional; default: %(default)s)",
    )
    parser.add_argument("--max-age", type=float, default=0.1, metavar="S", help="default: %(default)s s")
    parser.add_argument("--max-gap", type=float, default=0.5, metavar="S", help="default: %(default)s s")
    parser.add_argument("--workers", type=int, default=2, help="bag-decoding processes (default: %(default)s)")
    parser.add_argument(
        "--skip-bad", action="store_true", help="skip bags that cannot be used (listed at the end) instead of stopping"
    )


def raw_read(bags: Sequence[Path]) -> tuple[int, float]:
    """(messages, seconds) of a plain `rosbags` read of ``bags`` (bytes only, no deserialisation), opening included."""
    from rosbags.rosbag2 import Reader

    started = time.perf_counter()
    count = 0
    for bag in bags:
        with Reader(bag) as reader:
            for _ in reader.messages():
                count += 1
    return count, time.perf_counter() - started


def raw_read_rate(bags: Sequence[Path]) -> float:
    """Messages/s of :func:`raw_read`."""
    count, seconds = raw_read(bags)
    return count / max(seconds, 1e-9)


def reference_sample(bags: Sequence[Path], count: int = 8) -> list[Path]:
    """Up to ``count`` of ``bags``, spread over the list (a folder of demonstrations runs easy to hard)."""
    step = max(1, len(bags) // count)
    return list(bags[::step][:count])


def run(args: argparse.Namespace) -> int:
    from rosbags.rosbag2 import ReaderError
    from tqdm import tqdm

    from lnn_nav.data.bags import open_bag
    from lnn_nav.data.dataset import DatasetConfig, DatasetError, build_dataset, find_bags
    from lnn_nav.data.errors import BagError

    config = DatasetConfig(
        height=args.size[1],
        width=args.size[0],
        image_topic=args.image_topic,
        command_topic=args.command_topic,
        imu_topic=args.imu_topic,
        odom_topic=args.odom_topic,
        goal_topic=args.goal_topic,
        camera_info_topic=args.camera_info_topic,
        max_age=args.max_age,
        max_gap=args.max_gap,
    )
    try:
        bags = find_bags(args.bags)
    except DatasetError as err:
        print(f"lnn-nav dataset: error: {err}", file=sys.stderr)
        return 2
    bar = tqdm(total=len(bags), unit="bag", desc="dataset")

    def progress(stats) -> None:
        bar.update(1)
        bar.set_postfix(kept=stats.frames_kept, dropped=sum(stats.dropped.values()))

    try:
        meta = build_dataset(bags, Path(args.out), config, progress, skip_bad=args.skip_bad, workers=args.workers)
    except (BagError, DatasetError, FileExistsError) as err:
        bar.close()
        print(f"lnn-nav dataset: error: {err}", file=sys.stderr)
        return 2
    bar.close()
    dropped: dict = {}
    for s in meta["stats"]:
        for why, n in s["dropped"].items():
            dropped[why] = dropped.get(why, 0) + n
    frames_in = sum(s["frames_in"] for s in meta["stats"])
    print(
        f"{meta['frames']} frames in {meta['sequences']} sequences from {len(bags)} bags "
        f"({frames_in} camera frames read) -> {args.out}"
    )
    for why, n in sorted(dropped.items()):
        print(f"  dropped {n}: {why}")
    for bag, why in meta["skipped"].items():
        print(f"  skipped {bag}: {why}")
    hfov = meta["camera_hfov_deg"]
    print(
        f"camera: {hfov:.1f} deg horizontal field of view (CameraInfo; training records it in the checkpoint)"
        if hfov is not None
        else "camera: field of view unknown (no CameraInfo in the bags)"
    )
    # Throughput against a plain rosbags read of the same bags (a sample: all their messages, bytes only).
    # Only of intact bags: plain rosbags refuses a recording that needed recovery (a cut MCAP file: "File end
    # magic is invalid"), and bags skipped with --skip-bad were not read at all.
    total_messages, intact = 0, []
    for b in bags:
        if str(b) in meta["skipped"]:
            continue
        try:
            with open_bag(b) as reader:
                total_messages += reader.message_count
                if not reader.recovered:
                    intact.append(b)
        except BagError:
            continue
    rate = total_messages / max(meta["seconds"], 1e-9)
    workers = min(args.workers, len(bags))
    line = (
        f"throughput: {rate:.0f} messages/s with {workers} worker(s) "
        f"({meta['frames'] / max(meta['seconds'], 1e-9):.0f} frames/s, "
        f"{meta['bytes_read'] / 1e6 / max(meta['seconds'], 1e-9):.0f} MB/s)"
    )
    sample = reference_sample(intact)
    try:
        raw = raw_read_rate(sample) if sample else None
    except ReaderError as err:
        raw, why = None, f"plain rosbags read failed: {err}"
    else:
        why = "no intact bag for a plain rosbags read (recovered bags only plain rosbags cannot open)"
    if raw:
        line += (
            f"; plain rosbags read of {len(sample)} of the same bags in one process: {raw:.0f} messages/s "
            f"-> {rate / raw:.0%} of raw"
        )
    else:
        line += f"; {why}"
    print(line)
    return 0 if meta["frames"] else 1
