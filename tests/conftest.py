"""Test-session setup shared by every test module."""

from __future__ import annotations

import os
import random
import sys
import time

# Set before any test imports rclpy: the DDS participants that tests create
# must not hear other test runs, CI jobs or robots on the same machine or
# network. Discovery stays on loopback, and each run takes its own random
# domain (1..101 is valid for the default port mapping on Linux) unless the
# caller pinned one.
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid() ^ time.time_ns()).randint(1, 101)))

# `ros2 launch/run` and launch files find lnn_nav through the ament index. A pip install into this
# interpreter's prefix is laid out for it by scripts/ament_layout.py (`make install`); put that prefix
# on AMENT_PREFIX_PATH, as sourcing a colcon workspace does, unless the caller already has.
_prefix = os.path.realpath(sys.prefix)
if os.path.exists(os.path.join(_prefix, "share", "ament_index", "resource_index", "packages", "lnn_nav")):
    _paths = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    if _prefix not in (os.path.realpath(p) for p in _paths):
        os.environ["AMENT_PREFIX_PATH"] = os.pathsep.join([_prefix, *_paths])
