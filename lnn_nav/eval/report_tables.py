"""The report's tables: success per controller and condition, flight metrics, coverage, ROS 2 agreement.

Tables follow the layout of the liquid-drone paper (Chahine et al., Science
Robotics 2023): rows are controllers, columns are conditions, cells read
``87% [79–92]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lnn_nav.eval.markdown import markdown_table
from lnn_nav.eval.results import (
    EXPERT,
    IN_DIST,
    Cell,
    cell_rate,
    condition_label,
    conditions_in,
    controller_core,
    controllers_in,
    index_cells,
    is_number,
    mean_rate,
    ood_mean,
    seed_text,
)
from lnn_nav.sim.presets import (
    DEFAULT_RANDOMIZATION,
    OOD_PRESETS,
    RANDOMIZATION,
    SHIPPED_RANDOMIZATION,
    TRUE_SHIFTS,
    preset_coverage,
)


def coverage_section(cells: Sequence[Cell]) -> str:
    """Which OOD conditions each training profile draws, and every controller's mean over the true shifts.

    The true shifts (``TRUE_SHIFTS``) lie beyond every randomisation profile and the training
    augmentation, so their mean measures out-of-distribution flight whatever a controller was trained on.
    """
    presets = [p for p in OOD_PRESETS if any(c["preset"] == p for c in cells)]
    if not presets:
        return ""
    # The profiles the shipped controllers' demonstrations came from (stages 1-4 and stage 5); the ones only
    # experiments used would crowd the table.
    profiles = [p for p in RANDOMIZATION if p in (DEFAULT_RANDOMIZATION, SHIPPED_RANDOMIZATION)]
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
    index = index_cells(cells)
    for name in controllers_in(cells):
        ran = [index[(name, w, p)] for w, p in shifts if (name, w, p) in index]
        rate = mean_rate(ran)
        if rate is not None:
            means.append([name, str(rate), f"{len(ran)} of {len(shifts)}"])
    if means:
        md += [
            f"Mean success over the true shifts ({', '.join(condition_label(w, p) for w, p in shifts)}):\n",
            markdown_table(["controller", "true-shift mean", "cells"], means),
        ]
    return "\n".join(md)


def success_table(cells: Sequence[Cell], world: str | None = None) -> str:
    """Success rate with 95 % CI: rows controllers, columns conditions, an OOD mean per world and overall.

    ``world`` restricts the table to one world (its OOD mean is then the only
    one). A controller that did not run a condition others ran shows
    ``not run`` there.
    """
    if world is not None:
        cells = [c for c in cells if c["world"] == world]
    index = index_cells(cells)
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
                if e["outcome"] == "success" and is_number(e.get("path_length")) and e["path_length"] > 0:
                    expert_paths[(c["world"], c["preset"], e.get("seed"))] = e["path_length"]
    ratios = {}
    for c in cells:
        pairs = [
            e["path_length"] / expert_paths[(c["world"], c["preset"], e.get("seed"))]
            for e in c.get("episodes_detail") or []
            if e["outcome"] == "success"
            and is_number(e.get("path_length"))
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
    index = index_cells(cells)
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
                    f"{time:.1f}" if is_number(time) else "—",
                    f"{ratio[0]:.2f} ({ratio[1]})" if ratio else "—",
                    (f"{clearance:.2f}" + (f" (min {worst:.2f})" if is_number(worst) else ""))
                    if is_number(clearance)
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
    index = index_cells(checked)
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
                    seed_text([e["seed"] for e in ros["episodes"]]),
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
