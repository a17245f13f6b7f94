"""The robust-flight recipe's parts: wide randomisation, season blends, coverage, combinations, strong augmentation."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lnn_nav.sim.presets import (
    ALL_PRESETS,
    COMBINATION_PRESETS,
    CONDITION_PRESETS,
    OOD_PRESETS,
    RANDOMIZATION,
    TRUE_SHIFTS,
    make_world,
    preset_coverage,
    sample_training_conditions,
    training_density_scale,
    within_ranges,
)
from lnn_nav.sim.world import SEASON_PALETTES, Conditions
from lnn_nav.train.bc import STRONG_AUGMENT, TrainConfig, _Augment, _blur_lanes


def test_season_mix_blends_the_palettes_linearly() -> None:
    summer = make_world("forest", 3)
    half = summer.with_conditions(season_to="fall", season_mix=0.5)
    full = summer.with_conditions(season_to="fall", season_mix=1.0)
    for name, colour in half.palette.items():
        expected = 0.5 * np.array(SEASON_PALETTES["summer"][name]) + 0.5 * np.array(SEASON_PALETTES["fall"][name])
        assert np.allclose(colour, expected)
    assert np.allclose(full.material_colours(), make_world("forest", 3, "fall").material_colours())
    assert summer.palette is SEASON_PALETTES["summer"]  # no blend: the season's own palette


@pytest.mark.parametrize("bad", [{"season_mix": 1.5}, {"season_mix": -0.1}, {"season_to": "monsoon"}])
def test_conditions_refuse_a_bad_season_blend(bad: dict) -> None:
    with pytest.raises(ValueError, match="season"):
        Conditions(**bad)


def test_narrow_profile_draws_the_stream_it_always_drew() -> None:
    # The shipped controllers' demonstrations were recorded from this stream: the season
    # blend is drawn after it and only by a profile that blends.
    c = sample_training_conditions(np.random.default_rng([100000, 7]))
    assert c.season == "summer" and c.season_mix == 0.0
    rng = np.random.default_rng([100000, 7])
    speed = rng.uniform(0.0, 1.0)
    rng.uniform(-math.pi, math.pi)
    assert math.isclose(math.hypot(*c.wind_mean), speed)
    assert math.isclose(c.time_of_day, rng.uniform(10.0, 15.0))


@pytest.mark.parametrize("profile", list(RANDOMIZATION))
def test_every_profile_draws_inside_its_ranges(profile: str) -> None:
    rng = np.random.default_rng(1)
    draws = [sample_training_conditions(rng, profile) for _ in range(300)]
    assert all(within_ranges(c, RANDOMIZATION[profile]) for c in draws)
    mixes = [c.season_mix for c in draws]
    if profile != "narrow":
        assert min(mixes) < 0.1 and max(mixes) > 0.9  # the whole summer-fall span
        assert max(c.fog_density for c in draws) > 0.01
    else:
        assert max(mixes) == 0.0


def test_unknown_profile_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="narrow, wide, wider, widest"):
        sample_training_conditions(np.random.default_rng(0), "everything")


@pytest.mark.parametrize("profile", list(RANDOMIZATION))
def test_true_shifts_stay_beyond_every_profile(profile: str) -> None:
    for preset in TRUE_SHIFTS:
        assert preset_coverage(preset, profile) == "beyond"
    assert preset_coverage("in_distribution", profile) == "covered"


def test_wide_profile_covers_fall_and_nothing_else_of_the_presets() -> None:
    covered = [p for p in OOD_PRESETS if preset_coverage(p, "wide") == "covered"]
    assert covered == ["fall"]
    assert [p for p in OOD_PRESETS if preset_coverage(p, "narrow") == "covered"] == []


def test_true_shifts_stay_beyond_the_strong_augmentation() -> None:
    # Fog: the preset veils a trunk 10 m away by 1 - exp(-0.05 * 10) = 39 %, more than the haze blend reaches.
    fog = CONDITION_PRESETS["fog"]["fog_density"]
    assert STRONG_AUGMENT["haze"][1] < 1.0 - math.exp(-fog * 10.0)
    # Gusts are dynamics: augmentation changes only pixels. Winter: no augmentation draws the snow palette
    # (the photometric ops keep the scene's layout of colours; tested by the coverage of the profiles above).
    assert "wind" not in " ".join(STRONG_AUGMENT)


def test_wider_profile_covers_a_working_day_and_moderate_wind_but_no_true_shift() -> None:
    assert [p for p in OOD_PRESETS if preset_coverage(p, "wider") == "covered"] == ["fall"]
    covered = [p for p in COMBINATION_PRESETS if preset_coverage(p, "wider") == "covered"]
    assert covered == ["morning_sun", "moderate_wind"]
    # Every draw of the wide profile is one of the wider profile too.
    rng = np.random.default_rng(3)
    assert all(within_ranges(sample_training_conditions(rng, "wide"), RANDOMIZATION["wider"]) for _ in range(200))


def test_widest_profile_draws_denser_forests_and_leaves_everything_else_as_it_was() -> None:
    scales = [training_density_scale(seed, "widest") for seed in range(300000, 300200)]
    assert 1.0 <= min(scales) < 1.05 and 1.35 < max(scales) <= 1.4
    for profile in ("narrow", "wide", "wider"):
        assert {training_density_scale(seed, profile) for seed in range(300000, 300050)} == {1.0}
    assert preset_coverage("dense_forest", "widest") == "beyond"  # 1.8x stays beyond
    # The conditions stream is the wider profile's: the density draw has its own.
    for seed in (300000, 300001):
        rng_a, rng_b = np.random.default_rng([seed, 7]), np.random.default_rng([seed, 7])
        assert sample_training_conditions(rng_a, "widest") == sample_training_conditions(rng_b, "wider")


def test_a_widest_collection_flies_its_seeds_denser_forests_and_their_conditions() -> None:
    from lnn_nav.rollouts.flights import FlightJob, training_world

    def trees(profile: str, seed: int, kind: str = "forest") -> tuple[int, Conditions]:
        world = training_world(FlightJob(kind=kind, seeds=[seed], out_dir="-", randomization=profile), seed)
        return len(world.cylinders), world.conditions

    seed = next(s for s in range(300000, 300100) if training_density_scale(s, "widest") > 1.3)
    dense, dense_conditions = trees("widest", seed)
    plain, plain_conditions = trees("wider", seed)
    assert dense > 1.15 * plain and dense_conditions == plain_conditions
    assert trees("widest", 400000, "urban") == trees("wider", 400000, "urban")  # no density in a city


def test_combination_presets_fly_like_presets_and_lie_beyond_training() -> None:
    for name in COMBINATION_PRESETS:
        world = make_world("urban", 7, name)
        assert world.params["preset"] == name
        assert preset_coverage(name, "wide") == "beyond"
    assert set(COMBINATION_PRESETS) <= set(ALL_PRESETS) and not set(COMBINATION_PRESETS) & set(CONDITION_PRESETS)
    # The same seed: the same route as in distribution.
    assert make_world("forest", 7, "fall_haze").goal == make_world("forest", 7).goal


def _augmented(profile: str, seed: int = 4) -> torch.Tensor:
    images = torch.randint(0, 256, (4, 3, 3, 12, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    rng = np.random.default_rng(seed)
    augment = _Augment(4, rng, True, 0.02, profile)
    for lane in range(4):
        augment.redraw(lane)
    return augment(images, torch.Generator().manual_seed(9))


def test_strong_augmentation_is_seeded_bounded_and_differs_from_basic() -> None:
    first, again = _augmented("strong"), _augmented("strong")
    assert torch.equal(first, again)
    assert float(first.min()) >= 0.0 and float(first.max()) <= 1.0 and torch.isfinite(first).all()
    assert not torch.allclose(first, _augmented("basic"), atol=1e-3)


def test_strong_augmentation_sets_are_fixed_per_sequence() -> None:
    # A lane keeps its draw until its sequence ends: two batches of the same lane share the change.
    rng = np.random.default_rng(2)
    augment = _Augment(1, rng, True, 0.0, "strong")
    augment.redraw(0)
    frame = torch.full((1, 1, 3, 8, 8), 128, dtype=torch.uint8)
    a = augment(frame, torch.Generator().manual_seed(0))
    b = augment(frame, torch.Generator().manual_seed(1))
    assert torch.allclose(a, b)  # no noise: nothing per frame
    augment.redraw(0)
    assert not torch.allclose(a, augment(frame, torch.Generator().manual_seed(0)))


def test_mixed_augmentation_draws_basic_and_strong_sequences() -> None:
    # About half the sequences carry strong changes (hue, gamma, haze, blur); the others are basic with
    # every strong-only change back at identity, even after a strong draw on the same lane.
    rng = np.random.default_rng(3)
    augment = _Augment(1, rng, True, 0.02, "mixed")
    strong = basic = 0
    for _ in range(200):
        augment.redraw(0)
        identity = (
            np.allclose(augment.colour[0], np.eye(3), atol=1e-6)
            and augment.gamma[0] == 1.0
            and augment.haze[0] == 0.0
            and augment.blur[0] == 0.0
        )
        if identity:
            basic += 1
            assert augment.lane_noise[0] == np.float32(0.02)
            assert 0.75 * 0.9 <= augment.gain[0].min() and augment.gain[0].max() <= 1.25 * 1.1
        else:
            strong += 1
    assert 70 <= strong <= 130 and strong + basic == 200
    assert torch.equal(_augmented("mixed"), _augmented("mixed"))  # seeded


def test_dim_augmentation_darkens_a_quarter_of_the_sequences() -> None:
    """About a quarter of the sequences are low-light ones (exposure at most 0.6, contrast at most 0.7, more
    noise); the others are drawn as the mixed profile draws them."""
    from lnn_nav.train.bc import DIM_AUGMENT, DIM_P

    rng = np.random.default_rng(7)
    augment = _Augment(1, rng, True, 0.02, "dim")
    dim = 0
    for _ in range(400):
        augment.redraw(0)
        if augment.bias[0] == 0.0:  # only a low-light draw leaves the bias at exactly 0
            dim += 1
            assert augment.contrast[0] <= DIM_AUGMENT["contrast"][1] and augment.gain[0].max() <= 0.6 * 1.15 + 1e-6
            assert augment.lane_noise[0] >= DIM_AUGMENT["noise"][0]
    assert abs(dim / 400 - DIM_P) < 0.08
    # A mid-grey frame of a dim sequence comes out darker and flatter than it went in.
    frame = torch.randint(100, 160, (1, 1, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    augment.gain[0], augment.contrast[0], augment.lane_noise[0] = 0.3, 0.4, 0.0
    augment.haze[0], augment.gamma[0], augment.blur[0] = 0.0, 1.0, 0.0
    augment.colour[0] = np.eye(3, dtype=np.float32)
    out = augment(frame, torch.Generator().manual_seed(0))
    x = frame.float() / 255
    assert float(out.mean()) < 0.35 * float(x.mean()) and float(out.std()) < 0.2 * float(x.std())
    assert torch.equal(_augmented("dim"), _augmented("dim"))  # seeded


def _reference_augment(augment: _Augment, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The augmentation written out of place, step by step (what the in-place code must equal bit for bit)."""

    def lane(values: np.ndarray, *dims: int) -> torch.Tensor:
        return torch.from_numpy(values).view(values.shape[0], *dims)

    x = images.float() / 255.0
    if augment.strong:
        haze = lane(augment.haze, 1, 1, 1, 1)
        x = x * (1.0 - haze) + haze * lane(augment.haze_colour, 1, 3, 1, 1)
        x = (lane(augment.colour, 1, 3, 3) @ x.reshape(*x.shape[:3], -1)).reshape(x.shape)
    mean = x.mean(dim=(2, 3, 4), keepdim=True)
    x = (x - mean) * lane(augment.contrast, 1, 1, 1, 1) + mean
    x = x * lane(augment.gain, 1, 3, 1, 1) + lane(augment.bias, 1, 1, 1, 1)
    if augment.strong:
        x = x.clamp(0.0, 1.0).pow(lane(augment.gamma, 1, 1, 1, 1))
        x = _blur_lanes(x.clone(), augment.blur)
    std = lane(augment.lane_noise, 1, 1, 1, 1) if augment.strong else augment.noise
    x = x + std * torch.randn(x.shape, generator=generator)
    return x.clamp(0.0, 1.0)


