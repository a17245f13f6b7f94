"""Procedural forest worlds: hard-core Poisson trunks, high canopies, undergrowth, a goal beacon."""

from __future__ import annotations

import math

import numpy as np

from lnn_nav.sim.world import MATERIAL_ID, Conditions, WorldSpec, concat_primitives

#: Trees per 100 m² by default: mean gap between trunk surfaces ~1.8 m, threadable at 3 m/s.
DEFAULT_TREE_DENSITY = 8.0
#: Flight corridor under the canopy (m): canopies stay above it, bushes below it.
CORRIDOR = (1.0, 3.5)
#: Lowest point of any canopy sphere (m); the corridor's top plus headroom.
CANOPY_BOTTOM_MIN = 4.5
#: Trunk radius range (m).
TRUNK_RADIUS = (0.12, 0.35)
#: Start-goal distance range (m).
START_GOAL_DISTANCE = (40.0, 80.0)
#: Margin (m) between start/goal and the world bounds.
ROUTE_MARGIN = 10.0
#: The straight start->goal segment counts as blocked when it passes this close to a trunk's surface (m).
BLOCKING_CLEARANCE = 0.3


def generate_forest(
    seed: int,
    *,
    density: float = DEFAULT_TREE_DENSITY,
    size: tuple[float, float] = (100.0, 60.0),
    conditions: Conditions | None = None,
    flight_altitude: float = 2.0,
    undergrowth_density: float = 3.0,
    min_spacing: float = 1.6,
    clear_radius: float = 2.5,
    ceiling: float = 12.0,
) -> WorldSpec:
    """A forest of ``density`` trees per 100 m² over a ``size`` (x, y) metre patch centred on the origin.

    Trunk positions follow a Poisson process made hard-core by sequential
    rejection (random sequential adsorption): candidates are drawn uniformly
    and kept when at least ``min_spacing`` from every kept trunk, until the
    Poisson-drawn count is reached. Unlike Matérn thinning this keeps the
    realised density equal to the requested one. The default 8 per 100 m²
    (mean nearest-neighbour gap ~1.8 m between trunk surfaces) matches the
    agile-autonomy forests a 3 m/s expert can thread.

    Start and goal are drawn first (so the same seed gives the same route at
    any density, for paired in/out-of-distribution comparisons), 40-80 m
    apart, at least 10 m inside the bounds, ``flight_altitude`` high, with a
    ``clear_radius`` disc free of trunks and bushes around each. The straight
    segment between them always passes within 0.3 m of a trunk: when the
    random forest leaves it open, a tree is planted on it. The start yaw faces
    the goal.
    """
    size = (float(size[0]), float(size[1]))
    if density < 0 or undergrowth_density < 0:
        raise ValueError(f"densities must be >= 0 per 100 m², got trees {density}, bushes {undergrowth_density}")
    if not CORRIDOR[0] <= flight_altitude <= CORRIDOR[1]:
        raise ValueError(f"flight_altitude must be in the corridor {CORRIDOR} m, got {flight_altitude}")
    if min_spacing < 0.8:
        raise ValueError(f"min_spacing must be >= 0.8 m (two thickest trunks touch below it), got {min_spacing}")
    # Packing beyond ~0.4 of the RSA jamming limit makes rejection sampling crawl.
    if density / 100.0 * math.pi * (min_spacing / 2) ** 2 > 0.4:
        raise ValueError(
            f"density {density} per 100 m² is too high for min_spacing {min_spacing} m "
            f"(at most {0.4 * 100 / (math.pi * (min_spacing / 2) ** 2):.1f})"
        )
    inner = (size[0] - 2 * ROUTE_MARGIN, size[1] - 2 * ROUTE_MARGIN)
    if min(inner) <= 0 or math.hypot(*inner) < START_GOAL_DISTANCE[0]:
        raise ValueError(
            f"size {size} m is too small: start and goal sit {ROUTE_MARGIN} m inside the bounds "
            f"and {START_GOAL_DISTANCE[0]} m apart"
        )

    rng = np.random.default_rng(seed)
    # Independent streams per stage: changing the density does not move the route or the bushes.
    route_rng, tree_rng, bush_rng = rng.spawn(3)
    bounds = (-size[0] / 2, size[0] / 2, -size[1] / 2, size[1] / 2)
    start_xy, goal_xy = _draw_route(route_rng, bounds)
    keep_out = np.array([start_xy, goal_xy])

    area = size[0] * size[1]
    n_trees = int(tree_rng.poisson(density * area / 100.0))
    # The keep-out is grown by the thickest trunk so no trunk surface enters the clear discs.
    xy = _hard_core_points(tree_rng, bounds, n_trees, min_spacing, keep_out, clear_radius + TRUNK_RADIUS[1])
    radius = tree_rng.uniform(*TRUNK_RADIUS, len(xy))
    xy, radius = _block_straight_line(tree_rng, xy, radius, start_xy, goal_xy, min_spacing, clear_radius)
    height = tree_rng.uniform(8.0, 15.0, len(xy))
    trunks = np.column_stack([xy, np.zeros(len(xy)), height, radius])
    canopies = _canopies(tree_rng, xy, height)

    n_bushes = int(bush_rng.poisson(undergrowth_density * area / 100.0))
    bushes = _bushes(bush_rng, bounds, n_bushes, trunks, keep_out, clear_radius)

    goal = (float(goal_xy[0]), float(goal_xy[1]), float(flight_altitude))
    beacon_cyl, beacon_sph = goal_beacon(goal)
    cylinders, cylinder_materials = concat_primitives(
        [(trunks, np.full(len(trunks), MATERIAL_ID["bark"])), (beacon_cyl, np.array([MATERIAL_ID["beacon"]]))], 5
    )
    spheres, sphere_materials = concat_primitives(
        [
            (canopies, np.full(len(canopies), MATERIAL_ID["leaves"])),
            (bushes, np.full(len(bushes), MATERIAL_ID["undergrowth"])),
            (beacon_sph, np.array([MATERIAL_ID["beacon"]])),
        ],
        4,
    )
    yaw = math.atan2(goal_xy[1] - start_xy[1], goal_xy[0] - start_xy[0])
    return WorldSpec(
        kind="forest",
        seed=int(seed),
        bounds=bounds,
        start=(float(start_xy[0]), float(start_xy[1]), float(flight_altitude), yaw),
        goal=goal,
        conditions=conditions if conditions is not None else Conditions(),
        cylinders=cylinders,
        cylinder_materials=cylinder_materials,
        spheres=spheres,
        sphere_materials=sphere_materials,
        ceiling=float(ceiling),
        params={
            "generator": "forest",
            "seed": int(seed),
            "density": float(density),
            "size": list(size),
            "flight_altitude": float(flight_altitude),
            "undergrowth_density": float(undergrowth_density),
            "min_spacing": float(min_spacing),
            "clear_radius": float(clear_radius),
            "ceiling": float(ceiling),
        },
    )


