"""Recorded data: rosbag2 read/write (MCAP and SQLite3) on top of ``rosbags``; no rclpy here.

The names below load on first use (module ``__getattr__``), so importing a
light module of the package (:mod:`lnn_nav.data.errors`) does not import
``rosbags``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lnn_nav import lazy_exports

#: Re-exported name -> the module of this package that defines it.
_EXPORTS = {
    "BagMessage": "bags",
    "BagReader": "bags",
    "BagWriter": "bags",
    "RawBagMessage": "bags",
    "TopicInfo": "bags",
    "open_bag": "bags",
    "require_topics": "bags",
    "BagError": "errors",
    "BagNotFoundError": "errors",
    "CorruptBagError": "errors",
    "EmptyBagError": "errors",
    "MissingTopicError": "errors",
}

if TYPE_CHECKING:
    from .bags import BagMessage, BagReader, BagWriter, RawBagMessage, TopicInfo, open_bag, require_topics
    from .errors import BagError, BagNotFoundError, CorruptBagError, EmptyBagError, MissingTopicError

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

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
