"""Condition presets (in and out of distribution), training randomisation and the `make_world` entry point."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from lnn_nav.sim.forest import DEFAULT_TREE_DENSITY, generate_forest
from lnn_nav.sim.kinds import WORLD_KINDS
from lnn_nav.sim.urban import generate_urban
from lnn_nav.sim.world import Conditions, WorldSpec

_IN_DISTRIBUTION: dict[str, Any] = {
    "season": "summer",
    "time_of_day": 12.5,
    "fog_density": 0.0,
    "wind_mean": (0.5, 0.2),
    "gust_std": 0.2,
    "gust_tau": 2.0,
    "camera_noise": 0.01,
    "camera_blur": 0.0,
    "exposure": 1.0,
}

#: ``Conditions`` keyword arguments per preset. Every out-of-distribution
#: preset moves one axis beyond the range :func:`sample_training_conditions`
#: draws from, so an evaluation under it measures that one shift.
CONDITION_PRESETS: dict[str, dict[str, Any]] = {
    "in_distribution": dict(_IN_DISTRIBUTION),
    "fall": {**_IN_DISTRIBUTION, "season": "fall"},
    "winter": {**_IN_DISTRIBUTION, "season": "winter"},
    # 19 h: the sun has set in the west, only dim skylight remains (Conditions.sun).
    "dusk": {**_IN_DISTRIBUTION, "time_of_day": 19.0},
    # 0.05 /m: contrast halves every ~14 m, visibility (5 % contrast) ~60 m.
    "fog": {**_IN_DISTRIBUTION, "fog_density": 0.05},
    # Same appearance; the geometry changes (see DENSITY_SCALE).
    "dense_forest": dict(_IN_DISTRIBUTION),
    "gusty_wind": {**_IN_DISTRIBUTION, "wind_mean": (2.5, -1.5), "gust_std": 2.0, "gust_tau": 1.0},
    "camera_noise": {**_IN_DISTRIBUTION, "camera_noise": 0.06, "camera_blur": 1.5, "exposure": 0.6},
}

#: Combinations and milder or stronger versions of the presets, for measuring
#: whether a controller generalises beyond the named shifts (never trained or
#: tuned on). Flown by ``lnn-nav eval --preset`` like the presets; the report
#: keeps them in their own table.
COMBINATION_PRESETS: dict[str, dict[str, Any]] = {
    "fall_haze": {**CONDITION_PRESETS["fall"], "fog_density": 0.02},
    "winter_haze": {**CONDITION_PRESETS["winter"], "fog_density": 0.02},
    # 7.5 h: the sun 23 deg up in the east, long shadows, warm light.
    "morning_sun": {**_IN_DISTRIBUTION, "time_of_day": 7.5},
    "fall_evening": {**CONDITION_PRESETS["fall"], "time_of_day": 17.5},
    "light_fog": {**_IN_DISTRIBUTION, "fog_density": 0.03},
    "heavy_fog": {**_IN_DISTRIBUTION, "fog_density": 0.08},
    "moderate_wind": {**_IN_DISTRIBUTION, "wind_mean": (1.5, -1.0), "gust_std": 1.0, "gust_tau": 1.5},
}

#: Presets that change the generator rather than the appearance: multiplier on the forest's tree density.
DENSITY_SCALE: dict[str, float] = {"dense_forest": 1.8}

#: Out-of-distribution preset names, in report order.
OOD_PRESETS: tuple[str, ...] = ("fall", "winter", "dusk", "fog", "dense_forest", "gusty_wind", "camera_noise")

#: Every name :func:`make_world` and ``lnn-nav eval --preset`` accept.
ALL_PRESETS: tuple[str, ...] = tuple(CONDITION_PRESETS) + tuple(COMBINATION_PRESETS)

#: Training-time randomisation profiles: the ranges :func:`sample_training_conditions`
#: draws from (inclusive). ``narrow`` is the recipe the controllers before the
#: robust-flight recipe were trained with (summer, midday, clear air); ``wide``
#: mixes the season palette from summer to fall, moves the sun from morning to
#: afternoon, adds light haze, more wind and stronger camera artefacts. Both
#: leave winter snow, fog at the preset's density, dusk, the gusty-wind preset,
#: the dense forest and the camera_noise preset beyond them (see
#: :func:`preset_coverage`).
RANDOMIZATION: dict[str, dict[str, tuple[float, float]]] = {
    "narrow": {
        "season_mix": (0.0, 0.0),
        "time_of_day": (10.0, 15.0),
        "fog_density": (0.0, 0.005),
        "wind_speed": (0.0, 1.0),
        "gust_std": (0.0, 0.3),
        "gust_tau": (1.5, 3.0),
        "camera_noise": (0.0, 0.02),
        "camera_blur": (0.0, 0.3),
        "exposure": (0.9, 1.1),
        "density_scale": (1.0, 1.0),  # forest trees per area, times the generator's default
    },
    "wide": {
        "season_mix": (0.0, 1.0),  # summer -> fall palette
        "time_of_day": (8.5, 16.5),  # sun 36-60 deg up; dusk (19 h) and a 7 h sun stay beyond
        "fog_density": (0.0, 0.015),  # haze: the fog preset (0.05 /m) is 3x denser
        "wind_speed": (0.0, 1.5),
        "gust_std": (0.0, 0.6),
        "gust_tau": (1.0, 3.0),
        "camera_noise": (0.0, 0.03),
        "camera_blur": (0.0, 0.6),
        "exposure": (0.8, 1.2),
        "density_scale": (1.0, 1.0),
    },
    # ``wide`` plus the light of a whole working day and the wind a demonstration recovers from:
    # the expert's flights under stronger wind carry the corrections a gust asks of the learner
    # (the recovery states the liquid-network drone paper added synthetically).
    "wider": {
        "season_mix": (0.0, 1.0),
        "time_of_day": (7.0, 17.0),  # sun 15-60 deg up; dusk (19 h, sun set) and a 17.5 h evening stay beyond
        "fog_density": (0.0, 0.015),
        "wind_speed": (0.0, 2.2),  # the gusty preset's mean is 2.9 m/s
        "gust_std": (0.0, 1.2),  # ... and its gusts 2.0 m/s
        "gust_tau": (1.0, 3.0),
        "camera_noise": (0.0, 0.03),
        "camera_blur": (0.0, 0.6),
        "exposure": (0.7, 1.2),
        "density_scale": (1.0, 1.0),
    },
}
# ``wider`` in forests up to 1.4x as dense: tighter gaps to thread (the dense_forest preset's 1.8x stays beyond).
RANDOMIZATION["widest"] = {**RANDOMIZATION["wider"], "density_scale": (1.0, 1.4)}
RANDOMIZATION_PROFILES: tuple[str, ...] = tuple(RANDOMIZATION)

#: The profile `lnn-nav collect` randomises with unless told otherwise (stages 1-4 of
#: scripts/reproduce.sh were recorded with it; stage 5 asks for ``wide``).
DEFAULT_RANDOMIZATION: str = "narrow"

#: The profile the shipped CfC-NCP's last training stage drew its demonstrations from (the
#: robust-flight recipe, reproduce.sh stage 5); the other shipped cores come from stage 4 (narrow).
SHIPPED_RANDOMIZATION: str = "wide"

#: The widest ranges a shipped controller's demonstrations were drawn from: the conditions
#: "in training" for the report's covered/beyond split (:func:`preset_coverage`).
TRAINING_RANGES: dict[str, tuple[float, float]] = RANDOMIZATION[SHIPPED_RANDOMIZATION]

#: Shifts that stay beyond every training profile and the training augmentation
#: (``lnn_nav.train.bc``), so an out-of-distribution claim measured on them is on
#: true shifts: the snow palette, fog at the preset's density, the gusty wind.
TRUE_SHIFTS: tuple[str, ...] = ("winter", "fog", "gusty_wind")


def sample_training_conditions(rng: np.random.Generator, profile: str = DEFAULT_RANDOMIZATION) -> Conditions:
    """Conditions for training-time randomisation, drawn from a :data:`RANDOMIZATION` profile.

    Summer (``wide``: blended towards fall), daytime sun, at most light haze,
    light wind from any direction and mild camera artefacts.
    """
    if profile not in RANDOMIZATION:
        raise ValueError(f"unknown randomisation profile {profile!r}; expected one of {', '.join(RANDOMIZATION)}")
    r = RANDOMIZATION[profile]
    speed = rng.uniform(*r["wind_speed"])
    heading = rng.uniform(-math.pi, math.pi)
    conditions = Conditions(
        season="summer",
        time_of_day=float(rng.uniform(*r["time_of_day"])),
        fog_density=float(rng.uniform(*r["fog_density"])),
        wind_mean=(float(speed * math.cos(heading)), float(speed * math.sin(heading))),
        gust_std=float(rng.uniform(*r["gust_std"])),
        gust_tau=float(rng.uniform(*r["gust_tau"])),
        camera_noise=float(rng.uniform(*r["camera_noise"])),
        camera_blur=float(rng.uniform(*r["camera_blur"])),
        exposure=float(rng.uniform(*r["exposure"])),
    )
    lo, hi = r["season_mix"]
    if hi > 0.0:
        # Drawn last, so the narrow profile's stream (and its recorded worlds) is unchanged.
        conditions = replace(conditions, season_to="fall", season_mix=float(rng.uniform(lo, hi)))
    return conditions


def training_density_scale(seed: int, profile: str = DEFAULT_RANDOMIZATION) -> float:
    """The forest density multiplier a profile draws for training world ``seed`` (1.0 where it draws none).

    Its own stream (seeded by the world seed), so adding it left every profile's conditions as they were.
    """
    if profile not in RANDOMIZATION:
        raise ValueError(f"unknown randomisation profile {profile!r}; expected one of {', '.join(RANDOMIZATION)}")
    lo, hi = RANDOMIZATION[profile]["density_scale"]
    if hi <= lo:
        return float(lo)
    return float(np.random.default_rng([seed, 8]).uniform(lo, hi))


def within_ranges(c: Conditions, ranges: dict[str, tuple[float, float]]) -> bool:
    """Whether conditions ``c`` lie inside a randomisation profile's ranges (season: summer-fall blends)."""

    def inside(name: str, value: float) -> bool:
        lo, hi = ranges[name]
        return lo - 1e-9 <= value <= hi + 1e-9

    if c.season == "summer":
        mix = c.season_mix if c.season_to == "fall" else (0.0 if c.season_mix == 0.0 else math.inf)
    elif c.season == "fall":
        mix = 1.0 - c.season_mix if c.season_to == "summer" else (1.0 if c.season_mix == 0.0 else math.inf)
    else:
        mix = math.inf
    return (
        inside("season_mix", mix)
        and inside("time_of_day", c.time_of_day)
        and inside("fog_density", c.fog_density)
        and inside("wind_speed", math.hypot(*c.wind_mean))
        and inside("gust_std", c.gust_std)
        and inside("camera_noise", c.camera_noise)
        and inside("camera_blur", c.camera_blur)
        and inside("exposure", c.exposure)
    )


