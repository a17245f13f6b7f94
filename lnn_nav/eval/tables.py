"""Benchmark results as CSV: one row per cell (controller x world x condition) and one per episode.

For spreadsheets and pandas; the JSON that `lnn-nav eval` writes stays the
source (it also holds each episode's track). Cells are the dicts of
:meth:`lnn_nav.eval.closed_loop.CellResult.summary` plus ``episodes_detail``
and, after ``--ros-episodes``, ``ros``: as `lnn-nav eval` writes them and
:func:`lnn_nav.eval.report.load_results` reads them.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

CELL_COLUMNS = (
    "controller",
    "world",
    "preset",
    "episodes",
    "successes",
    "success_rate",
    "ci95_low",
    "ci95_high",
    "collision_rate",
    "timeouts",
    "mean_time_to_goal",
    "mean_min_clearance",
    "ros_flown",
    "ros_agreements",
)
EPISODE_COLUMNS = (
    "controller",
    "world",
    "preset",
    "seed",
    "outcome",
    "time",
    "frames",
    "path_length",
    "min_clearance",
    "timeout_kind",
    "detour",
    "ros_outcome",
)


def _number(value: Any, digits: int = 4) -> str | int | float:
    if value is None:
        return ""
    if isinstance(value, float):
        return round(value, digits)
    return value


def cell_rows(cells: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per cell, in :data:`CELL_COLUMNS`; empty where a value does not apply (no success: no time)."""
    rows = []
    for c in cells:
        outcomes = c.get("outcomes") or {}
        ros: Mapping[str, Any] | None = c.get("ros")
        low, high = c.get("ci95") or (None, None)
        rows.append(
            {
                "controller": c["controller"],
                "world": c["world"],
                "preset": c["preset"],
                "episodes": c["episodes"],
                "successes": outcomes.get("success", round(c["success_rate"] * c["episodes"])),
                "success_rate": _number(c["success_rate"]),
                "ci95_low": _number(low),
                "ci95_high": _number(high),
                "collision_rate": _number(c.get("collision_rate")),
                "timeouts": outcomes.get("timeout", 0),
                "mean_time_to_goal": _number(c.get("mean_time_to_goal"), 2),
                "mean_min_clearance": _number(c.get("mean_min_clearance"), 3),
                "ros_flown": ros["flown"] if ros else "",
                "ros_agreements": ros["agreements"] if ros else "",
            }
        )
    return rows


def episode_rows(cells: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per episode, in :data:`EPISODE_COLUMNS`; ``ros_outcome`` where the seed was also flown over ROS,
    ``timeout_kind`` and ``detour`` (m) where a timeout was diagnosed."""
    rows = []
    for c in cells:
        ros = {e["seed"]: e["ros_outcome"] for e in (c.get("ros") or {}).get("episodes", [])}
        for e in c.get("episodes_detail") or []:
            rows.append(
                {
                    "controller": c["controller"],
                    "world": c["world"],
                    "preset": c["preset"],
                    "seed": e.get("seed"),
                    "outcome": e.get("outcome"),
                    "time": _number(e.get("time"), 3),
                    "frames": e.get("frames", ""),
                    "path_length": _number(e.get("path_length"), 2),
                    "min_clearance": _number(e.get("min_clearance"), 3),
                    "ros_outcome": ros.get(e.get("seed"), ""),
                    "timeout_kind": (e.get("timeout") or {}).get("kind", ""),
                    "detour": _number((e.get("timeout") or {}).get("detour")),
                }
            )
    return rows


def write_csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_results_csv(cells: Sequence[Mapping[str, Any]], json_path: str | Path) -> list[Path]:
    """``<json stem>.cells.csv`` and ``<json stem>.episodes.csv`` beside a results JSON; their paths."""
    json_path = Path(json_path)
    stem = json_path.with_suffix("")
    return [
        write_csv(cell_rows(cells), CELL_COLUMNS, f"{stem}.cells.csv"),
        write_csv(episode_rows(cells), EPISODE_COLUMNS, f"{stem}.episodes.csv"),
    ]
