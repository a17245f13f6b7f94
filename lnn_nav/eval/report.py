"""Closed-loop benchmark report: success tables, bar charts, top-down maps and the issue's targets, as markdown.

Input is what `lnn-nav eval` writes (:mod:`lnn_nav.eval.cli_eval`): one JSON
file per run with a ``cells`` list, one cell per controller x world x preset,
each with every episode's outcome in ``episodes_detail``. Several files merge
into one set of cells. Success rates carry 95 % Wilson intervals; tables follow
the layout of the liquid-drone paper (Chahine et al., Science Robotics 2023):
rows are controllers, columns are conditions, cells read ``87% [79–92]``.

The targets (issue 8) are checked on the numbers and stated plainly, met or
not: CfC-NCP >= 95 % in distribution in both worlds and >= 85 % averaged over
the out-of-distribution conditions, and the liquid cores (CfC-NCP, CfC, LTC)
losing less success from in- to out-of-distribution than LSTM, GRU and CNN.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np

from lnn_nav.eval.closed_loop import wilson_interval
from lnn_nav.eval.crashes import crash_section
from lnn_nav.eval.markdown import markdown_table
from lnn_nav.eval.tables import CELL_COLUMNS, cell_rows, write_csv
from lnn_nav.eval.timeouts import timeout_section
from lnn_nav.eval.training_seeds import seed_comparison_section
from lnn_nav.sim.presets import OOD_PRESETS, RANDOMIZATION, TRUE_SHIFTS, WORLD_KINDS, preset_coverage, presets_for

IN_DIST = "in_distribution"
LIQUID_CORES: tuple[str, ...] = ("cfc-ncp", "cfc", "ltc")
BASELINE_CORES: tuple[str, ...] = ("lstm", "gru", "cnn")
EXPERT = "expert"
#: The controllers issue 8's suite flies, in table order.
SUITE_CONTROLLERS: tuple[str, ...] = LIQUID_CORES + BASELINE_CORES + (EXPERT,)

IN_DIST_TARGET = 0.95
OOD_TARGET = 0.85

_PRESET_LABELS = {IN_DIST: "in-dist", "dense_forest": "dense", "gusty_wind": "gusty wind", "camera_noise": "cam. noise"}
_COLOURS = {
    "cfc-ncp": "#1f5fa8",
    "cfc": "#4fa3d9",
    "ltc": "#2e9d4d",
    "lstm": "#e8882b",
    "gru": "#c8453c",
    "cnn": "#8c5ab4",
    "expert": "#8a8a8a",
}
_FAILED_FLIGHT = ("collision", "out_of_bounds")
#: ``ros_outcome`` of a graph flight that ended without an outcome (lnn_nav.eval.ros_agreement).
_NO_GRAPH_OUTCOME = ("setup_error", "no_outcome")

Cell = dict[str, Any]
Condition = tuple[str, str]  # (world, preset)


class ResultsError(ValueError):
    """A results file is missing, is not JSON, or does not have the shape `lnn-nav eval` writes."""


# ---------------------------------------------------------------------------------------------------------------
# Loading


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
        times = [e["time"] for e in detail if e["outcome"] == "success" and _is_number(e.get("time"))]
        clearances = [e["min_clearance"] for e in detail if _is_number(e.get("min_clearance"))]
        cell["mean_time_to_goal"] = sum(times) / len(times) if times else None
        cell["mean_min_clearance"] = sum(clearances) / len(clearances) if clearances else None
        cell["min_min_clearance"] = min(clearances) if clearances else None
    else:
        outcomes = raw.get("outcomes") if isinstance(raw.get("outcomes"), dict) else {}
        n = raw.get("episodes")
        if not isinstance(n, int) or not _is_number(raw.get("success_rate", outcomes.get("success"))):
            raise ResultsError(f"{where}: needs 'episodes_detail', or 'episodes' with 'success_rate' or 'outcomes'")
        if "success" not in outcomes:
            outcomes = {**outcomes, "success": round(raw["success_rate"] * n)}
    if "ros" in raw:
        cell["ros"] = _normalise_ros(raw["ros"], where)
    successes = int(outcomes.get("success", 0))
    cell.update(
        episodes=n,
        successes=successes,
        success_rate=successes / n if n else 0.0,
        ci95=list(wilson_interval(successes, n)),
        outcomes=outcomes,
        collision_rate=sum(outcomes.get(o, 0) for o in _FAILED_FLIGHT) / n if n else 0.0,
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
        "errors": sum(e["ros_outcome"] in _NO_GRAPH_OUTCOME for e in episodes),
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
            f"{name} was flown on the same seeds ({_seed_text(overlap)}) in {a['sources'][0]} "
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


def _is_number(x: Any) -> bool:
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


# ---------------------------------------------------------------------------------------------------------------
# Rates


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


def _index(cells: Iterable[Cell]) -> dict[tuple[str, str, str], Cell]:
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
    return f"{world} {_PRESET_LABELS.get(preset, preset.replace('_', ' '))}"


def ood_mean(cells: Sequence[Cell], controller: str, world: str | None = None) -> Rate | None:
    """Mean success of ``controller`` over the out-of-distribution conditions it ran (in ``world``, or all)."""
    chosen = [
        c
        for c in cells
        if c["controller"] == controller and c["preset"] != IN_DIST and (world is None or c["world"] == world)
    ]
    return mean_rate(chosen)


def coverage_section(cells: Sequence[Cell]) -> str:
    """Which OOD conditions each training profile draws, and every controller's mean over the true shifts.

    The true shifts (``TRUE_SHIFTS``) lie beyond every randomisation profile and the training
    augmentation, so their mean measures out-of-distribution flight whatever a controller was trained on.
    """
    presets = [p for p in OOD_PRESETS if any(c["preset"] == p for c in cells)]
    if not presets:
        return ""
    profiles = list(RANDOMIZATION)
    rows = [
        [p.replace("_", " ")] + [preset_coverage(p, prof) for prof in profiles] + ["yes" if p in TRUE_SHIFTS else ""]
        for p in presets
    ]
    md = [
        "Conditions a training randomisation profile draws (`lnn_nav.sim.presets.RANDOMIZATION`; "
        "`lnn-nav collect --randomize`) are *covered*; the rest are *beyond* it. The true shifts lie beyond "
        "every profile and the training augmentation.\n",
        markdown_table(["condition"] + [f"{prof} profile" for prof in profiles] + ["true shift"], rows),
    ]
    shifts = [(w, p) for w, p in conditions_in(cells) if p in TRUE_SHIFTS]
    means = []
    index = _index(cells)
    for name in controllers_in(cells):
        ran = [index[(name, *wp)] for wp in shifts if (name, *wp) in index]
        rate = mean_rate(ran)
        if rate is not None:
            means.append([name, str(rate), f"{len(ran)} of {len(shifts)}"])
    if means:
        md += [
            f"Mean success over the true shifts ({', '.join(condition_label(w, p) for w, p in shifts)}):\n",
            markdown_table(["controller", "true-shift mean", "cells"], means),
        ]
    return "\n".join(md)


# ---------------------------------------------------------------------------------------------------------------
# Tables


def success_table(cells: Sequence[Cell], world: str | None = None) -> str:
    """Success rate with 95 % CI: rows controllers, columns conditions, an OOD mean per world and overall.

    ``world`` restricts the table to one world (its OOD mean is then the only
    one). A controller that did not run a condition others ran shows
    ``not run`` there.
    """
    if world is not None:
        cells = [c for c in cells if c["world"] == world]
    index = _index(cells)
    conditions = conditions_in(cells)
    worlds = list(dict.fromkeys(w for w, _ in conditions))
    columns: list[tuple[str, Any]] = []
    for w in worlds:
        columns += [(condition_label(w, p), (w, p)) for ww, p in conditions if ww == w]
        if any(p != IN_DIST for ww, p in conditions if ww == w):
            columns.append((f"{w} OOD mean", ("ood", w)))
    if len(worlds) > 1 and any(p != IN_DIST for _, p in conditions):
        columns.append(("OOD mean", ("ood", None)))
    rows = []
    for name in controllers_in(cells):
        row = [name]
        for _, key in columns:
            if key[0] == "ood":
                rate = ood_mean(cells, name, key[1])
            else:
                cell = index.get((name, *key))
                rate = cell_rate(cell) if cell else None
            row.append(str(rate) if rate else "not run")
        rows.append(row)
    return markdown_table(["controller"] + [label for label, _ in columns], rows)


def path_length_ratios(cells: Sequence[Cell]) -> dict[tuple[str, str, str], tuple[float, int]]:
    """Mean path length relative to the expert on the same worlds, per (controller, world, preset).

    Episodes pair by (world, preset, seed); only pairs where both flights
    reached the goal count (a crash cuts a path short). Value: (mean ratio,
    pairs). Absent when no expert ran the condition or no pair exists.
    """
    expert_paths: dict[tuple[str, str, Any], float] = {}
    for c in cells:
        if controller_core(c["controller"]) == EXPERT:
            for e in c.get("episodes_detail") or []:
                if e["outcome"] == "success" and _is_number(e.get("path_length")) and e["path_length"] > 0:
                    expert_paths[(c["world"], c["preset"], e.get("seed"))] = e["path_length"]
    ratios = {}
    for c in cells:
        pairs = [
            e["path_length"] / expert_paths[(c["world"], c["preset"], e.get("seed"))]
            for e in c.get("episodes_detail") or []
            if e["outcome"] == "success"
            and _is_number(e.get("path_length"))
            and (c["world"], c["preset"], e.get("seed")) in expert_paths
        ]
        if pairs:
            ratios[(c["controller"], c["world"], c["preset"])] = (sum(pairs) / len(pairs), len(pairs))
    return ratios


def metrics_table(cells: Sequence[Cell]) -> str:
    """Per condition and controller: episodes, collision rate, time to goal, path vs expert, clearance.

    Collision counts out-of-bounds flights too (both end the flight on a
    failure of the pilot). Time to goal averages successful episodes. Path /
    expert: mean ratio over seeds both reached the goal on (pairs in brackets).
    Clearance: mean over episodes of each one's closest approach to an
    obstacle, and the closest of all.
    """
    ratios = path_length_ratios(cells)
    index = _index(cells)
    rows = []
    for world, preset in conditions_in(cells):
        for name in controllers_in(cells):
            cell = index.get((name, world, preset))
            if cell is None:
                continue
            ratio = ratios.get((name, world, preset))
            time = cell.get("mean_time_to_goal")
            clearance = cell.get("mean_min_clearance")
            worst = cell.get("min_min_clearance")
            rows.append(
                [
                    condition_label(world, preset),
                    name,
                    str(cell["episodes"]),
                    f"{cell['success_rate'] * 100:.0f}%",
                    f"{cell['collision_rate'] * 100:.0f}%",
                    f"{time:.1f}" if _is_number(time) else "—",
                    f"{ratio[0]:.2f} ({ratio[1]})" if ratio else "—",
                    (f"{clearance:.2f}" + (f" (min {worst:.2f})" if _is_number(worst) else ""))
                    if _is_number(clearance)
                    else "—",
                ]
            )
    header = [
        "condition",
        "controller",
        "episodes",
        "success",
        "collision",
        "time to goal (s)",
        "path / expert (pairs)",
        "clearance (m)",
    ]
    return markdown_table(header, rows, left=2)


# ---------------------------------------------------------------------------------------------------------------
# Targets


@dataclass(frozen=True)
class Drop:
    """Success lost from in- to out-of-distribution over a fixed set of conditions (rates, not points)."""

    controller: str
    in_dist: float
    ood: float

    @property
    def drop(self) -> float:
        return self.in_dist - self.ood


@dataclass(frozen=True)
class TargetCheck:
    """One target of issue 8: ``status`` is ``met``, ``not met`` or ``not run``; ``text`` says it with numbers."""

    target: str
    status: str
    text: str


def degradation(cells: Sequence[Cell]) -> tuple[list[Drop], list[Condition]]:
    """In-distribution vs OOD success of every liquid core and baseline, on the conditions all of them ran.

    A common set keeps the comparison fair: a controller that skipped the
    hardest condition would otherwise look robust. In-distribution is the
    mean over the worlds of that set, OOD the mean over its OOD conditions.
    Returns the drops (table order) and the OOD conditions compared.
    """
    compared = [n for n in controllers_in(cells) if controller_core(n) in LIQUID_CORES + BASELINE_CORES]
    ood = _common_ood(cells, compared)
    drops = []
    for n in compared if ood else []:
        in_dist, out = _in_and_ood_cells(cells, n, ood)
        drops.append(
            Drop(
                n,
                sum(c["success_rate"] for c in in_dist) / len(in_dist),
                sum(c["success_rate"] for c in out) / len(out),
            )
        )
    return drops, ood


def _common_ood(cells: Sequence[Cell], controllers: Sequence[str]) -> list[Condition]:
    """OOD conditions every one of ``controllers`` ran, in worlds where each also ran in-distribution."""
    index = _index(cells)
    return [
        (w, p)
        for w, p in conditions_in(cells)
        if p != IN_DIST and all((n, w, p) in index and (n, w, IN_DIST) in index for n in controllers)
    ]


def _in_and_ood_cells(
    cells: Sequence[Cell], controller: str, ood: Sequence[Condition]
) -> tuple[list[Cell], list[Cell]]:
    """``controller``'s in-distribution cells in the worlds of ``ood``, and its cells of ``ood``."""
    index = _index(cells)
    worlds = list(dict.fromkeys(w for w, _ in ood))
    # The key is built first: mypy reads index[(a, *b)] as 3.11's index[a, *b] and rejects it under 3.10.
    ood_keys = [(controller, *wp) for wp in ood]
    return [index[(controller, w, IN_DIST)] for w in worlds], [index[key] for key in ood_keys]


