"""`lnn-nav eval --ros-episodes`: the in-process benchmark checked seed by seed against the ROS 2 graph."""

from __future__ import annotations

import argparse
import json

import pytest

from lnn_nav.eval import cli_eval
from lnn_nav.eval.closed_loop import eval_job
from lnn_nav.eval.ros_agreement import NO_OUTCOME, SETUP_ERROR, compare_outcomes, graph_params, known_differences


def _eval(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    cli_eval.add_arguments(parser)
    return cli_eval.run(parser.parse_args(list(argv)))


def test_agreement_is_outcome_equality_seed_by_seed():
    inprocess = [
        {"seed": 1000, "outcome": "success", "time": 20.0},
        {"seed": 1001, "outcome": "collision", "time": 7.0},
        {"seed": 1002, "outcome": "success", "time": 22.0},
    ]
    ros = [{"seed": 1001, "outcome": "success", "time": 16.0}, {"seed": 1000, "outcome": "success", "time": 19.5}]
    block = compare_outcomes(inprocess, ros)
    assert (block["flown"], block["agreements"], block["errors"]) == (2, 1, 0)
    first, second = block["episodes"]
    assert first == {
        "seed": 1001,
        "ros_outcome": "success",
        "inprocess_outcome": "collision",
        "agree": False,
        "ros_time": 16.0,
        "inprocess_time": 7.0,
    }
    assert second["agree"] and second["seed"] == 1000


def test_a_graph_flight_without_outcome_disagrees_and_counts_as_an_error():
    inprocess = [{"seed": 1000, "outcome": "timeout"}, {"seed": 1001, "outcome": "timeout"}]
    ros = [
        {"seed": 1000, "outcome": NO_OUTCOME, "error": "no outcome within 600 s (wall clock)"},
        {"seed": 1001, "outcome": SETUP_ERROR, "error": "sim_node exited before the episode ended"},
    ]
    block = compare_outcomes(inprocess, ros)
    assert (block["agreements"], block["errors"]) == (0, 2)
    assert block["episodes"][1]["error"] == "sim_node exited before the episode ended"


def test_a_graph_flight_on_a_seed_the_cell_did_not_fly_is_an_error():
    with pytest.raises(ValueError, match="seed 1005 has no in-process episode"):
        compare_outcomes([{"seed": 1000, "outcome": "success"}], [{"seed": 1005, "outcome": "success"}])


def test_graph_flies_the_evaluations_camera_rate_episode_limit_and_command_limits():
    job = eval_job("policy.safetensors", "forest", [1000], "fog", max_episode_time=45.0, camera_hfov=120.0)
    params = graph_params(job, expert=False)
    sim, pilot = params["sim_params"], params["pilot_params"]
    assert (sim["camera_width"], sim["camera_height"], sim["control_hz"]) == (
        job.camera_width,
        job.camera_height,
        job.control_hz,
    )
    assert sim["camera_hfov"] == 120.0  # the lens too, or the graph flight would see another world
    assert sim["max_episode_time"] == 45.0 and sim["lockstep"] is True
    # The controller flies config/controller.yaml as deployed: no limit or rate is overridden
    # (tests/test_one_configuration.py holds the YAML to the benchmark's limits and rate).
    assert pilot == {"torch_threads": job.learner_threads}
    assert graph_params(job, expert=True)["pilot_params"] == {"control_hz": job.control_hz}


def test_the_expert_comparison_says_the_node_flies_a_different_expert():
    assert any("expert_node flies the demonstrating expert" in n for n in known_differences(expert=True))
    assert not any("expert_node" in n for n in known_differences(expert=False))


def test_more_ros_episodes_than_episodes_is_refused_before_flying(tmp_path, capsys):
    out = tmp_path / "results.json"
    assert _eval("--model", "expert", "--episodes", "2", "--ros-episodes", "3", "--out", str(out)) == 2
    assert "--ros-episodes must be between 0 and --episodes (2), got 3" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.ros
def test_expert_flies_the_same_outcome_through_the_ros_graph_as_in_process(tmp_path, capsys):
    pytest.importorskip("rclpy")
    out = tmp_path / "results.json"
    code = _eval(
        "--model",
        "expert",
        "--world",
        "forest",
        "--episodes",
        "1",
        "--ros-episodes",
        "1",
        "--workers",
        "1",
        "--envs",
        "1",
        "--out",
        str(out),
    )
    assert code == 0
    data = json.loads(out.read_text())
    (cell,) = data["cells"]
    # No --camera-hfov: null at the top; the camera each controller flew, by name, beside it.
    assert data["camera_hfov"] is None and data["cameras"] == {"expert": cell["camera_hfov"]} == {"expert": 90.0}
    ros = cell["ros"]
    assert ros["pilot"] == "expert_node" and ros["errors"] == 0
    (flight,) = ros["episodes"]
    assert flight["seed"] == 1000 and flight["inprocess_outcome"] == cell["episodes_detail"][0]["outcome"]
    # The expert plans on ground truth and clears this world with margin: both runs reach the goal.
    assert flight["ros_outcome"] == flight["inprocess_outcome"] == "success" and flight["agree"]
    assert (ros["agreements"], ros["flown"]) == (1, 1)
    assert "ros agree 1/1" in capsys.readouterr().out
    assert (tmp_path / "ros_logs" / "expert" / "forest_in_distribution_1000" / "sim_node.log").is_file()
    # The same as CSV beside the JSON, the graph's outcome with the episode's.
    episodes = (tmp_path / "results.episodes.csv").read_text().splitlines()
    assert episodes[0].startswith("controller,world,preset,seed,outcome") and len(episodes) == 2
    assert episodes[1].startswith("expert,forest,in_distribution,1000,success,") and episodes[1].endswith(",success")
    assert (tmp_path / "results.cells.csv").read_text().splitlines()[1].endswith(",1,1")
