"""Wind: a steady mean plus Ornstein-Uhlenbeck gusts, one independent gust process per drone."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lnn_nav.sim.noise import DroneStreams
from lnn_nav.sim.world import Conditions

#: A generator shared by all drones, a seed for one, or one stream per drone (:class:`DroneStreams`).
RngLike = np.random.Generator | DroneStreams | int | None


class WindModel:
    """Air velocity (world ENU, m/s) seen by each of N drones.

    ``wind = mean + gust`` where each gust component is an Ornstein-Uhlenbeck
    process with stationary standard deviation ``gust_std`` (vertical:
    ``gust_std * vertical_ratio``) and correlation time ``gust_tau``: a
    first-order (Dryden-like) spectrum. Near the ground vertical turbulence
    is about half the horizontal (MIL-F-8785C low-altitude model), hence the
    default ``vertical_ratio = 0.5``.

    ``mean`` is ``[2]`` / ``[3]`` (shared) or ``[N, 2]`` / ``[N, 3]`` (per
    drone); ``gust_std`` and ``gust_tau`` are scalars or ``[N]``: drones
    flying in different worlds share one model. The process is advanced by
    its exact discretisation (Gillespie, "Exact numerical simulation of the
    Ornstein-Uhlenbeck process", Phys. Rev. E 1996), so its statistics do not
    depend on ``dt``; gusts start from the stationary distribution. With
    ``mean = 0`` and ``gust_std = 0`` the wind is exactly zero and no random
    numbers are drawn.
    """

    def __init__(
        self,
        mean: Sequence[float] | np.ndarray = (0.0, 0.0),
        gust_std: float | np.ndarray = 0.0,
        gust_tau: float | np.ndarray = 2.0,
        rng: RngLike = None,
        num_drones: int = 1,
        vertical_ratio: float = 0.5,
    ) -> None:
        if num_drones < 1:
            raise ValueError(f"num_drones must be >= 1, got {num_drones}")
        if vertical_ratio < 0:
            raise ValueError(f"vertical_ratio must be >= 0, got {vertical_ratio}")
        self.num_drones = int(num_drones)
        self.vertical_ratio = float(vertical_ratio)
        self.rng = rng if isinstance(rng, (np.random.Generator, DroneStreams)) else np.random.default_rng(rng)
        self.mean = np.zeros((self.num_drones, 3))
        self.gust_std = np.zeros(self.num_drones)
        self.gust_tau = np.ones(self.num_drones)
        self.gust = np.zeros((self.num_drones, 3))
        self._axis_std = np.zeros((self.num_drones, 3))
        self._set(slice(None), self.num_drones, mean, gust_std, gust_tau)

    @classmethod
    def from_conditions(
        cls,
        conditions: Conditions | Sequence[Conditions],
        num_drones: int = 1,
        rng: RngLike = None,
    ) -> WindModel:
        """The wind of one world's :class:`~lnn_nav.sim.world.Conditions`, or one per drone."""
        model = cls(rng=rng, num_drones=num_drones)
        model.set_conditions(np.arange(num_drones), conditions)
        return model

    def set_conditions(self, indices: np.ndarray, conditions: Conditions | Sequence[Conditions]) -> None:
        """Give drones ``indices`` the wind of new world conditions (one, or one per index) and redraw their gusts."""
        idx = np.asarray(indices).reshape(-1)
        conds = [conditions] * len(idx) if isinstance(conditions, Conditions) else list(conditions)
        if len(conds) != len(idx):
            raise ValueError(f"{len(conds)} conditions for {len(idx)} drones")
        self._set(idx, len(idx), [c.wind_mean for c in conds], [c.gust_std for c in conds], [c.gust_tau for c in conds])

    def _set(self, idx: slice | np.ndarray, n: int, mean, gust_std, gust_tau) -> None:
        mean_arr = np.asarray(mean, dtype=np.float64)
        if mean_arr.shape[-1:] not in ((2,), (3,)) or mean_arr.ndim > 2 or (mean_arr.ndim == 2 and len(mean_arr) != n):
            raise ValueError(f"wind mean must be shaped [2], [3], [{n}, 2] or [{n}, 3], got {list(mean_arr.shape)}")
        std = np.broadcast_to(np.asarray(gust_std, dtype=np.float64), (n,))
        tau = np.broadcast_to(np.asarray(gust_tau, dtype=np.float64), (n,))
        if (std < 0).any() or not (tau > 0).all():
            raise ValueError(f"gust_std must be >= 0 and gust_tau > 0 s, got {gust_std}, {gust_tau}")
        self.mean[idx] = 0.0
        self.mean[idx, : mean_arr.shape[-1]] = mean_arr
        self.gust_std[idx] = std
        self.gust_tau[idx] = tau
        self._axis_std = self.gust_std[:, None] * np.array([1.0, 1.0, self.vertical_ratio])
        self.reset(None if isinstance(idx, slice) else idx)

    @property
    def is_calm(self) -> bool:
        return not self.gust_std.any() and not self.mean.any()

    def reset(self, indices: np.ndarray | None = None) -> None:
        """Redraw gusts from the stationary distribution (all drones, or ``indices``)."""
        idx = slice(None) if indices is None else np.asarray(indices)
        if not self._axis_std[idx].any():
            self.gust[idx] = 0.0
            return
        if isinstance(self.rng, DroneStreams):
            # Per-drone streams: only a gusty drone draws, as it would flying alone.
            for i in self.rng.rows(idx):
                self.gust[i] = self._axis_std[i] * self.rng[i].standard_normal(3) if self._axis_std[i].any() else 0.0
            return
        self.gust[idx] = self._axis_std[idx] * self.rng.standard_normal(self.gust[idx].shape)

    def current(self) -> np.ndarray:
        """Wind now, ``[N, 3]``, without advancing the gusts."""
        return self.mean + self.gust

    def sample(self, dt: float) -> np.ndarray:
        """Advance the gusts by ``dt`` seconds and return the wind, ``[N, 3]`` world m/s."""
        if self.gust_std.any():
            decay = np.exp(-dt / self.gust_tau)[:, None]
            scale = self._axis_std * np.sqrt(1.0 - decay * decay)
            if isinstance(self.rng, DroneStreams):
                shocks = np.zeros((self.num_drones, 3))
                for i in np.flatnonzero(self.gust_std > 0):
                    shocks[i] = self.rng[int(i)].standard_normal(3)
            else:
                shocks = self.rng.standard_normal((self.num_drones, 3))
            self.gust = self.gust * decay + scale * shocks
        return self.mean + self.gust
