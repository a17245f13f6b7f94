"""Procedural urban worlds: a street grid of building blocks, poles, parked cars and a goal beacon."""

from __future__ import annotations

import math

import numpy as np

from lnn_nav.sim.forest import START_GOAL_DISTANCE, goal_beacon
from lnn_nav.sim.world import MATERIAL_ID, Conditions, WorldSpec, concat_primitives

#: Sidewalk width (m) inside each block edge; poles stand on it, buildings stand behind it.
SIDEWALK = 2.5
#: Poles stand this far (m) from the curb, on the sidewalk.
POLE_CURB_OFFSET = 0.6
#: Parked cars keep this gap (m) to the curb.
CAR_CURB_GAP = 0.25
#: Width (m) of the lane along every street centre line that stays free of cars and poles.
FREE_LANE = 4.0
#: Widest parked car (m); with the curb gap it fixes the narrowest street that keeps the free lane.
CAR_WIDTH_MAX = 1.9
#: Start and goal keep this distance (m) from intersections, so each lies on exactly one street.
INTERSECTION_MARGIN = 3.0


def generate_urban(
    seed: int,
    *,
    blocks: tuple[int, int] = (4, 4),
    block_size: tuple[float, float] = (24.0, 24.0),
    street_width: float = 10.0,
    conditions: Conditions | None = None,
    flight_altitude: float = 2.5,
    margin: float = 5.0,
    clear_radius: float = 2.5,
    ceiling: float = 30.0,
) -> WorldSpec:
    """A ``blocks`` grid of city blocks separated by ``street_width`` streets, centred on the origin.

    Every block is ringed by streets (the outermost ones included) and holds
    1-4 box buildings (6-40 m, concrete or glass) set back behind a 2.5 m
    sidewalk; poles stand on the sidewalks and cars park along the curbs,
    leaving a lane of at least 4 m free along every street centre line. The
    bounds add ``margin`` of open ground beyond the outermost streets.

    Start and goal lie on street centre lines (away from intersections),
    40-80 m apart, with a building cutting the straight line between them, so
    the way runs along streets and around at least one corner. The start yaw
    points along the start's street towards the goal's side of it (or, when
    the goal lies squarely across, towards the nearer intersection), i.e.
    down the street the drone must first follow. ``params["streets"]`` holds
    the street centre lines so renderers and planners need not re-derive them.
    """
    nbx, nby = int(blocks[0]), int(blocks[1])
    bx, by = float(block_size[0]), float(block_size[1])
    sw = float(street_width)
    if nbx < 1 or nby < 1:
        raise ValueError(f"blocks must be >= (1, 1), got {blocks}")
    if min(bx, by) < 2 * SIDEWALK + 8.0:
        raise ValueError(f"block_size must be >= {2 * SIDEWALK + 8.0} m a side to hold buildings, got {block_size}")
    min_street = FREE_LANE + 2 * (CAR_CURB_GAP + CAR_WIDTH_MAX)
    if sw < min_street:
        raise ValueError(
            f"street_width must be >= {min_street:.1f} m (parked cars on both curbs and a {FREE_LANE} m lane), got {sw}"
        )
    if not 1.0 <= flight_altitude <= 5.0:
        raise ValueError(f"flight_altitude must be in [1.0, 5.0] m (below the lowest roof), got {flight_altitude}")

    rng = np.random.default_rng(seed)
    build_rng, pole_rng, car_rng, route_rng = rng.spawn(4)
    pitch = (bx + sw, by + sw)
    # Street centre lines: xs are the streets running along y, ys those running along x.
    xs = (np.arange(nbx + 1) - nbx / 2) * pitch[0]
    ys = (np.arange(nby + 1) - nby / 2) * pitch[1]
    bounds = (xs[0] - sw / 2 - margin, xs[-1] + sw / 2 + margin, ys[0] - sw / 2 - margin, ys[-1] + sw / 2 + margin)
    block_rects = [
        (xs[i] + sw / 2, xs[i + 1] - sw / 2, ys[j] + sw / 2, ys[j + 1] - sw / 2) for i in range(nbx) for j in range(nby)
    ]

    buildings, building_mats = _buildings(build_rng, block_rects)
    poles = np.concatenate([_poles(pole_rng, rect) for rect in block_rects])
    cars = np.concatenate([_cars(car_rng, rect) for rect in block_rects])

    start_xy, goal_xy, yaw = _draw_route(route_rng, xs, ys, sw, buildings)
    keep_out = np.array([start_xy, goal_xy])
    poles = poles[_outside_discs(poles[:, :2], poles[:, 4], keep_out, clear_radius)]
    car_reach = np.hypot(cars[:, 3], cars[:, 4])  # conservative: the car's circumscribed circle
    cars = cars[_outside_discs(cars[:, :2], car_reach, keep_out, clear_radius)]

    goal = (float(goal_xy[0]), float(goal_xy[1]), float(flight_altitude))
    beacon_cyl, beacon_sph = goal_beacon(goal)
    roads = _road_surfaces(xs, ys, sw, bounds)
    boxes, box_materials = concat_primitives(
        [
            (buildings, building_mats),
            (cars, np.full(len(cars), MATERIAL_ID["car"])),
            (roads, np.full(len(roads), MATERIAL_ID["asphalt"])),
        ],
        7,
    )
    cylinders, cylinder_materials = concat_primitives(
        [(poles, np.full(len(poles), MATERIAL_ID["pole"])), (beacon_cyl, np.array([MATERIAL_ID["beacon"]]))], 5
    )
    return WorldSpec(
        kind="urban",
        seed=int(seed),
        bounds=bounds,
        start=(float(start_xy[0]), float(start_xy[1]), float(flight_altitude), float(yaw)),
        goal=goal,
        conditions=conditions if conditions is not None else Conditions(),
        cylinders=cylinders,
        cylinder_materials=cylinder_materials,
        boxes=boxes,
        box_materials=box_materials,
        spheres=beacon_sph,
        sphere_materials=np.array([MATERIAL_ID["beacon"]], dtype=np.int32),
        ceiling=float(ceiling),
        params={
            "generator": "urban",
            "seed": int(seed),
            "blocks": [nbx, nby],
            "block_size": [bx, by],
            "street_width": sw,
            "flight_altitude": float(flight_altitude),
            "margin": float(margin),
            "clear_radius": float(clear_radius),
            "ceiling": float(ceiling),
            "streets": {"x": xs.tolist(), "y": ys.tolist(), "width": sw},
        },
    )


