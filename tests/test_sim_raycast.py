"""The C++ CPU ray caster renders the Warp kernel's frames bit for bit, and falls back to Warp when it cannot build."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from lnn_nav.sim import raycast
from lnn_nav.sim.camera import CameraConfig
from lnn_nav.sim.presets import make_world
from lnn_nav.sim.render import Renderer
from lnn_nav.sim.world import MATERIAL_ID, WorldSpec

# Only a machine without a compiler skips; where one exists a source that fails to build fails the tests.
needs_compiler = pytest.mark.skipif(not raycast.compiler_found(), reason="no C++ compiler on PATH")


def both(worlds: WorldSpec | list[WorldSpec], camera: CameraConfig) -> tuple[Renderer, Renderer]:
    assert raycast.load() is not None, f"the C++ caster did not build: {raycast.build_error()}"
    cpp = Renderer(worlds, camera, device="cpu")
    raycast.set_reference_render(True)
    try:
        warp = Renderer(worlds, camera, device="cpu")
    finally:
        raycast.set_reference_render(False)
    assert cpp.uses_cpp and not warp.uses_cpp
    return cpp, warp


def tie_world(**primitives) -> WorldSpec:  # type: ignore[no-untyped-def]
    """A small test world holding only ``primitives`` (WorldSpec keyword arguments)."""
    return WorldSpec(kind="test", seed=0, bounds=(-20, 20, -20, 20), start=(0, 0, 1, 0), goal=(15, 0, 1), **primitives)


def poses(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Poses along the worlds' corridors, some rolled and pitched, some low and high."""
    rng = np.random.default_rng(seed)
    pos = np.c_[rng.uniform(-5, 45, n), rng.uniform(-8, 8, n), rng.uniform(0.3, 6.0, n)]
    yaw, roll, pitch = rng.uniform(-np.pi, np.pi, n), rng.uniform(-0.4, 0.4, n), rng.uniform(-0.5, 0.5, n)
    cy, sy = np.cos(yaw / 2), np.sin(yaw / 2)
    cr, sr = np.cos(roll / 2), np.sin(roll / 2)
    cp, sp = np.cos(pitch / 2), np.sin(pitch / 2)
    quat = np.c_[
        cr * cp * cy + sr * sp * sy,
        sr * cp * cy - cr * sp * sy,
        cr * sp * cy + sr * cp * sy,
        cr * cp * sy - sr * sp * cy,
    ]
    return pos, quat


