"""Signed distances to a world's obstacles and the per-step collision / out-of-bounds check."""

from __future__ import annotations

import math
import weakref

import numpy as np

from lnn_nav.sim.world import WorldSpec

# Far-away, zero-size primitives that pad the broad-phase candidate lists.
_FAR = 1.0e9
_DUMMY_CYLINDER = np.array([_FAR, _FAR, 0.0, 0.0, 0.0])
_DUMMY_BOX = np.array([_FAR, _FAR, _FAR, 0.0, 0.0, 0.0, 1.0, 0.0])
_DUMMY_SPHERE = np.array([_FAR, _FAR, _FAR, 0.0])

# Points per chunk x primitives kept below this in the brute-force pass (~8 MB temporaries).
_CHUNK_ELEMENTS = 1 << 20


def cylinder_sd(p: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Exact signed distance to vertical capped cylinders ``x, y, z_min, z_max, r``.

    ``p`` ``[..., 1, 3]`` against ``c`` ``[..., K, 5]``; the capped-cylinder SDF
    of Quilez ("distance functions", iquilezles.org): radial and axial
    excesses combined as a 2-D box distance.
    """
    dx = p[..., 0] - c[..., 0]
    dy = p[..., 1] - c[..., 1]
    q_r = np.sqrt(dx * dx + dy * dy) - c[..., 4]
    q_z = np.abs(p[..., 2] - 0.5 * (c[..., 2] + c[..., 3])) - 0.5 * (c[..., 3] - c[..., 2])
    out_r, out_z = np.maximum(q_r, 0.0), np.maximum(q_z, 0.0)
    return np.minimum(np.maximum(q_r, q_z), 0.0) + np.sqrt(out_r * out_r + out_z * out_z)


def box_sd(p: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact signed distance to z-rotated boxes ``cx, cy, cz, hx, hy, hz, cos(yaw), sin(yaw)``.

    The point is rotated into the box frame, then the axis-aligned box SDF
    (Quilez): length of the positive excess plus the (negative) largest one.
    """
    dx = p[..., 0] - b[..., 0]
    dy = p[..., 1] - b[..., 1]
    qx = np.abs(b[..., 6] * dx + b[..., 7] * dy) - b[..., 3]
    qy = np.abs(-b[..., 7] * dx + b[..., 6] * dy) - b[..., 4]
    qz = np.abs(p[..., 2] - b[..., 2]) - b[..., 5]
    ox, oy, oz = np.maximum(qx, 0.0), np.maximum(qy, 0.0), np.maximum(qz, 0.0)
    inside = np.minimum(np.maximum(np.maximum(qx, qy), qz), 0.0)
    return np.sqrt(ox * ox + oy * oy + oz * oz) + inside


def sphere_sd(p: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Exact signed distance to spheres ``x, y, z, r`` (``p`` ``[..., 1, 3]`` against ``s`` ``[..., K, 4]``)."""
    d = p[..., :3] - s[..., :3]
    return np.sqrt((d * d).sum(axis=-1)) - s[..., 3]


def box_table(boxes: np.ndarray) -> np.ndarray:
    """``[M, 7]`` boxes with yaw replaced by its cosine and sine, ``[M, 8]``."""
    return np.concatenate([boxes[:, :6], np.cos(boxes[:, 6:7]), np.sin(boxes[:, 6:7])], axis=1)


def _points(points: np.ndarray) -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"points must be shaped [P, 3], got {list(pts.shape)}")
    return pts


def signed_distance(world: WorldSpec, points: np.ndarray, include_ground: bool = True) -> np.ndarray:
    """Exact distance ``[P]`` from ``points`` ``[P, 3]`` to the nearest obstacle surface (m), negative inside.

    Every cylinder (end caps included), rotated box and sphere of ``world``
    is tested (no broad phase: this is the reference), and with
    ``include_ground`` the ground plane too (distance ``z``). A point with
    nothing to measure against gets ``+inf``.
    """
    return _all_primitives_distance(
        _points(points), world.cylinders, box_table(world.boxes), world.spheres, include_ground
    )


def _all_primitives_distance(
    pts: np.ndarray, cylinders: np.ndarray, boxes: np.ndarray, spheres: np.ndarray, include_ground: bool
) -> np.ndarray:
    best = pts[:, 2].copy() if include_ground else np.full(len(pts), np.inf)
    for sdf, prims in ((cylinder_sd, cylinders), (box_sd, boxes), (sphere_sd, spheres)):  # boxes: box_table rows
        if len(prims) == 0:
            continue
        chunk = max(1, _CHUNK_ELEMENTS // len(prims))
        for start in range(0, len(pts), chunk):
            d = sdf(pts[start : start + chunk, None, :], prims[None, :, :]).min(axis=1)
            np.minimum(best[start : start + chunk], d, out=best[start : start + chunk])
    return best


def out_of_bounds(world: WorldSpec, positions: np.ndarray) -> np.ndarray:
    """``[N]`` True where a position is outside the world's xy bounds or above its ceiling."""
    return _out_of_bounds(_points(positions), world.bounds, world.ceiling)


def _out_of_bounds(pos: np.ndarray, bounds: tuple[float, float, float, float], ceiling: float) -> np.ndarray:
    x0, x1, y0, y1 = bounds
    return (pos[:, 0] < x0) | (pos[:, 0] > x1) | (pos[:, 1] < y0) | (pos[:, 1] > y1) | (pos[:, 2] > ceiling)


class CollisionChecker:
    """Fast collision queries against one world, through a uniform xy grid (broad phase).

    Each grid cell lists the primitives whose xy footprint, grown by
    ``max_radius``, touches it; a query tests a drone only against its
    cell's lists (exactly, with the same SDFs as :func:`signed_distance`).
    The answer equals ``signed_distance(world, p) < radius`` for any
    ``radius <= max_radius``; a larger radius falls back to the exact
    all-primitive pass. Treat the world as immutable once a checker is built.
    """

    def __init__(self, world: WorldSpec, max_radius: float = 1.0, cell_size: float = 2.0) -> None:
        if not max_radius > 0 or not cell_size > 0:
            raise ValueError(f"max_radius and cell_size must be > 0, got {max_radius}, {cell_size}")
        # The checker keeps the geometry, not the world (so a cache of checkers does not keep worlds alive).
        self.bounds = world.bounds
        self.ceiling = world.ceiling
        self.max_radius = float(max_radius)
        self.cell_size = float(cell_size)
        boxes = box_table(world.boxes)
        self._geometry = (world.cylinders, boxes, world.spheres)
        self._source = (world.cylinders, world.boxes, world.spheres)  # pins the ids the cache compares
        footprints = [  # per family: primitive table, xy half extents
            (world.cylinders, world.cylinders[:, [0, 1]], np.repeat(world.cylinders[:, 4:5], 2, axis=1)),
            (
                boxes,
                boxes[:, [0, 1]],
                np.stack(
                    [
                        np.abs(boxes[:, 6]) * boxes[:, 3] + np.abs(boxes[:, 7]) * boxes[:, 4],
                        np.abs(boxes[:, 7]) * boxes[:, 3] + np.abs(boxes[:, 6]) * boxes[:, 4],
                    ],
                    axis=1,
                ),
            ),
            (world.spheres, world.spheres[:, [0, 1]], np.repeat(world.spheres[:, 3:4], 2, axis=1)),
        ]
        lo = [np.array(world.bounds)[[0, 2]]]
        hi = [np.array(world.bounds)[[1, 3]]]
        for _, centre, half in footprints:
            if len(centre):
                lo.append((centre - half).min(axis=0) - self.max_radius)
                hi.append((centre + half).max(axis=0) + self.max_radius)
        self._origin = np.min(lo, axis=0)
        self._shape = np.maximum(np.ceil((np.max(hi, axis=0) - self._origin) / self.cell_size), 1).astype(np.int64)
        n_cells = int(self._shape[0] * self._shape[1])

        self._families: list[tuple[object, np.ndarray, np.ndarray]] = []
        for sdf, (prims, centre, half), dummy in zip(
            (cylinder_sd, box_sd, sphere_sd), footprints, (_DUMMY_CYLINDER, _DUMMY_BOX, _DUMMY_SPHERE)
        ):
            if len(prims) == 0:
                continue
            cells: list[list[int]] = [[] for _ in range(n_cells + 1)]  # the last cell: outside the grid, empty
            c0 = np.floor((centre - half - self.max_radius - self._origin) / self.cell_size).astype(np.int64)
            c1 = np.floor((centre + half + self.max_radius - self._origin) / self.cell_size).astype(np.int64)
            c0 = np.clip(c0, 0, self._shape - 1)
            c1 = np.clip(c1, 0, self._shape - 1)
            for k, ((ix0, iy0), (ix1, iy1)) in enumerate(zip(c0.tolist(), c1.tolist())):
                for ix in range(ix0, ix1 + 1):
                    row = ix * int(self._shape[1])
                    for iy in range(iy0, iy1 + 1):
                        cells[row + iy].append(k)
            width = max(1, max(len(c) for c in cells))
            table = np.full((n_cells + 1, width), len(prims), dtype=np.int64)  # padded with the dummy
            for i, c in enumerate(cells):
                table[i, : len(c)] = c
            self._families.append((sdf, np.concatenate([prims, dummy[None, :]]), table))

    @property
    def max_candidates(self) -> int:
        """The longest candidate list of any cell, summed over the primitive families."""
        return sum(table.shape[1] for _, _, table in self._families)

    def _cells(self, pos: np.ndarray) -> np.ndarray:
        ij = np.floor((pos[:, :2] - self._origin) / self.cell_size).astype(np.int64)
        inside = (ij >= 0).all(axis=1) & (ij < self._shape).all(axis=1)
        return np.where(inside, ij[:, 0] * self._shape[1] + ij[:, 1], self._shape[0] * self._shape[1])

    def nearby_distance(self, positions: np.ndarray) -> np.ndarray:
        """``[N]`` exact signed distance wherever it is below ``max_radius`` (ground excluded).

        Beyond ``max_radius`` the value is only a bound: at least
        ``max_radius`` (possibly ``+inf``), never the true distance.
        """
        pos = _points(positions)
        cells = self._cells(pos)
        best = np.full(len(pos), np.inf)
        for sdf, prims, table in self._families:
            cand = prims[table[cells]]  # [N, C, w]
            np.minimum(best, sdf(pos[:, None, :], cand).min(axis=1), out=best)  # type: ignore[operator]
        return best

    def check(self, positions: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
        """``(collided [N], out_of_bounds [N])`` for spheres of ``radius`` at ``positions`` ``[N, 3]``.

        Collided: an obstacle or the ground (``z < radius``) is closer than
        ``radius``. Out of bounds: outside the world's xy bounds or above its ceiling.
        """
        pos = _points(positions)
        if radius > self.max_radius:
            collided = _all_primitives_distance(pos, *self._geometry, include_ground=True) < radius
        else:
            collided = (pos[:, 2] < radius) | (self.nearby_distance(pos) < radius)
        return collided, _out_of_bounds(pos, self.bounds, self.ceiling)


# Checkers of recently used worlds, keyed by id() and validated through a weak reference
# and the identity of the geometry arrays (which the checker keeps alive, so ids stay unique).
_CHECKERS: dict[int, tuple[weakref.ref[WorldSpec], tuple[int, int, int], CollisionChecker]] = {}
_CACHE_SIZE = 8


def collision_checker(world: WorldSpec, max_radius: float = 1.0) -> CollisionChecker:
    """The cached :class:`CollisionChecker` of ``world`` (built on first use)."""
    key = id(world)
    arrays = (id(world.cylinders), id(world.boxes), id(world.spheres))
    hit = _CHECKERS.get(key)
    if hit is not None and hit[0]() is world and hit[1] == arrays and hit[2].max_radius >= max_radius:
        return hit[2]
    checker = CollisionChecker(world, max_radius=max(max_radius, 1.0))
    _CHECKERS.pop(key, None)
    _CHECKERS[key] = (weakref.ref(world), arrays, checker)
    while len(_CHECKERS) > _CACHE_SIZE:
        _CHECKERS.pop(next(iter(_CHECKERS)))
    return checker


def check_collisions(world: WorldSpec, positions: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """``(collided [N], out_of_bounds [N])`` for drones of ``radius`` (m) at ``positions`` ``[N, 3]``.

    ``collided`` is ``signed_distance < radius`` with the ground included
    (``z < radius``); ``out_of_bounds`` is outside ``world.bounds`` in xy or
    above ``world.ceiling``. Uses a broad-phase grid built once per world.
    """
    if not radius >= 0 or not math.isfinite(radius):
        raise ValueError(f"radius must be a finite value >= 0, got {radius}")
    return collision_checker(world, radius).check(positions, radius)