def _split(
    rng: np.random.Generator, rect: tuple[float, float, float, float], axis: int
) -> list[tuple[float, float, float, float]]:
    """Cut a rectangle in two across ``axis`` (0: x) at 35-65 % of its length."""
    x0, x1, y0, y1 = rect
    f = rng.uniform(0.35, 0.65)
    if axis == 0:
        xm = x0 + f * (x1 - x0)
        return [(x0, xm, y0, y1), (xm, x1, y0, y1)]
    ym = y0 + f * (y1 - y0)
    return [(x0, x1, y0, ym), (x0, x1, ym, y1)]


def _buildings(
    rng: np.random.Generator, block_rects: list[tuple[float, float, float, float]]
) -> tuple[np.ndarray, np.ndarray]:
    """1-4 buildings per block on lots cut from the area behind the sidewalk."""
    rows: list[list[float]] = []
    mats: list[int] = []
    for x0, x1, y0, y1 in block_rects:
        lot = (x0 + SIDEWALK, x1 - SIDEWALK, y0 + SIDEWALK, y1 - SIDEWALK)
        n = int(rng.integers(1, 5))
        axis = int(rng.integers(0, 2))
        lots = [lot]
        if n >= 2:
            lots = _split(rng, lot, axis)
        if n == 3:
            k = int(rng.integers(0, 2))
            lots = lots[:k] + _split(rng, lots[k], 1 - axis) + lots[k + 1 :]
        if n == 4:
            lots = _split(rng, lots[0], 1 - axis) + _split(rng, lots[1], 1 - axis)
        for lx0, lx1, ly0, ly1 in lots:
            # Per-side setbacks open 1-3 m gaps between neighbours and vary the street frontage.
            s = rng.uniform(0.5, 1.5, 4)
            cx0, cx1, cy0, cy1 = lx0 + s[0], lx1 - s[1], ly0 + s[2], ly1 - s[3]
            h = rng.uniform(6.0, 40.0)
            rows.append([(cx0 + cx1) / 2, (cy0 + cy1) / 2, h / 2, (cx1 - cx0) / 2, (cy1 - cy0) / 2, h / 2, 0.0])
            mats.append(MATERIAL_ID["glass"] if rng.random() < 0.35 else MATERIAL_ID["concrete"])
    return np.array(rows).reshape(-1, 7), np.array(mats, dtype=np.int32)