def _pp(x: float) -> str:
    """Percentage points, one decimal: means over conditions are rarely whole percents."""
    return f"{x * 100:.1f} pp"


def _change(drop: float) -> str:
    """A drop as a signed change: 0.1 -> ``−10.0 pp``, -0.05 (better OOD) -> ``+5.0 pp``."""
    return f"{-drop * 100:+.1f} pp".replace("-", "−")


def _drop_text(d: Drop) -> str:
    return f"{d.controller} {d.in_dist * 100:.1f}% → {d.ood * 100:.1f}% ({_change(d.drop)})"


def split_combinations(cells: Sequence[Cell]) -> tuple[list[Cell], list[Cell]]:
    """(combination-preset cells, the rest): combinations never enter the OOD means or the targets."""
    named = (IN_DIST,) + OOD_PRESETS
    rest = [c for c in cells if c["preset"] in named]
    if not rest:  # only combinations: report them as the main cells
        return [], list(cells)
    return [c for c in cells if c["preset"] not in named], rest


def check_targets(cells: Sequence[Cell]) -> list[TargetCheck]:
    """Issue 8's targets against the measured numbers, each met, not met or not run (named presets only)."""
    cells = split_combinations(cells)[1]
    index = _index(cells)
    checks = []
    flagship = [n for n in controllers_in(cells) if controller_core(n) == "cfc-ncp"]
    for world in WORLD_KINDS:
        target = f"cfc-ncp ≥{IN_DIST_TARGET:.0%} in distribution, {world}"
        runs = [index[(n, world, IN_DIST)] for n in flagship if (n, world, IN_DIST) in index]
        if not runs:
            checks.append(TargetCheck(target, "not run", f"cfc-ncp was not run in-distribution in the {world} world."))
        for cell in runs:
            rate = cell_rate(cell)
            met = rate.value >= IN_DIST_TARGET
            note = "" if not met or rate.lo >= IN_DIST_TARGET else f" (the interval reaches below {IN_DIST_TARGET:.0%})"
            checks.append(
                TargetCheck(
                    target,
                    "met" if met else "not met",
                    f"{cell['controller']}: {rate} over {cell['episodes']} episodes{note}.",
                )
            )
    target = f"cfc-ncp ≥{OOD_TARGET:.0%} averaged over OOD conditions"
    suite_ood = [(w, p) for w in WORLD_KINDS for p in presets_for(w) if p != IN_DIST]
    if not any(ood_mean(cells, n) for n in flagship):
        checks.append(TargetCheck(target, "not run", "cfc-ncp was not run under any out-of-distribution condition."))
    for name in flagship:
        rate = ood_mean(cells, name)
        if rate is None:
            continue
        missing = [(w, p) for w, p in suite_ood if (name, w, p) not in index]
        note = f"; not run: {', '.join(condition_label(w, p) for w, p in missing)}" if missing else ""
        checks.append(
            TargetCheck(
                target,
                "met" if rate.value >= OOD_TARGET else "not met",
                f"{name}: {rate} averaged over {rate.cells} conditions{note}.",
            )
        )
    checks.append(_degradation_check(cells))
    return checks


