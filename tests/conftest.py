"""Test-session setup shared by every test module."""

from __future__ import annotations

import os
import random
import time

# Set before any test imports rclpy: the DDS participants that tests create
# must not hear other test runs, CI jobs or robots on the same machine or
# network. Discovery stays on loopback, and each run takes its own random
# domain (1..101 is valid for the default port mapping on Linux) unless the
# caller pinned one.
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid() ^ time.time_ns()).randint(1, 101)))
