"""Sensor data -> policy inputs, one implementation for training data, simulation and the node.

A controller only flies as well as it was trained if it sees its inputs
prepared exactly as in training: the same resize filter, the same goal
encoding. The dataset builder, DAgger roll-outs, the benchmark and the
controller node all call these functions.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import cv2
import numpy as np
import torch

from .policy import GOAL_SIZE, IMU_SIZE, PolicyConfig


def resize_rgb(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 ``[H, W, 3]`` -> uint8 ``[height, width, 3]`` (area filter when shrinking, as cameras bin)."""
    if rgb.shape[:2] == (height, width):
        return rgb
    shrinking = height <= rgb.shape[0] and width <= rgb.shape[1]
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def goal_features(goal_body: np.ndarray) -> np.ndarray:
    """Body-frame vectors to the goal ``[..., 3]`` (m) -> ``[..., 4]``: unit direction, distance."""
    goal_body = np.asarray(goal_body, dtype=np.float32)
    distance = np.linalg.norm(goal_body, axis=-1, keepdims=True)
    direction = np.divide(goal_body, distance, out=np.zeros_like(goal_body), where=distance > 1e-9)
    out = np.concatenate([direction, distance], axis=-1).astype(np.float32)
    assert out.shape[-1] == GOAL_SIZE
    return out


def policy_inputs(
    config: PolicyConfig,
    images: np.ndarray,
    goal_body: Optional[np.ndarray] = None,
    imu: Optional[np.ndarray] = None,
) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """A batch of observations ``[N, H, W, 3]`` -> ``(image [N, 3, h, w] uint8, extras)`` for ``policy.step``."""
    h, w = config.encoder.height, config.encoder.width
    frames = np.stack([resize_rgb(np.asarray(im), h, w) for im in images])
    image = torch.from_numpy(np.ascontiguousarray(frames.transpose(0, 3, 1, 2)))
    extras: Dict[str, torch.Tensor] = {}
    if config.use_goal:
        if goal_body is None:
            raise ValueError("this policy uses the goal; pass goal_body")
        extras["goal"] = torch.from_numpy(goal_features(goal_body))
    if config.use_imu:
        if imu is None:
            raise ValueError("this policy uses the IMU; pass imu")
        extras["imu"] = torch.from_numpy(np.asarray(imu, dtype=np.float32).reshape(-1, IMU_SIZE))
    return image, extras
