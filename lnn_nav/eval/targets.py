"""The benchmark's targets, checked on the numbers and stated plainly: met, not met or not run.

CfC-NCP's success in distribution in both worlds, averaged over the
out-of-distribution conditions and in its worst one (:class:`Targets`, configurable; where a
comparison's training-seed runs ``cfc_ncp_s<k>`` sit beside the shipped
``cfc_ncp``, the targets are the shipped controller's), and whether
the liquid cores (CfC-NCP, CfC, LTC) lose less success from in- to
out-of-distribution than LSTM, GRU and CNN, on the conditions all of them ran:
over training seeds, paired on worlds, where a liquid core and a baseline
have several seeds each; else run by run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lnn_nav.eval.results import (
    BASELINE_CORES,
    IN_DIST,
    LIQUID_CORES,
    Cell,
    Condition,
    cell_rate,
    condition_label,
    conditions_in,
    controller_core,
    controllers_in,
    index_cells,
    ood_mean,
)
from lnn_nav.eval.training_seeds import drop_difference, paired_difference, seed_groups, split_seed
from lnn_nav.sim.presets import OOD_PRESETS, WORLD_KINDS, presets_for


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
class Targets:
    """Success rates the flagship controller (CfC-NCP) is checked against (``lnn-nav report --target-...``).

    The defaults are the liquid-drone benchmark's bar: near-expert success in
    distribution, and most of it kept out of distribution.
    """

    in_distribution: float = 0.95  # in each world kind
    ood_mean: float = 0.85  # averaged over the out-of-distribution presets of both worlds
    # in every out-of-distribution cell: a mean can hide one condition the drone does not fly at all
    min_ood_cell: float = 0.60

    def __post_init__(self) -> None:
        for name in ("in_distribution", "ood_mean", "min_ood_cell"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"target {name} must be a success rate in [0, 1], got {value}")


@dataclass(frozen=True)
class TargetCheck:
    """One target: ``status`` is ``met``, ``not met`` or ``not run``; ``text`` says it with numbers."""

    target: str
    status: str
    text: str


def degradation(cells: Sequence[Cell]) -> tuple[list[Drop], list[Condition]]:
    """In-distribution vs OOD success of every liquid core and baseline, on the conditions all of them ran.

    A common set keeps the comparison fair: a controller that skipped the
    hardest condition would otherwise look robust. In-distribution is the
    mean over the worlds of that set, OOD the mean over its OOD conditions.
    A controller flown in distribution only (no OOD cell at all) has no drop
    to compare and is left out rather than emptying the common set.
    Returns the drops (table order) and the OOD conditions compared.
    """
    compared = [n for n in _cores(cells) if any(c["controller"] == n and c["preset"] != IN_DIST for c in cells)]
    ood = _common_ood(cells, compared)
    drops = []
    for n in compared if ood else []:
        in_dist, out = in_and_ood_cells(cells, n, ood)
        drops.append(
            Drop(
                n,
                sum(c["success_rate"] for c in in_dist) / len(in_dist),
                sum(c["success_rate"] for c in out) / len(out),
            )
        )
    return drops, ood


def _cores(cells: Sequence[Cell]) -> list[str]:
    """The liquid cores and baselines among the controllers (the expert is neither), in table order."""
    return [n for n in controllers_in(cells) if controller_core(n) in LIQUID_CORES + BASELINE_CORES]


def _common_ood(cells: Sequence[Cell], controllers: Sequence[str]) -> list[Condition]:
    """OOD conditions every one of ``controllers`` ran, in worlds where each also ran in-distribution."""
    index = index_cells(cells)
    return [
        (w, p)
        for w, p in conditions_in(cells)
        if p != IN_DIST and all((n, w, p) in index and (n, w, IN_DIST) in index for n in controllers)
    ]


def in_and_ood_cells(cells: Sequence[Cell], controller: str, ood: Sequence[Condition]) -> tuple[list[Cell], list[Cell]]:
    """``controller``'s in-distribution cells in the worlds of ``ood``, and its cells of ``ood``."""
    index = index_cells(cells)
    worlds = list(dict.fromkeys(w for w, _ in ood))
    # The key is built first: mypy reads index[(a, *b)] as 3.11's index[a, *b] and rejects it under 3.10.
    ood_keys = [(controller, *wp) for wp in ood]
    return [index[(controller, w, IN_DIST)] for w in worlds], [index[key] for key in ood_keys]


def _pp(x: float) -> str:
    """Percentage points, one decimal: means over conditions are rarely whole percents."""
    return f"{x * 100:.1f} pp"


def change_text(drop: float) -> str:
    """A drop as a signed change: 0.1 -> ``−10.0 pp``, -0.05 (better OOD) -> ``+5.0 pp``."""
    return f"{-drop * 100:+.1f} pp".replace("-", "−")


