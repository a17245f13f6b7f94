"""Why a flight crashed: what was hit, from where, and what the expert would have done.

A success rate says how often a controller fails, not why. For each
collision this module measures, from the simulator's ground truth:

* what was hit: the nearest primitive's material (``bark`` is a trunk,
  ``pole`` a street pole, ``concrete``/``glass`` a building, ...), its shape
  and size, or the ground;
* from where: the bearing of the contact point relative to the drone's
  heading (0 ahead, +90 left, ±180 behind; the camera sees ±hfov/2) and to
  its velocity, and the horizontal speed at impact (a drone under
  ``HOVER_SPEED`` was all but hovering: it drifted into something);
* how: whether over its last half second the controller was turning
  (yaw rate) or sliding (lateral command) towards the side it touched;
* whether the controller had been told otherwise: the privileged expert is
  asked for its command at each of the learner's states over the last
  ``window`` seconds (a fresh command per state, no slew: the label DAgger
  would give there) and compared with what the learner commanded.

These diagnoses are what turned the stage-2 training results into the
0.8 m plan margin of :data:`lnn_nav.sim.expert.DEMO_EXPERT`: most forest
collisions were grazing passes 8-87 degrees off the heading, not head-on
flights.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence

import numpy as np

from .collision import box_sd, box_table, cylinder_sd, sphere_sd
from .world import MATERIALS, WorldSpec

#: Below this horizontal speed (m/s) at impact the drone was all but hovering.
HOVER_SPEED = 0.3
#: Yaw-rate disagreement (rad/s) with the expert counted as "the expert would have turned otherwise".
YAW_GAP = 0.5
#: Turning / sliding towards the contact side is judged on the commands of the last TURN_WINDOW s;
#: mean yaw rates (rad/s) and lateral speeds (m/s) inside the dead bands count as straight.
TURN_WINDOW = 0.5
TURN_DEAD_BAND = 0.1
SLIDE_DEAD_BAND = 0.1
HEAD_ON = 5.0


def nearest_obstacle(world: WorldSpec, point: np.ndarray, include_ground: bool = True) -> Dict[str, Any]:
    """The primitive nearest ``point`` ``[3]``: shape, material, size (m), signed distance and surface direction.

    ``direction`` is the unit vector from ``point`` towards the closest surface
    point (the negative gradient of that primitive's distance field).
    """
    p = np.asarray(point, dtype=np.float64).reshape(1, 1, 3)
    candidates = []
    for shape, prims, table, materials, sdf in (
        ("cylinder", world.cylinders, world.cylinders, world.cylinder_materials, cylinder_sd),
        ("box", world.boxes, box_table(world.boxes), world.box_materials, box_sd),
        ("sphere", world.spheres, world.spheres, world.sphere_materials, sphere_sd),
    ):
        if len(prims):
            d = sdf(p, table[None]).ravel()
            k = int(d.argmin())
            candidates.append((float(d[k]), shape, table[k], int(materials[k]), sdf, prims[k]))
    best = min(candidates, key=lambda c: c[0]) if candidates else None
    if best is None or (include_ground and float(p[0, 0, 2]) < best[0]):
        return {"shape": "ground", "material": "ground", "size": 0.0, "distance": float(p[0, 0, 2]),
                "direction": [0.0, 0.0, -1.0]}  # fmt: skip
    distance, shape, row, material, sdf, raw = best
    eps = 1e-3
    grad = np.zeros(3)
    for axis in range(3):
        step = np.zeros(3)
        step[axis] = eps
        grad[axis] = (sdf(p + step, row[None, None]) - sdf(p - step, row[None, None])).item() / (2 * eps)
    norm = float(np.linalg.norm(grad))
    direction = (-grad / norm) if norm > 1e-9 else np.zeros(3)
    if shape == "cylinder":
        size = float(raw[4])  # radius
    elif shape == "sphere":
        size = float(raw[3])
    else:
        size = float(2 * min(raw[3], raw[4]))  # the box's narrower horizontal width
    return {"shape": shape, "material": MATERIALS[material], "size": size, "distance": distance,
            "direction": direction.tolist()}  # fmt: skip


def _bearing(direction_xy: np.ndarray, angle: float) -> float:
    """Degrees in (-180, 180] from ``angle`` to the horizontal direction (counter-clockwise positive)."""
    b = math.degrees(math.atan2(direction_xy[1], direction_xy[0]) - angle)
    return (b + 180.0) % 360.0 - 180.0


def _side(values: np.ndarray, bearing: Optional[float], dead_band: float) -> Optional[str]:
    """``towards``/``away``/``straight``: the mean of a left-positive command against the contact side.

    ``None`` for contact within ``HEAD_ON`` degrees of dead ahead (or straight down): no side to turn to.
    """
    if bearing is None or abs(bearing) < HEAD_ON:
        return None
    mean = float(np.mean(values))
    if abs(mean) < dead_band:
        return "straight"
    return "towards" if (mean > 0) == (bearing > 0) else "away"


def crash_report(
    world: WorldSpec,
    positions: np.ndarray,
    yaws: np.ndarray,
    velocities: np.ndarray,
    commands: np.ndarray,
    final_position: np.ndarray,
    dt: float,
    expert: Optional[Any] = None,
    window: float = 2.0,
    hfov_deg: float = 90.0,
) -> Dict[str, Any]:
    """Diagnose one collision from the episode's per-step states and commands.

    ``positions`` ``[T, 3]``, ``yaws`` ``[T]``, ``velocities`` ``[T, 3]`` (world
    frame) and ``commands`` ``[T, 4]`` (what was flown, heading frame
    ``vx, vy, vz, yaw_rate``) are the states before each control step;
    ``final_position`` is where the drone was when the collision was detected.
    ``expert`` (a :class:`~lnn_nav.sim.expert.PrivilegedExpert` of this world)
    adds the disagreement fields; without it they are ``None``.
    """
    positions = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    yaws = np.asarray(yaws, dtype=np.float64).reshape(-1)
    velocities = np.asarray(velocities, dtype=np.float64).reshape(-1, 3)
    commands = np.asarray(commands, dtype=np.float64).reshape(-1, 4)
    if not (len(positions) == len(yaws) == len(velocities) == len(commands)) or len(positions) == 0:
        raise ValueError("positions, yaws, velocities and commands need the same, non-zero number of steps")
    hit = nearest_obstacle(world, np.asarray(final_position, dtype=np.float64))
    yaw, velocity = float(yaws[-1]), velocities[-1]
    towards = np.asarray(hit["direction"][:2])
    speed = float(np.linalg.norm(velocity[:2]))
    flat = float(np.linalg.norm(towards)) < 1e-6  # straight down (ground) or degenerate
    bearing_heading = None if flat else round(_bearing(towards, yaw), 1)
    bearing_velocity = None if flat or speed < 1e-3 else round(_bearing(towards, math.atan2(velocity[1], velocity[0])), 1)
    last = commands[-max(1, int(round(TURN_WINDOW / dt))) :]
    report: Dict[str, Any] = {
        "material": hit["material"],
        "shape": hit["shape"],
        "size": round(hit["size"], 3),
        "bearing_heading": bearing_heading,
        "bearing_velocity": bearing_velocity,
        "in_view": None if bearing_heading is None else abs(bearing_heading) <= hfov_deg / 2,
        "speed": round(speed, 3),
        "hovering": speed < HOVER_SPEED,
        # Over the last TURN_WINDOW s: did the learner turn (yaw rate) or slide (vy, heading
        # frame, left positive) towards the side it touched, as bearings are left positive.
        "turning": _side(last[:, 3], bearing_heading, TURN_DEAD_BAND),
        "sliding": _side(last[:, 1], bearing_heading, SLIDE_DEAD_BAND),
        "expert_turning": None,
        "yaw_rate_gap": None,
        "lateral_gap": None,
        "disagreeing_seconds": None,
    }
    if expert is not None:
        steps = max(1, int(round(window / dt)))
        pos, yw, flown = positions[-steps:], yaws[-steps:], commands[-steps:]
        # One vectorised call with no previous command: a fresh, unslewed label per
        # state, what DAgger would ask for there.
        expert.reset()
        labels = expert.command(pos, yw, dt)
        expert.reset()
        report["expert_turning"] = _side(labels[-len(last) :, 3], bearing_heading, TURN_DEAD_BAND)
        yaw_gap = np.abs(labels[:, 3] - flown[:, 3])
        report["yaw_rate_gap"] = round(float(np.median(yaw_gap)), 3)
        report["lateral_gap"] = round(float(np.median(np.abs(labels[:, 1] - flown[:, 1]))), 3)
        report["disagreeing_seconds"] = round(float((yaw_gap > YAW_GAP).sum() * dt), 3)
    return report


def summarize_crashes(reports: Sequence[Dict[str, Any]], hfov_deg: float = 90.0, window: float = 2.0) -> Dict[str, Any]:
    """Counts and medians over a cell's crash reports (for tables).

    Bearings split into ``ahead`` (within 30 degrees of the heading), ``side``
    (30 degrees to the camera's half field of view) and ``out_of_view``.
    ``expert_disagreed``: crashes where the expert's yaw rate differed from
    the learner's by more than :data:`YAW_GAP` for at least half of ``window``.
    """
    n = len(reports)
    materials: Dict[str, int] = {}
    for r in reports:
        materials[r["material"]] = materials.get(r["material"], 0) + 1
    bearings = [abs(r["bearing_heading"]) for r in reports if r.get("bearing_heading") is not None]
    # A report knows whether its obstacle was in the camera's view (``in_view``,
    # judged with the camera that flew); ``hfov_deg`` serves older reports.
    in_view = [r["in_view"] if r.get("in_view") is not None else abs(r["bearing_heading"]) <= hfov_deg / 2
               for r in reports if r.get("bearing_heading") is not None]  # fmt: skip
    gaps = [r["yaw_rate_gap"] for r in reports if r.get("yaw_rate_gap") is not None]
    disagreeing = [r["disagreeing_seconds"] for r in reports if r.get("disagreeing_seconds") is not None]

    def median(xs: Sequence[float]) -> Optional[float]:
        return float(np.median(xs)) if xs else None

    return {
        "crashes": n,
        "materials": dict(sorted(materials.items(), key=lambda kv: (-kv[1], kv[0]))),
        "ahead": sum(b <= 30.0 for b in bearings),
        "side": sum(b > 30.0 and seen for b, seen in zip(bearings, in_view)),
        "out_of_view": sum(not seen for seen in in_view),
        "hovering": sum(bool(r.get("hovering")) for r in reports),
        "turning_towards": sum(r.get("turning") == "towards" for r in reports),
        "sliding_towards": sum(r.get("sliding") == "towards" for r in reports),
        "expert_turning_away": sum(r.get("expert_turning") == "away" for r in reports),
        "sided": sum(r.get("turning") is not None for r in reports),
        "median_bearing": median(bearings),
        "median_speed": median([r["speed"] for r in reports]),
        "median_yaw_rate_gap": median(gaps),
        "expert_disagreed": sum(d >= window / 2 for d in disagreeing),
        "expert_asked": len(disagreeing),
    }
