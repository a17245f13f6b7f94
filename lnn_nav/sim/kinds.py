"""The simulator's vocabulary on the command line: world kinds, condition presets, randomisation profiles.

Names only, no imports: every ``lnn-nav`` parser takes its choices from here, and building a parser
must not load the world generators (:mod:`lnn_nav.sim.presets` does). The definitions behind the
names live in :mod:`lnn_nav.sim.presets`, which imports :data:`WORLD_KINDS` from here; a test keeps
the other names equal to its tables.
"""

from __future__ import annotations

#: World kinds :func:`lnn_nav.sim.presets.make_world` builds (``--world``).
WORLD_KINDS: tuple[str, ...] = ("forest", "urban")

#: The condition presets (``--preset``): in distribution, then the out-of-distribution shifts
#: (:data:`lnn_nav.sim.presets.CONDITION_PRESETS`).
PRESET_NAMES: tuple[str, ...] = (
    "in_distribution",
    "fall",
    "winter",
    "dusk",
    "fog",
    "dense_forest",
    "gusty_wind",
    "camera_noise",
)

#: Combinations and milder or stronger versions of the presets, flown by ``lnn-nav eval --preset``
#: (:data:`lnn_nav.sim.presets.COMBINATION_PRESETS`).
COMBINATION_PRESET_NAMES: tuple[str, ...] = (
    "fall_haze",
    "winter_haze",
    "morning_sun",
    "fall_evening",
    "light_fog",
    "heavy_fog",
    "moderate_wind",
)

#: Training-time randomisation profiles (``--randomize``; :data:`lnn_nav.sim.presets.RANDOMIZATION`).
RANDOMIZATION_PROFILES: tuple[str, ...] = ("narrow", "wide", "wider", "widest")
