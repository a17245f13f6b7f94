"""`lnn-nav fly --px4`: one closed-loop episode with PX4 SITL (SIH) flying the vehicle, the world node
rendering the camera from PX4's odometry, and the shipped controller flying through the offboard bridge.

Needs the ros-extras bundle (PX4 SIH, the XRCE-DDS agent) and px4_msgs (`make install` generates them);
where either is missing the test skips and says which. PX4 runs in real time: about a minute.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("rclpy")

from lnn_nav.nodes.fly import SetupError  # noqa: E402
from lnn_nav.nodes.px4_sitl import find_bundle  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.ros, pytest.mark.slow]


@pytest.fixture(scope="module")
def bundle() -> Path:
    try:
        found = find_bundle()
    except SetupError as err:
        pytest.skip(str(err))
    try:
        import px4_msgs.msg  # noqa: F401
    except ImportError as err:
        pytest.skip(f"px4_msgs is not importable ({err}): scripts/ros_extras.sh .venv generates it")
    return found


def test_fly_px4_flies_one_episode_to_its_outcome_and_stops_px4(bundle: Path, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    cmd = [sys.executable, "-m", "lnn_nav.cli", "fly", "--px4", "--world", "forest", "--seed", "3"]
    cmd += ["--model", str(ROOT / "models" / "cfc_ncp.safetensors"), "--max-episode-time", "45", "--timeout", "200"]
    result = subprocess.run(cmd + ["--log-dir", str(logs)], capture_output=True, text=True, timeout=400)
    assert result.returncode in (0, 1), result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["flown_by"] == "px4" and outcome["seed"] == 3 and outcome["world"] == "forest"
    assert (outcome["outcome"] == "success") == (result.returncode == 0)
    assert outcome["outcome"] in ("success", "collision", "out_of_bounds", "timeout")
    assert 0 < outcome["time"] <= 45.5 and outcome["path_length"] > 1.0  # it flew, from takeoff on
    # Everything it started is gone: no PX4 left in its working directory, every node stopped.
    assert (
        not (logs / "px4" / "px4.pid").exists()
        or subprocess.run(["pgrep", "-F", str(logs / "px4" / "px4.pid")], capture_output=True).returncode != 0
    ), "PX4 still running after lnn-nav fly --px4"
    world_log = (logs / "px4_world_node.log").read_text()
    assert "take-off: PX4's position" in world_log and "episode over" in world_log


def test_fly_px4_without_a_checkpoint_says_so(bundle: Path, tmp_path: Path) -> None:
    missing = tmp_path / "none.safetensors"
    cmd = [sys.executable, "-m", "lnn_nav.cli", "fly", "--px4", "--model", str(missing)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and f"model checkpoint not found: {missing}" in result.stderr


def test_fly_px4_flies_a_checkpoint_not_the_expert() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lnn_nav.cli", "fly", "--px4", "--expert"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and "--px4 flies a controller checkpoint" in result.stderr
