"""Closed-loop results as the report reads them: loading `lnn-nav eval` files, success rates, conditions.

Input is what `lnn-nav eval` writes (:mod:`lnn_nav.eval.cli_eval`): one JSON
file per run with a ``cells`` list, one cell per controller x world x preset,
each with every episode's outcome in ``episodes_detail``. Several files merge
into one set of cells. Success rates carry 95 % Wilson intervals.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lnn_nav.eval.closed_loop import wilson_interval
from lnn_nav.sim.presets import OOD_PRESETS, WORLD_KINDS

IN_DIST = "in_distribution"
LIQUID_CORES: tuple[str, ...] = ("cfc-ncp", "cfc", "ltc")
BASELINE_CORES: tuple[str, ...] = ("lstm", "gru", "cnn")
EXPERT = "expert"
#: The controllers of the full benchmark suite, in table order.
SUITE_CONTROLLERS: tuple[str, ...] = LIQUID_CORES + BASELINE_CORES + (EXPERT,)

PRESET_LABELS = {IN_DIST: "in-dist", "dense_forest": "dense", "gusty_wind": "gusty wind", "camera_noise": "cam. noise"}
FAILED_FLIGHT = ("collision", "out_of_bounds")
#: ``ros_outcome`` of a graph flight that ended without an outcome (lnn_nav.eval.ros_agreement).
NO_GRAPH_OUTCOME = ("setup_error", "no_outcome")

Cell = dict[str, Any]
Condition = tuple[str, str]  # (world, preset)


class ResultsError(ValueError):
    """A results file is missing, is not JSON, or does not have the shape `lnn-nav eval` writes."""


def load_results(paths: Sequence[str | Path]) -> list[Cell]:
    """Read `lnn-nav eval` JSON files and merge their cells.

    Names are normalised (``cfc_ncp`` -> ``cfc-ncp``). Rates, intervals and
    counts are recomputed from ``episodes_detail`` where it is present. The
    same controller x world x preset in two files pools its episodes when the
    seeds differ; the same seeds twice is an error (pass one of the runs).
    Each cell gains ``sources`` (the files it came from) and, when the file
    states them, ``seed_range``.
    """
    if not paths:
        raise ResultsError("no results files given; expected one or more JSON files written by `lnn-nav eval`")
    merged: dict[tuple[str, str, str], Cell] = {}
    for path in map(Path, paths):
        for cell in _read_file(path):
            key = (cell["controller"], cell["world"], cell["preset"])
            merged[key] = _merge(merged[key], cell) if key in merged else cell
    return list(merged.values())


def _read_file(path: Path) -> list[Cell]:
    if not path.is_file():
        raise ResultsError(f"{path}: no such results file")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path}: not valid JSON ({exc}); expected the file `lnn-nav eval --out` writes") from exc
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        found = f"keys {sorted(data)}" if isinstance(data, dict) else type(data).__name__
        raise ResultsError(f"{path}: expected an object with a 'cells' list (as `lnn-nav eval` writes), found {found}")
    seed_range = data.get("seeds")
    cells = []
    for i, raw in enumerate(data["cells"]):
        cell = _normalise_cell(raw, f"{path}: cell {i}")
        cell["sources"] = [str(path)]
        if "seed_range" not in cell and isinstance(seed_range, list) and len(seed_range) == 2:
            cell["seed_range"] = list(seed_range)
        cells.append(cell)
    return cells


def _normalise_cell(raw: Any, where: str) -> Cell:
    if not isinstance(raw, dict):
        raise ResultsError(f"{where}: expected an object, found {type(raw).__name__}")
    missing = [k for k in ("controller", "world", "preset") if not isinstance(raw.get(k), str)]
    if missing:
        raise ResultsError(f"{where}: missing or non-text {', '.join(missing)}")
    cell = dict(raw)
    cell["controller"] = normalise_name(raw["controller"])
    detail = raw.get("episodes_detail")
    if detail is not None:
        if not isinstance(detail, list) or not all(isinstance(e, dict) and "outcome" in e for e in detail):
            raise ResultsError(f"{where}: 'episodes_detail' must be a list of episodes, each with an 'outcome'")
        outcomes: dict[str, int] = {}
        for e in detail:
            outcomes[e["outcome"]] = outcomes.get(e["outcome"], 0) + 1
        n = len(detail)
        times = [e["time"] for e in detail if e["outcome"] == "success" and is_number(e.get("time"))]
        clearances = [e["min_clearance"] for e in detail if is_number(e.get("min_clearance"))]
        cell["mean_time_to_goal"] = sum(times) / len(times) if times else None
        cell["mean_min_clearance"] = sum(clearances) / len(clearances) if clearances else None
        cell["min_min_clearance"] = min(clearances) if clearances else None
    else:
        given = raw.get("outcomes")
        outcomes = dict(given) if isinstance(given, dict) else {}
        episodes = raw.get("episodes")
        if not isinstance(episodes, int) or not is_number(raw.get("success_rate", outcomes.get("success"))):
            raise ResultsError(f"{where}: needs 'episodes_detail', or 'episodes' with 'success_rate' or 'outcomes'")
        if "success" not in outcomes:
            outcomes = {**outcomes, "success": round(raw["success_rate"] * episodes)}
        n = episodes
    if "ros" in raw:
        cell["ros"] = _normalise_ros(raw["ros"], where)
    successes = int(outcomes.get("success", 0))
    cell.update(
        episodes=n,
        successes=successes,
        success_rate=successes / n if n else 0.0,
        ci95=list(wilson_interval(successes, n)),
        outcomes=outcomes,
        collision_rate=sum(outcomes.get(o, 0) for o in FAILED_FLIGHT) / n if n else 0.0,
    )
    return cell


def _normalise_ros(raw: Any, where: str) -> dict[str, Any]:
    """A cell's ``ros`` block (`lnn-nav eval --ros-episodes`), its counts recomputed from its episodes."""
    episodes = raw.get("episodes") if isinstance(raw, dict) else None
    keys = ("seed", "ros_outcome", "inprocess_outcome")
    if not isinstance(episodes, list) or not all(isinstance(e, dict) and all(k in e for k in keys) for e in episodes):
        raise ResultsError(f"{where}: 'ros' must hold an 'episodes' list, each with {', '.join(keys)}")
    episodes = [{**e, "agree": e["ros_outcome"] == e["inprocess_outcome"]} for e in episodes]
    return {
        **raw,
        "episodes": episodes,
        "flown": len(episodes),
        "agreements": sum(e["agree"] for e in episodes),
        "errors": sum(e["ros_outcome"] in NO_GRAPH_OUTCOME for e in episodes),
    }


