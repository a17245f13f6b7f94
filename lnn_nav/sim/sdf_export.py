"""SDF export: a :class:`WorldSpec` as a Gazebo (gz sim Harmonic) world file, SDFormat 1.9.

Every primitive becomes one static model (collision + visual) with the same
pose and size as in the spec, so the embedded simulator and Gazebo fly through
the same geometry. Both frames are ENU; poses are ``x y z roll pitch yaw`` in
metres and radians. The systems listed in :data:`SYSTEM_PLUGINS` are those a
PX4 SITL airframe needs (IMU, barometer, GNSS) plus camera rendering with
ogre2, as in PX4's own ``worlds/default.sdf``.

Appearance follows the conditions: the season palette colours every
material and the sky, the sun is a directional light along ``-sun()`` with the
sun's intensity, and fog is an SDF ``<fog>`` of type ``exp`` whose density is
the spec's extinction coefficient. gz sim Harmonic reads ``<scene>`` ambient,
background, shadows and grid, but its ``sdf::Scene`` has no fog accessor, so
Gazebo renders no fog; the element documents the conditions and is honoured by
Gazebo classic's ``linear``/``exp``/``exp2`` fog.

The output is deterministic (no timestamps): the same spec gives the same bytes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from lnn_nav.sim.world import MATERIALS, WorldSpec

SDF_VERSION = "1.9"

#: ``(filename, name, inner XML)`` of the world's system plugins.
SYSTEM_PLUGINS: tuple[tuple[str, str, str], ...] = (
    ("gz-sim-physics-system", "gz::sim::systems::Physics", ""),
    ("gz-sim-sensors-system", "gz::sim::systems::Sensors", "<render_engine>ogre2</render_engine>"),
    ("gz-sim-scene-broadcaster-system", "gz::sim::systems::SceneBroadcaster", ""),
    ("gz-sim-user-commands-system", "gz::sim::systems::UserCommands", ""),
    ("gz-sim-imu-system", "gz::sim::systems::Imu", ""),
    ("gz-sim-air-pressure-system", "gz::sim::systems::AirPressure", ""),
    ("gz-sim-navsat-system", "gz::sim::systems::NavSat", ""),
)

#: Physics step (s): 1 kHz, the rate PX4's simulated IMU is sampled at.
PHYSICS_STEP = 0.001

#: Geodetic origin of the ENU world frame: PX4 SITL's default home (Zurich), so
#: GNSS-based home and geofence defaults need no change.
ORIGIN_LAT_LON_ELEV = (47.397971057728974, 8.546163739800146, 488.0)

#: Model name prefix per (primitive family, material): ``trunk_0012`` is cylinder 12.
MODEL_ROLES: dict[tuple[str, str], str] = {
    ("cylinder", "bark"): "trunk",
    ("cylinder", "pole"): "pole",
    ("cylinder", "beacon"): "beacon_post",
    ("sphere", "leaves"): "canopy",
    ("sphere", "undergrowth"): "bush",
    ("sphere", "beacon"): "beacon_ball",
    ("box", "concrete"): "building",
    ("box", "glass"): "glass_building",
    ("box", "car"): "car",
    ("box", "asphalt"): "road",
}

#: Extra ground beyond the world bounds on every side (m), so the horizon is not a cliff.
GROUND_MARGIN = 50.0

_INDENT = "  "


def model_name(family: str, index: int, material: str) -> str:
    """Unique, descriptive model name of primitive ``index`` of a family (``cylinder``, ``box``, ``sphere``)."""
    role = MODEL_ROLES.get((family, material), f"{material}_{family}")
    return f"{role}_{index:04d}"


def default_world_name(world: WorldSpec) -> str:
    """``forest_seed0``, or ``forest_seed0_fog`` for a world generated under a non-default preset."""
    preset = world.params.get("preset", "in_distribution")
    name = f"{world.kind}_seed{world.seed}"
    return name if preset == "in_distribution" else f"{name}_{preset}"


def world_to_sdf(world: WorldSpec, name: str | None = None) -> str:
    """The SDF 1.9 text of ``world`` (one ``<world>`` named ``name``, default :func:`default_world_name`)."""
    name = default_world_name(world) if name is None else name
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*", name):
        raise ValueError(f"world name '{name}' must be letters, digits, '_', '-' or '.' (it becomes a gz topic)")
    palette = world.palette
    sun, intensity = world.conditions.sun()
    lines: list[str] = ['<?xml version="1.0"?>', _header_comment(world), f'<sdf version="{SDF_VERSION}">']
    lines.append(f'{_INDENT}<world name="{name}">')
    body: list[str] = []
    body += [
        f'<physics name="{PHYSICS_STEP * 1000:g}ms" type="ignored">',
        f"{_INDENT}<max_step_size>{PHYSICS_STEP:g}</max_step_size>",
        f"{_INDENT}<real_time_factor>1.0</real_time_factor>",
        "</physics>",
    ]
    for filename, plugin_name, inner in SYSTEM_PLUGINS:
        if inner:
            body += [f'<plugin filename="{filename}" name="{plugin_name}">', _INDENT + inner, "</plugin>"]
        else:
            body.append(f'<plugin filename="{filename}" name="{plugin_name}"/>')
    lat, lon, elev = ORIGIN_LAT_LON_ELEV
    body += [
        "<gravity>0 0 -9.80665</gravity>",
        # Earth's field at the origin (tesla, ENU), the value PX4's worlds use.
        "<magnetic_field>6e-06 2.3e-05 -4.2e-05</magnetic_field>",
        '<atmosphere type="adiabatic"/>',
        "<spherical_coordinates>",
        f"{_INDENT}<surface_model>EARTH_WGS84</surface_model>",
        f"{_INDENT}<world_frame_orientation>ENU</world_frame_orientation>",
        f"{_INDENT}<latitude_deg>{lat!r}</latitude_deg>",
        f"{_INDENT}<longitude_deg>{lon!r}</longitude_deg>",
        f"{_INDENT}<elevation>{elev:g}</elevation>",
        f"{_INDENT}<heading_deg>0</heading_deg>",
        "</spherical_coordinates>",
    ]
    body += _scene(world, intensity)
    body += _sun_light(sun, intensity)
    body += _ground(world)
    for family, index, material, pose, geometry in _primitives(world):
        body += _static_model(model_name(family, index, material), pose, geometry, material, palette[material])
    lines += [2 * _INDENT + line for line in body]
    lines += [f"{_INDENT}</world>", "</sdf>", ""]
    return "\n".join(lines)


def export_world(world: WorldSpec, path: str | Path, name: str | None = None) -> tuple[Path, Path]:
    """Write ``path`` (SDF) and the WorldSpec JSON sidecar next to it (``path`` with ``.json``).

    The world is named after the file (``forest_seed0.sdf`` holds world
    ``forest_seed0``) unless ``name`` is given: PX4's ``PX4_GZ_WORLD`` and the
    ``/world/<name>/...`` gz topics expect the two to agree.
    """
    path = Path(path)
    if path.suffix != ".sdf":
        raise ValueError(f"SDF output path must end in .sdf, got '{path}'")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(world_to_sdf(world, name=path.stem if name is None else name))
    sidecar = world.save(path.with_suffix(".json"))
    return path, sidecar


# -- pieces ----------------------------------------------------------------------
def _num(value: float) -> str:
    """A number at 0.01 mm / 0.01 mrad resolution, without trailing zeros or ``-0``."""
    text = f"{value:.5f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _vec(values: Iterable[float]) -> str:
    return " ".join(_num(v) for v in values)


def _rgba(rgb: Sequence[float]) -> str:
    return f"{_vec(rgb)} 1"


def _header_comment(world: WorldSpec) -> str:
    preset = world.params.get("preset", "in_distribution")
    x0, x1, y0, y1 = world.bounds
    return (
        f"<!-- Generated by lnn_nav.sim.sdf_export from a {world.kind} WorldSpec: seed {world.seed}, "
        f"preset {preset}, season {world.conditions.season}, bounds x [{_num(x0)}, {_num(x1)}] "
        f"y [{_num(y0)}, {_num(y1)}] m (ENU). The spec itself is in the .json file of the same name. -->"
    )


def _scene(world: WorldSpec, intensity: float) -> list[str]:
    sky = world.palette["sky"]
    # Same ambient term as the embedded renderer (lnn_nav.sim.render): dimmer at dusk.
    ambient = 0.25 + 0.2 * intensity
    lines = [
        "<scene>",
        f"{_INDENT}<ambient>{_rgba((ambient,) * 3)}</ambient>",
        f"{_INDENT}<background>{_rgba(sky)}</background>",
        f"{_INDENT}<shadows>true</shadows>",
        f"{_INDENT}<grid>false</grid>",
        f"{_INDENT}<origin_visual>false</origin_visual>",
    ]
    density = world.conditions.fog_density
    if density > 0:
        # Exponential fog, transmittance exp(-density * d), as in the embedded renderer;
        # start/end only matter for linear fog: end is where 5 % contrast remains (ln 20 / density).
        lines += [
            f"{_INDENT}<fog>",
            f"{_INDENT * 2}<type>exp</type>",
            f"{_INDENT * 2}<color>{_rgba(sky)}</color>",
            f"{_INDENT * 2}<density>{_num(density)}</density>",
            f"{_INDENT * 2}<start>0</start>",
            f"{_INDENT * 2}<end>{_num(math.log(20.0) / density)}</end>",
            f"{_INDENT}</fog>",
        ]
    lines.append("</scene>")
    return lines


def _sun_light(sun: np.ndarray, intensity: float) -> list[str]:
    return [
        '<light type="directional" name="sun">',
        f"{_INDENT}<cast_shadows>true</cast_shadows>",
        f"{_INDENT}<pose>0 0 100 0 0 0</pose>",
        f"{_INDENT}<diffuse>0.9 0.9 0.9 1</diffuse>",
        f"{_INDENT}<specular>0.2 0.2 0.2 1</specular>",
        f"{_INDENT}<intensity>{_num(intensity)}</intensity>",
        # SDF gives the direction the light travels: from the sun, i.e. -sun().
        f"{_INDENT}<direction>{_vec(-np.asarray(sun, dtype=float))}</direction>",
        "</light>",
    ]


def _ground(world: WorldSpec) -> list[str]:
    x0, x1, y0, y1 = world.bounds
    centre = ((x0 + x1) / 2, (y0 + y1) / 2, 0.0, 0.0, 0.0, 0.0)
    size = f"{_num(x1 - x0 + 2 * GROUND_MARGIN)} {_num(y1 - y0 + 2 * GROUND_MARGIN)}"
    plane = f"<plane><normal>0 0 1</normal><size>{size}</size></plane>"
    return _static_model("ground_plane", centre, plane, "ground", world.palette["ground"])


def _primitives(world: WorldSpec) -> Iterable[tuple[str, int, str, tuple[float, ...], str]]:
    """``(family, index, material, pose, geometry XML)`` for every primitive, in spec order."""
    for i, ((x, y, z0, z1, r), m) in enumerate(zip(world.cylinders.tolist(), world.cylinder_materials.tolist())):
        geometry = f"<cylinder><radius>{_num(r)}</radius><length>{_num(z1 - z0)}</length></cylinder>"
        yield "cylinder", i, MATERIALS[m], (x, y, (z0 + z1) / 2, 0.0, 0.0, 0.0), geometry
    for i, ((cx, cy, cz, hx, hy, hz, yaw), m) in enumerate(zip(world.boxes.tolist(), world.box_materials.tolist())):
        geometry = f"<box><size>{_vec((2 * hx, 2 * hy, 2 * hz))}</size></box>"
        yield "box", i, MATERIALS[m], (cx, cy, cz, 0.0, 0.0, yaw), geometry
    for i, ((x, y, z, r), m) in enumerate(zip(world.spheres.tolist(), world.sphere_materials.tolist())):
        geometry = f"<sphere><radius>{_num(r)}</radius></sphere>"
        yield "sphere", i, MATERIALS[m], (x, y, z, 0.0, 0.0, 0.0), geometry


def _static_model(name: str, pose: Sequence[float], geometry: str, material: str, rgb: Sequence[float]) -> list[str]:
    colour = _rgba(rgb)
    # The beacon glows like the embedded renderer's unshaded beacon, visible in shadow and at dusk.
    emissive = f"<emissive>{colour}</emissive>" if material == "beacon" else ""
    specular = "0.6 0.6 0.6 1" if material == "glass" else "0.05 0.05 0.05 1"
    i1, i2, i3 = _INDENT, _INDENT * 2, _INDENT * 3
    return [
        f'<model name="{name}">',
        f"{i1}<static>true</static>",
        f"{i1}<pose>{_vec(pose)}</pose>",
        f'{i1}<link name="link">',
        f'{i2}<collision name="collision">',
        f"{i3}<geometry>{geometry}</geometry>",
        f"{i2}</collision>",
        f'{i2}<visual name="visual">',
        f"{i3}<geometry>{geometry}</geometry>",
        f"{i3}<material><ambient>{colour}</ambient><diffuse>{colour}</diffuse>"
        f"<specular>{specular}</specular>{emissive}</material>",
        f"{i2}</visual>",
        f"{i1}</link>",
        "</model>",
    ]