def _drop_text(d: Drop) -> str:
    return f"{d.controller} {d.in_dist * 100:.1f}% → {d.ood * 100:.1f}% ({change_text(d.drop)})"


def split_combinations(cells: Sequence[Cell]) -> tuple[list[Cell], list[Cell]]:
    """(combination-preset cells, the rest): combinations never enter the OOD means or the targets."""
    named = (IN_DIST,) + OOD_PRESETS
    rest = [c for c in cells if c["preset"] in named]
    if not rest:  # only combinations: report them as the main cells
        return [], list(cells)
    return [c for c in cells if c["preset"] not in named], rest


def check_targets(cells: Sequence[Cell], targets: Targets | None = None) -> list[TargetCheck]:
    """``targets`` against the measured numbers, each met, not met or not run (named presets only)."""
    targets = targets or Targets()
    in_target, ood_target = targets.in_distribution, targets.ood_mean
    cells = split_combinations(cells)[1]
    index = index_cells(cells)
    checks = []
    flagship = [n for n in controllers_in(cells) if controller_core(n) == "cfc-ncp"]
    # The targets are the shipped controller's: a comparison's seed runs are reported over seeds.
    flagship = [n for n in flagship if split_seed(n)[1] is None] or flagship
    for world in WORLD_KINDS:
        target = f"cfc-ncp ≥{in_target:.0%} in distribution, {world}"
        runs = [index[(n, world, IN_DIST)] for n in flagship if (n, world, IN_DIST) in index]
        if not runs:
            checks.append(TargetCheck(target, "not run", f"cfc-ncp was not run in-distribution in the {world} world."))
        for cell in runs:
            rate = cell_rate(cell)
            met = rate.value >= in_target
            note = "" if not met or rate.lo >= in_target else f" (the interval reaches below {in_target:.0%})"
            checks.append(
                TargetCheck(
                    target,
                    "met" if met else "not met",
                    f"{cell['controller']}: {rate} over {cell['episodes']} episodes{note}.",
                )
            )
    target = f"cfc-ncp ≥{ood_target:.0%} averaged over OOD conditions"
    suite_ood = [(w, p) for w in WORLD_KINDS for p in presets_for(w) if p != IN_DIST]
    if not any(ood_mean(cells, n) for n in flagship):
        checks.append(TargetCheck(target, "not run", "cfc-ncp was not run under any out-of-distribution condition."))
    for name in flagship:
        ood_rate = ood_mean(cells, name)
        if ood_rate is None:
            continue
        met = ood_rate.value >= ood_target
        note = f" (the interval reaches below {ood_target:.0%})" if met and ood_rate.lo < ood_target else ""
        note += _not_run_note(index, name, suite_ood)
        checks.append(
            TargetCheck(
                target,
                "met" if met else "not met",
                f"{name}: {ood_rate} averaged over {ood_rate.cells} conditions{note}.",
            )
        )
    checks.extend(_worst_cell_checks(cells, index, flagship, targets.min_ood_cell, suite_ood))
    checks.append(_degradation_check(cells))
    return checks


def _not_run_note(index: dict, name: str, suite_ood: Sequence[Condition]) -> str:
    """``; not run: ...`` for the suite's OOD conditions ``name`` was not flown in (empty when it ran them all)."""
    missing = [(w, p) for w, p in suite_ood if (name, w, p) not in index]
    return f"; not run: {', '.join(condition_label(w, p) for w, p in missing)}" if missing else ""


def _worst_cell_checks(
    cells: Sequence[Cell], index: dict, flagship: Sequence[str], floor: float, suite_ood: Sequence[Condition]
) -> list[TargetCheck]:
    """Each flagship run's OOD cells (the named presets only) against ``floor``: met when none is below it; the
    text names the worst cell, every cell under the floor and the conditions not run (not run: no OOD cell)."""
    target = f"cfc-ncp ≥{floor:.0%} in every OOD condition"
    checks = []
    for name in flagship:
        ood = [c for c in cells if c["controller"] == name and c["preset"] in OOD_PRESETS]
        if not ood:
            continue
        worst = min(ood, key=lambda c: c["success_rate"])
        below = sorted((c for c in ood if c["success_rate"] < floor), key=lambda c: c["success_rate"])
        if below:
            listed = ", ".join(f"{condition_label(c['world'], c['preset'])} {cell_rate(c)}" for c in below)
            text = f"{name}: {len(below)} of {len(ood)} conditions below {floor:.0%}: {listed}."
        else:
            worst_label = condition_label(worst["world"], worst["preset"])
            not_run = _not_run_note(index, name, suite_ood)
            text = f"{name}: the worst of {len(ood)} conditions, {worst_label}, flies {cell_rate(worst)}{not_run}."
        checks.append(TargetCheck(target, "not met" if below else "met", text))
    if not checks:
        checks.append(TargetCheck(target, "not run", "cfc-ncp was not run under any out-of-distribution condition."))
    return checks


