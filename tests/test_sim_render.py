"""Warp renderer, camera model and camera effects: geometry, shading knobs, batching, process pool."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lnn_nav.sim.camera import CameraConfig, camera_pose, project
from lnn_nav.sim.camera_effects import CameraEffects, apply_camera_effects
from lnn_nav.sim.render import Renderer, fog_colour_srgb
from lnn_nav.sim.render_pool import RenderPool
from lnn_nav.sim.world import MATERIAL_ID, Conditions, WorldSpec

# Camera at the body origin so poses below are the optical centre itself.
CAM = CameraConfig(offset=(0.0, 0.0, 0.0))
LEVEL = np.array([[1.0, 0.0, 0.0, 0.0]])


def make_world(**kwargs) -> WorldSpec:
    return WorldSpec(kind="test", seed=0, bounds=(-50, 50, -50, 50), start=(0, 0, 2, 0), goal=(20, 0, 2), **kwargs)


def small_forest() -> WorldSpec:
    rng = np.random.default_rng(3)
    xy = rng.uniform(-20, 20, (60, 2))
    trunks = np.c_[xy, np.zeros(60), rng.uniform(6, 10, 60), rng.uniform(0.15, 0.35, 60)]
    canopies = np.c_[xy, trunks[:, 3], rng.uniform(1.5, 2.5, 60)]
    return make_world(
        cylinders=trunks,
        cylinder_materials=np.full(60, MATERIAL_ID["bark"]),
        spheres=canopies,
        sphere_materials=np.full(60, MATERIAL_ID["leaves"]),
        boxes=[[8.0, -6.0, 2.0, 2.0, 1.0, 2.0, 0.5]],
        box_materials=[MATERIAL_ID["concrete"]],
    )


def yaw_quat(yaw: float) -> np.ndarray:
    return np.array([math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)])


def render_one(world: WorldSpec, position, quat=LEVEL, camera: CameraConfig = CAM):
    return Renderer(world, camera).render(np.array([position], float), np.reshape(quat, (1, 4)))


def test_cylinder_ahead_is_centred_with_z_depth_and_bark_class():
    world = make_world(cylinders=[[10.0, 0.0, 0.0, 8.0, 0.5]], cylinder_materials=[MATERIAL_ID["bark"]])
    out = render_one(world, [0.0, 0.0, 2.0])
    _, _, cx, cy = CAM.intrinsics()
    row = int(cy)
    cols = np.flatnonzero(out.segmentation[0, row] == MATERIAL_ID["bark"] + 1)
    assert len(cols) > 2
    assert (cols.min() + cols.max()) / 2 == pytest.approx(cx, abs=0.5)
    centre = [int(math.floor(cx)), int(math.ceil(cx))]
    np.testing.assert_allclose(out.depth[0, row, centre], 9.5, atol=0.05)


def test_box_appears_where_project_predicts():
    cx_, cy_, cz_, hx, hy, hz, yaw = 12.0, 3.0, 2.5, 1.0, 0.6, 0.8, 0.4
    world = make_world(boxes=[[cx_, cy_, cz_, hx, hy, hz, yaw]], box_materials=[MATERIAL_ID["concrete"]])
    quat = yaw_quat(0.2)
    out = render_one(world, [0.0, 0.0, 2.0], quat)
    origin, rot = camera_pose(np.array([[0.0, 0.0, 2.0]]), quat[None], CAM)
    local = np.array([[sx * hx, sy * hy, sz * hz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
    c, s = math.cos(yaw), math.sin(yaw)
    corners = np.c_[cx_ + c * local[:, 0] - s * local[:, 1], cy_ + s * local[:, 0] + c * local[:, 1], cz_ + local[:, 2]]
    uv, z = project(corners, origin[0], rot[0], CAM)
    assert np.all(z > 0)
    vs, us = np.nonzero(out.segmentation[0] == MATERIAL_ID["concrete"] + 1)
    # The silhouette of a convex box is the hull of its projected corners; pixel centres inside it are hit.
    assert us.min() == pytest.approx(uv[:, 0].min(), abs=1.0)
    assert us.max() == pytest.approx(uv[:, 0].max(), abs=1.0)
    assert vs.min() == pytest.approx(uv[:, 1].min(), abs=1.0)
    assert vs.max() == pytest.approx(uv[:, 1].max(), abs=1.0)


def test_ground_z_depth_follows_camera_height():
    h = 2.0
    out = render_one(make_world(), [0.0, 0.0, h])
    _, fy, _, cy = CAM.intrinsics()
    for v in (52, 60, 75, 95):
        # Row v looks (v - cy) / fy below the horizon (tangent); the ground point at that
        # depth ratio satisfies z_depth * tan = h, the same for every column of the row.
        expected = h * fy / (v - cy)
        np.testing.assert_allclose(out.depth[0, v], expected, rtol=1e-4)
        assert np.all(out.segmentation[0, v] == MATERIAL_ID["ground"] + 1)


def test_sky_above_horizon_has_far_depth_and_class_zero():
    out = render_one(make_world(), [0.0, 0.0, 2.0])
    _, _, _, cy = CAM.intrinsics()
    sky = slice(0, int(cy))
    assert np.all(out.depth[0, sky] == CAM.far)
    assert np.all(out.segmentation[0, sky] == 0)


def test_fog_pulls_distant_pixels_to_fog_colour():
    clear = make_world()
    foggy = clear.with_conditions(fog_density=0.1)
    row = 50  # ground about 51 m away
    fog = fog_colour_srgb(foggy).astype(float)
    err_clear = np.abs(render_one(clear, [0, 0, 2.0]).rgb[0, row].astype(float) - fog).mean()
    err_foggy = np.abs(render_one(foggy, [0, 0, 2.0]).rgb[0, row].astype(float) - fog).mean()
    assert err_foggy < err_clear
    assert err_foggy < 3.0


def test_season_changes_ground_colour():
    summer = render_one(make_world(), [0, 0, 2.0]).rgb[0, 70:].reshape(-1, 3).mean(0)
    winter = render_one(make_world().with_conditions(season="winter"), [0, 0, 2.0]).rgb[0, 70:].reshape(-1, 3).mean(0)
    assert winter.mean() > summer.mean() + 40  # snow is brighter than grass
    assert summer[1] > summer[2]  # grass is green


def test_same_inputs_give_identical_images():
    world = small_forest()
    pos, quat = np.array([[-15.0, 1.0, 2.0]]), yaw_quat(0.3)[None]
    a = Renderer(world, CAM).render(pos, quat)
    b = Renderer(world, CAM).render(pos, quat)
    assert np.array_equal(a.rgb, b.rgb)
    assert np.array_equal(a.depth, b.depth)
    assert np.array_equal(a.segmentation, b.segmentation)


def test_batched_render_equals_single_renders():
    renderer = Renderer(small_forest(), CAM)
    pos = np.array([[-15.0, 1.0, 2.0], [0.0, -10.0, 3.0], [5.0, 5.0, 1.5]])
    quat = np.stack([yaw_quat(0.3), yaw_quat(2.0), yaw_quat(-1.0)])
    batch = renderer.render(pos, quat)
    for i in range(3):
        single = renderer.render(pos[i : i + 1], quat[i : i + 1])
        assert np.array_equal(batch.rgb[i], single.rgb[0])
        assert np.array_equal(batch.depth[i], single.depth[0])
        assert np.array_equal(batch.segmentation[i], single.segmentation[0])


def test_envs_render_their_own_world():
    tree = make_world(cylinders=[[10.0, 0.0, 0.0, 8.0, 0.5]], cylinder_materials=[MATERIAL_ID["bark"]])
    beacon = make_world(cylinders=[[10.0, 0.0, 0.0, 8.0, 0.5]], cylinder_materials=[MATERIAL_ID["beacon"]])
    renderer = Renderer([tree, beacon], CAM)
    out = renderer.render(np.array([[0, 0, 2.0]] * 2), np.repeat(LEVEL, 2, 0), world_ids=[1, 0])
    centre = out.segmentation[:, int(CAM.intrinsics()[3]), 64]
    assert centre.tolist() == [MATERIAL_ID["beacon"] + 1, MATERIAL_ID["bark"] + 1]
    # One world per env: env i renders world i unless told otherwise.
    default = renderer.render(np.array([[0, 0, 2.0]] * 2), np.repeat(LEVEL, 2, 0))
    assert default.segmentation[:, int(CAM.intrinsics()[3]), 64].tolist() == centre[::-1].tolist()


def test_mesh_backend_agrees_with_grid():
    world = small_forest()
    pos, quat = np.array([[-15.0, 1.0, 2.0]]), yaw_quat(0.3)[None]
    grid = Renderer(world, CAM, backend="grid").render(pos, quat)
    mesh = Renderer(world, CAM, backend="mesh").render(pos, quat)
    # Facets shift silhouettes by a pixel at most.
    assert (grid.segmentation == mesh.segmentation).mean() > 0.97


def test_render_pool_matches_in_process():
    world = small_forest()
    pos = np.array([[-15.0, 1.0, 2.0], [0.0, -10.0, 3.0], [5.0, 5.0, 1.5]])
    quat = np.stack([yaw_quat(0.3), yaw_quat(2.0), yaw_quat(-1.0)])
    expected = Renderer(world, CAM, device="cpu").render(pos, quat)
    with RenderPool(world, CAM, workers=2, device="cpu") as pool:
        got = pool.render(pos, quat)
        again = pool.render(pos[:1], quat[:1])
    assert np.array_equal(got.rgb, expected.rgb)
    assert np.array_equal(got.depth, expected.depth)
    assert np.array_equal(got.segmentation, expected.segmentation)
    # One env, two workers: each renders a band of the frame's rows; the frame is the same to the bit.
    assert np.array_equal(again.rgb[0], expected.rgb[0])
    assert np.array_equal(again.depth[0], expected.depth[0])
    assert np.array_equal(again.segmentation[0], expected.segmentation[0])


def test_a_band_of_rows_is_those_rows_of_the_whole_frame():
    world = small_forest()
    pos, quat = np.array([[-15.0, 1.0, 2.0], [0.0, -10.0, 3.0]]), np.stack([yaw_quat(0.3), yaw_quat(2.0)])
    renderer = Renderer(world, CAM, device="cpu")
    whole = renderer.render(pos, quat)
    for v0, v1 in ((0, 1), (13, 60), (CAM.height - 7, CAM.height)):
        band = renderer.render(pos, quat, rows=(v0, v1))
        assert band.rgb.shape == (2, v1 - v0, CAM.width, 3)
        assert np.array_equal(band.rgb, whole.rgb[:, v0:v1])
        assert np.array_equal(band.depth, whole.depth[:, v0:v1])
        assert np.array_equal(band.segmentation, whole.segmentation[:, v0:v1])
    for bad in ((5, 5), (-1, 4), (0, CAM.height + 1)):
        with pytest.raises(ValueError, match="rows must be"):
            renderer.render(pos, quat, rows=bad)


def test_tilt_moves_horizon_down_by_focal_length_times_tangent():
    def first_ground_row(tilt_deg: float) -> int:
        cam = CameraConfig(offset=(0.0, 0.0, 0.0), tilt_deg=tilt_deg, far=1e5)
        out = render_one(make_world(), [0.0, 0.0, 2.0], camera=cam)
        return int(np.argmax(out.segmentation[0, :, 64] == MATERIAL_ID["ground"] + 1))

    _, fy, _, cy = CAM.intrinsics()
    tilt = 10.0
    # A row is ground once its ray points below horizontal: (v - cy) / fy > tan(tilt).
    expected = math.floor(cy + fy * math.tan(math.radians(tilt))) + 1
    assert first_ground_row(0.0) == math.floor(cy) + 1
    assert first_ground_row(tilt) == expected


def test_intrinsics_match_field_of_view():
    fx, fy, cx, cy = CAM.intrinsics()
    assert 2 * math.degrees(math.atan(CAM.width / 2 / fx)) == pytest.approx(CAM.hfov_deg)
    assert (fx, cx, cy) == (fy, (CAM.width - 1) / 2, (CAM.height - 1) / 2)


def test_camera_effects_are_identity_at_defaults():
    img = np.random.default_rng(0).integers(0, 256, (2, 12, 16, 3), dtype=np.uint8)
    assert CameraEffects().is_identity
    assert np.array_equal(apply_camera_effects(img, Conditions()), img)


def test_camera_noise_has_configured_std():
    img = np.full((64, 64, 3), 128, np.uint8)
    out = CameraEffects(noise_std=0.05)(img, np.random.default_rng(1))
    assert ((out.astype(float) - 128) / 255).std() == pytest.approx(0.05, rel=0.05)


def test_camera_blur_reduces_high_frequency_energy():
    img = np.random.default_rng(2).integers(0, 256, (48, 64, 3), dtype=np.uint8)

    def hf_energy(x: np.ndarray) -> float:
        x = x.astype(float)
        return float((np.diff(x, axis=0) ** 2).mean() + (np.diff(x, axis=1) ** 2).mean())

    assert hf_energy(CameraEffects(blur_sigma=1.5)(img)) < 0.2 * hf_energy(img)


def test_exposure_scales_intensity():
    img = np.full((8, 8, 3), 100, np.uint8)
    assert np.all(CameraEffects(exposure=1.5)(img) == 150)


def test_warp_says_nothing_about_a_cuda_driver_that_is_not_there():
    # Warp's core prints a CUDA-driver warning in every process that initialises it; on a machine
    # without the driver that was a dozen lines per demo. init_warp keeps it out (LNN_NAV_WARP_VERBOSE shows it).
    import ctypes.util
    import subprocess
    import sys

    if ctypes.util.find_library("cuda") is not None:
        pytest.skip("an NVIDIA driver is installed: Warp has no warning to give")
    code = "from lnn_nav.sim.render import init_warp; init_warp(); import warp as wp; print(wp.get_cuda_device_count())"
    quiet = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 0 and quiet.stdout.strip() == "0"
    assert "CUDA" not in quiet.stderr
