"""Recorded data: rosbag2 read/write (MCAP and SQLite3) on top of ``rosbags``; no rclpy here.

The names below load on first use (module ``__getattr__``), so importing a
light module of the package (:mod:`lnn_nav.data.errors`) does not import
``rosbags``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
