"""`lnn_nav.eval.report` and `lnn-nav report`: benchmark results -> tables, charts, maps and honest targets."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lnn_nav.eval import cli_report
from lnn_nav.eval.report import (
    ResultsError,
    Targets,
    check_targets,
    controller_core,
    degradation,
    load_results,
    metrics_table,
    path_length_ratios,
    plot_success_bars,
    plot_tracks,
    success_table,
    write_report,
)
from lnn_nav.sim.presets import make_world

N = 20
SEEDS = list(range(1000, 1000 + N))

# Successes out of N per controller and condition. Urban fall is run by nobody,
# gru skips forest fog. Liquid cores lose 1-4 episodes out of distribution,
# the baselines 7-9.
LIQUID_ROBUST = {
    "cfc_ncp": {
        ("forest", "in_distribution"): 20,
        ("forest", "fall"): 18,
        ("forest", "fog"): 16,
        ("urban", "in_distribution"): 19,
        ("urban", "fog"): 17,
    },
    "ltc": {
        ("forest", "in_distribution"): 19,
        ("forest", "fall"): 18,
        ("forest", "fog"): 17,
        ("urban", "in_distribution"): 18,
        ("urban", "fog"): 18,
    },
    "lstm": {
        ("forest", "in_distribution"): 19,
        ("forest", "fall"): 12,
        ("forest", "fog"): 10,
        ("urban", "in_distribution"): 19,
        ("urban", "fog"): 11,
    },
    "gru": {
        ("forest", "in_distribution"): 18,
        ("forest", "fall"): 11,
        ("urban", "in_distribution"): 18,
        ("urban", "fog"): 10,
    },
    "expert": {
        ("forest", "in_distribution"): 20,
        ("forest", "fall"): 20,
        ("forest", "fog"): 20,
        ("urban", "in_distribution"): 20,
        ("urban", "fog"): 20,
    },
}


def _episodes(controller: str, world: str, successes: int, tracks: bool) -> list:
    """Episode records as `lnn-nav eval` writes them; the expert's path on seed s is 100 + s - 1000 m,
    every learner flies 1.2 x that, listed in reverse seed order so matching must go by seed."""
    eps = []
    route = make_world(world, SEEDS[0]) if tracks else None
    start, goal = (np.asarray(route.start[:3]), np.asarray(route.goal[:3])) if route else (None, None)
    for i, seed in enumerate(SEEDS):
        outcome = "success" if i < successes else ("collision" if i % 2 else "timeout")
        expert_path = 100.0 + seed - 1000
        ep = {
            "kind": world,
            "seed": seed,
            "outcome": outcome,
            "frames": 300,
            "time": 20.0 + i % 3,
            "path_length": expert_path * (1.0 if controller == "expert" else 1.2) if outcome == "success" else 7.0,
            "bag": None,
            "expert_reachable": True,
            "min_clearance": 0.5 + 0.01 * i,
            "future_key": {"x": 1},
        }
        if tracks:
            ends = goal if outcome == "success" else (start + goal) / 2
            ep["track"] = np.linspace(start, ends, 30).round(2).tolist()
        eps.append(ep)
    return eps[::-1] if controller != "expert" else eps


def _results(table: dict, tracks: bool = False) -> dict:
    """Results as `lnn-nav eval` writes them; ``tracks``: urban episodes carry one (urban maps draw fast)."""
    cells = []
    for controller, conditions in table.items():
        for (world, preset), successes in conditions.items():
            cells.append(
                {
                    "controller": controller,
                    "world": world,
                    "preset": preset,
                    "episodes": N,
                    "success_rate": successes / N,
                    "ci95": [0, 1],
                    "outcomes": {"success": successes},
                    "episodes_detail": _episodes(controller, world, successes, tracks and world == "urban"),
                }
            )
    return {"seconds": 1.0, "seeds": [SEEDS[0], SEEDS[-1]], "cells": cells}


def _write(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data))
    return path


@pytest.fixture()
def cells(tmp_path):
    return load_results([_write(tmp_path / "results.json", _results(LIQUID_ROBUST))])


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    cells = load_results([_write(out / "results.json", _results(LIQUID_ROBUST, tracks=True))])
    path = write_report(cells, out / "report", extra_sections=[("Camera", "![camera](camera.gif)")])
    return path, path.read_text()


def _row(table: str, controller: str) -> dict:
    lines = table.strip().splitlines()
    header = [h.strip() for h in lines[0].strip("|").split("|")]
    for line in lines[2:]:
        values = [v.strip() for v in line.strip("|").split("|")]
        if values[0] == controller:
            return dict(zip(header, values))
    raise AssertionError(f"no row {controller} in\n{table}")


def test_success_table_has_controllers_as_rows_and_rates_with_wilson_intervals(cells):
    table = success_table(cells)
    assert [line.split("|")[1].strip() for line in table.splitlines()[2:]] == [
        "cfc-ncp",
        "ltc",
        "lstm",
        "gru",
        "expert",
    ]
    row = _row(table, "cfc-ncp")
    assert row["forest in-dist"] == "100% [84–100]"  # Wilson 20/20
    assert row["urban in-dist"] == "95% [76–99]"  # Wilson 19/20
    assert row["forest fog"] == "80% [58–92]"


def test_ood_means_average_the_conditions_per_world_and_overall(cells):
    row = _row(success_table(cells), "cfc-ncp")
    assert row["forest OOD mean"].startswith("85% [")  # (18 + 16) / 40
    assert row["urban OOD mean"].startswith("85% [")  # 17 / 20
    assert row["OOD mean"].startswith("85% [")  # (18 + 16 + 17) / 60
    lstm = _row(success_table(cells), "lstm")
    assert lstm["forest OOD mean"].startswith("55% [") and lstm["OOD mean"].startswith("55% [")


def test_one_world_table_has_only_that_worlds_columns(cells):
    header = success_table(cells, world="urban").splitlines()[0]
    assert "urban fog" in header and "forest" not in header and header.count("OOD mean") == 1


def test_a_condition_a_controller_skipped_reads_not_run(cells):
    assert _row(success_table(cells), "gru")["forest fog"] == "not run"


def test_targets_are_checked_against_the_numbers(cells):
    checks = {c.target: c for c in check_targets(cells)}
    assert checks["cfc-ncp ≥95% in distribution, forest"].status == "met"
    urban = checks["cfc-ncp ≥95% in distribution, urban"]
    assert urban.status == "met" and "interval reaches below 95%" in urban.text
    assert checks["cfc-ncp ≥85% averaged over OOD conditions"].status == "met"
    ood = checks["cfc-ncp ≥85% averaged over OOD conditions"].text
    assert "not run: forest winter" in ood and "(the interval reaches below 85%)" in ood


def test_targets_are_the_shipped_controllers_when_seed_runs_sit_beside_it(tmp_path):
    # A comparison's cfc_ncp_s<k> runs are reported over training seeds; the targets are cfc_ncp's.
    table = {**LIQUID_ROBUST, "cfc_ncp_s1": {k: 5 for k in LIQUID_ROBUST["cfc_ncp"]}}
    checks = check_targets(load_results([_write(tmp_path / "r.json", _results(table))]))
    flagship = [c for c in checks if c.target.startswith("cfc-ncp")]
    assert len(flagship) == 4 and all(c.status == "met" and "cfc_ncp_s1" not in c.text for c in flagship)
    # Seed runs alone: each is checked, none is dropped.
    del table["cfc_ncp"]
    table["cfc_ncp_s0"] = LIQUID_ROBUST["cfc_ncp"]
    checks = check_targets(load_results([_write(tmp_path / "s.json", _results(table))]))
    forest = [c for c in checks if c.target == "cfc-ncp ≥95% in distribution, forest"]
    assert [c.status for c in forest] == ["met", "not met"]


def test_every_ood_condition_is_held_to_the_floor_and_the_worst_are_named(tmp_path):
    # cfc_ncp: fall 18/20, fog 16/20 (forest), fog 17/20 (urban): the worst is 80%, above 60% and below 85%.
    checks = check_targets(load_results([_write(tmp_path / "r.json", _results(LIQUID_ROBUST))]))
    floor = [c for c in checks if c.target == "cfc-ncp ≥60% in every OOD condition"]
    assert [c.status for c in floor] == ["met"]
    assert "the worst of 3 conditions, forest fog, flies 80%" in floor[0].text
    table = {**LIQUID_ROBUST, "cfc_ncp": {**LIQUID_ROBUST["cfc_ncp"], ("urban", "fog"): 11, ("forest", "fall"): 5}}
    checks = check_targets(load_results([_write(tmp_path / "s.json", _results(table))]), Targets(min_ood_cell=0.6))
    (floor,) = [c for c in checks if c.target.endswith("in every OOD condition")]
    assert floor.status == "not met"
    assert floor.text.startswith("cfc-ncp: 2 of 3 conditions below 60%: forest fall 25% [")
    assert "urban fog 55% [" in floor.text and "forest fog" not in floor.text
    # No OOD run at all: not run, not met.
    in_dist = {k: v for k, v in LIQUID_ROBUST["cfc_ncp"].items() if k[1] == "in_distribution"}
    checks = check_targets(load_results([_write(tmp_path / "t.json", _results({"cfc_ncp": in_dist}))]))
    assert [c.status for c in checks if c.target.endswith("in every OOD condition")] == ["not run"]
    with pytest.raises(ValueError, match="target min_ood_cell must be a success rate"):
        Targets(min_ood_cell=60)


def test_the_floor_counts_named_presets_only_checks_each_run_and_names_what_was_not_run(tmp_path):
    # A combination cell below the floor is not one of the 13 conditions; each seed run is checked on its own.
    runs = {
        "cfc_ncp_s0": {**LIQUID_ROBUST["cfc_ncp"], ("forest", "fall_evening"): 2},
        "cfc_ncp_s1": {**LIQUID_ROBUST["cfc_ncp"], ("urban", "fog"): 4},
    }
    checks = check_targets(load_results([_write(tmp_path / "r.json", _results(runs))]))
    floor = [c for c in checks if c.target.endswith("in every OOD condition")]
    assert [c.status for c in floor] == ["met", "not met"]
    assert floor[0].text.startswith("cfc-ncp-s0: the worst of 3 conditions, forest fog, flies 80%")
    assert "fall evening" not in floor[0].text and "; not run: forest winter" in floor[0].text
    assert floor[1].text.startswith("cfc-ncp-s1: 1 of 3 conditions below 60%: urban fog 20%")


def test_liquid_degrading_less_is_stated_with_the_drops(cells):
    drops, ood = degradation(cells)
    # gru skipped forest fog, so the fair comparison uses forest fall and urban fog only.
    assert ood == [("forest", "fall"), ("urban", "fog")]
    by_name = {d.controller: d for d in drops}
    assert by_name["cfc-ncp"].drop == pytest.approx((20 + 19) / 40 - (18 + 17) / 40)
    assert by_name["lstm"].drop == pytest.approx((19 + 19) / 40 - (12 + 11) / 40)
    check = check_targets(cells)[-1]
    assert check.status == "met" and "Every liquid core lost less" in check.text
    assert "cfc-ncp 97.5% → 87.5% (−10.0 pp)" in check.text and "lstm 95.0% → 57.5% (−37.5 pp)" in check.text


def test_a_controller_flown_in_distribution_only_is_left_out_of_the_drops(tmp_path):
    # The shipped GRU was never flown OOD: it must not empty the common set of conditions.
    table = {**LIQUID_ROBUST, "cnn": {("forest", "in_distribution"): 20, ("urban", "in_distribution"): 20}}
    cells = load_results([_write(tmp_path / "r.json", _results(table))])
    drops, ood = degradation(cells)
    assert ood == [("forest", "fall"), ("urban", "fog")] and "cnn" not in {d.controller for d in drops}
    check = check_targets(cells)[-1]
    assert check.status == "met" and "not compared, no OOD run: cnn" in check.text


def test_liquid_not_degrading_less_is_stated_plainly(tmp_path):
    swapped = {
        **LIQUID_ROBUST,
        "ltc": {k: v - 8 if k[1] != "in_distribution" else v for k, v in LIQUID_ROBUST["ltc"].items()},
    }
    swapped["lstm"] = {k: 19 if k[1] == "in_distribution" else 17 for k in LIQUID_ROBUST["lstm"]}
    cells = load_results([_write(tmp_path / "r.json", _results(swapped))])
    check = check_targets(cells)[-1]
    assert check.status == "not met"
    assert "ltc" in check.text.split(":")[1] and "lost as much or more" in check.text


def test_seed_runs_beside_their_shipped_run_are_not_counted_again_run_by_run(tmp_path):
    # cfc_ncp_s1 is the shipped cfc_ncp flown again: one recipe must not count twice among the liquid drops.
    worse = {k: v - 10 if k[1] != "in_distribution" else v for k, v in LIQUID_ROBUST["cfc_ncp"].items()}
    table = {**LIQUID_ROBUST, "cfc_ncp_s1": worse, "cfc_ncp_s2": worse}
    check = check_targets(load_results([_write(tmp_path / "r.json", _results(table))]))[-1]
    assert check.status == "met" and "Liquid: cfc-ncp 97.5%" in check.text
    assert "cfc-ncp-s1 " not in check.text.split("Baselines")[0]
    assert "beside their core's shipped run, left to the seeds: cfc-ncp-s1, cfc-ncp-s2" in check.text


def test_comparison_without_baselines_says_not_run(tmp_path):
    only = {k: v for k, v in LIQUID_ROBUST.items() if k in ("cfc_ncp", "expert")}
    cells = load_results([_write(tmp_path / "r.json", _results(only))])
    check = check_targets(cells)[-1]
    assert check.status == "not run" and "no baseline (lstm, gru, cnn) was run" in check.text


def test_missing_flagship_is_reported_not_run(tmp_path):
    cells = load_results([_write(tmp_path / "r.json", _results({"lstm": LIQUID_ROBUST["lstm"]}))])
    statuses = {c.target: c.status for c in check_targets(cells)}
    assert set(statuses.values()) == {"not run"}


def test_path_length_is_relative_to_the_expert_on_the_same_seeds(cells):
    ratio, pairs = path_length_ratios(cells)[("cfc-ncp", "forest", "fog")]
    assert ratio == pytest.approx(1.2) and pairs == 16  # failed flights (7 m) are left out
    assert path_length_ratios(cells)[("expert", "urban", "fog")] == (pytest.approx(1.0), 20)
    assert "| forest fog | cfc-ncp | 20 | 80% | 10% | 20.9 | 1.20 (16) |" in metrics_table(cells)


def test_metrics_without_expert_or_clearance_show_a_dash(tmp_path):
    data = _results({"lstm": LIQUID_ROBUST["lstm"]})
    for cell in data["cells"]:
        for ep in cell["episodes_detail"]:
            del ep["min_clearance"], ep["path_length"]
    row = [
        line
        for line in metrics_table(load_results([_write(tmp_path / "r.json", data)])).splitlines()
        if "forest fall" in line
    ][0]
    assert row.endswith("| — | — |")


def test_files_per_controller_merge_and_rerun_seeds_are_refused(tmp_path):
    a = _write(tmp_path / "a.json", _results({"cfc_ncp": LIQUID_ROBUST["cfc_ncp"]}))
    b = _write(tmp_path / "b.json", _results({"lstm": LIQUID_ROBUST["lstm"]}))
    cells = load_results([a, b])
    assert {c["controller"] for c in cells} == {"cfc-ncp", "lstm"}
    with pytest.raises(ResultsError, match="same seeds"):
        load_results([a, a])


def test_runs_on_different_seeds_pool_their_episodes(tmp_path):
    first = _results({"lstm": {("forest", "fog"): 10}})
    second = _results({"lstm": {("forest", "fog"): 20}})
    for ep in second["cells"][0]["episodes_detail"]:
        ep["seed"] += N
    cells = load_results([_write(tmp_path / "1.json", first), _write(tmp_path / "2.json", second)])
    assert len(cells) == 1 and cells[0]["episodes"] == 2 * N and cells[0]["success_rate"] == 0.75


def test_bar_chart_is_a_real_image(cells, tmp_path):
    path = plot_success_bars(cells, tmp_path / "bars.png")
    image = np.asarray(Image.open(path).convert("L"))
    assert image.shape[0] > 300 and image.shape[1] > 600 and image.std() > 10


def test_plot_tracks_draws_the_world_with_the_tracks(tmp_path):
    world = make_world("urban", 1000)
    straight = np.linspace(world.start[:3], world.goal[:3], 40)
    half = straight[:20]
    path = plot_tracks(
        "urban",
        1000,
        "fog",
        {"expert": straight, "cfc-ncp": half},
        tmp_path / "map.png",
        outcomes={"expert": "success", "cfc-ncp": "collision"},
    )
    image = np.asarray(Image.open(path).convert("L"))
    assert image.shape[0] > 300 and image.std() > 10
    with pytest.raises(ValueError, match="track 'bad'"):
        plot_tracks("urban", 1000, "fog", {"bad": np.zeros(5)}, tmp_path / "bad.png")


def test_report_embeds_charts_maps_seeds_and_extra_sections(report):
    path, text = report
    for name in ("success_rates.png", "in_vs_ood.png"):
        assert f"]({name})" in text and (path.parent / name).stat().st_size > 10_000
    maps = sorted(p.name for p in path.parent.glob("map_*.png"))
    # The first seed on which the controllers' outcomes differ: fog 1010 (gru's first failure), in-dist 1018.
    assert maps == ["map_urban_fog_1010.png", "map_urban_in_distribution_1018.png"]
    assert all(f"]({m})" in text for m in maps)
    assert "20 episodes on held-out seeds 1000–1019" in text
    assert "## Camera" in text and text.index("## Camera") > text.index("## Not run")


def test_report_says_what_was_not_run(report):
    _, text = report
    assert "Controllers not run: cfc, cnn." in text
    assert "urban fall" in text.split("Conditions not run")[1].splitlines()[0]
    assert "Not run by gru: forest fog." in text


def test_report_states_each_target_with_its_verdict(report):
    _, text = report
    assert "| cfc-ncp ≥95% in distribution, forest | ✅ **met** |" in text
    assert "| liquid cores degrade less OOD than LSTM/GRU/CNN | ✅ **met** |" in text


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    cli_report.add_arguments(parser)
    return cli_report.run(parser.parse_args(list(argv)))


def test_cli_writes_the_report(tmp_path, capsys):
    results = _write(tmp_path / "r.json", _results(LIQUID_ROBUST))
    assert _cli(str(results), "--out", str(tmp_path / "out"), "--no-maps") == 0
    assert (tmp_path / "out" / "report.md").is_file()
    assert "met      cfc-ncp ≥95% in distribution, forest" in capsys.readouterr().out


def test_cli_targets_are_the_users_and_their_help_states_the_library_defaults(tmp_path, capsys):
    from lnn_nav.eval.report import Targets

    results = _write(tmp_path / "r.json", _results(LIQUID_ROBUST))
    # cfc-ncp flies 20/20 forest in distribution here: a 100% bar is met, its OOD mean misses 99%.
    argv = [str(results), "--out", str(tmp_path / "out"), "--no-maps", "--target-in-distribution", "1.0"]
    assert _cli(*argv, "--target-ood", "0.99") == 0
    out = capsys.readouterr().out
    assert "met      cfc-ncp ≥100% in distribution, forest" in out
    assert "not met  cfc-ncp ≥99% averaged over OOD conditions" in out
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## Targets\n" in report and "≥100% in distribution" in report and "issue" not in report
    assert _cli(str(results), "--out", str(tmp_path / "o2"), "--target-ood", "85") == 2
    assert "target ood_mean must be a success rate in [0, 1], got 85.0" in capsys.readouterr().err
    parser = argparse.ArgumentParser()
    cli_report.add_arguments(parser)
    helps = {a.dest: a.help for a in parser._actions}
    assert f"(default: {Targets().in_distribution})" in helps["target_in_distribution"]
    assert f"(default: {Targets().ood_mean})" in helps["target_ood"]
    assert f"(default: {Targets().min_ood_cell})" in helps["target_min_ood_cell"]


def test_cli_missing_file_exits_2_with_a_message(tmp_path, capsys):
    assert _cli(str(tmp_path / "nope.json"), "--out", str(tmp_path / "out")) == 2
    assert "no such results file" in capsys.readouterr().err


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        ('{"cells": 3}', "expected an object with a 'cells' list"),
        ('{"cells": [{"world": "forest"}]}', "missing or non-text controller"),
        ('{"cells": []}', "no result cells"),
    ],
)
def test_cli_garbled_file_exits_2_with_a_message(tmp_path, capsys, content, message):
    (tmp_path / "bad.json").write_text(content)
    assert _cli(str(tmp_path / "bad.json"), "--out", str(tmp_path / "out")) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "out").exists()


def _with_ros(data: dict, controller: str, world: str, flights: dict) -> dict:
    """``data`` with a `--ros-episodes` block on one cell: ``flights`` maps seed -> the graph's outcome."""
    for cell in data["cells"]:
        if (cell["controller"], cell["world"], cell["preset"]) == (controller, world, "in_distribution"):
            local = {e["seed"]: e["outcome"] for e in cell["episodes_detail"]}
            cell["ros"] = {
                "episodes": [
                    {"seed": s, "ros_outcome": o, "inprocess_outcome": local[s], "agree": o == local[s]}
                    for s, o in flights.items()
                ],
                "notes": ["not the same noise"],
            }
    return data


