"""The policy step without torch: ``csrc/policy_runtime.cpp`` (plain C ABI) and the weights it runs.

A process that must not carry torch (a native ROS node, a flight computer's own loop) runs the shipped
policy through this library: the same encoder and CfC kernels as the torch extension's fused
``policy_step``, compiled from the same sources with the same flags, so its commands are the
extension's (``tests/test_kernels_native.py``). Batch 1, one thread, no allocation per step.

* :func:`export_weights` takes a :class:`~lnn_nav.models.LiquidPolicy` with a CfC core (every shipped
  CfC and CfC-NCP controller) and returns its packed layouts (:class:`NativeWeights`);
  :func:`save_weights` / :func:`load_weights` keep them in one ``.safetensors`` file, the file a
  torch-free process loads.
* :class:`NativePolicy` steps them from Python through ctypes (NumPy in, NumPy out): the reference
  a native program checks itself against.

The library builds on first use with the system's C++ compiler (:mod:`lnn_nav.cbuild`) into
``~/.cache/lnn_nav/native``; it needs no torch at build or run time.
"""

from __future__ import annotations

import ctypes
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lnn_nav.cbuild import build_shared

CSRC = Path(__file__).resolve().parent / "csrc"
SOURCE = CSRC / "policy_runtime.cpp"
HEADERS = tuple(CSRC / h for h in ("cfc_layout.h", "cfc_math.h", "cfc_step.h", "encoder_kernels.h", "policy_runtime.h"))
#: The torch extension's CPU flags (build.CPU_FLAGS, not imported: that module imports torch) and the
#: shared-library ones.
FLAGS = ("-O3", "-fopenmp-simd", "-fno-trapping-math", "-std=c++17", "-shared", "-fPIC", "-fvisibility=hidden")
ABI_VERSION = 1
#: Format of the weights file (metadata "lnn_nav_native").
FORMAT_VERSION = 1

_lock = threading.Lock()
_state: dict[str, Any] = {}


class NativeError(RuntimeError):
    """The runtime refused its weights or a step's inputs; the message says why."""


@dataclass(frozen=True)
class NativeWeights:
    """A policy's packed encoder (with its head) and CfC core, as the runtime takes them."""

    encoder_meta: np.ndarray  # int64
    encoder_eps: np.ndarray  # float64, one per conv layer
    encoder_packed: np.ndarray  # float32
    core_meta: np.ndarray  # int64
    core_packed: np.ndarray  # float32
    use_imu: bool
    use_goal: bool
    goal_clip: float
    height: int
    width: int
    channels: int
    # The camera the policy was trained with (horizontal field of view, deg; None: not recorded), which the
    # native node checks CameraInfo against as the Python node does.
    camera_hfov_deg: float | None = None


def export_weights(policy: Any) -> NativeWeights:
    """The packed weights of ``policy`` (a :class:`~lnn_nav.models.LiquidPolicy` on the CPU, float32, with a
    CfC core); ValueError naming what the runtime cannot run."""
    import torch

    from . import fused, fused_policy
    from .build import load_cpu

    if type(policy.core).__name__ != "CfC":
        raise ValueError(f"the native runtime runs CfC cores; this policy's core is {type(policy.core).__name__}")
    reason = fused.why_not_fused(policy.core)
    if reason is not None:
        raise ValueError(f"the CfC core cannot be packed: {reason}")
    ext = load_cpu()
    if ext is None:
        raise ValueError("the CPU extension that packs the encoder did not build (lnn-nav info says why)")
    try:
        plan = fused_policy._new_plan(ext, policy.encoder, policy.head, (policy.output_gain, policy.command_scale))
    except fused_policy._Unsupported as err:
        raise ValueError(f"the encoder cannot be packed: {err}") from err
    meta, eps, _ = fused_policy._encoder_layout(policy.encoder)
    meta[7] = int(policy.head.in_features)
    core_plan = fused._plan(policy.core)
    assert core_plan is not None  # why_not_fused said it packs
    with torch.no_grad():
        encoder_packed = plan.packed.detach().numpy().astype(np.float32, copy=True)
        core_packed = core_plan.packed().detach().to(torch.float32).numpy().copy()
    cfg = policy.config
    return NativeWeights(
        encoder_meta=np.asarray(meta, dtype=np.int64),
        encoder_eps=np.asarray(eps, dtype=np.float64),
        encoder_packed=encoder_packed,
        core_meta=np.asarray(core_plan.layout.meta, dtype=np.int64),
        core_packed=core_packed,
        use_imu=bool(cfg.use_imu),
        use_goal=bool(cfg.use_goal),
        goal_clip=float(cfg.goal_distance_clip),
        height=int(cfg.encoder.height),
        width=int(cfg.encoder.width),
        channels=int(cfg.encoder.in_channels),
        camera_hfov_deg=None if cfg.camera_hfov_deg is None else float(cfg.camera_hfov_deg),
    )


