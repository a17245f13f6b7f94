"""The prepared GPU-machine scripts: they only run where a GPU is lent, so CI checks they parse and refuse bad input."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ["benchmarks/device_check.sh", "benchmarks/device_train_check.sh", "benchmarks/device_env.sh"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_device_script_parses(script: str) -> None:
    result = subprocess.run(["bash", "-n", str(ROOT / script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_device_train_check_needs_a_dataset(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATA"}
    env["OUT"] = str(tmp_path / "out")
    result = subprocess.run(
        ["bash", str(ROOT / "benchmarks/device_train_check.sh")], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode != 0
    assert "DATA=<dataset folder>" in result.stderr
    assert not (tmp_path / "out").exists()  # refused before anything was written
