"""One configuration everywhere: what the benchmark measures is what `ros2 launch`, `lnn-nav fly` and the
demo deploy. config/controller.yaml's command limits are the simulated flight controller's (the
in-process benchmark flies the raw policy output through it), its first-frame dt is the benchmark's
control period, and the graph flights override none of it."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import yaml

from lnn_nav.rollouts.flights import FlightJob
from lnn_nav.sim.flight_controller import ControllerGains

ROOT = Path(__file__).resolve().parents[1]


def params(name: str, node: str) -> dict:
    return yaml.safe_load((ROOT / "config" / name).read_text())[node]["ros__parameters"]


def test_the_deployed_command_limits_are_the_benchmarks():
    controller, gains = params("controller.yaml", "controller_node"), ControllerGains()
    assert controller["max_speed_xy"] == gains.max_horizontal_speed
    assert controller["max_speed_z"] == gains.max_vertical_speed
    assert math.isclose(controller["max_yaw_rate"], gains.max_yaw_rate, rel_tol=1e-12)


def test_the_first_frame_dt_is_the_benchmarks_control_period():
    rate = FlightJob(kind="forest", seeds=[0], out_dir="").control_hz
    assert params("controller.yaml", "controller_node")["expected_rate"] == rate
    assert params("sim.yaml", "sim_node")["control_hz"] == rate


def test_fly_and_the_launch_file_give_the_controller_the_same_parameters():
    from lnn_nav.nodes.fly import SIM_CONTROLLER_PARAMS

    text = (ROOT / "launch" / "sim_closed_loop.launch.py").read_text()
    assert "SIM_CONTROLLER_PARAMS" in text and '"controller.yaml"' in text
    # Only simulation plumbing, never a limit or rate: those come from the YAML.
    assert set(SIM_CONTROLLER_PARAMS) == {"use_sim_time", "sync_inputs", "sync_timeout"}


def test_ament_layout_links_the_node_executables_and_the_share_directory(tmp_path: Path):
    spec = importlib.util.spec_from_file_location("ament_layout", ROOT / "scripts" / "ament_layout.py")
    assert spec is not None and spec.loader is not None
    layout = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(layout)
    exes = layout.node_executables()
    assert "controller_node" in exes and "lnn-nav" not in exes
    (tmp_path / "bin").mkdir()
    for exe in exes:
        (tmp_path / "bin" / exe).write_text("#!/bin/sh\n")
    made = layout.lay_out(tmp_path)
    for exe in exes:
        link = tmp_path / "lib" / "lnn_nav" / exe
        assert link.is_symlink() and link.resolve() == (tmp_path / "bin" / exe).resolve()
    assert (tmp_path / "share" / "ament_index" / "resource_index" / "packages" / "lnn_nav").is_file()
    launch = tmp_path / "share" / "lnn_nav" / "launch" / "sim_closed_loop.launch.py"
    assert launch.is_symlink() and launch.resolve() == ROOT / "launch" / "sim_closed_loop.launch.py"
    assert (tmp_path / "share" / "lnn_nav" / "package.xml").exists()
    assert not (tmp_path / "share" / "lnn_nav" / "models" / "eval").exists()  # results stay out, as in setup.py
    assert made and layout.lay_out(tmp_path) == []  # a second run has nothing to do
