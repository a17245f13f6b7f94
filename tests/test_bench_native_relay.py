"""benchmarks/native_relay.c: the trivial node in C on rcl builds against the ROS wheels and answers frames
over a real graph, each command carrying its frame's stamp."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy")

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "node_latency.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_node_latency", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(shutil.which(os.environ.get("CC", "cc")) is None, reason="no C compiler")
def test_the_c_node_answers_each_frame_with_its_stamp(tmp_path: Path) -> None:
    import numpy as np
    from geometry_msgs.msg import TwistStamped
    from sensor_msgs.msg import Image

    from lnn_nav.nodes.controller import SENSOR_QOS
    from lnn_nav.nodes.conversions import rgb_to_image_msg

    bench = _bench()
    cmd, env = bench.build_native_relay(tmp_path)
    image_topic, cmd_topic = "/native_relay_test/image", "/native_relay_test/cmd"
    log = (tmp_path / "relay.log").open("w")  # a file, not a pipe: DDS logging cannot block it
    relay = subprocess.Popen([*cmd, image_topic, cmd_topic], env=env, stderr=log, text=True)
    context = rclpy.context.Context()
    node = None
    try:
        rclpy.init(context=context)
        node = rclpy.create_node("native_relay_test", context=context)
        got: list[TwistStamped] = []
        node.create_subscription(TwistStamped, cmd_topic, got.append, 10)
        pub = node.create_publisher(Image, image_topic, SENSOR_QOS)
        executor = rclpy.executors.SingleThreadedExecutor(context=context)
        executor.add_node(node)
        deadline = time.monotonic() + 30
        while (
            pub.get_subscription_count() == 0 or node.count_publishers(cmd_topic) == 0
        ) and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
            assert relay.poll() is None, (tmp_path / "relay.log").read_text()
        frame = np.zeros((12, 16, 3), np.uint8)
        # Best effort: frames before both ends have matched are lost. Warm up until one is answered.
        until = time.monotonic() + 30
        while not got and time.monotonic() < until:
            pub.publish(rgb_to_image_msg(frame, node.get_clock().now().to_msg(), "warm-up"))
            for _ in range(5):
                executor.spin_once(timeout_sec=0.02)
        assert got, "the C node answered no frame"
        until = time.monotonic() + 0.5
        while time.monotonic() < until:
            executor.spin_once(timeout_sec=0.02)
        got.clear()
        stamps = []
        for k in range(5):
            msg = rgb_to_image_msg(frame, node.get_clock().now().to_msg(), f"camera_{k}")
            stamps.append((msg.header.stamp.sec, msg.header.stamp.nanosec))
            pub.publish(msg)
            until = time.monotonic() + 0.2
            while time.monotonic() < until:
                executor.spin_once(timeout_sec=0.02)
        until = time.monotonic() + 5
        while len([m for m in got if m.header.frame_id != "warm-up"]) < 5 and time.monotonic() < until:
            executor.spin_once(timeout_sec=0.05)
        got = [m for m in got if m.header.frame_id != "warm-up"]  # a late warm-up answer is not one of these
        assert [(m.header.stamp.sec, m.header.stamp.nanosec) for m in got] == stamps
        assert [m.header.frame_id for m in got] == [f"camera_{k}" for k in range(5)]
        assert all(m.twist.linear.x == 1.0 for m in got)
        executor.shutdown()
    finally:
        if node is not None:
            node.destroy_node()
        context.try_shutdown()
        relay.terminate()
        try:
            relay.wait(timeout=10)
        except subprocess.TimeoutExpired:
            relay.kill()
            relay.wait()
        log.close()
    assert relay.returncode == 0, (tmp_path / "relay.log").read_text()  # SIGTERM ends its loop cleanly
