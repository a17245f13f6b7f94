"""Packing worlds for the renderer, in NumPy: grids, meshes, lighting constants (no Warp here).

:func:`build_grid` bins primitives into a uniform xy grid (CSR arrays),
:func:`tessellate` turns them into one triangle mesh, :func:`lighting` gives
a world's sky, sun and fog constants; :class:`RenderOutput` is what a render
returns. Usable without Warp (e.g. the fog colour for an exported SDF world).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lnn_nav.sim.camera import CameraConfig
from lnn_nav.sim.world import WorldSpec

# Sky and light tints (linear RGB) for low sun.
_DUSK_HORIZON = np.array([1.0, 0.55, 0.32])
_DUSK_ZENITH = np.array([0.30, 0.32, 0.52])
_DUSK_SUNLIGHT = np.array([1.0, 0.72, 0.48])


@dataclass
class RenderOutput:
    """One batch of images: ``rgb`` ``[E, H, W, 3]`` uint8, ``depth`` ``[E, H, W]`` float32 z-depth (m),
    ``segmentation`` ``[E, H, W]`` uint8 (material id + 1, 0 = sky)."""

    rgb: np.ndarray
    depth: np.ndarray
    segmentation: np.ndarray

    @classmethod
    def empty(cls, envs: int, camera: CameraConfig) -> RenderOutput:
        h, w = camera.height, camera.width
        return cls(
            np.empty((envs, h, w, 3), np.uint8), np.empty((envs, h, w), np.float32), np.empty((envs, h, w), np.uint8)
        )


def _footprints(world: WorldSpec) -> np.ndarray:
    """Axis-aligned bounds ``[P, 6]`` (x0, x1, y0, y1, z0, z1) of cylinders, then boxes, then spheres."""
    c, b, s = world.cylinders, world.boxes, world.spheres
    cyl = np.stack([c[:, 0] - c[:, 4], c[:, 0] + c[:, 4], c[:, 1] - c[:, 4], c[:, 1] + c[:, 4], c[:, 2], c[:, 3]], 1)
    ex = np.abs(b[:, 3] * np.cos(b[:, 6])) + np.abs(b[:, 4] * np.sin(b[:, 6]))
    ey = np.abs(b[:, 3] * np.sin(b[:, 6])) + np.abs(b[:, 4] * np.cos(b[:, 6]))
    box = np.stack([b[:, 0] - ex, b[:, 0] + ex, b[:, 1] - ey, b[:, 1] + ey, b[:, 2] - b[:, 5], b[:, 2] + b[:, 5]], 1)
    r = s[:, 3]
    sph = np.stack([s[:, 0] - r, s[:, 0] + r, s[:, 1] - r, s[:, 1] + r, s[:, 2] - r, s[:, 2] + r], 1)
    return np.concatenate([cyl.reshape(-1, 6), box.reshape(-1, 6), sph.reshape(-1, 6)])


def default_cell_size(world: WorldSpec) -> float:
    """Grid cell edge (m): about one primitive footprint per cell, in [0.5, 16] m."""
    fp = _footprints(world)
    if len(fp) == 0:
        return 1.0
    area = float((fp[:, 1].max() - fp[:, 0].min()) * (fp[:, 3].max() - fp[:, 2].min()))
    return float(np.clip(math.sqrt(max(area, 1e-6) / len(fp)), 0.5, 16.0))


def build_grid(
    world: WorldSpec, items: np.ndarray, cell_size: float
) -> tuple[tuple[float, float, int, int], tuple[float, float], np.ndarray, np.ndarray, np.ndarray]:
    """Uniform xy grid over the primitives' footprints, as CSR.

    ``items[j]`` is the code stored for primitive ``j`` (cylinders, boxes,
    spheres order). Returns ``(x0, y0, nx, ny)``, the z-range, ``cell_start``
    ``[nx * ny + 1]``, ``cell_items`` and their z-ranges ``cell_item_z``
    ``[len(cell_items), 2]``: cell ``iy * nx + ix`` holds
    ``cell_items[cell_start[c]:cell_start[c + 1]]``.
    """
    fp = _footprints(world)
    if len(fp) == 0:
        return (0.0, 0.0, 0, 0), (0.0, 0.0), np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros((0, 2))
    pad = 1e-3
    x0, y0 = fp[:, 0].min() - pad, fp[:, 2].min() - pad
    nx = max(1, int(math.ceil((fp[:, 1].max() + pad - x0) / cell_size)))
    ny = max(1, int(math.ceil((fp[:, 3].max() + pad - y0) / cell_size)))
    ix0 = np.clip(np.floor((fp[:, 0] - x0) / cell_size).astype(np.int64), 0, nx - 1)
    ix1 = np.clip(np.floor((fp[:, 1] - x0) / cell_size).astype(np.int64), 0, nx - 1)
    iy0 = np.clip(np.floor((fp[:, 2] - y0) / cell_size).astype(np.int64), 0, ny - 1)
    iy1 = np.clip(np.floor((fp[:, 3] - y0) / cell_size).astype(np.int64), 0, ny - 1)
    wx = ix1 - ix0 + 1
    counts = wx * (iy1 - iy0 + 1)
    owner = np.repeat(np.arange(len(fp)), counts)
    k = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    cells = (iy0[owner] + k // wx[owner]) * nx + ix0[owner] + k % wx[owner]
    order = np.argsort(cells, kind="stable")
    cell_start = np.zeros(nx * ny + 1, np.int64)
    cell_start[1:] = np.cumsum(np.bincount(cells, minlength=nx * ny))
    zrange = (float(fp[:, 4].min()) - pad, float(fp[:, 5].max()) + pad)
    stored = owner[order]
    return (float(x0), float(y0), nx, ny), zrange, cell_start, items[stored].astype(np.int32), fp[stored, 4:6]


def tessellate(world: WorldSpec, segments: int = 12, rings: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Triangle mesh of the primitives: vertices ``[V, 3]``, triangles ``[F, 3]`` and the owning primitive
    ``[F]`` (index in cylinders, boxes, spheres order)."""
    verts: list[np.ndarray] = []
    tris: list[np.ndarray] = []
    owners: list[np.ndarray] = []
    count = 0

    def add(v: np.ndarray, f: np.ndarray, owner: int) -> None:
        nonlocal count
        verts.append(v)
        tris.append(f + count)
        owners.append(np.full(len(f), owner))
        count += len(v)

    a = np.linspace(0.0, 2.0 * np.pi, segments, endpoint=False)
    ring = np.stack([np.cos(a), np.sin(a)], 1)
    j = np.arange(segments)
    jn = (j + 1) % segments
    side = np.concatenate([np.stack([j, jn, segments + jn], 1), np.stack([j, segments + jn, segments + j], 1)])
    bottom_centre, top_centre = 2 * segments, 2 * segments + 1
    caps = np.concatenate(
        [
            np.stack([np.full(segments, bottom_centre), jn, j], 1),
            np.stack([np.full(segments, top_centre), segments + j, segments + jn], 1),
        ]
    )
    cyl_faces = np.concatenate([side, caps])
    for p, (x, y, z0, z1, r) in enumerate(world.cylinders):
        xy = np.array([x, y]) + r * ring
        rims = [np.c_[xy, np.full(segments, z0)], np.c_[xy, np.full(segments, z1)]]
        v = np.concatenate([*rims, [[x, y, z0], [x, y, z1]]])
        add(v, cyl_faces, p)
    corners = np.array([[sx, sy, sz] for sz in (-1, 1) for sy in (-1, 1) for sx in (-1, 1)], float)
    # fmt: off
    # Kept as a grid (the formatter would put one triangle per line): each pair of triangles is one cube
    # face, -z, +z, -y on the first row and +y, -x, +x on the second.
    box_faces = np.array(
        [[0, 2, 1], [1, 2, 3], [4, 5, 6], [5, 7, 6], [0, 1, 4], [1, 5, 4],
         [2, 6, 3], [3, 6, 7], [0, 4, 2], [2, 4, 6], [1, 3, 5], [3, 7, 5]]
    )
    # fmt: on
    offset = len(world.cylinders)
    for p, (cx, cy, cz, hx, hy, hz, yaw) in enumerate(world.boxes):
        local = corners * [hx, hy, hz]
        c, s = math.cos(yaw), math.sin(yaw)
        v = np.c_[cx + c * local[:, 0] - s * local[:, 1], cy + s * local[:, 0] + c * local[:, 1], cz + local[:, 2]]
        add(v, box_faces, offset + p)
    theta = np.linspace(0.0, np.pi, rings + 1)[1:-1]
    unit = np.concatenate(
        [
            [[0, 0, 1]],
            np.stack(
                [
                    np.outer(np.sin(theta), np.cos(a)),
                    np.outer(np.sin(theta), np.sin(a)),
                    np.outer(np.cos(theta), np.ones(segments)),
                ],
                -1,
            ).reshape(-1, 3),
            [[0, 0, -1]],
        ]
    )
    faces = [[0, 1 + jn[k], 1 + k] for k in range(segments)]
    for r_ in range(rings - 2):
        top, bot = 1 + r_ * segments, 1 + (r_ + 1) * segments
        for k in range(segments):
            faces += [[top + k, top + jn[k], bot + k], [top + jn[k], bot + jn[k], bot + k]]
    last = len(unit) - 1
    faces += [[last, 1 + (rings - 2) * segments + k, 1 + (rings - 2) * segments + jn[k]] for k in range(segments)]
    sph_faces = np.array(faces)
    offset += len(world.boxes)
    for p, (x, y, z, r) in enumerate(world.spheres):
        add(np.array([x, y, z]) + r * unit, sph_faces, offset + p)
    if not verts:
        return np.zeros((0, 3)), np.zeros((0, 3), np.int32), np.zeros(0, np.int64)
    return np.concatenate(verts), np.concatenate(tris).astype(np.int32), np.concatenate(owners)


