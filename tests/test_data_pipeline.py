"""Demonstrations -> rosbag2 -> dataset: the recorded bags, the as-of join, the fast CDR readers, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lnn_nav.data import messages as m
from lnn_nav.data.bags import BagWriter, open_bag
from lnn_nav.data.cdr import read_image, read_stamped
from lnn_nav.data.dataset import DatasetConfig, DatasetError, SequenceDataset, build_dataset, find_bags
from lnn_nav.data.errors import BagError, MissingTopicError
from lnn_nav.rollouts.flights import FlightJob, _Episode, fly_episodes
from lnn_nav.sim.expert import DEMO_EXPERT
from lnn_nav.sim.presets import check_training_seeds

# Real `ros2 bag record` recordings, vendored (tests/data/rosbag2-samples/README.md says where they are from).
SAMPLES = Path(__file__).resolve().parent / "data" / "rosbag2-samples"
SMALL_FOREST = {"size": (64.0, 40.0)}
NS = 1_000_000_000


@pytest.fixture(scope="module")
def demos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    out = tmp_path_factory.mktemp("demos")
    job = FlightJob(
        kind="forest",
        seeds=[100_000, 100_001],
        out_dir=str(out),
        envs=2,
        noise=0.5,
        world_overrides=SMALL_FOREST,
        camera_width=64,
        camera_height=48,
    )
    results = fly_episodes(job, workers=1)
    return out, results


def test_a_finished_episode_bag_does_not_keep_its_temporary_name(demos: tuple[Path, list]) -> None:
    """Written as forest_100000.partial/ and moved into place: its file was forest_100000.partial.mcap, so listed."""
    import yaml

    out, results = demos
    for r in results:
        if not r["bag"]:
            continue
        bag = out / r["bag"]
        assert sorted(p.name for p in bag.iterdir()) == sorted([f"{bag.name}.mcap", "metadata.yaml"])
        info = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        assert info["relative_file_paths"] == [f"{bag.name}.mcap"]
        assert [f["path"] for f in info["files"]] == [f"{bag.name}.mcap"]
    assert not list(out.rglob("*partial*"))


def test_collected_episode_bags_have_the_topics_a_drone_records(demos: tuple[Path, list]) -> None:
    out, results = demos
    assert [r["seed"] for r in results] == [100_000, 100_001]
    ok = [r for r in results if r["bag"]]
    assert ok, f"the expert failed every small-forest episode: {results}"
    for r in ok:
        assert r["outcome"] == "success"
        with open_bag(out / r["bag"]) as bag:
            topics = bag.topics()
            assert {t: i.msgtype for t, i in topics.items()} == m.SIM_TOPICS
            n = r["frames"]
            for topic in (m.TOPIC_IMAGE, m.TOPIC_CAMERA_INFO, m.TOPIC_IMU, m.TOPIC_ODOM, m.TOPIC_CMD):
                assert topics[topic].count == n
            assert topics[m.TOPIC_GOAL].count == 1
            world = json.loads(next(bag.messages([m.TOPIC_WORLD])).message.data)
            assert world["seed"] == r["seed"]
            outcome = json.loads(next(bag.messages([m.TOPIC_OUTCOME])).message.data)
            assert outcome == {"outcome": "success", "seed": r["seed"]}
            first = next(bag.messages([m.TOPIC_IMAGE])).message
            assert (first.encoding, first.width, first.height) == ("rgb8", 64, 48)
            info = next(bag.messages([m.TOPIC_CAMERA_INFO])).message  # the 90-degree camera, as a driver reports it
            assert (info.width, info.height, info.header.frame_id) == (64, 48, first.header.frame_id)
            assert list(info.k) == pytest.approx([32.0, 0.0, 31.5, 0.0, 32.0, 23.5, 0.0, 0.0, 1.0])
            # The command answers the frame: same header stamp.
            cmd_stamps = [
                x.message.header.stamp.nanosec + NS * x.message.header.stamp.sec for x in bag.messages([m.TOPIC_CMD])
            ]
            img_stamps = [
                x.message.header.stamp.nanosec + NS * x.message.header.stamp.sec for x in bag.messages([m.TOPIC_IMAGE])
            ]
            assert cmd_stamps == img_stamps
            # The recorded label is the demonstrating expert's, at its cruise speed (not the flown noisy command).
            speeds = [np.hypot(x.message.twist.linear.x, x.message.twist.linear.y) for x in bag.messages([m.TOPIC_CMD])]
            # (the per-axis slew limit can overshoot the speed by a hair while turning)
            assert 0.8 * DEMO_EXPERT["cruise_speed"] < max(speeds) <= 1.02 * DEMO_EXPERT["cruise_speed"]


def test_fast_cdr_readers_match_rosbags(demos: tuple[Path, list]) -> None:
    out, results = demos
    bag_path = out / next(r["bag"] for r in results if r["bag"])
    with open_bag(bag_path) as bag:
        checked = 0
        for raw in bag.raw_messages([m.TOPIC_IMU, m.TOPIC_ODOM, m.TOPIC_CMD, m.TOPIC_GOAL, m.TOPIC_IMAGE]):
            msg = bag.typestore.deserialize_cdr(raw.rawdata, raw.msgtype)
            stamp = msg.header.stamp.sec * NS + msg.header.stamp.nanosec
            if raw.topic == m.TOPIC_IMAGE:
                fast = read_image(raw.rawdata)
                assert (fast.stamp_ns, fast.height, fast.width, fast.encoding, fast.step) == (
                    stamp,
                    msg.height,
                    msg.width,
                    msg.encoding,
                    msg.step,
                )
                assert bytes(fast.data) == msg.data.tobytes()
                continue
            fast = read_stamped(raw.rawdata, raw.msgtype)
            assert fast.stamp_ns == stamp and fast.frame_id == msg.header.frame_id
            if raw.topic == m.TOPIC_IMU:
                assert np.allclose(
                    fast.values[25:28],
                    [msg.linear_acceleration.x, msg.linear_acceleration.y, msg.linear_acceleration.z],
                )
                assert np.allclose(
                    fast.values[13:16], [msg.angular_velocity.x, msg.angular_velocity.y, msg.angular_velocity.z]
                )
            elif raw.topic == m.TOPIC_ODOM:
                p, o = msg.pose.pose.position, msg.pose.pose.orientation
                assert np.allclose(fast.values[:7], [p.x, p.y, p.z, o.x, o.y, o.z, o.w])
                assert np.allclose(
                    fast.values[43:49],
                    [
                        msg.twist.twist.linear.x,
                        msg.twist.twist.linear.y,
                        msg.twist.twist.linear.z,
                        msg.twist.twist.angular.x,
                        msg.twist.twist.angular.y,
                        msg.twist.twist.angular.z,
                    ],
                )
            elif raw.topic == m.TOPIC_CMD:
                t = msg.twist
                assert np.allclose(
                    fast.values, [t.linear.x, t.linear.y, t.linear.z, t.angular.x, t.angular.y, t.angular.z]
                )
            checked += 1
        assert checked > 10
    # Big-endian or foreign layouts are declined (the caller falls back to rosbags).
    assert read_stamped(b"\x00\x00" + b"\x00" * 40, "sensor_msgs/msg/Imu") is None
    assert read_stamped(b"\x00\x01\x00\x00" + b"\x00" * 40, "std_msgs/msg/String") is None


def test_dataset_from_demonstrations(demos: tuple[Path, list], tmp_path: Path) -> None:
    out, results = demos
    meta = build_dataset(find_bags([out]), tmp_path / "ds", DatasetConfig(height=24, width=32))
    ds = SequenceDataset(tmp_path / "ds")
    kept = [r for r in results if r["bag"]]
    assert len(ds) == meta["frames"] == sum(r["frames"] for r in kept)
    assert ds.num_sequences == len(kept)
    assert ds.images.shape == (len(ds), 3, 24, 32) and ds.images.dtype == np.uint8
    assert np.allclose(ds.dt, 1 / 15, atol=1e-6)
    # Goal input: unit direction then distance; the first frame points at the world's goal.
    assert np.allclose(np.linalg.norm(ds.goal[:, :3], axis=1), 1.0, atol=1e-5)
    with open_bag(out / kept[0]["bag"]) as bag:
        world = json.loads(next(bag.messages([m.TOPIC_WORLD])).message.data)
        first_cmd = next(bag.messages([m.TOPIC_CMD])).message.twist
    start, goal = np.array(world["start"][:3]), np.array(world["goal"])
    assert ds.goal[0, 3] == pytest.approx(np.linalg.norm(goal - start), rel=1e-4)
    assert np.allclose(ds.command[0], [first_cmd.linear.x, first_cmd.linear.y, first_cmd.linear.z, first_cmd.angular.z])
    # Never written over.
    with pytest.raises(FileExistsError):
        build_dataset(find_bags([out]), tmp_path / "ds", DatasetConfig())


def _write_bag(
    path: Path,
    frames: list[int],
    commands: list[tuple[int, float]],
    stamped: bool = True,
    storage: str = "mcap",
    intrinsics: tuple | None = None,
) -> None:
    """Frames at ``frames`` (ns stamps); commands ``(stamp, vx)``; Twist (unstamped) uses stamp as receive time.

    ``intrinsics`` (fx, fy, cx, cy): a CameraInfo beside each frame.
    """
    with BagWriter(path, storage=storage, typestore=m.STORE) as bag:
        bag.add_topic("/camera/image_raw", "sensor_msgs/msg/Image")
        if intrinsics is not None:
            bag.add_topic(m.TOPIC_CAMERA_INFO, "sensor_msgs/msg/CameraInfo")
        bag.add_topic("/cmd_vel", "geometry_msgs/msg/TwistStamped" if stamped else "geometry_msgs/msg/Twist")
        events = [(t, "img", k) for k, t in enumerate(frames)] + [(t, "cmd", v) for t, v in commands]
        for t, kind, value in sorted(events, key=lambda e: e[0]):
            if kind == "img":
                rgb = np.full((12, 16, 3), value, np.uint8)
                bag.write("/camera/image_raw", t, m.image(rgb, t))
                if intrinsics is not None:
                    bag.write(m.TOPIC_CAMERA_INFO, t, m.camera_info(16, 12, intrinsics, t))
            elif stamped:
                bag.write("/cmd_vel", t, m.twist_stamped((value, 0, 0, 0), t))
            else:
                twist = m.twist_stamped((value, 0, 0, 0), t).twist
                bag.write("/cmd_vel", t, twist)


def test_as_of_join_takes_latest_command_never_a_future_one(tmp_path: Path) -> None:
    frames = [NS + k * 100_000_000 for k in range(12)]  # 10 Hz
    # A command 20 ms after each frame (it answers that frame, but arrives later): each
    # frame must take the *previous* frame's command. The first frame has none: dropped.
    commands = [(t + 20_000_000, float(k)) for k, t in enumerate(frames)]
    _write_bag(tmp_path / "b", frames, commands)
    meta = build_dataset(
        [tmp_path / "b"], tmp_path / "ds", DatasetConfig(height=12, width=16, max_age=0.15, min_sequence=2)
    )
    ds = SequenceDataset(tmp_path / "ds")
    assert len(ds) == 11
    assert ds.command[:, 0].tolist() == [float(k) for k in range(11)]
    assert ds.images[:, 0, 0, 0].tolist() == list(range(1, 12))  # frame k carries pixel value k
    assert meta["stats"][0]["dropped"] == {"no command within max_age": 1}


def test_as_of_join_drops_frames_without_a_fresh_command_and_splits_on_gaps(tmp_path: Path) -> None:
    frames = [NS + k * 100_000_000 for k in range(10)] + [NS + 3 * NS + k * 100_000_000 for k in range(10)]
    commands = [(t, 1.0) for t in frames[:10]] + [(frames[10] - 500_000_000, 2.0)] + [(t, 3.0) for t in frames[12:]]
    _write_bag(tmp_path / "b", frames, commands, stamped=False, storage="sqlite3")
    meta = build_dataset(
        [tmp_path / "b"], tmp_path / "ds", DatasetConfig(height=12, width=16, max_age=0.1, min_sequence=2)
    )
    ds = SequenceDataset(tmp_path / "ds")
    # frames 10 and 11 only have the stale 2.0 command (0.5 s and 0.6 s old): dropped.
    assert meta["stats"][0]["dropped"] == {"no command within max_age": 2}
    assert ds.num_sequences == 2  # the 2 s gap starts a new sequence
    assert ds.seq_length.tolist() == [10, 8]
    assert set(ds.command[:, 0].tolist()) == {1.0, 3.0}
    assert np.allclose(ds.dt[1:10], 0.1, atol=1e-6)


def test_dataset_refuses_bags_without_camera_or_command(tmp_path: Path) -> None:
    with pytest.raises(MissingTopicError, match=r"no camera topic /camera/image_raw.*/topic \(std_msgs/msg/String\)"):
        build_dataset([SAMPLES / "mcap_talker"], tmp_path / "a", DatasetConfig())
    with pytest.raises(MissingTopicError, match="/topic"):
        build_dataset([SAMPLES / "sqlite3_talker"], tmp_path / "b", DatasetConfig())
    with pytest.raises(BagError):
        build_dataset([SAMPLES / "empty_bag"], tmp_path / "c", DatasetConfig())
    # Nothing half-written is left behind.
    assert not (tmp_path / "a" / "meta.json").exists()
    assert not list((tmp_path / "a").glob("images.u8*"))
    # --skip-bad: unusable bags are listed, the rest is converted.
    frames = [NS + k * 100_000_000 for k in range(10)]
    _write_bag(tmp_path / "good", frames, [(t, 1.0) for t in frames])
    meta = build_dataset(
        [SAMPLES / "mcap_talker", tmp_path / "good"],
        tmp_path / "d",
        DatasetConfig(height=12, width=16, min_sequence=2),
        skip_bad=True,
    )
    assert meta["frames"] == 10 and str(SAMPLES / "mcap_talker") in meta["skipped"]


def test_dataset_reader_detects_a_truncated_copy(tmp_path: Path) -> None:
    frames = [NS + k * 100_000_000 for k in range(10)]
    _write_bag(tmp_path / "b", frames, [(t, 1.0) for t in frames])
    build_dataset([tmp_path / "b"], tmp_path / "ds", DatasetConfig(height=12, width=16, min_sequence=2))
    with open(tmp_path / "ds" / "images.u8", "r+b") as fh:
        fh.truncate(100)
    with pytest.raises(DatasetError, match="truncated"):
        SequenceDataset(tmp_path / "ds")
    with pytest.raises(DatasetError, match="not a dataset folder"):
        SequenceDataset(tmp_path)


def _tiny_episode(seed: int, frames: int) -> _Episode:
    ep = _Episode(seed, json.dumps({"seed": seed}), np.array([10.0, 0.0, 2.0]))
    for _ in range(frames):
        ep.rgb.append(np.zeros((4, 6, 3), np.uint8))
        ep.imu.append(np.zeros(6))
        ep.quat.append(np.array([1.0, 0.0, 0.0, 0.0]))
        for lst in (ep.pos, ep.vel, ep.rates):
            lst.append(np.zeros(3))
        ep.label.append(np.zeros(4))
    return ep


def test_episode_bag_flown_again_replaces_the_old_one(tmp_path: Path) -> None:
    # A DAgger round or collect re-run after a crash writes the same episode name again; it must replace
    # the earlier bag (it once failed renaming .partial onto it: "Directory not empty").
    from lnn_nav.rollouts.flights import write_episode_bag

    path = tmp_path / "forest_300001_r2"
    write_episode_bag(path, _tiny_episode(300_001, 3), "collision", control_hz=15.0)
    write_episode_bag(path, _tiny_episode(300_001, 5), "success", control_hz=15.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no .partial left behind
    with open_bag(path) as bag:
        assert bag.topics()[m.TOPIC_IMAGE].count == 5
        assert json.loads(next(bag.messages([m.TOPIC_OUTCOME])).message.data)["outcome"] == "success"
    # Anything at that path that is not a bag folder is the user's: refused, left as it was.
    other = tmp_path / "forest_300002"
    other.write_text("notes")
    with pytest.raises(FileExistsError, match="not a bag folder"):
        write_episode_bag(other, _tiny_episode(300_002, 2), "success", control_hz=15.0)
    assert other.read_text() == "notes"


def test_evaluation_seeds_are_refused_for_training() -> None:
    check_training_seeds([100_000, 5])
    with pytest.raises(ValueError, match="held-out evaluation seeds"):
        check_training_seeds([999, 1000])


def test_collect_builds_the_expert_from_the_worlds_demonstrator_then_the_options() -> None:
    import argparse

    from lnn_nav.rollouts.collect import add_arguments, expert_from_args
    from lnn_nav.sim.expert import demo_expert

    parser = argparse.ArgumentParser()
    add_arguments(parser)

    def expert(*argv: str) -> dict:
        return expert_from_args(parser.parse_args(["--out", "unused", *argv]))

    assert expert("--world", "urban") == demo_expert("urban")
    tuned = expert(
        "--world", "urban", "--expert-speed", "1.5", "--expert-options", '{"yaw_lookahead": 6, "lookahead": 4}'
    )
    assert tuned == {**demo_expert("urban"), "cruise_speed": 1.5, "yaw_lookahead": 6, "lookahead": 4}
    # The JSON is applied last: it wins over the dedicated options.
    assert (
        expert("--world", "forest", "--expert-margin", "1.0", "--expert-options", '{"inflate": 0.9}')["inflate"] == 0.9
    )
    for bad, message in (
        ('{"lookahead": -1}', "lookahead"),
        ('{"no_such_field": 1}', "no_such_field"),
        ("[4.5]", "JSON object"),
        ("{lookahead: 4}", "--expert-options"),
    ):
        with pytest.raises(ValueError, match="--expert-options") as err:
            expert("--world", "forest", "--expert-options", bad)
        assert message in str(err.value)


def test_cli_collect_and_dataset(tmp_path: Path) -> None:
    refused = subprocess.run(
        [
            sys.executable,
            "-m",
            "lnn_nav.cli",
            "collect",
            "--world",
            "forest",
            "--first-seed",
            "1000",
            "--episodes",
            "1",
            "--out",
            str(tmp_path / "x"),
        ],
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 2 and "held-out evaluation seeds" in refused.stderr
    too_fast = subprocess.run(
        [
            sys.executable,
            "-m",
            "lnn_nav.cli",
            "collect",
            "--world",
            "forest",
            "--episodes",
            "1",
            "--expert-speed",
            "9",
            "--out",
            str(tmp_path / "x"),
        ],
        capture_output=True,
        text=True,
    )
    assert too_fast.returncode == 2 and "--expert-speed" in too_fast.stderr and "max_speed" in too_fast.stderr
    negative = subprocess.run(
        [
            sys.executable,
            "-m",
            "lnn_nav.cli",
            "collect",
            "--world",
            "forest",
            "--episodes",
            "1",
            "--expert-margin",
            "-1",
            "--out",
            str(tmp_path / "x"),
        ],
        capture_output=True,
        text=True,
    )
    assert negative.returncode == 2 and "--expert-margin" in negative.stderr and "inflate" in negative.stderr
    flat = subprocess.run(
        [
            sys.executable,
            "-m",
            "lnn_nav.cli",
            "collect",
            "--world",
            "urban",
            "--episodes",
            "1",
            "--expert-clearance",
            "8",
            "0",
            "--out",
            str(tmp_path / "x"),
        ],
        capture_output=True,
        text=True,
    )
    assert flat.returncode == 2 and "--expert-clearance" in flat.stderr and "clearance_scale" in flat.stderr
    unknown = subprocess.run(
        [
            sys.executable,
            "-m",
            "lnn_nav.cli",
            "collect",
            "--world",
            "urban",
            "--episodes",
            "1",
            "--expert-options",
            '{"look_ahead": 6}',
            "--out",
            str(tmp_path / "x"),
        ],
        capture_output=True,
        text=True,
    )
    assert unknown.returncode == 2 and "--expert-options" in unknown.stderr and "look_ahead" in unknown.stderr
    wide = subprocess.run(
        [
            sys.executable,
            "-m",
            "lnn_nav.cli",
            "collect",
            "--world",
            "forest",
            "--episodes",
            "1",
            "--camera-hfov",
            "180",
            "--out",
            str(tmp_path / "x"),
        ],
        capture_output=True,
        text=True,
    )
    assert wide.returncode == 2 and "--camera-hfov" in wide.stderr
    assert not (tmp_path / "x").exists()  # refused before anything is written
    missing = subprocess.run(
        [sys.executable, "-m", "lnn_nav.cli", "dataset", str(tmp_path / "nope"), "--out", str(tmp_path / "ds")],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2 and "no such bag" in missing.stderr
    talker = subprocess.run(
        [sys.executable, "-m", "lnn_nav.cli", "dataset", str(SAMPLES / "mcap_talker"), "--out", str(tmp_path / "ds")],
        capture_output=True,
        text=True,
    )
    assert talker.returncode == 2 and "std_msgs/msg/String" in talker.stderr


def _write_chunked_bag(path: Path, chunks: int = 4, frames_per_chunk: int = 20) -> list[int]:
    """A camera + command bag written by the project's BagWriter, flushed into ``chunks`` MCAP chunks; the file's
    size after each chunk."""
    sizes = []
    with BagWriter(path, typestore=m.STORE) as bag:
        bag.add_topic("/camera/image_raw", "sensor_msgs/msg/Image")
        bag.add_topic("/cmd_vel", "geometry_msgs/msg/TwistStamped")
        for c in range(chunks):
            for k in range(frames_per_chunk):
                t = NS + (c * frames_per_chunk + k) * 100_000_000
                bag.write("/camera/image_raw", t, m.image(np.full((12, 16, 3), k, np.uint8), t))
                bag.write("/cmd_vel", t + 20_000_000, m.twist_stamped((1.0, 0, 0, 0), t + 20_000_000))
            bag.flush()
            sizes.append((path / f"{path.name}.mcap").stat().st_size)
    return sizes


def _cut(file: Path, size: int) -> None:
    with file.open("r+b") as handle:
        handle.truncate(size)


def _dataset_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lnn_nav.cli", "dataset", *args], capture_output=True, text=True, timeout=300
    )


def test_cli_dataset_reads_an_mcap_cut_short_up_to_its_last_complete_chunk_and_says_what_was_lost(
    tmp_path: Path,
) -> None:
    """A copy interrupted or a disk filled: metadata.yaml intact, the MCAP file cut inside its third chunk."""
    bag = tmp_path / "cut"
    sizes = _write_chunked_bag(bag)
    file = bag / "cut.mcap"
    assert yaml_listed_files(bag) == ["cut.mcap"]
    _cut(file, (sizes[1] + sizes[2]) // 2)
    done = _dataset_cli(str(bag), "--out", str(tmp_path / "ds"))
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "Traceback" not in out and "ReaderError" not in out
    assert "cut.mcap is truncated or damaged" in out and "recovered 80 messages" in out
    assert "80 of 160 messages (per metadata.yaml) are lost" in out
    assert "39 frames in 1 sequences from 1 bags (40 camera frames read)" in out
    assert len(SequenceDataset(tmp_path / "ds").images) == 39


def test_cli_dataset_refuses_an_mcap_cut_before_its_first_complete_chunk_naming_the_file(tmp_path: Path) -> None:
    bag = tmp_path / "cut"
    sizes = _write_chunked_bag(bag)
    _cut(bag / "cut.mcap", sizes[0] // 2)
    done = _dataset_cli(str(bag), "--out", str(tmp_path / "ds"))
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert f"lnn-nav dataset: error: {bag / 'cut.mcap'} is truncated or damaged" in done.stderr
    assert not (tmp_path / "ds" / "meta.json").exists()  # no dataset; the same --out works once the bag is fixed


def yaml_listed_files(bag: Path) -> list:
    import yaml

    return yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]["relative_file_paths"]


def test_closed_loop_evaluation_of_the_expert_reports_outcomes_tracks_and_clearance() -> None:
    from lnn_nav.eval.closed_loop import eval_seeds, evaluate, wilson_interval

    cell = evaluate(None, "forest", eval_seeds(2), envs=2, workers=1)
    s = cell.summary()
    assert s["episodes"] == 2 and s["controller"] == "expert"
    assert sum(s["outcomes"].values()) == 2
    lo, hi = s["ci95"]
    assert 0.0 <= lo <= s["success_rate"] <= hi <= 1.0
    for e in cell.episodes:
        assert e["seed"] in (1000, 1001) and e["bag"] is None  # evaluation records nothing
        track = np.array(e["track"])
        assert track.shape[1] == 3 and len(track) >= e["frames"] // 3
        if e["outcome"] == "success":
            assert e["min_clearance"] > 0.25  # never closer than the collision radius
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(5, 10)[0] < 0.5 < wilson_interval(5, 10)[1]


def test_a_topics_messages_parse_as_one_array_exactly_as_one_by_one():
    """read_stamped_many is read_stamped over a stream, and declines mixed layouts (the caller then goes one by one)."""
    import numpy as np

    pytest.importorskip("rclpy")
    from rclpy.serialization import serialize_message

    from lnn_nav.data.cdr import read_stamped, read_stamped_many
    from lnn_nav.nodes.conversions import command_to_twist_stamped, odometry_msg, seconds_to_stamp

    odoms = [
        serialize_message(
            odometry_msg([i, 2.0 * i, 1.5], [1, 0, 0, 0], [0.1 * i, 0, 0], [0, 0, 0.2], seconds_to_stamp(10 + i / 15))
        )
        for i in range(6)
    ]
    stamps, frame_id, values = read_stamped_many(odoms, "nav_msgs/msg/Odometry")
    for raw, stamp, row in zip(odoms, stamps, values):
        one = read_stamped(raw, "nav_msgs/msg/Odometry")
        assert (one.stamp_ns, one.frame_id) == (stamp, frame_id) and np.array_equal(one.values, row)
    twists = [
        serialize_message(command_to_twist_stamped([1, 0, 0, 0.5], seconds_to_stamp(1), frame))
        for frame in ("base_link", "base_link", "body", "base_lank")
    ]
    assert read_stamped_many(twists[:3], "geometry_msgs/msg/TwistStamped") is None  # another length
    assert read_stamped_many(twists[:2] + twists[3:], "geometry_msgs/msg/TwistStamped") is None  # same length
    assert read_stamped_many(twists[:2], "geometry_msgs/msg/TwistStamped")[1] == "base_link"
    assert read_stamped_many([], "geometry_msgs/msg/TwistStamped") is None


def test_flight_workers_exit_when_their_parent_is_killed(tmp_path: Path) -> None:
    """A killed `lnn-nav eval`/`collect` runs no cleanup: its workers must notice and stop on their own."""
    import os
    import signal
    import time

    script = (
        "from lnn_nav.rollouts.flights import FlightJob, fly_episodes\n"
        f"job = FlightJob(kind='forest', seeds=list(range(100_000, 100_040)), out_dir={str(tmp_path)!r}, record=False,"
        " envs=2, camera_width=32, camera_height=24, world_overrides={'size': (64.0, 40.0)})\n"
        "fly_episodes(job, workers=2)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script])

    def children() -> list:
        found = []
        for entry in Path("/proc").iterdir():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if entry.name.isdigit() and int(fields[1]) == parent.pid:
                cmdline = (entry / "cmdline").read_bytes()
                if b"spawn_main" in cmdline:
                    found.append(int(entry.name))
        return found

    workers: list = []
    try:
        deadline = time.monotonic() + 120
        while len(children()) < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        workers = children()
        assert len(workers) == 2, "the two flight workers never started"
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 20
        alive = workers
        while alive and time.monotonic() < deadline:
            time.sleep(0.5)
            alive = [
                pid
                for pid in workers
                if Path(f"/proc/{pid}").exists() and b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
            ]
        assert not alive, f"workers {alive} kept flying after their parent was killed"
    finally:
        if parent.poll() is None:
            parent.kill()
        for pid in children() + workers:  # whoever is left, even reparented
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_camera_field_of_view_reaches_the_recorded_frames(tmp_path: Path) -> None:
    # Same seed, no noise, a wider camera: the first recorded frame must differ
    # (a wider view shrinks what is ahead), and the episode still records.
    first = {}
    for hfov in (90.0, 120.0):
        out = tmp_path / f"h{hfov:.0f}"
        job = FlightJob(
            kind="forest",
            seeds=[100_000],
            out_dir=str(out),
            envs=1,
            noise=0.0,
            world_overrides=SMALL_FOREST,
            camera_width=32,
            camera_height=24,
            camera_hfov=hfov,
            max_episode_time=1.0,
            keep_failures=True,
        )
        (result,) = fly_episodes(job, workers=1)
        assert result["bag"], result
        with open_bag(out / result["bag"]) as bag:
            image = next(bag.messages([m.TOPIC_IMAGE])).message
        assert (image.width, image.height) == (32, 24)
        first[hfov] = bytes(image.data)
        # The bag's CameraInfo carries the camera into the dataset (and from there into the checkpoint).
        meta = build_dataset([out / result["bag"]], tmp_path / f"ds{hfov:.0f}", DatasetConfig(height=12, width=16))
        assert meta["camera_hfov_deg"] == pytest.approx(hfov)
        assert SequenceDataset(tmp_path / f"ds{hfov:.0f}").camera_hfov_deg == pytest.approx(hfov)
    assert first[90.0] != first[120.0]
    # One dataset, one camera: bags from both are refused, and nothing is left behind.
    with pytest.raises(DatasetError, match="different fields of view: 90.0 deg .* and 120.0 deg"):
        build_dataset(find_bags([tmp_path / "h90", tmp_path / "h120"]), tmp_path / "mixed", DatasetConfig())
    assert not (tmp_path / "mixed" / "meta.json").exists()


def test_dataset_camera_is_unknown_without_camera_info_or_with_an_uncalibrated_one(tmp_path: Path) -> None:
    frames = [NS + k * 100_000_000 for k in range(10)]
    cfg = DatasetConfig(height=12, width=16, min_sequence=2)
    for name, intrinsics, expected in (
        ("none", None, None),
        ("zeros", (0.0, 0.0, 0.0, 0.0), None),
        ("wide", (8.0, 8.0, 7.5, 5.5), 90.0),
    ):
        _write_bag(tmp_path / name, frames, [(t, 1.0) for t in frames], intrinsics=intrinsics)
        meta = build_dataset([tmp_path / name], tmp_path / f"ds_{name}", cfg)
        assert meta["camera_hfov_deg"] == (pytest.approx(expected) if expected else None), name
    # A bag without CameraInfo does not contradict one with it.
    meta = build_dataset([tmp_path / "none", tmp_path / "wide"], tmp_path / "ds_both", cfg)
    assert meta["camera_hfov_deg"] == pytest.approx(90.0)
    # The command line says which camera it found, from the topic it is told.
    for topic, says in (
        ("/camera/camera_info", "camera: 90.0 deg horizontal field of view"),
        ("/other/camera_info", "camera: field of view unknown"),
    ):
        out = tmp_path / f"cli{len(says)}"
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "lnn_nav.cli",
                "dataset",
                str(tmp_path / "wide"),
                "--out",
                str(out),
                "--size",
                "16",
                "12",
                "--camera-info-topic",
                topic,
            ],
            capture_output=True,
            text=True,
        )
        assert run.returncode == 0 and says in run.stdout, run.stdout + run.stderr


def test_cli_eval_refuses_an_impossible_field_of_view(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lnn_nav.cli",
            "eval",
            "--model",
            "expert",
            "--episodes",
            "1",
            "--camera-hfov",
            "0",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "--camera-hfov" in result.stderr
    assert not out.exists()


def test_cli_eval_seed_offset_flies_later_held_out_seeds_and_refuses_bad_ones(tmp_path: Path) -> None:
    for offset, says in (("-1", "seed offset must be >= 0"), ("999", "only 1000 evaluation seeds exist")):
        out = tmp_path / f"bad{offset}.json"
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "lnn_nav.cli",
                "eval",
                "--model",
                "expert",
                "--episodes",
                "2",
                "--seed-offset",
                offset,
                "--out",
                str(out),
            ],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 2 and says in result.stderr, result.stderr
        assert not out.exists()
    out = tmp_path / "r.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lnn_nav.cli",
            "eval",
            "--model",
            "expert",
            "--world",
            "forest",
            "--episodes",
            "1",
            "--seed-offset",
            "100",
            "--workers",
            "1",
            "--envs",
            "1",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    (cell,) = json.loads(out.read_text())["cells"]
    assert [e["seed"] for e in cell["episodes_detail"]] == [1100]
    assert cell["episodes_detail"][0]["track"]  # the report's maps draw it


def test_cli_eval_no_tracks_leaves_the_trajectories_out(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    command = [sys.executable, "-m", "lnn_nav.cli", "eval", "--model", "expert", "--world", "urban", "--episodes", "1"]
    result = subprocess.run(
        [*command, "--workers", "1", "--envs", "1", "--no-tracks", "--out", str(out)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    (cell,) = json.loads(out.read_text())["cells"]
    (episode,) = cell["episodes_detail"]
    assert "track" not in episode and episode["outcome"] == "success" and episode["path_length"] > 0
