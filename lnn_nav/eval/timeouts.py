"""The report's "why the timeouts" section: missed turns, other routes and slow flights, per controller.

`lnn-nav eval` attaches a timeout report (:func:`lnn_nav.sim.forensics.timeout_report`)
to every episode whose time ran out: where its track left the expert's
plan, where the goal lay then, and what the detour cost. This module tallies
them per controller and condition, as :mod:`lnn_nav.eval.crashes` does the
collisions. Results written before timeout reports existed (or stripped of
them) have none: the section then says so rather than showing zeros.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lnn_nav.eval.markdown import markdown_table, number_or_dash
from lnn_nav.sim.forensics import DETOUR_HORIZON, HOVER_SPEED, MISSED_TURN, OFF_PLAN, summarize_timeouts

Cell = dict[str, Any]


def timeout_reports(cell: Cell) -> list[dict[str, Any]]:
    """The timeout reports of a cell's timed-out episodes (empty for results without them)."""
    return [e["timeout"] for e in cell.get("episodes_detail") or [] if isinstance(e.get("timeout"), dict)]


def timeout_line(cell: Cell) -> str | None:
    """One console line summing up a cell's timeouts (``None`` without any)."""
    reports = timeout_reports(cell)
    if not reports:
        return None
    s = summarize_timeouts(reports)
    line = f"timeouts: missed turn {s['missed_turn']}"
    if s["missed_turn"]:
        detour, distance = number_or_dash(s["median_detour"], ".0f"), number_or_dash(s["median_goal_distance"], ".0f")
        bearing = number_or_dash(s["median_goal_bearing"], ".0f")
        line += (
            f" (median detour {detour} m; goal {distance} m away, {bearing} deg off the flight direction "
            f"where it left the plan)"
        )
    left, hovering = number_or_dash(s["median_plan_left"], ".0f"), number_or_dash(s["median_hovering"], ".1f")
    line += (
        f", other route {s['other_route']}, on the plan {s['on_plan']}; median way left {left} m, hovering {hovering} s"
    )
    return line


def timeout_table(cells: Sequence[Cell], label: Any) -> str | None:
    """Markdown table, one row per cell with timeout reports; ``None`` when no cell has any.

    ``label(world, preset)`` names a condition.
    """
    rows = []
    for cell in cells:
        reports = timeout_reports(cell)
        if not reports:
            continue
        s = summarize_timeouts(reports)
        rows.append(
            [
                cell["controller"],
                label(cell["world"], cell["preset"]),
                str(s["timeouts"]),
                str(s["missed_turn"]),
                str(s["other_route"]),
                str(s["on_plan"]),
                number_or_dash(s["median_detour"], ".0f"),
                number_or_dash(s["median_goal_distance"], ".0f"),
                number_or_dash(s["median_goal_bearing"], ".0f"),
                number_or_dash(s["median_plan_left"], ".0f"),
                number_or_dash(s["median_hovering"], ".1f"),
            ]
        )
    if not rows:
        return None
    header = [
        "controller",
        "condition",
        "timeouts",
        "missed turn",
        "other route",
        "on the plan",
        "missed turns: median detour (m)",
        "goal distance (m)",
        "goal bearing (°)",
        "median way left (m)",
        "median hovering (s)",
    ]
    return markdown_table(header, rows, left=2)


def timeout_section(cells: Sequence[Cell], label: Any) -> str:
    """The report section: explanation and table (or why there is none)."""
    table = timeout_table(cells, label)
    if table is None:
        return (
            "These results carry no timeout reports (written before `lnn-nav eval` diagnosed timeouts, "
            "or no controller ran out of time).\n"
        )
    return "\n".join(
        [
            "Every timeout, judged against the privileged expert's plan from the start "
            "(`lnn_nav/sim/forensics.py`). Where the track first strayed more than "
            f"{OFF_PLAN:g} m from the plan, the way to the goal is measured again {DETOUR_HORIZON:g} s later: a "
            f"detour of {MISSED_TURN:g} m or more is a missed turn (the drone flew on past the street or gap the "
            "plan takes), a shorter one another route; a track that never left the plan ran out of time on it. "
            "For missed turns, the goal's median distance and bearing (from the direction of flight) where the "
            "track left the plan: a near goal far to the side is a turn the goal input asked for and the "
            "controller did not make. Way left: the plan's length from where time ran out; hovering: time "
            f"under {HOVER_SPEED:g} m/s.\n",
            table,
        ]
    )
