"""Batched RGB / depth / segmentation ray casting of world specs with NVIDIA Warp.

One Warp thread per (env, pixel) casts a primary ray against the world's
analytic primitives (vertical cylinders with caps, boxes rotated about z,
spheres) and the ground plane ``z = 0``, then shades the closest hit:
season-palette base colour x procedural texture x (ambient + Lambert sun),
exponential fog, a sky gradient with a dusk tint, emissive beacons.

Outputs per env: ``rgb`` uint8 ``[E, H, W, 3]`` (sRGB), ``depth`` float32
``[E, H, W]`` as **z-depth** (metres along the optical axis, not ray length;
no return within ``far`` reads ``far``), ``segmentation`` uint8 ``[E, H, W]``
(material id + 1, 0 = sky, see :data:`lnn_nav.sim.world.SEGMENTATION_CLASSES`).

Several worlds can be loaded at once and each env picks one by index (a
vector env whose envs sit in different worlds renders in one launch); all
envs share one :class:`~lnn_nav.sim.camera.CameraConfig`.

Acceleration (``backend``):

* ``"grid"`` (default): a uniform 2D grid over xy, built in NumPy and
  uploaded as CSR arrays (primitives stored in every cell their footprint
  overlaps), walked with a 2D DDA after clipping the ray to the grid's
  z-range; primitives are intersected exactly.
* ``"mesh"``: the same primitives tessellated into one ``wp.Mesh`` per world
  (Warp's BVH) queried with ``wp.mesh_query_ray``; normals and materials still
  come from the analytic primitive that owns the hit face, so only silhouettes
  and depth differ (facets, by up to ~3% of a radius).

On one CPU core (Xeon, 614 trunks + 1398 canopy/bush spheres, 128x96,
``benchmarks/sim_throughput.py``) the grid renders 2.1-2.7x faster than the
mesh BVH (4.8 ms vs 12.3 ms a frame in the quietest run), so it is the
default; the mesh path stays for comparison and for future mesh assets.

On CPU the grid path runs as C++ (:mod:`lnn_nav.sim.raycast`, built on first use):
the Warp kernel's frames bit for bit, 1.3-1.7x faster on one core; the Warp kernel
renders on CUDA, for the mesh backend, with ``LNN_NAV_REFERENCE_RENDER=1``, and
where no C++ compiler is found. Either runs a frame on one thread;
:class:`~lnn_nav.sim.render_pool.RenderPool` spreads envs over worker processes on
CPU and renders in-process on CUDA when present.

The code: the kernel and its device functions in :mod:`lnn_nav.sim.render_kernels`,
packing worlds into arrays (grids, meshes, lighting; NumPy only) in
:mod:`lnn_nav.sim.render_scene`, the CPU process pool in
:mod:`lnn_nav.sim.render_pool`; :class:`Renderer` here.
"""

from __future__ import annotations

import ctypes.util
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import warp as wp

from lnn_nav.sim import raycast
from lnn_nav.sim.camera import CameraConfig, camera_pose
from lnn_nav.sim.render_kernels import SRGB_STEPS, render_kernel
from lnn_nav.sim.render_scene import (
    RenderOutput,
    build_grid,
    default_cell_size,
    fog_colour_srgb,
    lighting,
    linear_to_srgb8,
    resolve_world_ids,
    tessellate,
)
from lnn_nav.sim.world import MATERIAL_ID, WorldSpec

__all__ = [
    "BACKENDS",
    "RenderOutput",
    "Renderer",
    "build_grid",
    "default_cell_size",
    "fog_colour_srgb",
    "init_warp",
    "linear_to_srgb8",
    "resolve_world_ids",
    "tessellate",
]

BACKENDS = ("grid", "mesh")