@pytest.mark.parametrize("profile", ["basic", "strong", "mixed", "dim"])
def test_in_place_augmentation_equals_the_out_of_place_steps(profile: str) -> None:
    images = torch.randint(0, 256, (4, 3, 3, 12, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    augment = _Augment(4, np.random.default_rng(5), True, 0.02, profile)
    for lane in range(4):
        augment.redraw(lane)
    if profile == "strong":
        augment.blur[::2] = 0.6  # blurred and sharp lanes in one batch
    before = images.clone()
    out = augment(images, torch.Generator().manual_seed(3))
    assert torch.equal(out, _reference_augment(augment, images, torch.Generator().manual_seed(3)))
    assert torch.equal(images, before)  # the caller's batch is not written


def test_grayscale_draw_removes_colour() -> None:
    rng = np.random.default_rng(0)
    augment = _Augment(1, rng, True, 0.0, "strong")
    for _ in range(200):  # until a grayscale sequence is drawn (p = 0.1)
        augment.redraw(0)
        if np.allclose(augment.colour[0], augment.colour[0][:1].repeat(3, axis=0), atol=1e-6):  # equal rows: luma only
            break
    else:
        pytest.fail("no grayscale draw in 200 sequences")
    augment.gain[0], augment.bias[0], augment.haze[0] = 1.0, 0.0, 0.0
    colourful = torch.tensor([200, 30, 60], dtype=torch.uint8).view(1, 1, 3, 1, 1).expand(1, 1, 3, 4, 4).clone()
    out = augment(colourful, torch.Generator().manual_seed(0))
    assert torch.allclose(out[0, 0, 0], out[0, 0, 1], atol=1e-5) and torch.allclose(
        out[0, 0, 1], out[0, 0, 2], atol=1e-5
    )


def test_unknown_augment_profile_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="basic, strong, mixed"):
        TrainConfig(data=["x"], out=str(tmp_path), augment_profile="extreme")


def test_cli_eval_calibration_flies_calibration_worlds_and_unknown_presets_exit_2(tmp_path: Path) -> None:
    out = tmp_path / "bad.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lnn_nav.cli",
            "eval",
            "--model",
            "expert",
            "--episodes",
            "1",
            "--preset",
            "monsoon",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "unknown preset(s) monsoon" in result.stderr and not out.exists()
    out = tmp_path / "r.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lnn_nav.cli",
            "eval",
            "--model",
            "expert",
            "--world",
            "urban",
            "--preset",
            "fall_haze",
            "--episodes",
            "1",
            "--calibration",
            "--workers",
            "1",
            "--envs",
            "1",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    (cell,) = data["cells"]
    assert data["calibration"] is True and cell["preset"] == "fall_haze"
    assert [e["seed"] for e in cell["episodes_detail"]] == [500000]


def test_calibration_seeds_never_meet_the_held_out_ones() -> None:
    from lnn_nav.eval.closed_loop import CALIBRATION_SEEDS, eval_seeds
    from lnn_nav.sim.presets import EVAL_SEEDS

    assert eval_seeds(3, calibration=True) == [500000, 500001, 500002]
    assert not set(CALIBRATION_SEEDS) & set(EVAL_SEEDS)
    with pytest.raises(ValueError, match="only 1000 calibration seeds exist"):
        eval_seeds(2, len(CALIBRATION_SEEDS) - 1, calibration=True)
