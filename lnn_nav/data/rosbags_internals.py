"""Every use of rosbags' non-public API, in one place (rosbags 0.11).

rosbags' public API reads and writes one-file recordings through its
``Reader``/``Writer``. lnn_nav needs three things it does not offer, built
here on its storage classes and metadata helpers:

- a storage writer writing exactly the file named (``NAME_<i>.mcap`` of a
  split recording, as ``ros2 bag`` names them): :func:`open_storage_writer`;
- reading an MCAP file whose end (summary, footer) is lost, up to its last
  complete record: :class:`PartialMcapReader`;
- the QoS serialisations of ``metadata.yaml`` versions 8 and 9:
  :func:`dump_qos_v8`, :func:`dump_qos_v9`.

A rosbags release that changes these internals breaks this module's tests
(``tests/test_rosbags_internals.py``) rather than a recording.
"""

from __future__ import annotations

import os
import sqlite3
import struct
import sys
from collections.abc import Collection, Generator
from pathlib import Path
from typing import Any

from rosbags.interfaces import Connection
from rosbags.rosbag2 import CompressionMode, ReaderError
from rosbags.rosbag2.metadata import dump_qos_v8, dump_qos_v9
from rosbags.rosbag2.storage_mcap import McapReader, McapWriter, read_exact
from rosbags.rosbag2.storage_sqlite3 import Sqlite3Writer

# The zstd rosbag2's compression modes use (standard library from Python 3.14).
if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

__all__ = [
    "NO_MESSAGES_START",
    "PartialMcapReader",
    "complete_records_end",
    "dump_qos_v8",
    "dump_qos_v9",
    "open_storage_writer",
    "zstd",
]

_MCAP_MAGIC = b"\x89MCAP0\r\n"
_MCAP_OP_HEADER = 0x01
_MCAP_OP_FOOTER = 0x02
_MCAP_OP_DATA_END = 0x0F
#: The start time rosbag2 records for a storage without messages (int64 max).
NO_MESSAGES_START = 2**63 - 1


def open_storage_writer(storage: str, file: Path, compression: CompressionMode) -> Any:
    """A rosbags storage writer (``McapWriter``/``Sqlite3Writer``) writing exactly ``file``.

    rosbags' storage writers name their file after the directory they get
    (``DIR/DIR.mcap``), which allows one file per recording only. A split
    recording needs ``DIR/DIR_<i>.mcap`` (as ``ros2 bag`` names them), so the
    writer starts in a staging directory and its file, which holds nothing
    but the MCAP header or the empty SQLite schema at that point, is moved
    into place and reopened. Relies on the ``path``/``bio`` (MCAP) and
    ``path``/``conn``/``cursor`` (SQLite3) attributes of rosbags 0.11.
    """
    staging = file.parent / f".{file.name}.staging"
    staging.mkdir()
    try:
        writer: McapWriter | Sqlite3Writer
        if storage == "mcap":
            writer = mcap = McapWriter(staging, compression)
            mcap.bio.close()
            os.replace(mcap.path, file)
            # Append mode keeps the position at the end: the offsets of the
            # index records are taken from ``bio.tell()``.
            mcap.bio = file.open("ab")
        else:
            writer = db = Sqlite3Writer(staging, compression)
            db.conn.close()
            os.replace(db.path, file)
            db.conn = sqlite3.connect(f"file:{file}", uri=True)
            db.cursor = db.conn.cursor()
        writer.path = file
    finally:
        for leftover in staging.iterdir():
            leftover.unlink()
        staging.rmdir()
    return writer


class PartialMcapReader(McapReader):
    """An MCAP file whose end (summary, footer) is missing: read its complete records only.

    Relies on the scan helpers of ``rosbags.rosbag2.storage_mcap.McapReader``
    (rosbags 0.11): the data section is limited to the complete records and
    scanned instead of indexed.
    """

    def _open(self) -> None:
        bio = self.bio
        assert bio is not None
        if bio.read(8) != _MCAP_MAGIC:
            raise ReaderError("the file does not start with the MCAP magic bytes")
        if bio.read(1) != bytes([_MCAP_OP_HEADER]):
            raise ReaderError("the MCAP header record is missing")
        (size,) = struct.unpack("<Q", read_exact(bio, 8))
        read_exact(bio, size)
        self.data_start = bio.tell()
        self.data_end = complete_records_end(bio, self.data_start)
        self.meta_scan()
        stats = self.statistics
        assert stats is not None
        count = stats.message_count
        self.connections = [x._replace(msgcount=stats.channel_message_counts.get(x.id, 0)) for x in self.connections]
        self.metadata = self.metadata._replace(
            duration=stats.end_time - stats.start_time + 1 if count else 0,
            start_time=stats.start_time if count else NO_MESSAGES_START,
            end_time=stats.end_time + 1 if count else 0,
            message_count=count,
        )

    def messages(
        self, connections: Collection[Connection], start: int | None = None, stop: int | None = None
    ) -> Generator[tuple[Connection, int, bytes], None, None]:
        # Unindexed: scan, then order by time (writers may interleave chunk times).
        yield from sorted(self.messages_scan(connections, start, stop), key=lambda m: m[1])


def complete_records_end(bio: Any, offset: int) -> int:
    """Byte offset after the last complete top-level MCAP record of the data section."""
    end = bio.seek(0, 2)
    pos = offset
    while pos + 9 <= end:
        bio.seek(pos)
        op = bio.read(1)[0]
        if op in (_MCAP_OP_DATA_END, _MCAP_OP_FOOTER):
            break
        (length,) = struct.unpack("<Q", bio.read(8))
        if pos + 9 + length > end:
            break
        pos += 9 + length
    bio.seek(offset)
    return pos
