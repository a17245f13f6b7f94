"""Recorder node: subscribe to topics found on the graph and write them, as received, to a rosbag2.

``RecorderNode`` is ``ros2 bag record`` for machines without rosbag2: the
topic types come from the graph (re-polled, so publishers that start later
are picked up), messages are taken as serialized CDR (``raw=True``) and
written as they are, through :class:`lnn_nav.data.bags.BagWriter` (MCAP by
default, SQLite3 on request; split by size or duration; zstd optional).

QoS follows the publishers, as rosbag2 does: reliable when every publisher
offers reliable (a reliable subscription would not match a best-effort
sensor driver), transient-local when every publisher is (so a latched goal
recorded late still arrives), with a deep keep-last queue so a busy moment
of the executor drops nothing. The publishers' profiles are stored in the
bag, and replay publishes with them.

Timestamps are the time the middleware received each message (system time,
ns since the epoch), or the node's clock under ``use_sim_time``, as rosbag2
records them. The file is flushed every ``flush_period`` seconds, so a
recorder that is killed loses at most that much; SIGINT/SIGTERM close the
bag cleanly (index, summary, metadata.yaml) and log the count per topic.
"""

from __future__ import annotations

import functools
import importlib
import re
import signal
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import ParameterUninitializedException
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    LivelinessPolicy,
    QoSProfile,
    ReliabilityPolicy,
)
from rclpy.signals import SignalHandlerOptions
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

from lnn_nav.data.bags import COMPRESSIONS, STORAGES, BagWriter
from lnn_nav.nodes.params import float_param, int_param
from lnn_nav.nodes.runtime import ShutdownRequest, spin_until

_NS_PER_S = 1_000_000_000

# name -> (default, description). Types follow the defaults; list parameters are string arrays.
PARAMETERS: dict[str, tuple[Any, str]] = {
    "topics": (Parameter.Type.STRING_ARRAY, "topics to record (unset: none unless all_topics)"),
    "all_topics": (False, "record every topic on the graph (except those matching exclude)"),
    "exclude": ("", "regular expression; matching topics are not recorded"),
    "output": ("", "bag directory to create (empty: rosbag2_YYYY_MM_DD-HH_MM_SS here)"),
    "storage": ("mcap", "storage: " + " or ".join(STORAGES)),
    "compression": ("none", "zstd compression: " + ", ".join(COMPRESSIONS) + " (chunk: MCAP only)"),
}
RANGED: dict[str, tuple[Any, ParameterDescriptor]] = {
    "max_bag_size": (0, int_param("split when a file holds this many message bytes (0: never)", 0, 2**62)),
    "max_bag_duration": (0.0, float_param("split after this many seconds of messages per file (0: never)", 0.0, 1e9)),
    "queue_depth": (1000, int_param("subscription queue depth (keep-last) per topic", 1, 100_000)),
    "discovery_period": (0.25, float_param("seconds between looks at the graph for new topics", 0.01, 60.0)),
    "flush_period": (1.0, float_param("seconds between flushes to disk (what a crash can lose)", 0.05, 3600.0)),
}


def parameter_value(node: Node, name: str) -> Any:
    """A parameter's value; None for a list parameter declared by type and never set.

    List parameters are declared by type: an empty-list default would make
    rclpy type them as byte arrays and refuse the strings a user sets.
    """
    try:
        return node.get_parameter(name).value
    except ParameterUninitializedException:
        return None


def default_bag_name(now: datetime | None = None) -> str:
    """``rosbag2_YYYY_MM_DD-HH_MM_SS``, the name ``ros2 bag record`` gives a recording."""
    return (now or datetime.now()).strftime("rosbag2_%Y_%m_%d-%H_%M_%S")


def message_class(msgtype: str) -> Any:
    """The rclpy message class of ``pkg/msg/Name`` (also accepts ``pkg/Name``).

    Raises ``LookupError`` naming the package when it is not installed: only
    types of installed message packages can be subscribed or published.
    """
    parts = msgtype.split("/")
    if len(parts) == 2:
        parts = [parts[0], "msg", parts[1]]
    if len(parts) != 3 or not all(parts):
        raise LookupError(f"{msgtype!r} is not a message type name (expected pkg/msg/Name)")
    package, kind, name = parts
    try:
        module = importlib.import_module(f"{package}.{kind}")
        return getattr(module, name)
    except (ImportError, AttributeError) as err:
        raise LookupError(
            f"message type {msgtype} is not available to rclpy here (package {package!r} is not "
            f"installed or has no {name}): {err}"
        ) from err


def subscription_qos(offered: Sequence[QoSProfile], depth: int) -> QoSProfile:
    """A subscription profile that matches every offered publisher profile and drops nothing.

    Reliable only if all publishers are reliable (a reliable reader does not
    match a best-effort writer), transient-local only if all publishers are
    (a transient-local reader does not match a volatile writer).
    """
    reliable = bool(offered) and all(q.reliability == ReliabilityPolicy.RELIABLE for q in offered)
    latched = bool(offered) and all(q.durability == DurabilityPolicy.TRANSIENT_LOCAL for q in offered)
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
    )


