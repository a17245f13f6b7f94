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
"""

from __future__ import annotations

import functools
import heapq
import logging
import os
import re
import shutil
import sqlite3
import struct
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

import yaml
from rosbags.interfaces import Connection, ConnectionExtRosbag2, MessageDefinition, MessageDefinitionFormat, Qos
from rosbags.rosbag2 import CompressionMode, Reader, ReaderError, WriterError
from rosbags.rosbag2.metadata import dump_qos_v8, dump_qos_v9
from rosbags.rosbag2.storage_mcap import McapReader, McapWriter, read_exact
from rosbags.rosbag2.storage_sqlite3 import Sqlite3Writer
from rosbags.typesys import Stores, TypesysError, get_types_from_idl, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

from lnn_nav.data.errors import BagNotFoundError, CorruptBagError, EmptyBagError, MissingTopicError

_LOG = logging.getLogger(__name__)

#: Storage names accepted by :class:`BagWriter`, as ``ros2 bag record -s`` spells them.
STORAGES = ("mcap", "sqlite3")
#: Compression choices of :class:`BagWriter` (all zstd).
COMPRESSIONS = ("none", "chunk", "message", "file")
_MCAP_MAGIC = b"\x89MCAP0\r\n"
_MCAP_OP_HEADER = 0x01
_MCAP_OP_FOOTER = 0x02
_MCAP_OP_DATA_END = 0x0F
_NO_MESSAGES_START = 2**63 - 1


class TopicInfo(NamedTuple):
    """What a recording holds on one topic."""

    msgtype: str
    count: int


class BagMessage(NamedTuple):
    """One deserialised message; ``message`` is a rosbags message object (not an rclpy one)."""

    topic: str
    msgtype: str
    timestamp_ns: int
    message: Any


class RawBagMessage(NamedTuple):
    """One message as stored: CDR bytes."""

    topic: str
    msgtype: str
    timestamp_ns: int
    rawdata: bytes


def _typestore_of(typestore: Typestore | Stores) -> Typestore:
    return typestore if isinstance(typestore, Typestore) else get_typestore(typestore)


# --------------------------------------------------------------------------- writing


class _Part(NamedTuple):
    """One finished storage file of a (possibly split) recording."""

    name: str
    start_ns: int
    end_ns: int
    count: int


def _open_storage(storage: str, file: Path, compression: CompressionMode) -> Any:
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
        if storage == "mcap":
            writer = McapWriter(staging, compression)
            writer.bio.close()
            os.replace(writer.path, file)
            # Append mode keeps the position at the end: the offsets of the
            # index records are taken from ``bio.tell()``.
            writer.bio = file.open("ab")
        else:
            writer = Sqlite3Writer(staging, compression)
            writer.conn.close()
            os.replace(writer.path, file)
            writer.conn = sqlite3.connect(f"file:{file}", uri=True)
            writer.cursor = writer.conn.cursor()
        writer.path = file
    finally:
        for leftover in staging.iterdir():
            leftover.unlink()
        staging.rmdir()
    return writer


class BagWriter:
    """Write a rosbag2 recording (context manager; the recording is finalised on exit).

    >>> with BagWriter("run_001", storage="mcap") as bag:          # doctest: +SKIP
    ...     bag.add_topic("/camera/image_raw", "sensor_msgs/msg/Image")
    ...     bag.write("/camera/image_raw", stamp_ns, image)

    ``message`` objects are rosbags message classes from the writer's typestore
    (``bag.typestore.types["sensor_msgs/msg/Image"]``). Leaving the ``with``
    block through an exception still closes the bag properly, so what was
    recorded before a crash of the caller is kept with its metadata.

    Splitting (as ``ros2 bag record --max-bag-size/--max-bag-duration``): with
    ``max_bytes`` or ``max_duration_ns`` set, the recording is one directory
    with files ``NAME_0.mcap``, ``NAME_1.mcap``, ... and one ``metadata.yaml``
    listing them; a new file starts before the message that would take the
    current one past either limit (size counts message bytes, so a file ends
    up slightly larger than ``max_bytes``: index and summary come on top).
    Without limits the single file is ``NAME.mcap`` (or ``.db3``) as before.
    ``NAME`` is the directory's name unless ``name`` is given: a bag written in
    a temporary directory (``forest_7.partial``) and moved into place when
    complete names its files after where it ends up (``forest_7/forest_7.mcap``).

    ``compression`` (zstd throughout):

    - ``"none"``.
    - ``"chunk"``: MCAP's own chunk compression (MCAP storage only). Every MCAP
      reader decompresses it, and a file cut by a crash keeps its complete
      chunks: the choice for recording.
    - ``"message"`` / ``"file"``: rosbag2's compression modes
      (``ros2 bag record --compression-mode message|file``). ``file``
      compresses each storage file once it is complete (``NAME_0.mcap.zstd``).

    :meth:`flush` pushes buffered messages to the file (MCAP: closes the open
    chunk; SQLite3: commits), so a process that dies afterwards loses nothing
    written before it; a long-running recorder calls it periodically.
    """

    def __init__(
        self,
        path: str | Path,
        storage: str = "mcap",
        typestore: Typestore | Stores = Stores.ROS2_JAZZY,
        *,
        version: int = 9,
        compression: str = "none",
        max_bytes: int = 0,
        max_duration_ns: int = 0,
        name: str | None = None,
    ) -> None:
        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {', '.join(STORAGES)}, got {storage!r}")
        if version not in (8, 9):
            raise ValueError(f"rosbag2 metadata version must be 8 or 9, got {version}")
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {', '.join(COMPRESSIONS)}, got {compression!r}")
        if compression == "chunk" and storage != "mcap":
            raise ValueError(
                "compression 'chunk' is MCAP's own chunk compression; SQLite3 storage supports "
                "'message' or 'file' compression"
            )
        if max_bytes < 0 or max_duration_ns < 0:
            raise ValueError(
                f"split limits must be >= 0 (0: no limit), got max_bytes={max_bytes}, max_duration_ns={max_duration_ns}"
            )
        self.path = Path(path)
        self.name = self.path.name if name is None else str(name)
        if not self.name or Path(self.name).name != self.name or self.name in (".", ".."):
            raise ValueError(f"name must be a plain file name (no folders), got {name!r}")
        self.storage = storage
        self.version = version
        self.compression = compression
        self.max_bytes = int(max_bytes)
        self.max_duration_ns = int(max_duration_ns)
        self.typestore = _typestore_of(typestore)
        self.message_count = 0
        self._open = False
        self._storage: Any = None  # the rosbags storage writer of the current file
        self._connections: dict[str, Connection] = {}
        self._counts: dict[str, int] = {}
        self._parts: list[_Part] = []
        self._part_start = _NO_MESSAGES_START
        self._part_end = 0
        self._part_count = 0
        self._part_bytes = 0

    @property
    def _split(self) -> bool:
        return bool(self.max_bytes or self.max_duration_ns)

    def open(self) -> BagWriter:
        if self._open:
            return self
        if self.path.exists():
            raise FileExistsError(
                f"{self.path} exists already; a recording is never written over an existing path: choose a new one"
            )
        self.path.mkdir(mode=0o755, parents=True)
        self._open = True
        self._start_part()
        return self

    @property
    def topics(self) -> dict[str, str]:
        """Topic -> message type, for the topics added so far."""
        return {topic: conn.msgtype for topic, conn in self._connections.items()}

    @property
    def counts(self) -> dict[str, int]:
        """Topic -> number of messages written so far."""
        return dict(self._counts)

    @property
    def files(self) -> list[Path]:
        """The storage files finished so far, then the one being written."""
        done = [self.path / part.name for part in self._parts]
        return done + ([Path(self._storage.path)] if self._storage is not None else [])

    def add_topic(self, topic: str, msgtype: str, qos: Sequence[Qos] = ()) -> Connection:
        """Declare ``topic`` with ``msgtype`` (e.g. ``sensor_msgs/msg/Image``); idempotent.

        ``qos`` are the publishers' offered QoS profiles, stored in the
        metadata so that ``ros2 bag play`` (and the replay node) publish with
        them, e.g. transient-local for a latched goal.
        """
        self._require_open()
        if (conn := self._connections.get(topic)) is not None:
            if conn.msgtype != msgtype:
                raise ValueError(
                    f"topic {topic} was added with type {conn.msgtype}; cannot add it again with {msgtype}"
                )
            return conn
        if msgtype not in self.typestore.types:
            raise ValueError(
                f"message type {msgtype!r} is unknown to the writer's typestore; register it "
                f"first (typestore.register(get_types_from_msg(definition, {msgtype!r})))"
            )
        msgdef, _ = self.typestore.generate_msgdef(msgtype, ros_version=2)
        fmt = MessageDefinitionFormat.IDL if msgdef.startswith("=" * 80 + "\nIDL: ") else MessageDefinitionFormat.MSG
        first_of_type = msgtype not in {c.msgtype for c in self._connections.values()}
        conn = Connection(
            id=len(self._connections) + 1,
            topic=topic,
            msgtype=msgtype,
            msgdef=MessageDefinition(fmt, msgdef),
            digest=self.typestore.hash_rihs01(msgtype),
            msgcount=0,
            ext=ConnectionExtRosbag2(serialization_format="cdr", offered_qos_profiles=list(qos)),
            owner=self,
        )
        self._connections[topic] = conn
        self._counts[topic] = 0
        self._declare(conn, first_of_type=first_of_type)
        return conn

    def write(self, topic: str, timestamp_ns: int, message: Any) -> None:
        """Serialise ``message`` (CDR) and write it; adds ``topic`` on first use."""
        msgtype = getattr(type(message), "__msgtype__", None)
        if msgtype is None:
            raise TypeError(
                f"expected a rosbags message object (with __msgtype__), got "
                f"{type(message).__module__}.{type(message).__qualname__}; rclpy messages are "
                f"not written directly"
            )
        conn = self._connections.get(topic) or self.add_topic(topic, msgtype)
        if conn.msgtype != msgtype:
            raise ValueError(f"topic {topic} records {conn.msgtype}, got a {msgtype} message")
        self._write(conn, timestamp_ns, self.typestore.serialize_cdr(message, msgtype))

    def write_raw(self, topic: str, timestamp_ns: int, rawdata: bytes | memoryview) -> None:
        """Write already serialised CDR bytes on a topic declared with :meth:`add_topic`."""
        conn = self._connections.get(topic)
        if conn is None:
            raise KeyError(f"topic {topic} was not added; call add_topic(topic, msgtype) first")
        self._write(conn, timestamp_ns, rawdata)

    def _write(self, conn: Connection, timestamp_ns: int, data: bytes | memoryview) -> None:
        timestamp_ns = int(timestamp_ns)
        if timestamp_ns < 0:
            raise ValueError(f"timestamp must be >= 0 ns, got {timestamp_ns}")
        self._require_open()
        if (
            self._split
            and self._part_count
            and (
                (self.max_duration_ns and timestamp_ns - self._part_start >= self.max_duration_ns)
                or (self.max_bytes and self._part_bytes + len(data) > self.max_bytes)
            )
        ):
            self._finish_part()
            self._start_part()
        if self.compression == "message":
            data = zstd.compress(data)
        self._storage.write(conn, timestamp_ns, data)
        self._part_start = min(self._part_start, timestamp_ns)
        self._part_end = max(self._part_end, timestamp_ns)
        self._part_count += 1
        self._part_bytes += len(data)
        self._counts[conn.topic] += 1
        self.message_count += 1

    def flush(self) -> None:
        """Put every message written so far into the file, readable after a crash."""
        storage = self._storage
        if storage is None:
            return
        if self.storage == "mcap":
            if storage.chunk.bio.tell():
                storage.close_chunk()
            storage.bio.flush()
        else:
            storage.conn.commit()

    def close(self) -> None:
        """Finalise the recording (index, summary and metadata.yaml)."""
        if not self._open:
            return
        self._open = False
        self._finish_part()
        self._write_metadata()

    def abort(self) -> None:
        """Close the current file without finalising it (what was flushed stays recoverable)."""
        storage, self._storage, self._open = self._storage, None, False
        if storage is not None:
            storage.abort()

    # -- storage files
    def _start_part(self) -> None:
        index = len(self._parts)
        name = f"{self.name}_{index}" if self._split else self.name
        suffix = ".mcap" if self.storage == "mcap" else ".db3"
        mode = CompressionMode.STORAGE if self.compression == "chunk" else CompressionMode.NONE
        self._storage = _open_storage(self.storage, self.path / f"{name}{suffix}", mode)
        self._part_start, self._part_end, self._part_count, self._part_bytes = _NO_MESSAGES_START, 0, 0, 0
        declared: set[str] = set()
        for conn in self._connections.values():  # every file of a split recording is self-contained
            self._declare(conn, first_of_type=conn.msgtype not in declared)
            declared.add(conn.msgtype)

    def _declare(self, conn: Connection, *, first_of_type: bool) -> None:
        if first_of_type:
            self._storage.add_msgtype(conn)
        self._storage.add_connection(conn, self._storage_qos(conn))

    def _storage_qos(self, conn: Connection) -> str:
        qos = conn.ext.offered_qos_profiles
        if self.version >= 9:
            return yaml.safe_dump(dump_qos_v9(qos), default_flow_style=False).strip() if qos else ""
        return dump_qos_v8(qos)

    def _finish_part(self) -> None:
        storage, self._storage = self._storage, None
        if storage is None:
            return
        file = Path(storage.path)
        storage.close(self.version, yaml.safe_dump(self._information(pending=file.name), default_flow_style=False))
        if self.compression == "file":
            packed = file.with_name(file.name + ".zstd")
            with file.open("rb") as infile, zstd.open(packed, "wb") as outfile:
                shutil.copyfileobj(infile, outfile)
            file.unlink()
            file = packed
        self._parts.append(_Part(file.name, self._part_start, self._part_end, self._part_count))

    # -- metadata
    def _information(self, pending: str | None = None) -> dict[str, Any]:
        """The ``rosbag2_bagfile_information`` of the files finished so far (plus ``pending``)."""
        parts = list(self._parts)
        if pending is not None:
            parts.append(_Part(pending, self._part_start, self._part_end, self._part_count))
        counted = [p for p in parts if p.count]
        start = min((p.start_ns for p in counted), default=_NO_MESSAGES_START)
        end = max((p.end_ns for p in counted), default=0)
        dump_qos = dump_qos_v9 if self.version >= 9 else dump_qos_v8
        mode = "" if self.compression in ("none", "chunk") else self.compression
        return {
            "version": self.version,
            "storage_identifier": self.storage,
            "relative_file_paths": [p.name for p in parts],
            "duration": {"nanoseconds": max(end - start, 0)},
            "starting_time": {"nanoseconds_since_epoch": start},
            "message_count": sum(p.count for p in parts),
            "topics_with_message_count": [
                {
                    "topic_metadata": {
                        "name": conn.topic,
                        "type": conn.msgtype,
                        "serialization_format": conn.ext.serialization_format,
                        "offered_qos_profiles": dump_qos(conn.ext.offered_qos_profiles),
                        "type_description_hash": conn.digest,
                    },
                    "message_count": self._counts[conn.topic],
                }
                for conn in self._connections.values()
            ],
            "compression_format": "zstd" if mode else "",
            "compression_mode": mode,
            "files": [
                {
                    "path": p.name,
                    "starting_time": {"nanoseconds_since_epoch": p.start_ns if p.count else _NO_MESSAGES_START},
                    "duration": {"nanoseconds": max(p.end_ns - p.start_ns, 0)},
                    "message_count": p.count,
                }
                for p in parts
            ],
            "custom_data": None,
            "ros_distro": "rosbags",
        }

    def _write_metadata(self) -> None:
        text = yaml.safe_dump(
            {"rosbag2_bagfile_information": self._information()}, default_flow_style=False, sort_keys=False
        )
        tmp = self.path / "metadata.yaml.tmp"
        tmp.write_text(text, "utf8")
        tmp.replace(self.path / "metadata.yaml")  # atomic: never a half-written metadata file

    def _require_open(self) -> None:
        if not self._open:
            raise RuntimeError(f"bag writer for {self.path} is not open (use it as `with` block)")

    def __enter__(self) -> BagWriter:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.close()
        except (WriterError, OSError, sqlite3.Error):
            if exc_type is None:
                raise
            self.abort()


# --------------------------------------------------------------------------- reading


class _PartialMcapReader(McapReader):
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
        self.data_end = _complete_records_end(bio, self.data_start)
        self.meta_scan()
        stats = self.statistics
        assert stats is not None
        count = stats.message_count
        self.connections = [x._replace(msgcount=stats.channel_message_counts.get(x.id, 0)) for x in self.connections]
        self.metadata = self.metadata._replace(
            duration=stats.end_time - stats.start_time + 1 if count else 0,
            start_time=stats.start_time if count else _NO_MESSAGES_START,
            end_time=stats.end_time + 1 if count else 0,
            message_count=count,
        )

    def messages(self, connections, start=None, stop=None):  # type: ignore[no-untyped-def]
        # Unindexed: scan, then order by time (writers may interleave chunk times).
        yield from sorted(self.messages_scan(connections, start, stop), key=lambda m: m[1])


def _complete_records_end(bio: Any, offset: int) -> int:
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


class _Source:
    """One independently readable part of a recording."""

    def __init__(
        self,
        name: str,
        connections: list[Connection],
        count: int,
        start: int,
        end: int,
        read: Callable[[list[Connection]], Iterator[tuple[Connection, int, bytes]]],
        close: Callable[[], None],
    ) -> None:
        self.name, self.connections, self.count = name, connections, count
        self.start, self.end, self.read, self.close = start, end, read, close

    @classmethod
    def of_reader(cls, reader: Reader, name: str, *, sniff: bool = False) -> list[_Source]:
        """One source per storage file of an open rosbags ``Reader``.

        The storages are read directly: ``Reader.messages`` matches the
        connections of ``metadata.yaml`` against those of the storage files
        including their QoS, and real bags (e.g. ``ros2 bag`` of Foxy) store
        different QoS in the two places, so it would yield nothing.
        ``sniff``: a storage file read without its ``metadata.yaml`` does not
        say whether its messages are zstd-compressed; see :func:`_unpack`.
        """
        storage = reader.storage
        storages = getattr(storage, "storages", None) or [storage]
        decompress = getattr(storage.metadata, "compression_mode", None) == "message"
        sources = []
        for index, part in enumerate(storages):
            meta = part.metadata

            def read(conns, part=part):  # type: ignore[no-untyped-def]
                for conn, timestamp, data in part.messages(conns):
                    if decompress:
                        data = zstd.decompress(data)
                    elif sniff:
                        data = _unpack(data)
                    yield conn, timestamp, data

            sources.append(
                cls(
                    f"{name}[{index}]",
                    list(part.connections),
                    meta.message_count,
                    meta.start_time,
                    meta.end_time,
                    read,
                    reader.close if index == 0 else (lambda: None),
                )
            )
        return sources

    @classmethod
    def of_partial(cls, storage: _PartialMcapReader, name: str) -> _Source:
        meta = storage.metadata
        return cls(
            name,
            list(storage.connections),
            meta.message_count,
            meta.start_time,
            meta.end_time,
            lambda conns: ((conn, timestamp, _unpack(data)) for conn, timestamp, data in storage.messages(conns)),
            storage.close,
        )


_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def _unpack(data: bytes) -> bytes:
    """A message payload, decompressed if it is a zstd frame (rosbag2 per-message compression).

    Used where no metadata says how messages were stored (a recording cut
    before its metadata.yaml was written). Unambiguous: a CDR payload starts
    with its encapsulation header, whose first byte is 0.
    """
    return zstd.decompress(data) if data[:4] == _ZSTD_MAGIC else data


def _natural_key(path: Path) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def _read_metadata(path: Path) -> dict[str, Any]:
    try:
        # PyYAML's C loader: ruamel's pure-Python one costs ~0.15 s per bag, which
        # dominates converting folders of short episode bags.
        data = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        return dict(data["rosbag2_bagfile_information"])
    except Exception as err:  # noqa: BLE001 - any unreadable metadata is reported the same way
        raise CorruptBagError(f"{path} is not a readable rosbag2 metadata file: {err}") from err


def _open_file(path: Path, notes: list[str]) -> _Source:
    """Open one storage file; an MCAP file that fails its index is read up to its damage."""
    try:
        reader = Reader(path)
        reader.open()
        return _Source.of_reader(reader, path.name, sniff=True)[0]
    except ReaderError as err:
        if path.suffix != ".mcap":
            raise CorruptBagError(f"{path} cannot be read as {path.suffix} storage: {err}") from err
        first_error = err
    storage = _PartialMcapReader(path)
    try:
        storage.open()
    except (ReaderError, OSError, struct.error) as err:
        raise CorruptBagError(
            f"{path} is not a readable MCAP file ({path.stat().st_size} bytes): {first_error} "
            f"Recovery of its complete records failed too: {err}"
        ) from err
    size = path.stat().st_size
    found = storage.metadata.message_count
    if not storage.connections:
        storage.close()
        raise CorruptBagError(
            f"{path} is truncated or damaged ({first_error}): its first {storage.data_end} of "
            f"{size} bytes hold {found} complete messages but no channel definitions (written "
            f"only in the lost summary section by some writers), so nothing can be decoded"
        )
    notes.append(
        f"{path.name} is truncated or damaged ({first_error}); recovered "
        f"{storage.metadata.message_count} messages from its first {storage.data_end} of "
        f"{size} bytes"
    )
    return _Source.of_partial(storage, path.name)


def _types_in_bag(connections: Iterable[Connection], notes: list[str], known: Iterable[str] = ()) -> dict[str, Any]:
    """Parse the message definitions the bag stores with its connections (types not in ``known``).

    Known types keep the typestore's definition anyway, and parsing a stored
    definition costs milliseconds per type: skipping them keeps opening
    many short bags cheap.
    """
    typs: dict[str, Any] = {}
    seen: set[str] = set(known)
    for conn in connections:
        msgdef = conn.msgdef
        if msgdef.format == MessageDefinitionFormat.NONE or conn.msgtype in seen:
            continue
        seen.add(conn.msgtype)
        try:
            if msgdef.format == MessageDefinitionFormat.MSG:
                typs.update(get_types_from_msg(msgdef.data, conn.msgtype))
            else:
                sep = "=" * 80 + "\n"
                parts = msgdef.data.split(sep)[1:] if msgdef.data.startswith(sep) else [msgdef.data]
                for part in parts:
                    typs.update(get_types_from_idl(part.split("\n", 1)[1] if part.startswith("IDL: ") else part))
        except Exception as err:  # noqa: BLE001 - a bad stored definition falls back to the typestore
            notes.append(
                f"the stored definition of {conn.msgtype} could not be parsed ({err}); "
                f"the typestore's definition is used"
            )
    return typs


@functools.cache
def _shared_typestore(base: Stores) -> Typestore:
    """One typestore per distribution for every bag that defines no types of its own.

    rosbags compiles a message type's deserialiser once per typestore: a fresh
    store per bag paid it again for every bag (CameraInfo: ~13 ms, a sixth of
    converting a 40 s urban episode). Nothing registers types into it.
    """
    return get_typestore(base)


def _reader_typestore(base: Typestore | Stores, connections: list[Connection], notes: list[str]) -> Typestore:
    """``base`` plus the types only the bag defines (a fresh store then; else the shared one of ``base``).

    Types ``base`` knows keep its definitions (the definitions stored by some
    ``ros2 bag`` versions are partial); types it lacks (custom or test
    messages) are registered from the definitions stored in the bag.
    """
    known = _shared_typestore(base).fielddefs if isinstance(base, Stores) else base.fielddefs
    typs = {name: typ for name, typ in _types_in_bag(connections, notes, known).items() if name not in known}
    if not typs and isinstance(base, Stores):
        return _shared_typestore(base)
    if isinstance(base, Stores):
        store = get_typestore(base)
    else:
        store = get_typestore(Stores.EMPTY)
        store.register(dict(base.fielddefs))  # a copy: never mutate the caller's store
    if typs:
        try:
            store.register(typs)
        except TypesysError as err:
            notes.append(
                f"the message definitions stored in the bag for {', '.join(sorted(typs))} "
                f"could not be registered ({err}); those messages cannot be deserialised"
            )
    return store


class BagReader:
    """An open rosbag2 recording (from :func:`open_bag`); close it, or use it as context manager.

    ``notes`` lists what was recovered or could not be read (empty for a clean
    recording); ``recovered`` is True when any recovery happened.
    ``typestore`` deserialises its messages; bags without types of their own
    share one, so register nothing into it (pass your own store to
    :func:`open_bag` for that).
    """

    def __init__(
        self,
        path: Path,
        storage: str,
        sources: list[_Source],
        notes: list[str],
        typestore: Typestore | Stores = Stores.ROS2_JAZZY,
    ) -> None:
        self.path = path
        self.storage = storage
        self.notes = notes
        self.recovered = bool(notes)
        self._sources = sources
        self.connections = [conn for source in sources for conn in source.connections]
        self.typestore = _reader_typestore(typestore, self.connections, notes)

    # -- summary
    @property
    def message_count(self) -> int:
        return sum(source.count for source in self._sources)

    @property
    def start_ns(self) -> int:
        """Timestamp of the earliest message (ns since the epoch)."""
        return min(source.start for source in self._sources)

    @property
    def end_ns(self) -> int:
        """Timestamp just after the latest message (ns), as rosbags reports it."""
        return max(source.end for source in self._sources)

    @property
    def duration_ns(self) -> int:
        return max(self.end_ns - self.start_ns, 0)

    def topics(self) -> dict[str, TopicInfo]:
        """Topic -> (message type, message count), sorted by topic; topics with 0 messages included."""
        types: dict[str, str] = {}
        counts: dict[str, int] = {}
        for conn in self.connections:
            types.setdefault(conn.topic, conn.msgtype)
            counts[conn.topic] = counts.get(conn.topic, 0) + conn.msgcount
        return {topic: TopicInfo(types[topic], counts[topic]) for topic in sorted(types)}

    # -- messages
    def raw_messages(self, topics: Iterable[str] | None = None) -> Iterator[RawBagMessage]:
        """Stored messages of ``topics`` (all when None) in timestamp order, as CDR bytes."""
        wanted = None if topics is None else set(topics)
        if wanted is not None:
            require_topics(self, sorted(wanted), allow_empty=True)
        streams = []
        for source in self._sources:
            conns = [c for c in source.connections if wanted is None or c.topic in wanted]
            if conns:  # an empty selection would mean "all" to rosbags
                streams.append(source.read(conns))
        # One storage file (most bags) is already in order: merging it costs as much as reading it.
        merged = streams[0] if len(streams) == 1 else heapq.merge(*streams, key=lambda m: m[1])
        for conn, timestamp, data in merged:
            yield RawBagMessage(conn.topic, conn.msgtype, timestamp, bytes(data))

    def messages(self, topics: Iterable[str] | None = None) -> Iterator[BagMessage]:
        """Messages of ``topics`` (all when None) in timestamp order, deserialised."""
        for topic, msgtype, timestamp, data in self.raw_messages(topics):
            try:
                message = self.typestore.deserialize_cdr(data, msgtype)
            except Exception as err:  # noqa: BLE001 - report which message, whatever failed
                raise CorruptBagError(
                    f"{self.path}: the {msgtype} message on {topic} at {timestamp} ns cannot be "
                    f"deserialised ({len(data)} bytes): {err}"
                ) from err
            yield BagMessage(topic, msgtype, timestamp, message)

    # -- lifetime
    def close(self) -> None:
        sources, self._sources = self._sources, []
        for source in sources:
            source.close()

    def __enter__(self) -> BagReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"BagReader({str(self.path)!r}, storage={self.storage}, "
            f"messages={self.message_count}, topics={list(self.topics())})"
        )


def _describe_topics(found: dict[str, TopicInfo]) -> str:
    if not found:
        return "no topics"
    return ", ".join(f"{topic} ({info.msgtype}, {info.count} messages)" for topic, info in found.items())


def require_topics(reader: BagReader, topics: Iterable[str], *, allow_empty: bool = False) -> None:
    """Raise :class:`MissingTopicError` unless every topic is recorded (with messages, unless ``allow_empty``)."""
    found = reader.topics()
    missing = [t for t in topics if t not in found or (not allow_empty and found[t].count == 0)]
    if missing:
        raise MissingTopicError(
            f"{reader.path} lacks the topic(s) {', '.join(missing)}"
            f"{'' if allow_empty else ' (or holds no messages on them)'}; "
            f"the recording holds: {_describe_topics(found)}",
            missing,
            {k: tuple(v) for k, v in found.items()},
        )


def open_bag(path: str | Path, typestore: Typestore | Stores = Stores.ROS2_JAZZY) -> BagReader:
    """Open a rosbag2 directory, or a single ``.mcap``/``.db3`` file, for reading.

    Raises :class:`BagNotFoundError` (no such path, or no recording there),
    :class:`EmptyBagError` (no messages), :class:`CorruptBagError` (damaged
    beyond recovery). Recoveries are listed in ``BagReader.notes``.
    """
    path = Path(path)
    if not path.exists():
        raise BagNotFoundError(f"no rosbag2 recording at {path}: the path does not exist")
    notes: list[str] = []
    sources: list[_Source] = []
    try:
        if path.is_file():
            if path.suffix not in (".mcap", ".db3"):
                raise BagNotFoundError(
                    f"{path} is not a rosbag2 recording: expected a bag directory, a .mcap or a .db3 file"
                )
            storage = "mcap" if path.suffix == ".mcap" else "sqlite3"
            sources.append(_open_file(path, notes))
        elif (path / "metadata.yaml").exists():
            storage = _open_directory(path, sources, notes)
        else:
            storage = _recover_directory(path, sources, notes)
        for wal in path.glob("*.db3-wal") if path.is_dir() else []:
            if wal.stat().st_size:
                notes.append(f"{wal.name} holds data not yet checkpointed into the database; it is not read")
        reader = BagReader(path, storage, sources, notes, typestore)
    except BaseException:
        for source in sources:
            source.close()
        raise
    if reader.message_count == 0:
        found = _describe_topics(reader.topics())
        reader.close()
        raise EmptyBagError(f"{path}: the recording holds no messages (topics: {found})")
    for note in notes:
        _LOG.warning("%s: %s", path, note)
    return reader


def _open_directory(path: Path, sources: list[_Source], notes: list[str]) -> str:
    metadata = _read_metadata(path / "metadata.yaml")
    storage = str(metadata.get("storage_identifier", "?"))
    files = [path / Path(name).name for name in metadata.get("relative_file_paths") or []]
    if (
        storage == "mcap"
        and files
        and metadata.get("compression_mode") in (None, "", "none", "message")
        and all(f.is_file() for f in files)
    ):
        # MCAP files open on their own: rosbags' directory Reader would parse metadata.yaml again with
        # ruamel's pure-Python loader (~30 ms a bag, a fifth of reading a short episode's messages), and
        # its QoS matching is bypassed anyway (_Source.of_reader). Damaged files are recovered as below.
        _open_files(files, metadata, sources, notes)
        return storage
    reader = Reader(path)
    try:
        reader.open()
        sources.extend(_Source.of_reader(reader, path.name))
        return storage
    except ReaderError as err:
        if storage == "mcap" and (missing := [f.name for f in files if not f.exists()]):
            raise CorruptBagError(
                f"{path}: metadata.yaml lists storage files that are missing: {', '.join(missing)}"
            ) from err
        raise CorruptBagError(f"{path} ({storage} storage) cannot be read: {err}") from err


def _open_files(files: list[Path], metadata: dict[str, Any], sources: list[_Source], notes: list[str]) -> None:
    """A directory's storage files one by one, recovering what a damaged one holds; lost messages noted."""
    for file in files:
        sources.append(_open_file(file, notes))
    expected = metadata.get("message_count")
    recovered = sum(source.count for source in sources)
    if isinstance(expected, int) and expected > recovered:
        notes.append(f"{expected - recovered} of {expected} messages (per metadata.yaml) are lost")


