"""World specs: the data every back-end (Warp renderer, collisions, expert, SDF export) reads.

A world is plain data, JSON-serialisable and deterministic by seed. Geometry
is three primitive families held as structure-of-arrays (fast to upload to
Warp and to test against in NumPy):

* ``cylinders`` ``[N, 5]``: vertical cylinders ``x, y, z_min, z_max, radius``
  (tree trunks, poles, the goal beacon);
* ``boxes`` ``[M, 7]``: boxes rotated about z, ``cx, cy, cz, hx, hy, hz, yaw``
  (buildings, parked cars);
* ``spheres`` ``[K, 4]``: ``x, y, z, radius`` (canopies, undergrowth bushes).

Each primitive has a material id (:data:`MATERIALS`); the material fixes the
segmentation class and, with the season palette, the colour. World frame:
ENU (x east, y north, z up), metres; the ground is the plane ``z = 0``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

#: Materials, in id order. Segmentation class = material id + 1 (0 is sky).
MATERIALS: tuple[str, ...] = (
    "ground",  # 0: only used for the ground plane
    "bark",
    "leaves",
    "undergrowth",
    "concrete",
    "glass",
    "asphalt",
    "car",
    "pole",
    "beacon",
)
MATERIAL_ID: dict[str, int] = {name: i for i, name in enumerate(MATERIALS)}
SEGMENTATION_CLASSES: tuple[str, ...] = ("sky",) + MATERIALS

#: Base colours (linear RGB in [0, 1]) per season; the renderer shades them.
SEASON_PALETTES: dict[str, dict[str, tuple[float, float, float]]] = {
    "summer": {
        "ground": (0.30, 0.42, 0.18),
        "bark": (0.36, 0.26, 0.18),
        "leaves": (0.16, 0.45, 0.14),
        "undergrowth": (0.22, 0.50, 0.16),
        "concrete": (0.62, 0.60, 0.56),
        "glass": (0.35, 0.48, 0.58),
        "asphalt": (0.22, 0.22, 0.23),
        "car": (0.55, 0.12, 0.10),
        "pole": (0.45, 0.45, 0.47),
        "beacon": (1.00, 0.15, 0.60),
        "sky": (0.55, 0.72, 0.92),
    },
    "fall": {
        "ground": (0.45, 0.36, 0.20),
        "bark": (0.33, 0.24, 0.17),
        "leaves": (0.80, 0.42, 0.10),
        "undergrowth": (0.60, 0.38, 0.14),
        "concrete": (0.60, 0.58, 0.54),
        "glass": (0.33, 0.44, 0.52),
        "asphalt": (0.22, 0.22, 0.23),
        "car": (0.55, 0.12, 0.10),
        "pole": (0.45, 0.45, 0.47),
        "beacon": (1.00, 0.15, 0.60),
        "sky": (0.62, 0.70, 0.80),
    },
    "winter": {
        "ground": (0.90, 0.91, 0.94),
        "bark": (0.28, 0.22, 0.18),
        "leaves": (0.70, 0.74, 0.72),
        "undergrowth": (0.82, 0.84, 0.86),
        "concrete": (0.70, 0.70, 0.70),
        "glass": (0.40, 0.48, 0.55),
        "asphalt": (0.55, 0.56, 0.58),
        "car": (0.50, 0.14, 0.12),
        "pole": (0.45, 0.45, 0.47),
        "beacon": (1.00, 0.15, 0.60),
        "sky": (0.78, 0.80, 0.84),
    },
}
SEASONS = tuple(SEASON_PALETTES)


@dataclass(frozen=True)
class Conditions:
    """Appearance and disturbance knobs (the distribution-shift axes).

    ``time_of_day`` in hours (6 = sunrise, 12 = noon, 19 = dusk) sets the sun
    direction and intensity; ``fog_density`` is the extinction coefficient
    (1/m) of exponential fog; wind is ``wind_mean`` (m/s, world xy) plus gusts
    of standard deviation ``gust_std`` (m/s) with time constant ``gust_tau`` (s);
    camera knobs are additive pixel noise (std, in [0, 1] units), Gaussian
    blur sigma (pixels) and an exposure gain. ``season_mix`` in [0, 1] blends
    the season's palette towards ``season_to``'s (0.5: half-way from summer
    to fall), so appearance can vary continuously between the named seasons.
    """

    season: str = "summer"
    season_to: str = "fall"
    season_mix: float = 0.0
    time_of_day: float = 12.0
    fog_density: float = 0.0
    wind_mean: tuple[float, float] = (0.0, 0.0)
    gust_std: float = 0.0
    gust_tau: float = 2.0
    camera_noise: float = 0.0
    camera_blur: float = 0.0
    exposure: float = 1.0

    def __post_init__(self) -> None:
        if self.season not in SEASON_PALETTES:
            raise ValueError(f"unknown season '{self.season}'; expected one of {', '.join(SEASONS)}")
        if self.season_to not in SEASON_PALETTES:
            raise ValueError(f"unknown season_to '{self.season_to}'; expected one of {', '.join(SEASONS)}")
        if not 0.0 <= self.season_mix <= 1.0:
            raise ValueError(f"season_mix must be in [0, 1], got {self.season_mix}")
        if not 0.0 <= self.time_of_day <= 24.0:
            raise ValueError(f"time_of_day must be in [0, 24] hours, got {self.time_of_day}")
        for name in ("fog_density", "gust_std", "camera_noise", "camera_blur"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.gust_tau <= 0 or self.exposure <= 0:
            raise ValueError("gust_tau and exposure must be > 0")
        object.__setattr__(self, "wind_mean", tuple(float(v) for v in self.wind_mean))

    def sun(self) -> tuple[np.ndarray, float]:
        """Unit vector towards the sun (world ENU) and its intensity in [0, 1].

        The sun rises in the east at 6 h, peaks at 12 h (60° elevation) and
        sets in the west at 18-19 h; below the horizon a dim skylight remains.
        """
        hour_angle = (self.time_of_day - 12.0) / 12.0 * math.pi
        elevation = math.radians(60.0) * math.cos(hour_angle)
        # Horizontal direction: east (+x) in the morning, west in the evening,
        # a little to the south (-y) as seen from northern mid-latitudes.
        horizontal = np.array([-math.sin(hour_angle), -0.3])
        horizontal /= np.linalg.norm(horizontal)
        el = max(elevation, math.radians(3.0))  # keep shading defined at dusk
        direction = np.array([horizontal[0] * math.cos(el), horizontal[1] * math.cos(el), math.sin(el)])
        intensity = float(np.clip(math.sin(max(elevation, 0.0)) / math.sin(math.radians(60.0)), 0.15, 1.0))
        return direction, intensity


@dataclass
class WorldSpec:
    """A generated world: bounds, geometry, start, goal and conditions."""

    kind: str
    seed: int
    bounds: tuple[float, float, float, float]  # x_min, x_max, y_min, y_max (m)
    start: tuple[float, float, float, float]  # x, y, z, yaw (rad, ENU)
    goal: tuple[float, float, float]  # x, y, z
    conditions: Conditions = field(default_factory=Conditions)
    cylinders: np.ndarray = field(default_factory=lambda: np.zeros((0, 5)))
    cylinder_materials: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 7)))
    box_materials: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    spheres: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    sphere_materials: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    ceiling: float = 30.0  # flying above this is out of bounds (m)
    params: dict[str, Any] = field(default_factory=dict)  # the generator's inputs, for the record

    def __post_init__(self) -> None:
        self.cylinders = np.asarray(self.cylinders, dtype=np.float64).reshape(-1, 5)
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 7)
        self.spheres = np.asarray(self.spheres, dtype=np.float64).reshape(-1, 4)
        self.cylinder_materials = np.asarray(self.cylinder_materials, dtype=np.int32).reshape(-1)
        self.box_materials = np.asarray(self.box_materials, dtype=np.int32).reshape(-1)
        self.sphere_materials = np.asarray(self.sphere_materials, dtype=np.int32).reshape(-1)
        for name, geo, mats in (
            ("cylinder", self.cylinders, self.cylinder_materials),
            ("box", self.boxes, self.box_materials),
            ("sphere", self.spheres, self.sphere_materials),
        ):
            if len(geo) != len(mats):
                raise ValueError(f"{len(geo)} {name}s but {len(mats)} {name} materials")
            if len(mats) and (mats.min() < 0 or mats.max() >= len(MATERIALS)):
                raise ValueError(f"{name} material ids must be in [0, {len(MATERIALS)})")
            if not np.isfinite(geo).all():
                raise ValueError(f"{name} geometry must be finite")
        # Every consumer (the renderers, collision, occupancy, SDF export) reads these as sizes: a negative
        # radius or extent, or a cylinder whose bottom lies above its top, is no shape at all.
        if len(self.cylinders) and (
            (self.cylinders[:, 4] <= 0).any() or (self.cylinders[:, 2] > self.cylinders[:, 3]).any()
        ):
            raise ValueError("cylinders need a radius > 0 and z0 <= z1 ([x, y, z0, z1, r])")
        if len(self.boxes) and (self.boxes[:, 3:6] <= 0).any():
            raise ValueError("boxes need half-extents > 0 ([x, y, z, hx, hy, hz, yaw])")
        if len(self.spheres) and (self.spheres[:, 3] <= 0).any():
            raise ValueError("spheres need a radius > 0 ([x, y, z, r])")
        if isinstance(self.conditions, Mapping):
            self.conditions = Conditions(**self.conditions)
        self.bounds = tuple(float(v) for v in self.bounds)  # type: ignore[assignment]
        self.start = tuple(float(v) for v in self.start)  # type: ignore[assignment]
        self.goal = tuple(float(v) for v in self.goal)  # type: ignore[assignment]
        x0, x1, y0, y1 = self.bounds
        if not (x0 < x1 and y0 < y1):
            raise ValueError(f"bounds must be (x_min < x_max, y_min < y_max), got {self.bounds}")

    # -- views ----------------------------------------------------------------
    @property
    def palette(self) -> dict[str, tuple[float, float, float]]:
        """Base colours: the season's, blended ``season_mix`` of the way towards ``season_to``'s."""
        c = self.conditions
        base = SEASON_PALETTES[c.season]
        if c.season_mix == 0.0:
            return base
        other = SEASON_PALETTES[c.season_to]
        t = c.season_mix
        return {
            name: tuple((1.0 - t) * a + t * b for a, b in zip(base[name], other[name]))  # type: ignore[misc]
            for name in base
        }

    def material_colours(self) -> np.ndarray:
        """``[len(MATERIALS), 3]`` base colours for this world's season."""
        return np.array([self.palette[name] for name in MATERIALS], dtype=np.float32)

    def obstacles(self) -> Iterator[dict[str, Any]]:
        """Every primitive as a record (type, pose, dimensions, material): for SDF export."""
        for (x, y, z0, z1, r), m in zip(self.cylinders.tolist(), self.cylinder_materials):
            yield {
                "type": "cylinder",
                "position": [x, y, (z0 + z1) / 2],
                "yaw": 0.0,
                "radius": r,
                "height": z1 - z0,
                "material": MATERIALS[m],
            }
        for (cx, cy, cz, hx, hy, hz, yaw), m in zip(self.boxes.tolist(), self.box_materials):
            yield {
                "type": "box",
                "position": [cx, cy, cz],
                "yaw": yaw,
                "size": [2 * hx, 2 * hy, 2 * hz],
                "material": MATERIALS[m],
            }
        for (x, y, z, r), m in zip(self.spheres.tolist(), self.sphere_materials):
            yield {"type": "sphere", "position": [x, y, z], "yaw": 0.0, "radius": r, "material": MATERIALS[m]}

    def with_conditions(self, **changes: Any) -> WorldSpec:
        """The same geometry under other conditions (season, fog, wind, ...)."""
        return replace(self, conditions=replace(self.conditions, **changes))

    # -- serialisation --------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                value = value.tolist()
            elif isinstance(value, Conditions):
                value = asdict(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorldSpec:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown world spec field(s): {unknown}")
        return cls(**dict(data))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> WorldSpec:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"world spec not found: {path}")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"world spec {path} is not valid JSON: {err}") from err
        return cls.from_dict(data)


def concat_primitives(parts: list[tuple[np.ndarray, np.ndarray]], width: int) -> tuple[np.ndarray, np.ndarray]:
    """Stack (geometry, materials) pairs of one primitive family."""
    geos = [np.asarray(g, dtype=np.float64).reshape(-1, width) for g, _ in parts]
    mats = [np.asarray(m, dtype=np.int32).reshape(-1) for _, m in parts]
    if not geos:
        return np.zeros((0, width)), np.zeros(0, dtype=np.int32)
    return np.concatenate(geos), np.concatenate(mats)