def test_report_states_ros_graph_agreement_and_names_each_disagreement(tmp_path, capsys):
    # cfc_ncp succeeds on seeds 1000-1019 in forest: the graph crashing on 1001 is one disagreement.
    data = _with_ros(_results(LIQUID_ROBUST), "cfc_ncp", "forest", {1000: "success", 1001: "collision"})
    results = _write(tmp_path / "r.json", _with_ros(data, "expert", "forest", {1000: "success"}))
    assert _cli(str(results), "--out", str(tmp_path / "out"), "--no-maps") == 0
    assert "ROS 2 graph: 2/3 outcomes as in-process (1 disagree)" in capsys.readouterr().out
    text = (tmp_path / "out" / "report.md").read_text()
    assert "## Through the ROS 2 graph" in text and "- not the same noise" in text
    assert "| cfc-ncp | forest in-dist | 1000–1001 | 1/2 | 1001: ROS collision, in-process success |" in text
    assert "| expert | forest in-dist | 1000 | 1/1 | none |" in text


def test_report_without_ros_checks_has_no_ros_section(report):
    assert "ROS 2 graph" not in report[1]


def test_ros_checks_of_two_runs_pool_like_their_episodes(tmp_path):
    first, second = (_results({"expert": {("forest", "in_distribution"): N}}) for _ in range(2))
    for e in second["cells"][0]["episodes_detail"]:
        e["seed"] += N
    _with_ros(first, "expert", "forest", {1000: "success"})
    _with_ros(second, "expert", "forest", {1000 + N: "timeout"})
    (cell,) = load_results([_write(tmp_path / "a.json", first), _write(tmp_path / "b.json", second)])
    assert (cell["ros"]["agreements"], cell["ros"]["flown"]) == (1, 2)
    assert cell["ros"]["notes"] == ["not the same noise"]