def preset_coverage(preset: str, profile: str = DEFAULT_RANDOMIZATION) -> str:
    """``"covered"`` if a training profile draws the preset's conditions, else ``"beyond"``.

    Geometry presets (``dense_forest``) are covered only where the profile's
    ``density_scale`` reaches their multiplier (none does).
    """
    table = {**CONDITION_PRESETS, **COMBINATION_PRESETS}
    if preset not in table:
        raise ValueError(f"unknown preset '{preset}'; expected one of {', '.join(ALL_PRESETS)}")
    if preset in DENSITY_SCALE:
        lo, hi = RANDOMIZATION[profile]["density_scale"]
        if not lo <= DENSITY_SCALE[preset] <= hi:
            return "beyond"
    inside = within_ranges(Conditions(**table[preset]), RANDOMIZATION[profile])
    return "covered" if inside else "beyond"


def presets_for(kind: str) -> tuple[str, ...]:
    """Preset names that apply to a world kind (``dense_forest`` only to forests)."""
    _check_kind(kind)
    return tuple(p for p in CONDITION_PRESETS if kind == "forest" or p not in DENSITY_SCALE)


def make_world(kind: str, seed: int, preset: str = "in_distribution", **overrides: Any) -> WorldSpec:
    """Generate a ``kind`` world (``"forest"`` or ``"urban"``) under a named preset.

    ``overrides`` go to the generator (``density``, ``size``, ``blocks``, ...);
    a ``conditions`` override replaces the preset's conditions. The same seed
    gives the same route under every preset, and the same geometry under every
    appearance preset, so in- and out-of-distribution runs pair up.
    """
    _check_kind(kind)
    if preset not in CONDITION_PRESETS and preset not in COMBINATION_PRESETS:
        raise ValueError(f"unknown preset '{preset}'; expected one of {', '.join(ALL_PRESETS)}")
    if preset in DENSITY_SCALE and kind != "forest":
        raise ValueError(
            f"preset '{preset}' changes forest density and does not apply to '{kind}' worlds; "
            f"expected one of {', '.join(presets_for(kind))}"
        )
    kwargs = dict(overrides)
    kwargs.setdefault("conditions", Conditions(**{**CONDITION_PRESETS, **COMBINATION_PRESETS}[preset]))
    if preset in DENSITY_SCALE:
        base = kwargs.get("density", DEFAULT_TREE_DENSITY)
        kwargs["density"] = base * DENSITY_SCALE[preset]
    generator = generate_forest if kind == "forest" else generate_urban
    world = generator(seed, **kwargs)
    world.params["preset"] = preset
    return world


