"""Recorded data: rosbag2 read/write (MCAP and SQLite3) on top of ``rosbags``; no rclpy here."""

from lnn_nav.data.bags import (
    BagMessage,
    BagReader,
    BagWriter,
    RawBagMessage,
    TopicInfo,
    open_bag,
    require_topics,
)
from lnn_nav.data.errors import (
    BagError,
    BagNotFoundError,
    CorruptBagError,
    EmptyBagError,
    MissingTopicError,
)

__all__ = [
    "BagError",
    "BagMessage",
    "BagNotFoundError",
    "BagReader",
    "BagWriter",
    "CorruptBagError",
    "EmptyBagError",
    "MissingTopicError",
    "RawBagMessage",
    "TopicInfo",
    "open_bag",
    "require_topics",
]