def _degradation_check(cells: Sequence[Cell]) -> TargetCheck:
    target = "liquid cores degrade less OOD than LSTM/GRU/CNN"
    drops, ood = degradation(cells)
    liquid = [d for d in drops if controller_core(d.controller) in LIQUID_CORES]
    base = [d for d in drops if controller_core(d.controller) in BASELINE_CORES]
    present = {controller_core(c["controller"]) for c in cells}
    for side, cores in (("liquid core", LIQUID_CORES), ("baseline", BASELINE_CORES)):
        if not present & set(cores):
            return TargetCheck(target, "not run", f"Cannot compare: no {side} ({', '.join(cores)}) was run.")
    if not liquid or not base:
        return TargetCheck(
            target,
            "not run",
            "Cannot compare: the liquid cores and baselines share no world with "
            "both an in-distribution and an out-of-distribution run.",
        )
    over = f"over {len(ood)} OOD condition{'s' * (len(ood) != 1)} all of them ran"
    mean_l = sum(d.drop for d in liquid) / len(liquid)
    mean_b = sum(d.drop for d in base) / len(base)
    numbers = (
        f"Liquid: {'; '.join(map(_drop_text, liquid))}. Baselines: {'; '.join(map(_drop_text, base))}. "
        f"Mean drop {_pp(mean_l)} (liquid) vs {_pp(mean_b)} (baselines), {over}."
    )
    worse = [(liq, b) for liq in liquid for b in base if liq.drop >= b.drop]
    if not worse:
        return TargetCheck(
            target, "met", f"Every liquid core lost less success out of distribution than every baseline. {numbers}"
        )
    pairs = ", ".join(
        f"{liq.controller} ({_change(liq.drop)}) vs {b.controller} ({_change(b.drop)})" for liq, b in worse[:4]
    )
    more = f" and {len(worse) - 4} more" if len(worse) > 4 else ""
    # A mean over baselines can be pulled by one weak baseline, so say which comparison the mean wins.
    summary = (
        "The liquid cores lost less than the baselines' mean drop, but not less than every baseline"
        if mean_l < mean_b
        else "The liquid cores did not degrade less than the baselines"
    )
    return TargetCheck(target, "not met", f"{summary}: {pairs}{more} lost as much or more. {numbers}")


