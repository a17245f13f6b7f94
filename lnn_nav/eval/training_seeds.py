"""Comparing cores over several training seeds: per-condition mean and spread, pooled intervals, paired tests.

One training run is one draw of a core's recipe: two runs of the same recipe
differed by 2-8 points per cell here. So a comparison between cores names
each run ``<core>_s<k>`` (``cfc_ncp_s0``, ``lstm_s2``; the eval result name
comes from the checkpoint's file or run folder), and this module groups the
runs of one core and reports:

* per condition, the mean success over training seeds, their spread (min-max)
  and a pooled 95 % Wilson interval over every episode of every seed;
* liquid core vs baseline, paired on the same worlds: per world seed, each
  core's success averaged over its training seeds, the difference averaged
  over worlds, with a bootstrap interval over worlds (each world resampled with
  all the conditions it was flown in; fixed seed, so a report rebuilds
  identically);
* the same for the drop from in distribution to out of distribution, which is
  the question the liquid-drone paper asks: does the liquid core lose less?
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lnn_nav.eval.closed_loop import wilson_interval
from lnn_nav.eval.markdown import markdown_table

Cell = dict[str, Any]
Condition = tuple[str, str]  # (world, preset)

IN_DIST = "in_distribution"
_SEED_NAME = re.compile(r"^(?P<base>.+?)[_-]s(?P<seed>\d+)$")
#: Bootstrap resamples of the worlds for the paired intervals.
BOOTSTRAP = 2000


def split_seed(name: str) -> tuple[str, int | None]:
    """``cfc_ncp_s2`` -> (``cfc_ncp``, 2); a name without a seed suffix -> (name, None)."""
    match = _SEED_NAME.match(name)
    if match is None:
        return name, None
    return match.group("base"), int(match.group("seed"))


def seed_groups(cells: Sequence[Cell]) -> dict[str, list[str]]:
    """Base name -> its controllers ordered by training seed, for every base with at least two seeds."""
    groups: dict[str, dict[int, str]] = {}
    for c in cells:
        base, seed = split_seed(c["controller"])
        if seed is not None:
            groups.setdefault(base, {})[seed] = c["controller"]
    return {base: [runs[s] for s in sorted(runs)] for base, runs in sorted(groups.items()) if len(runs) >= 2}


@dataclass(frozen=True)
class SeedSummary:
    """One core in one condition over its training seeds."""

    rates: tuple[float, ...]  # one success rate per training seed
    successes: int  # pooled over seeds
    episodes: int

    @property
    def mean(self) -> float:
        return float(np.mean(self.rates))

    @property
    def pooled_interval(self) -> tuple[float, float]:
        return wilson_interval(self.successes, self.episodes)

    def text(self) -> str:
        lo, hi = self.pooled_interval
        return (
            f"{self.mean * 100:.0f}% ({min(self.rates) * 100:.0f}–{max(self.rates) * 100:.0f}) "
            f"[{lo * 100:.0f}–{hi * 100:.0f}]"
        )


def _index(cells: Sequence[Cell]) -> dict[tuple[str, str, str], Cell]:
    return {(c["controller"], c["world"], c["preset"]): c for c in cells}


def summarise(cells: Sequence[Cell], runs: Sequence[str], condition: Condition) -> SeedSummary | None:
    """The runs' summary in ``condition``, or None unless every run flew it."""
    index = _index(cells)
    chosen = [index.get((run, *condition)) for run in runs]
    if any(c is None for c in chosen):
        return None
    present = [c for c in chosen if c is not None]
    return SeedSummary(
        tuple(float(c["success_rate"]) for c in present),
        sum(int(round(c["success_rate"] * c["episodes"])) for c in present),
        sum(int(c["episodes"]) for c in present),
    )


def world_success(cells: Sequence[Cell], runs: Sequence[str], condition: Condition) -> dict[int, float]:
    """World seed -> success averaged over the runs, for the worlds every run flew in ``condition``."""
    index = _index(cells)
    per_run: list[dict[int, float]] = []
    for run in runs:
        cell = index.get((run, *condition))
        if cell is None or not cell.get("episodes_detail"):
            return {}
        per_run.append({int(e["seed"]): float(e["outcome"] == "success") for e in cell["episodes_detail"]})
    common = set.intersection(*(set(r) for r in per_run))
    return {seed: float(np.mean([r[seed] for r in per_run])) for seed in sorted(common)}


