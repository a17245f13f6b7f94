"""Conversions between ROS 2 messages and the arrays and tensors the models and simulator use.

Pure functions, no node state: every one is testable without a ROS graph.
Frames follow REP-103 (body FLU, world ENU) and REP-105 (``odom`` ->
``base_link``); quaternions in arrays are ``(w, x, y, z)``.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseStamped, Twist, TwistStamped
from nav_msgs.msg import Odometry
from numpy.typing import ArrayLike
from sensor_msgs.msg import CameraInfo, Image, Imu

from lnn_nav.data.images import (  # noqa: F401 - re-exported: the nodes' conversion API
    SUPPORTED_ENCODINGS,
    ImageConversionError,
    compressed_image_to_rgb,
    image_msg_to_rgb,
)
from lnn_nav.geometry import quat_to_matrix
from lnn_nav.models.inputs import resize_rgb
from lnn_nav.models.policy import COMMAND_SIZE, IMU_SIZE
from lnn_nav.models.preprocess import goal_features
from lnn_nav.sim.camera import CameraConfig
from lnn_nav.sim.dynamics import rotate_inverse

#: Image encodings accepted by :func:`image_msg_to_rgb`, with their channel count.
_NS_PER_S = 1_000_000_000


def rgb_to_image_msg(rgb: np.ndarray, stamp: Time, frame_id: str, encoding: str = "rgb8") -> Image:
    """uint8 ``[H, W, 3]`` RGB -> ``sensor_msgs/Image`` in ``encoding`` (rgb8 or bgr8), unpadded."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ImageConversionError(f"expected a uint8 [H, W, 3] RGB array, got {rgb.dtype} {list(rgb.shape)}")
    if encoding == "rgb8":
        pixels = rgb
    elif encoding == "bgr8":
        pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    else:
        raise ImageConversionError(f"output encoding {encoding!r} is not supported; expected rgb8 or bgr8")
    msg = Image()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(rgb.shape[0]), int(rgb.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = msg.width * 3
    msg.data = np.ascontiguousarray(pixels).tobytes()
    return msg


def stamp_to_seconds(stamp: Time) -> float:
    """A ``builtin_interfaces/Time`` in seconds."""
    return stamp.sec + stamp.nanosec * 1e-9


def stamp_to_nanoseconds(stamp: Time) -> int:
    """A ``builtin_interfaces/Time`` in integer nanoseconds (exact)."""
    return int(stamp.sec) * _NS_PER_S + int(stamp.nanosec)


def seconds_to_stamp(t: float) -> Time:
    """Seconds -> ``builtin_interfaces/Time``, rounded to the nearest nanosecond.

    Seconds and the fraction are split before scaling, so large times (epoch
    stamps) do not lose nanoseconds to float products.
    """
    whole = int(np.floor(t))
    nanosec = int(round((t - whole) * _NS_PER_S))
    if nanosec >= _NS_PER_S:
        whole, nanosec = whole + 1, nanosec - _NS_PER_S
    return Time(sec=whole, nanosec=nanosec)


def imu_msg_to_array(msg: Imu) -> np.ndarray:
    """``sensor_msgs/Imu`` -> ``[ax, ay, az, wx, wy, wz]`` float32 (the policy's IMU input)."""
    a, w = msg.linear_acceleration, msg.angular_velocity
    return np.array([a.x, a.y, a.z, w.x, w.y, w.z], dtype=np.float32)


def array_to_imu_msg(values: ArrayLike, stamp: Time, frame_id: str) -> Imu:
    """``[ax, ay, az, wx, wy, wz]`` -> ``sensor_msgs/Imu`` with no orientation estimate."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size != IMU_SIZE:
        raise ValueError(f"IMU sample needs {IMU_SIZE} values (ax, ay, az, wx, wy, wz), got {v.size}")
    msg = Imu()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.linear_acceleration.x, msg.linear_acceleration.y, msg.linear_acceleration.z = v[:3]
    msg.angular_velocity.x, msg.angular_velocity.y, msg.angular_velocity.z = v[3:]
    # sensor_msgs/Imu: orientation_covariance[0] = -1 says "no orientation estimate".
    msg.orientation_covariance[0] = -1.0
    return msg


def command_to_twist_stamped(cmd: ArrayLike, stamp: Time, frame_id: str = "base_link") -> TwistStamped:
    """``[vx, vy, vz, yaw_rate]`` (body FLU) -> ``geometry_msgs/TwistStamped``."""
    c = np.asarray(cmd, dtype=np.float64).reshape(-1)
    if c.size != COMMAND_SIZE:
        raise ValueError(f"command needs {COMMAND_SIZE} values (vx, vy, vz, yaw_rate), got {c.size}")
    msg = TwistStamped()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z = (float(x) for x in c[:3])
    msg.twist.angular.z = float(c[3])
    return msg


def twist_to_command(msg: Twist | TwistStamped) -> np.ndarray:
    """``Twist`` or ``TwistStamped`` -> ``[vx, vy, vz, yaw_rate]`` float32."""
    twist = msg.twist if isinstance(msg, TwistStamped) else msg
    return np.array([twist.linear.x, twist.linear.y, twist.linear.z, twist.angular.z], dtype=np.float32)


def camera_info_msg(camera: CameraConfig, stamp: Time, frame_id: str) -> CameraInfo:
    """``sensor_msgs/CameraInfo`` of an undistorted pinhole camera (plumb_bob, zero D)."""
    fx, fy, cx, cy = camera.intrinsics()
    msg = CameraInfo()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.width, msg.height = camera.width, camera.height
    msg.distortion_model = "plumb_bob"
    msg.d = [0.0] * 5
    msg.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    msg.p = [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return msg


def odometry_msg(
    position: ArrayLike,
    quaternion_wxyz: ArrayLike,
    velocity_body: ArrayLike,
    angular_velocity_body: ArrayLike,
    stamp: Time,
    frame_id: str = "odom",
    child_frame_id: str = "base_link",
) -> Odometry:
    """``nav_msgs/Odometry``: pose in ``frame_id``, twist in ``child_frame_id`` (the body)."""
    p = [float(x) for x in np.asarray(position, dtype=np.float64).reshape(3)]
    q = [float(x) for x in np.asarray(quaternion_wxyz, dtype=np.float64).reshape(4)]
    v = [float(x) for x in np.asarray(velocity_body, dtype=np.float64).reshape(3)]
    w = [float(x) for x in np.asarray(angular_velocity_body, dtype=np.float64).reshape(3)]
    msg = Odometry()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.child_frame_id = child_frame_id
    pose = msg.pose.pose
    pose.position.x, pose.position.y, pose.position.z = p
    pose.orientation.w, pose.orientation.x, pose.orientation.y, pose.orientation.z = q
    twist = msg.twist.twist
    twist.linear.x, twist.linear.y, twist.linear.z = v
    twist.angular.x, twist.angular.y, twist.angular.z = w
    return msg


def goal_input(odom: Odometry, goal: PoseStamped) -> np.ndarray:
    """The policy's goal input ``[ux, uy, uz, distance]``: unit direction in body FLU, metres.

    The world vector from the drone to the goal is rotated into the body by
    the inverse of the odometry orientation. Both messages must share one
    fixed frame (no tf lookup here). At the goal the direction is zero.
    """
    if odom.header.frame_id != goal.header.frame_id:
        raise ValueError(
            f"goal is in frame {goal.header.frame_id!r} but odometry is in "
            f"{odom.header.frame_id!r}; publish the goal in the odometry frame"
        )
    p, g, o = odom.pose.pose.position, goal.pose.position, odom.pose.pose.orientation
    r_world_body = quat_to_matrix(np.array([o.w, o.x, o.y, o.z]))
    delta_body = rotate_inverse(r_world_body, np.array([[g.x - p.x, g.y - p.y, g.z - p.z]]))[0]
    # The simulator's float32 body vector through the same goal_features as in-process and in
    # training: the graph then feeds the policy the very bits the batched benchmark does.
    return goal_features(delta_body.astype(np.float32))


def preprocess_for_policy(rgb: np.ndarray, height: int, width: int) -> torch.Tensor:
    """uint8 ``[H, W, 3]`` RGB -> uint8 ``[1, 3, height, width]`` (the policy scales uint8 itself).

    A frame already at the policy's size is not copied: the result is a
    channels-last view of ``rgb`` (NCHW shape, HWC strides), which the fused
    encoder reads as it is and ATen's convolutions accept. A read-only ``rgb``
    (a view of an immutable buffer) is copied once: torch tensors are writable.
    """
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ImageConversionError(f"expected a uint8 [H, W, 3] RGB array, got {rgb.dtype} {list(rgb.shape)}")
    rgb = resize_rgb(rgb, height, width)  # the filter training used; the same array at the policy's size
    if not rgb.flags.writeable:
        rgb = rgb.copy()
    return torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0)
