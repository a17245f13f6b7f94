"""Gymnasium envs and the privileged expert, closed loop through the real simulator."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import lnn_nav.sim  # noqa: F401  (registers the envs)
from lnn_nav.sim.camera import CameraConfig
from lnn_nav.sim.env import NavigationEnv, NavigationVectorEnv
from lnn_nav.sim.expert import PrivilegedExpert
from lnn_nav.sim.presets import make_world

SMALL = CameraConfig(width=32, height=24)


def _fly_expert(env: NavigationEnv, seed: int, max_steps: int = 2000):
    obs, info = env.reset(seed=seed)
    expert = PrivilegedExpert(env.world)
    quad = env.quadrotor
    for _ in range(max_steps):
        action = expert.command(quad.position, quad.yaw, 1.0 / env.config.control_hz)[0]
        obs, reward, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            return info
    return info


@pytest.mark.parametrize("env_id", ["lnn_nav/Forest-v0", "lnn_nav/Urban-v0"])
def test_registered_env_passes_the_gymnasium_checker(env_id):
    env = gym.make(env_id, camera=SMALL).unwrapped
    check_env(env, skip_render_check=True)
    env.close()


def test_observation_matches_its_space_and_says_where_the_goal_is():
    env = NavigationEnv(kind="forest", camera=SMALL)
    obs, info = env.reset(seed=5)
    assert env.observation_space.contains(obs)
    # At rest and level at the start, the body-frame goal vector is the world vector rotated by -yaw.
    world = env.world
    d = np.array(world.goal) - np.array(world.start[:3])
    yaw = world.start[3]
    expected = [np.cos(yaw) * d[0] + np.sin(yaw) * d[1], -np.sin(yaw) * d[0] + np.cos(yaw) * d[1], d[2]]
    np.testing.assert_allclose(obs["goal"], expected, atol=1e-3)
    assert info["distance_to_goal"] == pytest.approx(np.linalg.norm(d), abs=1e-6)
    np.testing.assert_allclose(obs["imu"][:3], [0, 0, 9.81], atol=0.3)  # hovering: specific force = +g
    env.close()


def test_same_seed_same_world_and_same_observations():
    a, b = NavigationEnv(kind="urban", camera=SMALL), NavigationEnv(kind="urban", camera=SMALL)
    oa, _ = a.reset(seed=11)
    ob, _ = b.reset(seed=11)
    assert a.world.to_dict() == b.world.to_dict()
    for _ in range(5):
        oa, *_ = a.step(np.array([1.0, 0.0, 0.0, 0.2]))
        ob, *_ = b.step(np.array([1.0, 0.0, 0.0, 0.2]))
    for key in oa:
        np.testing.assert_array_equal(oa[key], ob[key])
    a.close()
    b.close()


def test_flying_into_a_tree_ends_the_episode_as_a_collision():
    env = NavigationEnv(kind="forest", camera=SMALL)
    env.reset(seed=2)
    world = env.world
    # Aim at the nearest trunk ahead and fly straight at it.
    trunks = world.cylinders[world.cylinder_materials == 1]
    start = np.array(world.start[:2])
    nearest = trunks[np.argmin(np.linalg.norm(trunks[:, :2] - start, axis=1))]
    heading = np.arctan2(nearest[1] - start[1], nearest[0] - start[0])
    env.reset(options={"world": world.__class__.from_dict({**world.to_dict(), "start": [*start, 2.0, heading]})})
    for _ in range(300):
        *_, terminated, truncated, info = env.step(np.array([2.0, 0.0, 0.0, 0.0]))
        if terminated or truncated:
            break
    assert info["collision"] and not info["success"]
    env.close()


def test_time_limit_truncates():
    env = NavigationEnv(kind="forest", camera=SMALL, max_episode_time=1.0)
    env.reset(seed=1)
    for _ in range(15):
        *_, terminated, truncated, info = env.step(np.zeros(4))
    assert truncated and not terminated and info["time"] == pytest.approx(1.0)
    env.close()


def test_nan_action_is_refused():
    env = NavigationEnv(kind="forest", camera=SMALL)
    env.reset(seed=1)
    with pytest.raises(ValueError, match="NaN"):
        env.step(np.array([np.nan, 0, 0, 0]))
    env.close()


@pytest.mark.parametrize("kind, seed", [("forest", 7), ("urban", 8)])
def test_expert_reaches_the_goal(kind, seed):
    env = NavigationEnv(kind=kind, camera=SMALL, max_episode_time=90.0)
    info = _fly_expert(env, seed)
    assert info["success"], info
    env.close()


@pytest.mark.slow
def test_expert_succeeds_on_a_seeded_set_of_worlds():
    outcomes = []
    for kind in ("forest", "urban"):
        env = NavigationEnv(kind=kind, camera=SMALL, max_episode_time=90.0)
        outcomes += [_fly_expert(env, seed)["success"] for seed in range(100, 104)]
        env.close()
    assert all(outcomes), outcomes


def test_expert_plan_avoids_obstacles_and_ends_at_the_goal():
    world = make_world("forest", 4)
    expert = PrivilegedExpert(world)
    path = expert.path(world.start[:2])
    assert np.linalg.norm(path[-1] - np.array(world.goal[:2])) < 0.5
    from lnn_nav.sim.collision import signed_distance

    points = np.column_stack([path, np.full(len(path), world.goal[2])])
    assert signed_distance(world, points).min() > 0.3


@pytest.mark.parametrize("seed", [1, 2])
def test_the_urban_demonstrating_expert_keeps_to_the_street_centre_clear_of_poles(seed):
    # Poles stand on the sidewalks and the centre line is kept free of them; the forest's light
    # clearance cost cut corners past them, the urban expert's wide cost keeps to the centre.
    from lnn_nav.rollouts.flights import FlightJob
    from lnn_nav.sim.expert import DEMO_EXPERT, ExpertConfig, demo_expert
    from lnn_nav.sim.world import MATERIAL_ID

    world = make_world("urban", seed)
    poles = world.cylinders[np.asarray(world.cylinder_materials) == MATERIAL_ID["pole"]]

    def closest_pole(expert: dict) -> float:
        path = PrivilegedExpert(world, ExpertConfig(**expert)).path(world.start[:2])
        assert np.linalg.norm(path[-1] - np.array(world.goal[:2])) < 0.5
        return float((np.linalg.norm(path[:, None] - poles[None, :, :2], axis=-1) - poles[None, :, 4]).min())

    assert demo_expert("forest") == DEMO_EXPERT
    assert demo_expert("urban")["clearance_weight"] > DEMO_EXPERT["clearance_weight"]
    assert closest_pole(demo_expert("forest")) < 1.0
    assert closest_pole(demo_expert("urban")) > 4.0
    # Flights, collections and DAgger labels get the expert of their world kind unless told otherwise.
    assert FlightJob(kind="urban", seeds=[seed], out_dir="unused").expert == demo_expert("urban")
    assert FlightJob(kind="forest", seeds=[seed], out_dir="unused").expert == DEMO_EXPERT
    assert FlightJob(kind="urban", seeds=[seed], out_dir="unused", expert={"inflate": 1.0}).expert == {"inflate": 1.0}


@pytest.mark.parametrize("kind, seed", [("forest", 4), ("urban", 8)])
def test_the_demonstrating_experts_plan_keeps_its_wider_margin(kind, seed):
    # Learners copy the expert's passing distance with errors of tenths of a metre: the demonstrating
    # expert plans 0.8 m from obstacles (0.55 m beyond the drone's 0.25 m radius), not the default 0.6.
    from lnn_nav.sim.collision import signed_distance
    from lnn_nav.sim.expert import DEMO_EXPERT, ExpertConfig

    world = make_world(kind, seed)
    default, demo = PrivilegedExpert(world, ExpertConfig()), PrivilegedExpert(world, ExpertConfig(**DEMO_EXPERT))
    path = demo.path(world.start[:2])
    assert np.linalg.norm(path[-1] - np.array(world.goal[:2])) < 0.5
    inner = path[3:-3]  # the start and goal cells are cleared whatever the margin
    clearance = signed_distance(
        world, np.column_stack([inner, np.full(len(inner), world.goal[2])]), include_ground=False
    ).min()
    assert DEMO_EXPERT["inflate"] == 0.8
    assert clearance > DEMO_EXPERT["inflate"] - demo.config.resolution
    assert demo.occupied.sum() > default.occupied.sum()  # more of the grid is off limits
    with pytest.raises(ValueError, match="inflate"):
        ExpertConfig(inflate=-0.1)


def test_a_longer_yaw_lookahead_turns_the_heading_before_the_drone_leaves_the_plan():
    # Standing on the plan, facing along it: where the plan is straight for the next few metres but
    # turns within 6 m, the heading look-ahead swings the camera into the turn already, while the
    # velocity (what decides where the drone flies) is the same as without it.
    from lnn_nav.sim.expert import ExpertConfig, demo_expert

    world = make_world("urban", 200000)
    base = PrivilegedExpert(world, ExpertConfig(**demo_expert("urban")))
    lead = PrivilegedExpert(world, ExpertConfig(**{**demo_expert("urban"), "yaw_lookahead": 6.0}))
    path = base.path(world.start[:2])
    along = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(path, axis=0), axis=1))])
    ahead = np.minimum(np.searchsorted(along, along + 0.5), len(path) - 1)[:-1]
    tangent = path[ahead] - path[:-1]
    pos = np.column_stack([path[:-1], np.full(len(tangent), world.goal[2])])
    yaw = np.arctan2(tangent[:, 1], tangent[:, 0])
    near_goal = np.linalg.norm(path[:-1] - np.array(world.goal[:2]), axis=1) < 6.0
    cmd_base, cmd_lead = base.command(pos, yaw, 0.0), lead.command(pos, yaw, 0.0)
    np.testing.assert_allclose(cmd_lead[:, :3], cmd_base[:, :3])
    early = (np.abs(cmd_base[:, 3]) < 0.05) & (np.abs(cmd_lead[:, 3]) > 0.3) & ~near_goal
    assert early.sum() >= 5  # the plan's turns show in the heading command metres earlier
    assert not ((np.abs(cmd_lead[:, 3]) < 0.05) & (np.abs(cmd_base[:, 3]) > 0.3)).any()  # and never later
    with pytest.raises(ValueError, match="yaw_lookahead"):
        ExpertConfig(yaw_lookahead=0.0)


def test_expert_labels_any_state_with_bounded_commands():
    world = make_world("urban", 6)
    expert = PrivilegedExpert(world)
    rng = np.random.default_rng(0)
    x0, x1, y0, y1 = world.bounds
    pos = np.column_stack([rng.uniform(x0, x1, 50), rng.uniform(y0, y1, 50), rng.uniform(1, 4, 50)])
    cmd = expert.command(pos, rng.uniform(-np.pi, np.pi, 50), 1 / 15)
    assert cmd.shape == (50, 4) and np.isfinite(cmd).all()
    assert np.abs(cmd[:, :2]).max() <= expert.config.cruise_speed + 1e-9
    assert np.abs(cmd[:, 3]).max() <= expert.config.max_yaw_rate + 1e-9


def test_vector_env_autoresets_on_the_next_step_with_held_out_seeds():
    env = NavigationVectorEnv(
        num_envs=2, kind="forest", camera=SMALL, max_episode_time=0.2, world_seeds=[900, 901, 902]
    )
    obs, info = env.reset(seed=0)
    assert obs["image"].shape == (2, 24, 32, 3)
    assert [w.seed for w in env.worlds] == [900, 901]
    for _ in range(3):
        obs, reward, terminated, truncated, info = env.step(np.zeros((2, 4)))
    assert truncated.all()
    obs, reward, terminated, truncated, info = env.step(np.zeros((2, 4)))
    assert not truncated.any() and (reward == 0).all()
    assert [w.seed for w in env.worlds] == [902, 900]
    env.close()


def test_make_vec_uses_the_batched_env():
    envs = gym.make_vec("lnn_nav/Urban-v0", num_envs=2, vectorization_mode="vector_entry_point", camera=SMALL)
    obs, _ = envs.reset(seed=3)
    assert obs["imu"].shape == (2, 6)
    envs.close()


def test_lnn_nav_sim_command_writes_map_gif_and_json(tmp_path):
    from lnn_nav.cli import main

    assert main(["sim", "--world", "forest", "--seed", "7", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "forest_7_map.png").stat().st_size > 0
    assert (tmp_path / "forest_7_camera.gif").stat().st_size > 0
    import json

    episodes = json.loads((tmp_path / "forest_in_distribution_episodes.json").read_text())
    assert episodes[0]["outcome"] == "success" and episodes[0]["seed"] == 7


def test_vector_env_renders_each_world_through_a_two_worker_pool():
    kwargs = dict(kind="forest", camera=SMALL, world_seeds=[31, 32, 33])
    pooled = NavigationVectorEnv(num_envs=3, render_workers=2, **kwargs)
    local = NavigationVectorEnv(num_envs=3, render_workers=1, **kwargs)
    obs_pooled, _ = pooled.reset(seed=0)
    obs_local, _ = local.reset(seed=0)
    np.testing.assert_array_equal(obs_pooled["depth"], obs_local["depth"])
    assert not np.array_equal(obs_pooled["depth"][0], obs_pooled["depth"][1])  # different worlds
    pooled.close()
    local.close()


def test_a_yaw_deadband_labels_small_heading_errors_as_sideways_corrections():
    # DAgger's labeller option: within the deadband the command slides along the plan
    # instead of turning; beyond it the yaw law acts on the error past the band.
    from lnn_nav.sim.expert import ExpertConfig

    world = make_world("forest", 4)
    plain = PrivilegedExpert(world, ExpertConfig())
    banded = PrivilegedExpert(world, ExpertConfig(yaw_deadband=0.2))
    position = np.array([[*world.start[:2], world.goal[2]]])
    guess = float(np.arctan2(*(plain.path(world.start[:2])[3] - world.start[:2])[::-1]))
    # The carrot's exact heading, from the plain law's yaw rate (gain 2.5, unclipped this close).
    heading = guess + plain.command(position, np.array([guess]), 0.0)[0, 3] / 2.5
    plain.reset()
    for offset in (0.1, -0.1, 0.5):
        yaw = np.array([heading + offset])
        a = plain.command(position, yaw, 0.0)[0]
        b = banded.command(position, yaw, 0.0)[0]
        plain.reset(), banded.reset()
        assert np.allclose(a[:3], b[:3])  # the same velocity: only the yaw law differs
        assert a[3] == pytest.approx(-2.5 * offset)  # turn towards the plan...
        assert np.sign(a[1]) == -np.sign(offset)  # ...while sliding towards it
        if abs(offset) < 0.2:
            assert b[3] == 0.0
        else:
            assert b[3] == pytest.approx(-2.5 * (offset - 0.2))
    with pytest.raises(ValueError, match="yaw_deadband"):
        ExpertConfig(yaw_deadband=-0.1)