# ---------------------------------------------------------------------------------------------------------------
# Figures


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # headless: benchmark machines and CI have no display
    import matplotlib.pyplot as plt

    return plt


def _colour(name: str, i: int) -> Any:
    core = controller_core(name)
    if core and core == name:
        return _COLOURS[core]
    return _pyplot().cm.tab10(i % 10)


def _bars(ax: Any, groups: Sequence[str], series: Sequence[tuple[str, Sequence[Rate | None]]]) -> None:
    width = 0.8 / max(len(series), 1)
    x = np.arange(len(groups))
    for i, (name, rates) in enumerate(series):
        xs = x - 0.4 + width * (i + 0.5)
        for xi, rate in zip(xs, rates):
            if rate is None:
                ax.text(xi, 0.02, "not run", rotation=90, ha="center", va="bottom", fontsize=6, color="#777777")
        present = [(xi, r) for xi, r in zip(xs, rates) if r is not None]
        if not present:
            ax.bar([], [], width, color=_colour(name, i), label=name)
            continue
        px, pr = zip(*present)
        values = np.array([r.value for r in pr])
        err = np.array([[r.value - r.lo for r in pr], [r.hi - r.value for r in pr]])
        ax.bar(
            px,
            values,
            width,
            yerr=err,
            capsize=2,
            color=_colour(name, i),
            label=name,
            error_kw={"elinewidth": 0.8, "ecolor": "#333333"},
        )
    ax.set_xticks(x, groups, rotation=25, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_yticks(np.linspace(0, 1, 6), [f"{v:.0%}" for v in np.linspace(0, 1, 6)])
    ax.set_ylabel("success rate")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)