def _rosbags_time(duration: Any) -> QosTime:
    ns = int(duration.nanoseconds)
    if ns < 0 or ns >= 2**63 - 1:  # "infinite" (unset) durations are stored as 0, as rosbag2 does
        return QosTime(0, 0)
    return QosTime(ns // _NS_PER_S, ns % _NS_PER_S)


def rosbags_qos(profile: QoSProfile) -> Qos:
    """An rclpy QoS profile as rosbags stores it in the bag metadata (``offered_qos_profiles``)."""
    return Qos(
        history=QosHistory(int(profile.history)),
        depth=int(profile.depth),
        reliability=QosReliability(int(profile.reliability)),
        durability=QosDurability(int(profile.durability)),
        deadline=_rosbags_time(profile.deadline),
        lifespan=_rosbags_time(profile.lifespan),
        liveliness=QosLiveliness(
            int(profile.liveliness if profile.liveliness is not None else LivelinessPolicy.AUTOMATIC)
        ),
        liveliness_lease_duration=_rosbags_time(profile.liveliness_lease_duration),
        avoid_ros_namespace_conventions=bool(profile.avoid_ros_namespace_conventions),
    )


class RecorderNode(Node):
    """Record topics of the ROS graph into a rosbag2 (MCAP or SQLite3)."""

    def __init__(self, node_name: str = "recorder_node", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        for name, (default, text) in PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=text))
        for name, (default, descriptor) in RANGED.items():
            self.declare_parameter(name, default, descriptor)
        p = {name: parameter_value(self, name) for name in (*PARAMETERS, *RANGED)}
        self.wanted = {t for t in p["topics"] or [] if t}
        self.all_topics = bool(p["all_topics"])
        if not self.wanted and not self.all_topics:
            raise ValueError("nothing to record: set `topics` (a list of topic names) or all_topics:=true")
        if bad := [t for t in self.wanted if not t.startswith("/")]:
            raise ValueError(f"topic names must be absolute (start with '/'): {', '.join(sorted(bad))}")
        try:
            self.exclude = re.compile(p["exclude"]) if p["exclude"] else None
        except re.error as err:
            raise ValueError(f"exclude is not a valid regular expression ({p['exclude']!r}): {err}") from err
        self.depth = int(p["queue_depth"])
        self.path = Path(p["output"] or default_bag_name())
        self.writer = BagWriter(
            self.path,
            storage=str(p["storage"]),
            compression=str(p["compression"]),
            max_bytes=int(p["max_bag_size"]),
            max_duration_ns=int(round(float(p["max_bag_duration"]) * _NS_PER_S)),
        ).open()
        self.use_sim_time = bool(self.get_parameter("use_sim_time").value)
        self.subscriptions_by_topic: dict[str, Any] = {}
        self.qos_by_topic: dict[str, QoSProfile] = {}
        self.skipped: dict[str, str] = {}  # topic -> why it is not recorded (said once)
        self._closed = False
        # Steady timers: under use_sim_time a ROS-time timer stops with /clock.
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(float(p["discovery_period"]), self.discover, clock=steady)
        self.create_timer(float(p["flush_period"]), self.writer.flush, clock=steady)
        what = "all topics" if self.all_topics else ", ".join(sorted(self.wanted))
        self.get_logger().info(
            f"recording {what} to {self.path} ({self.writer.storage}, compression {self.writer.compression})"
        )
        self.discover()

    # -- discovery -------------------------------------------------------------
    def wants(self, topic: str) -> bool:
        if self.exclude is not None and self.exclude.search(topic):
            return False
        return self.all_topics or topic in self.wanted

    def discover(self) -> None:
        """Subscribe to wanted topics that have appeared; warn about publishers we cannot hear."""
        if self._closed:
            return
        for topic, types in self.get_topic_names_and_types():
            if topic in self.skipped or not self.wants(topic):
                continue
            if topic in self.subscriptions_by_topic:
                self._check_late_publishers(topic)
                continue
            offered = [info.qos_profile for info in self.get_publishers_info_by_topic(topic)]
            if not offered:
                continue  # only subscribers so far: wait for a publisher to adapt the QoS to
            if len(types) != 1:
                self._skip(topic, f"published with several types ({', '.join(types)}); a bag topic has one")
                continue
            self._subscribe(topic, types[0], offered)

    def _subscribe(self, topic: str, msgtype: str, offered: list[QoSProfile]) -> None:
        try:
            cls = message_class(msgtype)
            self.writer.add_topic(topic, msgtype, qos=[rosbags_qos(q) for q in offered])
        except (LookupError, ValueError) as err:
            self._skip(topic, str(err))
            return
        qos = subscription_qos(offered, self.depth)
        self.qos_by_topic[topic] = qos
        self.subscriptions_by_topic[topic] = self.create_subscription(
            cls, topic, functools.partial(self._on_message, topic), qos, raw=True
        )
        self.get_logger().info(
            f"recording {topic} ({msgtype}, {qos.reliability.name.lower()}, {qos.durability.name.lower()})"
        )

    def _check_late_publishers(self, topic: str) -> None:
        qos = self.qos_by_topic[topic]
        if qos.reliability != ReliabilityPolicy.RELIABLE and qos.durability != DurabilityPolicy.TRANSIENT_LOCAL:
            return  # best effort + volatile matches every publisher
        offered = [info.qos_profile for info in self.get_publishers_info_by_topic(topic)]
        unmatched = [
            q
            for q in offered
            if (qos.reliability == ReliabilityPolicy.RELIABLE and q.reliability != ReliabilityPolicy.RELIABLE)
            or (qos.durability == DurabilityPolicy.TRANSIENT_LOCAL and q.durability != DurabilityPolicy.TRANSIENT_LOCAL)
        ]
        if unmatched:
            self.get_logger().warn(
                f"{topic}: a publisher that started after recording began offers "
                f"{unmatched[0].reliability.name.lower()}/{unmatched[0].durability.name.lower()} QoS, "
                f"which the {qos.reliability.name.lower()}/{qos.durability.name.lower()} subscription "
                f"does not match: its messages are not recorded",
                once=True,
            )

    def _skip(self, topic: str, why: str) -> None:
        self.skipped[topic] = why
        self.get_logger().error(f"not recording {topic}: {why}")

    # -- messages ----------------------------------------------------------------
    def _on_message(self, topic: str, data: bytes, info: Any) -> None:
        if self._closed:
            return
        stamp = 0 if self.use_sim_time else int(info.get("received_timestamp", 0) if isinstance(info, dict) else 0)
        if stamp <= 0:
            stamp = self.get_clock().now().nanoseconds
        self.writer.write_raw(topic, stamp, data)

    # -- end -------------------------------------------------------------------
    def summary(self) -> str:
        """One line per topic: messages written (and topics asked for but never heard)."""
        counts = self.writer.counts
        width = max((len(t) for t in counts), default=0)
        lines = [
            f"  {topic:<{width}}  {n:>8} messages  ({self.writer.topics[topic]})" for topic, n in sorted(counts.items())
        ]
        never = sorted(self.wanted - set(counts) - set(self.skipped))
        lines += [f"  {topic}: never published while recording" for topic in never]
        lines += [f"  {topic}: not recorded: {why}" for topic, why in sorted(self.skipped.items())]
        total = sum(counts.values())
        files = len(self.writer.files)
        head = f"{self.path}: {total} messages on {len(counts)} topics in {files} file{'s' * (files != 1)}"
        return "\n".join([head, *lines])

    def close(self) -> None:
        """Stop recording and finalise the bag; idempotent."""
        if self._closed:
            return
        self._closed = True
        for subscription in self.subscriptions_by_topic.values():
            self.destroy_subscription(subscription)
        self.writer.close()
        self.get_logger().info("closed " + self.summary())

    def destroy_node(self) -> None:
        self.close()
        super().destroy_node()