def check_weights(policy: Any, weights: NativeWeights, steps: int = 5, seed: int = 0) -> float:
    """Largest |difference| between the runtime and ``policy.step`` over ``steps`` chained steps on random
    frames (commands and states): 0 where both run the same kernels built alike."""
    import torch

    rng = np.random.default_rng(seed)
    runtime = NativePolicy(weights)
    state: Any = None
    h: np.ndarray | None = None
    worst = 0.0
    for _ in range(steps):
        frame = rng.integers(0, 256, size=(weights.height, weights.width, weights.channels), dtype=np.uint8)
        dt = float(rng.uniform(0.02, 0.2))
        imu = rng.normal(size=6).astype(np.float32) if weights.use_imu else None
        goal = np.abs(rng.normal(size=4)).astype(np.float32) * 5 if weights.use_goal else None
        with torch.inference_mode():
            cmd, state = policy.step(
                torch.from_numpy(frame).permute(2, 0, 1).unsqueeze(0),
                dt,
                state,
                imu=None if imu is None else torch.from_numpy(imu)[None],
                goal=None if goal is None else torch.from_numpy(goal)[None],
            )
        command, h = runtime.step(frame, dt, h, imu=imu, goal=goal)
        worst = max(worst, float(np.abs(command - cmd[0].numpy()).max()), float(np.abs(h - state[0].numpy()).max()))
    return worst


_ARRAYS = ("encoder_meta", "encoder_eps", "encoder_packed", "core_meta", "core_packed")


def save_weights(weights: NativeWeights, path: str | Path) -> Path:
    """One ``.safetensors`` file: the five arrays, and the rest in the metadata (``lnn_nav_native``)."""
    from safetensors.numpy import save_file

    path = Path(path)
    meta = {
        "format": FORMAT_VERSION,
        "use_imu": weights.use_imu,
        "use_goal": weights.use_goal,
        "goal_clip": weights.goal_clip,
        "height": weights.height,
        "width": weights.width,
        "channels": weights.channels,
        "camera_hfov_deg": weights.camera_hfov_deg,
    }
    save_file({k: getattr(weights, k) for k in _ARRAYS}, str(path), metadata={"lnn_nav_native": json.dumps(meta)})
    return path


