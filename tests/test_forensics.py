"""Crash and timeout diagnosis: what was hit, from where, whether the expert disagreed; where a timed-out
track left the plan and what it cost; in eval results and the report."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from lnn_nav.eval.crashes import crash_line, crash_reports, crash_table
from lnn_nav.eval.report import condition_label, load_results, write_report
from lnn_nav.eval.tables import write_results_csv
from lnn_nav.eval.timeouts import timeout_line, timeout_reports, timeout_table
from lnn_nav.rollouts.flights import FlightJob, fly_worker
from lnn_nav.sim.expert import DEMO_EXPERT, ExpertConfig, PrivilegedExpert
from lnn_nav.sim.forensics import (
    MISSED_TURN,
    crash_report,
    nearest_obstacle,
    summarize_crashes,
    summarize_timeouts,
    timeout_report,
)
from lnn_nav.sim.world import MATERIAL_ID, WorldSpec


def _world() -> WorldSpec:
    """A trunk at (10, 0), a building rotated 30 degrees at (10, 8), a bush at (0, -8)."""
    return WorldSpec(
        kind="forest",
        seed=7,
        bounds=(-20.0, 30.0, -20.0, 20.0),
        start=(-10.0, 0.0, 2.0, 0.0),
        goal=(25.0, 0.0, 2.0),
        cylinders=[[10.0, 0.0, 0.0, 10.0, 0.3]],
        cylinder_materials=[MATERIAL_ID["bark"]],
        boxes=[[10.0, 8.0, 3.0, 2.0, 1.0, 3.0, math.radians(30)]],
        box_materials=[MATERIAL_ID["concrete"]],
        spheres=[[0.0, -8.0, 1.0, 0.5]],
        sphere_materials=[MATERIAL_ID["undergrowth"]],
    )


def test_nearest_obstacle_names_the_primitive_and_points_at_its_surface() -> None:
    w = _world()
    trunk = nearest_obstacle(w, np.array([9.5, 0.0, 2.0]))
    assert (trunk["material"], trunk["shape"]) == ("bark", "cylinder")
    assert trunk["size"] == pytest.approx(0.3) and trunk["distance"] == pytest.approx(0.2)
    assert np.allclose(trunk["direction"], [1.0, 0.0, 0.0], atol=1e-4)
    # The building's long side faces 30 degrees + 90: a point off that face sees the wall along its normal.
    normal = np.array([-math.sin(math.radians(30)), math.cos(math.radians(30)), 0.0])
    wall = nearest_obstacle(w, np.array([10.0, 8.0, 3.0]) - 1.3 * normal)
    assert (wall["material"], wall["shape"]) == ("concrete", "box")
    assert wall["size"] == pytest.approx(2.0)  # narrower horizontal width
    assert wall["distance"] == pytest.approx(0.3) and np.allclose(wall["direction"], normal, atol=1e-4)
    bush = nearest_obstacle(w, np.array([0.0, -7.2, 1.0]))
    assert (bush["material"], bush["shape"]) == ("undergrowth", "sphere")
    ground = nearest_obstacle(w, np.array([-10.0, 0.0, 0.1]))
    assert ground["material"] == "ground" and ground["distance"] == pytest.approx(0.1)


def _approach(yaw: float, speed: float, steps: int = 40, dt: float = 1 / 15):
    """States of a drone sliding along +x up to the trunk, heading ``yaw``."""
    x = np.linspace(9.7 - speed * dt * (steps - 1), 9.7, steps)
    positions = np.column_stack([x, np.zeros(steps), np.full(steps, 2.0)])
    velocities = np.tile([speed, 0.0, 0.0], (steps, 1))
    return positions, np.full(steps, yaw), velocities


def test_bearing_view_and_hovering_of_a_crash() -> None:
    w = _world()
    dt = 1 / 15
    pos, yaw, vel = _approach(0.0, 2.0)
    head_on = crash_report(w, pos, yaw, vel, np.zeros((len(pos), 4)), pos[-1] + [0.05, 0, 0], dt)
    assert head_on["material"] == "bark" and head_on["bearing_heading"] == pytest.approx(0.0, abs=0.5)
    assert head_on["in_view"] is True and head_on["hovering"] is False and head_on["speed"] == pytest.approx(2.0)
    assert head_on["yaw_rate_gap"] is None and head_on["expert_turning"] is None  # no expert given
    assert (head_on["turning"], head_on["sliding"]) == (None, None)  # dead ahead: no side to turn to
    # Heading +90 (left), nearly stopped: the trunk is on the right, -90, outside a 90-degree camera.
    pos, yaw, vel = _approach(math.pi / 2, 0.1)
    side = crash_report(w, pos, yaw, vel, np.zeros((len(pos), 4)), pos[-1], dt)
    assert side["bearing_heading"] == pytest.approx(-90.0, abs=0.5)
    assert side["in_view"] is False and side["hovering"] is True
    # The trunk is on the right: a left turn is away from it, a rightward slide (vy < 0) into it.
    flown = np.tile([0.0, -0.4, 0.0, 0.6], (len(pos), 1))
    moving = crash_report(w, pos, yaw, vel, flown, pos[-1], dt)
    assert (moving["turning"], moving["sliding"]) == ("away", "towards")
    flown[-3:] = [0.0, 0.0, 0.0, -0.6]  # only the last 0.5 s (8 steps) count: their mean is still a left turn
    assert crash_report(w, pos, yaw, vel, flown, pos[-1], dt)["turning"] == "away"
    flown[-8:] = [0.0, 0.0, 0.0, -0.6]
    assert crash_report(w, pos, yaw, vel, flown, pos[-1], dt)["turning"] == "towards"
    behind = crash_report(w, pos, np.full(len(pos), math.pi), vel, np.zeros((len(pos), 4)), pos[-1], dt)
    assert abs(behind["bearing_heading"]) == pytest.approx(180.0, abs=0.5)
    with pytest.raises(ValueError, match="same, non-zero"):
        crash_report(w, pos, yaw[:-1], vel, np.zeros((len(pos), 4)), pos[-1], dt)


def test_expert_disagreement_is_measured_against_fresh_expert_labels() -> None:
    w = _world()
    dt = 1 / 15
    expert = PrivilegedExpert(w, ExpertConfig(**DEMO_EXPERT))
    pos, yaw, vel = _approach(0.3, 1.5)
    agreeing = np.empty((len(pos), 4))
    for k in range(len(pos)):
        expert.reset()
        agreeing[k] = expert.command(pos[k : k + 1], yaw[k : k + 1], dt)[0]
    same = crash_report(w, pos, yaw, vel, agreeing, pos[-1], dt, expert=expert)
    assert same["yaw_rate_gap"] == pytest.approx(0.0, abs=1e-9) and same["disagreeing_seconds"] == 0.0
    turned = agreeing + np.array([0.0, 0.0, 0.0, 1.0])
    other = crash_report(w, pos, yaw, vel, turned, pos[-1], dt, expert=expert, window=2.0)
    assert other["yaw_rate_gap"] == pytest.approx(1.0)
    assert other["disagreeing_seconds"] == pytest.approx(2.0, abs=dt / 2)  # the whole window, 30 steps
    s = summarize_crashes([same, other])
    assert s["crashes"] == 2 and s["materials"] == {"bark": 2} and s["ahead"] == 2
    assert same["expert_turning"] == other["expert_turning"] in ("towards", "away", "straight")
    assert (s["expert_disagreed"], s["expert_asked"]) == (1, 2)


def test_crash_summary_takes_the_view_from_the_camera_that_flew() -> None:
    # 50 degrees off the heading: outside a 90 degree camera, inside a 120 degree one.
    def report(in_view):
        r = {"material": "pole", "bearing_heading": 50.0, "speed": 1.0}
        if in_view is not None:
            r["in_view"] = in_view
        return r

    wide = summarize_crashes([report(True)])
    assert (wide["side"], wide["out_of_view"]) == (1, 0)
    narrow = summarize_crashes([report(False)])
    assert (narrow["side"], narrow["out_of_view"]) == (0, 1)
    old = summarize_crashes([report(None)], hfov_deg=120.0)  # reports from before in_view: the given camera
    assert (old["side"], old["out_of_view"]) == (1, 0)


@pytest.fixture(scope="module")
def crashed_flights() -> list:
    """The expert, tuned to cut trunks close at 5 m/s in a dense forest, crashes in some of these worlds."""
    job = FlightJob(
        kind="forest",
        seeds=[100_000, 100_001, 100_002, 100_003],
        out_dir="/nonexistent",
        record=False,
        noise=0.0,
        envs=4,
        camera_width=32,
        camera_height=24,
        expert={"inflate": 0.26, "clearance_weight": 0.0, "cruise_speed": 5.0, "lookahead": 6.0},
        world_overrides={"size": (64.0, 40.0), "density": 10.0},
    )
    return fly_worker(job)


def test_every_collision_of_a_flight_carries_its_diagnosis(crashed_flights: list) -> None:
    crashes = [r for r in crashed_flights if r["outcome"] == "collision"]
    assert crashes, "the close-cutting expert was expected to hit a trunk"
    for r in crashed_flights:
        assert (r["crash"] is not None) == (r["outcome"] == "collision")
    for r in crashes:
        c = r["crash"]
        assert c["material"] in ("bark", "leaves", "undergrowth", "ground")
        assert -180.0 <= c["bearing_heading"] <= 180.0 and c["speed"] > 1.0
        assert c["yaw_rate_gap"] is not None and 0.0 <= c["disagreeing_seconds"] <= 2.0
        json.dumps(c)  # goes into the eval JSON as is


def test_the_report_tabulates_the_crashes(crashed_flights: list, tmp_path: Path) -> None:
    raw = {"controller": "expert", "world": "forest", "preset": "in_distribution", "episodes_detail": crashed_flights}
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"cells": [raw]}))
    (cell,) = load_results([results])
    n = sum(r["outcome"] == "collision" for r in crashed_flights)
    assert len(crash_reports(cell)) == n
    line = crash_line(cell)
    assert line.startswith("crashes: ") and "contact ahead" in line and "expert disagreed >=1 s in" in line
    row = crash_table([cell], condition_label).splitlines()[2].split(" | ")
    assert row[0] == "| expert" and row[1] == "forest in-dist" and row[2] == str(n)
    md = write_report([cell], tmp_path / "report", maps=False).read_text()
    assert "## Why the crashes" in md and "![collisions by bearing](crash_bearings.png)" in md
    assert (tmp_path / "report" / "crash_bearings.png").stat().st_size > 1000
    # Results from before crash reports: said, not shown as zero crashes.
    old = {**cell, "episodes_detail": [{k: v for k, v in r.items() if k != "crash"} for r in crashed_flights]}
    assert crash_table([old], condition_label) is None and crash_line(old) is None
    md = write_report([old], tmp_path / "old", maps=False).read_text()
    assert "carry no crash reports" in md and not (tmp_path / "old" / "crash_bearings.png").exists()


def _polyline(points: list, step: float) -> np.ndarray:
    """Points every ``step`` m along the polyline through ``points`` ``[(x, y), ...]``."""
    out = [np.asarray(points[0], dtype=float)]
    for a, b in zip(points[:-1], points[1:]):
        a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        n = max(1, int(round(np.linalg.norm(b - a) / step)))
        out += [a + (b - a) * k / n for k in range(1, n + 1)]
    return np.array(out)


def test_a_timeout_on_the_plan_is_slow_not_lost() -> None:
    world = _world()
    expert = PrivilegedExpert(world, ExpertConfig(**DEMO_EXPERT))
    plan = expert.path(world.start[:2])
    half = plan[: len(plan) // 2]
    r = timeout_report(world, half, 0.1, expert)
    assert r["kind"] == "on_plan" and r["left_plan_at"] is None and r["detour"] is None
    assert r["plan_length"] == pytest.approx(np.linalg.norm(np.diff(plan, axis=0), axis=1).sum(), abs=0.1)
    assert r["plan_left"] == pytest.approx(r["plan_length"] / 2, abs=1.0)
    # 0.25 m per 0.1 s: never under the hovering speed; the same track standing still at the end hovers.
    assert r["hovering_seconds"] == 0.0
    stuck = timeout_report(world, np.vstack([half, np.repeat(half[-1:], 20, axis=0)]), 0.1, expert)
    assert stuck["hovering_seconds"] == pytest.approx(2.0) and stuck["kind"] == "on_plan"


def test_flying_on_past_the_plan_is_a_missed_turn_with_the_goal_to_the_side() -> None:
    world = _world()  # start (-10, 0), goal (25, 0); the plan passes the trunk at y = 2.9
    expert = PrivilegedExpert(world, ExpertConfig(**DEMO_EXPERT))
    plan = expert.path(world.start[:2])
    k = int(np.argmax(plan[:, 0] >= -5.0))
    # Along the plan to x = -5, then 3 m/s to the left (+y) for 8 s: away from a goal ahead.
    dt = 0.1
    corner = tuple(plan[k])
    track = np.vstack([plan[:k], _polyline([corner, (corner[0], corner[1] + 24.0)], 3.0 * dt)])
    r = timeout_report(world, track, dt, expert)
    assert r["kind"] == "missed_turn"
    i = int(round(r["left_plan_at"] / dt))
    away = np.linalg.norm(plan[None] - track[:, None], axis=2).min(axis=1)
    assert away[i] > 2.5 and away[i - 1] <= 2.5  # the first point more than OFF_PLAN from the plan
    # Flying +y with the goal ahead-right: the bearing is the goal's angle less 90 degrees (left positive).
    to_goal = np.array(world.goal[:2]) - track[i]
    assert r["goal_bearing"] == pytest.approx(math.degrees(math.atan2(to_goal[1], to_goal[0])) - 90.0, abs=1.0)
    assert r["goal_distance"] == pytest.approx(np.linalg.norm(to_goal), abs=0.1)
    # The rest of the leg flown after leaving (about 21 m, under DETOUR_HORIZON), nearly all away from the goal.
    assert MISSED_TURN <= r["detour"] < 2 * 21.5
    # Heading for a point near the goal instead: no longer than the plan's way; another route.
    other = np.vstack([plan[:k], _polyline([corner, (25.0, 8.0)], 3.0 * dt)])
    r = timeout_report(world, other, dt, expert)
    assert r["kind"] == "other_route" and r["detour"] < MISSED_TURN and abs(r["goal_bearing"]) < 30.0
    with pytest.raises(ValueError, match="positions"):
        timeout_report(world, other[:1], dt, expert)


def test_timeouts_of_a_flight_carry_their_diagnosis_into_the_eval_console_and_report(tmp_path: Path) -> None:
    # The expert given 3 s: every flight times out on its own plan.
    job = FlightJob(
        kind="forest",
        seeds=[1000, 1001],
        out_dir="",
        record=False,
        noise=0.0,
        envs=2,
        camera_width=32,
        camera_height=24,
        max_episode_time=3.0,
        expert=dict(DEMO_EXPERT),
    )
    flights = fly_worker(job)
    assert [r["outcome"] for r in flights] == ["timeout", "timeout"]
    for r in flights:
        t = r["timeout"]
        assert t["kind"] == "on_plan" and 0.0 < t["plan_left"] < t["plan_length"] and r["crash"] is None
        json.dumps(t)
    raw = {"controller": "expert", "world": "forest", "preset": "in_distribution", "episodes_detail": flights}
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"cells": [raw]}))
    (cell,) = load_results([results])
    assert len(timeout_reports(cell)) == 2
    _, episodes_csv = write_results_csv([cell], results)
    rows = list(csv.DictReader(episodes_csv.open()))
    assert [r["timeout_kind"] for r in rows] == ["on_plan", "on_plan"] and rows[0]["detour"] == ""
    assert timeout_line(cell).startswith("timeouts: missed turn 0, other route 0, on the plan 2;")
    row = timeout_table([cell], condition_label).splitlines()[2].split(" | ")
    assert row[:6] == ["| expert", "forest in-dist", "2", "0", "0", "2"]
    md = write_report([cell], tmp_path / "report", maps=False).read_text()
    assert "## Why the timeouts" in md and "| expert | forest in-dist | 2 |" in md
    old = {**cell, "episodes_detail": [{k: v for k, v in r.items() if k != "timeout"} for r in flights]}
    assert timeout_table([old], condition_label) is None and timeout_line(old) is None
    assert "carry no timeout reports" in write_report([old], tmp_path / "old", maps=False).read_text()


def test_timeout_summary_takes_goal_and_detour_from_the_missed_turns_only() -> None:
    reports = [
        {
            "kind": "missed_turn",
            "detour": 30.0,
            "goal_distance": 10.0,
            "goal_bearing": -70.0,
            "plan_left": 40.0,
            "hovering_seconds": 0.0,
        },
        {
            "kind": "missed_turn",
            "detour": 40.0,
            "goal_distance": 20.0,
            "goal_bearing": 80.0,
            "plan_left": 60.0,
            "hovering_seconds": 1.0,
        },
        {
            "kind": "other_route",
            "detour": 2.0,
            "goal_distance": 50.0,
            "goal_bearing": 5.0,
            "plan_left": 10.0,
            "hovering_seconds": 3.0,
        },
    ]
    s = summarize_timeouts(reports)
    assert (s["timeouts"], s["missed_turn"], s["other_route"], s["on_plan"]) == (3, 2, 1, 0)
    assert (s["median_detour"], s["median_goal_distance"], s["median_goal_bearing"]) == (35.0, 15.0, 75.0)
    assert (s["median_plan_left"], s["median_hovering"]) == (40.0, 1.0)