def world_from(world_file: str, kind: str, seed: int, preset: str) -> WorldSpec:
    """The world a node's parameters name: ``world_file`` (a WorldSpec JSON) when given, else the
    generated ``kind`` world of ``seed`` under ``preset``."""
    if world_file:
        return WorldSpec.load(world_file)
    return make_world(kind, seed, preset)


def _check_kind(kind: str) -> None:
    if kind not in WORLD_KINDS:
        raise ValueError(f"unknown world kind '{kind}'; expected one of {', '.join(WORLD_KINDS)}")


#: Held-out evaluation worlds: seeds in this range are never used to collect
#: training data (``lnn-nav collect`` and DAgger refuse them), so every
#: closed-loop success rate is measured on worlds no controller has seen.
EVAL_SEEDS: range = range(1000, 2000)
#: Training worlds are drawn from here upwards.
TRAIN_SEED_BASE: int = 100_000
#: Calibration worlds (``lnn-nav calibrate``): deployment settings such as an
#: output gain are chosen here, so the held-out seeds stay unseen by every
#: choice, and no collect or DAgger default reaches them (100000+ to 400000+).
CALIBRATION_SEED_BASE: int = 500_000


def check_training_seeds(seeds: list[int] | range) -> None:
    """Raise ``ValueError`` if any seed is a held-out evaluation seed."""
    bad = [s for s in seeds if s in EVAL_SEEDS]
    if bad:
        raise ValueError(
            f"seeds {bad[:5]}{'...' if len(bad) > 5 else ''} are held-out evaluation seeds "
            f"({EVAL_SEEDS.start}-{EVAL_SEEDS.stop - 1}); training data must come from other worlds"
        )
