"""A process pool for CPU rendering: Warp runs a CPU kernel on one thread, so envs are spread over processes.

Each worker owns one CPU :class:`~lnn_nav.sim.render.Renderer`; poses go in
and images come out through one shared-memory block, so a frame is never
pickled. On CUDA, :class:`RenderPool` renders in-process.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import time
import traceback
from collections.abc import Sequence
from multiprocessing import shared_memory
from typing import Any, cast

import numpy as np
import warp as wp

from lnn_nav.sim.camera import CameraConfig
from lnn_nav.sim.render import BACKENDS, Renderer, RenderOutput, default_device, init_warp
from lnn_nav.sim.render_scene import resolve_world_ids
from lnn_nav.sim.world import WorldSpec

_Layout = dict[str, tuple[int, tuple[int, ...], np.dtype]]


def _layout(capacity: int, camera: CameraConfig) -> _Layout:
    """Offsets of the shared-memory arrays (inputs, then outputs), 64-byte aligned."""
    h, w = camera.height, camera.width
    specs = [
        ("positions", (capacity, 3), np.float64),
        ("quaternions", (capacity, 4), np.float64),
        ("world_ids", (capacity,), np.int32),
        ("rgb", (capacity, h, w, 3), np.uint8),
        ("depth", (capacity, h, w), np.float32),
        ("segmentation", (capacity, h, w), np.uint8),
    ]
    layout, offset = {}, 0
    for name, shape, dtype in specs:
        layout[name] = (offset, shape, np.dtype(dtype))
        offset += -(-int(np.prod(shape)) * np.dtype(dtype).itemsize // 64) * 64
    layout["_size"] = (offset, (), np.dtype(np.uint8))
    return layout


def _views(shm: shared_memory.SharedMemory, layout: _Layout) -> dict[str, np.ndarray]:
    return {
        name: np.ndarray(shape, dtype, buffer=shm.buf, offset=off)
        for name, (off, shape, dtype) in layout.items()
        if name != "_size"
    }


_INHERITED_WARP_CONFIG = ("kernel_cache_dir", "log_level", "mode")


def _worker_main(conn: Any, setup_name: str) -> None:
    """Worker process: owns one CPU Renderer and renders env slices into shared memory on request."""
    shm: shared_memory.SharedMemory | None = None
    views: dict[str, np.ndarray] = {}
    try:
        setup = shared_memory.SharedMemory(name=setup_name)
        try:
            # buf is None only after close()
            worlds, camera, backend, cell_size, warp_config = pickle.loads(cast(memoryview, setup.buf))
        finally:
            setup.close()
        cache = warp_config.pop("kernel_cache_dir")
        if cache is not None and os.path.basename(cache) == wp.config.version:
            # After init the parent's setting reads <base>/<version>; init appends the version again.
            cache = os.path.dirname(cache)
        wp.config.kernel_cache_dir = cache
        for key, value in warp_config.items():
            setattr(wp.config, key, value)
        renderer = Renderer(worlds, camera, device="cpu", backend=backend, cell_size=cell_size)
        # Load (or compile) the kernel now, so the first real call is not slow.
        renderer.render(np.array([[0.0, 0.0, 1.0]]), np.array([[1.0, 0.0, 0.0, 0.0]]), world_ids=np.zeros(1))
        conn.send(("ok", None))
    except Exception:  # noqa: BLE001 - the parent re-raises it with the traceback
        conn.send(("error", traceback.format_exc()))
        return
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            break
        cmd = msg[0]
        if cmd == "close":
            break
        try:
            if cmd == "attach":
                views = {}
                if shm is not None:
                    shm.close()
                shm = shared_memory.SharedMemory(name=msg[1])
                views = _views(shm, _layout(msg[2], camera))
            elif cmd == "render":
                lo, hi, v0, v1 = msg[1], msg[2], msg[3], msg[4]  # envs lo..hi, image rows v0..v1
                rows = (slice(lo, hi), slice(v0, v1))
                out = RenderOutput(views["rgb"][rows], views["depth"][rows], views["segmentation"][rows])
                renderer.render(
                    views["positions"][lo:hi], views["quaternions"][lo:hi], views["world_ids"][lo:hi], out, (v0, v1)
                )
            elif cmd == "world":
                renderer.set_world(msg[1], msg[2])
            conn.send(("ok", None))
        except Exception:  # noqa: BLE001
            conn.send(("error", traceback.format_exc()))
    views = {}
    if shm is not None:
        shm.close()
    conn.close()


class RenderPool:
    """Batched rendering across processes on CPU (Warp runs a CPU kernel on one thread).

    Envs are split into contiguous slices, one per worker process (with fewer
    envs than workers, each frame's rows are split instead); each worker
    holds its own Warp arrays and writes into shared memory, so no image is
    pickled. With ``workers <= 1``, or on CUDA, rendering happens in-process.
    Use as a context manager or call :meth:`close`. Workers are spawned
    processes, so a script that builds a pool must guard its entry point
    with ``if __name__ == "__main__":``.
    """

    def __init__(
        self,
        worlds: WorldSpec | Sequence[WorldSpec],
        camera: CameraConfig | None = None,
        workers: int = 2,
        *,
        device: str | None = None,
        backend: str = "grid",
        cell_size: float | None = None,
        start_method: str = "spawn",
        startup_timeout: float = 300.0,
    ) -> None:
        self.camera = camera or CameraConfig()
        self._worlds = [worlds] if isinstance(worlds, WorldSpec) else list(worlds)
        init_warp()
        self.device = device or default_device()
        self._local: Renderer | None = None
        self._procs: list[Any] = []
        self._conns: list[Any] = []
        self._shm: shared_memory.SharedMemory | None = None
        self._views: dict[str, np.ndarray] = {}
        self._capacity = 0
        if workers <= 1 or not wp.get_device(self.device).is_cpu:
            self._local = Renderer(self._worlds, self.camera, device=self.device, backend=backend, cell_size=cell_size)
            self.workers = 1
            return
        if backend not in BACKENDS:
            raise ValueError(f"unknown render backend '{backend}'; expected one of {', '.join(BACKENDS)}")
        self.workers = workers
        ctx = mp.get_context(start_method)
        # The worlds reach the workers through shared memory, not as Process
        # arguments: spawn writes those into a pipe the child reads only after
        # importing the caller's main module, and a large write would block
        # forever if that import failed or hung.
        # Workers share the parent's kernel cache (no second compile) and verbosity.
        warp_config = {key: getattr(wp.config, key) for key in _INHERITED_WARP_CONFIG}
        payload = pickle.dumps((self._worlds, self.camera, backend, cell_size, warp_config))
        setup = shared_memory.SharedMemory(create=True, size=len(payload))
        cast(memoryview, setup.buf)[: len(payload)] = payload  # buf is None only after close()
        try:
            for _ in range(workers):
                parent, child = ctx.Pipe()
                # typeshed's BaseContext (get_context of a str) lacks Process; every concrete context has it.
                proc = ctx.Process(target=_worker_main, args=(child, setup.name), daemon=True)  # type: ignore[attr-defined]
                proc.start()
                child.close()
                self._procs.append(proc)
                self._conns.append(parent)
            self._wait(range(workers), timeout=startup_timeout)
        except BaseException:
            self.close()
            raise
        finally:
            setup.close()
            setup.unlink()

    @property
    def worlds(self) -> tuple[WorldSpec, ...]:
        return tuple(self._worlds)

    def _wait(self, indices: Sequence[int], timeout: float | None = None) -> None:
        """Collect one reply from each worker; a dead or silent worker closes the pool."""
        errors = []
        deadline = None if timeout is None else time.monotonic() + timeout
        for i in indices:
            conn, proc = self._conns[i], self._procs[i]
            problem = None
            while problem is None and not conn.poll(0.5):
                if not proc.is_alive():
                    problem = f"exited with code {proc.exitcode}"
                elif deadline is not None and time.monotonic() > deadline:
                    problem = f"did not start within {timeout:.0f} s"
            if problem is None:
                try:
                    status, detail = conn.recv()
                except EOFError:
                    problem = "closed its pipe"
            if problem is not None:
                self.close()
                raise RuntimeError(
                    f"render worker {i} {problem}; workers are spawned, so a script that runs work at "
                    "import time must guard its entry point with `if __name__ == '__main__':`"
                )
            if status != "ok":
                errors.append(f"render worker {i} failed:\n{detail}")
        if errors:
            raise RuntimeError("\n".join(errors))

    def _ensure_capacity(self, envs: int) -> None:
        if envs <= self._capacity:
            return
        capacity = max(envs, 2 * self._capacity)
        layout = _layout(capacity, self.camera)
        shm = shared_memory.SharedMemory(create=True, size=layout["_size"][0])
        for conn in self._conns:
            conn.send(("attach", shm.name, capacity))
        self._wait(range(len(self._conns)))
        self._release_shm()
        self._shm, self._views, self._capacity = shm, _views(shm, layout), capacity

    def _release_shm(self) -> None:
        self._views = {}
        if self._shm is not None:
            self._shm.close()
            self._shm.unlink()
            self._shm = None

    def set_world(self, index: int, world: WorldSpec) -> None:
        """Replace world ``index`` in every worker."""
        if not 0 <= index < len(self._worlds):
            raise IndexError(f"world index {index} out of range for {len(self._worlds)} world(s)")
        self._worlds[index] = world
        if self._local is not None:
            self._local.set_world(index, world)
            return
        for conn in self._conns:
            conn.send(("world", index, world))
        self._wait(range(len(self._conns)))

    def render(
        self, positions: np.ndarray, quaternions: np.ndarray, world_ids: np.ndarray | None = None
    ) -> RenderOutput:
        """Same contract as :meth:`Renderer.render`; the arrays returned are the caller's to keep."""
        if self._local is not None:
            return self._local.render(positions, quaternions, world_ids)
        if not self._conns:
            raise RuntimeError("RenderPool is closed")
        pos = np.asarray(positions, np.float64).reshape(-1, 3)
        quat = np.asarray(quaternions, np.float64).reshape(-1, 4)
        envs = len(pos)
        if len(quat) != envs:
            raise ValueError(f"{envs} positions but {len(quat)} quaternions")
        ids = resolve_world_ids(world_ids, envs, len(self._worlds))
        if envs == 0:
            return RenderOutput.empty(0, self.camera)
        self._ensure_capacity(envs)
        v = self._views
        v["positions"][:envs], v["quaternions"][:envs], v["world_ids"][:envs] = pos, quat, ids
        height = self.camera.height
        if envs < self.workers:
            # Fewer envs than workers (one env, as gym.make flies): every worker renders a band of
            # rows of every frame, so all cores work on it.
            bands = np.linspace(0, height, min(self.workers, height) + 1).round().astype(int)
            jobs = [(0, envs, int(bands[i]), int(bands[i + 1])) for i in range(len(bands) - 1)]
        else:
            bounds = np.linspace(0, envs, self.workers + 1).round().astype(int)
            jobs = [(int(bounds[i]), int(bounds[i + 1]), 0, height) for i in range(len(bounds) - 1)]
        active = range(len(jobs))
        for i in active:
            self._conns[i].send(("render", *jobs[i]))
        self._wait(active)
        return RenderOutput(v["rgb"][:envs].copy(), v["depth"][:envs].copy(), v["segmentation"][:envs].copy())

    def close(self) -> None:
        """Stop the workers and free the shared memory; safe to call twice."""
        for conn in self._conns:
            try:
                conn.send(("close",))
            except (BrokenPipeError, OSError):
                pass
        for proc in self._procs:
            proc.join(timeout=5.0)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5.0)
        for conn in self._conns:
            conn.close()
        self._conns, self._procs = [], []
        self._release_shm()
        self._local = None

    def __enter__(self) -> RenderPool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_procs", None) or getattr(self, "_shm", None) is not None:
            try:
                self.close()
            except Exception:  # noqa: BLE001 - at interpreter exit the modules close() needs may be gone
                pass
