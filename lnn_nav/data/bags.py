"""rosbag2 recordings (MCAP and SQLite3): write messages, read them back, recover damaged recordings.

Built on ``rosbags`` (pure Python, its own typestore): no rclpy and no ROS
install needed, so recorder, replay and dataset tools run on a workstation.

- :class:`BagWriter` writes a rosbag2 directory whose ``metadata.yaml``
  ``ros2 bag info`` accepts, through rosbags' storage writers: split into
  several files by size or duration, zstd-compressed (MCAP chunks, per
  message or per file) on request, and flushed on demand so that a killed
  recorder loses only what came after its last flush.
- :func:`open_bag` opens a rosbag2 directory or a single ``.mcap``/``.db3``
  file and returns a :class:`BagReader`. Message types whose definitions are
  stored in the bag (MCAP schemas, rosbag2 type descriptions) are registered
  before deserialising, so types unknown to the Jazzy typestore still read.
- Damaged recordings are recovered where the data allows it, never by
  touching the user's files: a split MCAP recording without ``metadata.yaml``
  (a crash before close) is read file by file in name order, and a truncated
  MCAP file is read up to its last complete record (per-message and
  per-file compression are undone there too). What was recovered and
  what was lost is said in :attr:`BagReader.notes` (and logged).

The code lives in :mod:`lnn_nav.data.bag_writer`, :mod:`lnn_nav.data.bag_reader`,
:mod:`lnn_nav.data.bag_recovery` and :mod:`lnn_nav.data.rosbags_internals`
(every use of rosbags' non-public API); this module is their public face.
"""

from __future__ import annotations

from lnn_nav.data.bag_reader import BagMessage, BagReader, RawBagMessage, TopicInfo, open_bag, require_topics
from lnn_nav.data.bag_writer import COMPRESSIONS, STORAGES, BagWriter

__all__ = [
    "COMPRESSIONS",
    "STORAGES",
    "BagMessage",
    "BagReader",
    "BagWriter",
    "RawBagMessage",
    "TopicInfo",
    "open_bag",
    "require_topics",
]
