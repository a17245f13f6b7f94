"""Whether ROS 2 graph flights (:func:`lnn_nav.nodes.fly.fly_over_ros`) can run here.

Here, under ``nodes``, because it probes ``rclpy``: callers outside this
package (``lnn-nav eval --ros-episodes``) ask before hours of in-process
flights rather than import ``rclpy`` themselves.
"""

from __future__ import annotations


def graph_unavailable() -> str | None:
    """Why graph flights cannot run here (no rclpy, no node configs), or None when they can."""
    from lnn_nav.nodes.fly import SetupError, config_path

    try:
        import rclpy  # noqa: F401
    except ImportError as err:
        return f"rclpy cannot be imported ({err}); install ROS 2 (the ros-jazzy-* wheels or apt)"
    try:
        config_path("sim.yaml")
        config_path("expert.yaml")
    except SetupError as err:
        return str(err)
    return None
