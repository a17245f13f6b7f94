"""One random stream per drone, seeded by the drone's world: noise that does not depend on the batch.

A :class:`~lnn_nav.sim.env.FlightBatch` flies N drones at once. If their
wind gusts, IMU noise and camera noise came from one shared generator, what
drone 3 feels would depend on which other worlds happen to fly beside it,
on how many drones a worker batches and on how the seeds were split between
workers; and ``sim_node`` (one drone) could never fly the same episode as
the batched benchmark. With :class:`DroneStreams` each drone draws from its
own generator, re-seeded from the world seed whenever the drone starts an
episode: a seed's episode sees the same noise in a batch of 16, alone, or
behind the ROS 2 graph.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Second word of the seed sequence of a world's noise stream: ``SeedSequence([world_seed, NOISE_KEY])``,
#: so the noise is independent of the generators the world itself was built from (``default_rng(seed)``).
NOISE_KEY = 0x6E6F6973

Indices = slice | Sequence[int] | np.ndarray


class DroneStreams:
    """N independent ``numpy`` generators, one per drone.

    Built from ``rng`` (spawned children) so drones that have not been
    :meth:`seed`-ed yet still draw reproducibly; :meth:`seed` gives drone
    ``i`` the stream of a world seed.
    """

    def __init__(self, num_drones: int, rng: np.random.Generator | None = None) -> None:
        if num_drones < 1:
            raise ValueError(f"num_drones must be >= 1, got {num_drones}")
        parent = rng if rng is not None else np.random.default_rng()
        self.streams: list[np.random.Generator] = list(parent.spawn(num_drones))

    def __len__(self) -> int:
        return len(self.streams)

    def __getitem__(self, i: int) -> np.random.Generator:
        return self.streams[i]

    def seed(self, i: int, world_seed: int) -> None:
        """Drone ``i`` draws from the stream of ``world_seed`` from now on (its episode starts)."""
        self.streams[int(i)] = world_noise_rng(world_seed)

    def rows(self, indices: Indices) -> list[int]:
        """``indices`` (a slice, e.g. ``slice(None)``, or integers) as a list of drone numbers."""
        if isinstance(indices, slice):
            return list(range(len(self.streams)))[indices]
        return [int(i) for i in np.asarray(indices).reshape(-1)]

    def standard_normal(self, indices: Indices, width: int) -> np.ndarray:
        """``[len(indices), width]`` standard normals, row k from drone ``indices[k]``'s own stream."""
        rows = self.rows(indices)
        out = np.empty((len(rows), width))
        for k, i in enumerate(rows):
            out[k] = self.streams[i].standard_normal(width)
        return out


def world_noise_rng(world_seed: int) -> np.random.Generator:
    """The generator a drone's wind, IMU and camera noise come from in the world of ``world_seed``."""
    return np.random.default_rng([int(world_seed) & 0xFFFFFFFFFFFFFFFF, NOISE_KEY])