def load_weights(path: str | Path) -> NativeWeights:
    """The weights :func:`save_weights` wrote; ValueError for a file that is not one (or another version)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no native weights file {path}")
    try:
        with safe_open(str(path), framework="numpy") as f:
            header = (f.metadata() or {}).get("lnn_nav_native")
            arrays = {k: f.get_tensor(k) for k in _ARRAYS} if header is not None else {}
    except Exception as err:  # safetensors raises its own error types for a corrupt file
        raise ValueError(f"{path} is not a native weights file: {err}") from err
    if header is None:
        raise ValueError(f"{path} has no lnn_nav_native metadata: not a file save_weights wrote")
    meta = json.loads(header)
    if meta.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path} is native weights format {meta.get('format')}, this runtime reads {FORMAT_VERSION}")
    return NativeWeights(
        **arrays,
        use_imu=bool(meta["use_imu"]),
        use_goal=bool(meta["use_goal"]),
        goal_clip=float(meta["goal_clip"]),
        height=int(meta["height"]),
        width=int(meta["width"]),
        channels=int(meta["channels"]),
        camera_hfov_deg=None if meta.get("camera_hfov_deg") is None else float(meta["camera_hfov_deg"]),
    )


def _bind(lib: ctypes.CDLL) -> ctypes.CDLL:
    p, i64, i32, f32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int32, ctypes.c_float
    lib.lnn_rt_abi_version.restype = i32
    lib.lnn_rt_last_error.restype = ctypes.c_char_p
    lib.lnn_rt_create.restype = p
    lib.lnn_rt_create.argtypes = [p, i64, p, i64, p, i64, p, i64, p, i64, i32, i32, f32]
    lib.lnn_rt_destroy.argtypes = [p]
    lib.lnn_rt_destroy.restype = None
    lib.lnn_rt_size.argtypes = [p, i32]
    lib.lnn_rt_size.restype = i64
    lib.lnn_rt_step.argtypes = [p, p, i64, i64, i64, p, p, p, f32, p, p]
    lib.lnn_rt_step.restype = i32
    return lib


def load() -> ctypes.CDLL:
    """The runtime library, built on first use; NativeError if it cannot be built here."""
    with _lock:
        if "lib" not in _state:
            try:
                target = build_shared("native", "policy_runtime", SOURCE, FLAGS, HEADERS)
                lib = _bind(ctypes.CDLL(str(target)))
                if lib.lnn_rt_abi_version() != ABI_VERSION:
                    raise RuntimeError(f"{target} has ABI {lib.lnn_rt_abi_version()}, expected {ABI_VERSION}")
                _state["lib"] = lib
            except (OSError, RuntimeError) as err:
                _state["lib"] = None
                _state["error"] = str(err)
        lib = _state["lib"]
    if lib is None:
        raise NativeError(f"the native policy runtime did not build: {_state['error']}")
    return lib


def _ptr(a: np.ndarray | None) -> int | None:
    return None if a is None else int(a.ctypes.data)


class NativePolicy:
    """:class:`NativeWeights` stepped by the runtime: ``step(image, dt, h) -> (command [4], h [S])``."""

    def __init__(self, weights: NativeWeights) -> None:
        self._lib = load()
        # Kept: the runtime copies them, but the arrays must live through the call.
        arrays: list[np.ndarray] = [
            np.ascontiguousarray(weights.encoder_meta, dtype=np.int64),
            np.ascontiguousarray(weights.encoder_eps, dtype=np.float64),
            np.ascontiguousarray(weights.encoder_packed, dtype=np.float32),
            np.ascontiguousarray(weights.core_meta, dtype=np.int64),
            np.ascontiguousarray(weights.core_packed, dtype=np.float32),
        ]
        args: list[Any] = []
        for a in arrays:
            args += [_ptr(a), a.size]
        handle = self._lib.lnn_rt_create(*args, int(weights.use_imu), int(weights.use_goal), weights.goal_clip)
        if not handle:
            raise NativeError(f"the runtime refused the weights: {self._lib.lnn_rt_last_error().decode()}")
        self._handle = handle
        self.weights = weights
        self.state_size = int(self._lib.lnn_rt_size(handle, 0))
        # The shape the runtime reads (its layout's, not the file's metadata).
        self.shape = tuple(int(self._lib.lnn_rt_size(handle, k)) for k in (1, 2, 3))
        # One step at a time: ctypes releases the GIL, and the runtime's scratch is per handle.
        self._step_lock = threading.Lock()

    def __del__(self) -> None:
        handle = getattr(self, "_handle", None)
        if handle:
            self._lib.lnn_rt_destroy(handle)
            self._handle = None

    def step(
        self,
        image: np.ndarray,
        dt: float,
        h: np.ndarray | None = None,
        imu: np.ndarray | None = None,
        goal: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``image``: uint8 ``[H, W, C]`` at the policy's input size (rows may be strided). Returns the
        command ``[vx, vy, vz, yaw_rate]`` and the new state (float32)."""
        height, width, channels = self.shape
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape != self.shape:
            raise NativeError(
                f"expected a uint8 [{height}, {width}, {channels}] image, got {image.dtype} {list(image.shape)}"
            )
        if image.strides[1:] != (channels, 1) or image.strides[0] < width * channels:
            image = np.ascontiguousarray(image)  # interleaved rows, top to bottom, as the runtime reads them
        extras = []
        for name, value, size in (("imu", imu, 6), ("goal", goal, 4)):
            if value is not None:
                value = np.ascontiguousarray(value, dtype=np.float32).reshape(-1)
                if value.size != size:
                    raise NativeError(f"{name} needs {size} values, got {value.size}")
            extras.append(value)
        if h is not None:
            h = np.ascontiguousarray(h, dtype=np.float32).reshape(-1)
            if h.size != self.state_size:
                raise NativeError(f"the state has {h.size} values, the core {self.state_size}")
        h_out = np.empty(self.state_size, dtype=np.float32)
        command = np.empty(4, dtype=np.float32)
        with self._step_lock:
            code = self._step(image, extras, h, dt, h_out, command)
        if code != 0:
            raise NativeError(self._lib.lnn_rt_last_error().decode())
        return command, h_out

    def _step(
        self, image: np.ndarray, extras: list, h: np.ndarray | None, dt: float, h_out: np.ndarray, command: np.ndarray
    ) -> int:
        return int(
            self._lib.lnn_rt_step(
                self._handle,
                _ptr(image),
                image.shape[0],
                image.shape[1],
                image.strides[0],
                _ptr(extras[0]),
                _ptr(extras[1]),
                _ptr(h),
                float(dt),
                _ptr(h_out),
                _ptr(command),
            )
        )
