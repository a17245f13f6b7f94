"""rosbag2 recordings (MCAP and SQLite3): write messages, read them back, recover damaged recordings.

Built on ``rosbags`` (pure Python, its own typestore): no rclpy and no ROS
install needed, so recorder, replay and dataset tools run on a workstation.

- :class:`BagWriter` writes a rosbag2 directory whose ``metadata.yaml``
  ``ros2 bag info`` accepts (written by rosbags on close).
- :func:`open_bag` opens a rosbag2 directory or a single ``.mcap``/``.db3``
  file and returns a :class:`BagReader`. Message types whose definitions are
  stored in the bag (MCAP schemas, rosbag2 type descriptions) are registered
  before deserialising, so types unknown to the Jazzy typestore still read.
- Damaged recordings are recovered where the data allows it, never by
  touching the user's files: a split MCAP recording without ``metadata.yaml``
  (a crash before close) is read file by file in name order, and a truncated
  MCAP file is read up to its last complete record. What was recovered and
  what was lost is said in :attr:`BagReader.notes` (and logged).
"""

from __future__ import annotations

import heapq
import logging
import re
import struct
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

from rosbags.interfaces import Connection, MessageDefinitionFormat
from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer, WriterError
from rosbags.rosbag2.storage_mcap import McapReader, read_exact
from rosbags.typesys import Stores, TypesysError, get_types_from_idl, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore
from ruamel.yaml import YAML

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

from lnn_nav.data.errors import BagNotFoundError, CorruptBagError, EmptyBagError, MissingTopicError

_LOG = logging.getLogger(__name__)

#: Storage names accepted by :class:`BagWriter`, as ``ros2 bag record -s`` spells them.
STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
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


