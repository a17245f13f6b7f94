"""SDF export: Gazebo worlds that hold exactly the WorldSpec's geometry and conditions."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from lnn_nav.cli import MODULE_COMMANDS, main
from lnn_nav.sim.presets import make_world
from lnn_nav.sim.sdf_export import SYSTEM_PLUGINS, export_world, world_to_sdf
from lnn_nav.sim.world import MATERIALS, SEASON_PALETTES, WorldSpec

REPO = Path(__file__).resolve().parent.parent
WORLDS_DIR = REPO / "sim" / "worlds"
TOL = 1e-4

#: The checked-in examples and the CLI arguments that make them (see sim/README.md).
EXAMPLES = {
    "forest_seed0": ["--world", "forest", "--seed", "0", "--size", "60", "40"],
    "urban_seed0": ["--world", "urban", "--seed", "0"],
}


@pytest.fixture(scope="module")
def forest() -> WorldSpec:
    # A small patch keeps the parse-back fast; the exporter has no size-dependent path.
    return make_world("forest", 3, size=(60.0, 40.0))


@pytest.fixture(scope="module")
def urban() -> WorldSpec:
    return make_world("urban", 3)


def _parse(text: str) -> ET.Element:
    return ET.fromstring(text.encode())


def _floats(text: str | None) -> np.ndarray:
    return np.array([float(v) for v in (text or "").split()])


def _obstacles(root: ET.Element) -> dict[str, list[tuple[int, np.ndarray, str, ET.Element]]]:
    """Per family, ``(spec index, geometry row as in the spec, model name, visual)`` parsed back."""
    out: dict[str, list[tuple[int, np.ndarray, str, ET.Element]]] = {"cylinder": [], "box": [], "sphere": []}
    for model in root.iter("model"):
        name = model.get("name")
        if name == "ground_plane":
            continue
        assert model.findtext("static") == "true", name
        x, y, z, roll, pitch, yaw = _floats(model.findtext("pose"))
        assert roll == 0 and pitch == 0, name
        collision = model.find("link/collision/geometry")
        visual = model.find("link/visual")
        assert collision is not None and visual is not None, f"{name} lacks a collision or a visual"
        assert _shape(collision) == _shape(visual.find("geometry")), f"{name}: collision != visual"
        shape = collision[0]
        index = int(name.rsplit("_", 1)[1])
        if shape.tag == "cylinder":
            r, length = float(shape.findtext("radius")), float(shape.findtext("length"))
            assert yaw == 0
            row = np.array([x, y, z - length / 2, z + length / 2, r])
        elif shape.tag == "box":
            hx, hy, hz = _floats(shape.findtext("size")) / 2
            row = np.array([x, y, z, hx, hy, hz, yaw])
        else:
            assert shape.tag == "sphere" and yaw == 0
            row = np.array([x, y, z, float(shape.findtext("radius"))])
        out[shape.tag].append((index, row, name, visual))
    return out


def _shape(geometry: ET.Element) -> list[tuple[str, str]]:
    return [(e.tag, (e.text or "").strip()) for e in geometry.iter()]


def _colour(visual: ET.Element, tag: str) -> np.ndarray:
    return _floats(visual.findtext(f"material/{tag}"))


# -- structure -------------------------------------------------------------------
def test_export_is_well_formed_sdf_1_9_with_one_named_world(forest):
    root = _parse(world_to_sdf(forest))
    assert root.tag == "sdf" and float(root.get("version")) >= 1.9
    worlds = root.findall("world")
    assert len(worlds) == 1 and worlds[0].get("name") == "forest_seed3"


def test_physics_steps_at_1_ms_in_real_time(forest):
    physics = _parse(world_to_sdf(forest)).find("world/physics")
    assert float(physics.findtext("max_step_size")) == pytest.approx(0.001)
    assert float(physics.findtext("real_time_factor")) == 1.0


def test_world_loads_gazebo_systems_with_ogre2_sensors(forest):
    world = _parse(world_to_sdf(forest)).find("world")
    plugins = {p.get("filename"): p for p in world.findall("plugin")}
    for required in (
        "gz-sim-physics-system",
        "gz-sim-sensors-system",
        "gz-sim-scene-broadcaster-system",
        "gz-sim-user-commands-system",
        "gz-sim-imu-system",
    ):
        assert required in plugins
    assert plugins["gz-sim-sensors-system"].findtext("render_engine") == "ogre2"
    assert {p.get("name") for p in plugins.values()} == {name for _, name, _ in SYSTEM_PLUGINS}


def test_world_frame_is_enu_with_gravity_down(forest):
    world = _parse(world_to_sdf(forest)).find("world")
    assert world.findtext("spherical_coordinates/world_frame_orientation") == "ENU"
    assert world.findtext("spherical_coordinates/surface_model") == "EARTH_WGS84"
    gravity = _floats(world.findtext("gravity"))
    assert gravity[:2].tolist() == [0, 0] and gravity[2] == pytest.approx(-9.81, abs=0.01)


def test_ground_plane_is_static_collidable_and_covers_the_bounds(forest):
    ground = _parse(world_to_sdf(forest)).find("world/model[@name='ground_plane']")
    assert ground.findtext("static") == "true"
    plane = ground.find("link/collision/geometry/plane")
    assert _floats(plane.findtext("normal")).tolist() == [0, 0, 1]
    cx, cy = _floats(ground.findtext("pose"))[:2]
    sx, sy = _floats(plane.findtext("size"))
    x0, x1, y0, y1 = forest.bounds
    assert cx - sx / 2 <= x0 and cx + sx / 2 >= x1 and cy - sy / 2 <= y0 and cy + sy / 2 >= y1
    assert ground.find("link/visual/geometry/plane") is not None


def test_header_comment_names_generator_seed_and_preset(forest):
    text = world_to_sdf(forest.with_conditions(season="fall"))
    header = text.split("<sdf", 1)[0]
    assert re.search(r"<!--.*lnn_nav\.sim\.sdf_export.*seed 3.*preset in_distribution.*-->", header)


# -- geometry --------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["forest", "urban"])
def test_every_obstacle_appears_once_with_the_spec_pose_and_size(kind, forest, urban):
    spec = forest if kind == "forest" else urban
    parsed = _obstacles(_parse(world_to_sdf(spec)))
    for family, geometry in (("cylinder", spec.cylinders), ("box", spec.boxes), ("sphere", spec.spheres)):
        found = sorted(parsed[family], key=lambda item: item[0])
        assert [i for i, *_ in found] == list(range(len(geometry))), f"{family}: not each exactly once"
        if len(geometry):
            np.testing.assert_allclose(np.stack([row for _, row, *_ in found]), geometry, rtol=0, atol=TOL)


def test_urban_boxes_keep_their_yaw():
    spec = make_world("urban", 1)
    spec.boxes[:, 6] = np.linspace(-3.0, 3.0, len(spec.boxes))  # yaw over the full circle
    boxes = sorted(_obstacles(_parse(world_to_sdf(spec)))["box"], key=lambda item: item[0])
    np.testing.assert_allclose([row[6] for _, row, *_ in boxes], spec.boxes[:, 6], rtol=0, atol=TOL)


def test_model_names_are_unique_and_say_what_the_obstacle_is(forest, urban):
    for spec in (forest, urban):
        names = [m.get("name") for m in _parse(world_to_sdf(spec)).iter("model")]
        assert len(names) == len(set(names))
    forest_names = {m.get("name") for m in _parse(world_to_sdf(forest)).iter("model")}
    assert {"trunk_0000", "canopy_0000", f"beacon_post_{len(forest.cylinders) - 1:04d}"} <= forest_names
    urban_names = {m.get("name").rsplit("_", 1)[0] for m in _parse(world_to_sdf(urban)).iter("model")}
    assert {"building", "car", "road", "pole", "beacon_post", "beacon_ball"} <= urban_names


# -- appearance ------------------------------------------------------------------
@pytest.mark.parametrize("season", sorted(SEASON_PALETTES))
def test_materials_and_sky_follow_the_season_palette(season, forest):
    spec = forest.with_conditions(season=season)
    palette = SEASON_PALETTES[season]
    root = _parse(world_to_sdf(spec))
    np.testing.assert_allclose(_floats(root.findtext("world/scene/background")), [*palette["sky"], 1], atol=TOL)
    ground = root.find("world/model[@name='ground_plane']/link/visual")
    np.testing.assert_allclose(_colour(ground, "diffuse"), [*palette["ground"], 1], atol=TOL)
    materials = {"cylinder": spec.cylinder_materials, "sphere": spec.sphere_materials}
    for family, items in _obstacles(root).items():
        for index, _, name, visual in items:
            expected = [*palette[MATERIALS[materials[family][index]]], 1]
            np.testing.assert_allclose(_colour(visual, "diffuse"), expected, atol=TOL, err_msg=name)
            np.testing.assert_allclose(_colour(visual, "ambient"), expected, atol=TOL, err_msg=name)


def test_only_the_goal_beacon_is_emissive(urban):
    emissive = [
        m.get("name")
        for m in _parse(world_to_sdf(urban)).iter("model")
        if m.find("link/visual/material/emissive") is not None
    ]
    assert sorted(emissive) == sorted(["beacon_ball_0000", f"beacon_post_{len(urban.cylinders) - 1:04d}"])


@pytest.mark.parametrize("hour", [7.0, 12.5, 19.0])
def test_sun_is_a_directional_light_shining_away_from_the_sun_vector(hour, forest):
    spec = forest.with_conditions(time_of_day=hour)
    lights = _parse(world_to_sdf(spec)).findall("world/light")
    assert len(lights) == 1 and lights[0].get("type") == "directional"
    sun, intensity = spec.conditions.sun()
    np.testing.assert_allclose(_floats(lights[0].findtext("direction")), -sun, atol=TOL)
    assert float(lights[0].findtext("intensity")) == pytest.approx(intensity, abs=TOL)


def test_fog_is_present_exactly_when_the_conditions_have_fog(forest):
    assert _parse(world_to_sdf(forest)).find("world/scene/fog") is None
    foggy = make_world("forest", 3, "fog", size=(60.0, 40.0))
    fog = _parse(world_to_sdf(foggy)).find("world/scene/fog")
    assert fog is not None and fog.findtext("type") == "exp"
    assert float(fog.findtext("density")) == pytest.approx(foggy.conditions.fog_density, abs=TOL)


# -- determinism and files -------------------------------------------------------
def test_export_is_byte_identical_on_repeat(forest):
    again = make_world("forest", 3, size=(60.0, 40.0))
    assert world_to_sdf(forest) == world_to_sdf(again)


def test_export_world_writes_sdf_and_json_sidecar_named_after_the_file(tmp_path, urban):
    sdf_path, json_path = export_world(urban, tmp_path / "city.sdf")
    assert json_path == tmp_path / "city.json"
    assert _parse(sdf_path.read_text()).find("world").get("name") == "city"
    back = WorldSpec.load(json_path)
    np.testing.assert_array_equal(back.boxes, urban.boxes)
    assert back.conditions == urban.conditions


def test_export_world_rejects_a_path_that_is_not_sdf(tmp_path, urban):
    with pytest.raises(ValueError, match=r"must end in \.sdf"):
        export_world(urban, tmp_path / "city.world")


@pytest.mark.parametrize("stem", sorted(EXAMPLES))
def test_checked_in_examples_match_the_exporter(stem, tmp_path, capsys):
    out = tmp_path / f"{stem}.sdf"
    assert main(["export-world", *EXAMPLES[stem], "--out", str(out)]) == 0
    for suffix in (".sdf", ".json"):
        checked_in = WORLDS_DIR / f"{stem}{suffix}"
        assert checked_in.read_bytes() == out.with_suffix(suffix).read_bytes(), (
            f"{checked_in} is stale; regenerate it as sim/README.md says"
        )
        assert checked_in.stat().st_size < 512 * 1024


# -- CLI -------------------------------------------------------------------------
def test_cli_export_world_writes_both_files(tmp_path, capsys):
    out = tmp_path / "worlds" / "dusk_city.sdf"
    assert main(["export-world", "--world", "urban", "--seed", "2", "--preset", "dusk", "--out", str(out)]) == 0
    assert out.is_file() and out.with_suffix(".json").is_file()
    assert WorldSpec.load(out.with_suffix(".json")).conditions.time_of_day == 19.0
    assert "dusk_city.sdf" in capsys.readouterr().out


def test_cli_export_world_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["export-world", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "--world" in text and "--seed" in text and "--preset" in text and "--out" in text


def test_cli_export_world_is_a_module_command_of_the_simulator():
    assert dict(MODULE_COMMANDS)["export-world"] == "lnn_nav.sim.cli_export_world"


def test_cli_export_world_rejects_an_unknown_world_kind(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["export-world", "--world", "mars", "--out", str(tmp_path / "w.sdf")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "mars" in err and "forest" in err and "urban" in err
    assert not (tmp_path / "w.sdf").exists()


def test_cli_export_world_rejects_an_unknown_preset(tmp_path, capsys):
    code = main(["export-world", "--world", "forest", "--preset", "monsoon", "--out", str(tmp_path / "w.sdf")])
    assert code == 2
    assert "unknown preset 'monsoon'" in capsys.readouterr().err


def test_cli_export_world_rejects_size_for_urban_worlds(tmp_path, capsys):
    code = main(["export-world", "--world", "urban", "--size", "50", "50", "--out", str(tmp_path / "w.sdf")])
    assert code == 2
    assert "--size applies to forest worlds only" in capsys.readouterr().err
