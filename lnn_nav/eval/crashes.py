"""The report's "why the crashes" section: what each controller hit, from where, and whether the expert disagreed.

`lnn-nav eval` attaches a crash report (:mod:`lnn_nav.sim.forensics`) to
every collision episode; this module tallies them per controller and
condition into a table and a polar chart of the contact bearings. Results
written before crash reports existed simply have none: the section then
says so rather than showing zeros.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lnn_nav.eval.markdown import markdown_table, number_or_dash
from lnn_nav.sim.forensics import HOVER_SPEED, YAW_GAP, summarize_crashes

Cell = dict[str, Any]

#: What a material means to a reader (lnn_nav.sim.world.MATERIALS).
OBSTACLE_NAMES = {
    "bark": "trunk",
    "leaves": "canopy",
    "undergrowth": "bush",
    "pole": "street pole",
    "concrete": "building",
    "glass": "building",
    "car": "car",
    "asphalt": "road",
    "beacon": "goal beacon",
    "ground": "ground",
}


def crash_reports(cell: Cell) -> list[dict[str, Any]]:
    """The crash reports of a cell's collision episodes (empty for results without them)."""
    return [e["crash"] for e in cell.get("episodes_detail") or [] if isinstance(e.get("crash"), dict)]


def _obstacles(materials: dict[str, int]) -> str:
    named: dict[str, int] = {}
    for material, count in materials.items():
        name = OBSTACLE_NAMES.get(material, material)
        named[name] = named.get(name, 0) + count
    return ", ".join(f"{name} {count}" for name, count in sorted(named.items(), key=lambda kv: (-kv[1], kv[0])))


def _sided(s: dict[str, Any], key: str) -> str:
    """``k/n`` over the crashes that have the turning/sliding fields (results before them: ``–``)."""
    return f"{s[key]}/{s['sided']}" if s["sided"] else "–"


def crash_line(cell: Cell) -> str | None:
    """One console line summing up a cell's crashes (``None`` without any)."""
    reports = crash_reports(cell)
    if not reports:
        return None
    s = summarize_crashes(reports)
    line = (
        f"crashes: {_obstacles(s['materials'])}; contact ahead {s['ahead']}, 30 deg to edge of view {s['side']}, "
        f"out of view {s['out_of_view']}; hovering {s['hovering']}"
    )
    if s["sided"]:
        line += f"; turning into it {s['turning_towards']}, sliding into it {s['sliding_towards']}"
    if s["expert_asked"]:
        line += f"; expert disagreed >=1 s in {s['expert_disagreed']}/{s['expert_asked']}"
    return line


def crash_table(cells: Sequence[Cell], label: Any) -> str | None:
    """Markdown table, one row per cell with crash reports; ``None`` when no cell has any.

    ``label(world, preset)`` names a condition.
    """
    rows = []
    for cell in cells:
        reports = crash_reports(cell)
        if not reports:
            continue
        s = summarize_crashes(reports)
        asked = s["expert_asked"]
        rows.append(
            [
                cell["controller"],
                label(cell["world"], cell["preset"]),
                str(s["crashes"]),
                _obstacles(s["materials"]),
                str(s["ahead"]),
                str(s["side"]),
                str(s["out_of_view"]),
                str(s["hovering"]),
                number_or_dash(s["median_speed"], ".1f"),
                _sided(s, "turning_towards"),
                _sided(s, "sliding_towards"),
                number_or_dash(s["median_yaw_rate_gap"], ".2f"),
                f"{s['expert_disagreed']}/{asked}" if asked else "–",
            ]
        )
    if not rows:
        return None
    header = [
        "controller",
        "condition",
        "crashes",
        "hit",
        "ahead ≤30°",
        "30° to edge of view",
        "out of view",
        f"hovering <{HOVER_SPEED:g} m/s",
        "median speed (m/s)",
        "turning into it",
        "sliding into it",
        "median yaw-rate gap (rad/s)",
        "expert disagreed ≥1 s",
    ]
    return markdown_table(header, rows, left=4)


def plot_crash_bearings(cells: Sequence[Cell], path: str | Path, colour: Any) -> Path | None:
    """Polar histograms (one per world) of where collisions touched, relative to the heading.

    ``colour(controller, i)`` picks a line colour. ``None`` when no cell has crash reports.
    """
    by_world: dict[str, dict[str, list[float]]] = {}
    for cell in cells:
        bearings = [r["bearing_heading"] for r in crash_reports(cell) if r.get("bearing_heading") is not None]
        if bearings:
            by_world.setdefault(cell["world"], {}).setdefault(cell["controller"], []).extend(bearings)
    if not by_world:
        return None
    import matplotlib

    matplotlib.use("Agg")  # headless, as the rest of the report
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1, len(by_world), subplot_kw={"projection": "polar"}, figsize=(4.2 * len(by_world), 4.4), squeeze=False
    )
    edges = np.radians(np.arange(-180, 181, 15))
    centres = 0.5 * (edges[1:] + edges[:-1])
    for ax, (world, controllers) in zip(axes[0], sorted(by_world.items())):
        for i, (name, bearings) in enumerate(sorted(controllers.items())):
            counts, _ = np.histogram(np.radians(bearings), edges)
            closed = np.append(centres, centres[0]), np.append(counts, counts[0])
            ax.plot(*closed, color=colour(name, i), label=name, linewidth=1.4)
        ax.set_theta_zero_location("N")  # straight ahead up, left to the left (ENU bearings are counter-clockwise)
        ax.set_thetamin(-180)
        ax.set_thetamax(180)
        ax.axvspan(np.radians(-45), np.radians(45), color="#dddddd", alpha=0.35, zorder=0)
        ax.set_title(f"{world}: collisions by bearing", fontsize=9)
        ax.tick_params(labelsize=7)
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.05, 1.0))
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def crash_section(cells: Sequence[Cell], out: Path, label: Any, colour: Any) -> str:
    """The report section: explanation, table and chart (or why there is none)."""
    table = crash_table(cells, label)
    if table is None:
        return (
            "These results carry no crash reports (written before `lnn-nav eval` diagnosed collisions, "
            "or no controller crashed).\n"
        )
    chart = plot_crash_bearings(cells, out / "crash_bearings.png", colour)
    text = [
        "Every collision, diagnosed from the simulator's ground truth (`lnn_nav/sim/forensics.py`): what was "
        "hit (the nearest obstacle at impact), where it touched relative to the heading (the camera sees "
        "±45°), the horizontal speed, whether over its last 0.5 s the controller was turning (yaw rate) or "
        "sliding (lateral command) towards the side it touched (out of those with a side), and the "
        "privileged expert asked for its command at each of the controller's states over the last 2 s: the "
        "median gap between its yaw rate and the controller's, and in how many crashes it disagreed (gap > "
        f"{YAW_GAP:g} rad/s) for at least 1 of those 2 s. Contact out of view while turning or sliding into "
        "it is an obstacle just passed and forgotten; contact ahead with the expert disagreeing is late or "
        "missing avoidance; contact while hovering is drift.\n",
        table,
    ]
    if chart is not None:
        text.append(f"![collisions by bearing]({chart.name})\n")
    return "\n".join(text)
