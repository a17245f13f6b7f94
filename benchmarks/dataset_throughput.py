"""Dataset throughput: `lnn-nav dataset`'s conversion against a plain `rosbags` read of the same bags.

Both run in this one process, on the same bags, interleaved (raw, pipeline,
raw, pipeline, ...) so that the page cache and the machine's load treat them
alike; the median of ``--repeats`` runs each is compared. The pipeline is
:func:`lnn_nav.data.dataset.build_dataset` with one worker (and two, the
CLI's default, for information), writing a real
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
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def pipeline(bags: Sequence[Path], scratch: Path, workers: int = 1) -> tuple[int, float]:
    """(frames, seconds) of converting ``bags`` into a dataset, writing included."""
    from lnn_nav.data.dataset import DatasetConfig, build_dataset

    out = Path(tempfile.mkdtemp(dir=scratch))
    started = time.perf_counter()
    meta = build_dataset(list(bags), out, DatasetConfig(), workers=workers)
    seconds = time.perf_counter() - started
    shutil.rmtree(out)
    return meta["frames"], seconds


def collect(scratch: Path, episodes: int) -> list[Path]:
    """Demonstration bags as `lnn-nav collect --world forest` writes them (training seeds)."""
    from lnn_nav.rollouts.flights import FlightJob, fly_episodes
    from lnn_nav.sim.expert import DEMO_EXPERT
    from lnn_nav.sim.presets import TRAIN_SEED_BASE

    out = scratch / "demos"
    seeds = list(range(TRAIN_SEED_BASE, TRAIN_SEED_BASE + episodes))
    job = FlightJob(
        expert=dict(DEMO_EXPERT),
        kind="forest",
        seeds=seeds,
        out_dir=str(out),
        keep_failures=True,
        rng_seed=TRAIN_SEED_BASE,
    )
    print(f"collecting {episodes} forest demonstrations into {out} ...", flush=True)
    fly_episodes(job, workers=2)
    return sorted(p for p in out.iterdir() if (p / "metadata.yaml").is_file())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", help="folder of rosbag2 recordings (default: collect 12 first)")
    parser.add_argument("--bags", type=int, default=20, help="bags used (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each, interleaved (default: %(default)s)")
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[1, 2],
        help="pipeline worker counts to time; the first is held to the target (default: 1 2)",
    )
    args = parser.parse_args(argv)

    from lnn_nav.data.bags import open_bag
    from lnn_nav.data.dataset import find_bags
    from lnn_nav.data.dataset_cli import raw_read

    with tempfile.TemporaryDirectory(prefix="lnn_nav_ds_bench_") as tmp:
        scratch = Path(tmp)
        bags = find_bags([args.folder])[: args.bags] if args.folder else collect(scratch, 12)
        messages = 0
        for bag in bags:
            with open_bag(bag) as reader:
                messages += reader.message_count
        raw_read(bags)  # warm the page cache for both
        raw_s: list[float] = []
        pipe_s: dict = {w: [] for w in args.workers}
        frames = 0
        for _ in range(args.repeats):
            count, seconds = raw_read(bags)
            assert count == messages, f"rosbags read {count} messages, the metadata says {messages}"
            raw_s.append(seconds)
            for workers in args.workers:
                frames, seconds = pipeline(bags, scratch, workers)
                pipe_s[workers].append(seconds)
        raw_rate = messages / statistics.median(raw_s)
        print(f"{len(bags)} bags, {messages} messages, {frames} frames kept; median of {args.repeats} runs each")
        print(f"{'':<32}{'messages/s':>12}{'frames/s':>10}{'s (min-max)':>16}{'vs raw':>8}")
        print(f"{'plain rosbags read, 1 process':<32}{raw_rate:>12.0f}{'':>10}{min(raw_s):>8.2f}-{max(raw_s):.2f}")
        for workers, runs in pipe_s.items():
            rate = messages / statistics.median(runs)
            print(
                f"{f'lnn-nav dataset, {workers} worker(s)':<32}{rate:>12.0f}{frames / statistics.median(runs):>10.0f}"
                f"{min(runs):>8.2f}-{max(runs):.2f}{rate / raw_rate:>8.0%}"
            )
        one = messages / statistics.median(pipe_s[args.workers[0]]) / raw_rate
        print(
            f"target: the pipeline at >= 50% of the raw read; with {args.workers[0]} worker(s) {one:.0%}: "
            f"{'met' if one >= 0.5 else 'NOT met'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
