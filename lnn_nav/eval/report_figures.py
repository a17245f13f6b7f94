"""The report's figures: success bars with intervals, in- vs out-of-distribution, top-down maps, camera GIFs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lnn_nav.eval.results import (
    FAILED_FLIGHT,
    IN_DIST,
    PRESET_LABELS,
    Cell,
    Condition,
    Rate,
    cell_rate,
    condition_label,
    conditions_in,
    controller_core,
    controllers_in,
    index_cells,
    mean_rate,
    normalise_name,
    ood_mean,
)
from lnn_nav.eval.targets import change_text, degradation, in_and_ood_cells

_COLOURS = {
    "cfc-ncp": "#1f5fa8",
    "cfc": "#4fa3d9",
    "ltc": "#2e9d4d",
    "lstm": "#e8882b",
    "gru": "#c8453c",
    "cnn": "#8c5ab4",
    "expert": "#8a8a8a",
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # headless: benchmark machines and CI have no display
    import matplotlib.pyplot as plt

    return plt


def colour(name: str, i: int) -> Any:
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
            ax.bar([], [], width, color=colour(name, i), label=name)
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
            color=colour(name, i),
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
    index = index_cells(cells)
    most = max(sum(1 for w, _ in conditions if w == world) + 1 for world in worlds)
    fig, axes = plt.subplots(
        len(worlds), 1, figsize=(max(7.0, 0.28 * most * len(names) + 2.5), 3.6 * len(worlds) + 0.6), squeeze=False
    )
    for ax, world in zip(axes[:, 0], worlds):
        presets = [p for w, p in conditions if w == world]
        groups = [PRESET_LABELS.get(p, p.replace("_", " ")) for p in presets]
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
    index = index_cells(cells)
    # Every controller that ran those conditions (a core flown in distribution only has no bar pair).
    names = [n for n in controllers_in(cells) if all((n, w, p) in index and (n, w, IN_DIST) in index for w, p in ood)]
    pairs = [in_and_ood_cells(cells, n, ood) for n in names]
    in_rates = [mean_rate(a) for a, _ in pairs]
    out_rates = [mean_rate(b) for _, b in pairs]
    fig, ax = plt.subplots(figsize=(max(5.5, 1.1 * len(names) + 1.5), 3.8))
    _bars(ax, names, [("in distribution", in_rates), ("OOD mean", out_rates)])
    for x, (a, b) in enumerate(zip(in_rates, out_rates)):
        if a is not None and b is not None:
            ax.text(
                x,
                min(max(a.hi, b.hi) + 0.02, 1.0),
                change_text(a.value - b.value),
                ha="center",
                va="bottom",
                fontsize=8,
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
        if outcomes.get(name) in FAILED_FLIGHT:
            crashes[label] = array[-1]
    title = title or f"{condition_label(world_kind, preset)}, seed {seed}"
    return plot_top_down(world, Path(path), labelled, title=title, crashes=crashes)


def map_choices(cells: Sequence[Cell]) -> list[tuple[str, str, int, dict[str, Any], dict[str, str]]]:
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
    chosen = [(world, preset, seed) for world, preset, seed, _, _ in map_choices(cells)]
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


def camera_gifs_section(
    cells: Sequence[Cell], cameras: Mapping[str, str | Path], out: Path, on_progress: Any | None
) -> str:
    from lnn_nav.eval.camera import camera_section, fly_with_camera, plot_core_traces, write_saliency_gif

    worlds = camera_worlds(cells)
    if not worlds:
        return "No held-out seeds in the results to fly again.\n"
    index = index_cells(cells)
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
