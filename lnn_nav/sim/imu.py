"""IMU model: accelerometer and gyroscope with white noise, turn-on bias and bias random walk."""

from __future__ import annotations

import math

import numpy as np

from lnn_nav.sim.noise import DroneStreams
from lnn_nav.sim.wind import RngLike


class ImuModel:
    """Body-frame (FLU) IMU readings for N drones, ``[N, 6]``: accel xyz (m/s^2), then gyro xyz (rad/s).

    ``reading = truth + bias + noise``, per axis, the shape of Gazebo's IMU
    noise model (``gz-sensors`` ``ImuSensor``: a Gaussian per-sample noise and a
    bias that is drawn at start and then wanders), so the embedded simulator
    and the Gazebo harness can be configured with the same numbers:

    * ``*_noise_std``: standard deviation of each reading. Readings are
      taken to be the sensor's output averaged over the reading interval, so
      for a sensor specified by a noise density ``sigma_c`` (per root Hz) a
      reading at rate ``f`` has ``std = sigma_c * sqrt(f)``.
    * ``*_bias_std``: spread of the bias drawn at :meth:`reset` (the turn-on
      bias left after calibration).
    * ``*_bias_walk``: random-walk intensity of the bias (per root second):
      over ``dt`` the bias moves by ``N(0, walk^2 dt)``.

    Defaults are a consumer MEMS IMU of the Bosch BMI088 class on a
    soft-mounted flight controller, read at tens of Hz: accel noise
    density 175 ug/sqrt(Hz) plus airframe vibration gives ~0.03 m/s^2 per
    reading; gyro 0.014 deg/s/sqrt(Hz) plus vibration ~0.003 rad/s; calibrated
    turn-on biases of ~0.05 m/s^2 (5 mg) and ~0.3 deg/s.
    """

    def __init__(
        self,
        accel_noise_std: float = 0.03,
        gyro_noise_std: float = 0.003,
        accel_bias_std: float = 0.05,
        gyro_bias_std: float = 0.005,
        accel_bias_walk: float = 0.002,
        gyro_bias_walk: float = 5.0e-5,
        rng: RngLike = None,
        num_drones: int = 1,
    ) -> None:
        values = dict(
            accel_noise_std=accel_noise_std,
            gyro_noise_std=gyro_noise_std,
            accel_bias_std=accel_bias_std,
            gyro_bias_std=gyro_bias_std,
            accel_bias_walk=accel_bias_walk,
            gyro_bias_walk=gyro_bias_walk,
        )
        for name, value in values.items():
            if not value >= 0:
                raise ValueError(f"ImuModel {name} must be >= 0, got {value}")
        if num_drones < 1:
            raise ValueError(f"num_drones must be >= 1, got {num_drones}")
        self.num_drones = int(num_drones)
        self.noise_std = np.array([accel_noise_std] * 3 + [gyro_noise_std] * 3)
        self.bias_std = np.array([accel_bias_std] * 3 + [gyro_bias_std] * 3)
        self.bias_walk = np.array([accel_bias_walk] * 3 + [gyro_bias_walk] * 3)
        self.rng = rng if isinstance(rng, (np.random.Generator, DroneStreams)) else np.random.default_rng(rng)
        self.bias = np.zeros((self.num_drones, 6))
        self.reset()

    @classmethod
    def ideal(cls, num_drones: int = 1) -> ImuModel:
        """An IMU without noise or bias: readings are the truth."""
        return cls(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, num_drones=num_drones)

    def reset(self, indices: np.ndarray | None = None) -> None:
        """Draw new turn-on biases (all drones, or ``indices``)."""
        idx = slice(None) if indices is None else np.asarray(indices)
        self.bias[idx] = self.bias_std * self._normal(idx)

    def measure(self, specific_force_body: np.ndarray, angular_velocity_body: np.ndarray, dt: float) -> np.ndarray:
        """One reading per drone, ``[N, 6]``, after the bias has walked for ``dt`` seconds."""
        if not dt >= 0:
            raise ValueError(f"dt must be >= 0 s, got {dt}")
        truth = np.concatenate(
            [
                np.asarray(specific_force_body, dtype=np.float64).reshape(self.num_drones, 3),
                np.asarray(angular_velocity_body, dtype=np.float64).reshape(self.num_drones, 3),
            ],
            axis=1,
        )
        if self.bias_walk.any():
            self.bias = self.bias + self.bias_walk * math.sqrt(dt) * self._normal(slice(None))
        reading = truth + self.bias
        if self.noise_std.any():
            reading = reading + self.noise_std * self._normal(slice(None))
        return reading

    def _normal(self, idx: slice | np.ndarray) -> np.ndarray:
        """``[drones in idx, 6]`` standard normals, from each drone's own stream when the IMU has them."""
        if isinstance(self.rng, DroneStreams):
            return self.rng.standard_normal(idx, 6)
        return self.rng.standard_normal((len(self.bias[idx]), 6))
