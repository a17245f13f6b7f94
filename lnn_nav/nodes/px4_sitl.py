"""PX4 SITL (SIH) and the Micro XRCE-DDS agent from the ros-extras bundle, as processes.

The bundle (``px4/``, ``agent/``, ``scripts/run_px4_sih.sh``) is found at
``--px4-bundle``, ``$LNN_NAV_ROS_EXTRAS`` or ``../shared/ros-extras`` beside
the source tree. Used by `lnn-nav fly --px4` and the PX4 tests. Torch-free and
rclpy-free.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from lnn_nav.nodes.fly import SetupError

ENV_BUNDLE = "LNN_NAV_ROS_EXTRAS"


def find_bundle(given: str | os.PathLike | None = None) -> Path:
    """The ros-extras bundle: ``given``, ``$LNN_NAV_ROS_EXTRAS`` or ``../shared/ros-extras`` by the source tree."""
    candidates = [Path(given)] if given else []
    if os.environ.get(ENV_BUNDLE):
        candidates.append(Path(os.environ[ENV_BUNDLE]))
    candidates.append(Path(__file__).resolve().parents[3] / "shared" / "ros-extras")
    for path in candidates:
        if (path / "scripts" / "run_px4_sih.sh").is_file() and (path / "agent" / "run.sh").is_file():
            return path.resolve()
    raise SetupError(
        "no PX4 SIH bundle (px4/, agent/, scripts/run_px4_sih.sh) found; looked in: "
        + ", ".join(str(c) for c in candidates)
        + f". Pass --px4-bundle DIR or set {ENV_BUNDLE}."
    )


def _is_link_stub(path: Path) -> bool:
    """A symlink that a copy turned into a small text file holding the link's target."""
    return (
        path.is_file() and not path.is_symlink() and path.stat().st_size < 256 and path.read_bytes()[:4] != b"\x7fELF"
    )


def agent_dir(bundle: Path, scratch: Path) -> Path:
    """The bundle's ``agent/``, or, where a copy of the bundle lost its ``lib/`` symlinks, an equivalent
    folder under ``scratch``.

    ``libmicroxrcedds_agent.so.2.4`` is a symlink to ``.so.2.4.3``; a copy that does not keep symlinks
    leaves a text file naming the target, and the loader fails with "file too short". The folder made
    holds copies of run.sh, the loopback profile and the small launcher (its RUNPATH is
    ``$ORIGIN/../lib``) and links each library to the bundle's real file.
    """
    agent = bundle / "agent"
    stubs = [p for p in sorted((agent / "lib").iterdir()) if _is_link_stub(p)]
    if not stubs:
        return agent
    fixed = scratch / "xrce_agent"
    shutil.rmtree(fixed, ignore_errors=True)
    for sub in ("bin", "lib"):
        (fixed / sub).mkdir(parents=True)
    for name in ("run.sh", "fastdds_localhost.xml"):
        shutil.copyfile(agent / name, fixed / name)
    shutil.copyfile(agent / "bin" / "MicroXRCEAgent", fixed / "bin" / "MicroXRCEAgent")
    for path in (fixed / "run.sh", fixed / "bin" / "MicroXRCEAgent"):
        path.chmod(0o755)
    for lib in (agent / "lib").iterdir():
        real = agent / "lib" / lib.read_text().strip() if lib in stubs else lib
        if "/" in real.name or not real.is_file() or _is_link_stub(real):
            raise SetupError(f"{lib} is a broken link stub ({lib.read_text()!r}): the bundle's agent cannot run")
        (fixed / "lib" / lib.name).symlink_to(real.resolve())
    return fixed


def agent_command(bundle: Path, scratch: Path, venv: str, port: int = 8888) -> list[str]:
    """The command that runs the bundle's agent (UDP ``port``, DDS on 127.0.0.1) with ``venv``'s Fast-DDS."""
    return ["bash", str(agent_dir(bundle, scratch) / "run.sh"), venv, "udp4", "-p", str(port)]


class Px4Sitl:
    """PX4 SITL (SIH quadrotor, headless) started and stopped by the bundle's script in ``workdir``."""

    def __init__(self, bundle: Path, workdir: Path, env: dict[str, str], instance: int = 0) -> None:
        self.script = bundle / "scripts" / "run_px4_sih.sh"
        self.workdir = workdir
        self.env = env
        self.instance = instance
        self.started = False

    def start(self, timeout: float = 120.0) -> None:
        self.started = True  # a failed start may still leave a process for stop() to end
        result = subprocess.run(
            ["bash", str(self.script), "start", str(self.workdir), str(self.instance)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise SetupError(f"PX4 SITL did not start: {result.stderr.strip() or result.stdout.strip()}")

    def wait_ready(self, timeout: float = 60.0, settle: float = 3.0) -> None:
        """Wait for PX4's "Ready for takeoff" (its preflight checks pass), then ``settle`` more seconds:
        its first height estimates can be half a metre off, and the arming point is the world's start."""
        deadline = time.monotonic() + timeout
        log = self.workdir / "px4.out"
        while time.monotonic() < deadline:
            if log.is_file() and "Ready for takeoff" in log.read_text(errors="replace"):
                time.sleep(settle)
                return
            time.sleep(0.2)
        raise SetupError(f"PX4 not ready for takeoff after {timeout:g} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.started:
            subprocess.run(
                ["bash", str(self.script), "stop", str(self.workdir)], env=self.env, capture_output=True, timeout=60
            )
            self.started = False

    def log_tail(self, lines: int = 20) -> str:
        log = self.workdir / "px4.out"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.is_file() else ""
