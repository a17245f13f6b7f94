"""Onboard-camera flights and GIFs: the benchmark's episode again, frames kept, saliency drawn."""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from lnn_nav.eval import cli_report
from lnn_nav.eval.camera import fly_with_camera, write_saliency_gif
from lnn_nav.eval.closed_loop import eval_job
from lnn_nav.models import EncoderConfig, LiquidPolicy, PolicyConfig, save_policy
from lnn_nav.rollouts.flights import fly_worker
from tests.small_policies import H, W

SEED = 1000


@pytest.fixture(scope="module")
def straight_flyer(tmp_path_factory):
    """A small goal policy whose head always commands ~2.3 m/s forward: episodes end within seconds."""
    torch.manual_seed(0)
    policy = LiquidPolicy(PolicyConfig(encoder=EncoderConfig(height=H, width=W), use_goal=True)).eval()
    with torch.no_grad():
        policy.head.weight.mul_(0.01)  # the frames still matter, a little: saliency has something to show
        policy.head.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))
    return save_policy(policy, tmp_path_factory.mktemp("camera") / "cfc_ncp.safetensors")


@pytest.fixture(scope="module")
def flight(straight_flyer):
    return fly_with_camera(straight_flyer, "forest", SEED, max_episode_time=4.0)


def test_the_camera_flight_is_the_benchmarks_episode_of_that_seed(straight_flyer, flight):
    [benchmark] = fly_worker(eval_job(str(straight_flyer), "forest", [SEED], max_episode_time=4.0))
    assert (flight.outcome, flight.time) == (benchmark["outcome"], pytest.approx(benchmark["time"], abs=1e-9))
    track = np.round(np.array(flight.record.positions)[::3], 2).tolist()
    assert track == benchmark["track"]
    assert len(flight.frames) == len(flight.states) == len(flight.record.positions) - 1


def test_saliency_gif_shows_frame_and_saliency_side_by_side_at_the_policy_input_size(flight, tmp_path):
    path = write_saliency_gif(
        flight, tmp_path / "cam.gif", stride=3, side_by_side=True, scale=1, input_size=True, colors=64
    )
    gif = Image.open(path)
    assert gif.size == (2 * W + 2, H)
    assert gif.n_frames == math.ceil(len(flight.frames) / 3)
    assert gif.info["duration"] == 200  # every third frame of 15 Hz: real time
    frame = np.asarray(gif.convert("RGB"))
    assert frame[:, W : W + 2].min() >= 240  # the white gap between the two pictures (64-colour palette)
    assert not np.array_equal(frame[:, :W], frame[:, W + 2 :])  # the right one carries the saliency
    with pytest.raises(ValueError, match="stride"):
        write_saliency_gif(flight, tmp_path / "bad.gif", stride=0)


def test_report_camera_flies_each_checkpoint_on_the_results_worlds(straight_flyer, tmp_path, capsys):
    # Over the evaluation's 60 s limit the straight flyer hits a tree on this seed.
    episode = {
        "kind": "forest",
        "seed": SEED,
        "outcome": "collision",
        "frames": 1,
        "time": 1.0,
        "path_length": 1.0,
        "bag": None,
    }
    cell = {
        "controller": "cfc_ncp",
        "world": "forest",
        "preset": "in_distribution",
        "episodes": 1,
        "success_rate": 0.0,
        "ci95": [0, 1],
        "outcomes": {},
        "episodes_detail": [episode],
    }
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"seeds": [SEED, SEED], "cells": [cell]}))
    parser = argparse.ArgumentParser()
    cli_report.add_arguments(parser)
    out = tmp_path / "report"
    assert cli_report.run(parser.parse_args([str(results), "--out", str(out), "--camera", str(straight_flyer)])) == 0
    gif = out / f"camera_cfc_ncp_forest_in_distribution_{SEED}.gif"
    assert gif.stat().st_size > 1000
    text = (out / "report.md").read_text()
    assert "## Onboard camera" in text and f'src="{gif.name}"' in text
    traces = out / f"neurons_cfc_ncp_forest_in_distribution_{SEED}.png"
    assert traces.stat().st_size > 10_000 and f"]({traces.name})" in text
    assert f"seed {SEED}: collision after" in text
    assert "the benchmark's episode of this seed: collision." in text
    assert "wrote camera_cfc_ncp_forest" in capsys.readouterr().out
    assert cli_report.run(parser.parse_args([str(results), "--out", str(out), "--camera", "nope.safetensors"])) == 2


def test_core_traces_label_each_state_column_by_its_neuron_id(flight, tmp_path, monkeypatch):
    # An NCP numbers its motor neurons first: labelling the columns in layer order (inter first) mislabels them.
    from lnn_nav.eval import camera, plots

    seen = {}

    def capture(times, states, labels, path, title=""):
        seen.update(times=times, states=states, labels=labels)
        return path

    monkeypatch.setattr(plots, "plot_neuron_traces", capture)
    camera.plot_core_traces(flight, tmp_path / "traces.png")
    wiring = flight.policy.core.wiring
    assert seen["labels"] == [wiring.neuron_type(n) for n in range(wiring.units)]
    assert seen["labels"][0] == "motor" and seen["states"].shape == (len(flight.frames), wiring.units)
    assert seen["times"][1] == pytest.approx(1 / 15)
    monkeypatch.undo()
    assert camera.plot_core_traces(flight, tmp_path / "traces.png").stat().st_size > 10_000
