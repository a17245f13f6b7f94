"""The controller node's decisions as plain Python: Δt from stamps, input freshness, clamping.

Nothing here imports ``rclpy``; times are integer nanoseconds, so the same
code serves wall-clock and simulated (``use_sim_time``) runs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from lnn_nav.models.preprocess import hfov_from_intrinsics

_NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class DtStep:
    """Δt for one frame; ``reset`` names why the recurrent state must restart, else ``None``."""

    dt: float
    reset: str | None = None


class DtTracker:
    """Δt between frames from their header stamps.

    The first frame, a stamp that goes backwards (bag loop, sim restart) or
    a gap longer than ``max_dt`` (dropped stream) gets the nominal Δt, and
    the latter two ask for a state reset: the liquid core would otherwise
    integrate across a jump it never saw. A repeated stamp gives Δt = 0.
    """

    def __init__(self, nominal_dt: float, max_dt: float) -> None:
        if not nominal_dt > 0 or not math.isfinite(nominal_dt):
            raise ValueError(f"nominal_dt must be a positive number of seconds, got {nominal_dt}")
        if not max_dt >= nominal_dt:
            raise ValueError(f"max_dt ({max_dt} s) must be >= nominal_dt ({nominal_dt} s)")
        self.nominal_dt = float(nominal_dt)
        self.max_dt = float(max_dt)
        self._last_ns: int | None = None

    def reset(self) -> None:
        """Forget the last stamp: the next frame counts as a first frame."""
        self._last_ns = None

    def update(self, stamp_ns: int) -> DtStep:
        last, self._last_ns = self._last_ns, int(stamp_ns)
        if last is None:
            return DtStep(self.nominal_dt)
        delta = (int(stamp_ns) - last) / _NS_PER_S
        if delta < 0:
            return DtStep(self.nominal_dt, f"frame stamp went back by {-delta:.3f} s")
        if delta > self.max_dt:
            return DtStep(self.nominal_dt, f"gap of {delta:.3f} s between frames exceeds max_dt={self.max_dt} s")
        return DtStep(delta)


class InputWatchdog:
    """Which inputs are stale: older than their timeout, or never seen since :meth:`arm`.

    A timeout of ``None`` means the input never expires once received (a
    latched goal) but is still required.
    """

    def __init__(self, timeouts: Mapping[str, float | None]) -> None:
        self.timeouts = dict(timeouts)
        self._last_ns: dict[str, int | None] = {name: None for name in self.timeouts}
        self._armed_ns: int | None = 0

    def arm(self, now_ns: int | None) -> None:
        """Start watching at ``now_ns``, forgetting earlier arrivals.

        ``None``: the clock is not running yet (simulated time reads 0 until
        the first ``/clock``); the wait for a first input starts at the first
        :meth:`stale` call instead, not at time 0, which would make the
        simulator's start time count as waiting.
        """
        self._armed_ns = None if now_ns is None else int(now_ns)
        self._last_ns = {name: None for name in self.timeouts}

    def mark(self, name: str, now_ns: int) -> None:
        self._last_ns[name] = int(now_ns)

    def stale(self, now_ns: int) -> list[str]:
        """Descriptions of each stale input, e.g. ``"camera: no data for 0.31 s (timeout 0.25 s)"``."""
        return list(self.stale_inputs(now_ns).values())

    def stale_inputs(self, now_ns: int) -> dict[str, str]:
        """Each stale input's name -> its description (as :meth:`stale`)."""
        if self._armed_ns is None:
            self._armed_ns = int(now_ns)
        out = {}
        for name, timeout in self.timeouts.items():
            last = self._last_ns[name]
            if last is None:
                waited = (now_ns - self._armed_ns) / _NS_PER_S
                if timeout is None or waited > timeout:
                    out[name] = f"{name}: nothing received yet"
                continue
            age = (now_ns - last) / _NS_PER_S
            if timeout is not None and age > timeout:
                out[name] = f"{name}: no data for {age:.2f} s (timeout {timeout} s)"
        return out


def clamp_command(cmd: np.ndarray, max_speed_xy: float, max_speed_z: float, max_yaw_rate: float) -> np.ndarray:
    """Bound ``[vx, vy, vz, yaw_rate]``: horizontal speed by norm (direction kept), the rest per axis."""
    out = np.asarray(cmd, dtype=np.float64).reshape(4).copy()
    speed_xy = math.hypot(out[0], out[1])
    if speed_xy > max_speed_xy:
        out[:2] *= max_speed_xy / speed_xy
    out[2] = min(max(out[2], -max_speed_z), max_speed_z)
    out[3] = min(max(out[3], -max_yaw_rate), max_yaw_rate)
    return out


class RateMeter:
    """Frame rate and step latency over a reporting window (the diagnostics period)."""

    def __init__(self) -> None:
        self._frames = 0
        self._latencies: list[float] = []

    def record(self, latency_s: float) -> None:
        self._frames += 1
        self._latencies.append(latency_s)

    def take(self, window_s: float) -> tuple[float, float, float]:
        """``(frames per second, mean latency s, max latency s)`` since the last call; restarts."""
        rate = self._frames / window_s if window_s > 0 else 0.0
        lat = self._latencies
        mean = float(np.mean(lat)) if lat else 0.0
        peak = float(np.max(lat)) if lat else 0.0
        self._frames, self._latencies = 0, []
        return rate, mean, peak


def camera_mismatch(trained_hfov_deg: float | None, fx: float, width: int, tolerance_deg: float = 1.0) -> str | None:
    """Why the camera a ``CameraInfo`` describes is not the one the policy was trained with, or None.

    The horizontal field of view is :func:`~lnn_nav.models.preprocess.hfov_from_intrinsics`. A policy flown through
    another lens sees obstacles at other bearings and sizes and steers wrong without
    any input being stale or malformed, so the node says so. An uncalibrated driver's
    ``K`` of zeros, or a policy that does not record its camera, cannot be judged.
    """
    hfov = hfov_from_intrinsics(fx, width)
    if trained_hfov_deg is None or hfov is None or abs(hfov - trained_hfov_deg) <= tolerance_deg:
        return None
    return (
        f"camera field of view {hfov:.1f} deg (CameraInfo) differs from the "
        f"{trained_hfov_deg:.1f} deg it was trained with"
    )


def camera_info_topic(image_topic: str) -> str:
    """The ``sensor_msgs/CameraInfo`` topic of a camera's image topic, as image_transport derives it
    (``getCameraInfoTopic``): ``camera_info`` in the image topic's namespace.

    ``/camera/color/image_raw`` -> ``/camera/color/camera_info``; ``/image`` -> ``/camera_info``; a
    relative ``image_raw`` -> ``camera_info`` (resolved in the node's namespace, as the image topic is).
    """
    topic = image_topic.strip()
    if not topic or topic.endswith("/"):
        raise ValueError(f"not an image topic name: {image_topic!r}")
    namespace, slash, _ = topic.rpartition("/")
    return f"{namespace}/camera_info" if slash else "camera_info"
