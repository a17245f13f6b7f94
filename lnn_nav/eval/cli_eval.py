"""`lnn-nav eval`: closed-loop success rates of controllers on held-out worlds."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HELP = "closed-loop benchmark: success rates on held-out worlds, in and out of distribution"
DESCRIPTION = """\
Fly each controller (checkpoints, or `expert` for the privileged expert) in the
embedded simulator on the first --episodes held-out evaluation worlds
(seeds 1000+, never used for training) of each --world and --preset, batched
in-process. Prints a success-rate table with 95% Wilson intervals and writes
every episode's outcome and the summary to --out (JSON).

Example:
  lnn-nav eval --model models/cfc_ncp.safetensors expert --world forest urban --episodes 100
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", nargs="+", required=True, metavar="CKPT",
                        help="checkpoint(s) to fly; the word `expert` flies the privileged expert")
    parser.add_argument("--world", nargs="+", choices=("forest", "urban"), default=["forest", "urban"])
    parser.add_argument("--preset", nargs="+", default=["in_distribution"], metavar="NAME",
                        help="conditions: in_distribution, fall, winter, dusk, fog, dense_forest, gusty_wind, "
                        "camera_noise (default: in_distribution)")
    parser.add_argument("--episodes", type=int, default=100, help="per cell (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="default: %(default)s")
    parser.add_argument("--envs", type=int, default=16, help="drones flown at once (default: %(default)s)")
    parser.add_argument("--out", default="reports/eval/results.json", metavar="PATH", help="default: %(default)s")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from lnn_nav.eval.closed_loop import eval_seeds, evaluate
    from lnn_nav.sim.presets import presets_for

    for model in args.model:
        if model != "expert" and not Path(model).is_file():
            print(f"lnn-nav eval: error: checkpoint not found: {model}", file=sys.stderr)
            return 2
    seeds = eval_seeds(args.episodes)
    cells = []
    started = time.perf_counter()
    for model in args.model:
        for world in args.world:
            for preset in args.preset:
                if preset not in presets_for(world):
                    continue
                bar = tqdm(total=len(seeds), desc=f"{Path(model).stem} {world} {preset}", unit="episode")
                cell = evaluate(None if model == "expert" else model, world, seeds, preset, envs=args.envs,
                                workers=args.workers, on_result=lambda _r: bar.update(1),
                                name=model if model == "expert" else Path(model).stem)  # fmt: skip
                bar.close()
                cells.append(cell)
                s = cell.summary()
                print(f"{s['controller']:<24} {world:<7} {preset:<16} success {cell.successes}/{s['episodes']} "
                      f"({s['success_rate']:.0%}, 95% CI {s['ci95'][0]:.0%}-{s['ci95'][1]:.0%})  {s['outcomes']}")  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"seconds": time.perf_counter() - started, "seeds": [seeds[0], seeds[-1]],
                               "cells": [{**c.summary(), "episodes_detail": c.episodes} for c in cells]}, indent=1))  # fmt: skip
    print(f"wrote {out}")
    return 0
