"""config/*.yaml and the nodes' built-in parameter defaults are one source: `ros2 run` without a YAML
flies the same nodes as with it."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
import yaml

rclpy = pytest.importorskip("rclpy")

from rclpy.parameter import Parameter  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

#: Node name in the YAML -> module under lnn_nav/nodes whose PARAMETERS (and RANGED) tables it declares.
NODE_MODULES = {
    "controller_node": "controller",
    "expert_node": "expert_node",
    "px4_offboard_node": "px4_offboard",
    "recorder_node": "recorder_node",
    "replay_node": "replay_node",
    "sim_node": "sim_node",
}


def built_in_defaults(module: str) -> dict[str, Any]:
    node = importlib.import_module(f"lnn_nav.nodes.{module}")
    tables = {**node.PARAMETERS, **getattr(node, "RANGED", {})}
    return {name: entry[0] for name, entry in tables.items()}


def yaml_parameters():
    for path in sorted((ROOT / "config").glob("*.yaml")):
        for node_name, body in yaml.safe_load(path.read_text()).items():
            yield pytest.param(path.name, node_name, body["ros__parameters"], id=f"{path.name}:{node_name}")


def test_every_node_yaml_in_config_is_checked():
    names = {p.values[1] for p in yaml_parameters()}
    assert names == set(NODE_MODULES), "a new node YAML: add it to NODE_MODULES"


@pytest.mark.parametrize(("file", "node_name", "params"), list(yaml_parameters()))
def test_every_yaml_parameter_equals_the_nodes_built_in_default(file, node_name, params):
    defaults = built_in_defaults(NODE_MODULES[node_name])
    assert set(params) <= set(defaults), f"{file} sets parameters the node does not declare"
    for name, value in params.items():
        default = defaults[name]
        if isinstance(default, Parameter.Type):
            # Declared by type with no value ("unset" means something of its own, e.g. the recorder's
            # topics: none unless all_topics); the YAML's value must at least be of that type.
            assert default == Parameter.Type.STRING_ARRAY and isinstance(value, list), name
            assert all(isinstance(v, str) for v in value), name
            continue
        assert type(value) is type(default) and value == default, (
            f"{file}: {name} is {value!r}, the node's built-in default {default!r}"
        )


@pytest.mark.ros
def test_the_controller_node_declares_its_table_and_nothing_else():
    from rclpy.context import Context

    from lnn_nav.nodes.controller import ControllerNode

    defaults = built_in_defaults("controller")
    context = Context()
    rclpy.init(context=context)
    try:
        # autostart off: nothing loads; every other parameter keeps its built-in default.
        node = ControllerNode(context=context, parameter_overrides=[Parameter("autostart", value=False)])
        try:
            declared = {
                name: node.get_parameter(name).value
                for name in node._parameters
                if name not in ("use_sim_time", "start_type_description_service")
            }  # rclpy's own
        finally:
            node.destroy_node()
    finally:
        context.try_shutdown()
    assert declared == {**defaults, "autostart": False}