def _merge(a: Cell, b: Cell) -> Cell:
    name = f"{a['controller']} {a['world']} {a['preset']}"
    da, db = a.get("episodes_detail"), b.get("episodes_detail")
    if da is None or db is None:
        raise ResultsError(
            f"{name} appears in {a['sources'][0]} and {b['sources'][0]}, and without per-episode "
            "detail they cannot be pooled; pass only one of them"
        )
    overlap = sorted({e.get("seed") for e in da} & {e.get("seed") for e in db})
    if overlap:
        raise ResultsError(
            f"{name} was flown on the same seeds ({seed_text(overlap)}) in {a['sources'][0]} "
            f"and {b['sources'][0]}; pass only one of the runs"
        )
    ros = [c["ros"] for c in (a, b) if "ros" in c]
    if len(ros) == 2:  # the graph checks of both runs (on their own, disjoint seeds) pool too
        notes = list(dict.fromkeys(ros[0].get("notes", []) + ros[1].get("notes", [])))
        a = {**a, "ros": {**ros[0], "episodes": ros[0]["episodes"] + ros[1]["episodes"], "notes": notes}}
    elif ros:
        a = {**a, "ros": ros[0]}
    merged = _normalise_cell({**a, "episodes_detail": da + db}, name)
    merged["sources"] = a["sources"] + b["sources"]
    merged.pop("seed_range", None)
    return merged


