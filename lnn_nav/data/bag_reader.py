"""Read rosbag2 recordings: :func:`open_bag` returns a :class:`BagReader`.

A rosbag2 directory, or a single ``.mcap``/``.db3`` file. Message types whose
definitions are stored in the bag (MCAP schemas, rosbag2 type descriptions)
are registered before deserialising, so types unknown to the Jazzy typestore
still read. Damaged recordings are recovered by :mod:`lnn_nav.data.bag_recovery`;
what was recovered and lost is in :attr:`BagReader.notes` (and logged).
"""

from __future__ import annotations

import functools
import heapq
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from rosbags.interfaces import Connection, MessageDefinitionFormat
from rosbags.rosbag2 import Reader, ReaderError
from rosbags.typesys import Stores, TypesysError, get_types_from_idl, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from lnn_nav.data.bag_recovery import Source, open_storage_file, recover_directory
from lnn_nav.data.errors import BagNotFoundError, CorruptBagError, EmptyBagError, MissingTopicError

_LOG = logging.getLogger("lnn_nav.data.bags")


class TopicInfo(NamedTuple):
    """What a recording holds on one topic."""

    msgtype: str
    # Shadows tuple.count on purpose: the name `ros2 bag info` prints, and callers read `.count`.
    count: int  # type: ignore[assignment]


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


def _read_metadata(path: Path) -> dict[str, Any]:
    try:
        # PyYAML's C loader: ruamel's pure-Python one costs ~0.15 s per bag, which
        # dominates converting folders of short episode bags.
        data = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        return dict(data["rosbag2_bagfile_information"])
    except Exception as err:  # noqa: BLE001 - any unreadable metadata is reported the same way
        raise CorruptBagError(f"{path} is not a readable rosbag2 metadata file: {err}") from err


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
        sources: list[Source],
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
            {k: (v.msgtype, v.count) for k, v in found.items()},
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
    sources: list[Source] = []
    try:
        if path.is_file():
            if path.suffix not in (".mcap", ".db3"):
                raise BagNotFoundError(
                    f"{path} is not a rosbag2 recording: expected a bag directory, a .mcap or a .db3 file"
                )
            storage = "mcap" if path.suffix == ".mcap" else "sqlite3"
            sources.append(open_storage_file(path, notes))
        elif (path / "metadata.yaml").exists():
            storage = _open_directory(path, sources, notes)
        else:
            storage = recover_directory(path, sources, notes)
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


def _open_directory(path: Path, sources: list[Source], notes: list[str]) -> str:
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
        # its QoS matching is bypassed anyway (Source.of_reader). Damaged files are recovered as below.
        _open_files(files, metadata, sources, notes)
        return storage
    reader = Reader(path)
    try:
        reader.open()
        sources.extend(Source.of_reader(reader, path.name))
        return storage
    except ReaderError as err:
        if storage == "mcap" and (missing := [f.name for f in files if not f.exists()]):
            raise CorruptBagError(
                f"{path}: metadata.yaml lists storage files that are missing: {', '.join(missing)}"
            ) from err
        raise CorruptBagError(f"{path} ({storage} storage) cannot be read: {err}") from err


def _open_files(files: list[Path], metadata: dict[str, Any], sources: list[Source], notes: list[str]) -> None:
    """A directory's storage files one by one, recovering what a damaged one holds; lost messages noted."""
    for file in files:
        sources.append(open_storage_file(file, notes))
    expected = metadata.get("message_count")
    recovered = sum(source.count for source in sources)
    if isinstance(expected, int) and expected > recovered:
        notes.append(f"{expected - recovered} of {expected} messages (per metadata.yaml) are lost")
