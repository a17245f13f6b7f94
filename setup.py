"""Build script for lnn_nav: installs as an ament_python package or with pip."""

from __future__ import annotations

import os

from setuptools import find_packages, setup

PACKAGE_NAME = "lnn_nav"

# Top-level folders installed under share/lnn_nav/ with their layout kept
# (launch files, parameter YAML, Gazebo/PX4 assets, shipped checkpoints).
SHARE_DIRS = ("launch", "config", "sim", "models")
# Evaluation results stay in the source tree: a robot needs the checkpoints, not their benchmark files.
SHARE_EXCLUDED = (os.path.join("models", "eval"),)


def share_data_files(
    top_dirs: tuple[str, ...] = SHARE_DIRS, root: str | None = None, excluded: tuple[str, ...] = SHARE_EXCLUDED
) -> list[tuple[str, list[str]]]:
    """Map every file under ``top_dirs`` (but ``excluded`` folders) to share/lnn_nav/<relative dir>.

    A folder that does not exist (yet) is skipped, so the package builds
    before launch files, configs or checkpoints land.
    """
    root = root or os.path.dirname(os.path.abspath(__file__))
    data_files: list[tuple[str, list[str]]] = []
    for top in top_dirs:
        top_path = os.path.join(root, top)
        if not os.path.isdir(top_path):
            continue
        for dirpath, dirnames, filenames in os.walk(top_path):
            dirnames[:] = sorted(
                d
                for d in dirnames
                if d != "__pycache__" and os.path.relpath(os.path.join(dirpath, d), root) not in excluded
            )
            files = sorted(
                os.path.relpath(os.path.join(dirpath, name), root) for name in filenames if not name.endswith(".pyc")
            )
            if files:
                rel_dir = os.path.relpath(dirpath, root)
                data_files.append((os.path.join("share", PACKAGE_NAME, rel_dir), files))
    return data_files


DATA_FILES = [
    ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE_NAME}"]),
    (f"share/{PACKAGE_NAME}", ["package.xml"]),
    *share_data_files(),
]

setup(
    name=PACKAGE_NAME,
    version="0.1.0",
    description="Liquid neural network (CfC/NCP) drone navigation for ROS 2",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(exclude=["tests*", "benchmarks*"]),
    # Fused-kernel sources, compiled on first use (lnn_nav/kernels/build.py).
    package_data={
        "lnn_nav.kernels": ["csrc/*.h", "csrc/*.cpp", "csrc/*.cu"],
        "lnn_nav.sim": ["csrc/*.cpp"],
        "lnn_nav.nodes": ["csrc/*.cpp", "csrc/*.h"],
    },
    data_files=DATA_FILES,
    # rclpy and the message packages are not pip requirements: on a robot
    # they come from apt (rosdep, see package.xml); elsewhere from the
    # ros-jazzy-* wheels pinned in requirements/base.txt.
    install_requires=[
        "numpy",
        "torch>=2.1",
        "pyyaml",
        "safetensors",
        "opencv-python-headless",
        "tqdm",
    ],
    extras_require={
        "sim": ["gymnasium", "warp-lang", "scipy"],
        "bags": ["rosbags"],
        "test": ["pytest", "hypothesis", "ncps"],
        "bench": ["ncps"],
        "plot": ["matplotlib"],
    },
    entry_points={
        "console_scripts": [
            "lnn-nav = lnn_nav.cli:main",
            # Node executables, for `ros2 run lnn_nav <node>`.
            "controller_node = lnn_nav.nodes.controller:main",
            # The controller without Python in the loop (built on first run): lnn_nav/nodes/native.py.
            "native_controller_node = lnn_nav.nodes.native:main",
            "sim_node = lnn_nav.nodes.sim_node:main",
            "expert_node = lnn_nav.nodes.expert_node:main",
            "px4_offboard_node = lnn_nav.nodes.px4_offboard:main",
            "px4_world_node = lnn_nav.nodes.px4_world_node:main",
            "recorder_node = lnn_nav.nodes.recorder_node:main",
            "replay_node = lnn_nav.nodes.replay_node:main",
        ],
    },
)
