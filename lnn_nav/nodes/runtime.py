"""Running a plain (non-lifecycle) node as a process: init, spin, clean shutdown."""

from __future__ import annotations

from typing import Callable, List, Optional

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node


def run_node(factory: Callable[[], Node], args: Optional[List[str]] = None) -> None:
    """``rclpy.init``, build the node, spin until Ctrl-C or external shutdown, then tear down."""
    rclpy.init(args=args)
    node = None
    try:
        node = factory()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