def _open_packed_file(path: Path, notes: list[str]) -> _Source:
    """Open a zstd-compressed storage file (``NAME_0.mcap.zstd``) through a temporary copy."""
    tmpdir = tempfile.TemporaryDirectory(prefix="lnn_nav_bag_")
    unpacked = Path(tmpdir.name) / path.stem
    try:
        with zstd.open(path, "rb") as infile, unpacked.open("wb") as outfile:
            shutil.copyfileobj(infile, outfile)
        source = _open_file(unpacked, notes)
    except Exception as err:
        tmpdir.cleanup()
        if isinstance(err, CorruptBagError):
            raise
        raise CorruptBagError(f"{path} is not a readable zstd-compressed storage file: {err}") from err
    close = source.close

    def close_and_clean() -> None:
        close()
        tmpdir.cleanup()

    source.close = close_and_clean
    return source


def _recover_directory(path: Path, sources: list[_Source], notes: list[str]) -> str:
    # A recording with `file` compression keeps its finished files as NAME_<i>.<ext>.zstd.
    files = sorted([*path.glob("*.mcap"), *path.glob("*.mcap.zstd")], key=_natural_key)
    storage = "mcap"
    if not files:
        files = sorted([*path.glob("*.db3"), *path.glob("*.db3.zstd")], key=_natural_key)
        storage = "sqlite3"
    if not files:
        content = sorted(p.name for p in path.iterdir())[:10]
        raise BagNotFoundError(
            f"{path} holds no rosbag2 recording: no metadata.yaml and no .mcap or .db3 files "
            f"(found: {', '.join(content) or 'nothing'})"
        )
    for index, file in enumerate(files):
        try:
            sources.append(_open_packed_file(file, notes) if file.suffix == ".zstd" else _open_file(file, notes))
        except CorruptBagError as err:
            # A recorder killed just after starting a new split file leaves that
            # file without one complete chunk: the files before it are intact.
            if index == 0 or index < len(files) - 1:
                raise
            notes.append(f"{file.name}, the last file, holds nothing recoverable and is skipped: {err}")
    notes.insert(
        0,
        f"no metadata.yaml (the recording was not closed cleanly): recovered without metadata by "
        f"reading {len(files)} {storage} files in name order ({', '.join(f.name for f in files)}); "
        f"`ros2 bag reindex` can write its metadata.yaml",
    )
    return storage
