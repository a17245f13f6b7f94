"""Gazebo's own SDF parser accepts every world lnn_nav exports and ships.

`ign sdf -k` is sdformat 12's checker (SDF 1.9), the parser gz sim loads worlds with. On Debian it
comes with `libsdformat-dev` and `ignition-tools` (.ci/run installs them where apt is at hand); where
it is missing these tests skip with that reason. gz sim itself is not installed here: a world that
sdformat accepts is what this checks, not how gz renders or simulates it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from lnn_nav.sim.presets import make_world
from lnn_nav.sim.sdf_export import export_world

ROOT = Path(__file__).resolve().parents[1]
CHECKED_IN = sorted((ROOT / "sim" / "worlds").glob("*.sdf"))
# One world of each kind, under presets that add scene elements (fog; a low sun). Each check starts
# ign's Ruby front end (seconds to tens of seconds on a busy 2-core machine), so two.
EXPORTED = [("forest", "fog"), ("urban", "dusk")]


@pytest.fixture(scope="module")
def ign() -> str:
    path = shutil.which("ign")
    if path is None:
        pytest.skip(
            "Gazebo's SDF checker `ign sdf` is not installed (Debian: apt-get install libsdformat-dev ignition-tools)"
        )
    return path


def check(ign: str, sdf: Path) -> subprocess.CompletedProcess:
    return subprocess.run([ign, "sdf", "-k", str(sdf)], capture_output=True, text=True, timeout=180)


def test_the_checker_rejects_a_broken_world(ign: str, tmp_path: Path) -> None:
    # So that "Valid." below means something: a box with a 2-vector size is refused.
    good = (ROOT / "sim" / "worlds" / "forest_seed0.sdf").read_text()
    bad = tmp_path / "broken.sdf"
    bad.write_text(good.replace("<size>", "<size>1 1</size><!--", 1).replace("</size>", "-->", 1))
    result = check(ign, bad)
    assert result.returncode != 0 and "Valid." not in result.stdout


@pytest.mark.parametrize("sdf", CHECKED_IN, ids=lambda p: p.name)
def test_the_shipped_worlds_are_valid_sdf(ign: str, sdf: Path) -> None:
    result = check(ign, sdf)
    assert result.returncode == 0 and "Valid." in result.stdout, result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "preset"), EXPORTED, ids=lambda v: str(v))
def test_exported_worlds_are_valid_sdf(ign: str, tmp_path: Path, kind: str, preset: str) -> None:
    sdf, _ = export_world(make_world(kind, 7, preset), tmp_path / f"{kind}_{preset}.sdf")
    result = check(ign, sdf)
    assert result.returncode == 0 and "Valid." in result.stdout, result.stdout + result.stderr