def goal_beacon(goal: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """A thin post under the goal and a ball above it: ``(cylinder [1, 5], sphere [1, 4])``.

    Both stay at least 0.85 m from the goal point (post top 1.0 m below, ball
    surface 0.85 m above), so a drone can reach within 0.5 m of the goal
    without touching them, while the camera sees the marker.
    """
    x, y, z = goal
    post = np.array([[x, y, 0.0, max(z - 1.0, 0.05), 0.12]])
    ball = np.array([[x, y, z + 1.2, 0.35]])
    return post, ball


def _draw_route(rng: np.random.Generator, bounds: tuple[float, float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Start and goal in the inner region, 40-80 m apart in a uniformly random direction."""
    lo = np.array([bounds[0], bounds[2]]) + ROUTE_MARGIN
    hi = np.array([bounds[1], bounds[3]]) - ROUTE_MARGIN
    for _ in range(10_000):
        start = rng.uniform(lo, hi)
        dist = rng.uniform(*START_GOAL_DISTANCE)
        heading = rng.uniform(-math.pi, math.pi)
        goal = start + dist * np.array([math.cos(heading), math.sin(heading)])
        if np.all(goal >= lo) and np.all(goal <= hi):
            return start, goal
    raise RuntimeError(f"no start/goal pair {START_GOAL_DISTANCE} m apart fits in bounds {bounds}")


def _hard_core_points(
    rng: np.random.Generator,
    bounds: tuple[float, float, float, float],
    n: int,
    spacing: float,
    keep_out: np.ndarray,
    keep_out_radius: float,
) -> np.ndarray:
    """Up to ``n`` uniform points at least ``spacing`` apart and outside the keep-out discs.

    A background grid with cells of side spacing/√2 holds at most one point
    per cell, so each candidate checks only its 5x5 cell neighbourhood.
    """
    x0, x1, y0, y1 = bounds
    cell = spacing / math.sqrt(2.0)
    owner = -np.ones((int((x1 - x0) / cell) + 1, int((y1 - y0) / cell) + 1), dtype=np.int64)
    points = np.empty((n, 2))
    count = 0
    max_candidates = 20 * n + 100  # bounded: at the allowed packing ~2 candidates per point suffice
    drawn = 0
    while count < n and drawn < max_candidates:
        batch = rng.uniform((x0, y0), (x1, y1), size=(max(n - count, 16) * 2, 2))
        drawn += len(batch)
        # Vectorised first cut: drop candidates inside the keep-out discs.
        far = np.all(((batch[:, None, :] - keep_out[None, :, :]) ** 2).sum(-1) >= keep_out_radius**2, axis=1)
        for px, py in batch[far]:
            i, j = int((px - x0) / cell), int((py - y0) / cell)
            near = owner[max(i - 2, 0) : i + 3, max(j - 2, 0) : j + 3]
            near = near[near >= 0]
            if len(near) and np.min(((points[near] - (px, py)) ** 2).sum(-1)) < spacing**2:
                continue
            points[count] = (px, py)
            owner[i, j] = count
            count += 1
            if count == n:
                break
    return points[:count]


def _segment_distance(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance from each 2-D point to the segment a-b."""
    ab = b - a
    t = np.clip(((points - a) @ ab) / float(ab @ ab), 0.0, 1.0)
    return np.linalg.norm(points - (a + t[:, None] * ab), axis=-1)


def _block_straight_line(
    rng: np.random.Generator,
    xy: np.ndarray,
    radius: np.ndarray,
    start: np.ndarray,
    goal: np.ndarray,
    spacing: float,
    clear_radius: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Plant a trunk on the start-goal segment unless one already blocks it.

    The new trunk goes at a random point of the segment's middle, and trunks
    closer than ``spacing`` to it are removed so the hard-core rule holds.
    """
    if len(xy) and np.any(_segment_distance(xy, start, goal) <= radius + BLOCKING_CLEARANCE):
        return xy, radius
    length = float(np.linalg.norm(goal - start))
    lo = clear_radius / length + 0.05
    t = rng.uniform(max(lo, 0.25), min(1 - lo, 0.75))
    new = start + t * (goal - start)
    keep = np.linalg.norm(xy - new, axis=-1) >= spacing if len(xy) else np.zeros(0, dtype=bool)
    return (
        np.concatenate([xy[keep], new[None]]),
        np.concatenate([radius[keep], [rng.uniform(0.2, TRUNK_RADIUS[1])]]),
    )


def _canopies(rng: np.random.Generator, xy: np.ndarray, height: np.ndarray) -> np.ndarray:
    """1-3 leaf spheres per tree near its top, every one with its bottom above the corridor."""
    n_per = rng.integers(1, 4, len(xy))
    owner = np.repeat(np.arange(len(xy)), n_per)
    r = rng.uniform(1.2, 2.8, len(owner))
    # Centre below the trunk top when the trunk is tall enough, never below the corridor limit.
    top = height[owner]
    z_lo = CANOPY_BOTTOM_MIN + r
    z = np.maximum(z_lo, top - rng.uniform(0.3, 1.0, len(owner)) * r)
    offset = rng.normal(0.0, 0.35, (len(owner), 2)) * r[:, None]
    return np.column_stack([xy[owner] + offset, z, r])


def _bushes(
    rng: np.random.Generator,
    bounds: tuple[float, float, float, float],
    n: int,
    trunks: np.ndarray,
    keep_out: np.ndarray,
    clear_radius: float,
) -> np.ndarray:
    """Ground bushes: radius 0.3-0.55 m sitting on the ground (centre at 0.6 r, top below 0.9 m)."""
    xy = rng.uniform((bounds[0], bounds[2]), (bounds[1], bounds[3]), size=(n, 2))
    r = rng.uniform(0.3, 0.55, n)
    ok = np.all(((xy[:, None, :] - keep_out[None]) ** 2).sum(-1) >= (clear_radius + r[:, None]) ** 2, axis=1)
    parts: list[np.ndarray] = []
    # Chunked so a large world never builds a bushes x trunks matrix in one go.
    for s in range(0, n, 512):
        d2 = ((xy[s : s + 512, None, :] - trunks[None, :, :2]) ** 2).sum(-1)
        parts.append(np.all(d2 >= (trunks[None, :, 4] + r[s : s + 512, None]) ** 2, axis=1))
    if parts:
        ok &= np.concatenate(parts)
    return np.column_stack([xy[ok], 0.6 * r[ok], r[ok]])