def assert_same(a, b) -> None:  # type: ignore[no-untyped-def]
    for name in ("rgb", "depth", "segmentation"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.shape == y.shape and x.dtype == y.dtype
        assert np.array_equal(x, y), f"{name} differs at {np.count_nonzero(x != y)} of {x.size} values"


@needs_compiler
@pytest.mark.parametrize("size", [(64, 48), (128, 96)])
def test_same_frames_as_warp_in_every_condition(size: tuple[int, int]) -> None:
    """Forest and urban worlds under the OOD presets, several worlds in one launch, poses all around."""
    worlds = [
        make_world("forest", 11),
        make_world("urban", 12),
        make_world("forest", 13, "fog"),
        make_world("urban", 14, "dusk"),
        make_world("forest", 15, "winter"),
        make_world("urban", 16, "fall"),
        make_world("forest", 17, "dense_forest"),
    ]
    cpp, warp = both(worlds, CameraConfig(width=size[0], height=size[1]))
    pos, quat = poses(21, seed=size[0])
    ids = np.arange(21) % len(worlds)
    assert_same(cpp.render(pos, quat, ids), warp.render(pos, quat, ids))


def wild_poses(world: WorldSpec, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Poses anywhere over a world, any attitude (looking straight down or up, rolled on its side), a third
    of them inside the canopies and against the trunks."""
    rng = np.random.default_rng(seed)
    x0, x1, y0, y1 = world.bounds
    pos = np.c_[rng.uniform(x0, x1, n), rng.uniform(y0, y1, n), rng.uniform(0.05, 12.0, n)]
    if len(world.spheres):
        near = rng.choice(len(world.spheres), n // 3)
        pos[: n // 3] = world.spheres[near, :3] + rng.normal(0, 0.3, (n // 3, 3))
    if len(world.cylinders):
        near = rng.choice(len(world.cylinders), n // 6)
        c = world.cylinders[near]
        angle = rng.uniform(0, 2 * np.pi, n // 6)
        gap = c[:, 4] + 0.05  # 5 cm from the bark
        pos[n // 3 : n // 3 + n // 6] = np.c_[
            c[:, 0] + gap * np.cos(angle), c[:, 1] + gap * np.sin(angle), rng.uniform(0.3, 3, n // 6)
        ]
    quat = rng.normal(size=(n, 4))
    quat[: n // 2, 1:3] *= 0.2  # half of them near level
    return pos, quat / np.linalg.norm(quat, axis=1, keepdims=True)


@needs_compiler
@pytest.mark.parametrize("width", [8, 5, 1])
def test_columns_of_rays_cast_the_walks_frames(width: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Columns of rays sharing a candidate list (the default) find every ray's hit the grid walk finds, bit
    for bit, from any pose: hundreds of cameras in forests, a dense forest and a city."""
    worlds = [make_world("forest", 51), make_world("urban", 52), make_world("forest", 53, "dense_forest")]
    cam = CameraConfig(width=128, height=96)
    monkeypatch.setenv("LNN_NAV_RAY_COLUMN", "0")
    walk = Renderer(worlds, cam, device="cpu")
    monkeypatch.setenv("LNN_NAV_RAY_COLUMN", str(width))
    columns = Renderer(worlds, cam, device="cpu")
    assert walk.uses_cpp and columns.uses_cpp, raycast.build_error()
    for k, world in enumerate(worlds):
        pos, quat = wild_poses(world, 90, seed=k + 10 * width)
        ids = np.full(len(pos), k)
        assert_same(columns.render(pos, quat, ids), walk.render(pos, quat, ids))


@needs_compiler
def test_a_camera_partly_not_finite_is_walked(monkeypatch: pytest.MonkeyPatch) -> None:
    """A NaN in the camera's x or y: the walk still hits boxes (Warp's min/max skip NaN slabs); the columns'
    cheap tests would drop every primitive, so such a camera is walked."""
    cam = CameraConfig(width=64, height=48)
    monkeypatch.setenv("LNN_NAV_RAY_COLUMN", "0")
    walk = Renderer(make_world("urban", 52), cam, device="cpu")
    monkeypatch.setenv("LNN_NAV_RAY_COLUMN", "8")
    columns = Renderer(make_world("urban", 52), cam, device="cpu")
    pos = np.array([[np.nan, 0.0, 20.0], [0.0, np.nan, 20.0], [np.nan, np.nan, np.nan], [np.inf, 0.0, 2.0]])
    quat = np.tile([np.cos(0.2), 0.0, np.sin(0.2), 0.0], (4, 1))
    a, b = columns.render(pos, quat), walk.render(pos, quat)
    assert_same(a, b)
    assert (a.segmentation[0] == MATERIAL_ID["asphalt"] + 1).any()  # the road box: the case that differed


def test_column_width_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LNN_NAV_RAY_COLUMN", raising=False)
    assert raycast.column_width() == 8
    monkeypatch.setenv("LNN_NAV_RAY_COLUMN", "0")
    assert raycast.column_width() == 0
    for bad in ("-1", "wide", "4097", str(2**31)):
        monkeypatch.setenv("LNN_NAV_RAY_COLUMN", bad)
        with pytest.raises(ValueError, match="LNN_NAV_RAY_COLUMN"):
            raycast.column_width()


@needs_compiler
def test_same_rows_of_a_band() -> None:
    """A pool renders one frame in bands of rows: each band is the whole frame's rows, as with Warp."""
    cam = CameraConfig(width=64, height=48)
    cpp, warp = both(make_world("forest", 21), cam)
    pos, quat = poses(3, seed=5)
    whole = warp.render(pos, quat)
    for rows in ((0, 17), (17, 48), (40, 41)):
        band = cpp.render(pos, quat, rows=rows)
        for name in ("rgb", "depth", "segmentation"):
            assert np.array_equal(getattr(band, name), getattr(whole, name)[:, rows[0] : rows[1]])


@needs_compiler
def test_launches_of_other_sizes_interleaved() -> None:
    """Each batch size and band is its own recorded launch; going back to an earlier one after others were
    made must render from the same scene (its arguments point into arrays kept for the upload)."""
    cam = CameraConfig(width=48, height=36)
    cpp, warp = both([make_world("forest", 41), make_world("urban", 42)], cam)
    pos, quat = poses(4, seed=9)
    for n, rows in ((1, None), (2, None), (4, (3, 20)), (1, None), (3, None), (2, None), (4, (3, 20))):
        ids = np.arange(n) % 2
        assert_same(cpp.render(pos[:n], quat[:n], ids, rows=rows), warp.render(pos[:n], quat[:n], ids, rows=rows))


@needs_compiler
def test_the_switch_applies_to_renderers_made_after_it() -> None:
    cam = CameraConfig(width=32, height=24)
    cpp = Renderer(make_world("forest", 43), cam, device="cpu")
    assert cpp.uses_cpp, raycast.build_error()
    pos, quat = poses(2, seed=3)
    first = cpp.render(pos[:1], quat[:1])
    raycast.set_reference_render(True)
    try:
        later = Renderer(make_world("forest", 43), cam, device="cpu")
        assert cpp.uses_cpp and not later.uses_cpp
        both_sizes = cpp.render(pos, quat)  # a new launch of the renderer made before: still C++
        assert_same(both_sizes, later.render(pos, quat))
        assert_same(cpp.render(pos[:1], quat[:1]), first)
    finally:
        raycast.set_reference_render(False)


@needs_compiler
@pytest.mark.parametrize("cell_size", [0.6, 4.0])
def test_same_frames_for_other_cell_sizes_and_from_outside_and_above(cell_size: float) -> None:
    world = make_world("forest", 44)
    cam = CameraConfig(width=48, height=36)
    cpp = Renderer(world, cam, device="cpu", cell_size=cell_size)
    assert cpp.uses_cpp, raycast.build_error()
    raycast.set_reference_render(True)
    try:
        warp = Renderer(world, cam, device="cpu", cell_size=cell_size)
    finally:
        raycast.set_reference_render(False)
    pos = np.array([[-80.0, 0.0, 2.0], [20.0, 0.0, 35.0], [20.0, 3.0, 0.05], [150.0, 90.0, 12.0]])
    look_back = np.array([np.cos(1.4), 0.0, 0.0, np.sin(1.4)])
    down = np.array([np.cos(0.5), 0.0, np.sin(0.5), 0.0])
    quat = np.array([[1.0, 0.0, 0.0, 0.0], down, [1.0, 0.0, 0.0, 0.0], look_back])
    assert_same(cpp.render(pos, quat), warp.render(pos, quat))


@needs_compiler
def test_equal_hits_resolve_as_warp_does() -> None:
    """Two primitives hit at exactly the same distance: Warp keeps the first it tested (the one listed first in a
    cell). The caster visits a cell's items from the lowest up, so it must break ties the same way."""
    world = tie_world(
        # Two boxes sharing the face x = 9: the first (listed first) spans z 1-4, the second z 0-2, so the
        # caster tests the second first; where both are hit (z 1-2) the first must win, as in Warp.
        boxes=[[10.0, 0.0, 2.5, 1.0, 3.0, 1.5, 0.0], [10.0, 0.0, 1.0, 1.0, 3.0, 1.0, 0.0]],
        box_materials=[MATERIAL_ID["concrete"], MATERIAL_ID["glass"]],
        # The same trunk twice in two materials.
        cylinders=[[6.0, 2.0, 0.0, 3.0, 0.4]] * 2,
        cylinder_materials=[MATERIAL_ID["bark"], MATERIAL_ID["undergrowth"]],
    )
    cam = CameraConfig(width=64, height=48, offset=(0.0, 0.0, 0.0))
    cpp, warp = both(world, cam)
    pos = np.array([[0.0, 0.0, 1.5], [0.0, 0.5, 2.0], [3.0, 1.0, 0.6]])
    quat = np.array([[1.0, 0.0, 0.0, 0.0], [np.cos(0.05), 0.0, 0.0, np.sin(0.05)], [1.0, 0.0, 0.0, 0.0]])
    a, b = cpp.render(pos, quat), warp.render(pos, quat)
    assert_same(a, b)
    assert a.segmentation[0, 24, 32] == MATERIAL_ID["concrete"] + 1  # straight ahead at z 1.5: the tie
    seen = set(np.unique(a.segmentation).tolist())
    assert MATERIAL_ID["glass"] + 1 in seen  # below z 1 only the second box
    assert MATERIAL_ID["bark"] + 1 in seen and MATERIAL_ID["undergrowth"] + 1 not in seen


@needs_compiler
def test_a_tie_between_kinds_goes_to_the_first_in_the_cell_as_in_warp() -> None:
    """A cell lists cylinders before boxes (the world's order), whatever their codes: a trunk top and a box
    top at the same height, seen from above, tie; Warp keeps the trunk (tested first) though the box's
    code is lower."""
    world = tie_world(
        cylinders=[[15.0, 15.0, 0.0, 2.0, 0.3], [0.0, 0.0, 0.0, 2.0, 0.5]],  # the second: code 4
        cylinder_materials=[MATERIAL_ID["bark"], MATERIAL_ID["bark"]],
        boxes=[[0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0]],  # code 1, its top at z = 2 as the trunk's
        box_materials=[MATERIAL_ID["concrete"]],
    )
    cam = CameraConfig(width=32, height=24, offset=(0.0, 0.0, 0.0))
    cpp, warp = both(world, cam)
    down = np.array([[np.cos(np.pi / 4), 0.0, np.sin(np.pi / 4), 0.0]])  # pitched 90 degrees down
    a, b = cpp.render(np.array([[0.0, 0.0, 3.0]]), down), warp.render(np.array([[0.0, 0.0, 3.0]]), down)
    assert_same(a, b)
    assert a.segmentation[0, 12, 16] == MATERIAL_ID["bark"] + 1  # the trunk's top, not the box's
    # Seen at a slant the rays are cast in columns (the trunk and the box are candidates of one list, the box
    # nearer the camera): the tie must still go to the trunk, as the walk gives it.
    slant = np.array([[np.cos(0.35), 0.0, np.sin(0.35), 0.0]])  # pitched 40 degrees down
    a, b = cpp.render(np.array([[-2.5, 0.0, 3.5]]), slant), warp.render(np.array([[-2.5, 0.0, 3.5]]), slant)
    assert_same(a, b)
    assert (a.segmentation == MATERIAL_ID["bark"] + 1).sum() >= 10


@needs_compiler
def test_empty_world_and_set_world() -> None:
    empty = WorldSpec(kind="test", seed=0, bounds=(-5, 5, -5, 5), start=(0, 0, 1, 0), goal=(4, 0, 1))
    cpp, warp = both(empty, CameraConfig(width=32, height=24))
    pos, quat = poses(2, seed=1)
    assert_same(cpp.render(pos, quat), warp.render(pos, quat))
    forest = make_world("forest", 31)
    cpp.set_world(0, forest)
    warp.set_world(0, forest)
    assert_same(cpp.render(pos, quat), warp.render(pos, quat))


def test_sorted_cells_keeps_each_cells_items() -> None:
    start = np.array([0, 3, 3, 5], np.int32)
    items = np.array([9, 4, 6, 2, 1], np.int32)
    z = np.array([[2.0, 3.0], [0.0, 5.0], [2.0, 2.5], [1.0, 2.0], [0.5, 1.0]], np.float32)
    # items: kind in the low two bits (0 cylinder, 1 box, 2 sphere), index above them
    cyl = np.array([[1.0, 2.0, 0.0, 3.0, 0.5], [4.0, 5.0, 0.0, 3.0, 0.25]], np.float32)
    box = np.array([[-1.0, -2.0, 1.0, 3.0, 4.0, 1.0, 1.0, 0.0]] * 3, np.float32)
    sph = np.array([[7.0, 8.0, 2.0, 1.5]] * 3, np.float32)
    out = raycast.sorted_cells(start, items, z, cyl, box, sph)
    assert out["sorted_items"].tolist() == [4, 9, 6, 1, 2]  # by lowest point, ties in list order
    assert out["sorted_z"][:, 0].tolist() == [0.0, 2.0, 2.0, 0.5, 1.0]
    assert out["sorted_rank"].tolist() == [1, 0, 2, 4, 3]
    # Footprint discs: centre, (grown) radius and its square; items 4 = cylinder 1, 9 = box 2, 6 = sphere 1,
    # 1 = box 0, 2 = sphere 0.
    disc = out["sorted_disc"]
    grown = [r * 1.001 + 1e-4 for r in (0.25, 5.0, 1.5, 5.0, 1.5)]  # a box's radius: its half-diagonal
    np.testing.assert_allclose(disc[:, 2], grown, rtol=1e-6)
    np.testing.assert_allclose(disc[:, 3], np.square(grown), rtol=1e-6)
    assert disc[:, :2].tolist() == [[4.0, 5.0], [-1.0, -2.0], [7.0, 8.0], [-1.0, -2.0], [7.0, 8.0]]
    # An item naming no primitive (an empty scene's padding row) is never rejected.
    assert (raycast.item_discs(np.array([0], np.int32), cyl[:0], box[:0], sph[:0])[0, 2:] == np.inf).all()


def test_no_compiler_falls_back_to_warp(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Without a C++ compiler the renderer says why once and renders with Warp."""
    code = (
        "import numpy as np\n"
        "from lnn_nav.sim import raycast\n"
        "from lnn_nav.sim.camera import CameraConfig\n"
        "from lnn_nav.sim.presets import make_world\n"
        "from lnn_nav.sim.render import Renderer\n"
        "r = Renderer(make_world('forest', 3), CameraConfig(width=16, height=12), device='cpu')\n"
        "out = r.render(np.array([[0.0, 0.0, 2.0]]), np.array([[1.0, 0.0, 0.0, 0.0]]))\n"
        "print('uses_cpp', r.uses_cpp, int(out.segmentation.max()) > 0)\n"
    )
    env = dict(os.environ, CXX=str(tmp_path / "no-such-compiler"), LNN_NAV_KERNEL_CACHE=str(tmp_path / "cache"))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "uses_cpp False True" in done.stdout
    assert "the C++ ray caster did not build, rendering with Warp" in done.stderr
    assert "no-such-compiler" in done.stderr


def test_the_source_is_installed_with_the_package() -> None:
    """The caster is built on first use where the package is installed (pip, colcon): its source ships."""
    import ast
    from pathlib import Path

    setup = Path(__file__).resolve().parents[1] / "setup.py"
    call = next(
        n.value
        for n in ast.parse(setup.read_text()).body
        if isinstance(n, ast.Expr) and isinstance(n.value, ast.Call) and getattr(n.value.func, "id", "") == "setup"
    )
    package_data = ast.literal_eval(next(k.value for k in call.keywords if k.arg == "package_data"))
    assert any(raycast.SOURCE.match(pattern) for pattern in package_data["lnn_nav.sim"])
