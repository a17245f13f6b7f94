"""Replay node: publish a rosbag2's messages with their recorded timing, optionally driving /clock.

``ReplayNode`` is ``ros2 bag play`` for machines without rosbag2. A thread
walks the recording in timestamp order and publishes each message's
recorded CDR bytes as they are (no deserialise/serialise round trip) at
``start + (t - t0) / rate`` on the monotonic clock, so the gaps between
messages are the recorded ones scaled by ``rate``. With ``publish_clock`` it
also publishes ``/clock`` (``rosgraph_msgs/Clock``): the recorded time of
each message just before the message itself, and ``clock_frequency`` times
a second in between, so a controller started with ``use_sim_time:=true``
runs open-loop against a recorded flight as if it were live.

Only message types of installed packages can be published (rclpy needs
their type support); topics of other types are named in one error at start
and skipped. Publishers take the recorded QoS where the bag stores it
(transient-local for a latched goal), reliable otherwise.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, cast

import rclpy
from builtin_interfaces.msg import Time
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.duration import Duration
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from rosbags.interfaces import Connection, ConnectionExtRosbag2, QosDurability, QosReliability
from rosgraph_msgs.msg import Clock

from lnn_nav.data.bags import BagReader, open_bag, require_topics
from lnn_nav.nodes.params import float_param, int_param
from lnn_nav.nodes.recorder_node import ShutdownRequest, message_class, parameter_value, spin_until

_NS_PER_S = 1_000_000_000
CLOCK_TOPIC = "/clock"
#: Longest single sleep of the playback thread, so stop requests are noticed promptly.
_MAX_SLEEP_S = 0.05

PARAMETERS: dict[str, tuple[Any, str]] = {
    "bag": ("", "rosbag2 directory, or a single .mcap/.db3 file"),
    "topics": (Parameter.Type.STRING_ARRAY, "bag topics to replay (unset: all)"),
    "remap": (Parameter.Type.STRING_ARRAY, "publish bag topic FROM on TO: entries 'FROM:=TO'"),
    "loop": (False, "start again from the start offset after the last message"),
    "publish_clock": (False, "publish /clock with the recorded time (for use_sim_time nodes)"),
    "wait_for_subscribers": (False, "before starting, wait until every replayed topic has a subscriber"),
}
RANGED: dict[str, tuple[Any, ParameterDescriptor]] = {
    "rate": (1.0, float_param("playback speed factor (2.0: twice as fast)", 1e-3, 1e3)),
    "start_offset": (0.0, float_param("seconds into the recording to start from", 0.0, 1e9)),
    "delay": (0.0, float_param("wall seconds to wait before the first message", 0.0, 3600.0)),
    "wait_timeout": (10.0, float_param("wait_for_subscribers: give up waiting after this many s", 0.0, 3600.0)),
    "clock_frequency": (
        100.0,
        float_param("publish_clock: /clock messages per wall second between messages", 0.1, 10_000.0),
    ),
    "queue_depth": (100, int_param("publisher queue depth (keep-last) per topic", 1, 100_000)),
}


def parse_remaps(entries: Sequence[str]) -> dict[str, str]:
    """``["/a:=/b", ...]`` -> ``{"/a": "/b"}``; names must be absolute."""
    remap: dict[str, str] = {}
    for entry in entries:
        source, sep, target = entry.partition(":=")
        if not sep or not source.startswith("/") or not target.startswith("/"):
            raise ValueError(f"remap entries are 'FROM:=TO' with absolute topic names, got {entry!r}")
        remap[source] = target
    return remap


def publisher_qos(recorded: Sequence[Any], depth: int) -> QoSProfile:
    """The publisher profile for a topic recorded with the offered profiles ``recorded`` (rosbags Qos).

    Reliable unless every recorded publisher was best effort (a reliable
    writer also serves best-effort readers); transient-local only when every
    recorded publisher was, so that a latched topic stays latched.
    """
    best_effort = bool(recorded) and all(q.reliability == QosReliability.BEST_EFFORT for q in recorded)
    latched = bool(recorded) and all(q.durability == QosDurability.TRANSIENT_LOCAL for q in recorded)
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.BEST_EFFORT if best_effort else ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
    )


def wall_offset_ns(timestamp_ns: int, start_ns: int, rate: float) -> int:
    """Wall nanoseconds after the start of playback at which a message recorded at ``timestamp_ns`` goes out."""
    return int((timestamp_ns - start_ns) / rate)


def _stamp(ns: int) -> Time:
    return Time(sec=ns // _NS_PER_S, nanosec=ns % _NS_PER_S)


class ReplayNode(Node):
    """Publish a recording's messages with their recorded timing (see the module docstring)."""

    def __init__(self, node_name: str = "replay_node", *, autostart: bool = True, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        for name, (default, text) in PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=text))
        for name, (default, descriptor) in RANGED.items():
            self.declare_parameter(name, default, descriptor)
        p = {name: parameter_value(self, name) for name in (*PARAMETERS, *RANGED)}
        if not p["bag"]:
            raise ValueError("no recording given: set the `bag` parameter to a rosbag2 directory or file")
        self.rate = float(p["rate"])
        self.loop = bool(p["loop"])
        self.delay = float(p["delay"])
        self.wait_for_subscribers = bool(p["wait_for_subscribers"])
        self.wait_timeout = float(p["wait_timeout"])
        self.clock_period_ns = int(_NS_PER_S / float(p["clock_frequency"]))
        remap = parse_remaps(p["remap"] or [])

        self.reader: BagReader = open_bag(p["bag"])
        try:
            found = self.reader.topics()
            selected = list(p["topics"] or found)
            require_topics(self.reader, selected, allow_empty=True)
            if unknown := sorted(set(remap) - set(found)):
                raise ValueError(
                    f"remap names topics the recording lacks: {', '.join(unknown)} (it holds {', '.join(found)})"
                )
            self.start_ns = self.reader.start_ns + int(round(float(p["start_offset"]) * _NS_PER_S))
            if self.start_ns >= self.reader.end_ns:
                raise ValueError(
                    f"start_offset {p['start_offset']} s is past the end of the recording "
                    f"({self.reader.duration_ns / _NS_PER_S:.3f} s long)"
                )
            self.publish_clock = bool(p["publish_clock"])
            if self.publish_clock and CLOCK_TOPIC in selected:
                self.get_logger().warn(f"the recording's own {CLOCK_TOPIC} is not replayed: publish_clock is on")
                selected.remove(CLOCK_TOPIC)
            self.publishers_by_topic: dict[str, Any] = {}
            self.skipped: dict[str, str] = {}
            self._make_publishers(selected, found, remap, int(p["queue_depth"]))
            if not self.publishers_by_topic:
                raise ValueError(
                    f"nothing to replay from {self.reader.path}: "
                    + "; ".join(f"{t}: {why}" for t, why in self.skipped.items())
                )
        except BaseException:
            self.reader.close()
            raise
        self.clock_pub = self.create_publisher(Clock, CLOCK_TOPIC, 10) if self.publish_clock else None
        self.counts: dict[str, int] = {topic: 0 for topic in self.publishers_by_topic}
        self.loops_done = 0
        self.error: str | None = None  # why playback stopped early, if it did
        self.finished = threading.Event()
        self._stop = threading.Event()
        self._last_clock_ns = -1
        self._thread = threading.Thread(target=self._play, name="replay", daemon=True)
        self.get_logger().info(
            f"replaying {len(self.publishers_by_topic)} topics of {self.reader.path} at x{self.rate:g}"
            + (f" from {p['start_offset']:g} s" if p["start_offset"] else "")
            + (", looping" if self.loop else "")
            + (", publishing /clock" if self.publish_clock else "")
        )
        if autostart:
            self.start()

    def _make_publishers(self, selected: list[str], found: dict[str, Any], remap: dict[str, str], depth: int) -> None:
        connections: dict[str, list[Connection]] = {}
        for conn in self.reader.connections:
            connections.setdefault(conn.topic, []).append(conn)
        for topic in selected:
            msgtype = found[topic].msgtype
            if len({c.msgtype for c in connections[topic]}) > 1:
                self.skipped[topic] = "recorded with several message types"
                continue
            try:
                cls = message_class(msgtype)
            except LookupError as err:
                self.skipped[topic] = str(err)
                continue
            recorded_hash = next((c.digest for c in connections[topic] if c.digest), "")
            if recorded_hash.startswith("RIHS01_") and recorded_hash != self.reader.typestore.hash_rihs01(msgtype):
                self.get_logger().warn(
                    f"{topic}: {msgtype} was recorded with a definition other than the installed one "
                    f"(type hash {recorded_hash[:20]}...): subscribers may misread its messages"
                )
            # BagReader reads rosbag2 only, so every connection carries the rosbag2 extension.
            offered = [q for c in connections[topic] for q in cast(ConnectionExtRosbag2, c.ext).offered_qos_profiles]
            qos = publisher_qos(offered, depth)
            self.publishers_by_topic[topic] = self.create_publisher(cls, remap.get(topic, topic), qos)
        if self.skipped:
            self.get_logger().error(
                f"{len(self.skipped)} of {len(selected)} topics cannot be replayed and are skipped: "
                + "; ".join(f"{t} ({why})" for t, why in sorted(self.skipped.items()))
            )

    # -- playback ----------------------------------------------------------------
    def start(self) -> None:
        """Start the playback thread (done by the constructor unless ``autostart=False``)."""
        self._thread.start()

    def stop(self) -> None:
        """Stop playing (the thread ends within ~50 ms); idempotent."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)

    def _play(self) -> None:
        try:
            self._wait_to_start()
            while not self._stop.is_set():
                self._play_once()
                if self._stop.is_set() or not self.loop:
                    break
                self.loops_done += 1
                self._last_clock_ns = -1  # the recorded time starts over: /clock jumps back, as ros2 bag play's
            self._wait_for_acks()
        except Exception as err:  # noqa: BLE001 - a broken recording ends playback with its reason
            self.error = str(err)
            self.get_logger().error(f"playback stopped: {err}")
        finally:
            total = sum(self.counts.values())
            lines = ", ".join(f"{t}: {n}" for t, n in sorted(self.counts.items()))
            self.get_logger().info(f"replayed {total} messages ({lines})")
            self.finished.set()

    def _wait_to_start(self) -> None:
        if self.wait_for_subscribers:
            deadline = time.monotonic() + self.wait_timeout
            while not self._stop.is_set():
                lonely = [t for t, pub in self.publishers_by_topic.items() if pub.get_subscription_count() == 0]
                if not lonely:
                    break
                if time.monotonic() >= deadline:
                    self.get_logger().warn(
                        f"no subscriber after {self.wait_timeout:g} s on: {', '.join(lonely)}; starting anyway"
                    )
                    break
                time.sleep(0.02)
        self._stop.wait(self.delay)

    def _play_once(self) -> None:
        wall0 = time.monotonic_ns()
        for topic, _, timestamp, data in self.reader.raw_messages(self.publishers_by_topic):
            if timestamp < self.start_ns:
                continue
            due = wall0 + wall_offset_ns(timestamp, self.start_ns, self.rate)
            if not self._sleep_until(due, wall0):
                return
            self._publish_clock(timestamp)
            self.publishers_by_topic[topic].publish(data)
            self.counts[topic] += 1

    def _sleep_until(self, due_ns: int, wall0_ns: int) -> bool:
        """Sleep until ``due_ns`` (monotonic), ticking /clock meanwhile; False when stopped."""
        while True:
            if self._stop.is_set():
                return False
            now = time.monotonic_ns()
            if now >= due_ns:
                return True
            step = due_ns - now
            if self.clock_pub is not None:
                self._publish_clock(self.start_ns + int((now - wall0_ns) * self.rate))
                step = min(step, self.clock_period_ns)
            time.sleep(min(step / _NS_PER_S, _MAX_SLEEP_S))

    def _publish_clock(self, bag_ns: int) -> None:
        if self.clock_pub is None or bag_ns <= self._last_clock_ns:
            return
        self._last_clock_ns = bag_ns
        self.clock_pub.publish(Clock(clock=_stamp(bag_ns)))

    def _wait_for_acks(self) -> None:
        """Give reliable subscribers up to a second to acknowledge the last messages before teardown."""
        deadline = time.monotonic() + 1.0
        for pub in self.publishers_by_topic.values():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            pub.wait_for_all_acked(Duration(nanoseconds=int(remaining * _NS_PER_S)))

    def destroy_node(self) -> None:
        self.stop()
        self.reader.close()
        super().destroy_node()


def run_replay(overrides: list[Any] | None = None, args: list[str] | None = None) -> ReplayNode:
    """Replay until the recording ends (never with ``loop``) or SIGINT/SIGTERM.

    Raises the bag errors of :mod:`lnn_nav.data.errors` and ``ValueError``
    for bad parameters before anything is published.
    """
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop = ShutdownRequest()
    previous = stop.install()
    node: ReplayNode | None = None
    executor = SingleThreadedExecutor()
    try:
        node = ReplayNode(parameter_overrides=overrides or [])
        executor.add_node(node)
        spin_until(executor, stop, done=node.finished.is_set)
        return node
    finally:
        executor.shutdown()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
        stop.restore(previous)


def main(args: list[str] | None = None) -> int:
    """``ros2 run lnn_nav replay_node --ros-args --params-file config/replay.yaml -p bag:=PATH``."""
    from lnn_nav.data.errors import BagError

    try:
        run_replay(args=args)
    except (BagError, ValueError) as err:
        print(f"replay_node: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