def plot_success_bars(cells: Sequence[Cell], path: str | Path) -> Path:
    """Grouped bars, one panel per world: success per condition and the OOD mean, one colour per controller."""
    plt = _pyplot()
    path = Path(path)
    conditions = conditions_in(cells)
    worlds = list(dict.fromkeys(w for w, _ in conditions))
    names = controllers_in(cells)
    index = _index(cells)
    most = max(sum(1 for w, _ in conditions if w == world) + 1 for world in worlds)
    fig, axes = plt.subplots(
        len(worlds), 1, figsize=(max(7.0, 0.28 * most * len(names) + 2.5), 3.6 * len(worlds) + 0.6), squeeze=False
    )
    for ax, world in zip(axes[:, 0], worlds):
        presets = [p for w, p in conditions if w == world]
        groups = [_PRESET_LABELS.get(p, p.replace("_", " ")) for p in presets]
        has_ood = any(p != IN_DIST for p in presets)
        series = []
        for name in names:
            rates = [cell_rate(index[(name, world, p)]) if (name, world, p) in index else None for p in presets]
            if has_ood:
                rates.append(ood_mean(cells, name, world))
            series.append((name, rates))
        _bars(ax, groups + (["OOD mean"] if has_ood else []), series)
        if has_ood:
            ax.axvline(len(presets) - 0.5, color="#999999", lw=0.8, ls=":")
        ax.set_title(f"{world}: success rate with 95% interval", fontsize=10)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=min(len(names), 7), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / fig.get_figheight()))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_in_vs_ood(cells: Sequence[Cell], path: str | Path) -> Path:
    """Per controller: in-distribution and OOD-mean success side by side, the drop written above.

    On the conditions of :func:`degradation` (those every liquid core and
    baseline ran), so the bars show the drop table's numbers; the expert
    joins when it ran them too.
    """
    plt = _pyplot()
    path = Path(path)
    _, ood = degradation(cells)
    if not ood:
        raise ValueError("no out-of-distribution condition that every liquid core and baseline ran in-distribution too")
    index = _index(cells)
    names = [
        n
        for n in controllers_in(cells)
        if controller_core(n) in LIQUID_CORES + BASELINE_CORES
        or all((n, w, p) in index and (n, w, IN_DIST) in index for w, p in ood)
    ]
    pairs = [_in_and_ood_cells(cells, n, ood) for n in names]
    in_rates = [mean_rate(a) for a, _ in pairs]
    out_rates = [mean_rate(b) for _, b in pairs]
    fig, ax = plt.subplots(figsize=(max(5.5, 1.1 * len(names) + 1.5), 3.8))
    _bars(ax, names, [("in distribution", in_rates), ("OOD mean", out_rates)])
    for x, (a, b) in enumerate(zip(in_rates, out_rates)):
        if a is not None and b is not None:
            ax.text(
                x, min(max(a.hi, b.hi) + 0.02, 1.0), _change(a.value - b.value), ha="center", va="bottom", fontsize=8
            )
    ax.set_xticks(range(len(names)), names, rotation=0, ha="center", fontsize=9)
    ax.set_ylim(0, 1.12)
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title(
        f"in distribution vs OOD mean over {', '.join(condition_label(w, p) for w, p in ood)}", fontsize=9, wrap=True
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_tracks(
    world_kind: str,
    seed: int,
    preset: str,
    tracks: Mapping[str, Any],
    path: str | Path,
    outcomes: Mapping[str, str] | None = None,
    title: str = "",
    **world_overrides: Any,
) -> Path:
    """Top-down map of the ``world_kind`` world ``seed`` under ``preset`` with each controller's ``[N, 3]`` track.

    The world is rebuilt with :func:`lnn_nav.sim.presets.make_world` (same
    seed and preset give the same geometry the episodes flew through).
    ``outcomes`` labels each track and marks where a collision or
    out-of-bounds flight ended.
    """
    from lnn_nav.sim.presets import make_world
    from lnn_nav.sim.viz import plot_top_down

    world = make_world(world_kind, seed, preset, **world_overrides)
    outcomes = outcomes or {}
    labelled: dict[str, np.ndarray] = {}
    crashes: dict[str, np.ndarray] = {}
    for name, track in tracks.items():
        array = np.asarray(track, dtype=float)
        if array.ndim != 2 or array.shape[1] < 2 or len(array) < 1:
            raise ValueError(f"track '{name}' must be [N, 2] or [N, 3] positions, got shape {list(array.shape)}")
        label = f"{name} ({outcomes[name]})" if name in outcomes else name
        labelled[label] = array
        if outcomes.get(name) in _FAILED_FLIGHT:
            crashes[label] = array[-1]
    title = title or f"{condition_label(world_kind, preset)}, seed {seed}"
    return plot_top_down(world, Path(path), labelled, title=title, crashes=crashes)


def _map_choices(cells: Sequence[Cell]) -> list[tuple[str, str, int, dict[str, Any], dict[str, str]]]:
    """Per world: the in-distribution condition and the OOD one where controllers differ most, on a seed
    where their outcomes differ (the instructive case) when there is one."""
    chosen = []
    by_condition: dict[Condition, list[Cell]] = {}
    for c in cells:
        if any(e.get("track") for e in c.get("episodes_detail") or []):
            by_condition.setdefault((c["world"], c["preset"]), []).append(c)
    for world in dict.fromkeys(w for w, _ in conditions_in(cells)):
        ood = [(w, p) for w, p in by_condition if w == world and p != IN_DIST]
        spread = sorted(ood, key=lambda wp: -np.ptp([c["success_rate"] for c in by_condition[wp]]))
        for condition in [(world, IN_DIST)] * ((world, IN_DIST) in by_condition) + spread[:1]:
            group = sorted(by_condition[condition], key=lambda c: controllers_in(cells).index(c["controller"]))
            episodes = {
                c["controller"]: {e.get("seed"): e for e in c["episodes_detail"] if e.get("track")} for c in group
            }
            seeds = sorted(set.intersection(*(set(e) for e in episodes.values())), key=str)
            if not seeds:
                continue
            mixed = [s for s in seeds if len({eps[s]["outcome"] for eps in episodes.values()}) > 1]
            seed = (mixed or seeds)[0]
            chosen.append(
                (
                    world,
                    condition[1],
                    seed,
                    {n: eps[seed]["track"] for n, eps in episodes.items()},
                    {n: eps[seed]["outcome"] for n, eps in episodes.items()},
                )
            )
    return chosen


def camera_worlds(cells: Sequence[Cell]) -> list[tuple[str, str, int]]:
    """(world, preset, seed) to film: the mapped worlds, or else each world's first in-distribution seed."""
    chosen = [(world, preset, seed) for world, preset, seed, _, _ in _map_choices(cells)]
    if chosen:
        return chosen
    for world in dict.fromkeys(w for w, _ in conditions_in(cells)):
        seeds = [
            e.get("seed")
            for c in cells
            if (c["world"], c["preset"]) == (world, IN_DIST)
            for e in c.get("episodes_detail") or []
            if isinstance(e.get("seed"), int)
        ]
        if seeds:
            chosen.append((world, IN_DIST, min(seeds)))
    return chosen


def _camera_gifs(cells: Sequence[Cell], cameras: Mapping[str, str | Path], out: Path, on_progress: Any | None) -> str:
    from lnn_nav.eval.camera import camera_section, fly_with_camera, plot_core_traces, write_saliency_gif

    worlds = camera_worlds(cells)
    if not worlds:
        return "No held-out seeds in the results to fly again.\n"
    index = _index(cells)
    flights, names, stems, benchmark = [], [], [], []
    for world, preset, seed in worlds:
        for name, checkpoint in cameras.items():
            flight = fly_with_camera(checkpoint, world, seed, preset)
            stem = f"{name}_{world}_{preset}_{seed}"
            gif = f"camera_{stem}.gif"
            # Every third control step, at the policy's input size, 64 colours: a minute of flight in
            # about 1 MB (at camera size and full colour, 6 MB).
            write_saliency_gif(flight, out / gif, stride=3, side_by_side=True, scale=1, input_size=True, colors=64)
            plot_core_traces(flight, out / f"neurons_{stem}.png")
            cell = index.get((normalise_name(name), world, preset))
            episode = next((e for e in (cell or {}).get("episodes_detail") or [] if e.get("seed") == seed), None)
            flights.append(flight)
            names.append(normalise_name(name))
            stems.append(stem)
            benchmark.append(episode)
            if on_progress is not None:
                on_progress(f"camera: {name} {world} {preset} seed {seed} -> {flight.outcome}, wrote {gif}")
    return camera_section(flights, names, stems, benchmark)


# ---------------------------------------------------------------------------------------------------------------
# ROS 2 graph agreement


def ros_agreement(cells: Sequence[Cell]) -> tuple[int, int, int] | None:
    """``(agreements, flown, errors)`` over every cell's ROS 2 graph check, or None when no cell has one."""
    blocks = [c["ros"] for c in cells if "ros" in c]
    if not blocks:
        return None
    return sum(b["agreements"] for b in blocks), sum(b["flown"] for b in blocks), sum(b["errors"] for b in blocks)


def ros_agreement_line(cells: Sequence[Cell]) -> str | None:
    """One line for the terminal, or None when no cell was checked through the graph."""
    total = ros_agreement(cells)
    if total is None:
        return None
    agree, flown, errors = total
    text = f"ROS 2 graph: {agree}/{flown} outcomes as in-process"
    if agree < flown:
        text += f" ({flown - agree} disagree{f', {errors} without a graph outcome' if errors else ''})"
    return text


def ros_agreement_section(cells: Sequence[Cell]) -> str | None:
    """Graph flights against in-process flights of the same seeds: a table and what still differs."""
    checked = [c for c in cells if "ros" in c]
    if not checked:
        return None
    index = _index(checked)
    rows = []
    for name in controllers_in(checked):
        for world, preset in conditions_in(checked):
            cell = index.get((name, world, preset))
            if cell is None:
                continue
            ros = cell["ros"]
            differ = [
                f"{e['seed']}: ROS {e['ros_outcome']}, in-process {e['inprocess_outcome']}"
                for e in ros["episodes"]
                if not e["agree"]
            ]
            rows.append(
                [
                    name,
                    condition_label(world, preset),
                    _seed_text([e["seed"] for e in ros["episodes"]]),
                    f"{ros['agreements']}/{ros['flown']}",
                    "; ".join(differ) or "none",
                ]
            )
    agree, flown, _ = ros_agreement(cells) or (0, 0, 0)
    notes = list(dict.fromkeys(n for c in checked for n in c["ros"].get("notes", [])))
    text = (
        "The first seeds of each cell flown again through the ROS 2 graph (`sim_node` and the controller "
        "node or `expert_node` as separate processes over DDS, as `lnn-nav fly` runs them), against the "
        f"in-process episode of the same seed: {agree}/{flown} outcomes agree. Agreement is of the outcome "
        "only: the two runs do not share the noise (below), so a world the controller barely passes or fails "
        "can end either way. Disagreements on worlds it passes reliably in-process would point at the "
        "graph itself (transport, timing, message conversion).\n\n"
    )
    text += markdown_table(
        ["controller", "condition", "seeds", "agree", "disagreements (seed: outcomes)"], rows, left=5
    )
    if notes:
        text += "\nWhat is and is not the same between the two:\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    return text


# ---------------------------------------------------------------------------------------------------------------
# The report


def _seed_text(seeds: Sequence[Any]) -> str:
    """``[1000, 1001, 1002, 1005]`` -> ``1000–1002, 1005``."""
    ints = sorted(s for s in seeds if isinstance(s, int))
    parts, start = [], None
    for i, s in enumerate(ints):
        start = s if start is None else start
        if i + 1 == len(ints) or ints[i + 1] != s + 1:
            parts.append(f"{start}–{s}" if s != start else f"{s}")
            start = None
    return ", ".join(parts + [str(s) for s in seeds if not isinstance(s, int)])


def _seeds_section(cells: Sequence[Cell]) -> str:
    groups: dict[tuple[str, int], list[str]] = {}
    for c in cells:
        seeds = [e.get("seed") for e in c.get("episodes_detail") or []]
        if seeds:
            text = _seed_text(seeds)
        elif "seed_range" in c:
            text = f"{c['seed_range'][0]}–{c['seed_range'][1]} (from the file's seed range)"
        else:
            text = "not recorded"
        groups.setdefault((text, c["episodes"]), []).append(
            f"{c['controller']} {condition_label(c['world'], c['preset'])}"
        )
    if len(groups) == 1:
        (text, n), _ = next(iter(groups.items()))
        return (
            f"Every cell: {n} episodes on held-out seeds {text}, the same worlds for every controller and "
            f"condition ({len(cells)} cells, {sum(c['episodes'] for c in cells)} episodes).\n"
        )
    lines = ["Episodes and seeds differ between cells:\n"]
    for (text, n), members in groups.items():
        lines.append(f"- {n} episodes, seeds {text}: {', '.join(members)}")
    return "\n".join(lines) + "\n"


def _not_run_section(cells: Sequence[Cell]) -> str:
    cores = {controller_core(c["controller"]) for c in cells}
    missing_controllers = [core for core in SUITE_CONTROLLERS if core not in cores]
    run = {(c["world"], c["preset"]) for c in cells}
    missing_conditions = [(w, p) for w in WORLD_KINDS for p in presets_for(w) if (w, p) not in run]
    index = _index(cells)
    conditions = conditions_in(cells)
    gaps = [
        f"{n}: {', '.join(condition_label(w, p) for w, p in conditions if (n, w, p) not in index)}"
        for n in controllers_in(cells)
        if any((n, w, p) not in index for w, p in conditions)
    ]
    lines = []
    if missing_controllers:
        lines.append(f"- Controllers not run: {', '.join(missing_controllers)}.")
    if missing_conditions:
        lines.append(
            f"- Conditions not run (by any controller): "
            f"{', '.join(condition_label(w, p) for w, p in missing_conditions)}."
        )
    lines += [f"- Not run by {gap}." for gap in gaps]
    return "\n".join(lines) + "\n" if lines else "The full suite was run: every controller in every condition.\n"


def _degradation_section(cells: Sequence[Cell], check: TargetCheck) -> str:
    drops, ood = degradation(cells)
    text = (
        "Success lost from in-distribution to out-of-distribution, on the conditions every liquid core and "
        f"baseline ran ({', '.join(condition_label(w, p) for w, p in ood) or 'none in common'}); "
        "in distribution is the mean over the same worlds.\n\n"
    )
    if drops:
        rows = [[d.controller, f"{d.in_dist:.1%}", f"{d.ood:.1%}", _change(d.drop)] for d in drops]
        text += markdown_table(["controller", "in distribution", "OOD mean", "change"], rows) + "\n"
    widths = [(c["ci95"][1] - c["ci95"][0]) / 2 for c in cells]
    return (
        text + f"{check.text}\n\nFor scale: the median 95% interval of a single cell here is "
        f"±{median(widths) * 100:.0f} points, so differences in drop of a few points are within the noise.\n"
    )


def write_report(
    cells: Sequence[Cell],
    out_dir: str | Path,
    extra_sections: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
    title: str = "Closed-loop benchmark: liquid controllers vs baselines",
    maps: bool = True,
    cameras: Mapping[str, str | Path] | None = None,
    on_progress: Any | None = None,
) -> Path:
    """Write ``out_dir/report.md`` with its charts (and maps, when the episodes carry tracks) and
    ``cells.csv`` (one row per cell); return the report's path.

    ``extra_sections``: (heading, markdown) pairs appended at the end.
    ``cameras``: controller name -> checkpoint; each is flown again
    in-process on the mapped worlds (:func:`camera_worlds`) and its onboard
    camera with saliency written as a GIF. ``on_progress(text)`` hears of
    each such flight.
    """
    if not cells:
        raise ResultsError("no result cells to report")
    # Combinations and graded versions of the presets (COMBINATION_PRESETS) get their own table: the
    # OOD means and targets stay over the named presets, so adding combinations never moves them.
    sources = sorted({s for c in cells for s in c.get("sources", [])})
    combos, cells = split_combinations(cells)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot_success_bars(cells, out / "success_rates.png")
    write_csv(cell_rows(cells), CELL_COLUMNS, out / "cells.csv")
    has_ood = any(c["preset"] != IN_DIST for c in cells)
    drops, ood = degradation(cells)
    if drops:
        plot_in_vs_ood(cells, out / "in_vs_ood.png")
    checks = check_targets(cells)
    marks = {"met": "✅ **met**", "not met": "❌ **not met**", "not run": "⚪ **not run**"}
    worlds = list(dict.fromkeys(w for w, _ in conditions_in(cells)))

    md = [
        f"# {title}\n",
        f"Controllers: {', '.join(controllers_in(cells))}. Worlds: {', '.join(worlds)}. "
        f"Sources: {', '.join(f'`{s}`' for s in sources) or 'in memory'}.\n",
        _seeds_section(cells),
        "## Targets (issue 8)\n",
        markdown_table(["target", "result", "numbers"], [[c.target, marks[c.status], c.text] for c in checks], left=3),
        "## Success rate\n",
        "Success rate with its 95% Wilson interval, `rate [low–high]`. OOD mean: the unweighted mean over the "
        "out-of-distribution conditions run, its interval the per-condition intervals combined in quadrature. "
        "Every cell with its metrics as CSV: [`cells.csv`](cells.csv).\n",
    ]
    for world in worlds:
        md += [f"### {world}\n", success_table(cells, world)]
    if len(worlds) > 1:
        md += ["### all worlds\n", success_table(cells)]
    md += ["![success rates per condition](success_rates.png)\n"]
    if has_ood:
        md += ["## What training covers\n", coverage_section(cells)]
        md += ["## In distribution vs out of distribution\n", _degradation_section(cells, checks[-1])]
        if drops:
            md.append("![in distribution vs OOD](in_vs_ood.png)\n")
    seeds = seed_comparison_section(
        cells, conditions_in(cells), condition_label, controller_core, LIQUID_CORES, BASELINE_CORES, TRUE_SHIFTS
    )
    if seeds is not None:
        md += ["## Over training seeds\n", seeds]
    if combos:
        md += [
            "## Combined and graded shifts\n",
            "Conditions beyond the named presets, never trained or tuned on: combinations (fall with haze, "
            "winter with haze, a fall evening) and milder or stronger versions (a low morning sun, light and "
            "heavy fog, moderate wind). The mean column is over these conditions only.\n",
            success_table(combos + [c for c in cells if c["preset"] == IN_DIST]),
        ]
    md += ["## Flight metrics\n", metrics_table(cells)]
    md += ["## Why the crashes\n", crash_section(cells, out, condition_label, _colour)]
    md += ["## Why the timeouts\n", timeout_section(cells, condition_label)]
    if maps:
        md += ["## Trajectories\n"]
        choices = _map_choices(cells)
        if not choices:
            md.append("The results carry no episode tracks, so no maps are drawn (`lnn-nav eval` keeps them).\n")
        for world, preset, seed, tracks, outcomes in choices:
            name = f"map_{world}_{preset}_{seed}.png"
            try:
                plot_tracks(world, seed, preset, tracks, out / name, outcomes=outcomes)
            except ValueError as exc:  # a world or preset this simulator version cannot rebuild
                md.append(f"No map for {condition_label(world, preset)} seed {seed}: {exc}.\n")
                continue
            md.append(f"![{condition_label(world, preset)}, seed {seed}]({name})\n")
    if cameras:
        md += ["## Onboard camera\n", _camera_gifs(cells, cameras, out, on_progress)]
    ros = ros_agreement_section(cells)
    if ros is not None:
        md += ["## Through the ROS 2 graph\n", ros]
    md += ["## Not run\n", _not_run_section(cells)]
    sections = extra_sections.items() if isinstance(extra_sections, Mapping) else (extra_sections or [])
    for heading, body in sections:
        md += [f"## {heading}\n", body.rstrip() + "\n"]
    path = out / "report.md"
    path.write_text("\n".join(md))
    return path