@dataclass(frozen=True)
class Paired:
    """A mean difference over paired worlds (``a - b``, as a rate) with its bootstrap 95 % interval."""

    mean: float
    lo: float
    hi: float
    worlds: int

    def text(self) -> str:
        def pp(x: float) -> str:
            return f"{x * 100:+.1f}".replace("-", "−")

        return f"{pp(self.mean)} pp [{pp(self.lo)}, {pp(self.hi)}]"


def _bootstrap(
    per_condition: Sequence[dict[int, float]], worlds: Sequence[str], weights: Sequence[float], rng: np.random.Generator
) -> Paired:
    """Weighted sum over conditions of each condition's mean difference, with a bootstrap over worlds.

    A world (its kind and seed) flown in several conditions is one unit: the same layout decides its
    outcome in fog and in distribution alike, so resampling each condition on its own would treat
    correlated outcomes as independent (too narrow an interval for a mean over conditions, too wide
    for a drop). Worlds are grouped by the set of conditions they were flown in (here the first 25
    seeds of a kind: in distribution and every OOD cell; the other 75: in distribution alone) and
    drawn with replacement within each group, all of a drawn world's conditions together.
    """
    point = float(sum(w * np.mean(list(d.values())) for w, d in zip(weights, per_condition)))
    groups: dict[tuple[int, ...], list[tuple[str, int]]] = {}
    for unit in sorted({(k, s) for k, d in zip(worlds, per_condition) for s in d}):
        pattern = tuple(i for i, (k, d) in enumerate(zip(worlds, per_condition)) if k == unit[0] and unit[1] in d)
        groups.setdefault(pattern, []).append(unit)
    sums = np.zeros((len(per_condition), BOOTSTRAP))
    for pattern, units in groups.items():
        picks = rng.integers(0, len(units), size=(BOOTSTRAP, len(units)))
        for i in pattern:
            values = np.array([per_condition[i][seed] for _, seed in units])
            sums[i] += values[picks].sum(axis=1)
    draws = sum(w * sums[i] / len(d) for i, (w, d) in enumerate(zip(weights, per_condition)))
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return Paired(point, float(lo), float(hi), int(sum(len(d) for d in per_condition)))


def _differences(
    cells: Sequence[Cell], a: Sequence[str], b: Sequence[str], condition: Condition
) -> dict[int, float] | None:
    """World seed -> ``a``'s success minus ``b``'s in ``condition``, over the worlds both flew."""
    sa, sb = world_success(cells, a, condition), world_success(cells, b, condition)
    common = sorted(set(sa) & set(sb))
    if not common:
        return None
    return {s: sa[s] - sb[s] for s in common}


def paired_difference(
    cells: Sequence[Cell], a: Sequence[str], b: Sequence[str], conditions: Sequence[Condition], seed: int = 0
) -> Paired | None:
    """Mean over ``conditions`` of the per-world success difference ``a - b`` (None if any is missing)."""
    diffs = [_differences(cells, a, b, c) for c in conditions]
    if not conditions or any(d is None for d in diffs):
        return None
    present = [d for d in diffs if d is not None]
    weights = [1.0 / len(present)] * len(present)
    return _bootstrap(present, [w for w, _ in conditions], weights, np.random.default_rng(seed))


def drop_difference(
    cells: Sequence[Cell], a: Sequence[str], b: Sequence[str], ood: Sequence[Condition], seed: int = 0
) -> Paired | None:
    """``a``'s drop from in distribution to OOD minus ``b``'s (negative: ``a`` loses less), paired on worlds.

    In distribution is the mean over the worlds of ``ood``'s conditions, as in the report's degradation table.
    """
    worlds = list(dict.fromkeys(w for w, _ in ood))
    ins = [_differences(cells, a, b, (w, IN_DIST)) for w in worlds]
    outs = [_differences(cells, a, b, c) for c in ood]
    if not ood or any(d is None for d in ins + outs):
        return None
    parts = [d for d in ins + outs if d is not None]
    weights = [1.0 / len(ins)] * len(ins) + [-1.0 / len(outs)] * len(outs)
    return _bootstrap(parts, worlds + [w for w, _ in ood], weights, np.random.default_rng(seed))


