"""Comparing cores over training seeds: grouping, spread, pooled intervals, paired differences, the report section."""

from __future__ import annotations

import pytest

from lnn_nav.eval.report import condition_label, controller_core, write_report
from lnn_nav.eval.training_seeds import (
    drop_difference,
    paired_difference,
    seed_comparison_section,
    seed_groups,
    split_seed,
    summarise,
    world_success,
)

SEEDS = list(range(1000, 1040))


def _cell(controller: str, world: str, preset: str, failing: set) -> dict:
    episodes = [{"seed": s, "outcome": "collision" if s in failing else "success", "time": 20.0} for s in SEEDS]
    wins = sum(e["outcome"] == "success" for e in episodes)
    return {
        "controller": controller,
        "world": world,
        "preset": preset,
        "episodes": len(SEEDS),
        "success_rate": wins / len(SEEDS),
        "ci95": [0.0, 1.0],
        "episodes_detail": episodes,
        "outcomes": {"success": wins, "collision": len(SEEDS) - wins},
        "collision_rate": 1 - wins / len(SEEDS),
        "mean_time_to_goal": 20.0,
    }


def _suite(liquid_ood_fail: int, baseline_ood_fail: int) -> list:
    """Three seeds per core; in distribution both fail 2 worlds; OOD the given number (varying by seed)."""
    cells = []
    for core, ood_fail in (("cfc_ncp", liquid_ood_fail), ("lstm", baseline_ood_fail)):
        for k in range(3):
            name = f"{core}_s{k}"
            cells.append(_cell(name, "forest", "in_distribution", {SEEDS[k], SEEDS[k + 1]}))
            cells.append(_cell(name, "forest", "fog", set(SEEDS[k : k + ood_fail])))
    return cells


def test_seed_names_split_and_group() -> None:
    assert split_seed("cfc_ncp_s12") == ("cfc_ncp", 12) and split_seed("lstm-s0") == ("lstm", 0)
    assert split_seed("cfc_ncp") == ("cfc_ncp", None) and split_seed("cfc_ncp_small") == ("cfc_ncp_small", None)
    cells = _suite(4, 20) + [_cell("gru_s0", "forest", "fog", set())]  # one seed: not a group
    assert seed_groups(cells) == {
        "cfc_ncp": ["cfc_ncp_s0", "cfc_ncp_s1", "cfc_ncp_s2"],
        "lstm": ["lstm_s0", "lstm_s1", "lstm_s2"],
    }


def test_summary_has_the_seeds_mean_spread_and_pooled_interval() -> None:
    cells = [_cell("a_s0", "forest", "fog", set(SEEDS[:4])), _cell("a_s1", "forest", "fog", set(SEEDS[:8]))]
    summary = summarise(cells, ["a_s0", "a_s1"], ("forest", "fog"))
    assert summary is not None
    assert summary.rates == (0.9, 0.8) and summary.mean == pytest.approx(0.85)
    assert (summary.successes, summary.episodes) == (68, 80)
    lo, hi = summary.pooled_interval
    assert lo < 0.85 < hi
    assert summary.text().startswith("85% (80–90) [")
    assert summarise(cells, ["a_s0", "a_s9"], ("forest", "fog")) is None  # a seed that did not fly it


def test_world_success_averages_the_seeds_per_world() -> None:
    cells = [_cell("a_s0", "forest", "fog", {1000}), _cell("a_s1", "forest", "fog", {1000, 1001})]
    per_world = world_success(cells, ["a_s0", "a_s1"], ("forest", "fog"))
    assert per_world[1000] == 0.0 and per_world[1001] == 0.5 and per_world[1002] == 1.0


def test_paired_differences_have_the_right_sign_and_an_interval_around_them() -> None:
    cells = _suite(liquid_ood_fail=4, baseline_ood_fail=20)
    liquid, baseline = ["cfc_ncp_s0", "cfc_ncp_s1", "cfc_ncp_s2"], ["lstm_s0", "lstm_s1", "lstm_s2"]
    ood = paired_difference(cells, liquid, baseline, [("forest", "fog")])
    assert ood is not None and ood.mean == pytest.approx((20 - 4) / 40) and ood.lo < ood.mean < ood.hi
    assert ood.lo > 0  # 16 more worlds of 40: clearly better
    same = paired_difference(cells, liquid, baseline, [("forest", "in_distribution")])
    assert same is not None and same.mean == pytest.approx(0.0)
    drop = drop_difference(cells, liquid, baseline, [("forest", "fog")])
    assert drop is not None and drop.mean == pytest.approx(-ood.mean) and drop.hi < 0  # liquid loses less
    again = drop_difference(cells, liquid, baseline, [("forest", "fog")])
    assert again == drop  # a fixed bootstrap seed: a report rebuilds identically
    assert paired_difference(cells, liquid, baseline, [("urban", "fog")]) is None


def test_a_world_is_resampled_with_every_condition_it_was_flown_in() -> None:
    # The liquid core fails the same 10 worlds in fog and in winter (the layout decides), the baseline none.
    cells = []
    for k in range(2):
        for preset in ("fog", "winter", "in_distribution"):
            failing = set(SEEDS[:10]) if preset != "in_distribution" else set()
            cells.append(_cell(f"cfc_ncp_s{k}", "forest", preset, failing))
            cells.append(_cell(f"lstm_s{k}", "forest", preset, set()))
    liquid, baseline = ["cfc_ncp_s0", "cfc_ncp_s1"], ["lstm_s0", "lstm_s1"]
    one = paired_difference(cells, liquid, baseline, [("forest", "fog")])
    both = paired_difference(cells, liquid, baseline, [("forest", "fog"), ("forest", "winter")])
    assert one is not None and both is not None and both.mean == pytest.approx(-0.25)
    # Perfectly correlated conditions carry no more information than one of them: the same interval
    # (resampled independently, the mean of the two would look tighter by about 1/sqrt(2)).
    assert (both.lo, both.hi) == pytest.approx((one.lo, one.hi))
    assert one.hi - one.lo > 0.2
    # In distribution the cores agree everywhere: the drop is the OOD difference, with its interval.
    drop = drop_difference(cells, liquid, baseline, [("forest", "fog"), ("forest", "winter")])
    assert drop is not None and drop.mean == pytest.approx(0.25)
    assert (drop.lo, drop.hi) == pytest.approx((-one.hi, -one.lo))