def lighting(world: WorldSpec) -> dict[str, np.ndarray]:
    """Per-world sky, sun and fog constants (linear RGB) from its conditions."""
    cond = world.conditions
    sun, intensity = cond.sun()
    zenith = np.asarray(world.palette["sky"], float)
    horizon = zenith + (1.0 - zenith) * 0.45
    # Sun elevation under ~20 deg (sin 0.35) turns the horizon orange and the light warm.
    dusk = float(np.clip((0.35 - sun[2]) / 0.3, 0.0, 1.0))
    horizon = horizon + (_DUSK_HORIZON - horizon) * 0.55 * dusk
    zenith = zenith + (_DUSK_ZENITH - zenith) * 0.35 * dusk
    brightness = 0.4 + 0.6 * intensity
    tint = np.ones(3) + (_DUSK_SUNLIGHT - 1.0) * dusk
    return {
        "sky_zenith": zenith * brightness,
        "sky_horizon": horizon * brightness,
        "sky_glow": np.array([0.45, 0.22, 0.06]) * dusk * brightness,
        "sun_dir": sun,
        "sun_rgb": tint * 0.75 * intensity,
        "ambient": np.array(0.25 + 0.2 * intensity),
        "fog_density": np.array(cond.fog_density),
        "fog_colour": horizon * brightness,
    }


