"""The PX4 world node's geometry and rules, without PX4: where PX4's frame lands in an lnn_nav world, and
how a track flown there is judged (as the embedded simulator judges its own)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lnn_nav.geometry import quaternion_yaw
from lnn_nav.nodes.px4_world_node import EpisodeJudge, WorldFrame
from lnn_nav.sim.presets import make_world


def ned_heading(yaw_ned: float) -> np.ndarray:
    """PX4 attitude (FRD -> NED) of a level vehicle heading ``yaw_ned`` (from north, clockwise)."""
    return np.array([math.cos(yaw_ned / 2), 0.0, 0.0, math.sin(yaw_ned / 2)])


@pytest.mark.parametrize("px4_heading_deg", [0.0, 90.0, -135.0])
@pytest.mark.parametrize("start_yaw", [0.0, 1.0, -3.0])
def test_px4s_start_and_heading_become_the_worlds(px4_heading_deg, start_yaw):
    heading = math.radians(px4_heading_deg)
    origin = np.array([3.0, -2.0, -0.1])  # NED, on the ground where PX4 booted
    frame = WorldFrame.at(origin, ned_heading(heading), (10.0, 5.0, 2.0, start_yaw))
    # On the ground at the start: the world's start point, at ground height.
    np.testing.assert_allclose(frame.position(origin), [10.0, 5.0, 0.0], atol=1e-9)
    assert math.isclose(quaternion_yaw(frame.attitude(ned_heading(heading))), start_yaw, abs_tol=1e-9)
    # 2 m up and 1 m forward along PX4's heading: 1 m along the world's start heading, 2 m up.
    ahead = origin + np.array([math.cos(heading), math.sin(heading), -2.0])
    np.testing.assert_allclose(
        frame.position(ahead), [10.0 + math.cos(start_yaw), 5.0 + math.sin(start_yaw), 2.0], atol=1e-9
    )
    # A velocity to PX4's right (FRD +y) is to the world heading's right.
    right = np.array([-math.sin(heading), math.cos(heading), 0.0])
    np.testing.assert_allclose(frame.vector(right), [math.sin(start_yaw), -math.cos(start_yaw), 0.0], atol=1e-9)


def judge_for(kind: str) -> tuple[EpisodeJudge, object]:
    world = make_world(kind, 3)
    return EpisodeJudge(world, max_episode_time=20.0, airborne_height=0.5), world


def test_the_episode_starts_at_liftoff_and_ends_at_the_goal():
    judge, world = judge_for("forest")
    start = np.array(world.start[:3])
    assert judge.update(0.0, start * [1, 1, 0] + [0, 0, 0.1]) is None and not judge.started  # on the ground
    assert judge.update(1.0, start) is None and judge.started
    assert judge.update(5.0, np.array(world.goal) + [0.5, 0, 0]) == "success"
    result = judge.result("success", 5.0)
    assert result["time"] == 4.0 and result["outcome"] == "success" and result["seed"] == 3


def test_an_obstacle_a_wall_of_the_world_and_the_clock_end_the_episode():
    judge, world = judge_for("forest")
    judge.update(0.0, np.array(world.start[:3]))
    trunk = world.cylinders[0]  # x, y, z_min, z_max, r: on the axis of the first trunk
    assert judge.update(1.0, np.array([trunk[0], trunk[1], 2.0])) == "collision"
    judge, world = judge_for("forest")
    judge.update(0.0, np.array(world.start[:3]))
    x_max = world.bounds[1]
    assert judge.update(1.0, np.array([x_max + 1.0, 0.0, 2.0])) == "out_of_bounds"
    judge, world = judge_for("forest")
    judge.update(0.0, np.array(world.start[:3]))
    assert judge.update(20.0, np.array(world.start[:3])) == "timeout"


def test_a_take_off_that_never_lifts_off_far_enough_can_still_start_the_episode():
    judge, world = judge_for("urban")
    low = np.array([*world.start[:2], 0.4])
    assert judge.update(0.0, low) is None and not judge.started
    judge.start(3.0)
    assert judge.started and judge.update(5.0, low) is None and judge.elapsed(5.0) == 2.0