def is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def normalise_name(name: str) -> str:
    """Controller names as the issue writes them: lower case, ``-`` not ``_`` (``cfc_ncp`` -> ``cfc-ncp``)."""
    return name.strip().lower().replace("_", "-")


def controller_core(name: str) -> str | None:
    """Which suite controller a name is (``cfc-ncp-small`` -> ``cfc-ncp``), or None for any other."""
    name = normalise_name(name)
    for core in SUITE_CONTROLLERS:  # cfc-ncp before cfc
        if name == core or name.startswith(core + "-"):
            return core
    return None


def seed_text(seeds: Sequence[Any]) -> str:
    """``[1000, 1001, 1002, 1005]`` -> ``1000–1002, 1005``."""
    ints = sorted(s for s in seeds if isinstance(s, int))
    parts, start = [], None
    for i, s in enumerate(ints):
        start = s if start is None else start
        if i + 1 == len(ints) or ints[i + 1] != s + 1:
            parts.append(f"{start}–{s}" if s != start else f"{s}")
            start = None
    return ", ".join(parts + [str(s) for s in seeds if not isinstance(s, int)])


@dataclass(frozen=True)
class Rate:
    """A success rate with its 95 % interval; ``cells`` is how many conditions it averages."""

    value: float
    lo: float
    hi: float
    cells: int = 1

    def __str__(self) -> str:
        return f"{self.value * 100:.0f}% [{self.lo * 100:.0f}–{self.hi * 100:.0f}]"


def cell_rate(cell: Cell) -> Rate:
    lo, hi = cell["ci95"]
    return Rate(cell["success_rate"], lo, hi)


def mean_rate(cells: Sequence[Cell]) -> Rate | None:
    """Unweighted mean of the cells' success rates (each condition counts once).

    Its interval combines the cells' Wilson intervals in quadrature, each side
    separately (independent cells): an approximation, but one that keeps a
    sensible width at 0 % and 100 %.
    """
    if not cells:
        return None
    rates = [cell_rate(c) for c in cells]
    k = len(rates)
    value = sum(r.value for r in rates) / k
    below = math.sqrt(sum((r.value - r.lo) ** 2 for r in rates)) / k
    above = math.sqrt(sum((r.hi - r.value) ** 2 for r in rates)) / k
    return Rate(value, max(0.0, value - below), min(1.0, value + above), k)


def index_cells(cells: Iterable[Cell]) -> dict[tuple[str, str, str], Cell]:
    return {(c["controller"], c["world"], c["preset"]): c for c in cells}


def controllers_in(cells: Iterable[Cell]) -> list[str]:
    """Controllers in table order: the suite's (liquid, baselines, expert), then any others by name."""
    names = {c["controller"] for c in cells}
    order = {core: i for i, core in enumerate(SUITE_CONTROLLERS)}
    return sorted(names, key=lambda n: (order.get(controller_core(n) or "", len(order)), n))


def conditions_in(cells: Iterable[Cell]) -> list[Condition]:
    """(world, preset) pairs in report order: worlds as the simulator lists them, in-distribution first."""
    pairs = {(c["world"], c["preset"]) for c in cells}
    worlds = {w: i for i, w in enumerate(WORLD_KINDS)}
    presets = {p: i for i, p in enumerate((IN_DIST,) + OOD_PRESETS)}
    return sorted(
        pairs, key=lambda wp: (worlds.get(wp[0], len(worlds)), wp[0], presets.get(wp[1], len(presets)), wp[1])
    )


def condition_label(world: str, preset: str) -> str:
    return f"{world} {PRESET_LABELS.get(preset, preset.replace('_', ' '))}"


def ood_mean(cells: Sequence[Cell], controller: str, world: str | None = None) -> Rate | None:
    """Mean success of ``controller`` over the out-of-distribution conditions it ran (in ``world``, or all)."""
    chosen = [
        c
        for c in cells
        if c["controller"] == controller and c["preset"] != IN_DIST and (world is None or c["world"] == world)
    ]
    return mean_rate(chosen)
