"""Write rosbag2 recordings (MCAP or SQLite3) that ``ros2 bag info`` and ``ros2 bag play`` accept.

:class:`BagWriter` writes through rosbags' storage writers: split into
several files by size or duration, zstd-compressed (MCAP chunks, per message
or per file) on request, and flushed on demand so that a killed recorder
loses only what came after its last flush.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

import yaml
from rosbags.interfaces import Connection, ConnectionExtRosbag2, MessageDefinition, MessageDefinitionFormat, Qos
from rosbags.rosbag2 import CompressionMode, WriterError
from rosbags.typesys import Stores, get_typestore
from rosbags.typesys.store import Typestore

from lnn_nav.data.rosbags_internals import NO_MESSAGES_START, dump_qos_v8, dump_qos_v9, open_storage_writer, zstd

#: Storage names accepted by :class:`BagWriter`, as ``ros2 bag record -s`` spells them.
STORAGES = ("mcap", "sqlite3")
#: Compression choices of :class:`BagWriter` (all zstd).
COMPRESSIONS = ("none", "chunk", "message", "file")


def _typestore_of(typestore: Typestore | Stores) -> Typestore:
    return typestore if isinstance(typestore, Typestore) else get_typestore(typestore)


def _rosbag2_ext(conn: Connection) -> ConnectionExtRosbag2:
    """The rosbag2 extension :meth:`BagWriter.add_topic` gives every connection (rosbags' type also allows ROS 1's)."""
    ext = conn.ext
    assert isinstance(ext, ConnectionExtRosbag2)
    return ext


class _Part(NamedTuple):
    """One finished storage file of a (possibly split) recording."""

    name: str
    start_ns: int
    end_ns: int
    messages: int


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
        self._part_start = NO_MESSAGES_START
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
        self._storage = open_storage_writer(self.storage, self.path / f"{name}{suffix}", mode)
        self._part_start, self._part_end, self._part_count, self._part_bytes = NO_MESSAGES_START, 0, 0, 0
        declared: set[str] = set()
        for conn in self._connections.values():  # every file of a split recording is self-contained
            self._declare(conn, first_of_type=conn.msgtype not in declared)
            declared.add(conn.msgtype)

    def _declare(self, conn: Connection, *, first_of_type: bool) -> None:
        if first_of_type:
            self._storage.add_msgtype(conn)
        self._storage.add_connection(conn, self._storage_qos(conn))

    def _storage_qos(self, conn: Connection) -> str:
        qos = _rosbag2_ext(conn).offered_qos_profiles
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
        counted = [p for p in parts if p.messages]
        start = min((p.start_ns for p in counted), default=NO_MESSAGES_START)
        end = max((p.end_ns for p in counted), default=0)
        dump_qos = dump_qos_v9 if self.version >= 9 else dump_qos_v8
        mode = "" if self.compression in ("none", "chunk") else self.compression
        return {
            "version": self.version,
            "storage_identifier": self.storage,
            "relative_file_paths": [p.name for p in parts],
            "duration": {"nanoseconds": max(end - start, 0)},
            "starting_time": {"nanoseconds_since_epoch": start},
            "message_count": sum(p.messages for p in parts),
            "topics_with_message_count": [
                {
                    "topic_metadata": {
                        "name": conn.topic,
                        "type": conn.msgtype,
                        "serialization_format": _rosbag2_ext(conn).serialization_format,
                        "offered_qos_profiles": dump_qos(_rosbag2_ext(conn).offered_qos_profiles),
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
                    "starting_time": {"nanoseconds_since_epoch": p.start_ns if p.messages else NO_MESSAGES_START},
                    "duration": {"nanoseconds": max(p.end_ns - p.start_ns, 0)},
                    "message_count": p.messages,
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
