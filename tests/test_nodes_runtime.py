"""A node stopped by Ctrl-C while a callback publishes exits cleanly; an error while running does not."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("rclpy")
pytestmark = [pytest.mark.ros]

# A timer that publishes; `shutdown_inside` shuts the context down in the callback just before the publish,
# as rclpy's SIGINT handler can (the publish then raises "publisher's context is invalid").
SCRIPT = textwrap.dedent(
    """
    import sys
    import rclpy
    from std_msgs.msg import String
    from lnn_nav.nodes.runtime import spin_until_shutdown

    mode = sys.argv[1]
    rclpy.init()
    node = rclpy.create_node("runtime_probe")
    pub = node.create_publisher(String, "/runtime_probe", 1)

    def tick():
        if mode == "shutdown_inside":
            rclpy.shutdown()
        else:
            raise ValueError("a real error in a callback")
        pub.publish(String(data="x"))

    node.create_timer(0.01, tick)
    spin_until_shutdown(node)
    print("clean stop")
    """
)


def run(mode: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, timeout=60)


def test_a_publish_after_the_context_shut_down_is_a_clean_stop():
    result = run("shutdown_inside")
    assert result.returncode == 0 and "clean stop" in result.stdout, result.stderr


def test_an_error_in_a_callback_while_running_still_fails():
    result = run("error")
    assert result.returncode != 0 and "a real error in a callback" in result.stderr


def test_make_executor_gives_the_named_executor_and_refuses_unknown_names():
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor

    from lnn_nav.nodes.runtime import make_executor

    context = Context()
    rclpy.init(context=context)
    try:
        single, line = make_executor("single_threaded", context=context)
        assert isinstance(single, SingleThreadedExecutor) and line == "executor: single_threaded"
        events, line = make_executor("events", context=context)
        # rclpy.experimental.EventsExecutor is a C++ object, not an rclpy.executors.Executor subclass.
        assert type(events).__name__ == "EventsExecutor" and line == "executor: events"
        assert events.context is context
        for executor in (single, events):
            executor.shutdown()
        with pytest.raises(ValueError, match="executor 'multi' is not one of events, single_threaded"):
            make_executor("multi", context=context)
    finally:
        context.try_shutdown()
