"""`lnn-nav demo` flies the shipped controller end to end and writes an honest report; latency tools."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lnn_nav.eval.demo import run_demo, shipped_model
from lnn_nav.eval.latency import format_table, step_latency_table
from lnn_nav.models import load_policy

MODELS = Path(__file__).resolve().parents[1] / "models"


def test_shipped_controllers_load_and_are_small():
    path = shipped_model("cfc-ncp")
    assert path is not None, "models/cfc_ncp.safetensors must ship with the package"
    assert path.stat().st_size < 2_000_000
    policy = load_policy(path)
    assert policy.config.core == "cfc-ncp" and policy.config.use_goal


@pytest.mark.parametrize("path", sorted(MODELS.glob("*.safetensors")), ids=lambda p: p.stem)
def test_every_shipped_checkpoint_is_small_and_flies_a_step(path):
    # The baselines ship beside the CfC-NCP; a file named for one core must hold that core.
    import torch

    assert path.stat().st_size < 2_000_000
    policy = load_policy(path).eval()
    assert policy.config.core == path.stem.replace("_", "-")
    enc = policy.config.encoder
    goal = torch.tensor([[1.0, 0.0, 0.0, 0.5]]) if policy.config.use_goal else None
    imu = torch.zeros(1, 6) if policy.config.use_imu else None
    with torch.no_grad():
        cmd, _ = policy.step(torch.rand(1, enc.in_channels, enc.height, enc.width), 1 / 30, None, imu=imu, goal=goal)
    assert cmd.shape == (1, 4) and torch.isfinite(cmd).all()
    assert (cmd.abs() <= torch.tensor(policy.config.command_scale)).all()


@pytest.mark.slow
def test_demo_flies_the_shipped_controller_and_writes_a_report(tmp_path, capsys):
    flights = (("forest", "in_distribution", 1003),)
    assert run_demo(tmp_path, threads=1, latency_iters=5, episodes=2, ros_flights=flights) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    (ros,) = summary["ros_graph_flights"]
    assert ros["outcome"] in ("success", "collision", "out_of_bounds", "timeout"), ros
    (local,) = summary["in_process_flights"]
    # The graph flight and the in-process one are the same episode, step for step: same outcome and time.
    assert (local["outcome"], round(local["time"], 3)) == (ros["outcome"], round(ros["time"], 3))
    (native,) = summary["native_graph_flights"]  # the native controller node: the same episode again
    assert (native["outcome"], round(native["time"], 3)) == (ros["outcome"], round(ros["time"], 3)), native
    cells = summary["benchmark"]
    assert {(c["controller"], c["world"]) for c in cells} >= {
        ("cfc-ncp", "forest"),
        ("cfc-ncp", "urban"),
        ("expert", "forest"),
        ("expert", "urban"),
    }
    assert all(c["episodes"] == 2 for c in cells)
    readme = (tmp_path / "README.md").read_text()
    assert "Through the ROS 2 graph" in readme and "cfc_ncp.safetensors" in readme
    for name in (
        "wiring.png",
        "neuron_traces.png",
        "cfc_ncp_forest_in_distribution_map.png",
        "cfc_ncp_forest_in_distribution_saliency.gif",
        "benchmark/report.md",
    ):
        assert (tmp_path / name).stat().st_size > 0, name
    out = capsys.readouterr().out
    assert "[7/7]" in out


def test_latency_table_pairs_each_imported_model_with_ncps():
    rows = step_latency_table(iters=3, repeats=1)
    with_reference = [r for r in rows if r.reference_us is not None]
    assert {r.name for r in with_reference} == {"CfC AutoNCP(19,4)", "CfC dense 64 units", "LTC AutoNCP(19,4)"}
    assert all(r.ours_us > 0 and r.speedup > 0 for r in with_reference)
    table = format_table(rows)
    assert table.count("\n") == len(rows) + 1 and "speed-up" in table
