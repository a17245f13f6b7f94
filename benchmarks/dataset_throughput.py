"""Dataset throughput: `lnn-nav dataset`'s conversion against a plain `rosbags` read of the same bags.

Both run in this one process, on the same bags, interleaved (raw, pipeline,
raw, pipeline, ...) so that the page cache and the machine's load treat them
alike; the median of ``--repeats`` runs each is compared. The pipeline is
:func:`lnn_nav.data.dataset.build_dataset` with one worker, writing a real
dataset to a temporary folder: it parses every message, decodes and resizes
every frame, joins commands/IMU/odometry/goal to the frames and writes the
memory-mapped files. The raw read iterates every message's bytes
(``rosbags.rosbag2.Reader.messages``) and nothing else. Target: the
pipeline at >= 50% of the raw read's messages/s (issue 6).

    python benchmarks/dataset_throughput.py /work/bl/demos_2ms/forest --bags 40
    python benchmarks/dataset_throughput.py              # 12 demonstration bags collected first (~2 min)

Without a folder, the expert flies 12 forest episodes into a temporary
folder first (`lnn-nav collect`, the same bags the training recipe uses).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Sequence

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def raw_read(bags: Sequence[Path]) -> tuple[int, float]:
    """(messages, seconds) of a plain rosbags read of ``bags``, opening included."""
    from rosbags.rosbag2 import Reader

    started = time.perf_counter()
    count = 0
    for bag in bags:
        with Reader(bag) as reader:
            for _ in reader.messages():
                count += 1
    return count, time.perf_counter() - started


def pipeline(bags: Sequence[Path], scratch: Path) -> tuple[int, float]:
    """(frames, seconds) of converting ``bags`` into a dataset (one worker), writing included."""
    from lnn_nav.data.dataset import DatasetConfig, build_dataset

    out = Path(tempfile.mkdtemp(dir=scratch))
    started = time.perf_counter()
    meta = build_dataset(list(bags), out, DatasetConfig(), workers=1)
    seconds = time.perf_counter() - started
    shutil.rmtree(out)
    return meta["frames"], seconds


def collect(scratch: Path, episodes: int) -> List[Path]:
    """Demonstration bags as `lnn-nav collect --world forest` writes them (training seeds)."""
    from lnn_nav.sim.expert import DEMO_EXPERT
    from lnn_nav.data.flights import FlightJob, fly_episodes
    from lnn_nav.sim.presets import TRAIN_SEED_BASE

    out = scratch / "demos"
    seeds = list(range(TRAIN_SEED_BASE, TRAIN_SEED_BASE + episodes))
    job = FlightJob(expert=dict(DEMO_EXPERT), kind="forest", seeds=seeds, out_dir=str(out), keep_failures=True,
                    rng_seed=TRAIN_SEED_BASE)  # fmt: skip
    print(f"collecting {episodes} forest demonstrations into {out} ...", flush=True)
    fly_episodes(job, workers=2)
    return sorted(p for p in out.iterdir() if (p / "metadata.yaml").is_file())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", help="folder of rosbag2 recordings (default: collect 12 first)")
    parser.add_argument("--bags", type=int, default=20, help="bags used (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each, interleaved (default: %(default)s)")
    args = parser.parse_args(argv)

    from lnn_nav.data.bags import open_bag
    from lnn_nav.data.dataset import find_bags

    with tempfile.TemporaryDirectory(prefix="lnn_nav_ds_bench_") as tmp:
        scratch = Path(tmp)
        bags = find_bags([args.folder])[: args.bags] if args.folder else collect(scratch, 12)
        messages = 0
        for bag in bags:
            with open_bag(bag) as reader:
                messages += reader.message_count
        raw_read(bags)  # warm the page cache for both
        raw_s, pipe_s = [], []
        frames = 0
        for _ in range(args.repeats):
            count, seconds = raw_read(bags)
            assert count == messages, f"rosbags read {count} messages, the metadata says {messages}"
            raw_s.append(seconds)
            frames, seconds = pipeline(bags, scratch)
            pipe_s.append(seconds)
        raw_rate = messages / statistics.median(raw_s)
        pipe_rate = messages / statistics.median(pipe_s)
        print(f"{len(bags)} bags, {messages} messages, {frames} frames kept; median of {args.repeats} runs each")
        print(f"{'':<28}{'messages/s':>12}{'frames/s':>10}{'s (min-max)':>16}")
        print(f"{'plain rosbags read':<28}{raw_rate:>12.0f}{'':>10}{min(raw_s):>8.2f}-{max(raw_s):.2f}")
        print(f"{'lnn-nav dataset, 1 worker':<28}{pipe_rate:>12.0f}{frames / statistics.median(pipe_s):>10.0f}"
              f"{min(pipe_s):>8.2f}-{max(pipe_s):.2f}")  # fmt: skip
        ratio = pipe_rate / raw_rate
        print(f"pipeline / raw: {ratio:.0%} (target >= 50%: {'met' if ratio >= 0.5 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
