"""The ROS 2 install carries messages over DDS on loopback."""

from __future__ import annotations

import os
import time
import uuid

import pytest

pytestmark = pytest.mark.ros


def test_discovery_is_confined_to_localhost():
    assert os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE") == "LOCALHOST"


def test_twist_stamped_published_by_one_node_is_received_by_another():
    import rclpy
    from geometry_msgs.msg import TwistStamped
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor

    topic = f"/lnn_nav_test_{uuid.uuid4().hex[:12]}/cmd_vel"
    context = Context()
    rclpy.init(context=context)
    try:
        talker = rclpy.create_node("lnn_nav_test_talker", context=context)
        listener = rclpy.create_node("lnn_nav_test_listener", context=context)
        received: list[TwistStamped] = []
        listener.create_subscription(TwistStamped, topic, received.append, 10)
        publisher = talker.create_publisher(TwistStamped, topic, 10)

        executor = SingleThreadedExecutor(context=context)
        executor.add_node(talker)
        executor.add_node(listener)

        msg = TwistStamped()
        msg.header.frame_id = "base_link"
        msg.header.stamp.sec = 12
        msg.header.stamp.nanosec = 345
        msg.twist.linear.x = 1.5
        msg.twist.linear.y = -0.25
        msg.twist.linear.z = 0.125
        msg.twist.angular.z = 0.75

        deadline = time.monotonic() + 10.0
        next_publish = 0.0
        while not received and time.monotonic() < deadline:
            # Re-publish until discovery has matched the two endpoints;
            # a message sent before matching is dropped (volatile QoS).
            if time.monotonic() >= next_publish:
                publisher.publish(msg)
                next_publish = time.monotonic() + 0.1
            executor.spin_once(timeout_sec=0.05)

        assert received, f"no TwistStamped arrived on {topic} within 10 s"
        got = received[0]
        assert got.header.frame_id == "base_link"
        assert (got.header.stamp.sec, got.header.stamp.nanosec) == (12, 345)
        assert (got.twist.linear.x, got.twist.linear.y, got.twist.linear.z) == (1.5, -0.25, 0.125)
        assert got.twist.angular.z == 0.75
        executor.shutdown()
        talker.destroy_node()
        listener.destroy_node()
    finally:
        context.try_shutdown()
