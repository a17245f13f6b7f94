"""launch/drone.launch.py: the controller listens for CameraInfo beside the image topic it is given.

The `launch` package comes with a ROS install, not as a pip wheel: the launch file's setup function runs
here against stand-ins of launch, launch_ros and ament_index_python that record what it builds.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest

from lnn_nav.nodes.controller_logic import camera_info_topic

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("image", "info"),
    [
        ("/camera/image_raw", "/camera/camera_info"),
        ("/camera/color/image_raw", "/camera/color/camera_info"),  # realsense2_camera
        ("/oak/rgb/image_raw", "/oak/rgb/camera_info"),  # depthai
        ("/image", "/camera_info"),
        ("image_raw", "camera_info"),  # relative: in the node's namespace, like the image topic
        ("front/image_raw", "front/camera_info"),
        ("~/image", "~/camera_info"),
    ],
)
def test_camera_info_topic_sits_beside_the_image_topic_as_image_transport_puts_it(image, info):
    assert camera_info_topic(image) == info


@pytest.mark.parametrize("bad", ["", "  ", "/camera/"])
def test_camera_info_topic_refuses_what_is_not_a_topic_name(bad):
    with pytest.raises(ValueError, match="not an image topic name"):
        camera_info_topic(bad)


class _Recorded:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


def _load_drone_launch(monkeypatch, share: Path):
    """drone.launch.py with launch/launch_ros/ament_index_python stand-ins."""

    class LaunchConfiguration:
        def __init__(self, name):
            self.name = name

        def perform(self, context):
            return context[self.name]

    fakes = {
        "launch": types.ModuleType("launch"),
        "launch.actions": types.ModuleType("launch.actions"),
        "launch.substitutions": types.ModuleType("launch.substitutions"),
        "launch_ros": types.ModuleType("launch_ros"),
        "launch_ros.actions": types.ModuleType("launch_ros.actions"),
        "ament_index_python": types.ModuleType("ament_index_python"),
        "ament_index_python.packages": types.ModuleType("ament_index_python.packages"),
    }
    fakes["launch"].LaunchDescription = _Recorded
    fakes["launch.actions"].DeclareLaunchArgument = _Recorded
    fakes["launch.actions"].OpaqueFunction = _Recorded
    fakes["launch.substitutions"].LaunchConfiguration = LaunchConfiguration
    fakes["launch_ros.actions"].Node = _Recorded
    fakes["ament_index_python.packages"].get_package_share_directory = lambda name: str(share)
    for name, module in fakes.items():
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location("drone_launch_under_test", ROOT / "launch" / "drone.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _controller_parameters(module, **arguments):
    description = module.generate_launch_description()
    declared = {
        a.args[0]: a.kwargs.get("default_value") for a in description.args[0] if isinstance(a, _Recorded) and a.args
    }
    context = {name: default for name, default in declared.items() if default is not None}
    context.update(arguments)
    setup = next(a.kwargs["function"] for a in description.args[0] if "function" in a.kwargs)
    (node,) = setup(context)
    config, overrides = node.kwargs["parameters"]
    assert config.endswith("config/controller.yaml") and not node.kwargs.get("remappings")
    return declared, overrides


def test_a_drivers_image_topic_moves_the_camera_info_check_beside_it(monkeypatch, tmp_path):
    module = _load_drone_launch(monkeypatch, tmp_path)
    declared, overrides = _controller_parameters(
        module, model_path="/m.safetensors", image_topic="/camera/color/image_raw"
    )
    assert declared["camera_info_topic"] == ""
    assert overrides == {
        "model_path": "/m.safetensors",
        "device": "cpu",
        "image_topic": "/camera/color/image_raw",
        "camera_info_topic": "/camera/color/camera_info",
    }


def test_the_default_image_topic_and_an_explicit_camera_info_topic(monkeypatch, tmp_path):
    module = _load_drone_launch(monkeypatch, tmp_path)
    _, overrides = _controller_parameters(module, model_path="/m.safetensors")
    assert (overrides["image_topic"], overrides["camera_info_topic"]) == ("/camera/image_raw", "/camera/camera_info")
    _, overrides = _controller_parameters(
        module, model_path="/m.safetensors", image_topic="/cam/left/image_rect", camera_info_topic="/cam/calibration"
    )
    assert (overrides["image_topic"], overrides["camera_info_topic"]) == ("/cam/left/image_rect", "/cam/calibration")


def _drone_setup(monkeypatch, tmp_path: Path):
    """drone.launch.py over the repository's controller.yaml: its declared defaults and its setup function."""
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "controller.yaml").write_text((ROOT / "config" / "controller.yaml").read_text())
    description = _load_drone_launch(monkeypatch, tmp_path).generate_launch_description()
    declared = {a.args[0]: a.kwargs.get("default_value") for a in description.args[0] if a.args}
    setup = next(a.kwargs["function"] for a in description.args[0] if "function" in a.kwargs)
    return declared, setup


def test_native_weights_run_the_native_node_with_the_yaml_limits(monkeypatch, tmp_path):
    declared, setup = _drone_setup(monkeypatch, tmp_path)
    assert declared["native_weights"] == "" and declared["model_path"] == ""
    context = {name: default for name, default in declared.items() if default is not None}
    context.update(native_weights="/w/cfc_ncp.native.safetensors", image_topic="/cam/image_raw")
    (node,) = setup(context)
    assert node.kwargs["executable"] == "native_controller_node"
    # Under the Python node's name: config/controller.yaml's controller_node section applies to it as it is.
    assert node.kwargs["name"] == "controller_node"
    config, native = node.kwargs["parameters"]
    assert config == str(tmp_path / "config" / "controller.yaml")
    assert native == {"weights": "/w/cfc_ncp.native.safetensors", "image_topic": "/cam/image_raw"}


def test_native_true_exports_model_path_for_the_native_node(monkeypatch, tmp_path):
    from lnn_nav.kernels.native import load_weights

    declared, setup = _drone_setup(monkeypatch, tmp_path)
    assert declared["native"] == "false"
    context = {name: default for name, default in declared.items() if default is not None}
    context.update(native="true", model_path=str(ROOT / "models" / "cfc_ncp.safetensors"))
    (node,) = setup(context)
    assert (node.kwargs["executable"], node.kwargs["name"]) == ("native_controller_node", "controller_node")
    _, native = node.kwargs["parameters"]
    weights = load_weights(native["weights"])  # exported now, a file the native node flies
    assert (weights.height, weights.width, weights.camera_hfov_deg) == (48, 64, 90.0)
    context.update(model_path=str(tmp_path / "missing.safetensors"))
    with pytest.raises(RuntimeError, match="the native node cannot fly"):
        setup(context)
