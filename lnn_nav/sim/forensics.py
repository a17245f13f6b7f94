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

A timeout (the episode's time ran out short of the goal) is diagnosed
against the expert's plan from the start (:func:`timeout_report`): where
the track first strayed more than ``OFF_PLAN`` from it, where the goal lay
then, and how much longer the way to the goal had become ``DETOUR_HORIZON``
seconds later. A long detour is a missed turn (the drone flew on past the
street or gap the plan takes); a short one another route; a track that
never left the plan ran out of time on it (slow or hovering). Measured on
the shipped CfC-NCP's urban timeouts (2026-11-30): 9 of 13 missed a turn
(a 17-27 m detour 8 s on), in 5 of them with the goal 7-18 m away and
63-85 degrees to the side.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

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
#: A track farther than this (m) from the expert's plan has left it.
OFF_PLAN = 2.5
#: The detour of a track that left the plan is measured this long (s) after it left. On the shipped CfC-NCP's
#: urban timeouts, 8 s parted missed turns (16-27 m) from other routes (-11 to +4 m); at 4 s they overlap.
DETOUR_HORIZON = 8.0
#: A detour (m) at least this long is a missed turn; a shorter one, another route.
MISSED_TURN = 10.0
#: The direction of flight where the track left the plan is taken over this long (s) before.
FLIGHT_DIRECTION_WINDOW = 0.5


def nearest_obstacle(world: WorldSpec, point: np.ndarray, include_ground: bool = True) -> dict[str, Any]:
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
        return {
            "shape": "ground",
            "material": "ground",
            "size": 0.0,
            "distance": float(p[0, 0, 2]),
            "direction": [0.0, 0.0, -1.0],
        }
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
    return {
        "shape": shape,
        "material": MATERIALS[material],
        "size": size,
        "distance": distance,
        "direction": direction.tolist(),
    }


def _bearing(direction_xy: np.ndarray, angle: float) -> float:
    """Degrees in (-180, 180] from ``angle`` to the horizontal direction (counter-clockwise positive)."""
    b = math.degrees(math.atan2(direction_xy[1], direction_xy[0]) - angle)
    return (b + 180.0) % 360.0 - 180.0


def _side(values: np.ndarray, bearing: float | None, dead_band: float) -> str | None:
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
    expert: Any | None = None,
    window: float = 2.0,
    hfov_deg: float = 90.0,
) -> dict[str, Any]:
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
    bearing_velocity = (
        None if flat or speed < 1e-3 else round(_bearing(towards, math.atan2(velocity[1], velocity[0])), 1)
    )
    last = commands[-max(1, int(round(TURN_WINDOW / dt))) :]
    report: dict[str, Any] = {
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


def summarize_crashes(reports: Sequence[dict[str, Any]], hfov_deg: float = 90.0, window: float = 2.0) -> dict[str, Any]:
    """Counts and medians over a cell's crash reports (for tables).

    Bearings split into ``ahead`` (within 30 degrees of the heading), ``side``
    (30 degrees to the camera's half field of view) and ``out_of_view``.
    ``expert_disagreed``: crashes where the expert's yaw rate differed from
    the learner's by more than :data:`YAW_GAP` for at least half of ``window``.
    """
    n = len(reports)
    materials: dict[str, int] = {}
    for r in reports:
        materials[r["material"]] = materials.get(r["material"], 0) + 1
    bearings = [abs(r["bearing_heading"]) for r in reports if r.get("bearing_heading") is not None]
    # A report knows whether its obstacle was in the camera's view (``in_view``,
    # judged with the camera that flew); ``hfov_deg`` serves older reports.
    in_view = [
        r["in_view"] if r.get("in_view") is not None else abs(r["bearing_heading"]) <= hfov_deg / 2
        for r in reports
        if r.get("bearing_heading") is not None
    ]
    gaps = [r["yaw_rate_gap"] for r in reports if r.get("yaw_rate_gap") is not None]
    disagreeing = [r["disagreeing_seconds"] for r in reports if r.get("disagreeing_seconds") is not None]

    def median(xs: Sequence[float]) -> float | None:
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


def _length(points: np.ndarray) -> float:
    """Length (m) of a polyline ``[P, 2]``."""
    return float(np.linalg.norm(np.diff(points, axis=0), axis=1).sum()) if len(points) > 1 else 0.0


def timeout_report(
    world: WorldSpec,
    positions: np.ndarray,
    dt: float,
    expert: Any,
    off_plan: float = OFF_PLAN,
    horizon: float = DETOUR_HORIZON,
) -> dict[str, Any]:
    """Diagnose one timeout from the track ``positions`` ``[T, 2 or 3]``.

    One position per ``dt`` s, the last where time ran out.

    ``expert`` is a :class:`~lnn_nav.sim.expert.PrivilegedExpert` of this
    world; its plan from the world's start is the way the track is judged
    against, and its plan from a point is the way left from there. Fields:

    * ``kind``: ``missed_turn`` (left the plan and ``horizon`` s later the way
      to the goal had grown by at least :data:`MISSED_TURN`), ``other_route``
      (left it at a smaller cost) or ``on_plan`` (never left it: too slow);
    * ``left_plan_at`` (s), and there ``goal_distance`` (m) and
      ``goal_bearing`` (degrees from the direction of flight, left positive);
    * ``detour``: flown over the ``horizon`` plus the way left after it, less
      the way left when it strayed (m);
    * ``plan_length`` (from the start), ``plan_left`` (from where time ran out)
      and ``hovering_seconds`` (time under :data:`HOVER_SPEED`).
    """
    track = np.asarray(positions, dtype=np.float64)
    if track.ndim != 2 or track.shape[1] not in (2, 3) or len(track) < 2:
        raise ValueError("positions must be [T, 2] or [T, 3] with T >= 2")
    track = track[:, :2]

    def way_left(xy: np.ndarray) -> float:
        return _length(expert.path((float(xy[0]), float(xy[1]))))

    plan = expert.path((float(world.start[0]), float(world.start[1])))
    away, _ = cKDTree(plan).query(track)
    speed = np.linalg.norm(np.diff(track, axis=0), axis=1) / dt
    report: dict[str, Any] = {
        "kind": "on_plan",
        "left_plan_at": None,
        "goal_distance": None,
        "goal_bearing": None,
        "detour": None,
        "plan_length": round(_length(plan), 1),
        "plan_left": round(way_left(track[-1]), 1),
        "hovering_seconds": round(float((speed < HOVER_SPEED).sum() * dt), 2),
    }
    strayed = np.flatnonzero(away > off_plan)
    if strayed.size == 0:
        return report
    i = int(strayed[0])
    j = min(i + max(1, int(round(horizon / dt))), len(track) - 1)
    detour = way_left(track[j]) + _length(track[i : j + 1]) - way_left(track[i])
    flight = track[i] - track[max(i - max(1, int(round(FLIGHT_DIRECTION_WINDOW / dt))), 0)]
    to_goal = np.asarray(world.goal[:2], dtype=np.float64) - track[i]
    bearing = None
    if float(np.linalg.norm(flight)) > 1e-6:
        bearing = round(_bearing(to_goal, math.atan2(flight[1], flight[0])), 1)
    report.update(
        kind="missed_turn" if detour >= MISSED_TURN else "other_route",
        left_plan_at=round(i * dt, 2),
        goal_distance=round(float(np.linalg.norm(to_goal)), 1),
        goal_bearing=bearing,
        detour=round(detour, 1),
    )
    return report


def summarize_timeouts(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Counts and medians over a cell's timeout reports (for tables).

    The goal's distance and bearing are the missed turns' (where the goal
    input said "turn" and the drone did not); the rest are over all timeouts.
    """

    def median(xs: Sequence[float | None]) -> float | None:
        present = [x for x in xs if x is not None]
        return float(np.median(present)) if present else None

    missed = [r for r in reports if r.get("kind") == "missed_turn"]
    return {
        "timeouts": len(reports),
        "missed_turn": len(missed),
        "other_route": sum(r.get("kind") == "other_route" for r in reports),
        "on_plan": sum(r.get("kind") == "on_plan" for r in reports),
        "median_detour": median([r["detour"] for r in missed]),
        "median_goal_distance": median([r["goal_distance"] for r in missed]),
        "median_goal_bearing": median([abs(r["goal_bearing"]) for r in missed if r["goal_bearing"] is not None]),
        "median_plan_left": median([r.get("plan_left") for r in reports]),
        "median_hovering": median([r.get("hovering_seconds") for r in reports]),
    }
