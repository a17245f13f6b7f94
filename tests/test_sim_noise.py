"""Per-drone noise streams: a seed's episode is the same in a batch, alone, or under another generator."""

from __future__ import annotations

import numpy as np
import pytest

from lnn_nav.rollouts.flights import FlightJob, fly_worker
from lnn_nav.sim.camera import CameraConfig
from lnn_nav.sim.env import EnvConfig, FlightBatch, NavigationVectorEnv
from lnn_nav.sim.imu import ImuModel
from lnn_nav.sim.noise import DroneStreams, world_noise_rng
from lnn_nav.sim.presets import make_world
from lnn_nav.sim.wind import WindModel
from lnn_nav.sim.world import Conditions

SMALL = CameraConfig(width=32, height=24)
SEEDS = [1000, 1001, 1002]


def _fly(worlds, rng_seed: int, steps: int = 20):
    """Observations and positions of ``worlds`` flown together, one fixed command sequence."""
    batch = FlightBatch(
        len(worlds),
        EnvConfig(kind="forest", camera=SMALL),
        np.random.default_rng(rng_seed),
        world_source=lambda _rng: worlds[0],
    )
    batch.reset(np.arange(len(worlds)), worlds)
    commands = np.tile([1.5, 0.3, 0.0, 0.2], (len(worlds), 1))
    images, imus, positions = [], [], []
    try:
        for _ in range(steps):
            obs = batch.observe()
            images.append(obs["image"].copy())
            imus.append(obs["imu"].copy())
            batch.step(commands)
            positions.append(batch.quad.position.copy())
    finally:
        batch.close()
    return np.stack(images, 1), np.stack(imus, 1), np.stack(positions, 1)


def test_a_drone_senses_and_flies_the_same_alone_as_in_a_batch():
    # Gusty wind, IMU noise and camera noise all on: every stream is exercised.
    worlds = [make_world("forest", s, "gusty_wind") for s in SEEDS]
    assert worlds[1].conditions.gust_std > 0 and worlds[1].conditions.camera_noise > 0
    images, imus, positions = _fly(worlds, rng_seed=0)
    alone = _fly(worlds[1:2], rng_seed=99)
    np.testing.assert_array_equal(images[1], alone[0][0])
    np.testing.assert_array_equal(imus[1], alone[1][0])
    np.testing.assert_array_equal(positions[1], alone[2][0])
    # ... and the streams differ between worlds (the noise is not simply switched off).
    assert not np.allclose(imus[0] - imus[0].mean(0), imus[1] - imus[1].mean(0))


def test_batched_evaluation_does_not_depend_on_batch_size_or_generator():
    job = dict(
        kind="forest",
        seeds=SEEDS,
        out_dir="",
        preset="gusty_wind",
        record=False,
        keep_tracks=True,
        max_episode_time=4.0,
        camera_width=32,
        camera_height=24,
        noise=0.0,
    )
    batched = fly_worker(FlightJob(**job, envs=3, rng_seed=1))
    one_by_one = [fly_worker(FlightJob(**{**job, "seeds": [s]}, envs=1, rng_seed=7))[0] for s in SEEDS]
    by_seed = {r["seed"]: r for r in batched}
    for single in one_by_one:
        twin = by_seed[single["seed"]]
        assert (twin["outcome"], twin["frames"], twin["track"]) == (
            single["outcome"],
            single["frames"],
            single["track"],
        )


def test_drone_streams_follow_the_world_seed():
    streams = DroneStreams(3, np.random.default_rng(0))
    streams.seed(1, 42)
    rows = streams.standard_normal([1, 2], 4)
    assert rows.shape == (2, 4)
    np.testing.assert_array_equal(rows[0], world_noise_rng(42).standard_normal(4))
    assert streams.rows(slice(None)) == [0, 1, 2]
    with pytest.raises(ValueError, match="num_drones"):
        DroneStreams(0)


