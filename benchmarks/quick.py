"""`make bench`: the quick benchmark set, one Markdown file with every table beside its reference.

    python benchmarks/quick.py [--out reports/bench.md] [--only policy_step cell_call_styles ...]

Each benchmark runs in its own process (one thread unless it says otherwise) and
writes its table; this collects them under one heading that says when, on what
machine and at which commit they were measured. A benchmark that cannot run here
(a missing optional package such as pybullet, no ROS) is listed with its reason,
not dropped silently. Speed figures live here and in docs/performance.md, never
in the tests.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: name -> (arguments after the script, what it compares); quick settings, ~1-2 min each here.
QUICK: dict[str, tuple[list[str], str]] = {
    "policy_step": (["--iters", "200", "--repeats", "5"], "full policy step: fused vs reference path"),
    "cell_call_styles": (["--repeats", "5"], "CfC cell call styles vs ncps on the same weights"),
    "step_latency": (["--iters", "500", "--repeats", "3"], "batch-1 step latency vs ncps"),
    "sim_throughput": (["--quick"], "simulator camera vs PyBullet TinyRenderer, env steps/s"),
    "node_latency": (
        ["--seconds", "5", "--native-controller"],
        "ROS 2 graph: image stamp to /cmd_vel (Python and native controller nodes)",
    ),
}


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True)
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def run_one(name: str, args: list[str], timeout: float) -> tuple[str, float]:
    """Run one benchmark; its table, or a line saying why there is none; and the seconds it took."""
    with tempfile.TemporaryDirectory(prefix="lnn_nav_bench_") as tmp:
        table = Path(tmp) / f"{name}.md"
        cmd = [sys.executable, str(HERE / f"{name}.py"), *args, "--out", str(table)]
        # Loopback discovery unless the caller chose otherwise (node_latency starts a ROS graph).
        env = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", **os.environ}
        started = time.perf_counter()
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            return f"not run: no result within {timeout:.0f} s\n", time.perf_counter() - started
        seconds = time.perf_counter() - started
        if done.returncode != 0 or not table.is_file():
            lines = (done.stderr or done.stdout).strip().splitlines()
            why = lines[-1] if lines else f"exit code {done.returncode}"
            return f"not run: {why}\n", seconds
        return table.read_text(), seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("reports/bench.md"), help="default: %(default)s")
    parser.add_argument("--only", nargs="+", choices=sorted(QUICK), help="run only these benchmarks")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per benchmark (default: %(default)s)")
    args = parser.parse_args(argv)
    names = args.only or list(QUICK)
    sections = [
        "# lnn_nav benchmarks (quick set)\n",
        f"Measured {time.strftime('%Y-%m-%d %H:%M %Z')} on {platform.machine()} "
        f"{platform.processor() or platform.platform()}, {os.cpu_count()} CPU(s), commit {_commit()}, "
        f"`make bench` (benchmarks/quick.py). Each figure is beside its reference from the same run.\n",
    ]
    failed = 0
    for name in names:
        extra, what = QUICK[name]
        print(f"[{name}] {what} ...", flush=True)
        text, seconds = run_one(name, extra, args.timeout)
        failed += text.startswith("not run:")
        print(f"[{name}] {'skipped: ' + text.strip() if text.startswith('not run:') else 'done'} ({seconds:.0f} s)")
        sections += [f"## {name}: {what}\n", f"`python benchmarks/{name}.py {' '.join(extra)}`\n", text.rstrip() + "\n"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(sections))
    print(f"wrote {args.out} ({len(names) - failed} of {len(names)} benchmarks ran)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
