"""rosbag2 storage and compression names, for the command line (``--storage``, ``--compression``).

Names only, no imports: a parser offers them as choices without loading ``rosbags``. The writer
(:mod:`lnn_nav.data.bag_writer`) defines what they mean; a test keeps its tuples equal to these.
"""

from __future__ import annotations

#: Storage names :class:`lnn_nav.data.bags.BagWriter` accepts, as ``ros2 bag record -s`` spells them.
STORAGES: tuple[str, ...] = ("mcap", "sqlite3")

#: Compression choices of :class:`lnn_nav.data.bags.BagWriter` (all zstd).
COMPRESSIONS: tuple[str, ...] = ("none", "chunk", "message", "file")
