"""`lnn-nav demo` and the latency tools run end to end and say what they are."""

from __future__ import annotations

import json

import torch

from lnn_nav.demo import run_demo, synthetic_flight_inputs
from lnn_nav.eval.latency import format_table, step_latency_table


def test_demo_writes_an_honest_report(tmp_path, capsys):
    assert run_demo(tmp_path, threads=1, latency_iters=5) == 0
    report = (tmp_path / "README.md").read_text()
    assert "not available yet" in report and "untrained" in report and "synthetic" in report
    for name in ("wiring.png", "neuron_traces.png", "policy_untrained.safetensors", "expert_forest_map.png",
                 "expert_urban_camera.gif"):
        assert (tmp_path / name).stat().st_size > 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["step_vs_sequence_max_abs_diff"] < 1e-5
    assert summary["learned_controller_closed_loop"] == "not available yet"
    assert {f["world"] for f in summary["expert_flights"]} == {"forest", "urban"}
    assert summary["ros_graph_flights"][0]["outcome"] == "success"  # the expert through the graph
    assert summary["ros_graph_flights"][1]["outcome"] in ("success", "collision", "out_of_bounds", "timeout")
    assert all(f["outcome"] == "success" for f in summary["expert_flights"])
    assert "Coming (not available yet)" in capsys.readouterr().out


def test_synthetic_inputs_have_irregular_dt_and_a_gap():
    frames, dt = synthetic_flight_inputs(20, 24, 32)
    assert frames.shape == (20, 3, 24, 32) and frames.dtype == torch.uint8
    assert dt.std() > 0 and dt.max() == torch.tensor(0.4)


def test_latency_table_pairs_each_imported_model_with_ncps():
    rows = step_latency_table(iters=3, repeats=1)
    with_reference = [r for r in rows if r.reference_us is not None]
    assert {r.name for r in with_reference} == {"CfC AutoNCP(19,4)", "CfC dense 64 units", "LTC AutoNCP(19,4)"}
    assert all(r.ours_us > 0 and r.speedup > 0 for r in with_reference)
    table = format_table(rows)
    assert table.count("\n") == len(rows) + 1 and "speed-up" in table