def _block_edges(rect: tuple[float, float, float, float]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Each block edge as (start point, unit direction along it, unit normal pointing into the street)."""
    x0, x1, y0, y1 = rect
    return [
        (np.array([x0, y0]), np.array([1.0, 0.0]), np.array([0.0, -1.0])),  # south
        (np.array([x0, y1]), np.array([1.0, 0.0]), np.array([0.0, 1.0])),  # north
        (np.array([x0, y0]), np.array([0.0, 1.0]), np.array([-1.0, 0.0])),  # west
        (np.array([x1, y0]), np.array([0.0, 1.0]), np.array([1.0, 0.0])),  # east
    ]


def _poles(rng: np.random.Generator, rect: tuple[float, float, float, float]) -> np.ndarray:
    """Street-light poles every 9-15 m along each sidewalk."""
    rows: list[list[float]] = []
    for corner, along, out in _block_edges(rect):
        length = float(np.abs(np.array([rect[1] - rect[0], rect[3] - rect[2]]) @ along))
        s = rng.uniform(2.0, 8.0)
        while s < length - 1.0:
            x, y = corner + s * along - POLE_CURB_OFFSET * out
            rows.append([x, y, 0.0, rng.uniform(4.0, 6.0), 0.12])
            s += rng.uniform(9.0, 15.0)
    return np.array(rows).reshape(-1, 5)


def _cars(rng: np.random.Generator, rect: tuple[float, float, float, float]) -> np.ndarray:
    """Cars parked along each curb of the block, within the block's length (never in intersections)."""
    rows: list[list[float]] = []
    for corner, along, out in _block_edges(rect):
        length = float(np.abs(np.array([rect[1] - rect[0], rect[3] - rect[2]]) @ along))
        yaw = 0.0 if along[0] else math.pi / 2
        s = rng.uniform(0.5, 4.0)
        while True:
            car_len, car_w, car_h = rng.uniform(4.2, 4.7), rng.uniform(1.75, CAR_WIDTH_MAX), rng.uniform(1.4, 1.6)
            if s + car_len > length - 0.5:
                break
            if rng.random() < 0.55:
                x, y = corner + (s + car_len / 2) * along + (CAR_CURB_GAP + car_w / 2) * out
                rows.append([x, y, car_h / 2, car_len / 2, car_w / 2, car_h / 2, yaw])
                s += car_len + rng.uniform(0.8, 3.0)
            else:
                s += rng.uniform(3.0, 8.0)
    return np.array(rows).reshape(-1, 7)


def _road_surfaces(xs: np.ndarray, ys: np.ndarray, sw: float, bounds: tuple[float, float, float, float]) -> np.ndarray:
    """Asphalt slabs 2 cm thick under every street, so cameras see roads between the blocks."""
    x0, x1, y0, y1 = bounds
    along_y = [[x, (y0 + y1) / 2, 0.01, sw / 2, (y1 - y0) / 2, 0.01, 0.0] for x in xs]
    along_x = [[(x0 + x1) / 2, y, 0.01, (x1 - x0) / 2, sw / 2, 0.01, 0.0] for y in ys]
    return np.array(along_y + along_x).reshape(-1, 7)


def _outside_discs(xy: np.ndarray, reach: np.ndarray, centres: np.ndarray, radius: float) -> np.ndarray:
    """Mask of objects (centre ``xy``, horizontal reach) that stay clear of every disc."""
    d2 = ((xy[:, None, :] - centres[None]) ** 2).sum(-1)
    return np.all(d2 >= (radius + reach[:, None]) ** 2, axis=1)


def segment_hits_boxes(a: np.ndarray, b: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Which axis-aligned (yaw 0) boxes the 2-D segment a-b crosses (slab test)."""
    if not len(boxes):
        return np.zeros(0, dtype=bool)
    d = b - a
    lo = boxes[:, :2] - boxes[:, 3:5]
    hi = boxes[:, :2] + boxes[:, 3:5]
    with np.errstate(divide="ignore", invalid="ignore"):
        t0 = (lo - a) / d
        t1 = (hi - a) / d
    tmin = np.where(d == 0, np.where((a >= lo) & (a <= hi), -np.inf, np.inf), np.minimum(t0, t1))
    tmax = np.where(d == 0, np.where((a >= lo) & (a <= hi), np.inf, -np.inf), np.maximum(t0, t1))
    enter = np.maximum(tmin.max(axis=1), 0.0)
    leave = np.minimum(tmax.min(axis=1), 1.0)
    return enter <= leave


def _draw_route(
    rng: np.random.Generator, xs: np.ndarray, ys: np.ndarray, sw: float, buildings: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """Start and goal on street centre lines, 40-80 m apart, with no straight line of sight."""

    def point() -> tuple[np.ndarray, int, tuple[float, float]]:
        # (position, axis the street runs along, its block span along that axis)
        along = int(rng.integers(0, 2))
        lines, cross = (ys, xs) if along == 0 else (xs, ys)
        line = lines[rng.integers(0, len(lines))]
        k = int(rng.integers(0, len(cross) - 1))
        span = (cross[k] + sw / 2, cross[k + 1] - sw / 2)
        s = rng.uniform(span[0] + INTERSECTION_MARGIN, span[1] - INTERSECTION_MARGIN)
        return (np.array([s, line]) if along == 0 else np.array([line, s])), along, span

    for _ in range(10_000):
        start, along, span = point()
        goal, _, _ = point()
        dist = float(np.linalg.norm(goal - start))
        if not START_GOAL_DISTANCE[0] <= dist <= START_GOAL_DISTANCE[1]:
            continue
        if not segment_hits_boxes(start, goal, buildings).any():
            continue
        ahead = float(goal[along] - start[along])
        if abs(ahead) > 1.0:
            direction = math.copysign(1.0, ahead)
        else:  # goal squarely across the block: head for the nearer corner
            direction = -1.0 if start[along] - span[0] < span[1] - start[along] else 1.0
        yaw = 0.0 if along == 0 else math.pi / 2
        if direction < 0:
            yaw += math.pi
        return start, goal, math.atan2(math.sin(yaw), math.cos(yaw))
    raise RuntimeError(
        f"no start/goal pair {START_GOAL_DISTANCE} m apart without line of sight in this street grid; "
        "use more or larger blocks"
    )
