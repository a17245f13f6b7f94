"""Embedded simulator: world specs, quadrotor flight, Warp cameras, Gymnasium envs, expert.

Nothing here imports ROS, and importing the package imports neither
gymnasium nor Warp, so its light modules (:mod:`lnn_nav.sim.presets`,
:mod:`lnn_nav.sim.world`) load without them. The Gymnasium environments
``lnn_nav/Forest-v0`` and ``lnn_nav/Urban-v0`` (keyword arguments: see
:class:`lnn_nav.sim.env.EnvConfig`), also for
``gymnasium.make_vec(..., vectorization_mode="vector_entry_point")``, are
registered by :func:`register_envs`: importing :mod:`lnn_nav.sim.env` calls
it, and so does importing this package once gymnasium is imported
(``import gymnasium as gym, lnn_nav.sim``).
"""

from __future__ import annotations

import sys

ENV_IDS = {"forest": "lnn_nav/Forest-v0", "urban": "lnn_nav/Urban-v0"}


def register_envs() -> None:
    """Register the environments of :data:`ENV_IDS` with Gymnasium (again: a no-op)."""
    import gymnasium as gym

    for kind, env_id in ENV_IDS.items():
        if env_id in gym.registry:
            continue
        gym.register(
            id=env_id,
            entry_point="lnn_nav.sim.env:NavigationEnv",
            vector_entry_point="lnn_nav.sim.env:NavigationVectorEnv",
            kwargs={"kind": kind},
        )


# Registering needs gymnasium, which the light modules must not pay for: register here only when the
# importer has gymnasium already (it is about to make an env); lnn_nav.sim.env registers in any case.
if "gymnasium" in sys.modules:
    register_envs()
