"""Signed distances and collision checks against cylinders, rotated boxes, spheres, ground and bounds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lnn_nav.sim.collision import (
    CollisionChecker,
    check_collisions,
    collision_checker,
    out_of_bounds,
    signed_distance,
)
from lnn_nav.sim.world import WorldSpec

R = 0.25  # drone radius
EPS = 1e-3


def world_with(cylinders=(), boxes=(), spheres=(), bounds=(-50.0, 50.0, -50.0, 50.0), ceiling=30.0) -> WorldSpec:
    cyl, box, sph = (np.asarray(a, dtype=float) for a in (cylinders, boxes, spheres))
    return WorldSpec(
        kind="test",
        seed=0,
        bounds=bounds,
        start=(0.0, 0.0, 2.0, 0.0),
        goal=(10.0, 0.0, 2.0),
        cylinders=cyl,
        cylinder_materials=np.ones(len(cyl.reshape(-1, 5))),
        boxes=box,
        box_materials=np.full(len(box.reshape(-1, 7)), 4),
        spheres=sph,
        sphere_materials=np.full(len(sph.reshape(-1, 4)), 2),
        ceiling=ceiling,
    )


def collided(world: WorldSpec, point) -> bool:
    return bool(check_collisions(world, np.array([point], dtype=float), R)[0][0])


def random_world(seed: int, n: int = 60) -> WorldSpec:
    rng = np.random.default_rng(seed)
    xy = lambda k: rng.uniform(-20, 20, (k, 2))  # noqa: E731
    z0 = rng.uniform(0, 3, n)
    cyl = np.c_[xy(n), z0, z0 + rng.uniform(1, 10, n), rng.uniform(0.1, 1.0, n)]
    box = np.c_[xy(n), rng.uniform(0, 6, n), rng.uniform(0.2, 4, (n, 3)), rng.uniform(-math.pi, math.pi, n)]
    sph = np.c_[xy(n), rng.uniform(0, 10, n), rng.uniform(0.3, 3, n)]
    return world_with(cyl, box, sph, bounds=(-25, 25, -25, 25))


def reference_distance(world: WorldSpec, p: np.ndarray) -> float:
    """One point, one primitive at a time, in plain Python: the brute-force reference."""
    x, y, z = p
    best = z
    for cx, cy, z0, z1, r in world.cylinders:
        radial = math.hypot(x - cx, y - cy) - r
        axial = max(z0 - z, z - z1)
        if radial <= 0 and axial <= 0:
            best = min(best, max(radial, axial))
        else:
            best = min(best, math.hypot(max(radial, 0), max(axial, 0)))
    for cx, cy, cz, hx, hy, hz, yaw in world.boxes:
        lx = math.cos(yaw) * (x - cx) + math.sin(yaw) * (y - cy)
        ly = -math.sin(yaw) * (x - cx) + math.cos(yaw) * (y - cy)
        q = [abs(lx) - hx, abs(ly) - hy, abs(z - cz) - hz]
        best = min(best, math.sqrt(sum(max(v, 0) ** 2 for v in q)) + min(max(q), 0))
    for cx, cy, cz, r in world.spheres:
        best = min(best, math.dist((x, y, z), (cx, cy, cz)) - r)
    return best


# -- hand-placed cases -------------------------------------------------------------
def test_cylinder_side_collides_just_inside_the_radius():
    world = world_with(cylinders=[[0.0, 0.0, 0.0, 10.0, 0.5]])
    assert collided(world, [0.5 + R - EPS, 0.0, 5.0])
    assert not collided(world, [0.5 + R + EPS, 0.0, 5.0])


def test_cylinder_end_cap_counts():
    world = world_with(cylinders=[[0.0, 0.0, 2.0, 6.0, 0.5]])
    assert collided(world, [0.0, 0.0, 6.0 + R - EPS])  # above the top cap
    assert not collided(world, [0.0, 0.0, 6.0 + R + EPS])
    assert collided(world, [0.0, 0.0, 2.0 - R + EPS])  # below the bottom cap (a raised trunk)
    assert not collided(world, [0.0, 0.0, 2.0 - R - EPS])


def test_cylinder_rim_distance_is_diagonal():
    world = world_with(cylinders=[[0.0, 0.0, 0.0, 6.0, 0.5]])
    p = np.array([[0.5 + 0.3, 0.0, 6.0 + 0.4]])
    assert signed_distance(world, p, include_ground=False)[0] == pytest.approx(0.5)


def test_box_face_collides_just_inside_the_radius():
    world = world_with(boxes=[[0.0, 0.0, 5.0, 2.0, 1.0, 5.0, 0.0]])
    assert collided(world, [2.0 + R - EPS, 0.0, 5.0])
    assert not collided(world, [2.0 + R + EPS, 0.0, 5.0])
    assert collided(world, [0.0, 1.0 + R - EPS, 5.0])
    assert not collided(world, [0.0, 1.0 + R + EPS, 5.0])


def test_rotated_box_corner_is_where_the_rotation_puts_it():
    # A 2 x 2 m box turned 45 degrees: its corners lie on the axes at sqrt(2) m.
    world = world_with(boxes=[[0.0, 0.0, 5.0, 1.0, 1.0, 1.0, math.pi / 4]])
    corner = math.sqrt(2.0)
    assert collided(world, [corner + R - EPS, 0.0, 5.0])
    assert not collided(world, [corner + R + EPS, 0.0, 5.0])
    # Inside the unrotated footprint's corner region but clear of the rotated box.
    assert not collided(world, [0.95, 0.95, 5.0])
    assert signed_distance(world, np.array([[0.95, 0.95, 5.0]]), include_ground=False)[0] == pytest.approx(
        0.95 * math.sqrt(2.0) - 1.0
    )


def test_sphere_collides_just_inside_the_radius():
    world = world_with(spheres=[[3.0, -2.0, 6.0, 1.5]])
    direction = np.array([1.0, 2.0, -2.0]) / 3.0
    assert collided(world, np.array([3.0, -2.0, 6.0]) + (1.5 + R - EPS) * direction)
    assert not collided(world, np.array([3.0, -2.0, 6.0]) + (1.5 + R + EPS) * direction)


def test_ground_collides_below_the_radius():
    world = world_with()
    assert collided(world, [0.0, 0.0, R - EPS])
    assert not collided(world, [0.0, 0.0, R + EPS])


def test_leaving_the_bounds_or_climbing_above_the_ceiling_is_out_of_bounds():
    world = world_with(bounds=(-10.0, 10.0, -5.0, 5.0), ceiling=20.0)
    pos = np.array([[0, 0, 2], [10.1, 0, 2], [-10.1, 0, 2], [0, 5.1, 2], [0, -5.1, 2], [0, 0, 20.1], [9.9, 4.9, 19.9]])
    _, oob = check_collisions(world, pos.astype(float), R)
    np.testing.assert_array_equal(oob, [False, True, True, True, True, True, False])
    np.testing.assert_array_equal(out_of_bounds(world, pos.astype(float)), oob)


@pytest.mark.parametrize(
    "world, inside",
    [
        (world_with(cylinders=[[0, 0, 0, 10, 1.0]]), [0.2, 0.0, 5.0]),
        (world_with(boxes=[[0, 0, 5, 2, 1, 5, 0.3]]), [0.5, 0.2, 5.0]),
        (world_with(spheres=[[0, 0, 5, 2.0]]), [0.0, 0.5, 5.5]),
    ],
)
def test_signed_distance_is_negative_inside(world, inside):
    assert signed_distance(world, np.array([inside]))[0] < 0


def test_empty_world_distance_is_height_above_ground():
    pts = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, -1.0]])
    np.testing.assert_array_equal(signed_distance(world_with(), pts), [3.0, -1.0])
    assert np.isinf(signed_distance(world_with(), pts, include_ground=False)).all()


# -- against the brute-force reference -------------------------------------------------
def test_signed_distance_matches_brute_force_for_random_points():
    world = random_world(0)
    rng = np.random.default_rng(1)
    pts = rng.uniform([-25, -25, -1], [25, 25, 14], (300, 3))
    expected = [reference_distance(world, p) for p in pts]
    np.testing.assert_allclose(signed_distance(world, pts), expected, atol=1e-9)


@pytest.mark.parametrize("radius", [0.0, 0.25, 1.0, 2.5])  # 2.5 m exceeds the grid margin: exact fallback
def test_grid_check_agrees_with_signed_distance(radius):
    world = random_world(2, n=200)
    pts = np.random.default_rng(3).uniform([-30, -30, -1], [30, 30, 14], (5000, 3))
    hit, _ = check_collisions(world, pts, radius)
    np.testing.assert_array_equal(hit, signed_distance(world, pts) < radius)


def test_checker_is_reused_for_the_same_world_and_rebuilt_for_new_geometry():
    world = random_world(4)
    first = collision_checker(world)
    assert collision_checker(world) is first
    world.spheres = np.zeros((0, 4))
    world.sphere_materials = np.zeros(0, dtype=np.int32)
    assert collision_checker(world) is not first


def test_checker_refuses_a_bad_shape():
    with pytest.raises(ValueError, match=r"\[P, 3\]"):
        CollisionChecker(world_with()).check(np.zeros((4, 2)), R)
