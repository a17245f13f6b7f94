"""Closed-loop benchmark report: success tables, charts, top-down maps and the targets, as markdown.

:func:`write_report` turns the cells `lnn-nav eval` writes into ``report.md``
with its charts and ``cells.csv``. The pieces: loading and rates
(:mod:`lnn_nav.eval.results`), tables (:mod:`lnn_nav.eval.report_tables`),
figures (:mod:`lnn_nav.eval.report_figures`), targets
(:mod:`lnn_nav.eval.targets`), crashes, timeouts and training seeds (their
own modules). The names most callers need are re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from statistics import median
from typing import Any

from lnn_nav.eval.crashes import crash_section
from lnn_nav.eval.markdown import markdown_table
from lnn_nav.eval.report_figures import (
    camera_gifs_section,
    camera_worlds,
    colour,
    map_choices,
    plot_in_vs_ood,
    plot_success_bars,
    plot_tracks,
)
from lnn_nav.eval.report_tables import (
    coverage_section,
    metrics_table,
    path_length_ratios,
    ros_agreement,
    ros_agreement_line,
    ros_agreement_section,
    success_table,
)
from lnn_nav.eval.results import (
    BASELINE_CORES,
    EXPERT,
    IN_DIST,
    LIQUID_CORES,
    SUITE_CONTROLLERS,
    Cell,
    Condition,
    Rate,
    ResultsError,
    cell_rate,
    condition_label,
    conditions_in,
    controller_core,
    controllers_in,
    index_cells,
    load_results,
    mean_rate,
    normalise_name,
    ood_mean,
    seed_text,
)
from lnn_nav.eval.tables import CELL_COLUMNS, cell_rows, write_csv
from lnn_nav.eval.targets import Drop, TargetCheck, Targets, change_text, check_targets, degradation, split_combinations
from lnn_nav.eval.timeouts import timeout_section
from lnn_nav.eval.training_seeds import seed_comparison_section
from lnn_nav.sim.presets import TRUE_SHIFTS, WORLD_KINDS, presets_for

__all__ = [
    "BASELINE_CORES",
    "EXPERT",
    "IN_DIST",
    "LIQUID_CORES",
    "SUITE_CONTROLLERS",
    "Cell",
    "Condition",
    "Drop",
    "Rate",
    "ResultsError",
    "TargetCheck",
    "Targets",
    "camera_worlds",
    "cell_rate",
    "check_targets",
    "condition_label",
    "conditions_in",
    "controller_core",
    "controllers_in",
    "degradation",
    "load_results",
    "mean_rate",
    "metrics_table",
    "normalise_name",
    "ood_mean",
    "path_length_ratios",
    "plot_in_vs_ood",
    "plot_success_bars",
    "plot_tracks",
    "ros_agreement",
    "ros_agreement_line",
    "split_combinations",
    "success_table",
    "write_report",
]


def _seeds_section(cells: Sequence[Cell]) -> str:
    groups: dict[tuple[str, int], list[str]] = {}
    for c in cells:
        seeds = [e.get("seed") for e in c.get("episodes_detail") or []]
        if seeds:
            text = seed_text(seeds)
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
    index = index_cells(cells)
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
        rows = [[d.controller, f"{d.in_dist:.1%}", f"{d.ood:.1%}", change_text(d.drop)] for d in drops]
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
    targets: Targets | None = None,
) -> Path:
    """Write ``out_dir/report.md`` with its charts (and maps, when the episodes carry tracks) and
    ``cells.csv`` (one row per cell); return the report's path.

    ``extra_sections``: (heading, markdown) pairs appended at the end.
    ``cameras``: controller name -> checkpoint; each is flown again
    in-process on the mapped worlds (:func:`camera_worlds`) and its onboard
    camera with saliency written as a GIF. ``on_progress(text)`` hears of
    each such flight. ``targets``: the success rates checked (:class:`Targets`'s defaults when None).
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
    checks = check_targets(cells, targets)
    marks = {"met": "✅ **met**", "not met": "❌ **not met**", "not run": "⚪ **not run**"}
    worlds = list(dict.fromkeys(w for w, _ in conditions_in(cells)))

    md = [
        f"# {title}\n",
        f"Controllers: {', '.join(controllers_in(cells))}. Worlds: {', '.join(worlds)}. "
        f"Sources: {', '.join(f'`{s}`' for s in sources) or 'in memory'}.\n",
        _seeds_section(cells),
        "## Targets\n",
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
    md += ["## Why the crashes\n", crash_section(cells, out, condition_label, colour)]
    md += ["## Why the timeouts\n", timeout_section(cells, condition_label)]
    if maps:
        md += ["## Trajectories\n"]
        choices = map_choices(cells)
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
        md += ["## Onboard camera\n", camera_gifs_section(cells, cameras, out, on_progress)]
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
