"""Camera frames/s of our renderer beside PyBullet's TinyRenderer, same forest, same cameras.

    python benchmarks/sim_throughput.py [--quick] [--out FILE.md]

Both sides render the same E camera poses per batch at the same resolution
and field of view (RGB + depth), spread over the same number of worker
processes: ours is ``RenderPool`` (2 workers, and 1), PyBullet gets 2
processes each with its own DIRECT client calling ``getCameraImage`` with
``ER_TINY_RENDERER`` (no shadows, no segmentation mask). Ours also returns
segmentation and copies every image back to the caller; PyBullet's images
stay in its workers. Both favour PyBullet. Ratios are ours (2 workers) /
PyBullet (> 1: we are faster). Needs ``pip install -r requirements/bench.txt``.

    python benchmarks/sim_throughput.py --cuda [--out FILE.md]

Warp's CUDA path instead (a GPU machine; PyBullet not needed): frames/s of
the same renderer on ``cuda:0`` for batches up to 4096 cameras, images
copied back to the host included, beside one CPU core of the same machine
in the same run (``benchmarks/device_check.sh`` runs it when Warp is there).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import math
import multiprocessing as mp
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lnn_nav.sim.camera import CameraConfig, camera_pose
from lnn_nav.sim.world import MATERIAL_ID, WorldSpec

RESOLUTIONS = ((64, 48), (128, 96))


def forest_scene(seed: int = 0) -> WorldSpec:
    """About 600 trees over 100 x 60 m: the project's forest generator at 10 trees / 100 m²."""
    from lnn_nav.sim.forest import generate_forest

    return generate_forest(seed, density=10.0)