def linear_to_srgb8(linear: np.ndarray) -> np.ndarray:
    """Linear intensities in [0, 1] to 8-bit display values (gamma 2.2), as the renderer writes them."""
    return (np.clip(linear, 0.0, 1.0) ** (1.0 / 2.2) * 255.0 + 0.5).astype(np.uint8)


def fog_colour_srgb(world: WorldSpec) -> np.ndarray:
    """The colour fogged distances converge to, as uint8 sRGB."""
    return linear_to_srgb8(lighting(world)["fog_colour"])


def resolve_world_ids(world_ids: np.ndarray | None, envs: int, worlds: int) -> np.ndarray:
    """Which world each env renders: as given, else all world 0 (one world) or env i -> world i (one per env)."""
    if world_ids is None:
        if worlds == 1:
            return np.zeros(envs, np.int32)
        if worlds == envs:
            return np.arange(envs, dtype=np.int32)
        raise ValueError(f"{envs} envs and {worlds} worlds: pass world_ids to say which env renders which world")
    ids = np.asarray(world_ids, np.int32).reshape(-1)
    if len(ids) != envs:
        raise ValueError(f"{envs} camera poses but {len(ids)} world ids")
    if envs and (ids.min() < 0 or ids.max() >= worlds):
        raise ValueError(f"world ids must be in [0, {worlds}), got {ids.min()}..{ids.max()}")
    return ids