def seed_comparison_section(
    cells: Sequence[Cell],
    conditions: Sequence[Condition],
    label: Any,
    core_of: Any,
    liquid: Sequence[str],
    baselines: Sequence[str],
    true_shifts: Sequence[str] = (),
) -> str | None:
    """Markdown: the per-seed table and the paired liquid-vs-baseline comparison; None without seed groups.

    ``label(world, preset)`` names a condition; ``core_of(name)`` gives a suite core or None;
    ``true_shifts``: presets beyond all training (their mean gets its own column).
    """
    groups = seed_groups(cells)
    if not groups:
        return None
    ood = [c for c in conditions if c[1] != IN_DIST]
    rows = []
    for base, runs in groups.items():
        row = [f"{base} ({len(runs)} seeds)"]
        for condition in conditions:
            summary = summarise(cells, runs, condition)
            row.append(summary.text() if summary else "–")
        rows.append(row)
    md = [
        "Each cell: the mean success over training seeds (their min–max) [the 95% Wilson interval of all "
        "their episodes pooled]. Runs are named `<core>_s<seed>`.\n",
        markdown_table(["core"] + [label(w, p) for w, p in conditions], rows),
    ]
    pairs = [(lq, bl) for lq in groups for bl in groups if core_of(lq) in liquid and core_of(bl) in baselines]
    if not pairs:
        md.append("No liquid core and baseline both have several training seeds: no paired comparison.\n")
        return "\n".join(md)
    shifts = [c for c in ood if c[1] in true_shifts]
    header = ["liquid − baseline", "in distribution", f"OOD mean ({len(ood)})"]
    if shifts:
        header.append(f"true shifts ({len(shifts)})")
    header.append("drop from in-dist. to OOD")
    rows, verdicts = [], []
    worlds = list(dict.fromkeys(w for w, _ in conditions))
    for lq, bl in pairs:
        a, b = groups[lq], groups[bl]
        ins = paired_difference(cells, a, b, [(w, IN_DIST) for w in worlds])
        out = paired_difference(cells, a, b, ood)
        row = [f"{lq} − {bl}", ins.text() if ins else "–", out.text() if out else "–"]
        if shifts:
            shift = paired_difference(cells, a, b, shifts)
            row.append(shift.text() if shift else "–")
        drop = drop_difference(cells, a, b, ood)
        row.append(drop.text() if drop else "–")
        rows.append(row)
        # Absolute success beside the drop: a core weak in distribution has less to lose.
        if out is not None:
            if out.lo > 0:
                verdicts.append(f"{lq} flies more out-of-distribution worlds than {bl} ({out.text()}).")
            elif out.hi < 0:
                verdicts.append(f"{lq} flies fewer out-of-distribution worlds than {bl} ({out.text()}).")
            else:
                verdicts.append(
                    f"{lq} and {bl} fly as many out-of-distribution worlds within the interval {out.text()}."
                )
        if drop is not None:
            if drop.hi < 0:
                verdicts.append(f"{lq} loses less than {bl} out of distribution ({drop.text()}).")
            elif drop.lo > 0:
                verdicts.append(f"{lq} loses more than {bl} out of distribution ({drop.text()}).")
            else:
                verdicts.append(
                    f"{lq} and {bl} cannot be told apart on the drop: the interval {drop.text()} contains zero."
                )
    md += [
        "Paired on the same worlds: per world, each core's success averaged over its training seeds; the "
        "difference averaged over worlds (and over conditions), in percentage points, with a 95% bootstrap "
        f"interval over worlds ({BOOTSTRAP} resamples; a world is drawn with every condition it was flown in, "
        "since its layout decides its outcome in each). A negative drop difference means the liquid core "
        "loses less; the drop favours a core weak in distribution (it has less to lose), so absolute "
        "out-of-distribution success is judged beside it.\n",
        markdown_table(header, rows),
        "\n".join(f"- {v}" for v in verdicts) + "\n",
    ]
    return "\n".join(md)
