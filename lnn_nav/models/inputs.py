"""Sensor data -> policy inputs, one implementation for training data, simulation and the node.

A controller only flies as well as it was trained if it sees its inputs
prepared exactly as in training: the same resize filter, the same goal
encoding. The dataset builder, DAgger roll-outs, the benchmark and the
controller node all call these functions.
"""

from __future__ import annotations

import numpy as np
import torch

from lnn_nav.models.preprocess import goal_features, resize_rgb

from .policy import IMU_SIZE, PolicyConfig

__all__ = ["goal_features", "policy_inputs", "resize_rgb"]


def policy_inputs(
    config: PolicyConfig,
    images: np.ndarray,
    goal_body: np.ndarray | None = None,
    imu: np.ndarray | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """A batch of observations ``[N, H, W, 3]`` -> ``(image [N, 3, h, w] uint8, extras)`` for ``policy.step``."""
    h, w = config.encoder.height, config.encoder.width
    frames = np.stack([resize_rgb(np.asarray(im), h, w) for im in images])
    image = torch.from_numpy(np.ascontiguousarray(frames.transpose(0, 3, 1, 2)))
    extras: dict[str, torch.Tensor] = {}
    if config.use_goal:
        if goal_body is None:
            raise ValueError("this policy uses the goal; pass goal_body")
        extras["goal"] = torch.from_numpy(goal_features(goal_body))
    if config.use_imu:
        if imu is None:
            raise ValueError("this policy uses the IMU; pass imu")
        extras["imu"] = torch.from_numpy(np.asarray(imu, dtype=np.float32).reshape(-1, IMU_SIZE))
    return image, extras