def test_section_states_the_verdict_with_its_interval() -> None:
    def section(lq: int, bl: int) -> str:
        text = seed_comparison_section(
            _suite(lq, bl),
            [("forest", "in_distribution"), ("forest", "fog")],
            condition_label,
            controller_core,
            ("cfc-ncp",),
            ("lstm",),
            ("fog",),
        )
        assert text is not None
        return text

    assert "cfc_ncp loses less than lstm out of distribution" in section(4, 20)
    assert "cfc_ncp loses more than lstm" in section(20, 4)
    assert "cannot be told apart" in section(6, 6)
    assert "cfc_ncp flies more out-of-distribution worlds than lstm" in section(4, 20)
    assert "cfc_ncp flies fewer out-of-distribution worlds than lstm" in section(20, 4)
    assert "fly as many out-of-distribution worlds within the interval" in section(6, 6)
    assert "cfc_ncp (3 seeds)" in section(4, 20) and "true shifts (1)" in section(4, 20)
    no_groups = [_cell("cfc_ncp", "forest", "fog", set())]
    assert (
        seed_comparison_section(
            no_groups, [("forest", "fog")], condition_label, controller_core, ("cfc-ncp",), ("lstm",)
        )
        is None
    )


def test_report_carries_the_training_seed_section_and_keeps_combinations_apart(tmp_path) -> None:
    cells = _suite(4, 20)
    cells += [_cell(f"cfc_ncp_s{k}", "forest", "fall_haze", {1000}) for k in range(3)]
    text = write_report(cells, tmp_path, maps=False).read_text()
    assert "## Over training seeds" in text and "loses less than lstm" in text
    assert "## Combined and graded shifts" in text
    # The combination does not enter the named-preset OOD means: the seed table has no fall-haze column.
    seeds_part = text.split("## Over training seeds")[1].split("## ")[0]
    assert "fall haze" not in seeds_part
    # Nor the targets: the OOD target averages the one named preset (fog), in the file and in the CLI's summary.
    from lnn_nav.eval.report import check_targets

    ood_checks = [c for c in check_targets(cells) if "averaged over OOD" in c.target]
    assert ood_checks and all("averaged over 1 conditions" in c.text for c in ood_checks)


def test_report_separates_covered_conditions_and_gives_the_true_shift_mean(tmp_path) -> None:
    cells = _suite(4, 20) + [_cell(f"cfc_ncp_s{k}", "forest", "fall", set()) for k in range(3)]
    text = write_report(cells, tmp_path, maps=False).read_text()
    part = text.split("## What training covers")[1].split("\n## ")[0]
    assert "| fall | beyond | covered |" in part and "| fog | beyond | beyond | yes |" in part
    assert "| cfc_ncp_s0 | 90% [" in part and "| lstm_s0 | 50% [" in part  # fog only: 36/40 and 20/40


def test_the_degrade_target_is_judged_over_seeds_where_they_exist() -> None:
    """With several seeds of a liquid core and a baseline, the report's target reads the paired drop, not
    one run against another (a shipped name and its `_s0` run are one flight twice)."""
    from lnn_nav.eval.targets import DEGRADE_TARGET, check_targets

    def degrade(lq: int, bl: int) -> object:
        checks = [c for c in check_targets(_suite(lq, bl)) if c.target == DEGRADE_TARGET]
        assert len(checks) == 1
        return checks[0]

    less, more, same = degrade(4, 20), degrade(20, 4), degrade(6, 6)
    assert less.status == "met" and "cfc_ncp (3 seeds) − lstm (3 seeds)" in less.text and "(loses less)" in less.text
    assert more.status == "not met" and "(loses more)" in more.text
    assert same.status == "not met" and "cannot be told apart" in same.text
    assert "OOD success" in less.text and "pp [" in less.text


def test_the_seed_verdict_names_what_it_did_not_compare() -> None:
    """A baseline group without paired worlds cannot leave "met" standing; single runs and groups flown in
    distribution only are named, not silently left out of "every"."""
    from lnn_nav.eval.targets import DEGRADE_TARGET, check_targets

    def degrade(cells: list) -> object:
        return next(c for c in check_targets(cells) if c.target == DEGRADE_TARGET)

    cells = _suite(4, 20)
    for k in range(2):  # a GRU whose episodes carry no world seeds: nothing to pair on
        for preset, fail in (("in_distribution", set()), ("fog", set(SEEDS))):
            cell = _cell(f"gru_s{k}", "forest", preset, fail)
            cell["episodes_detail"] = []
            cells.append(cell)
    check = degrade(cells)
    assert check.status == "not run" and "ot compared (no worlds flown by both): cfc_ncp − gru" in check.text
    only_in = _suite(4, 20) + [_cell(f"cnn_s{k}", "forest", "in_distribution", set()) for k in range(2)]
    only_in += [_cell("ltc", "forest", "in_distribution", set()), _cell("ltc", "forest", "fog", set(SEEDS[:30]))]
    check = degrade(only_in)
    assert check.status == "met"  # the pair that could be compared decides; the rest is named
    assert "several seeds, no OOD run): cnn" in check.text and "(a single run each): ltc" in check.text
