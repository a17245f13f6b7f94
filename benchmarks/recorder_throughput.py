"""Recorder throughput: is `lnn-nav record` lossless for a drone's camera and IMU?

A publisher process sends 320x240 rgb8 ``sensor_msgs/Image`` at 30 Hz on
/camera/image_raw and ``sensor_msgs/Imu`` at 200 Hz on /imu/data, each with
its sequence number in ``header.frame_id``; the recorder (`lnn-nav record`)
runs in another process. After the publisher is done (every reliable message
acknowledged) the recorder gets SIGINT, and the bag is read back: written vs
published per topic, sequence gaps and duplicates, the rates the publisher
achieved, and the recorder's CPU time and peak memory.

    python benchmarks/recorder_throughput.py                   # 30 s
    nice -n 10 python benchmarks/recorder_throughput.py --duration 600   # the 10-minute check

Exit code 0 when nothing was lost. Discovery is kept on loopback
(ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST) with a random ROS_DOMAIN_ID unless
the environment sets them.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGE_TOPIC, IMU_TOPIC = "/camera/image_raw", "/imu/data"
WIDTH, HEIGHT = 320, 240


def publish(duration: float, best_effort: bool, report: Path) -> int:
    """The publisher process: camera and IMU at their rates for ``duration`` s, counts to ``report``."""
    import rclpy
    from rclpy.duration import Duration
    from rclpy.qos import QoSProfile, qos_profile_sensor_data
    from sensor_msgs.msg import Image, Imu

    rclpy.init()
    node = rclpy.create_node("throughput_publisher")
    qos = qos_profile_sensor_data if best_effort else QoSProfile(depth=100)
    pub_image = node.create_publisher(Image, IMAGE_TOPIC, qos)
    pub_imu = node.create_publisher(Imu, IMU_TOPIC, qos)
    deadline = time.monotonic() + 30.0
    while not (pub_image.get_subscription_count() and pub_imu.get_subscription_count()):
        if time.monotonic() > deadline:
            print("publisher: the recorder did not subscribe within 30 s", file=sys.stderr)
            return 2
        time.sleep(0.05)
    time.sleep(0.5)  # let discovery settle on both sides

    image = Image(height=HEIGHT, width=WIDTH, encoding="rgb8", step=WIDTH * 3)
    image.header.frame_id = "0"
    imu = Imu()
    imu.linear_acceleration.z = 9.81
    counts = {IMAGE_TOPIC: 0, IMU_TOPIC: 0}
    start = time.monotonic()
    late_max = 0.0
    while True:
        due_image = start + counts[IMAGE_TOPIC] / 30.0
        due_imu = start + counts[IMU_TOPIC] / 200.0
        due = min(due_image, due_imu)
        if due >= start + duration:
            break
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        else:
            late_max = max(late_max, now - due)
        stamp = node.get_clock().now().to_msg()
        if due_image <= due_imu:
            image.header.stamp, image.header.frame_id = stamp, str(counts[IMAGE_TOPIC])
            # A fresh random frame each time: incompressible (the worst case for compression,
            # where a repeated frame would let zstd deduplicate within a chunk).
            image.data = os.urandom(WIDTH * HEIGHT * 3)
            pub_image.publish(image)
            counts[IMAGE_TOPIC] += 1
        else:
            imu.header.stamp, imu.header.frame_id = stamp, str(counts[IMU_TOPIC])
            pub_imu.publish(imu)
            counts[IMU_TOPIC] += 1
    elapsed = time.monotonic() - start
    acked = all(p.wait_for_all_acked(Duration(seconds=10)) for p in (pub_image, pub_imu))
    report.write_text(json.dumps({"counts": counts, "elapsed": elapsed, "late_max": late_max, "acked": acked}))
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


def _proc_usage(pid: int) -> dict[str, float]:
    """CPU seconds and peak resident memory (MiB) of a live process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    peak = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1]) / 1024
    return {"cpu_s": cpu, "peak_rss_mib": peak}


def check_bag(path: Path, published: dict[str, int]) -> dict[str, dict[str, int]]:
    """Per topic: written, lost (sequence numbers missing), duplicated."""
    from lnn_nav.data import open_bag

    result = {}
    with open_bag(path) as bag:
        for topic, sent in published.items():
            seen = [int(m.message.header.frame_id) for m in bag.messages([topic])]
            unique = set(seen)
            result[topic] = {
                "published": sent,
                "written": len(seen),
                "lost": len(set(range(sent)) - unique),
                "duplicates": len(seen) - len(unique),
            }
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of publishing (default: %(default)s)")
    parser.add_argument("--best-effort", action="store_true", help="publish with sensor-data QoS (best effort)")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    parser.add_argument("--compression", default="none", help="recorder compression (default: %(default)s)")
    parser.add_argument("--keep", metavar="DIR", help="keep the bag in DIR/bag (default: a temporary folder)")
    parser.add_argument("--role", choices=("bench", "publisher"), default="bench", help=argparse.SUPPRESS)
    parser.add_argument("--report", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "publisher":
        return publish(args.duration, args.best_effort, Path(args.report))

    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 101)))
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="recorder_throughput_"))
    work.mkdir(parents=True, exist_ok=True)
    bag, report = work / "bag", work / "published.json"
    recorder = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lnn_nav.cli",
            "record",
            IMAGE_TOPIC,
            IMU_TOPIC,
            "-o",
            str(bag),
            "-s",
            args.storage,
            "--compression",
            args.compression,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        publisher = subprocess.run(
            [sys.executable, __file__, "--role", "publisher", "--duration", str(args.duration), "--report", str(report)]
            + (["--best-effort"] if args.best_effort else []),
            cwd=ROOT,
            timeout=args.duration + 120,
        )
        time.sleep(0.5)
        usage = _proc_usage(recorder.pid)
    finally:
        recorder.send_signal(signal.SIGINT)
        out, err = recorder.communicate(timeout=120)
    if publisher.returncode != 0 or recorder.returncode != 0:
        print(f"publisher exit {publisher.returncode}, recorder exit {recorder.returncode}\n{err[-3000:]}")
        return 2
    sent = json.loads(report.read_text())
    rows = check_bag(bag, sent["counts"])
    size = sum(f.stat().st_size for f in bag.iterdir())

    print(
        f"recorder throughput: {args.duration:g} s, 320x240 rgb8 @30 Hz + Imu @200 Hz, "
        f"{'best effort' if args.best_effort else 'reliable'}, {args.storage}, compression {args.compression}"
    )
    print(f"{'topic':<20}{'published':>10}{'written':>10}{'lost':>7}{'dup':>6}{'rate Hz':>10}")
    for topic, row in rows.items():
        rate = row["published"] / sent["elapsed"]
        print(
            f"{topic:<20}{row['published']:>10}{row['written']:>10}{row['lost']:>7}{row['duplicates']:>6}{rate:>10.1f}"
        )
    print(
        f"bag {size / 2**20:.0f} MiB ({size / 2**20 / sent['elapsed']:.1f} MiB/s); recorder CPU "
        f"{usage['cpu_s'] / sent['elapsed'] * 100:.0f}% of a core, peak RSS {usage['peak_rss_mib']:.0f} MiB; "
        f"publisher at most {sent['late_max'] * 1000:.1f} ms behind schedule, all acked: {sent['acked']}"
    )
    lossless = all(r["lost"] == 0 and r["duplicates"] == 0 and r["written"] == r["published"] for r in rows.values())
    print("lossless" if lossless else "MESSAGES LOST")
    if not args.keep:
        shutil.rmtree(work)
    return 0 if lossless else 1


if __name__ == "__main__":
    raise SystemExit(main())
