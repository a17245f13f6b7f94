"""Specification of policy checkpoints (one safetensors file: tensors + JSON config)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from small_policies import CORE_OPTIONS, H, W

from lnn_nav.models.checkpoint import (
    load_policy,
    load_state_into,
    read_checkpoint_info,
    save_policy,
)
from lnn_nav.models.encoder import EncoderConfig
from lnn_nav.models.errors import CheckpointError
from lnn_nav.models.factory import CORE_KINDS
from lnn_nav.models.policy import GOAL_SIZE, IMU_SIZE, LiquidPolicy, PolicyConfig


def make_config(kind: str = "cfc-ncp", **options) -> PolicyConfig:
    return PolicyConfig(
        encoder=EncoderConfig(height=H, width=W),
        core=kind,
        core_options={**CORE_OPTIONS[kind], **options},
        use_imu=True,
        use_goal=True,
    )


def rewrite(path: Path, edit: Callable[[dict[str, torch.Tensor], dict[str, str]], None]) -> None:
    """Re-save a checkpoint after ``edit`` changed its tensors and/or header in place."""
    with safe_open(str(path), framework="pt") as handle:
        header = handle.metadata()
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    edit(tensors, header)
    save_file(tensors, path, metadata=header)


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    return save_policy(LiquidPolicy(make_config()), tmp_path / "policy.safetensors")


@pytest.mark.parametrize("kind", CORE_KINDS)
def test_round_trip_reproduces_the_outputs_exactly(kind: str, tmp_path: Path) -> None:
    policy = LiquidPolicy(make_config(kind)).eval()
    path = save_policy(policy, tmp_path / f"{kind}.safetensors")
    loaded = load_policy(path)
    images = torch.rand(2, 3, 3, H, W)
    extras = {"imu": torch.randn(2, 3, IMU_SIZE), "goal": torch.randn(2, 3, GOAL_SIZE)}
    timespans = torch.rand(2, 3)
    with torch.no_grad():
        assert torch.equal(policy(images, timespans, **extras)[0], loaded(images, timespans, **extras)[0])


def test_a_float64_checkpoint_loads_in_float64(tmp_path: Path) -> None:
    policy = LiquidPolicy(make_config("gru")).double()
    loaded = load_policy(save_policy(policy, tmp_path / "f64.safetensors"))
    assert loaded.head.weight.dtype == torch.float64
    assert torch.equal(loaded.head.weight, policy.head.weight)


def test_user_metadata_and_config_are_stored(tmp_path: Path) -> None:
    config = make_config("gru")
    path = save_policy(
        LiquidPolicy(config), tmp_path / "p.safetensors", metadata={"run": "forest-07", "git_commit": "abc123"}
    )
    stored, metadata = read_checkpoint_info(path)
    assert metadata == {"run": "forest-07", "git_commit": "abc123"}
    assert stored.core == "gru" and stored.core_options["units"] == 16
    assert stored.encoder == config.encoder


def test_buffers_such_as_masks_and_normalisation_are_saved(saved: Path) -> None:
    with safe_open(str(saved), framework="pt") as handle:
        keys = set(handle.keys())
    assert {"encoder.mean", "encoder.std", "command_scale"} <= keys
    assert any(k.endswith("sparsity_mask") for k in keys)


def test_load_state_into_an_existing_policy(saved: Path) -> None:
    source = load_policy(saved)
    target = LiquidPolicy(make_config())
    load_state_into(target, saved)
    for name, tensor in source.state_dict().items():
        assert torch.equal(tensor, target.state_dict()[name]), name


def test_nonexistent_path_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(CheckpointError, match=f"checkpoint not found: {missing}"):
        load_policy(missing)


def test_truncated_file_is_a_checkpoint_error(saved: Path) -> None:
    data = saved.read_bytes()
    saved.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_policy(saved)


def test_random_bytes_are_a_checkpoint_error(tmp_path: Path) -> None:
    path = tmp_path / "noise.safetensors"
    path.write_bytes(torch.randint(0, 256, (4096,), dtype=torch.uint8).numpy().tobytes())
    with pytest.raises(CheckpointError, match=f"{path} is not a readable safetensors file"):
        load_policy(path)


def test_a_plain_safetensors_file_is_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="not an lnn_nav checkpoint"):
        load_policy(path)


def test_unknown_format_version_is_refused(saved: Path) -> None:
    rewrite(saved, lambda tensors, header: header.update(lnn_nav_format="99"))
    with pytest.raises(CheckpointError, match="format version '99'"):
        load_policy(saved)


def test_invalid_config_json_is_refused(saved: Path) -> None:
    rewrite(saved, lambda tensors, header: header.update(config="{not json"))
    with pytest.raises(CheckpointError, match="'config' metadata is not valid JSON"):
        load_policy(saved)


def test_renamed_tensor_is_listed_as_missing_and_unexpected(saved: Path) -> None:
    def rename(tensors, header):
        tensors["head.weights"] = tensors.pop("head.weight")

    rewrite(saved, rename)
    with pytest.raises(
        CheckpointError,
        match=r"missing tensors: \['head.weight'\]; unexpected tensors: \['head.weights'\]",
    ):
        load_policy(saved)


def test_config_with_a_different_core_size_names_tensor_and_shapes(tmp_path: Path) -> None:
    path = save_policy(LiquidPolicy(make_config("gru")), tmp_path / "gru.safetensors")

    def grow(tensors, header):
        config = json.loads(header["config"])
        config["core_options"]["units"] = 32
        header["config"] = json.dumps(config)

    rewrite(path, grow)
    with pytest.raises(CheckpointError, match=r"has shape \[\d+, 16\] in the file, the model expects \[\d+, 32\]"):
        load_policy(path)


def test_expected_config_mismatch_names_the_field(tmp_path: Path) -> None:
    path = save_policy(LiquidPolicy(make_config("gru")), tmp_path / "gru.safetensors")
    with pytest.raises(
        CheckpointError,
        match=r"core_options.units=16 in the file, core_options.units=32 in the expected config",
    ):
        load_policy(path, expected=make_config("gru", units=32))


def test_expected_config_mismatch_in_the_encoder_names_the_nested_field(saved: Path) -> None:
    expected = PolicyConfig(encoder=EncoderConfig(height=96, width=W), core="cfc-ncp", use_imu=True, use_goal=True)
    with pytest.raises(
        CheckpointError,
        match="encoder.height=48 in the file, encoder.height=96 in the expected config",
    ):
        load_policy(saved, expected=expected)


def test_expected_config_with_another_core_kind_names_both(saved: Path) -> None:
    with pytest.raises(CheckpointError, match="holds a 'cfc-ncp' core but the expected config has 'lstm'"):
        load_policy(saved, expected=make_config("lstm"))


def test_matching_expected_config_loads(saved: Path) -> None:
    assert isinstance(load_policy(saved, expected=make_config()), LiquidPolicy)


def test_a_wiring_mask_that_differs_from_the_config_is_refused(saved: Path) -> None:
    def flip(tensors, header):
        name = next(k for k in tensors if k.endswith("sparsity_mask"))
        tensors[name] = 1 - tensors[name]

    rewrite(saved, flip)
    with pytest.raises(CheckpointError, match=r"sparsity_mask' differs from the model's.*wiring"):
        load_policy(saved)


def test_tensor_dtype_mismatch_is_named(saved: Path) -> None:
    def widen(tensors, header):
        tensors["head.bias"] = tensors["head.bias"].double()

    rewrite(saved, widen)
    with pytest.raises(
        CheckpointError,
        match="tensor 'head.bias' is torch.float64 in the file, the model expects torch.float32",
    ):
        load_policy(saved)


def test_load_state_into_a_differently_configured_policy_names_the_field(saved: Path) -> None:
    other = LiquidPolicy(make_config(units=24))
    with pytest.raises(
        CheckpointError,
        match=r"does not match the model: core_options.units=19 in the file, "
        r"core_options.units=24 in the model",
    ):
        load_state_into(other, saved)


def test_output_gain_sharpens_inside_the_bounds_and_travels_with_the_checkpoint(saved: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    from lnn_nav.models.checkpoint import with_output_gain

    plain = load_policy(saved)
    gained_path = with_output_gain(saved, tmp_path / "gained.safetensors", (1.0, 1.5, 1.0, 2.0))
    gained = load_policy(gained_path)
    assert gained.config.output_gain == (1.0, 1.5, 1.0, 2.0)
    assert read_checkpoint_info(gained_path)[1]["output_gain_of"] == str(saved)
    images = torch.rand(2, 4, 3, H, W)
    extras = {"imu": torch.randn(2, 4, IMU_SIZE), "goal": torch.randn(2, 4, GOAL_SIZE)}
    timespans = torch.rand(2, 4)
    with torch.no_grad():
        a, _ = plain(images, timespans, **extras)
        b, _ = gained(images, timespans, **extras)
        # Same pre-activation: tanh(g * atanh(a / s)) * s, per command.
        scale = plain.command_scale
        gain = torch.tensor([1.0, 1.5, 1.0, 2.0])
        assert torch.allclose(b, torch.tanh(gain * torch.atanh(a / scale)) * scale, atol=1e-5)
        assert torch.equal(a[..., [0, 2]], b[..., [0, 2]])  # gain 1 changes nothing, bit for bit
        assert (b.abs() <= scale).all()
        # step (the node, eval) applies it as forward (training) does.
        s, _ = gained.step(images[:, 0], timespans[:, 0], None, imu=extras["imu"][:, 0], goal=extras["goal"][:, 0])
        assert torch.allclose(s, b[:, 0], atol=1e-6)
    with pytest.raises(ValueError, match="output_gain needs 4 positive"):
        with_output_gain(saved, tmp_path / "bad.safetensors", (1.0, -1.0, 1.0, 1.0))
    same = subprocess.run(
        [sys.executable, "-m", "lnn_nav.cli", "gain", str(saved), "--gain", "1", "1", "1", "1", "--out", str(saved)],
        capture_output=True,
        text=True,
    )
    assert same.returncode == 2 and "--out must differ" in same.stderr


def test_checkpoints_from_before_the_output_gain_load_with_gain_one(saved: Path) -> None:
    def drop_gain(_tensors: dict[str, torch.Tensor], header: dict[str, str]) -> None:
        config = json.loads(header["config"])
        del config["output_gain"]
        header["config"] = json.dumps(config)

    rewrite(saved, drop_gain)
    policy = load_policy(saved)
    assert policy.config.output_gain == (1.0, 1.0, 1.0, 1.0)
    load_state_into(LiquidPolicy(make_config()), saved)  # the absent field reads as its default
    load_policy(saved, expected=make_config())
