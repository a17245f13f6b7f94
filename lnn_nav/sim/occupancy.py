"""2-D occupancy grids of a world at one altitude, and grid reachability (pure NumPy)."""

from __future__ import annotations

import math

import numpy as np

from lnn_nav.sim.world import WorldSpec

# Cell (i, j) of a grid covers x in [ox + i*res, ox + (i+1)*res) and
# y in [oy + j*res, oy + (j+1)*res); its centre is origin + (idx + 0.5) * res.
# The grid spans the world bounds; the ground and the ceiling are not marked.


def occupancy_grid(
    world: WorldSpec, altitude: float, inflate: float = 0.5, resolution: float = 0.5
) -> tuple[np.ndarray, tuple[float, float]]:
    """Cells whose centre, at height ``altitude``, lies within ``inflate`` metres of an obstacle.

    The test is exact in 3-D: a cell is occupied when the point
    ``(x, y, altitude)`` is inside the Minkowski sum of a primitive and a ball
    of radius ``inflate`` (the drone's clearance), so a trunk that ends 0.3 m
    below the altitude still counts with ``inflate=0.5`` while a canopy 2 m
    above does not.

    Returns ``(grid, origin)``: ``grid`` is bool ``[nx, ny]`` indexed
    ``[ix, iy]`` (x first), ``origin`` the world ``(x, y)`` of the grid's
    lower-left corner (see the module note for cell centres).
    """
    if resolution <= 0:
        raise ValueError(f"resolution must be > 0 m, got {resolution}")
    if inflate < 0:
        raise ValueError(f"inflate must be >= 0 m, got {inflate}")
    x0, x1, y0, y1 = world.bounds
    nx = max(1, int(math.ceil((x1 - x0) / resolution - 1e-9)))
    ny = max(1, int(math.ceil((y1 - y0) / resolution - 1e-9)))
    grid = np.zeros((nx, ny), dtype=bool)
    origin = (float(x0), float(y0))
    z = float(altitude)

    # Cylinders and spheres both cut the inflated slab as discs (cx, cy, R).
    discs = [np.zeros((0, 3))]
    if len(world.cylinders):
        c = world.cylinders
        dz = np.maximum(np.maximum(c[:, 2] - z, z - c[:, 3]), 0.0)
        keep = dz <= inflate
        reach = np.sqrt(np.maximum(inflate**2 - dz[keep] ** 2, 0.0))
        discs.append(np.column_stack([c[keep, 0], c[keep, 1], c[keep, 4] + reach]))
    if len(world.spheres):
        s = world.spheres
        big = s[:, 3] + inflate
        dz = np.abs(s[:, 2] - z)
        keep = dz <= big
        discs.append(np.column_stack([s[keep, 0], s[keep, 1], np.sqrt(big[keep] ** 2 - dz[keep] ** 2)]))
    _paint_discs(grid, origin, resolution, np.concatenate(discs))

    if len(world.boxes):
        b = world.boxes
        dz = np.maximum(np.abs(z - b[:, 2]) - b[:, 5], 0.0)
        keep = dz <= inflate
        corner = np.sqrt(np.maximum(inflate**2 - dz[keep] ** 2, 0.0))
        _paint_rounded_boxes(grid, origin, resolution, b[keep], corner)
    return grid, origin


def _bucket(sizes: np.ndarray) -> np.ndarray:
    """Window sizes rounded up to a power of two, so a few broadcasts cover all primitives."""
    return (2 ** np.ceil(np.log2(np.maximum(sizes, 1)))).astype(np.int64)


