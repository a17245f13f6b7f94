"""Fast readers for the few CDR message layouts the dataset builder needs, and one writer.

``rosbags`` deserialises through generated Python per nested type (about
100 µs for an ``Odometry``); a dataset of a few hundred thousand frames
carries several messages per frame, so that alone would dominate. These
readers unpack the fixed layouts of little-endian CDR directly with
``struct``/``numpy`` (a few µs). Anything else (big-endian data, other
types) returns ``None`` and the caller falls back to ``rosbags``. Tests
check them field by field against ``rosbags`` on recorded bags.

The controller node uses the image reader and :func:`write_twist_stamped` on
its hot path (parameter ``raw_io``): rclpy's conversion of a 36 KB ``Image``
into a Python message and of a ``TwistStamped`` out of one cost a few hundred
microseconds a frame on a loaded 2-core machine.

CDR alignment is relative to the payload after the 4-byte encapsulation
header; the message starts with ``std_msgs/Header`` (stamp, frame_id).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

_U32 = struct.Struct("<I")
_STAMP = struct.Struct("<iI")


class Stamped(NamedTuple):
    stamp_ns: int
    frame_id: str
    values: np.ndarray  # float64, layout per message type


class RawImage(NamedTuple):
    stamp_ns: int
    frame_id: str
    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: memoryview


def _little(raw: memoryview) -> bool:
    return len(raw) >= 4 and raw[0] == 0 and raw[1] == 1


def _header(buf: memoryview) -> tuple[int, str, int]:
    """``(stamp_ns, frame_id, position after header)``; positions relative to the payload."""
    sec, nsec = _STAMP.unpack_from(buf, 0)
    (n,) = _U32.unpack_from(buf, 8)
    frame = bytes(buf[12 : 12 + max(n - 1, 0)]).decode()
    return sec * 1_000_000_000 + nsec, frame, 12 + n


def _string(buf: memoryview, pos: int) -> tuple[str, int]:
    pos = (pos + 3) & ~3
    (n,) = _U32.unpack_from(buf, pos)
    return bytes(buf[pos + 4 : pos + 4 + max(n - 1, 0)]).decode(), pos + 4 + n


#: float64 values read after the header, per type: what they hold.
#: Imu: orientation xyzw, cov 9, angular velocity xyz, cov 9, linear acceleration xyz, cov 9.
#: TwistStamped: linear xyz, angular xyz. PoseStamped: position xyz, orientation xyzw.
_AFTER_HEADER = {
    "sensor_msgs/msg/Imu": 37,
    "geometry_msgs/msg/TwistStamped": 6,
    "geometry_msgs/msg/PoseStamped": 7,
}
#: Odometry: child_frame_id, then position xyz, orientation xyzw, cov 36, linear xyz, angular xyz, cov 36.
_ODOMETRY = 3 + 4 + 36 + 6 + 36


def _stamped_layout(raw: memoryview, msgtype: str) -> tuple[int, str, int, int] | None:
    """``(stamp_ns, frame_id, payload offset in raw, value count)`` of an Imu/TwistStamped/PoseStamped/Odometry."""
    if not _little(raw):
        return None
    buf = raw[4:]
    try:
        stamp, frame, pos = _header(buf)
        if msgtype == "nav_msgs/msg/Odometry":
            _, pos = _string(buf, pos)
            count = _ODOMETRY
        else:
            count = _AFTER_HEADER.get(msgtype)  # type: ignore[assignment]
            if count is None:
                return None
    except (struct.error, ValueError, UnicodeDecodeError):
        return None
    start = 4 + ((pos + 7) & ~7)
    return (stamp, frame, start, count) if start + 8 * count <= len(raw) else None


def read_stamped(raw: bytes | memoryview, msgtype: str) -> Stamped | None:
    """Header stamp and float64 payload of an Imu/TwistStamped/PoseStamped/Odometry, or None."""
    raw = memoryview(raw)
    layout = _stamped_layout(raw, msgtype)
    if layout is None:
        return None
    stamp, frame, start, count = layout
    return Stamped(stamp, frame, np.frombuffer(raw, dtype="<f8", count=count, offset=start))


def read_stamped_many(raws: Sequence[bytes], msgtype: str) -> tuple[np.ndarray, str, np.ndarray] | None:
    """:func:`read_stamped` of many messages of one topic at once: ``(stamps_ns [N], frame_id, values [N, K])``.

    Only when they share one layout (same length, encapsulation, frame ids
    and everything else before the payload: one publisher's stream), which
    makes every field sit at the same offset; None otherwise, and the caller
    reads them one by one. A topic's messages then cost one ``numpy`` view
    instead of a parse each.
    """
    if not raws:
        return None
    size = len(raws[0])
    if any(len(r) != size for r in raws):
        return None
    layout = _stamped_layout(memoryview(raws[0]), msgtype)
    if layout is None:
        return None
    _, frame_id, start, count = layout
    rows = np.frombuffer(b"".join(raws), dtype=np.uint8).reshape(len(raws), size)
    # The encapsulation and the strings before the payload (frame id, Odometry's child frame id; length
    # and bytes) must match the first message's. Padding is not compared: serialisers may leave garbage.
    frame_end = 16 + int(rows[0, 12:16].view("<u4")[0])
    keep = [np.arange(0, 4), np.arange(12, frame_end)]
    if msgtype == "nav_msgs/msg/Odometry":
        child = 4 + ((frame_end - 4 + 3) & ~3)
        keep.append(np.arange(child, child + 4 + int(rows[0, child : child + 4].view("<u4")[0])))
    same = rows[:, np.concatenate(keep)]
    if not (same == same[0]).all():
        return None
    sec = rows[:, 4:8].copy().view("<i4")[:, 0].astype(np.int64)
    nsec = rows[:, 8:12].copy().view("<u4")[:, 0].astype(np.int64)
    values = rows[:, start : start + 8 * count].copy().view("<f8")
    return sec * 1_000_000_000 + nsec, frame_id, values


def read_stamp(raw: bytes | memoryview) -> tuple[int, int] | None:
    """``(sec, nanosec)`` of a little-endian message that starts with a ``std_msgs/Header``, as sent (not
    normalised: a nanosec of 1e9 or more stays as it is, as rclpy's message would keep it), or None."""
    raw = memoryview(raw)
    if not _little(raw) or len(raw) < 12:
        return None
    sec, nanosec = _STAMP.unpack_from(raw, 4)
    return sec, nanosec


def read_image(raw: bytes | memoryview) -> RawImage | None:
    """The fields of a little-endian ``sensor_msgs/Image`` (data as a zero-copy view), or None."""
    raw = memoryview(raw)
    if not _little(raw):
        return None
    buf = raw[4:]
    try:
        stamp, frame, pos = _header(buf)
        pos = (pos + 3) & ~3
        height, width = struct.unpack_from("<II", buf, pos)
        encoding, pos = _string(buf, pos + 8)
        is_bigendian = buf[pos]
        pos = (pos + 1 + 3) & ~3
        (step,) = _U32.unpack_from(buf, pos)
        (n,) = _U32.unpack_from(buf, pos + 4)
        data = buf[pos + 8 : pos + 8 + n]
        if len(data) != n:
            return None
        return RawImage(stamp, frame, height, width, encoding, is_bigendian, step, data)
    except (struct.error, ValueError, UnicodeDecodeError, IndexError):
        return None


_CDR_LE = b"\x00\x01\x00\x00"
_TWIST = struct.Struct("<6d")


def write_twist_stamped(sec: int, nanosec: int, frame_id: str, twist: Sequence[float]) -> bytes:
    """A ``geometry_msgs/TwistStamped`` as little-endian CDR: rclpy's serialiser's bytes, but for the
    padding before the doubles (zeros here; it leaves them uninitialised).

    ``twist``: linear x, y, z, angular x, y, z.
    """
    frame = frame_id.encode() + b"\x00"
    head = _STAMP.pack(sec, nanosec) + _U32.pack(len(frame)) + frame
    return _CDR_LE + head + bytes(-len(head) % 8) + _TWIST.pack(*twist)