class BagWriter:
    """Write a rosbag2 recording (context manager; the recording is finalised on exit).

    >>> with BagWriter("run_001", storage="mcap") as bag:          # doctest: +SKIP
    ...     bag.add_topic("/camera/image_raw", "sensor_msgs/msg/Image")
    ...     bag.write("/camera/image_raw", stamp_ns, image)

    ``message`` objects are rosbags message classes from the writer's typestore
    (``bag.typestore.types["sensor_msgs/msg/Image"]``). Leaving the ``with``
    block through an exception still closes the bag properly, so what was
    recorded before a crash of the caller is kept with its metadata.
    """

    def __init__(
        self,
        path: str | Path,
        storage: str = "mcap",
        typestore: Typestore | Stores = Stores.ROS2_JAZZY,
        *,
        version: int = 9,
    ) -> None:
        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {', '.join(STORAGES)}, got {storage!r}")
        self.path = Path(path)
        self.storage = storage
        self.version = version
        self.typestore = _typestore_of(typestore)
        self.message_count = 0
        self._writer: Writer | None = None
        self._connections: dict[str, Connection] = {}

    def open(self) -> BagWriter:
        if self._writer is not None:
            return self
        if self.path.exists():
            raise FileExistsError(
                f"{self.path} exists already; a recording is never written over an existing "
                f"path: choose a new one"
            )
        writer = Writer(self.path, version=self.version, storage_plugin=STORAGES[self.storage])
        writer.open()
        self._writer = writer
        return self

    @property
    def topics(self) -> dict[str, str]:
        """Topic -> message type, for the topics added so far."""
        return {topic: conn.msgtype for topic, conn in self._connections.items()}

    def add_topic(self, topic: str, msgtype: str) -> Connection:
        """Declare ``topic`` with ``msgtype`` (e.g. ``sensor_msgs/msg/Image``); idempotent."""
        writer = self._require_open()
        if (conn := self._connections.get(topic)) is not None:
            if conn.msgtype != msgtype:
                raise ValueError(
                    f"topic {topic} was added with type {conn.msgtype}; cannot add it again "
                    f"with {msgtype}"
                )
            return conn
        if msgtype not in self.typestore.types:
            raise ValueError(
                f"message type {msgtype!r} is unknown to the writer's typestore; register it "
                f"first (typestore.register(get_types_from_msg(definition, {msgtype!r})))"
            )
        conn = writer.add_connection(topic, msgtype, typestore=self.typestore)
        self._connections[topic] = conn
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
        self._require_open().write(conn, timestamp_ns, data)
        self.message_count += 1

    def close(self) -> None:
        """Finalise the recording (index, summary and metadata.yaml)."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()

    def _require_open(self) -> Writer:
        if self._writer is None:
            raise RuntimeError(f"bag writer for {self.path} is not open (use it as `with` block)")
        return self._writer

    def __enter__(self) -> BagWriter:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        writer = self._writer
        try:
            self.close()
        except (WriterError, OSError):
            if exc_type is None:
                raise
            if writer is not None:
                writer.abort()


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
        self.connections = [
            x._replace(msgcount=stats.channel_message_counts.get(x.id, 0)) for x in self.connections
        ]
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
    def of_reader(cls, reader: Reader, name: str) -> list[_Source]:
        """One source per storage file of an open rosbags ``Reader``.

        The storages are read directly: ``Reader.messages`` matches the
        connections of ``metadata.yaml`` against those of the storage files
        including their QoS, and real bags (e.g. ``ros2 bag`` of Foxy) store
        different QoS in the two places, so it would yield nothing.
        """
        storage = reader.storage
        storages = getattr(storage, "storages", None) or [storage]
        decompress = getattr(storage.metadata, "compression_mode", None) == "message"
        sources = []
        for index, part in enumerate(storages):
            meta = part.metadata

            def read(conns, part=part):  # type: ignore[no-untyped-def]
                for conn, timestamp, data in part.messages(conns):
                    yield conn, timestamp, zstd.decompress(data) if decompress else data

            sources.append(cls(
                f"{name}[{index}]",
                list(part.connections),
                meta.message_count,
                meta.start_time,
                meta.end_time,
                read,
                reader.close if index == 0 else (lambda: None),
            ))
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
            lambda conns: storage.messages(conns),
            storage.close,
        )


def _natural_key(path: Path) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def _read_metadata(path: Path) -> dict[str, Any]:
    try:
        data = YAML(typ="safe").load(path.read_text())
        return dict(data["rosbag2_bagfile_information"])
    except Exception as err:  # noqa: BLE001 - any unreadable metadata is reported the same way
        raise CorruptBagError(f"{path} is not a readable rosbag2 metadata file: {err}") from err


def _open_file(path: Path, notes: list[str]) -> _Source:
    """Open one storage file; an MCAP file that fails its index is read up to its damage."""
    try:
        reader = Reader(path)
        reader.open()
        return _Source.of_reader(reader, path.name)[0]
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


def _types_in_bag(connections: Iterable[Connection], notes: list[str]) -> dict[str, Any]:
    """Parse the message definitions the bag stores with its connections."""
    typs: dict[str, Any] = {}
    seen: set[str] = set()
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
            notes.append(f"the stored definition of {conn.msgtype} could not be parsed ({err}); "
                         f"the typestore's definition is used")
    return typs


def _reader_typestore(base: Typestore | Stores, connections: list[Connection], notes: list[str]) -> Typestore:
    """A fresh typestore: ``base`` plus the types only the bag defines.

    Types ``base`` knows keep its definitions (the definitions stored by some
    ``ros2 bag`` versions are partial); types it lacks (custom or test
    messages) are registered from the definitions stored in the bag.
    """
    if isinstance(base, Stores):
        store = get_typestore(base)
    else:
        store = get_typestore(Stores.EMPTY)
        store.register(dict(base.fielddefs))  # a copy: never mutate the caller's store
    typs = {name: typ for name, typ in _types_in_bag(connections, notes).items()
            if name not in store.fielddefs}
    if typs:
        try:
            store.register(typs)
        except TypesysError as err:
            notes.append(f"the message definitions stored in the bag for {', '.join(sorted(typs))} "
                         f"could not be registered ({err}); those messages cannot be deserialised")
    return store


class BagReader:
    """An open rosbag2 recording (from :func:`open_bag`); close it, or use it as context manager.

    ``notes`` lists what was recovered or could not be read (empty for a clean
    recording); ``recovered`` is True when any recovery happened.
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
        for conn, timestamp, data in heapq.merge(*streams, key=lambda m: m[1]):
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
        return (f"BagReader({str(self.path)!r}, storage={self.storage}, "
                f"messages={self.message_count}, topics={list(self.topics())})")


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
                    f"{path} is not a rosbag2 recording: expected a bag directory, a .mcap or a "
                    f".db3 file"
                )
            storage = "mcap" if path.suffix == ".mcap" else "sqlite3"
            sources.append(_open_file(path, notes))
        elif (path / "metadata.yaml").exists():
            storage = _open_directory(path, sources, notes)
        else:
            storage = _recover_directory(path, sources, notes)
        for wal in path.glob("*.db3-wal") if path.is_dir() else []:
            if wal.stat().st_size:
                notes.append(f"{wal.name} holds data not yet checkpointed into the database; "
                             f"it is not read")
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
    reader = Reader(path)
    try:
        reader.open()
        sources.extend(_Source.of_reader(reader, path.name))
        return storage
    except ReaderError as err:
        if storage != "mcap" or metadata.get("compression_mode"):
            raise CorruptBagError(f"{path} ({storage} storage) cannot be read: {err}") from err
        first_error = err
    # A damaged MCAP file: read the listed files one by one, recovering what each holds.
    files = [path / Path(name).name for name in metadata.get("relative_file_paths", [])]
    if missing := [f.name for f in files if not f.exists()]:
        raise CorruptBagError(
            f"{path}: metadata.yaml lists storage files that are missing: {', '.join(missing)}"
        ) from first_error
    for file in files:
        sources.append(_open_file(file, notes))
    expected = metadata.get("message_count")
    recovered = sum(source.count for source in sources)
    if isinstance(expected, int) and expected > recovered:
        notes.append(f"{expected - recovered} of {expected} messages (per metadata.yaml) are lost")
    return storage


def _recover_directory(path: Path, sources: list[_Source], notes: list[str]) -> str:
    files = sorted(path.glob("*.mcap"), key=_natural_key)
    storage = "mcap"
    if not files:
        files, storage = sorted(path.glob("*.db3"), key=_natural_key), "sqlite3"
    if not files:
        content = sorted(p.name for p in path.iterdir())[:10]
        raise BagNotFoundError(
            f"{path} holds no rosbag2 recording: no metadata.yaml and no .mcap or .db3 files "
            f"(found: {', '.join(content) or 'nothing'})"
        )
    for file in files:
        sources.append(_open_file(file, notes))
    notes.insert(
        0,
        f"no metadata.yaml (the recording was not closed cleanly): recovered without metadata by "
        f"reading {len(files)} {storage} files in name order ({', '.join(f.name for f in files)}); "
        f"`ros2 bag reindex` can write its metadata.yaml",
    )
    return storage