def camera_poses(world: WorldSpec, envs: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Body poses at 2 m over the forest with random headings (positions [E, 3], quaternions wxyz [E, 4])."""
    rng = np.random.default_rng(seed)
    x0, x1, y0, y1 = world.bounds
    pos = np.c_[rng.uniform(x0 + 10, x1 - 10, envs), rng.uniform(y0 + 10, y1 - 10, envs), np.full(envs, 2.0)]
    yaw = rng.uniform(-math.pi, math.pi, envs)
    quat = np.c_[np.cos(yaw / 2), np.zeros(envs), np.zeros(envs), np.sin(yaw / 2)]
    return pos, quat


# --------------------------------------------------------------------------- #
# PyBullet side
# --------------------------------------------------------------------------- #
def _pybullet_worker(conn: Any, world: WorldSpec) -> None:
    import pybullet as pb

    client = pb.connect(pb.DIRECT)
    colours = world.material_colours()

    def body(geom: int, material: int, position: Sequence[float], yaw: float = 0.0, **size: Any) -> None:
        shape = pb.createVisualShape(geom, rgbaColor=[*colours[material], 1.0], physicsClientId=client, **size)
        orn = pb.getQuaternionFromEuler([0.0, 0.0, yaw])
        pb.createMultiBody(0, -1, shape, position, orn, physicsClientId=client)

    for (x, y, z0, z1, r), m in zip(world.cylinders, world.cylinder_materials):
        body(pb.GEOM_CYLINDER, m, [x, y, (z0 + z1) / 2], radius=r, length=z1 - z0)
    for (x, y, z, r), m in zip(world.spheres, world.sphere_materials):
        body(pb.GEOM_SPHERE, m, [x, y, z], radius=r)
    for (cx, cy, cz, hx, hy, hz, yaw), m in zip(world.boxes, world.box_materials):
        body(pb.GEOM_BOX, m, [cx, cy, cz], yaw, halfExtents=[hx, hy, hz])
    body(pb.GEOM_BOX, MATERIAL_ID["ground"], [0, 0, -0.01], halfExtents=[500, 500, 0.01])
    conn.send("ready")
    while True:
        msg = conn.recv()
        if msg is None:
            break
        camera, origins, rotations = msg
        proj = pb.computeProjectionMatrixFOV(camera.vfov_deg, camera.width / camera.height, camera.near, camera.far)
        for o, r in zip(origins, rotations):
            # Optical z is the viewing direction, optical -y is up.
            view = pb.computeViewMatrix(o.tolist(), (o + r[:, 2]).tolist(), (-r[:, 1]).tolist())
            pb.getCameraImage(
                camera.width,
                camera.height,
                view,
                proj,
                renderer=pb.ER_TINY_RENDERER,
                shadow=0,
                flags=pb.ER_NO_SEGMENTATION_MASK,
                physicsClientId=client,
            )
        conn.send("done")
    pb.disconnect(client)


class PyBulletPool:
    """N processes, each a DIRECT client holding the scene; renders a batch split evenly across them."""

    def __init__(self, world: WorldSpec, processes: int) -> None:
        ctx = mp.get_context("spawn")
        self._conns, self._procs = [], []
        for _ in range(processes):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_pybullet_worker, args=(child, world), daemon=True)
            proc.start()
            self._conns.append(parent)
            self._procs.append(proc)
        for conn in self._conns:
            conn.recv()

    def render(self, camera: CameraConfig, positions: np.ndarray, quaternions: np.ndarray) -> None:
        origins, rotations = camera_pose(positions, quaternions, camera)
        chunks = np.array_split(np.arange(len(origins)), len(self._conns))
        active = [(conn, c) for conn, c in zip(self._conns, chunks) if len(c)]
        for conn, c in active:
            conn.send((camera, origins[c], rotations[c]))
        for conn, _ in active:
            conn.recv()

    def close(self) -> None:
        for conn in self._conns:
            conn.send(None)
        for proc in self._procs:
            proc.join(timeout=10)


# --------------------------------------------------------------------------- #
# Timing
# --------------------------------------------------------------------------- #
def frames_per_second(render: Callable[[], Any], envs: int, min_time: float) -> float:
    """Batches until ``min_time`` seconds have passed (at least one, after one warm-up)."""
    render()
    calls, start = 0, time.perf_counter()
    while True:
        render()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_time:
            return calls * envs / elapsed


def machine_line() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import pybullet  # noqa: F401 - fail early with the install hint below
    import warp as wp

    # Other work on the machine skews the 2-process columns first; the load says how much there was.
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{cpu}, {os.cpu_count()} cores (1-min load {load:.1f} at start), Python {platform.python_version()}, "
        f"warp {wp.__version__}, pybullet {importlib.metadata.version('pybullet')} (TinyRenderer)"
    )


def backend_line(world: WorldSpec, min_time: float) -> str:
    """On one core, 128x96, 16 envs: the C++ caster (the default on CPU), the Warp grid kernel it replaces
    (``LNN_NAV_REFERENCE_RENDER=1``, the same frames bit for bit) and the Warp mesh BVH, repeats interleaved."""
    from lnn_nav.sim import raycast
    from lnn_nav.sim.render import Renderer

    camera = CameraConfig()
    pos, quat = camera_poses(world, 16)
    renderers = {"cpp": Renderer(world, camera, device="cpu")}
    previous = raycast.reference_render()
    raycast.set_reference_render(True)
    try:
        renderers["warp"] = Renderer(world, camera, device="cpu")
        renderers["mesh"] = Renderer(world, camera, device="cpu", backend="mesh")
    finally:
        raycast.set_reference_render(previous)
    times: dict[str, list[float]] = {k: [] for k in renderers}
    for _ in range(3):
        for name, renderer in renderers.items():
            fps = frames_per_second(lambda: renderer.render(pos, quat), 16, min_time)  # noqa: B023 -- called within this iteration
            times[name].append(1e3 / fps)
    ms = {k: min(v) for k, v in times.items()}
    cpp = "C++ caster" if renderers["cpp"].uses_cpp else f"C++ caster unavailable ({raycast.build_error()}), Warp"
    return (
        f"One core, 128x96, best of 3: grid DDA, {cpp} {ms['cpp']:.2f} ms/frame, Warp kernel {ms['warp']:.2f} "
        f"ms/frame ({ms['warp'] / ms['cpp']:.2f}x); Warp mesh BVH {ms['mesh']:.2f} ms/frame"
    )


def run(envs_list: Sequence[int], min_time: float) -> tuple[str, list[dict[str, float]], str]:
    from lnn_nav.sim.render_pool import RenderPool

    world = forest_scene()
    x0, x1, y0, y1 = world.bounds
    scene = (
        f"Scene: forest seed 0, {len(world.cylinders)} cylinders + {len(world.spheres)} spheres + "
        f"{len(world.boxes)} boxes over {x1 - x0:.0f} x {y1 - y0:.0f} m, 90 deg hfov, cameras at 2 m, random headings"
    )
    rows: list[dict[str, float]] = []
    bullet = PyBulletPool(world, 2)
    try:
        for width, height in RESOLUTIONS:
            camera = CameraConfig(width=width, height=height)
            with (
                RenderPool(world, camera, workers=2, device="cpu") as pool2,
                RenderPool(world, camera, workers=1, device="cpu") as pool1,
            ):
                for envs in envs_list:
                    pos, quat = camera_poses(world, envs)
                    ours2 = frames_per_second(lambda: pool2.render(pos, quat), envs, min_time)  # noqa: B023 -- called within this iteration
                    ours1 = frames_per_second(lambda: pool1.render(pos, quat), envs, min_time)  # noqa: B023 -- called within this iteration
                    pyb = frames_per_second(lambda: bullet.render(camera, pos, quat), envs, min_time)  # noqa: B023 -- called within this iteration
                    rows.append(dict(width=width, height=height, envs=envs, ours2=ours2, ours1=ours1, pybullet=pyb))
                    print(format_row(rows[-1]), flush=True)
    finally:
        bullet.close()
    return scene, rows, backend_line(world, min_time)


def cuda_rows(envs_list: Sequence[int], min_time: float) -> list[str]:
    """Warp CUDA frames/s (images copied to the host each batch) beside one CPU core, same scene and poses."""
    from lnn_nav.sim.render import Renderer

    world = forest_scene()
    lines = []
    for width, height in RESOLUTIONS:
        camera = CameraConfig(width=width, height=height)
        gpu = Renderer(world, camera, device="cuda:0")
        cpu = Renderer(world, camera, device="cpu")
        for envs in envs_list:
            pos, quat = camera_poses(world, envs)
            ours_gpu = frames_per_second(lambda: gpu.render(pos, quat), envs, min_time)  # noqa: B023 -- called within this iteration
            cpu_envs = min(envs, 16)  # one core's rate is flat beyond a few envs; keeps the run short
            ours_cpu = frames_per_second(
                lambda: cpu.render(pos[:cpu_envs], quat[:cpu_envs]),  # noqa: B023 -- called within this iteration
                cpu_envs,
                min_time,
            )
            mrays = ours_gpu * width * height / 1e6
            lines.append(
                f"| {width}x{height} | {envs} | {ours_gpu:.0f} | {ours_cpu:.0f} | {ours_gpu / ours_cpu:.1f} "
                f"| {mrays:.0f} |"
            )
            print(lines[-1], flush=True)
    return lines


CUDA_HEAD = (
    "| resolution | E | Warp CUDA (fps) | Warp CPU, 1 core (fps) | ratio | CUDA Mrays/s |\n"
    "| --- | ---: | ---: | ---: | ---: | ---: |"
)


def cuda_main(out: Path | None, quick: bool) -> int:
    import warp as wp

    if wp.get_cuda_device_count() == 0:
        print("no CUDA device visible to Warp: nothing to measure", file=sys.stderr)
        return 1
    header = f"{wp.get_device('cuda:0').name}, warp {wp.__version__}, Python {platform.python_version()}"
    envs_list, min_time = ((1, 64, 1024), 0.3) if quick else ((1, 16, 64, 256, 1024, 4096), 1.0)
    print(header)
    print(CUDA_HEAD, flush=True)
    lines = cuda_rows(envs_list, min_time)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(
            f"Rendered frames/s (RGB + depth + segmentation), {header}\n\n" + "\n".join([CUDA_HEAD, *lines]) + "\n"
        )
    return 0


def env_steps(envs_list: Sequence[int], min_time: float) -> list[dict[str, float]]:
    """Full closed-loop env steps/s (physics at 400 Hz, collisions, IMU, 128x96 RGB+depth render).

    Zero commands (hover) so every env keeps flying for the whole timing; one env renders in its
    own process (as ``gym.make`` with ``render_workers=0``), more go through a 2-worker RenderPool.
    Beside each figure, the same run with the NumPy physics reference (``set_reference_physics``).
    """
    from lnn_nav.sim import physics_kernel
    from lnn_nav.sim.env import NavigationVectorEnv

    def rate(envs: int) -> float:
        workers = 0 if envs == 1 else 2
        env = NavigationVectorEnv(num_envs=envs, kind="forest", render_workers=workers, max_episode_time=1e6)
        try:
            env.reset(seed=0)
            actions = np.zeros((envs, 4))
            env.step(actions)
            steps, start = 0, time.perf_counter()
            while time.perf_counter() - start < min_time or steps < 3:
                env.step(actions)
                steps += 1
            return steps * envs / (time.perf_counter() - start)
        finally:
            env.close()

    rows = []
    previous = physics_kernel.reference_physics_forced()
    try:
        for envs in envs_list:
            physics_kernel.set_reference_physics(True)
            reference = rate(envs)
            physics_kernel.set_reference_physics(False)
            fast = rate(envs)
            rows.append({"envs": envs, "env_steps_per_s": fast, "reference": reference})
            print(env_row(rows[-1]), flush=True)
    finally:
        physics_kernel.set_reference_physics(previous)
    return rows


def env_row(r: dict[str, float]) -> str:
    fast, reference, envs = r["env_steps_per_s"], r["reference"], r["envs"]
    return f"| {envs} | {fast:.0f} | {reference:.0f} | {fast / reference:.1f} | {fast / 15.0 / envs:.1f} |"


ENV_HEAD = (
    "| E | env steps/s (all envs) | with the NumPy physics | ratio | real-time factor per env at 15 Hz |\n"
    "| ---: | ---: | ---: | ---: | ---: |"
)

TABLE_HEAD = (
    "| resolution | E | ours 2 workers (fps) | ours 1 worker (fps) | PyBullet 2 procs (fps) | ratio ours/PyBullet "
    "| ours Mrays/s/core | PyBullet Mrays/s/core |\n"
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
)


def format_row(r: dict[str, float]) -> str:
    per_core = r["width"] * r["height"] / 2 / 1e6  # Mrays/s per frame/s, over the 2 processes
    return (
        f"| {r['width']}x{r['height']} | {r['envs']} | {r['ours2']:.0f} | {r['ours1']:.0f} | {r['pybullet']:.0f} "
        f"| {r['ours2'] / r['pybullet']:.1f} | {r['ours2'] * per_core:.2f} | {r['pybullet'] * per_core:.2f} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run (~20 s): E = 1, 16 and short timings")
    parser.add_argument("--out", type=Path, help="also write the table to this markdown file")
    parser.add_argument("--cuda", action="store_true", help="Warp's CUDA renderer beside one CPU core (a GPU machine)")
    args = parser.parse_args(argv)
    import warp as wp

    wp.config.log_level = wp.LOG_WARNING  # no banners; the render workers inherit it
    if args.cuda:
        return cuda_main(args.out, args.quick)
    try:
        header = machine_line()
    except ImportError:
        print("pybullet is missing: pip install -r requirements/bench.txt", file=sys.stderr)
        return 1
    envs_list, min_time = ((1, 16), 0.3) if args.quick else ((1, 16, 64), 1.5)
    print(header)
    print(TABLE_HEAD, flush=True)
    scene, rows, backends = run(envs_list, min_time)
    print(scene)
    print(backends)
    print("\nFull env steps (forest, 128x96, physics 400 Hz, control 15 Hz):")
    print(ENV_HEAD, flush=True)
    env_rows = env_steps(envs_list, min_time)
    if args.out:
        table = "\n".join([TABLE_HEAD, *map(format_row, rows)])
        env_table = "\n".join([ENV_HEAD, *map(env_row, env_rows)])
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            f"Rendered frames/s (RGB + depth), {header}\n\n{table}\n\n{scene}. "
            f"Mrays/s/core: primary rays (pixels) per second over the 2 processes, / 2.\n\n{backends}\n\n"
            f"Full env steps (forest, 128x96, physics 400 Hz, control 15 Hz):\n\n{env_table}\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
