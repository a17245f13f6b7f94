"""Embedded simulator: world specs, quadrotor flight, Warp cameras, Gymnasium envs, expert.

Nothing here imports ROS. Importing this package registers the Gymnasium
environments ``lnn_nav/Forest-v0`` and ``lnn_nav/Urban-v0`` (keyword
arguments: see :class:`lnn_nav.sim.env.EnvConfig`), also for
``gymnasium.make_vec(..., vectorization_mode="vector_entry_point")``.
"""

from __future__ import annotations

import gymnasium as _gym

ENV_IDS = {"forest": "lnn_nav/Forest-v0", "urban": "lnn_nav/Urban-v0"}


def _register() -> None:
    for kind, env_id in ENV_IDS.items():
        if env_id in _gym.registry:
            continue
        _gym.register(
            id=env_id,
            entry_point="lnn_nav.sim.env:NavigationEnv",
            vector_entry_point="lnn_nav.sim.env:NavigationVectorEnv",
            kwargs={"kind": kind},
        )


_register()
