"""Fly a checkpoint with PX4 in the loop (SITL, SIH) on held-out worlds, beside the embedded simulator.

    .venv/bin/python scripts/px4_sih_compare.py --model models/cfc_ncp.safetensors --episodes 5 \\
        --embedded models/eval/cfc_ncp_in_distribution.json --out docs/benchmark/px4_sih.json

Each world is flown once by `lnn-nav fly --px4` (PX4's airframe, controllers and
estimator fly the vehicle; lnn_nav's world node renders the camera from PX4's
odometry and judges the episode) and looked up in an `lnn-nav eval` result of
the same checkpoint on the same seeds (the embedded simulator's dynamics and
flight controller). The dynamics differ, so compare the rates, not the tracks.
Writes the per-seed outcomes as JSON and a Markdown table beside it (``.md``).
PX4 runs in real time: about a minute a world.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from lnn_nav.nodes.fly import SetupError
from lnn_nav.nodes.fly_px4 import fly_px4
from lnn_nav.sim.kinds import WORLD_KINDS
from lnn_nav.sim.presets import EVAL_SEEDS


def embedded_outcomes(path: Path, world: str) -> dict[int, dict]:
    """Per-seed outcomes of the in-distribution cell of ``world`` in an `lnn-nav eval` result."""
    data = json.loads(path.read_text())
    for cell in data["cells"]:
        if cell["world"] == world and cell["preset"] == "in_distribution":
            return {int(e["seed"]): e for e in cell["episodes_detail"]}
    raise SystemExit(f"{path} has no in-distribution {world} cell")


def table(rows: list[dict], model: str) -> str:
    lines = [
        f"# PX4 in the loop (SITL, SIH) beside the embedded simulator: `{model}`",
        "",
        "Each held-out world flown once by `lnn-nav fly --px4` (PX4 SIH flies the vehicle) and by the embedded",
        "simulator (`lnn-nav eval`); different dynamics, so compare rates, not tracks.",
        "",
        "| world | worlds | PX4 SIH success | embedded success | same outcome | PX4 mean time to goal (s) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for world in sorted({r["world"] for r in rows}):
        cell = [r for r in rows if r["world"] == world]
        px4_ok = [r for r in cell if r["px4"]["outcome"] == "success"]
        emb_ok = sum(r["embedded"] == "success" for r in cell)
        same = sum((r["px4"]["outcome"] == "success") == (r["embedded"] == "success") for r in cell)
        mean_t = f"{sum(r['px4']['time'] for r in px4_ok) / len(px4_ok):.1f}" if px4_ok else "–"
        lines.append(
            f"| {world} | {len(cell)} | {len(px4_ok)}/{len(cell)} | {emb_ok}/{len(cell)} | {same}/{len(cell)} "
            f"| {mean_t} |"
        )
    lines += ["", "| world | seed | PX4 SIH | embedded |", "| --- | --- | --- | --- |"]
    for r in rows:
        lines.append(
            f"| {r['world']} | {r['seed']} | {r['px4']['outcome']} ({r['px4']['time']:.1f} s) | {r['embedded']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, metavar="CKPT")
    parser.add_argument("--world", nargs="+", choices=WORLD_KINDS, default=list(WORLD_KINDS))
    parser.add_argument("--episodes", type=int, default=5, help="held-out worlds per kind, from seed 1000")
    parser.add_argument("--embedded", type=Path, required=True, metavar="JSON", help="lnn-nav eval result")
    parser.add_argument("--out", type=Path, required=True, metavar="JSON")
    parser.add_argument("--logs", type=Path, default=None, metavar="DIR", help="node and PX4 logs per world")
    parser.add_argument(
        "--altitude-hold",
        action="store_true",
        help="the offboard bridge holds the take-off height instead of following the controller's vz",
    )
    args = parser.parse_args(argv)
    rows = []
    for world in args.world:
        embedded = embedded_outcomes(args.embedded, world)
        for seed in EVAL_SEEDS[: args.episodes]:
            if seed not in embedded:
                raise SystemExit(f"{args.embedded} has no {world} seed {seed}")
            started = time.monotonic()
            log_dir = str(args.logs / f"{world}_{seed}") if args.logs else None
            try:
                result = fly_px4(
                    world,
                    seed,
                    "in_distribution",
                    args.model,
                    timeout=240.0,
                    log_dir=log_dir,
                    altitude_hold=args.altitude_hold,
                )
            except SetupError as err:
                print(f"px4_sih_compare: {world} {seed}: {err}", file=sys.stderr)
                return 2
            outcome = result or {"outcome": "no_outcome", "time": 0.0}
            rows.append({"world": world, "seed": seed, "px4": outcome, "embedded": embedded[seed]["outcome"]})
            print(
                f"{world} {seed}: PX4 {outcome['outcome']} ({outcome['time']:.1f} s), embedded "
                f"{embedded[seed]['outcome']}  [{time.monotonic() - started:.0f} s wall]",
                flush=True,
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"model": args.model, "altitude_hold": args.altitude_hold, "rows": rows}, indent=1))
    markdown = table(rows, args.model)
    args.out.with_suffix(".md").write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
