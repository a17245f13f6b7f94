"""Specification of the flight policy (encoder -> recurrent core -> bounded command)."""

from __future__ import annotations

import pytest
import torch
from small_policies import CORE_OPTIONS, H, W

from lnn_nav.models.encoder import EncoderConfig
from lnn_nav.models.factory import CORE_KINDS
from lnn_nav.models.policy import GOAL_SIZE, IMU_SIZE, LiquidPolicy, PolicyConfig


def make_policy(kind: str = "cfc-ncp", **config) -> LiquidPolicy:
    config.setdefault("encoder", EncoderConfig(height=H, width=W))
    return LiquidPolicy(PolicyConfig(core=kind, core_options=CORE_OPTIONS[kind], **config))


def test_every_core_kind_has_test_options() -> None:
    assert set(CORE_OPTIONS) == set(CORE_KINDS)


def test_core_input_is_features_plus_imu_plus_goal() -> None:
    policy = make_policy(use_imu=True, use_goal=True)
    assert policy.core.input_size == policy.config.encoder.feature_dim + IMU_SIZE + GOAL_SIZE


@pytest.mark.parametrize("kind", CORE_KINDS)
def test_step_by_step_matches_the_sequence_forward(kind: str) -> None:
    torch.manual_seed(0)
    policy = make_policy(kind, use_imu=True, use_goal=True).eval()
    batch, steps = 3, 7
    images = torch.rand(batch, steps, 3, H, W)
    imu = torch.randn(batch, steps, IMU_SIZE)
    goal = torch.randn(batch, steps, GOAL_SIZE)
    timespans = 0.02 + 0.1 * torch.rand(batch, steps)  # irregular, per sample
    with torch.no_grad():
        sequence, final = policy(images, timespans, imu=imu, goal=goal)
        state = None
        for t in range(steps):
            command, state = policy.step(images[:, t], timespans[:, t], state, imu=imu[:, t], goal=goal[:, t])
            torch.testing.assert_close(command, sequence[:, t], atol=1e-5, rtol=0)
    for a, b in zip(final if isinstance(final, tuple) else (final,), state if isinstance(state, tuple) else (state,)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_a_sequence_split_in_two_continues_from_the_returned_state() -> None:
    policy = make_policy().eval()
    images, timespans = torch.rand(2, 6, 3, H, W), torch.full((2, 6), 0.05)
    with torch.no_grad():
        whole, _ = policy(images, timespans)
        first, state = policy(images[:, :3], timespans[:, :3])
        second, _ = policy(images[:, 3:], timespans[:, 3:], hx=state)
    torch.testing.assert_close(torch.cat([first, second], dim=1), whole, atol=1e-6, rtol=0)


def test_commands_stay_within_command_scale_for_extreme_inputs() -> None:
    scale = (3.0, 0.5, 0.25, 1.5)
    policy = make_policy(use_imu=True, command_scale=scale)
    with torch.no_grad():
        for p in policy.head.parameters():
            p.fill_(1e3)  # saturate the head on purpose
        commands, _ = policy(torch.ones(2, 4, 3, H, W), 10.0, imu=torch.full((2, 4, IMU_SIZE), 1e6))
    assert (commands.abs() <= torch.tensor(scale)).all()
    assert commands.shape == (2, 4, 4)


def test_uint8_frames_give_the_same_command_as_unit_range_floats() -> None:
    policy = make_policy().eval()
    frame = torch.randint(0, 256, (1, 3, H, W), dtype=torch.uint8)
    with torch.no_grad():
        from_uint8, _ = policy.step(frame, 0.05)
        from_float, _ = policy.step(frame.float() / 255.0, 0.05)
    torch.testing.assert_close(from_uint8, from_float)


@pytest.mark.parametrize("kind", ["cfc-ncp", "lstm"])  # one tensor state, tuple state
def test_step_leaves_the_passed_state_untouched(kind: str) -> None:
    policy = make_policy(kind).eval()
    _, state = policy.step(torch.rand(1, 3, H, W), 0.05)
    states = state if isinstance(state, tuple) else (state,)
    before = [s.clone() for s in states]
    policy.step(torch.rand(1, 3, H, W), 0.05, state)
    for s, b in zip(states, before):
        assert torch.equal(s, b)


def test_default_policy_flies_from_a_96x128_frame() -> None:
    policy = LiquidPolicy().eval()
    command, state = policy.step(torch.rand(1, 3, 96, 128), 0.05)
    assert command.shape == (1, 4)
    assert state.shape == policy.initial_state(1).shape


def test_initial_state_fits_the_batch() -> None:
    state = make_policy().initial_state(5)
    assert state.shape[0] == 5


def test_same_seed_builds_identical_weights() -> None:
    torch.manual_seed(123)
    a = make_policy()
    torch.manual_seed(123)
    b = make_policy()
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name


def test_sequence_loss_trains_the_encoder() -> None:
    policy = make_policy()
    commands, _ = policy(torch.rand(2, 3, 3, H, W), torch.full((2, 3), 0.05))
    commands.square().mean().backward()
    for conv in policy.encoder.convs:
        grad = conv[0].weight.grad
        assert grad is not None and grad.abs().sum() > 0


def test_wrong_image_size_says_what_was_expected() -> None:
    with pytest.raises(ValueError, match=r"expected images \[B, 3, 48, 64\]"):
        make_policy().step(torch.rand(1, 3, 96, 128), 0.05)


def test_missing_imu_is_an_error_when_the_policy_uses_imu() -> None:
    with pytest.raises(ValueError, match="use_imu=True; pass imu"):
        make_policy(use_imu=True).step(torch.rand(1, 3, H, W), 0.05)


def test_imu_given_to_a_policy_without_imu_is_an_error() -> None:
    with pytest.raises(ValueError, match="use_imu=False; imu was given"):
        make_policy().step(torch.rand(1, 3, H, W), 0.05, imu=torch.zeros(1, IMU_SIZE))


def test_goal_of_the_wrong_shape_is_an_error() -> None:
    policy = make_policy(use_goal=True)
    with pytest.raises(ValueError, match=r"goal must be \[2, 3, 4\], got \[2, 3, 3\]"):
        policy(torch.rand(2, 3, 3, H, W), 0.05, goal=torch.zeros(2, 3, 3))


def test_from_config_keeps_the_config() -> None:
    config = PolicyConfig(
        encoder=EncoderConfig(height=H, width=W), core="gru", core_options={"units": 8}, use_goal=True
    )
    assert LiquidPolicy.from_config(config).config is config


def test_policy_config_round_trips_through_a_dict() -> None:
    config = PolicyConfig(core="cfc", core_options={"units": 8}, use_imu=True, command_scale=(1, 1, 0.5, 0.5))
    assert PolicyConfig.from_dict(config.to_dict()) == config


def test_policy_config_rejects_a_command_scale_of_the_wrong_length() -> None:
    with pytest.raises(ValueError, match="command_scale needs 4 positive values"):
        PolicyConfig(command_scale=(1.0, 1.0, 1.0))
