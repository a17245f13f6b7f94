"""Condition presets (in and out of distribution), training randomisation and the `make_world` entry point."""

from __future__ import annotations

import math
from typing import Any, Dict, Tuple

import numpy as np

from lnn_nav.sim.forest import DEFAULT_TREE_DENSITY, generate_forest
from lnn_nav.sim.urban import generate_urban
from lnn_nav.sim.world import Conditions, WorldSpec

_IN_DISTRIBUTION: Dict[str, Any] = {
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
CONDITION_PRESETS: Dict[str, Dict[str, Any]] = {
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

#: Presets that change the generator rather than the appearance: multiplier on the forest's tree density.
DENSITY_SCALE: Dict[str, float] = {"dense_forest": 1.8}

#: Out-of-distribution preset names, in report order.
OOD_PRESETS: Tuple[str, ...] = ("fall", "winter", "dusk", "fog", "dense_forest", "gusty_wind", "camera_noise")

#: World kinds :func:`make_world` builds.
WORLD_KINDS: Tuple[str, ...] = ("forest", "urban")

#: The ranges :func:`sample_training_conditions` draws from (inclusive).
TRAINING_RANGES: Dict[str, Tuple[float, float]] = {
    "time_of_day": (10.0, 15.0),
    "fog_density": (0.0, 0.005),
    "wind_speed": (0.0, 1.0),
    "gust_std": (0.0, 0.3),
    "gust_tau": (1.5, 3.0),
    "camera_noise": (0.0, 0.02),
    "camera_blur": (0.0, 0.3),
    "exposure": (0.9, 1.1),
}


def sample_training_conditions(rng: np.random.Generator) -> Conditions:
    """Conditions for training-time randomisation, drawn around the in-distribution preset.

    Summer only, midday sun, at most a trace of fog, light wind from any
    direction and mild camera artefacts: the out-of-distribution presets all
    lie outside these ranges.
    """
    r = TRAINING_RANGES
    speed = rng.uniform(*r["wind_speed"])
    heading = rng.uniform(-math.pi, math.pi)
    return Conditions(
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


def presets_for(kind: str) -> Tuple[str, ...]:
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
    if preset not in CONDITION_PRESETS:
        raise ValueError(f"unknown preset '{preset}'; expected one of {', '.join(CONDITION_PRESETS)}")
    if preset in DENSITY_SCALE and kind != "forest":
        raise ValueError(
            f"preset '{preset}' changes forest density and does not apply to '{kind}' worlds; "
            f"expected one of {', '.join(presets_for(kind))}"
        )
    kwargs = dict(overrides)
    kwargs.setdefault("conditions", Conditions(**CONDITION_PRESETS[preset]))
    if preset in DENSITY_SCALE:
        base = kwargs.get("density", DEFAULT_TREE_DENSITY)
        kwargs["density"] = base * DENSITY_SCALE[preset]
    generator = generate_forest if kind == "forest" else generate_urban
    world = generator(seed, **kwargs)
    world.params["preset"] = preset
    return world


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


def check_training_seeds(seeds: "list[int] | range") -> None:
    """Raise ``ValueError`` if any seed is a held-out evaluation seed."""
    bad = [s for s in seeds if s in EVAL_SEEDS]
    if bad:
        raise ValueError(
            f"seeds {bad[:5]}{'...' if len(bad) > 5 else ''} are held-out evaluation seeds "
            f"({EVAL_SEEDS.start}-{EVAL_SEEDS.stop - 1}); training data must come from other worlds"
        )
