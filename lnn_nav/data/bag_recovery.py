"""The independently readable parts of a recording, and the recovery of damaged ones.

A :class:`Source` is one storage file (or rosbags reader part) with its
connections, counts and a message iterator. Damaged recordings are recovered
where the data allows it, never by touching the user's files: a split MCAP
recording without ``metadata.yaml`` (a crash before close) is read file by
file in name order (:func:`recover_directory`), a truncated MCAP file up to
its last complete record (:func:`open_storage_file`), and a ``file``-compressed
storage through a temporary copy (:func:`open_packed_file`). What was
recovered or lost is appended to ``notes``.
"""

from __future__ import annotations

import re
import shutil
import struct
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rosbags.interfaces import Connection
from rosbags.rosbag2 import Reader, ReaderError

from lnn_nav.data.errors import BagNotFoundError, CorruptBagError
from lnn_nav.data.rosbags_internals import PartialMcapReader, zstd


class Source:
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
    def of_reader(cls, reader: Reader, name: str, *, sniff: bool = False) -> list[Source]:
        """One source per storage file of an open rosbags ``Reader``.

        The storages are read directly: ``Reader.messages`` matches the
        connections of ``metadata.yaml`` against those of the storage files
        including their QoS, and real bags (e.g. ``ros2 bag`` of Foxy) store
        different QoS in the two places, so it would yield nothing.
        ``sniff``: a storage file read without its ``metadata.yaml`` does not
        say whether its messages are zstd-compressed; see :func:`unpack`.
        """
        storage = reader.storage
        storages = getattr(storage, "storages", None) or [storage]
        decompress = getattr(storage.metadata, "compression_mode", None) == "message"
        sources = []
        for index, part in enumerate(storages):
            meta = part.metadata

            def read(conns: list[Connection], part: Any = part) -> Iterator[tuple[Connection, int, bytes]]:
                for conn, timestamp, data in part.messages(conns):
                    if decompress:
                        data = zstd.decompress(data)
                    elif sniff:
                        data = unpack(data)
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
    def of_partial(cls, storage: PartialMcapReader, name: str) -> Source:
        meta = storage.metadata
        return cls(
            name,
            list(storage.connections),
            meta.message_count,
            meta.start_time,
            meta.end_time,
            lambda conns: ((conn, timestamp, unpack(data)) for conn, timestamp, data in storage.messages(conns)),
            storage.close,
        )


_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def unpack(data: bytes) -> bytes:
    """A message payload, decompressed if it is a zstd frame (rosbag2 per-message compression).

    Used where no metadata says how messages were stored (a recording cut
    before its metadata.yaml was written). Unambiguous: a CDR payload starts
    with its encapsulation header, whose first byte is 0.
    """
    return zstd.decompress(data) if data[:4] == _ZSTD_MAGIC else data


def natural_key(path: Path) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def open_storage_file(path: Path, notes: list[str]) -> Source:
    """Open one storage file; an MCAP file that fails its index is read up to its damage."""
    try:
        reader = Reader(path)
        reader.open()
        return Source.of_reader(reader, path.name, sniff=True)[0]
    except ReaderError as err:
        if path.suffix != ".mcap":
            raise CorruptBagError(f"{path} cannot be read as {path.suffix} storage: {err}") from err
        first_error = err
    storage = PartialMcapReader(path)
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
    return Source.of_partial(storage, path.name)


def open_packed_file(path: Path, notes: list[str]) -> Source:
    """Open a zstd-compressed storage file (``NAME_0.mcap.zstd``) through a temporary copy."""
    tmpdir = tempfile.TemporaryDirectory(prefix="lnn_nav_bag_")
    unpacked = Path(tmpdir.name) / path.stem
    try:
        with zstd.open(path, "rb") as infile, unpacked.open("wb") as outfile:
            shutil.copyfileobj(infile, outfile)
        source = open_storage_file(unpacked, notes)
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


def recover_directory(path: Path, sources: list[Source], notes: list[str]) -> str:
    # A recording with `file` compression keeps its finished files as NAME_<i>.<ext>.zstd.
    files = sorted([*path.glob("*.mcap"), *path.glob("*.mcap.zstd")], key=natural_key)
    storage = "mcap"
    if not files:
        files = sorted([*path.glob("*.db3"), *path.glob("*.db3.zstd")], key=natural_key)
        storage = "sqlite3"
    if not files:
        content = sorted(p.name for p in path.iterdir())[:10]
        raise BagNotFoundError(
            f"{path} holds no rosbag2 recording: no metadata.yaml and no .mcap or .db3 files "
            f"(found: {', '.join(content) or 'nothing'})"
        )
    for index, file in enumerate(files):
        try:
            sources.append(open_packed_file(file, notes) if file.suffix == ".zstd" else open_storage_file(file, notes))
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
