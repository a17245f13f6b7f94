"""ROS message objects for rosbag2 files, built with the ``rosbags`` typestore (no rclpy needed).

The simulator's recorders (``lnn-nav collect``, DAgger) write the same
topics and types a drone running ``ros2 bag record`` would, so the dataset
tools cannot tell a simulated demonstration from a real flight:

======================  ===========================  =========================
topic                   type                         stamp
======================  ===========================  =========================
``/camera/image_raw``   ``sensor_msgs/msg/Image``    frame time (rgb8)
``/camera/camera_info`` ``sensor_msgs/msg/CameraInfo``  frame time (pinhole K, as a driver publishes)
``/imu/data``           ``sensor_msgs/msg/Imu``      frame time
``/odom``               ``nav_msgs/msg/Odometry``    frame time (``odom`` frame)
``/goal_pose``          ``geometry_msgs/msg/PoseStamped``  once, at the start
``/cmd_vel``            ``geometry_msgs/msg/TwistStamped`` the frame it answers
======================  ===========================  =========================
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias

import numpy as np
from rosbags.typesys import Stores, get_typestore

#: A vector the builders index and convert with float(): a sequence, or a numpy row of a recorded array.
Vector: TypeAlias = "Sequence[float] | np.ndarray"

TOPIC_IMAGE = "/camera/image_raw"
TOPIC_CAMERA_INFO = "/camera/camera_info"
TOPIC_IMU = "/imu/data"
TOPIC_ODOM = "/odom"
TOPIC_GOAL = "/goal_pose"
TOPIC_CMD = "/cmd_vel"
TOPIC_WORLD = "/sim_node/world"
TOPIC_OUTCOME = "/sim_node/outcome"

#: Topic -> type of a simulated recording.
SIM_TOPICS: dict[str, str] = {
    TOPIC_IMAGE: "sensor_msgs/msg/Image",
    TOPIC_CAMERA_INFO: "sensor_msgs/msg/CameraInfo",
    TOPIC_IMU: "sensor_msgs/msg/Imu",
    TOPIC_ODOM: "nav_msgs/msg/Odometry",
    TOPIC_GOAL: "geometry_msgs/msg/PoseStamped",
    TOPIC_CMD: "geometry_msgs/msg/TwistStamped",
    TOPIC_WORLD: "std_msgs/msg/String",
    TOPIC_OUTCOME: "std_msgs/msg/String",
}

_NS = 1_000_000_000
STORE = get_typestore(Stores.ROS2_JAZZY)
_T = STORE.types
_IDENTITY_COV = np.zeros(9, dtype=np.float64)
_POSE_COV = np.zeros(36, dtype=np.float64)


def header(stamp_ns: int, frame_id: str) -> Any:
    stamp = _T["builtin_interfaces/msg/Time"](sec=int(stamp_ns // _NS), nanosec=int(stamp_ns % _NS))
    return _T["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)


def image(rgb: np.ndarray, stamp_ns: int, frame_id: str = "camera") -> Any:
    h, w = rgb.shape[:2]
    data = np.ascontiguousarray(rgb, dtype=np.uint8).reshape(-1)
    return _T["sensor_msgs/msg/Image"](
        header=header(stamp_ns, frame_id), height=h, width=w, encoding="rgb8", is_bigendian=0, step=w * 3, data=data
    )


def camera_info(width: int, height: int, intrinsics: Vector, stamp_ns: int, frame_id: str = "camera") -> Any:
    """``sensor_msgs/CameraInfo`` of an undistorted pinhole camera; ``intrinsics`` = ``(fx, fy, cx, cy)``.

    The same fields as the simulator node's (:func:`lnn_nav.nodes.conversions.camera_info_msg`),
    whose ``K`` the dataset reads the field of view from.
    """
    fx, fy, cx, cy = (float(v) for v in intrinsics)
    return _T["sensor_msgs/msg/CameraInfo"](
        header=header(stamp_ns, frame_id),
        height=int(height),
        width=int(width),
        distortion_model="plumb_bob",
        d=np.zeros(5),
        k=np.array([fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]),
        r=np.eye(3).reshape(-1),
        p=np.array([fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]),
        binning_x=0,
        binning_y=0,
        roi=_T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
    )


def _vec3(v: Vector) -> Any:
    return _T["geometry_msgs/msg/Vector3"](x=float(v[0]), y=float(v[1]), z=float(v[2]))


def _quat(q_wxyz: Vector) -> Any:
    return _T["geometry_msgs/msg/Quaternion"](
        x=float(q_wxyz[1]), y=float(q_wxyz[2]), z=float(q_wxyz[3]), w=float(q_wxyz[0])
    )


def imu(values: Vector, q_wxyz: Vector, stamp_ns: int, frame_id: str = "base_link") -> Any:
    """``values``: accel xyz (m/s²) then gyro xyz (rad/s), body FLU."""
    return _T["sensor_msgs/msg/Imu"](
        header=header(stamp_ns, frame_id),
        orientation=_quat(q_wxyz),
        orientation_covariance=_IDENTITY_COV,
        angular_velocity=_vec3(values[3:6]),
        angular_velocity_covariance=_IDENTITY_COV,
        linear_acceleration=_vec3(values[0:3]),
        linear_acceleration_covariance=_IDENTITY_COV,
    )


def odometry(
    position: Vector,
    q_wxyz: Vector,
    velocity_body: Vector,
    rates_body: Vector,
    stamp_ns: int,
) -> Any:
    point = _T["geometry_msgs/msg/Point"](x=float(position[0]), y=float(position[1]), z=float(position[2]))
    pose = _T["geometry_msgs/msg/Pose"](position=point, orientation=_quat(q_wxyz))
    twist = _T["geometry_msgs/msg/Twist"](linear=_vec3(velocity_body), angular=_vec3(rates_body))
    return _T["nav_msgs/msg/Odometry"](
        header=header(stamp_ns, "odom"),
        child_frame_id="base_link",
        pose=_T["geometry_msgs/msg/PoseWithCovariance"](pose=pose, covariance=_POSE_COV),
        twist=_T["geometry_msgs/msg/TwistWithCovariance"](twist=twist, covariance=_POSE_COV),
    )


def pose_stamped(position: Vector, stamp_ns: int, frame_id: str = "odom") -> Any:
    point = _T["geometry_msgs/msg/Point"](x=float(position[0]), y=float(position[1]), z=float(position[2]))
    pose = _T["geometry_msgs/msg/Pose"](position=point, orientation=_quat((1.0, 0.0, 0.0, 0.0)))
    return _T["geometry_msgs/msg/PoseStamped"](header=header(stamp_ns, frame_id), pose=pose)


def twist_stamped(command: Vector, stamp_ns: int, frame_id: str = "base_link") -> Any:
    """``command``: ``[vx, vy, vz, yaw_rate]``."""
    twist = _T["geometry_msgs/msg/Twist"](linear=_vec3(command[:3]), angular=_vec3((0.0, 0.0, command[3])))
    return _T["geometry_msgs/msg/TwistStamped"](header=header(stamp_ns, frame_id), twist=twist)


def string(text: str) -> Any:
    return _T["std_msgs/msg/String"](data=text)
