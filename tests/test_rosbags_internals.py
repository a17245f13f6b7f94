"""The pieces of lnn_nav.data built on rosbags' non-public API, tested on their own.

A rosbags release that renames the attributes these rely on fails here, naming
the piece, rather than somewhere inside a recording or a recovery.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from rosbags.interfaces import Connection, ConnectionExtRosbag2, MessageDefinition, MessageDefinitionFormat
from rosbags.rosbag2 import CompressionMode, ReaderError
from rosbags.typesys import Stores, get_typestore

from lnn_nav.data.rosbags_internals import (
    NO_MESSAGES_START,
    PartialMcapReader,
    complete_records_end,
    dump_qos_v8,
    dump_qos_v9,
    open_storage_writer,
)

_STORE = get_typestore(Stores.ROS2_JAZZY)


def _connection(owner: object) -> Connection:
    msgdef, _ = _STORE.generate_msgdef("std_msgs/msg/String", ros_version=2)
    return Connection(
        id=1,
        topic="/chatter",
        msgtype="std_msgs/msg/String",
        msgdef=MessageDefinition(MessageDefinitionFormat.MSG, msgdef),
        digest=_STORE.hash_rihs01("std_msgs/msg/String"),
        msgcount=0,
        ext=ConnectionExtRosbag2(serialization_format="cdr", offered_qos_profiles=[]),
        owner=owner,
    )


def _string(text: str) -> bytes:
    return bytes(_STORE.serialize_cdr(_STORE.types["std_msgs/msg/String"](data=text), "std_msgs/msg/String"))


def _write_mcap(file: Path, texts: list[str]) -> Connection:
    writer = open_storage_writer("mcap", file, CompressionMode.NONE)
    conn = _connection(writer)
    writer.add_msgtype(conn)
    writer.add_connection(conn, "")
    for i, text in enumerate(texts):
        writer.write(conn, 1_000 + i, _string(text))
    writer.close(1, "")
    return conn


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_the_storage_writer_writes_exactly_the_file_named_and_nothing_else(tmp_path: Path, storage: str) -> None:
    file = tmp_path / ("rec_3.mcap" if storage == "mcap" else "rec_3.db3")
    writer = open_storage_writer(storage, file, CompressionMode.NONE)
    assert Path(writer.path) == file and file.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [file.name]  # the staging folder is gone
    conn = _connection(writer)
    writer.add_msgtype(conn)
    writer.add_connection(conn, "")
    writer.write(conn, 42, _string("hello"))
    writer.close(1, "")
    if storage == "sqlite3":  # the reopened connection wrote into the file named
        with sqlite3.connect(file) as db:
            assert db.execute("SELECT timestamp FROM messages").fetchall() == [(42,)]
    else:
        reader = PartialMcapReader(file)  # scans the records, so it reads the data actually written
        reader.open()
        assert [(t, bytes(d)) for _c, t, d in reader.messages(reader.connections)] == [(42, _string("hello"))]
        reader.close()


def test_a_truncated_mcap_reads_its_complete_records_in_time_order(tmp_path: Path) -> None:
    file = tmp_path / "cut.mcap"
    texts = [f"m{i}" + "x" * 100_000 for i in range(50)]  # several chunks (rosbags cuts them at 1 MB)
    _write_mcap(file, texts)
    whole = file.read_bytes()
    file.write_bytes(whole[: len(whole) * 2 // 3])  # summary and footer gone, a record cut in two
    reader = PartialMcapReader(file)
    reader.open()
    got = [(t, bytes(d)) for _c, t, d in reader.messages(reader.connections)]
    assert 0 < len(got) < 50 and reader.metadata.message_count == len(got)
    assert got == [(1_000 + i, _string(texts[i])) for i in range(len(got))]
    start, end = reader.data_start, reader.data_end
    reader.close()
    assert start < end < file.stat().st_size  # the cut record is left out
    with file.open("rb") as bio:  # the same end found from the data section's start; the position restored
        assert complete_records_end(bio, start) == end and bio.tell() == start
    file.write_bytes(whole)  # the intact file: its data section ends at its DataEnd record
    with file.open("rb") as bio:
        assert end < complete_records_end(bio, start) < len(whole)


def test_a_file_that_is_not_mcap_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "x.mcap"
    file.write_bytes(b"not an mcap file at all")
    with pytest.raises(ReaderError, match="MCAP magic"):
        PartialMcapReader(file).open()


def test_an_mcap_without_messages_reports_rosbag2s_empty_start_time(tmp_path: Path) -> None:
    file = tmp_path / "empty.mcap"
    _write_mcap(file, [])
    reader = PartialMcapReader(file)
    reader.open()
    assert reader.metadata.message_count == 0 and reader.metadata.start_time == NO_MESSAGES_START
    reader.close()


def test_qos_serialisations_of_both_metadata_versions() -> None:
    assert dump_qos_v8([]) == ""
    assert dump_qos_v9([]) == []