def drain(executor: SingleThreadedExecutor, node: RecorderNode, quiet_s: float = 0.05, limit_s: float = 2.0) -> None:
    """Take the messages still queued in the subscriptions before the bag is closed.

    A signal stops the spin loop, not the middleware: messages it already
    received (and, for reliable topics, acknowledged to their publishers)
    would otherwise be lost. Spins until ``quiet_s`` pass without a new
    message, for at most ``limit_s``.
    """
    deadline = time.monotonic() + limit_s
    count = -1
    while count != node.writer.message_count and time.monotonic() < deadline:
        count = node.writer.message_count
        quiet_until = time.monotonic() + quiet_s
        while time.monotonic() < quiet_until:
            executor.spin_once(timeout_sec=quiet_s / 5)


def run_recorder(
    overrides: list[Any] | None = None, args: list[str] | None = None, stop_after: float | None = None
) -> RecorderNode:
    """Record until SIGINT/SIGTERM (or ``stop_after`` seconds); the bag is closed on return.

    ``overrides``: rclpy ``Parameter`` objects (the CLI's options); ``args``:
    ROS command-line arguments (``--ros-args -p ...``). Raises ``ValueError``
    for bad parameters and ``FileExistsError`` when the output exists.
    """
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop = ShutdownRequest()
    previous = stop.install()
    node: RecorderNode | None = None
    executor = SingleThreadedExecutor()
    try:
        node = RecorderNode(parameter_overrides=overrides or [])
        executor.add_node(node)
        deadline = None if stop_after is None else time.monotonic() + stop_after
        spin_until(executor, stop, deadline)
        if stop.signal is not None:  # what bool(stop) tests, spelled out so that mypy narrows it
            node.get_logger().info(f"{signal.Signals(stop.signal).name}: closing the bag")
        if executor.context.ok():
            drain(executor, node)
        return node
    finally:
        executor.shutdown()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
        stop.restore(previous)


def main(args: list[str] | None = None) -> int:
    """``ros2 run lnn_nav recorder_node --ros-args --params-file config/recorder.yaml``."""
    try:
        run_recorder(args=args)
    except (ValueError, FileExistsError) as err:
        print(f"recorder_node: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