DEGRADE_TARGET = "liquid cores degrade less OOD than LSTM/GRU/CNN"


def _seed_degradation_check(cells: Sequence[Cell], groups: dict[str, list[str]]) -> TargetCheck | None:
    """The check over training seeds, paired on worlds: met only if every liquid core's drop is below every
    baseline's with its whole interval, for every pair of cores with several seeds and OOD runs; None unless
    a liquid core and a baseline both have them. Single runs and pairs without paired worlds are named."""
    flown = {
        b: runs
        for b, runs in groups.items()
        if all(any(c["controller"] == r and c["preset"] != IN_DIST for c in cells) for r in runs)
    }
    liquid = [b for b in flown if controller_core(b) in LIQUID_CORES]
    base = [b for b in flown if controller_core(b) in BASELINE_CORES]
    ood = _common_ood(cells, [run for b in liquid + base for run in flown[b]])
    if not liquid or not base or not ood:
        return None
    lines, statuses, unpaired = [], [], []
    for lq in liquid:
        for bl in base:
            drop = drop_difference(cells, flown[lq], flown[bl], ood)
            out = paired_difference(cells, flown[lq], flown[bl], ood)
            if drop is None or out is None:
                unpaired.append(f"{lq} − {bl}")
                continue
            if drop.hi < 0:
                verdict, ok = "loses less", True
            elif drop.lo > 0:
                verdict, ok = "loses more", False
            else:
                verdict, ok = "cannot be told apart", False
            statuses.append(ok)
            lines.append(
                f"{lq} ({len(flown[lq])} seeds) − {bl} ({len(flown[bl])} seeds): drop {drop.text()} ({verdict}), "
                f"OOD success {out.text()}"
            )
    others = [b for b in groups if b not in flown and controller_core(b) in LIQUID_CORES + BASELINE_CORES]
    # The other cores by name (a shipped controller and its runs are one core).
    single = list(dict.fromkeys(base for base, _ in map(split_seed, _cores(cells)) if base not in groups))
    notes = []
    if unpaired:
        notes.append(f"not compared (no worlds flown by both): {', '.join(unpaired)}")
    if others:
        notes.append(f"not compared (several seeds, no OOD run): {', '.join(others)}")
    if single:
        notes.append(f"not judged here (a single run each): {', '.join(single)}")
    over = (
        f"Over the cores with several training seeds, paired on the same worlds, {len(ood)} OOD "
        f"condition{'s' * (len(ood) != 1)} all of them ran; a negative drop difference means the liquid core "
        "loses less"
    )
    note = "; ".join(notes)
    text = f"{over}: {'; '.join(lines) or 'no pair'}." + (f" {note[:1].upper()}{note[1:]}." if notes else "")
    if statuses and all(statuses) and not unpaired:
        return TargetCheck(DEGRADE_TARGET, "met", f"Every liquid core lost less than every baseline. {text}")
    if statuses and not all(statuses):
        return TargetCheck(DEGRADE_TARGET, "not met", f"Not every liquid core lost less than every baseline. {text}")
    return TargetCheck(DEGRADE_TARGET, "not run", f"Not every pair could be compared. {text}")


def _degradation_check(cells: Sequence[Cell]) -> TargetCheck:
    target = DEGRADE_TARGET
    # Several training seeds per core are the fair comparison: where they exist, they decide.
    groups = seed_groups(cells)
    by_seeds = _seed_degradation_check(cells, groups)
    if by_seeds is not None:
        return by_seeds
    drops, ood = degradation(cells)
    # A training-seed run beside its core's shipped run (cfc_ncp_s1 beside cfc_ncp) would count one recipe
    # twice or more, the shipped checkpoint among them: the shipped run stands for its core here.
    shipped = {d.controller for d in drops}
    seed_runs = [d.controller for d in drops if (run := split_seed(d.controller))[1] is not None and run[0] in shipped]
    drops = [d for d in drops if d.controller not in seed_runs]
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
    unflown = [n for n in _cores(cells) if n not in shipped]
    if unflown:
        over += f" (not compared, no OOD run: {', '.join(unflown)})"
    if seed_runs:
        over += f" (training-seed runs beside their core's shipped run, left to the seeds: {', '.join(seed_runs)})"
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
        f"{liq.controller} ({change_text(liq.drop)}) vs {b.controller} ({change_text(b.drop)})" for liq, b in worse[:4]
    )
    more = f" and {len(worse) - 4} more" if len(worse) > 4 else ""
    # A mean over baselines can be pulled by one weak baseline, so say which comparison the mean wins.
    summary = (
        "The liquid cores lost less than the baselines' mean drop, but not less than every baseline"
        if mean_l < mean_b
        else "The liquid cores did not degrade less than the baselines"
    )
    return TargetCheck(target, "not met", f"{summary}: {pairs}{more} lost as much or more. {numbers}")