def test_a_calm_drone_takes_no_draws_from_its_stream():
    calm, gusty = Conditions(gust_std=0.0), Conditions(gust_std=1.0, gust_tau=0.5)
    pair = DroneStreams(2)
    pair.seed(0, 5)
    pair.seed(1, 6)
    both = WindModel.from_conditions([calm, gusty], num_drones=2, rng=pair)
    solo_streams = DroneStreams(1)
    solo_streams.seed(0, 6)
    solo = WindModel.from_conditions([gusty], num_drones=1, rng=solo_streams)
    for _ in range(10):
        np.testing.assert_array_equal(both.sample(0.05)[1], solo.sample(0.05)[0])
    np.testing.assert_array_equal(both.current()[0], 0.0)
    # The calm drone's stream is untouched: its next draw is the stream's first.
    assert pair[0].standard_normal() == world_noise_rng(5).standard_normal()


def test_imu_with_streams_draws_each_drone_from_its_own():
    streams = DroneStreams(2)
    streams.seed(0, 1)
    streams.seed(1, 2)
    imu = ImuModel(rng=streams, num_drones=2)
    solo_streams = DroneStreams(1)
    solo_streams.seed(0, 2)
    solo = ImuModel(rng=solo_streams, num_drones=1)
    truth = np.zeros((2, 3))
    for _ in range(5):
        np.testing.assert_array_equal(imu.measure(truth, truth, 0.05)[1], solo.measure(truth[:1], truth[:1], 0.05)[0])


def test_vector_env_starts_an_autoreset_episode_at_its_world_start():
    env = NavigationVectorEnv(
        num_envs=2, kind="forest", camera=SMALL, max_episode_time=0.2, world_seeds=[900, 901, 902]
    )
    env.reset(seed=0)
    for _ in range(3):
        _, _, _, truncated, _ = env.step(np.full((2, 4), 0.5))
    assert truncated.all()
    _, reward, _, truncated, info = env.step(np.full((2, 4), 0.5))
    assert not truncated.any() and (reward == 0).all()
    np.testing.assert_array_equal(info["time"], 0.0)
    starts = np.array([w.start[:3] for w in env.worlds])
    np.testing.assert_allclose(env.batch.quad.position, starts)
    env.close()


@pytest.mark.parametrize("core", ["cfc-ncp", "lstm"])
def test_the_in_process_learner_steps_each_drone_as_the_controller_node_does(tmp_path, core):
    """Batched float32 arithmetic differs from batch-1 in the last bits, and a marginal world amplifies
    them: each drone's command must be bit-identical to one policy.step on its own frame, the node's way."""
    import torch

    from lnn_nav.models import EncoderConfig, LiquidPolicy, PolicyConfig, save_policy
    from lnn_nav.models.preprocess import goal_features
    from lnn_nav.nodes.conversions import preprocess_for_policy
    from lnn_nav.rollouts.flights import _Learner
    from tests.small_policies import CORE_OPTIONS, H, W

    torch.manual_seed(0)
    policy = LiquidPolicy(
        PolicyConfig(
            encoder=EncoderConfig(height=H, width=W), core=core, use_goal=True, core_options=CORE_OPTIONS[core]
        )
    ).eval()
    path = save_policy(policy, tmp_path / f"{core}.safetensors")
    learner = _Learner(str(path), n=3, threads=1)
    rng = np.random.default_rng(0)
    states = [None] * 3
    for step in range(5):
        obs = {
            "image": rng.integers(0, 256, (3, 96, 128, 3), dtype=np.uint8),
            "goal": rng.normal(size=(3, 3)).astype(np.float32) * 10,
            "imu": np.zeros((3, 6), np.float32),
        }
        active = np.array([True, step != 2, True])  # a drone whose episode ended is skipped
        batched = learner(obs, 1 / 15, active)
        for i in range(3):
            if not active[i]:
                assert not batched[i].any()
                continue
            goal = torch.from_numpy(goal_features(obs["goal"][i])).reshape(1, -1)
            with torch.inference_mode():
                image = preprocess_for_policy(obs["image"][i], H, W)
                alone, states[i] = policy.step(image, 1 / 15, states[i], goal=goal)
            np.testing.assert_array_equal(batched[i], alone[0].double().numpy())
