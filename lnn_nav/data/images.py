"""Image messages -> RGB arrays, for ``sensor_msgs/Image`` and ``CompressedImage``.

Duck-typed on the message fields (``encoding``, ``height``, ``width``,
``step``, ``data``; ``format`` for compressed), so the same code decodes
rclpy messages in the nodes and ``rosbags`` messages read from a bag: a
frame is decoded identically live and in training data. No rclpy import.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

SUPPORTED_ENCODINGS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}


class ImageConversionError(ValueError):
    """An image message that cannot be turned into an RGB array (bad encoding, size or data)."""


def image_msg_to_rgb(msg: Any, copy: bool = True) -> np.ndarray:
    """``sensor_msgs/Image`` -> uint8 ``[H, W, 3]`` RGB (rows may be padded in ``step``).

    A copy, unless ``copy`` is False and the message is already rgb8: then a
    read-only view of ``msg.data`` (for a caller that resizes it at once).
    """
    encoding = msg.encoding.lower()
    if encoding not in SUPPORTED_ENCODINGS:
        raise ImageConversionError(
            f"image encoding {msg.encoding!r} is not supported; expected one of {', '.join(SUPPORTED_ENCODINGS)}"
        )
    if msg.is_bigendian not in (0, 1):
        raise ImageConversionError(f"is_bigendian must be 0 or 1, got {msg.is_bigendian}")
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height == 0 or width == 0:
        raise ImageConversionError(f"image has zero size ({width}x{height})")
    channels = SUPPORTED_ENCODINGS[encoding]
    row_bytes = width * channels
    if step < row_bytes:
        raise ImageConversionError(
            f"image step {step} is smaller than width*channels = {width}*{channels} = {row_bytes} for {encoding}"
        )
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size != step * height:
        raise ImageConversionError(
            f"image data has {data.size} bytes; expected step*height = {step}*{height} = "
            f"{step * height} for a {width}x{height} {encoding} image"
        )
    pixels = data.reshape(height, step)[:, :row_bytes].reshape(height, width, channels)
    if encoding == "rgb8":
        return pixels.copy() if copy else pixels
    if encoding == "bgr8":
        return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
    if encoding == "rgba8":
        return cv2.cvtColor(pixels, cv2.COLOR_RGBA2RGB)
    if encoding == "bgra8":
        return cv2.cvtColor(pixels, cv2.COLOR_BGRA2RGB)
    return np.repeat(pixels, 3, axis=2)


def compressed_image_to_rgb(msg: Any) -> np.ndarray:
    """``sensor_msgs/CompressedImage`` (JPEG or PNG) -> uint8 ``[H, W, 3]`` RGB."""
    fmt = msg.format.lower()
    if fmt and "jpeg" not in fmt and "jpg" not in fmt and "png" not in fmt:
        raise ImageConversionError(
            f"compressed image format {msg.format!r} is not supported; expected jpeg or png "
            f"(e.g. 'jpeg' or 'rgb8; jpeg compressed bgr8')"
        )
    buffer = np.frombuffer(msg.data, dtype=np.uint8)
    if buffer.size == 0:
        raise ImageConversionError("compressed image has no data")
    bgr = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageConversionError(
            f"compressed image ({buffer.size} bytes, format {msg.format!r}) could not be "
            f"decoded: corrupt or not JPEG/PNG data"
        )
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