def _window_cells(
    grid: np.ndarray, origin: tuple[float, float], res: float, lo_x: np.ndarray, lo_y: np.ndarray, w: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cell indices ``[K, w, w]`` of square windows starting at (lo_x, lo_y), their centres and an in-grid mask."""
    offs = np.arange(w)
    ix, iy = np.broadcast_arrays(lo_x[:, None, None] + offs[None, :, None], lo_y[:, None, None] + offs[None, None, :])
    inside = (ix >= 0) & (ix < grid.shape[0]) & (iy >= 0) & (iy < grid.shape[1])
    px = origin[0] + (ix + 0.5) * res
    py = origin[1] + (iy + 0.5) * res
    return ix, iy, px, py, inside


def _paint_discs(grid: np.ndarray, origin: tuple[float, float], res: float, discs: np.ndarray) -> None:
    if not len(discs):
        return
    lo_x = np.floor((discs[:, 0] - discs[:, 2] - origin[0]) / res).astype(np.int64)
    lo_y = np.floor((discs[:, 1] - discs[:, 2] - origin[1]) / res).astype(np.int64)
    sizes = _bucket(np.ceil(2 * discs[:, 2] / res) + 2)
    for w in np.unique(sizes):
        sel = sizes == w
        d = discs[sel]
        ix, iy, px, py, inside = _window_cells(grid, origin, res, lo_x[sel], lo_y[sel], int(w))
        hit = (px - d[:, 0, None, None]) ** 2 + (py - d[:, 1, None, None]) ** 2 <= d[:, 2, None, None] ** 2
        hit &= inside
        grid[ix[hit], iy[hit]] = True


def _paint_rounded_boxes(
    grid: np.ndarray, origin: tuple[float, float], res: float, boxes: np.ndarray, corner: np.ndarray
) -> None:
    """Boxes rotated about z, grown by ``corner`` metres with rounded corners (box ⊕ disc)."""
    if not len(boxes):
        return
    cx, cy, hx, hy, yaw = boxes[:, 0], boxes[:, 1], boxes[:, 3], boxes[:, 4], boxes[:, 6]
    cos, sin = np.cos(yaw), np.sin(yaw)
    # Axis-aligned half extents of the rotated, grown footprint.
    ex = np.abs(cos) * hx + np.abs(sin) * hy + corner
    ey = np.abs(sin) * hx + np.abs(cos) * hy + corner
    lo_x = np.floor((cx - ex - origin[0]) / res).astype(np.int64)
    lo_y = np.floor((cy - ey - origin[1]) / res).astype(np.int64)
    sizes = _bucket(np.ceil(2 * np.maximum(ex, ey) / res) + 2)
    for w in np.unique(sizes):
        sel = sizes == w
        ix, iy, px, py, inside = _window_cells(grid, origin, res, lo_x[sel], lo_y[sel], int(w))

        def col(a: np.ndarray) -> np.ndarray:
            return a[sel][:, None, None]  # noqa: B023 -- called within this iteration

        dx, dy = px - col(cx), py - col(cy)
        # World offset -> box frame (rotate by -yaw), then distance to the rectangle.
        u = np.abs(col(cos) * dx + col(sin) * dy) - col(hx)
        v = np.abs(-col(sin) * dx + col(cos) * dy) - col(hy)
        dist2 = np.maximum(u, 0.0) ** 2 + np.maximum(v, 0.0) ** 2
        hit = (dist2 <= col(corner) ** 2) & inside
        grid[ix[hit], iy[hit]] = True


def world_to_cell(
    xy: tuple[float, float] | np.ndarray, origin: tuple[float, float], resolution: float
) -> tuple[int, int]:
    """Index ``(ix, iy)`` of the cell containing world point ``xy``."""
    return (
        int(math.floor((float(xy[0]) - origin[0]) / resolution)),
        int(math.floor((float(xy[1]) - origin[1]) / resolution)),
    )


def bfs_distance(free: np.ndarray, source: tuple[int, int], target: tuple[int, int] | None = None) -> np.ndarray:
    """Breadth-first step counts (4-connected) from ``source`` over ``free`` cells; -1 where unreachable.

    With ``target`` the search stops once that cell is reached (cells beyond
    its ring stay -1).

    A wavefront of whole-array shifts: one NumPy pass per BFS ring, so the
    cost is (path length in cells) x (grid size), fast enough for the
    sub-thousand-ring grids of these worlds and free of Python per-cell loops.
    """
    free = np.asarray(free, dtype=bool)
    dist = np.full(free.shape, -1, dtype=np.int64)
    i, j = source
    if not (0 <= i < free.shape[0] and 0 <= j < free.shape[1]) or not free[i, j]:
        return dist
    reached = np.zeros_like(free)
    reached[i, j] = True
    frontier = reached.copy()
    dist[i, j] = 0
    step = 0
    while frontier.any():
        step += 1
        grown = np.zeros_like(frontier)
        grown[1:, :] |= frontier[:-1, :]
        grown[:-1, :] |= frontier[1:, :]
        grown[:, 1:] |= frontier[:, :-1]
        grown[:, :-1] |= frontier[:, 1:]
        frontier = grown & free & ~reached
        reached |= frontier
        dist[frontier] = step
        if target is not None and reached[target]:
            break
    return dist


def path_exists(world: WorldSpec, altitude: float | None = None, inflate: float = 0.5, resolution: float = 0.5) -> bool:
    """Whether start and goal are joined by free cells of the occupancy grid at ``altitude``.

    ``altitude`` defaults to the start height. A start or goal cell that is
    itself occupied counts as no path.
    """
    z = world.start[2] if altitude is None else altitude
    grid, origin = occupancy_grid(world, z, inflate, resolution)
    src = world_to_cell(world.start[:2], origin, resolution)
    dst = world_to_cell(world.goal[:2], origin, resolution)
    if not (0 <= dst[0] < grid.shape[0] and 0 <= dst[1] < grid.shape[1]):
        return False
    return bool(bfs_distance(~grid, src, dst)[dst] >= 0)
