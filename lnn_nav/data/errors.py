"""Errors raised by the rosbag2 layer: one class per failure family, each saying what was found."""

from __future__ import annotations


class BagError(Exception):
    """Base class of every error raised by :mod:`lnn_nav.data`."""


class BagNotFoundError(BagError, FileNotFoundError):
    """The path does not exist, or holds no rosbag2 recording (no metadata.yaml, .mcap or .db3)."""


class EmptyBagError(BagError):
    """The recording exists and opens, but holds no messages."""


class CorruptBagError(BagError):
    """A storage file is damaged beyond recovery (bad magic, truncated header, unreadable data)."""


class MissingTopicError(BagError, LookupError):
    """Topics the caller needs are absent from the recording (or hold no messages)."""

    def __init__(self, message: str, missing: list[str], found: dict[str, tuple[str, int]]):
        super().__init__(message)
        self.missing = missing
        self.found = found

    def __str__(self) -> str:  # LookupError would otherwise repr() the message
        return str(self.args[0])
