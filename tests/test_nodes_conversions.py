"""Message conversions and the controller's pure decision logic (no ROS graph)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseStamped, TwistStamped
from sensor_msgs.msg import CompressedImage, Image

from lnn_nav.models import EncoderConfig, LiquidPolicy, PolicyConfig
from lnn_nav.nodes.controller_logic import DtTracker, InputWatchdog, clamp_command
from lnn_nav.nodes.conversions import (
    ImageConversionError,
    array_to_imu_msg,
    camera_info_msg,
    command_to_twist_stamped,
    compressed_image_to_rgb,
    goal_input,
    image_msg_to_rgb,
    imu_msg_to_array,
    odometry_msg,
    preprocess_for_policy,
    rgb_to_image_msg,
    seconds_to_stamp,
    stamp_to_nanoseconds,
    stamp_to_seconds,
    twist_to_command,
)
from lnn_nav.sim.camera import CameraConfig

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
STAMP = Time(sec=12, nanosec=34)


def _image(pixels: np.ndarray, encoding: str, pad: int = 0) -> Image:
    h, w = pixels.shape[:2]
    rows = pixels.reshape(h, -1)
    padded = np.concatenate([rows, np.full((h, pad), 0xAB, np.uint8)], axis=1)
    return Image(height=h, width=w, encoding=encoding, is_bigendian=0, step=rows.shape[1] + pad, data=padded.tobytes())


@pytest.mark.parametrize(
    "encoding, pixels",
    [
        ("rgb8", RGB),
        ("bgr8", RGB[..., ::-1]),
        ("rgba8", np.dstack([RGB, np.full(RGB.shape[:2], 9, np.uint8)])),
        ("bgra8", np.dstack([RGB[..., ::-1], np.full(RGB.shape[:2], 9, np.uint8)])),
    ],
)
@pytest.mark.parametrize("pad", [0, 3])
def test_colour_encodings_convert_to_rgb_honouring_step_padding(encoding, pixels, pad):
    out = image_msg_to_rgb(_image(np.ascontiguousarray(pixels), encoding, pad))
    assert out.dtype == np.uint8 and out.shape == (5, 7, 3)
    np.testing.assert_array_equal(out, RGB)


@pytest.mark.parametrize("pad", [0, 1])
def test_mono8_is_replicated_to_three_channels(pad):
    gray = RGB[..., 0].copy()
    out = image_msg_to_rgb(_image(gray[..., None], "mono8", pad))
    np.testing.assert_array_equal(out, np.repeat(gray[..., None], 3, axis=2))


def test_unknown_encoding_error_lists_the_supported_ones():
    msg = _image(RGB, "rgb8")
    msg.encoding = "yuv422"
    with pytest.raises(ImageConversionError, match="yuv422.*rgb8, bgr8, rgba8, bgra8, mono8"):
        image_msg_to_rgb(msg)


def test_data_size_not_matching_step_times_height_is_rejected():
    msg = _image(RGB, "rgb8")
    msg.data = bytes(msg.data)[:-1]
    with pytest.raises(ImageConversionError, match="expected step\\*height"):
        image_msg_to_rgb(msg)


def test_step_smaller_than_a_row_is_rejected():
    msg = _image(RGB, "rgb8")
    msg.step = 7 * 3 - 1
    msg.data = bytes(msg.step * msg.height)
    with pytest.raises(ImageConversionError, match="smaller than width\\*channels"):
        image_msg_to_rgb(msg)


def test_zero_sized_image_is_rejected():
    with pytest.raises(ImageConversionError, match="zero size"):
        image_msg_to_rgb(Image(height=0, width=4, encoding="rgb8", step=12))


def test_is_bigendian_must_be_zero_or_one():
    msg = _image(RGB, "rgb8")
    msg.is_bigendian = 2
    with pytest.raises(ImageConversionError, match="is_bigendian"):
        image_msg_to_rgb(msg)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8"])
def test_rgb_to_image_msg_round_trips(encoding):
    msg = rgb_to_image_msg(RGB, STAMP, "camera_optical_frame", encoding)
    assert (msg.encoding, msg.step, msg.header.frame_id) == (encoding, 21, "camera_optical_frame")
    assert msg.header.stamp == STAMP
    np.testing.assert_array_equal(image_msg_to_rgb(msg), RGB)


def _compressed(ext: str, fmt: str, rgb: np.ndarray) -> CompressedImage:
    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return CompressedImage(format=fmt, data=buf.tobytes())


def test_png_compressed_image_round_trips_exactly():
    out = compressed_image_to_rgb(_compressed(".png", "png", RGB))
    np.testing.assert_array_equal(out, RGB)


def test_jpeg_compressed_image_decodes_to_rgb():
    flat = np.zeros((16, 16, 3), np.uint8)
    flat[...] = (200, 40, 10)
    out = compressed_image_to_rgb(_compressed(".jpg", "rgb8; jpeg compressed bgr8", flat))
    assert out.shape == (16, 16, 3)
    assert np.abs(out.astype(int) - flat).max() <= 6  # RGB order kept, within JPEG loss


def test_corrupt_jpeg_raises_image_conversion_error():
    msg = _compressed(".jpg", "jpeg", RGB)
    msg.data = bytes(msg.data)[:10]
    with pytest.raises(ImageConversionError, match="could not be decoded"):
        compressed_image_to_rgb(msg)


def test_stamp_round_trip_is_exact_at_large_times():
    stamp = Time(sec=1_700_000_000, nanosec=123_456_789)
    assert stamp_to_nanoseconds(stamp) == 1_700_000_000_123_456_789
    back = seconds_to_stamp(stamp_to_seconds(stamp))
    # float64 resolves ~240 ns at 1.7e9 s; the split keeps the error at that bound.
    assert back.sec == stamp.sec and abs(back.nanosec - stamp.nanosec) < 300
    assert seconds_to_stamp(1_700_000_000.5) == Time(sec=1_700_000_000, nanosec=500_000_000)
    assert seconds_to_stamp(0.999_999_999_9) == Time(sec=1, nanosec=0)


def test_imu_array_round_trip_and_no_orientation_flag():
    values = [0.1, -0.2, 9.81, 0.01, 0.02, -0.03]
    msg = array_to_imu_msg(values, STAMP, "imu_link")
    assert msg.orientation_covariance[0] == -1.0
    np.testing.assert_allclose(imu_msg_to_array(msg), values, rtol=1e-6)


def test_command_twist_round_trip():
    msg = command_to_twist_stamped([1.0, -0.5, 0.25, 0.75], STAMP)
    assert msg.header.frame_id == "base_link" and msg.header.stamp == STAMP
    assert (msg.twist.angular.x, msg.twist.angular.y) == (0.0, 0.0)
    np.testing.assert_array_equal(twist_to_command(msg), [1.0, -0.5, 0.25, 0.75])
    np.testing.assert_array_equal(twist_to_command(msg.twist), [1.0, -0.5, 0.25, 0.75])


def test_camera_info_carries_the_pinhole_intrinsics():
    cam = CameraConfig(width=64, height=48, hfov_deg=90.0)
    info = camera_info_msg(cam, STAMP, "camera_optical_frame")
    fx, fy, cx, cy = cam.intrinsics()
    assert (info.width, info.height, info.distortion_model) == (64, 48, "plumb_bob")
    np.testing.assert_allclose(np.reshape(info.k, (3, 3)), cam.camera_matrix())
    np.testing.assert_allclose(info.p, [fx, 0, cx, 0, 0, fy, cy, 0, 0, 0, 1, 0])
    np.testing.assert_allclose(np.reshape(info.r, (3, 3)), np.eye(3))
    assert list(info.d) == [0.0] * 5


def _yawed_odom(yaw: float, position=(1.0, 2.0, 3.0)):
    q = [math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]
    return odometry_msg(position, q, [0.5, 0, 0], [0, 0, 0.1], STAMP)


def _goal(x, y, z, frame="odom") -> PoseStamped:
    goal = PoseStamped()
    goal.header.frame_id = frame
    goal.pose.position.x, goal.pose.position.y, goal.pose.position.z = x, y, z
    return goal


def test_odometry_msg_puts_twist_in_the_body_frame():
    odom = _yawed_odom(0.3)
    assert (odom.header.frame_id, odom.child_frame_id) == ("odom", "base_link")
    assert odom.twist.twist.linear.x == 0.5 and odom.twist.twist.angular.z == 0.1
    assert odom.pose.pose.position.z == 3.0


def test_goal_input_rotates_into_the_body_frame():
    # Drone at (1, 2, 3) yawed +90 deg (nose along world +y); goal 4 m along world +x
    # and 3 m up: in FLU that is to the right (-y) and up, 5 m away.
    out = goal_input(_yawed_odom(math.pi / 2), _goal(5.0, 2.0, 6.0))
    np.testing.assert_allclose(out, [0.0, -0.8, 0.6, 5.0], atol=1e-6)


def test_goal_input_frames_must_match():
    with pytest.raises(ValueError, match="'map'.*'odom'"):
        goal_input(_yawed_odom(0.0), _goal(0, 0, 0, frame="map"))


def test_preprocess_resizes_to_a_uint8_nchw_tensor():
    big = np.full((96, 128, 3), 7, np.uint8)
    big[..., 2] = 200
    out = preprocess_for_policy(big, 48, 64)
    assert out.dtype == torch.uint8 and list(out.shape) == [1, 3, 48, 64]
    assert out[0, 0].unique().tolist() == [7] and out[0, 2].unique().tolist() == [200]


def test_preprocess_at_the_policy_size_is_a_view_of_the_frame_not_a_copy():
    frame = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    out = preprocess_for_policy(frame, 48, 64)
    assert list(out.shape) == [1, 3, 48, 64] and np.shares_memory(out.numpy(), frame)
    assert torch.equal(out, torch.from_numpy(np.ascontiguousarray(frame.transpose(2, 0, 1))).unsqueeze(0))
    # A message's rgb8 buffer viewed in place (rows padded to a wider step) gives the same tensor.
    msg = rgb_to_image_msg(frame, Time(), "camera")
    padded = np.zeros((48, 64 * 3 + 8), np.uint8)
    padded[:, : 64 * 3] = frame.reshape(48, -1)
    msg.step, msg.data = 64 * 3 + 8, padded.tobytes()
    view = image_msg_to_rgb(msg, copy=False)
    assert torch.equal(preprocess_for_policy(view, 48, 64), out)
    # The fused policy step reads the channels-last view as the reference reads a contiguous copy.
    torch.manual_seed(0)
    policy = LiquidPolicy(PolicyConfig(encoder=EncoderConfig(height=48, width=64))).eval()
    with torch.inference_mode():
        fast, _ = policy.step(out, 0.05, None)
        reference, _ = policy.step(out.contiguous(), 0.05, None)
    torch.testing.assert_close(fast, reference, rtol=0, atol=1e-6)


def test_dt_tracker_first_frame_uses_the_nominal_dt():
    tracker = DtTracker(nominal_dt=0.05, max_dt=0.5)
    step = tracker.update(10_000_000_000)
    assert step.dt == 0.05 and step.reset is None


def test_dt_tracker_uses_the_stamp_difference():
    tracker = DtTracker(0.05, 0.5)
    tracker.update(10_000_000_000)
    step = tracker.update(10_033_000_000)
    assert step.dt == pytest.approx(0.033) and step.reset is None


@pytest.mark.parametrize("next_ns, why", [(9_900_000_000, "back"), (10_600_000_000, "exceeds max_dt")])
def test_dt_tracker_jumps_reset_the_state_and_use_the_nominal_dt(next_ns, why):
    tracker = DtTracker(0.05, 0.5)
    tracker.update(10_000_000_000)
    step = tracker.update(next_ns)
    assert step.dt == 0.05 and why in step.reset
    assert tracker.update(next_ns + 40_000_000).dt == pytest.approx(0.04)


def test_dt_tracker_reset_makes_the_next_frame_a_first_frame():
    tracker = DtTracker(0.05, 0.5)
    tracker.update(10_000_000_000)
    tracker.reset()
    step = tracker.update(90_000_000_000)
    assert step.dt == 0.05 and step.reset is None


def test_watchdog_reports_stale_and_missing_inputs():
    dog = InputWatchdog({"camera": 0.25, "goal": None})
    dog.arm(0)
    assert dog.stale(100_000_000) == ["goal: nothing received yet"]
    dog.mark("goal", 100_000_000)
    assert dog.stale(200_000_000) == []
    assert dog.stale(300_000_000) == ["camera: nothing received yet"]
    dog.mark("camera", 300_000_000)
    assert dog.stale(500_000_000) == []
    assert dog.stale(600_000_000)[0].startswith("camera: no data for 0.30 s")


def test_watchdog_armed_before_the_clock_runs_counts_from_its_first_reading():
    # Simulated time reads 0 until the first /clock; a simulator starting at 1000 s must not read as
    # 1000 s without a frame (the hover that followed answered the lockstep simulator's first frame).
    dog = InputWatchdog({"camera": 0.25, "odom": 0.25})
    dog.arm(None)
    assert dog.stale(1_000_000_000_000) == []
    assert dog.stale_inputs(1_000_300_000_000) == {
        "camera": "camera: nothing received yet",
        "odom": "odom: nothing received yet",
    }


def test_clamp_keeps_horizontal_direction_and_bounds_each_axis():
    out = clamp_command(np.array([3.0, 4.0, -2.0, 5.0]), 2.0, 1.0, 0.5)
    np.testing.assert_allclose(out, [1.2, 1.6, -1.0, 0.5])
    np.testing.assert_array_equal(clamp_command(np.array([0.1, 0, 0, 0]), 2, 1, 1), [0.1, 0, 0, 0])


@pytest.mark.parametrize("frame_id", ["", "a", "ab", "abc", "abcd", "abcde", "abcdef", "abcdefg", "base_link"])
@pytest.mark.parametrize("sec, nanosec", [(0, 0), (1000, 50_000_000), (-5, 999_999_999)])
def test_twist_stamped_cdr_is_the_bytes_rclpy_serialises(frame_id: str, sec: int, nanosec: int) -> None:
    # The controller's raw_io path publishes these bytes: frame ids of lengths 0-7 and 9 (every padding
    # of the six doubles, 0-7 bytes) must give exactly what rclpy's serialiser makes of the same message.
    from rclpy.serialization import deserialize_message, serialize_message

    from lnn_nav.data.cdr import write_twist_stamped

    cmd = [1.5, -0.25, 0.1, 0.3]
    msg = command_to_twist_stamped(cmd, Time(sec=sec, nanosec=nanosec), frame_id)
    raw = write_twist_stamped(sec, nanosec, frame_id, (1.5, -0.25, 0.1, 0.0, 0.0, 0.3))
    ref = serialize_message(msg)
    # Equal but for the padding before the doubles, which rclpy's serialiser leaves uninitialised.
    pad_from = 4 + 12 + len(frame_id) + 1
    pad_to = 4 + ((pad_from - 4 + 7) & ~7)
    assert len(raw) == len(ref) and raw[pad_from:pad_to] == bytes(pad_to - pad_from)
    assert raw[:pad_from] == ref[:pad_from] and raw[pad_to:] == ref[pad_to:]
    back = deserialize_message(raw, TwistStamped)
    assert (back.header.stamp.sec, back.header.stamp.nanosec, back.header.frame_id) == (sec, nanosec, frame_id)
    assert twist_to_command(back).tolist() == pytest.approx(cmd)
