"""rosbag2 layer: real bags recorded by ``ros2 bag``, round trips, damaged and empty recordings."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from rosbags.typesys import Stores, get_typestore

from lnn_nav.data import (
    BagError,
    BagNotFoundError,
    BagWriter,
    CorruptBagError,
    EmptyBagError,
    MissingTopicError,
    open_bag,
    require_topics,
)

# Real `ros2 bag record` recordings, vendored (tests/data/rosbag2-samples/README.md says where they are from).
SAMPLES = Path(__file__).resolve().parent / "data" / "rosbag2-samples"

TS = get_typestore(Stores.ROS2_JAZZY)
Header = TS.types["std_msgs/msg/Header"]
Time = TS.types["builtin_interfaces/msg/Time"]
Image = TS.types["sensor_msgs/msg/Image"]
Imu = TS.types["sensor_msgs/msg/Imu"]
Quaternion = TS.types["geometry_msgs/msg/Quaternion"]
Vector3 = TS.types["geometry_msgs/msg/Vector3"]
Twist = TS.types["geometry_msgs/msg/Twist"]
TwistStamped = TS.types["geometry_msgs/msg/TwistStamped"]


def sample(tmp_path: Path, name: str) -> Path:
    """A private copy of a sample (tests never write into the vendored recordings)."""
    dst = tmp_path / name
    shutil.copytree(SAMPLES / name, dst)
    for path in [dst, *dst.iterdir()]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return dst


def test_the_ros2_bag_samples_are_vendored_so_a_clean_clone_runs_these_tests() -> None:
    # They used to be read from ../shared, and every test here skipped silently without it (CI's clean clone).
    assert SAMPLES.is_relative_to(Path(__file__).resolve().parent)
    listed = set(re.findall(r"^\| (\w+) \|", (SAMPLES / "README.md").read_text(), re.M)) - {"folder"}
    assert listed >= {"mcap_talker", "sqlite3_talker", "mcap_cdr_test", "mcap_multiple_files", "empty_bag"}
    for name in listed:
        assert any((SAMPLES / name).glob("*.mcap")) or any((SAMPLES / name).glob("*.db3")), name


def header(stamp_ns: int, frame: str) -> object:
    return Header(stamp=Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9), frame_id=frame)


def image(stamp_ns: int, seed: int, size: int = 8) -> object:
    rng = np.random.default_rng(seed)
    return Image(
        header=header(stamp_ns, "camera"),
        height=size,
        width=size,
        encoding="rgb8",
        is_bigendian=0,
        step=size * 3,
        data=rng.integers(0, 256, size * size * 3, dtype=np.uint8),
    )


def imu(stamp_ns: int, k: int) -> object:
    return Imu(
        header=header(stamp_ns, "base_link"),
        orientation=Quaternion(x=0.0, y=0.0, z=0.0, w=1.0),
        orientation_covariance=np.zeros(9),
        angular_velocity=Vector3(x=0.1 * k, y=0.0, z=-0.2),
        angular_velocity_covariance=np.zeros(9),
        linear_acceleration=Vector3(x=0.0, y=0.0, z=9.81),
        linear_acceleration_covariance=np.full(9, 0.01),
    )


def twist(stamp_ns: int, k: int) -> object:
    return TwistStamped(
        header=header(stamp_ns, "base_link"),
        twist=Twist(linear=Vector3(x=1.0 + k, y=0.0, z=0.0), angular=Vector3(x=0.0, y=0.0, z=0.5)),
    )


def assert_msg_equal(a: object, b: object) -> None:
    assert type(a).__msgtype__ == type(b).__msgtype__
    for field in a.__dataclass_fields__:
        x, y = getattr(a, field), getattr(b, field)
        if hasattr(x, "__msgtype__"):
            assert_msg_equal(x, y)
        elif isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, y)
        else:
            assert x == y, field


# ----------------------------------------------------------------- real bags


def test_mcap_and_sqlite3_talker_hold_the_same_recording(tmp_path: Path) -> None:
    with open_bag(sample(tmp_path, "mcap_talker")) as mcap, open_bag(sample(tmp_path, "sqlite3_talker")) as sqlite:
        assert mcap.storage == "mcap" and sqlite.storage == "sqlite3"
        assert mcap.topics() == sqlite.topics()
        assert mcap.topics()["/topic"] == ("std_msgs/msg/String", 10)
        assert mcap.topics()["/rosout"] == ("rcl_interfaces/msg/Log", 10)
        assert mcap.message_count == sqlite.message_count == 20
        assert mcap.start_ns == sqlite.start_ns == 1585866235112411371
        assert mcap.duration_ns == sqlite.duration_ns > 0
        assert mcap.notes == [] and sqlite.notes == []
        a = [(m.timestamp_ns, m.message.data) for m in mcap.messages(["/topic"])]
        b = [(m.timestamp_ns, m.message.data) for m in sqlite.messages(["/topic"])]
        assert a == b and len(a) == 10
        assert a[0][1].startswith("Hello, world! ")
        stamps = [m.timestamp_ns for m in mcap.messages()]
        assert stamps == sorted(stamps) and len(stamps) == 20
        raw = list(mcap.raw_messages(["/topic"]))
        assert [r.timestamp_ns for r in raw] == [t for t, _ in a]
        assert isinstance(raw[0].rawdata, bytes)


def test_single_storage_file_opens_without_its_directory(tmp_path: Path) -> None:
    with open_bag(sample(tmp_path, "mcap_talker") / "talker.mcap") as bag:
        assert bag.topics()["/topic"].count == 10


def test_types_defined_only_in_the_bag_are_deserialised(tmp_path: Path) -> None:
    with open_bag(sample(tmp_path, "mcap_cdr_test")) as bag:
        assert bag.topics() == {
            "/array_topic": ("test_msgs/msg/Arrays", 4),
            "/test_topic": ("test_msgs/msg/BasicTypes", 3),
        }
        msgs = list(bag.messages())
        assert len(msgs) == 7
        basic = [m.message for m in msgs if m.topic == "/test_topic"]
        assert basic[0].int32_value == 123
        arrays = [m.message for m in msgs if m.topic == "/array_topic"]
        assert len(arrays[0].basic_types_values) == 3
        assert "test_msgs/msg/Arrays" in bag.typestore.types


def test_bags_without_types_of_their_own_share_one_typestore(tmp_path: Path) -> None:
    # rosbags compiles a type's deserialiser once per typestore: one per bag paid it for every bag.
    with open_bag(sample(tmp_path, "mcap_cdr_test")) as custom:
        own = custom.typestore
    for name in ("first", "second"):
        with BagWriter(tmp_path / name) as bag:
            bag.add_topic("/n", "std_msgs/msg/Int32")
            bag.write("/n", 1, TS.types["std_msgs/msg/Int32"](data=1))
    with open_bag(tmp_path / "first") as a, open_bag(tmp_path / "second") as b:
        assert a.typestore is b.typestore is not own
        assert "test_msgs/msg/Arrays" not in a.typestore.types  # the custom bag's types stayed in its own store
        assert next(iter(b.messages())).message.data == 1


def test_split_mcap_without_metadata_is_recovered_in_order(tmp_path: Path) -> None:
    path = sample(tmp_path, "mcap_multiple_files")
    expected = []
    for name in ("multiple_files_0.mcap", "multiple_files_1.mcap", "multiple_files_2.mcap"):
        with open_bag(path / name) as part:
            expected += [m.timestamp_ns for m in part.raw_messages()]
    with open_bag(path) as bag:
        assert bag.recovered
        assert "no metadata.yaml" in bag.notes[0] and "multiple_files_2.mcap" in bag.notes[0]
        assert bag.topics() == {"/chatter": ("std_msgs/msg/String", 3177)}
        stamps = [m.timestamp_ns for m in bag.messages()]
    assert len(stamps) == len(expected) == 3177
    assert stamps == sorted(expected)
    assert not (path / "metadata.yaml").exists()  # never writes into the user's recording


def test_empty_recording_is_refused(tmp_path: Path) -> None:
    with pytest.raises(EmptyBagError, match="the recording holds no messages"):
        open_bag(sample(tmp_path, "empty_bag"))


def test_missing_path_and_directory_without_bag(tmp_path: Path) -> None:
    with pytest.raises(BagNotFoundError, match="does not exist"):
        open_bag(tmp_path / "nope")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(BagNotFoundError, match=r"no metadata.yaml.*notes.txt"):
        open_bag(tmp_path)
    with pytest.raises(FileNotFoundError):  # also a FileNotFoundError for generic callers
        open_bag(tmp_path / "nope")


def test_missing_topics_are_named_with_the_topics_found(tmp_path: Path) -> None:
    with open_bag(sample(tmp_path, "mcap_talker")) as bag:
        require_topics(bag, ["/topic", "/rosout"])
        with pytest.raises(MissingTopicError) as info:
            require_topics(bag, ["/camera/image_raw", "/imu", "/topic"])
        text = str(info.value)
        assert "/camera/image_raw, /imu" in text
        assert "/topic (std_msgs/msg/String, 10 messages)" in text
        assert "/rosout (rcl_interfaces/msg/Log, 10 messages)" in text
        assert info.value.missing == ["/camera/image_raw", "/imu"]
        with pytest.raises(MissingTopicError, match="/parameter_events"):
            require_topics(bag, ["/parameter_events"])  # recorded, but 0 messages
        with pytest.raises(MissingTopicError):
            list(bag.messages(["/odom"]))


# ----------------------------------------------------------------- writing


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_round_trip_image_imu_twist(tmp_path: Path, storage: str) -> None:
    path = tmp_path / f"run_{storage}"
    t0 = 1_700_000_000_000_000_000
    written = []
    with BagWriter(path, storage=storage) as bag:
        bag.add_topic("/camera/image_raw", "sensor_msgs/msg/Image")
        for k in range(5):
            stamp = t0 + k * 50_000_000
            for topic, t, msg in (
                ("/camera/image_raw", stamp, image(stamp, k)),
                ("/imu", stamp + 1, imu(stamp + 1, k)),
                ("/cmd_vel", stamp + 2, twist(stamp + 2, k)),
            ):
                bag.write(topic, t, msg)
                written.append((topic, msg))
        assert bag.message_count == 15
    assert (path / "metadata.yaml").exists()
    with open_bag(path) as bag:
        assert bag.storage == storage and bag.notes == []
        assert bag.topics() == {
            "/camera/image_raw": ("sensor_msgs/msg/Image", 5),
            "/cmd_vel": ("geometry_msgs/msg/TwistStamped", 5),
            "/imu": ("sensor_msgs/msg/Imu", 5),
        }
        assert bag.start_ns == t0
        read = list(bag.messages())
    assert [(m.topic) for m in read] == [t for t, _ in written]
    for (_, sent), got in zip(written, read):
        assert_msg_equal(sent, got.message)


def test_writer_raw_errors_and_refusals(tmp_path: Path) -> None:
    path = tmp_path / "raw"
    msg = twist(5, 1)
    with BagWriter(path) as bag:
        bag.add_topic("/cmd_vel", "geometry_msgs/msg/TwistStamped")
        bag.write_raw("/cmd_vel", 5, TS.serialize_cdr(msg, "geometry_msgs/msg/TwistStamped"))
        with pytest.raises(KeyError, match="add_topic"):
            bag.write_raw("/other", 6, b"")
        with pytest.raises(ValueError, match="TwistStamped"):
            bag.write("/cmd_vel", 7, imu(7, 0))
        with pytest.raises(ValueError, match="unknown to the writer's typestore"):
            bag.add_topic("/x", "my_pkg/msg/Nope")
    with open_bag(path) as bag:
        (got,) = bag.messages()
    assert_msg_equal(msg, got.message)
    with pytest.raises(FileExistsError, match="exists already"):
        BagWriter(path).open()


def test_writer_keeps_what_was_recorded_when_the_caller_fails(tmp_path: Path) -> None:
    path = tmp_path / "crash"
    with pytest.raises(RuntimeError):
        with BagWriter(path) as bag:
            bag.write("/cmd_vel", 1, twist(1, 0))
            raise RuntimeError("controller crashed")
    with open_bag(path) as bag:
        assert bag.message_count == 1


# ----------------------------------------------------------------- damage


def test_truncated_mcap_is_read_up_to_its_last_complete_chunk(tmp_path: Path) -> None:
    path = sample(tmp_path, "mcap_talker")  # ros2 bag writes channel records inside chunks
    mcap = path / "talker.mcap"
    data = mcap.read_bytes()
    mcap.write_bytes(data[: len(data) * 2 // 3])  # summary and footer lost, the chunk kept
    with open_bag(path) as bag:
        assert bag.recovered and "talker.mcap is truncated" in bag.notes[0]
        assert bag.topics()["/topic"] == ("std_msgs/msg/String", 10)
        stamps = [m.timestamp_ns for m in bag.messages()]
        assert len(stamps) == 20 and stamps == sorted(stamps)
    mcap.write_bytes(data[:1500])  # cut inside the only chunk: nothing complete is left
    with pytest.raises(CorruptBagError, match=r"talker.mcap .*0 complete messages"):
        open_bag(path)


def test_truncated_mcap_without_inline_channels_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "long"
    with BagWriter(path) as bag:  # 64x64 rgb images: ~12 KiB each, 1 MiB chunks
        for k in range(120):
            bag.write("/camera/image_raw", 1_000 + k, image(1_000 + k, k, size=64))
    (mcap,) = path.glob("*.mcap")
    data = mcap.read_bytes()
    mcap.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(CorruptBagError, match=r"hold \d+ complete messages but no channel"):
        open_bag(path)


def test_mcap_cut_inside_its_header_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "cut"
    with BagWriter(path) as bag:
        bag.write("/cmd_vel", 1, twist(1, 0))
    (mcap,) = path.glob("*.mcap")
    mcap.write_bytes(mcap.read_bytes()[:12])
    with pytest.raises(CorruptBagError, match=mcap.name) as info:
        open_bag(path)
    assert isinstance(info.value, BagError)


# ----------------------------------------------------------------- splitting, compression, crashes


def write_imu_and_images(bag: BagWriter, n: int, period_ns: int = 100_000_000) -> list[tuple[str, object]]:
    written = []
    for k in range(n):
        t = 1_700_000_000_000_000_000 + k * period_ns
        for topic, stamp, msg in (("/camera/image_raw", t, image(t, k, size=16)), ("/imu", t + 1, imu(t + 1, k))):
            bag.write(topic, stamp, msg)
            written.append((topic, msg))
    return written


@pytest.mark.parametrize(
    ("storage", "compression"),
    [
        ("mcap", "none"),
        ("mcap", "chunk"),
        ("mcap", "message"),
        ("mcap", "file"),
        ("sqlite3", "none"),
        ("sqlite3", "message"),
        ("sqlite3", "file"),
    ],
)
def test_split_by_duration_gives_one_file_per_period_all_read_back(
    tmp_path: Path, storage: str, compression: str
) -> None:
    path = tmp_path / "split"
    with BagWriter(path, storage=storage, compression=compression, max_duration_ns=10**9) as bag:
        written = write_imu_and_images(bag, 35)  # 3.5 s at 10 Hz
        assert bag.counts == {"/camera/image_raw": 35, "/imu": 35}
    ext = {"mcap": ".mcap", "sqlite3": ".db3"}[storage] + (".zstd" if compression == "file" else "")
    assert sorted(p.name for p in path.iterdir()) == sorted([f"split_{i}{ext}" for i in range(4)] + ["metadata.yaml"])
    with open_bag(path) as bag:
        assert bag.notes == [] and bag.message_count == 70
        read = list(bag.messages())
    assert [m.topic for m in read] == [t for t, _ in written]
    for (_, sent), got in zip(written, read):
        assert_msg_equal(sent, got.message)


def test_split_by_size_keeps_each_file_near_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "sized"
    with BagWriter(path, max_bytes=20_000) as bag:  # 16x16 rgb images: ~870 bytes each
        write_imu_and_images(bag, 60)
        files = bag.files
    assert len(files) >= 4 and all(f.parent == path for f in files)
    assert all(f.stat().st_size < 20_000 + 8_000 for f in files)  # data + index and summary
    metadata = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert metadata["relative_file_paths"] == [f.name for f in files]
    assert sum(f["message_count"] for f in metadata["files"]) == metadata["message_count"] == 120
    with open_bag(path) as bag:
        assert bag.message_count == 120 and bag.notes == []


def test_writer_refuses_bad_compression_and_limits(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="chunk"):
        BagWriter(tmp_path / "a", storage="sqlite3", compression="chunk")
    with pytest.raises(ValueError, match="none, chunk, message, file"):
        BagWriter(tmp_path / "a", compression="lz4")
    with pytest.raises(ValueError, match=">= 0"):
        BagWriter(tmp_path / "a", max_bytes=-1)
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize(("storage", "compression"), [("mcap", "none"), ("mcap", "message"), ("sqlite3", "none")])
def test_what_was_flushed_survives_a_killed_writer(tmp_path: Path, storage: str, compression: str) -> None:
    path = tmp_path / "killed"
    bag = BagWriter(path, storage=storage, compression=compression, max_duration_ns=10**9).open()
    written = write_imu_and_images(bag, 25)
    bag.flush()
    write_imu_and_images(bag, 3, period_ns=1)  # never flushed: lost with the process
    bag.abort()  # what a killed process leaves: no index, no summary, no metadata.yaml
    with open_bag(path) as reader:
        assert reader.recovered and "no metadata.yaml" in reader.notes[0]
        read = list(reader.messages())
    assert len(read) == 50
    for (_, sent), got in zip(written, read):
        assert_msg_equal(sent, got.message)


@pytest.mark.parametrize("split", [False, True], ids=["one_file", "split"])
def test_a_bag_written_in_a_temporary_folder_names_its_files_for_where_it_ends_up(tmp_path: Path, split: bool) -> None:
    tmp = tmp_path / "flight_7.partial"
    with BagWriter(tmp, name="flight_7", max_bytes=200 if split else 0) as bag:
        bag.add_topic("/cmd_vel", "geometry_msgs/msg/Twist")
        for k in range(6):
            bag.write(
                "/cmd_vel",
                1_000 + k,
                Twist(linear=Vector3(x=float(k), y=0.0, z=0.0), angular=Vector3(x=0.0, y=0.0, z=0.0)),
            )
    final = tmp.rename(tmp_path / "flight_7")
    names = [p.name for p in sorted(final.glob("*.mcap"))]
    if split:
        assert len(names) > 1 and names == [f"flight_7_{i}.mcap" for i in range(len(names))]
    else:
        assert names == ["flight_7.mcap"]
    metadata = yaml.safe_load((final / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert metadata["relative_file_paths"] == names and [f["path"] for f in metadata["files"]] == names
    with open_bag(final) as reader:
        assert not reader.notes and reader.message_count == 6


def test_a_bag_collected_the_old_way_keeps_its_partial_file_name_and_stays_readable(tmp_path: Path) -> None:
    """Before the fix, `lnn-nav collect` left forest_N/forest_N.partial.mcap, listed so in metadata.yaml."""
    with BagWriter(tmp_path / "forest_3.partial") as bag:
        bag.add_topic("/cmd_vel", "geometry_msgs/msg/Twist")
        bag.write("/cmd_vel", 1_000, Twist(linear=Vector3(x=1.0, y=0.0, z=0.0), angular=Vector3(x=0.0, y=0.0, z=0.0)))
    old = (tmp_path / "forest_3.partial").rename(tmp_path / "forest_3")
    assert [p.name for p in old.glob("*.mcap")] == ["forest_3.partial.mcap"]
    with open_bag(old) as reader:
        assert not reader.notes and reader.message_count == 1


@pytest.mark.parametrize("name", ["", "a/b", "..", "."])
def test_a_bag_file_name_must_be_a_plain_name(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="plain file name"):
        BagWriter(tmp_path / "bag", name=name)
