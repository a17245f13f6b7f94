"""Recorder and replay nodes on a real rclpy graph, and `lnn-nav record` / `lnn-nav replay`."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy")
from geometry_msgs.msg import TwistStamped  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data  # noqa: E402
from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import Image, Imu  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from lnn_nav.data import BagNotFoundError, BagWriter, MissingTopicError, open_bag  # noqa: E402
from lnn_nav.nodes.recorder_node import RecorderNode  # noqa: E402
from lnn_nav.nodes.replay_node import ReplayNode, parse_remaps, wall_offset_ns  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# Real `ros2 bag record` recordings, vendored (tests/data/rosbag2-samples/README.md says where they are from).
SAMPLES = ROOT / "tests" / "data" / "rosbag2-samples"
TOPICS = {"/camera/image_raw": Image, "/imu/data": Imu, "/cmd_vel": TwistStamped}
T0 = 1_700_000_000_000_000_000


@pytest.fixture
def graph():
    """A fresh context with an executor; yields (context, executor, spin_until)."""
    context = Context()
    rclpy.init(context=context)
    executor = SingleThreadedExecutor(context=context)

    def spin_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while not condition() and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.01)
        return condition()

    try:
        yield context, executor, spin_until
    finally:
        for node in list(executor.get_nodes()):
            executor.remove_node(node)
            node.destroy_node()
        executor.shutdown()
        context.try_shutdown()


def stamp_ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def sample_message(kind: type, k: int):
    """A distinct message per ``k`` (payload equality then proves nothing was mixed up)."""
    msg = kind()
    msg.header.stamp.sec, msg.header.stamp.nanosec = 100 + k, 1000 * k
    msg.header.frame_id = f"frame_{k}"
    if kind is Image:
        msg.height, msg.width, msg.encoding, msg.step = 24, 32, "rgb8", 96
        msg.data = bytes((k + i) % 256 for i in range(24 * 96))
    elif kind is Imu:
        msg.angular_velocity.z = 0.01 * k
        msg.linear_acceleration.z = 9.81
    else:
        msg.twist.linear.x = 0.5 + k
        msg.twist.angular.z = -0.25 * k
    return msg


def make_recorder(context, executor, out: Path, **params) -> RecorderNode:
    overrides = [Parameter("output", value=str(out)), Parameter("discovery_period", value=0.05)]
    overrides += [Parameter(k, value=v) for k, v in params.items()]
    node = RecorderNode(context=context, parameter_overrides=overrides)
    executor.add_node(node)
    return node


def publish_all(publishers: dict[str, object], n: int) -> dict[str, list]:
    sent: dict[str, list] = {topic: [] for topic in publishers}
    for k in range(n):
        for topic, pub in publishers.items():
            msg = sample_message(TOPICS[topic], k)
            pub.publish(msg)
            sent[topic].append(msg)
    return sent


def write_twist_bag(path: Path, n: int = 20, period_ns: int = 50_000_000) -> Path:
    """A bag of ``n`` TwistStamped on /cmd_vel (linear.x = k) and Imu on /imu/data, ``period_ns`` apart."""
    with BagWriter(path) as bag:
        bag.add_topic("/cmd_vel", "geometry_msgs/msg/TwistStamped")
        bag.add_topic("/imu/data", "sensor_msgs/msg/Imu")
        for k in range(n):
            t = T0 + k * period_ns
            twist = TwistStamped()
            twist.header.stamp.sec, twist.header.stamp.nanosec = divmod(t, 1_000_000_000)
            twist.twist.linear.x = float(k)
            bag.write_raw("/cmd_vel", t, serialize_message(twist))
            bag.write_raw("/imu/data", t + 1, serialize_message(sample_message(Imu, k)))
    return path


# ----------------------------------------------------------------------------- recorder


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_recorder_writes_every_message_byte_for_byte(graph, tmp_path: Path, storage: str) -> None:
    context, executor, spin_until = graph
    talker = rclpy.create_node("talker", context=context)
    pubs = {topic: talker.create_publisher(kind, topic, 50) for topic, kind in TOPICS.items()}
    executor.add_node(talker)
    recorder = make_recorder(context, executor, tmp_path / "bag", topics=list(TOPICS), storage=storage)
    assert spin_until(lambda: all(p.get_subscription_count() for p in pubs.values()))
    sent = publish_all(pubs, 30)
    assert spin_until(lambda: sum(recorder.writer.counts.values()) == 90)
    recorder.close()

    with open_bag(tmp_path / "bag") as bag:
        assert bag.storage == storage and bag.notes == []
        assert {t: tuple(i) for t, i in bag.topics().items()} == {
            "/camera/image_raw": ("sensor_msgs/msg/Image", 30),
            "/cmd_vel": ("geometry_msgs/msg/TwistStamped", 30),
            "/imu/data": ("sensor_msgs/msg/Imu", 30),
        }
        for topic, msgs in sent.items():
            # The stored bytes are the CDR that arrived; they decode to exactly what was sent.
            # (Not compared byte-wise with a local serialize_message: CDR padding bytes differ.)
            got = [deserialize_message(m.rawdata, TOPICS[topic]) for m in bag.raw_messages([topic])]
            assert got == msgs
        image = next(bag.messages(["/camera/image_raw"])).message
        assert (image.width, image.height, image.encoding, image.header.frame_id) == (32, 24, "rgb8", "frame_0")
        stamps = [m.timestamp_ns for m in bag.raw_messages()]
        assert stamps == sorted(stamps) and abs(stamps[0] / 1e9 - time.time()) < 60  # receive time, epoch ns


def test_recorder_matches_best_effort_and_latched_publishers_and_stores_their_qos(graph, tmp_path: Path) -> None:
    context, executor, spin_until = graph
    talker = rclpy.create_node("talker", context=context)
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    goal = talker.create_publisher(String, "/goal", latched)
    camera = talker.create_publisher(Image, "/camera/image_raw", qos_profile_sensor_data)
    executor.add_node(talker)
    goal.publish(String(data="published before the recorder started"))
    recorder = make_recorder(context, executor, tmp_path / "bag", topics=["/goal", "/camera/image_raw"])
    assert spin_until(lambda: camera.get_subscription_count() and recorder.writer.counts.get("/goal") == 1)
    assert recorder.qos_by_topic["/camera/image_raw"].reliability == ReliabilityPolicy.BEST_EFFORT
    for k in range(5):
        camera.publish(sample_message(Image, k))
        spin_until(lambda: recorder.writer.counts["/camera/image_raw"] == k + 1, timeout=2.0)  # noqa: B023 -- called within this iteration
    recorder.close()
    with open_bag(tmp_path / "bag") as bag:
        assert bag.topics()["/camera/image_raw"].count == 5  # best effort, but nothing was in the way
        (msg,) = bag.messages(["/goal"])
        assert msg.message.data == "published before the recorder started"
        qos = {c.topic: c.ext.offered_qos_profiles[0] for c in bag.connections}
        assert qos["/goal"].durability.name == "TRANSIENT_LOCAL"
        assert qos["/camera/image_raw"].reliability.name == "BEST_EFFORT"


def test_recorder_picks_up_a_publisher_that_starts_later_and_splits_by_duration(graph, tmp_path: Path) -> None:
    context, executor, spin_until = graph
    recorder = make_recorder(context, executor, tmp_path / "bag", topics=["/cmd_vel", "/never"], max_bag_duration=0.2)
    spin_until(lambda: False, timeout=0.2)  # the recorder is up and polling an empty graph
    talker = rclpy.create_node("late_talker", context=context)
    pub = talker.create_publisher(TwistStamped, "/cmd_vel", 10)
    executor.add_node(talker)
    assert spin_until(lambda: pub.get_subscription_count() > 0)
    for k in range(16):  # 0.8 s: four or five files of 0.2 s
        pub.publish(sample_message(TwistStamped, k))
        spin_until(lambda: False, timeout=0.05)
    assert spin_until(lambda: recorder.writer.counts["/cmd_vel"] == 16)
    recorder.close()
    assert "/never: never published" in recorder.summary()
    files = sorted((tmp_path / "bag").glob("*.mcap"))
    assert len(files) >= 3
    for file in files:  # each file of a split recording reads on its own
        with open_bag(file) as part:
            assert part.topics()["/cmd_vel"].count >= 1
    with open_bag(tmp_path / "bag") as bag:
        got = [m.message.twist.linear.x for m in bag.messages()]
    assert got == [0.5 + k for k in range(16)]


def test_recorder_all_topics_minus_the_excluded_ones(graph, tmp_path: Path) -> None:
    context, executor, spin_until = graph
    talker = rclpy.create_node("talker", context=context)
    kept = talker.create_publisher(TwistStamped, "/cmd_vel", 10)
    dropped = talker.create_publisher(Imu, "/imu/data", 10)
    executor.add_node(talker)
    recorder = make_recorder(context, executor, tmp_path / "bag", all_topics=True, exclude="^/imu|^/rosout")
    assert spin_until(lambda: kept.get_subscription_count() > 0)
    spin_until(lambda: False, timeout=0.2)  # more discovery rounds: /imu/data must stay unrecorded
    assert dropped.get_subscription_count() == 0
    kept.publish(sample_message(TwistStamped, 0))
    assert spin_until(lambda: recorder.writer.counts["/cmd_vel"] == 1)
    recorder.close()
    with open_bag(tmp_path / "bag") as bag:
        assert "/cmd_vel" in bag.topics() and "/imu/data" not in bag.topics()


def test_recorder_refuses_to_record_nothing_or_over_an_existing_bag(graph, tmp_path: Path) -> None:
    context, executor, _ = graph
    with pytest.raises(ValueError, match="nothing to record"):
        make_recorder(context, executor, tmp_path / "a")
    (tmp_path / "b").mkdir()
    with pytest.raises(FileExistsError, match="exists already"):
        make_recorder(context, executor, tmp_path / "b", topics=["/cmd_vel"])
    with pytest.raises(ValueError, match="absolute"):
        make_recorder(context, executor, tmp_path / "c", topics=["cmd_vel"])
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()


# ----------------------------------------------------------------------------- replay


def make_replay(context, executor, bag: Path, **params) -> ReplayNode:
    overrides = [Parameter("bag", value=str(bag)), Parameter("wait_for_subscribers", value=True)]
    overrides += [Parameter(k, value=v) for k, v in params.items()]
    node = ReplayNode(context=context, parameter_overrides=overrides)
    executor.add_node(node)
    return node


class Listener:
    """Collects messages on a topic with their wall arrival time."""

    def __init__(self, context, executor, topic: str, kind: type, qos=100) -> None:
        self.node = rclpy.create_node(f"listener_{abs(hash(topic))}", context=context)
        self.got: list[tuple] = []
        self.node.create_subscription(kind, topic, lambda m: self.got.append((time.monotonic(), m)), qos)
        executor.add_node(self.node)

    @property
    def messages(self) -> list:
        return [m for _, m in self.got]


def test_replay_keeps_the_recorded_timing_scaled_by_rate_in_order(graph, tmp_path: Path) -> None:
    context, executor, spin_until = graph
    bag = write_twist_bag(tmp_path / "bag", n=20, period_ns=50_000_000)  # 0.95 s recorded
    cmd = Listener(context, executor, "/cmd_vel", TwistStamped)
    imu = Listener(context, executor, "/imu/data", Imu)
    replay = make_replay(context, executor, bag, rate=2.0)
    assert spin_until(lambda: replay.finished.is_set() and len(cmd.got) == 20 and len(imu.got) == 20)
    assert [m.twist.linear.x for m in cmd.messages] == [float(k) for k in range(20)]
    assert [m.header.frame_id for m in imu.messages] == [f"frame_{k}" for k in range(20)]
    arrivals = [t for t, _ in cmd.got]
    assert arrivals[-1] - arrivals[0] == pytest.approx(0.95 / 2.0, abs=0.08)
    gaps = sorted(b - a for a, b in zip(arrivals, arrivals[1:]))
    assert gaps[len(gaps) // 2] == pytest.approx(0.025, abs=0.01)
    assert replay.counts == {"/cmd_vel": 20, "/imu/data": 20}


def test_replay_publishes_clock_with_the_recorded_time(graph, tmp_path: Path) -> None:
    context, executor, spin_until = graph
    bag = write_twist_bag(tmp_path / "bag", n=10, period_ns=20_000_000)
    clock = Listener(context, executor, "/clock", Clock)
    cmd = Listener(context, executor, "/cmd_vel", TwistStamped)
    replay = make_replay(context, executor, bag, topics=["/cmd_vel"], publish_clock=True, clock_frequency=200.0)
    assert spin_until(lambda: replay.finished.is_set() and len(cmd.got) == 10)
    spin_until(lambda: False, timeout=0.1)
    times = [stamp_ns(m.clock) for m in clock.messages]
    assert times == sorted(times) and len(times) >= 10
    assert times[0] == T0 and times[-1] >= T0 + 9 * 20_000_000
    # Each command's header stamp (its recorded time) was on /clock no later than the command.
    assert {stamp_ns(m.header.stamp) for m in cmd.messages} <= set(times)


def test_replay_topic_filter_remap_and_start_offset(graph, tmp_path: Path) -> None:
    context, executor, spin_until = graph
    bag = write_twist_bag(tmp_path / "bag", n=20, period_ns=10_000_000)
    renamed = Listener(context, executor, "/replayed/imu", Imu)
    cmd = Listener(context, executor, "/cmd_vel", TwistStamped)
    replay = make_replay(
        context, executor, bag, topics=["/imu/data"], remap=["/imu/data:=/replayed/imu"], start_offset=0.1
    )
    assert spin_until(lambda: replay.finished.is_set() and len(renamed.got) == 10)
    spin_until(lambda: False, timeout=0.1)
    assert [m.header.frame_id for m in renamed.messages] == [f"frame_{k}" for k in range(10, 20)]
    assert cmd.got == [] and "/cmd_vel" not in replay.publishers_by_topic


def test_replay_loops_until_stopped(graph, tmp_path: Path) -> None:
    context, executor, spin_until = graph
    bag = write_twist_bag(tmp_path / "bag", n=5, period_ns=10_000_000)
    cmd = Listener(context, executor, "/cmd_vel", TwistStamped)
    replay = make_replay(context, executor, bag, topics=["/cmd_vel"], loop=True)
    assert spin_until(lambda: len(cmd.got) >= 12)
    replay.stop()
    assert replay.loops_done >= 2 and replay.finished.is_set()
    assert [m.twist.linear.x for m in cmd.messages[:10]] == [0.0, 1.0, 2.0, 3.0, 4.0] * 2


def test_replay_of_a_bag_recorded_by_ros2_bag(graph, tmp_path: Path) -> None:
    context, executor, spin_until = graph
    talk = Listener(context, executor, "/topic", String)
    replay = make_replay(context, executor, SAMPLES / "mcap_talker", topics=["/topic"], rate=20.0)
    assert spin_until(lambda: replay.finished.is_set() and len(talk.got) == 10)
    assert [m.data for m in talk.messages] == [f"Hello, world! {k}" for k in range(10)]
    gaps = [b - a for (a, _), (b, _) in zip(talk.got, talk.got[1:])]
    assert sum(gaps) == pytest.approx(4.5 / 20.0, abs=0.08)  # the talker spoke for 4.5 s


def test_replay_skips_types_that_are_not_installed_and_says_which(graph, tmp_path: Path) -> None:
    context, executor, _ = graph
    with pytest.raises(ValueError, match=r"nothing to replay.*/array_topic: .*test_msgs/msg/Arrays.*'test_msgs'"):
        make_replay(context, executor, SAMPLES / "mcap_cdr_test")


def test_replay_errors_name_what_is_wrong(graph, tmp_path: Path) -> None:
    context, executor, _ = graph
    with pytest.raises(BagNotFoundError, match="does not exist"):
        make_replay(context, executor, tmp_path / "nope")
    bag = write_twist_bag(tmp_path / "bag", n=3)
    with pytest.raises(MissingTopicError, match=r"lacks the topic\(s\) /odom.*/cmd_vel"):
        make_replay(context, executor, bag, topics=["/odom"])
    with pytest.raises(ValueError, match="FROM:=TO"):
        make_replay(context, executor, bag, remap=["/cmd_vel=/x"])
    with pytest.raises(ValueError, match="past the end"):
        make_replay(context, executor, bag, start_offset=100.0)


@pytest.mark.parametrize(("name", "module"), [("recorder", "recorder_node"), ("replay", "replay_node")])
def test_parameter_files_set_only_parameters_the_node_declares(name: str, module: str) -> None:
    import importlib

    import yaml

    node = importlib.import_module(f"lnn_nav.nodes.{module}")
    params = yaml.safe_load((ROOT / "config" / f"{name}.yaml").read_text())[f"{name}_node"]["ros__parameters"]
    assert set(params) <= set(node.PARAMETERS) | set(node.RANGED)
    for key, value in params.items():
        default = {**node.PARAMETERS, **node.RANGED}[key][0]
        if not isinstance(default, Parameter.Type):
            assert type(value) is type(default), key  # rclpy refuses a YAML value of another type


def test_remap_parsing_and_wall_schedule() -> None:
    assert parse_remaps(["/a:=/b", "/c/d:=/e"]) == {"/a": "/b", "/c/d": "/e"}
    assert wall_offset_ns(T0 + 1_000_000_000, T0, 2.0) == 500_000_000
    assert wall_offset_ns(T0 + 1_000_000_000, T0, 0.5) == 2_000_000_000


# ----------------------------------------------------------------------------- the commands, as processes


def lnn_nav(*args: str) -> list[str]:
    return [sys.executable, "-m", "lnn_nav.cli", *args]


def start_recorder(out: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        lnn_nav("record", "/cmd_vel", "/imu/data", "-o", str(out), *args),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def publish_to(process: subprocess.Popen, graph, n: int) -> None:
    """Publish ``n`` commands and IMU samples once ``process`` has subscribed to both, all acknowledged."""
    context, executor, spin_until = graph
    talker = rclpy.create_node("talker", context=context)
    pubs = {topic: talker.create_publisher(TOPICS[topic], topic, 100) for topic in ("/cmd_vel", "/imu/data")}
    executor.add_node(talker)
    assert spin_until(
        lambda: all(p.get_subscription_count() for p in pubs.values()) or process.poll() is not None, timeout=20.0
    ), "the recorder never subscribed"
    assert process.poll() is None, process.communicate()
    for k in range(n):
        for topic, pub in pubs.items():
            pub.publish(sample_message(TOPICS[topic], k))
        time.sleep(0.002)
    for pub in pubs.values():
        assert pub.wait_for_all_acked(rclpy.duration.Duration(seconds=5))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_lnn_nav_record_closes_the_bag_cleanly_on_a_signal(graph, tmp_path: Path, sig: int) -> None:
    process = start_recorder(tmp_path / "bag")
    try:
        publish_to(process, graph, 100)
    finally:
        process.send_signal(sig)
        out, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    assert "200 messages on 2 topics" in out and "/cmd_vel" in out
    assert (tmp_path / "bag" / "metadata.yaml").exists()
    with open_bag(tmp_path / "bag") as bag:
        assert bag.notes == []
        assert {t: i.count for t, i in bag.topics().items()} == {"/cmd_vel": 100, "/imu/data": 100}
        assert [m.message.twist.linear.x for m in bag.messages(["/cmd_vel"])] == [0.5 + k for k in range(100)]


def test_a_killed_recorder_leaves_a_bag_that_reads_up_to_its_last_flush(graph, tmp_path: Path) -> None:
    process = start_recorder(tmp_path / "bag", "--flush-period", "0.1")
    try:
        publish_to(process, graph, 50)
        time.sleep(0.5)  # several flushes
    finally:
        process.kill()
        process.communicate(timeout=20)
    assert not (tmp_path / "bag" / "metadata.yaml").exists()
    with open_bag(tmp_path / "bag") as bag:
        assert bag.recovered and "no metadata.yaml" in bag.notes[0]
        assert {t: i.count for t, i in bag.topics().items()} == {"/cmd_vel": 50, "/imu/data": 50}


def test_lnn_nav_replay_plays_a_ros2_bag_recording_and_exits(graph, tmp_path: Path) -> None:
    context, executor, spin_until = graph
    talk = Listener(context, executor, "/chatter", String)
    process = subprocess.Popen(
        lnn_nav(
            "replay",
            str(SAMPLES / "sqlite3_talker"),
            "--topics",
            "/topic",
            "--remap",
            "/topic:=/chatter",
            "--rate",
            "10",
            "--wait-for-subscribers",
            "15",
        ),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert spin_until(lambda: len(talk.got) == 10 or process.poll() is not None, timeout=30.0)
        out, err = process.communicate(timeout=20)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "replayed 10 messages" in out
    assert [m.data for m in talk.messages] == [f"Hello, world! {k}" for k in range(10)]


def _cut_twist_bag(path: Path, cut_chunk: int) -> Path:
    """A bag of 4 chunks of 10 TwistStamped + 10 Imu (the project's writer, metadata.yaml intact) whose MCAP file is
    cut in the middle of chunk ``cut_chunk`` (0-based): a copy interrupted, a disk filled."""
    sizes = []
    with BagWriter(path) as bag:
        bag.add_topic("/cmd_vel", "geometry_msgs/msg/TwistStamped")
        bag.add_topic("/imu/data", "sensor_msgs/msg/Imu")
        for k in range(40):
            t = T0 + k * 10_000_000
            bag.write_raw("/cmd_vel", t, serialize_message(TwistStamped()))
            bag.write_raw("/imu/data", t + 1, serialize_message(sample_message(Imu, k)))
            if k % 10 == 9:
                bag.flush()
                sizes.append((path / f"{path.name}.mcap").stat().st_size)
    before = sizes[cut_chunk - 1] if cut_chunk else 0
    with (path / f"{path.name}.mcap").open("r+b") as handle:
        handle.truncate((before + sizes[cut_chunk]) // 2)
    return path


def test_lnn_nav_replay_plays_an_mcap_cut_short_up_to_its_last_complete_chunk_and_says_what_was_lost(
    tmp_path: Path,
) -> None:
    bag = _cut_twist_bag(tmp_path / "cut", cut_chunk=3)
    result = subprocess.run(
        lnn_nav("replay", str(bag), "--rate", "10", "--remap", "/cmd_vel:=/cut_cmd_vel", "/imu/data:=/cut_imu"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "Traceback" not in out and "ReaderError" not in out
    assert "cut.mcap is truncated or damaged" in out and "recovered 60 messages" in out
    assert "20 of 80 messages (per metadata.yaml) are lost" in out
    assert "replayed 60 messages" in out


def test_lnn_nav_replay_refuses_an_mcap_cut_before_its_first_complete_chunk_naming_the_file(tmp_path: Path) -> None:
    bag = _cut_twist_bag(tmp_path / "cut", cut_chunk=0)
    result = subprocess.run(lnn_nav("replay", str(bag)), cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"lnn-nav replay: error: {bag / 'cut.mcap'} is truncated or damaged" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("replay", "/no/such/bag"), "no rosbag2 recording at /no/such/bag"),
        (("replay", str(SAMPLES / "mcap_talker"), "--topics", "/odom"), "lacks the topic(s) /odom"),
        (("record",), "name topics to record, or --all"),
        (("record", "/cmd_vel", "-o", str(ROOT)), "exists already"),
    ],
)
def test_lnn_nav_record_and_replay_refuse_bad_input_with_exit_code_2(args, message) -> None:
    result = subprocess.run(lnn_nav(*args), cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