def test_eval_names_a_run_checkpoint_by_its_folder():
    from lnn_nav.eval.cli_eval import controller_name

    assert controller_name("expert") == "expert"
    assert controller_name("models/cfc_ncp.safetensors") == "cfc_ncp"
    assert controller_name("runs/gru_bc/best.safetensors") == "gru_bc"
    assert controller_name("runs/lstm_ft/last.safetensors") == "lstm_ft"
    assert controller_core(controller_name("runs/cfc_ncp_ft/best.safetensors")) == "cfc-ncp"


def test_wilson_interval_contains_the_rate_even_at_0_and_100_percent():
    from lnn_nav.eval.closed_loop import wilson_interval

    # Rounding put 0/11's lower bound at 1e-17 and 21/21's upper at 1 - 1e-16.
    for n in range(1, 201):
        for k in (0, 1, n // 2, n - 1, n):
            lo, hi = wilson_interval(k, n)
            assert 0.0 <= lo <= k / n <= hi <= 1.0, (k, n, lo, hi)
    assert wilson_interval(0, 11)[0] == 0.0 and wilson_interval(21, 21)[1] == 1.0


def test_eval_seeds_are_the_held_out_block_from_the_offset_and_refuse_a_negative_one():
    from lnn_nav.eval.closed_loop import eval_seeds
    from lnn_nav.sim.presets import EVAL_SEEDS

    assert eval_seeds(3) == list(EVAL_SEEDS[:3])
    assert eval_seeds(2, 100) == list(EVAL_SEEDS[100:102])
    # Python would read -1 as "from the end" and fly the last seeds without a word.
    with pytest.raises(ValueError, match="seed offset must be >= 0"):
        eval_seeds(2, -1)
    with pytest.raises(ValueError, match="only 1000 evaluation seeds exist"):
        eval_seeds(2, len(EVAL_SEEDS) - 1)


def test_bar_chart_draws_cells_at_0_and_100_percent_with_any_episode_count(tmp_path):
    # 21/21 and 0/11 had Wilson bounds a rounding error inside the rate: matplotlib
    # refused the chart ("yerr must not contain negative values") and no report was written.
    def cell(preset: str, n: int, successes: int) -> dict:
        eps = [
            {
                "kind": "forest",
                "seed": 1000 + i,
                "outcome": "success" if i < successes else "collision",
                "frames": 10,
                "time": 1.0,
                "path_length": 1.0,
                "bag": None,
            }
            for i in range(n)
        ]
        return {
            "controller": "cfc_ncp",
            "world": "forest",
            "preset": preset,
            "episodes": n,
            "success_rate": successes / n,
            "ci95": [0, 1],
            "episodes_detail": eps,
        }

    data = {"seconds": 1.0, "cells": [cell("in_distribution", 21, 21), cell("fog", 11, 0)]}
    cells = load_results([_write(tmp_path / "r.json", data)])
    path = plot_success_bars(cells, tmp_path / "bars.png")
    assert np.asarray(Image.open(path).convert("L")).std() > 10
    assert _row(success_table(cells), "cfc-ncp")["forest in-dist"] == "100% [85–100]"


def test_committed_benchmark_report_matches_the_committed_results():
    # docs/benchmark/report.md is what the README shows; it must be rebuilt when models/eval/ changes.
    # Only the shipped controllers' current results live in the tree (experiments: git history, docs/experiments.md),
    # with the comparison's training-seed runs of the same recipe in models/eval/seeds/.
    root = Path(__file__).resolve().parents[1]
    results = sorted((root / "models" / "eval").glob("*.json")) + sorted(
        (root / "models" / "eval" / "seeds").glob("*.json")
    )
    assert results, "models/eval/ holds the controllers' results"
    from lnn_nav.eval.report import split_combinations

    # The combination presets have their own table; the per-world tables hold the named presets.
    cells = split_combinations(load_results(results))[1]
    report = root / "docs" / "benchmark" / "report.md"
    committed = report.read_text()
    for world in ("forest", "urban"):
        hint = (
            f"{world} table differs; rebuild: lnn-nav report models/eval/*.json models/eval/seeds/*.json "
            "--out docs/benchmark --no-maps"
        )
        assert success_table(cells, world=world) in committed, hint
    for source in results:
        assert f"`{source.relative_to(root)}`" in committed, f"{report} does not name {source.name} as a source"


def test_results_as_csv_one_row_per_cell_and_per_episode(tmp_path):
    import csv

    from lnn_nav.eval.tables import write_results_csv

    data = _results(LIQUID_ROBUST)
    cell = data["cells"][0]
    cell["ros"] = {
        "flown": 2,
        "agreements": 1,
        "errors": 0,
        "episodes": [{"seed": SEEDS[0], "ros_outcome": "success"}, {"seed": SEEDS[1], "ros_outcome": "timeout"}],
    }
    cells_csv, episodes_csv = write_results_csv(data["cells"], tmp_path / "results.json")
    assert (cells_csv.name, episodes_csv.name) == ("results.cells.csv", "results.episodes.csv")
    rows = list(csv.DictReader(cells_csv.open()))
    assert len(rows) == len(data["cells"])
    first = rows[0]
    assert (first["controller"], first["world"], first["preset"], first["episodes"], first["successes"]) == (
        "cfc_ncp",
        "forest",
        "in_distribution",
        "20",
        "20",
    )
    assert (first["ros_flown"], first["ros_agreements"]) == ("2", "1")
    assert rows[1]["ros_flown"] == ""
    episodes = list(csv.DictReader(episodes_csv.open()))
    assert len(episodes) == N * len(data["cells"])
    by_seed = {int(e["seed"]): e for e in episodes[:N]}
    assert by_seed[SEEDS[1]]["ros_outcome"] == "timeout" and by_seed[SEEDS[5]]["ros_outcome"] == ""
    assert float(by_seed[SEEDS[0]]["path_length"]) == pytest.approx(120.0)


def test_report_writes_its_cells_as_csv(report):
    import csv

    path, text = report
    rows = list(csv.DictReader((path.parent / "cells.csv").open()))
    assert {r["controller"] for r in rows} == {"cfc-ncp", "ltc", "lstm", "gru", "expert"}
    assert "[`cells.csv`](cells.csv)" in text