def init_warp() -> None:
    """``wp.init()``, quiet where no NVIDIA driver exists.

    Warp's C++ core prints "Warp CUDA warning: Could not find or load the NVIDIA CUDA driver" to stderr
    in every process that initialises it, the render workers included (a dozen lines per `make demo`).
    Where the loader finds no ``libcuda`` the warning only says that rendering runs on the CPU, which
    :attr:`Renderer.device` says too, so it is kept out of the output. ``LNN_NAV_WARP_VERBOSE=1`` shows it.
    """
    if ctypes.util.find_library("cuda") is not None or os.environ.get("LNN_NAV_WARP_VERBOSE"):
        wp.init()
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            wp.init()
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def default_device() -> str:
    return "cuda:0" if wp.get_cuda_device_count() > 0 else "cpu"


class Renderer:
    """Ray-casts RGB, z-depth and segmentation for a batch of envs on one Warp device.

    ``worlds``: one world or a list; env ``e`` renders ``worlds[world_ids[e]]``.
    Geometry is uploaded once (and again on :meth:`set_world`); a render call
    uploads only the camera poses. ``cell_size`` overrides the grid cell edge
    (m) for every world.
    """

    def __init__(
        self,
        worlds: WorldSpec | Sequence[WorldSpec],
        camera: CameraConfig | None = None,
        *,
        device: str | None = None,
        backend: str = "grid",
        cell_size: float | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown render backend '{backend}'; expected one of {', '.join(BACKENDS)}")
        init_warp()
        self.camera = camera or CameraConfig()
        self.device = device or default_device()
        self.backend = backend
        self.cell_size = cell_size
        self._worlds: list[WorldSpec] = [worlds] if isinstance(worlds, WorldSpec) else list(worlds)
        if not self._worlds:
            raise ValueError("Renderer needs at least one world")
        # Decided once: a renderer's frames come from one implementation for its whole life.
        self._caster = raycast.load() if backend == "grid" and wp.get_device(self.device).is_cpu else None
        # Columns of rays or the walk alone: fixed when the renderer is made (LNN_NAV_RAY_COLUMN).
        self._column_width = raycast.column_width()
        self._launches: dict[tuple[int, int, int], tuple[Any, dict[str, wp.array], dict[str, np.ndarray], Any]] = {}
        self._upload()

    @property
    def worlds(self) -> tuple[WorldSpec, ...]:
        return tuple(self._worlds)

    def set_world(self, index: int, world: WorldSpec) -> None:
        """Replace world ``index`` (a new episode's world, or new conditions) and re-upload."""
        if not 0 <= index < len(self._worlds):
            raise IndexError(f"world index {index} out of range for {len(self._worlds)} world(s)")
        self._worlds[index] = world
        self._upload()

    def _upload(self) -> None:
        prims: dict[str, list[np.ndarray]] = {k: [] for k in ("cyl", "box", "sph", "cyl_mat", "box_mat", "sph_mat")}
        grid_f, grid_i, grid_z, starts, items_all, items_z = [], [], [], [], [], []
        light: dict[str, list[np.ndarray]] = {}
        palettes = []
        meshes, mesh_ids, face_items = [], [], []
        n_cyl = n_box = n_sph = n_cells = n_items = n_faces = 0
        for world in self._worlds:
            c, b, s = world.cylinders, world.boxes, world.spheres
            prims["cyl"].append(c)
            prims["box"].append(np.c_[b[:, :6], np.cos(b[:, 6]), np.sin(b[:, 6])])
            prims["sph"].append(s)
            prims["cyl_mat"].append(world.cylinder_materials)
            prims["box_mat"].append(world.box_materials)
            prims["sph_mat"].append(world.sphere_materials)
            codes = np.concatenate(
                [
                    (n_cyl + np.arange(len(c))) * 4 + 0,
                    (n_box + np.arange(len(b))) * 4 + 1,
                    (n_sph + np.arange(len(s))) * 4 + 2,
                ]
            ).astype(np.int64)
            cs = self.cell_size or default_cell_size(world)
            (x0, y0, nx, ny), zr, start, items, item_z = build_grid(world, codes, cs)
            grid_f.append([x0, y0, cs, 1.0 / cs])
            grid_z.append(zr)
            grid_i.append([nx, ny, n_cells, n_faces, n_cyl, n_box, n_sph])
            starts.append((start[:-1] if nx else start[:0]) + n_items)
            items_all.append(items)
            items_z.append(item_z)
            n_cells += nx * ny
            n_items += len(items)
            if self.backend == "mesh":
                verts, tris, owner = tessellate(world)
                if len(tris):
                    mesh = wp.Mesh(
                        points=wp.array(verts.astype(np.float32), dtype=wp.vec3, device=self.device),
                        indices=wp.array(tris.reshape(-1), dtype=int, device=self.device),
                    )
                    meshes.append(mesh)
                    mesh_ids.append(mesh.id)
                    face_items.append(codes[owner])
                    n_faces += len(tris)
                else:
                    mesh_ids.append(0)
            n_cyl, n_box, n_sph = n_cyl + len(c), n_box + len(b), n_sph + len(s)
            for k, v in lighting(world).items():
                light.setdefault(k, []).append(v)
            palettes.append(world.material_colours())
        starts.append(np.array([n_items]))
        dev = self.device

        def arr(data: Any, dtype: Any, width: int = 0) -> wp.array:
            a = np.asarray(data, dtype=np.int32 if dtype is int else np.float32)
            if width:
                # Warp arrays cannot be empty of rows here: pad with an unused one.
                a = a.reshape(-1, width)
                if len(a) == 0:
                    a = np.zeros((1, width), a.dtype)
            elif a.size == 0:
                a = np.zeros(1, a.dtype)
            return wp.array(a, dtype=dtype, device=dev)

        self._arrays = {
            "grid_f": arr(grid_f, wp.vec4),
            "grid_i": arr(grid_i, int, 7),
            "grid_z": arr(grid_z, wp.vec2),
            "cell_start": arr(np.concatenate(starts), int),
            "cell_items": arr(np.concatenate(items_all), int),
            "cell_item_z": arr(np.concatenate(items_z), wp.vec2, 2),
            "mesh_ids": wp.array(
                np.asarray(mesh_ids or [0] * len(self._worlds), np.uint64), dtype=wp.uint64, device=dev
            ),
            "face_items": arr(np.concatenate(face_items) if face_items else [], int),
            "cyl": arr(np.concatenate(prims["cyl"]), float, 5),
            "box": arr(np.concatenate(prims["box"]), float, 8),
            "sph": arr(np.concatenate(prims["sph"]), float, 4),
            "cyl_mat": arr(np.concatenate(prims["cyl_mat"]), int),
            "box_mat": arr(np.concatenate(prims["box_mat"]), int),
            "sph_mat": arr(np.concatenate(prims["sph_mat"]), int),
            "palette": wp.array(np.stack(palettes).astype(np.float32), dtype=wp.vec3, device=dev),
            "srgb_lut": wp.array(linear_to_srgb8(np.linspace(0.0, 1.0, int(SRGB_STEPS))), dtype=wp.uint8, device=dev),
        }
        for k, per_world in light.items():
            self._arrays[k] = arr(np.stack(per_world), float if np.ndim(per_world[0]) == 0 else wp.vec3)
        self._meshes = meshes  # the BVHs live as long as their ids are in use
        self._launches = {}  # recorded launches point at the old arrays
        self._cpp_arrays: dict[str, np.ndarray] | None = None

    def render(
        self,
        positions: np.ndarray,
        quaternions: np.ndarray,
        world_ids: np.ndarray | None = None,
        out: RenderOutput | None = None,
        rows: tuple[int, int] | None = None,
    ) -> RenderOutput:
        """Render E envs from body poses: ``positions [E, 3]`` (world, m), ``quaternions [E, 4]`` (w, x, y, z,
        body FLU -> world ENU), ``world_ids [E]`` (default: world 0 with one world, env i -> world i with
        one world per env; see :func:`resolve_world_ids`). ``out`` receives the images if given.
        ``rows=(v0, v1)``: only image rows v0..v1-1, the same pixels as in the whole frame (the images
        returned, or expected in ``out``, are v1 - v0 rows high): how a pool splits one env's frame."""
        origins, rotations = camera_pose(positions, quaternions, self.camera)
        return self.render_cameras(origins, rotations, world_ids, out, rows)

    def render_cameras(
        self,
        origins: np.ndarray,
        rotations: np.ndarray,
        world_ids: np.ndarray | None = None,
        out: RenderOutput | None = None,
        rows: tuple[int, int] | None = None,
    ) -> RenderOutput:
        """Render from camera poses (:func:`~lnn_nav.sim.camera.camera_pose`): ``origins [E, 3]``,
        rotations world <- optical ``[E, 3, 3]``; ``rows`` as in :meth:`render`."""
        origins = np.asarray(origins, np.float32).reshape(-1, 3)
        envs = len(origins)
        ids = resolve_world_ids(world_ids, envs, len(self._worlds))
        band = (0, self.camera.height) if rows is None else (int(rows[0]), int(rows[1]))
        if not 0 <= band[0] < band[1] <= self.camera.height:
            raise ValueError(f"rows must be (v0, v1) with 0 <= v0 < v1 <= {self.camera.height}, got {rows}")
        if envs == 0:
            return out if out is not None else RenderOutput.empty(0, self.camera)
        launch, buffers, views, cpp = self._launch_for(envs, band)
        inputs = (origins, np.asarray(rotations, np.float32).reshape(-1, 3, 3), ids)
        for name, value in zip(("origins", "rotations", "world_ids"), inputs):
            if views:
                views[name][...] = value  # CPU: write through a cached view, cheaper than assign()
            else:
                buffers[name].assign(value)
        if cpp is not None and self._caster is not None:
            self._caster.rc_render(ctypes.byref(cpp), 0, band[1] - band[0])
        else:
            launch.launch()
        names = ("rgb", "depth", "segmentation")
        images = [views[name] for name in names] if views else [buffers[name].numpy() for name in names]
        if out is None:
            if views:
                images = [im.copy() for im in images]  # the views are overwritten by the next call
            return RenderOutput(*images)
        for target, im in zip((out.rgb, out.depth, out.segmentation), images):
            target[...] = im
        return out

    @property
    def uses_cpp(self) -> bool:
        """Whether frames come from the C++ caster (CPU, grid backend, built, not switched off when made)."""
        return self._caster is not None

    def _launch_for(
        self, envs: int, band: tuple[int, int] | None = None
    ) -> tuple[Any, dict[str, wp.array], dict[str, np.ndarray], Any]:
        """A recorded kernel launch for ``envs`` envs (image rows ``band``, default all), its pose/image buffers,
        on CPU NumPy views of them, and the C++ caster's arguments where it renders (else None).

        Packing ~30 kernel arguments costs a few hundred microseconds a call,
        as much as rendering a small frame; a recorded launch skips it.
        """
        cam, dev, a = self.camera, self.device, self._arrays
        v0, v1 = band if band is not None else (0, cam.height)
        key = (envs, v0, v1)
        cached = self._launches.get(key)
        if cached is not None:
            return cached
        h, w = v1 - v0, cam.width
        buffers = {
            "origins": wp.zeros(envs, dtype=wp.vec3, device=dev),
            "rotations": wp.zeros(envs, dtype=wp.mat33, device=dev),
            "world_ids": wp.zeros(envs, dtype=int, device=dev),
            "rgb": wp.zeros((envs, h, w, 3), dtype=wp.uint8, device=dev),
            "depth": wp.zeros((envs, h, w), dtype=float, device=dev),
            "segmentation": wp.zeros((envs, h, w), dtype=wp.uint8, device=dev),
        }
        fx, fy, cx, cy = cam.intrinsics()
        # Rows v0.. of the frame: the principal point moves up by v0 (small integers and halves, exact in
        # float32, so every ray is the whole frame's to the bit).
        cy -= v0
        launch = wp.launch(
            render_kernel,
            dim=(envs, h, w),
            inputs=[
                buffers["origins"],
                buffers["rotations"],
                buffers["world_ids"],
                wp.vec4(fx, fy, cx, cy),
                float(cam.near),
                float(cam.far),
                int(self.backend == "mesh"),
                a["grid_f"],
                a["grid_i"],
                a["grid_z"],
                a["cell_start"],
                a["cell_items"],
                a["cell_item_z"],
                a["mesh_ids"],
                a["face_items"],
                a["cyl"],
                a["box"],
                a["sph"],
                a["cyl_mat"],
                a["box_mat"],
                a["sph_mat"],
                a["palette"],
                a["sky_zenith"],
                a["sky_horizon"],
                a["sky_glow"],
                a["sun_dir"],
                a["sun_rgb"],
                a["ambient"],
                a["fog_density"],
                a["fog_colour"],
                a["srgb_lut"],
                buffers["rgb"],
                buffers["depth"],
                buffers["segmentation"],
            ],
            device=dev,
            record_cmd=True,
        )
        views = {k: b.numpy() for k, b in buffers.items()} if wp.get_device(dev).is_cpu else {}
        cpp = self._cpp_args(envs, h, (fx, fy, cx, cy), views) if self.uses_cpp else None
        self._launches[key] = (launch, buffers, views, cpp)
        return launch, buffers, views, cpp

    def _cpp_scene(self) -> dict[str, np.ndarray]:
        """Host views of the uploaded scene plus each cell's items by height, made once per upload: every
        recorded launch's arguments point into these arrays, which live as long as the upload."""
        scene = self._cpp_arrays
        if scene is None:
            scene = {k: a.numpy() for k, a in self._arrays.items() if k not in ("mesh_ids", "face_items")}
            scene.update(
                raycast.sorted_cells(
                    scene["cell_start"],
                    scene["cell_items"],
                    scene["cell_item_z"],
                    scene["cyl"],
                    scene["box"],
                    scene["sph"],
                )
            )
            scene.update(
                raycast.world_items(
                    scene["grid_i"], scene["cell_start"], scene["cell_items"], scene["cyl"], scene["box"], scene["sph"]
                )
            )
            if set(scene) != raycast.SCENE_FIELDS:  # a field left out would be a null pointer in C++
                raise RuntimeError(f"ray caster scene mismatch: {sorted(set(scene) ^ raycast.SCENE_FIELDS)}")
            self._cpp_arrays = scene
        return scene

    def _cpp_args(
        self, envs: int, height: int, intrinsics: tuple[float, float, float, float], views: dict[str, np.ndarray]
    ) -> raycast.RcArgs:
        """The C++ caster's arguments: the same host buffers the Warp launch reads and writes."""
        scene = self._cpp_scene()
        ptr = raycast.pointer
        fx, fy, cx, cy = intrinsics
        ids = {f"mat_{name}": MATERIAL_ID[name] for name in ("ground", "bark", "leaves", "undergrowth")}
        ids.update({f"mat_{name}": MATERIAL_ID[name] for name in ("concrete", "glass", "beacon")})
        return raycast.RcArgs(
            cam_origin=ptr(views["origins"]),
            cam_rot=ptr(views["rotations"]),
            env_world=ptr(views["world_ids"]),
            envs=envs,
            height=height,
            width=self.camera.width,
            fx=fx,
            fy=fy,
            cx=cx,
            cy=cy,
            near_=float(self.camera.near),
            far_=float(self.camera.far),
            rgb=ptr(views["rgb"]),
            depth=ptr(views["depth"]),
            seg=ptr(views["segmentation"]),
            materials=int(scene["palette"].shape[1]),
            srgb_steps=int(SRGB_STEPS),
            column_width=self._column_width,
            **{k: ptr(v) for k, v in scene.items()},
            **ids,
        )
