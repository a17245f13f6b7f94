"""`lnn-nav calibrate`: output-gain candidates flown on calibration worlds, the choice, the written checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lnn_nav.eval.calibrate import (
    UNITY,
    Candidate,
    calibrate,
    calibration_seeds,
    choose,
    distance_from_unity,
    gain_grid,
)
from lnn_nav.models import EncoderConfig, LiquidPolicy, PolicyConfig, save_policy
from lnn_nav.models.checkpoint import load_policy, read_checkpoint_info
from lnn_nav.sim.presets import EVAL_SEEDS
from tests.small_policies import H, W


@pytest.fixture(scope="module")
def slow_flyer(tmp_path_factory) -> Path:
    """A small policy whose head commands a slow cruise straight ahead (tanh(0.3) * 2 = 0.58 m/s)."""
    torch.manual_seed(0)
    policy = LiquidPolicy(PolicyConfig(encoder=EncoderConfig(height=H, width=W), use_goal=True)).eval()
    with torch.no_grad():
        policy.head.weight.mul_(0.0)
        policy.head.bias.copy_(torch.tensor([0.3, 0.0, 0.0, 0.0]))
    return save_policy(policy, tmp_path_factory.mktemp("calibrate") / "cfc_ncp.safetensors")


def test_calibration_worlds_are_neither_held_out_nor_empty() -> None:
    seeds = calibration_seeds(30)
    assert len(seeds) == 30 and not set(seeds) & set(EVAL_SEEDS)
    with pytest.raises(ValueError, match="at least one"):
        calibration_seeds(0)


def test_the_grid_sharpens_lateral_velocity_and_yaw_rate_together() -> None:
    assert gain_grid([1.0, 0.6], [1.0, 1.3]) == [
        (1.0, 1.0, 1.0, 1.0),
        (1.0, 1.3, 1.0, 1.3),
        (0.6, 1.0, 1.0, 1.0),
        (0.6, 1.3, 1.0, 1.3),
    ]
    assert gain_grid([1.0, 1.0], [1.3, 1.3]) == [(1.0, 1.3, 1.0, 1.3)]
    for bad in ([0.0], [-1.0], [float("nan")]):
        with pytest.raises(ValueError, match="finite and > 0"):
            gain_grid(bad, [1.0])


def test_the_most_successes_win_and_a_tie_goes_to_the_smaller_change() -> None:
    def cand(gain, forest: int, urban: int) -> Candidate:
        return Candidate(gain, {"forest": forest, "urban": urban}, {"forest": 25, "urban": 25})

    unity, mild, strong = cand(UNITY, 20, 20), cand((1.0, 1.3, 1.0, 1.3), 22, 19), cand((1.0, 1.6, 1.0, 1.6), 24, 17)
    assert choose([unity, mild, strong]) is mild  # mild and strong both 41: the one nearer 1 wins
    assert distance_from_unity(mild.gain) < distance_from_unity(strong.gain)
    assert choose([strong, unity]) is strong  # 41 > 40
    assert choose([cand(UNITY, 20, 20), cand((0.6, 1.0, 1.0, 1.0), 21, 20)]).gain == (0.6, 1.0, 1.0, 1.0)
    assert choose([cand((1.0, 1.6, 1.0, 1.6), 20, 20), cand(UNITY, 20, 20)]).gain == UNITY
    with pytest.raises(ValueError):
        choose([])


def test_every_candidate_flies_the_same_calibration_worlds_with_its_gain(slow_flyer: Path) -> None:
    flights = []
    candidates = calibrate(
        str(slow_flyer),
        [UNITY, (3.0, 1.0, 1.0, 1.0)],
        ["forest"],
        2,
        envs=2,
        workers=1,
        max_episode_time=3.0,
        on_result=flights.append,
    )
    assert len(flights) == 4
    plain, fast = candidates
    assert [f["seed"] for f in plain.flights] == [f["seed"] for f in fast.flights] == calibration_seeds(2)
    assert plain.episodes == fast.episodes == {"forest": 2}
    # The gain reached the flights: tanh(3 * 0.3) * 2 = 1.43 m/s against 0.58 m/s, for the same 3 s.
    for a, b in zip(plain.flights, fast.flights):
        assert b["path_length"] > 1.8 * a["path_length"] > 0
    # Neither reaches a goal tens of metres away in 3 s: the tie keeps the trained commands.
    assert plain.total_successes == fast.total_successes == 0
    assert choose(candidates) is plain


def test_the_cli_writes_the_chosen_gain_with_its_table(slow_flyer: Path, tmp_path: Path) -> None:
    out = tmp_path / "calibrated.safetensors"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "lnn_nav.cli",
            "calibrate",
            str(slow_flyer),
            "--out",
            str(out),
            "--vx",
            "1",
            "--turn",
            "1",
            "1.5",
            "--world",
            "urban",
            "--episodes",
            "1",
            "--workers",
            "1",
            "--envs",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    table = json.loads(out.with_name("calibrated.calibration.json").read_text())
    assert [c["gain"] for c in table["candidates"]] == [[1, 1, 1, 1], [1, 1.5, 1, 1.5]]
    config, metadata = read_checkpoint_info(out)
    assert list(config.output_gain) == table["chosen"]
    assert metadata["calibration"]["chosen"] == table["chosen"]
    assert metadata["output_gain_of"] == str(slow_flyer)
    source, calibrated = load_policy(slow_flyer), load_policy(out)
    for (name, a), (_, b) in zip(source.state_dict().items(), calibrated.state_dict().items()):
        assert name == "output_gain" or torch.equal(a, b), name  # the weights are untouched
    assert "chosen gain" in run.stdout


def test_the_cli_refuses_bad_requests_before_flying(slow_flyer: Path, tmp_path: Path) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "lnn_nav.cli", "calibrate", *args], capture_output=True, text=True, timeout=120
        )

    missing = cli(str(tmp_path / "nope.safetensors"), "--out", str(tmp_path / "x.safetensors"))
    assert missing.returncode == 2 and "not found" in missing.stderr
    same = cli(str(slow_flyer), "--out", str(slow_flyer))
    assert same.returncode == 2 and "must differ" in same.stderr
    bad = cli(str(slow_flyer), "--out", str(tmp_path / "x.safetensors"), "--turn", "0")
    assert bad.returncode == 2 and "> 0" in bad.stderr
    zero = cli(str(slow_flyer), "--out", str(tmp_path / "x.safetensors"), "--episodes", "0")
    assert zero.returncode == 2 and "at least 1" in zero.stderr
