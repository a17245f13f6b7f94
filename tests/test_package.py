"""The package metadata is what colcon/ament_python and pip expect, and `lnn-nav` runs."""

from __future__ import annotations

import configparser
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def package_xml() -> ET.Element:
    return ET.parse(REPO / "package.xml").getroot()


def test_package_xml_is_format_3_named_lnn_nav(package_xml):
    assert package_xml.tag == "package"
    assert package_xml.get("format") == "3"
    assert package_xml.findtext("name") == "lnn_nav"
    assert package_xml.findtext("license") == "Apache-2.0"


def test_package_xml_builds_as_ament_python(package_xml):
    assert package_xml.findtext("export/build_type") == "ament_python"


@pytest.mark.parametrize(
    "dependency",
    [
        "rclpy",
        "sensor_msgs",
        "geometry_msgs",
        "nav_msgs",
        "std_msgs",
        "std_srvs",
        "diagnostic_msgs",
    ],
)
def test_package_xml_declares_ros_runtime_dependency(package_xml, dependency):
    exec_depends = {e.text for e in package_xml.findall("exec_depend")}
    assert dependency in exec_depends


def test_ament_resource_marker_exists():
    assert (REPO / "resource" / "lnn_nav").is_file()


def test_setup_cfg_installs_scripts_where_ros2_run_looks():
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(REPO / "setup.cfg")
    assert cfg["develop"]["script_dir"] == "$base/lib/lnn_nav"
    assert cfg["install"]["install_scripts"] == "$base/lib/lnn_nav"


def test_setup_py_version_matches_package_xml(package_xml):
    result = _run("setup.py", "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == package_xml.findtext("version") == "0.1.0"


def test_setup_py_installs_package_xml_and_ament_marker():
    code = (
        "import runpy, setuptools, json\n"
        "captured = {}\n"
        "setuptools.setup = lambda **kw: captured.update(kw)\n"
        "runpy.run_path('setup.py', run_name='__main__')\n"
        "print(json.dumps(captured['data_files']))\n"
    )
    result = _run("-c", code)
    assert result.returncode == 0, result.stderr
    data_files = {dest: files for dest, files in __import__("json").loads(result.stdout)}
    assert data_files["share/ament_index/resource_index/packages"] == ["resource/lnn_nav"]
    assert "package.xml" in data_files["share/lnn_nav"]


def test_cli_help_describes_package_and_every_command():
    from lnn_nav.cli import MODULE_COMMANDS

    result = _run("-m", "lnn_nav.cli", "--help")
    assert result.returncode == 0, result.stderr
    assert "liquid neural network" in result.stdout.lower()
    assert "demo" in result.stdout and "info" in result.stdout
    for name, _ in MODULE_COMMANDS:
        assert name in result.stdout


def test_every_command_is_a_module_with_the_four_names_and_its_help_parses(capsys):
    # One pattern for every subcommand: HELP, DESCRIPTION, add_arguments(parser), run(args) -> int.
    import importlib

    from lnn_nav.cli import MODULE_COMMANDS, build_parser

    names = [name for name, _ in MODULE_COMMANDS]
    assert len(set(names)) == len(names)
    assert {"demo", "sim", "fly", "export-world", "info", "train", "eval"} <= set(names)
    for name, module_name in MODULE_COMMANDS:
        module = importlib.import_module(module_name)
        assert isinstance(module.HELP, str) and module.HELP and "\n" not in module.HELP, name
        assert isinstance(module.DESCRIPTION, str) and module.DESCRIPTION, name
        assert callable(module.add_arguments) and callable(module.run), name
        with pytest.raises(SystemExit) as exc:
            build_parser(only=name).parse_args([name, "--help"])
        assert exc.value.code == 0, name
        assert capsys.readouterr().out.startswith("usage: lnn-nav " + name)


def test_cli_module_commands_have_help():
    from lnn_nav.cli import MODULE_COMMANDS

    for name, _ in MODULE_COMMANDS:
        result = _run("-m", "lnn_nav.cli", name, "--help")
        assert result.returncode == 0, result.stderr
        assert "usage: lnn-nav " + name in result.stdout


def test_cli_imports_only_the_command_it_runs():
    # `lnn-nav train` on a GPU machine without the simulator's packages
    # (gymnasium, Warp) failed before anything ran: every command's module was
    # imported to build the parser. Now only the one named is.
    code = (
        "import sys\n"
        "from lnn_nav.cli import main\n"
        "try:\n"
        "    main(['train', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('LOADED', ' '.join(m for m in ('lnn_nav.sim', 'gymnasium', 'warp', 'lnn_nav.eval', 'rclpy')"
        " if m in sys.modules))\n"
    )
    result = _run("-c", code)
    assert result.returncode == 0, result.stderr
    assert "usage: lnn-nav train" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "LOADED"


def test_cli_info_reports_versions_and_optional_parts():
    result = _run("-m", "lnn_nav.cli", "info")
    assert result.returncode == 0, result.stderr
    for key in ("lnn_nav", "torch", "rclpy", "warp", "share dir"):
        assert key in result.stdout


def test_cli_info_describes_checkpoints_and_their_camera(tmp_path):
    from lnn_nav.models import EncoderConfig, LiquidPolicy, PolicyConfig, save_policy

    wide = save_policy(
        LiquidPolicy(
            PolicyConfig(
                encoder=EncoderConfig(height=24, width=32),
                core="lstm",
                core_options={"units": 8},
                use_goal=True,
                camera_hfov_deg=120.0,
            )
        ),
        tmp_path / "wide.safetensors",
        {"epoch": 3, "val_loss": 0.5, "trained_on": ["ds120"]},
    )
    # A checkpoint trained before cameras were recorded (the shipped ones until 2026-11-30).
    old = save_policy(
        LiquidPolicy(
            PolicyConfig(
                encoder=EncoderConfig(height=24, width=32), core="lstm", core_options={"units": 8}, use_goal=True
            )
        ),
        tmp_path / "old.safetensors",
    )
    result = _run("-m", "lnn_nav.cli", "info", str(wide), str(old), str(REPO / "models" / "cfc_ncp.safetensors"))
    assert result.returncode == 0, result.stderr
    wide_part, old_part, shipped_part = result.stdout.split("checkpoint ")[1:]
    assert "lstm (8 units)" in wide_part and "32x24 camera + goal" in wide_part
    assert (
        "120.0 deg horizontal field of view" in wide_part and "epoch 3; validation loss 0.5000; on ds120" in wide_part
    )
    assert "not recorded (flown with the simulator's 90 deg)" in old_part
    assert "cfc-ncp (48 units)" in shipped_part and "64x48 camera + goal" in shipped_part
    (tmp_path / "bad.safetensors").write_bytes(b"not a checkpoint")
    bad = _run("-m", "lnn_nav.cli", "info", str(tmp_path / "bad.safetensors"))
    assert bad.returncode == 2 and "bad.safetensors" in bad.stderr


def test_the_package_installs_checkpoints_but_not_their_evaluation_results() -> None:
    # A robot needs models/*.safetensors in share/, not the benchmark JSON beside them. setup.py's own
    # definitions are executed without its setup() call.
    import ast

    root = Path(__file__).resolve().parents[1]
    tree = ast.parse((root / "setup.py").read_text())
    keep = [n for n in tree.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Call))]
    namespace: dict = {"__file__": str(root / "setup.py")}
    exec(compile(ast.Module(body=keep, type_ignores=[]), "setup.py", "exec"), namespace)
    installed = {f for _, files in namespace["DATA_FILES"] for f in files}
    assert "models/cfc_ncp.safetensors" in installed and "launch/drone.launch.py" in installed
    assert not [f for f in installed if f.startswith("models/eval")]


# ----------------------------------------------------------------------------- runtime dependencies

#: Import name -> the package.xml <exec_depend> (rosdep key or ROS package) that provides it.
IMPORT_KEYS = {
    "numpy": "python3-numpy",
    "cv2": "python3-opencv",
    "yaml": "python3-yaml",
    "torch": "python3-pytorch-pip",
    "scipy": "python3-scipy",
    "tqdm": "python3-tqdm",
    "rosbags": "python3-rosbags-pip",
    "gymnasium": "python3-gymnasium-pip",
    "launch": "launch",
    "launch_ros": "launch_ros",
    "ament_index_python": "ament_index_python",
    **{
        ros: ros
        for ros in (
            "rclpy",
            "rcl_interfaces",
            "builtin_interfaces",
            "sensor_msgs",
            "geometry_msgs",
            "nav_msgs",
            "std_msgs",
            "std_srvs",
            "diagnostic_msgs",
            "rosgraph_msgs",
            "tf2_msgs",
        )
    },
}
#: Import name -> pip package, for those rosdep has no key for: package.xml names them in a comment.
PIP_ONLY = {"safetensors": "safetensors", "warp": "warp-lang"}
#: Imported, but not a dependency to declare, and why.
NOT_DECLARED = {
    "px4_msgs": "built from source in the colcon workspace for the vehicle's PX4 version; px4_offboard_node "
    "explains and exits without it",
    "ncps": "only lnn_nav.models.from_ncps (importing ncps-trained models), imported lazily, never by a node",
    "backports": "backports.zstd, a dependency of rosbags (Python < 3.14)",
    "compression": "compression.zstd, the standard library's from Python 3.14",
}


def _imported_modules(path: Path, package: str):
    import ast

    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def _lnn_nav_file(name: str):
    path = REPO.joinpath(*name.split("."))
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py"), name.rpartition(".")[0]
    if (path / "__init__.py").is_file():
        return path / "__init__.py", name
    return None


def third_party_imports_of_the_nodes_and_launch_files() -> dict:
    """Top-level third-party module -> a file importing it: every import (lazy ones too) of
    lnn_nav/nodes/ and launch/, following imports of lnn_nav's own modules."""
    found: dict = {}
    todo = [(p, "lnn_nav.nodes") for p in sorted((REPO / "lnn_nav" / "nodes").glob("*.py"))]
    todo += [(p, "launch") for p in sorted((REPO / "launch").glob("*.py"))]
    seen = set()
    while todo:
        path, package = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imported_modules(path, package):
            top = name.partition(".")[0]
            if top == "lnn_nav":
                if (target := _lnn_nav_file(name)) is not None:
                    todo.append(target)
            elif top not in sys.stdlib_module_names and top != "__future__":
                found.setdefault(top, path.relative_to(REPO).as_posix())
    return found


def test_every_third_party_module_the_nodes_and_launch_files_import_is_in_package_xml(package_xml):
    import re

    declared = {e.text.strip() for e in package_xml.iter("exec_depend")}
    comments = "\n".join(re.findall(r"<!--(.*?)-->", (REPO / "package.xml").read_text(), re.S))
    imports = third_party_imports_of_the_nodes_and_launch_files()
    assert {"safetensors", "rosbags", "gymnasium", "warp", "launch_ros"} <= set(imports)  # the walk reaches them
    unknown = {m: f for m, f in imports.items() if m not in {**IMPORT_KEYS, **PIP_ONLY, **NOT_DECLARED}}
    assert not unknown, f"imports with no package.xml key mapped here (add to IMPORT_KEYS and package.xml): {unknown}"
    missing = {m: IMPORT_KEYS[m] for m in imports if m in IMPORT_KEYS and IMPORT_KEYS[m] not in declared}
    assert not missing, f"package.xml lacks <exec_depend> for (import: key): {missing}"
    for module, pip_name in PIP_ONLY.items():
        if module in imports:
            assert f"pip: {pip_name} " in comments, f"package.xml does not say {pip_name} comes from pip"
    setup = (REPO / "setup.py").read_text()
    for pip_name in PIP_ONLY.values():
        assert f'"{pip_name}"' in setup, f"setup.py does not install {pip_name}"


def _toml_tables(path: Path) -> set[str]:
    """The table headers of a TOML file (``[a.b]`` and ``[[a.b]]``), without a TOML parser (3.10 has none)."""
    tables = set()
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            tables.add(line.strip("[]").strip())
    return tables


def test_pyproject_configures_the_linters_but_not_the_build():
    tables = _toml_tables(REPO / "pyproject.toml")
    assert {"tool.ruff", "tool.ruff.lint", "tool.ruff.format", "tool.mypy"} <= tables
    # setup.py/setup.cfg stay the build (pip and colcon's ament_python): no PEP 517/621 tables.
    assert "build-system" not in tables and "project" not in tables


def test_make_test_runs_the_lint_checks_with_pinned_tools():
    makefile = (REPO / "Makefile").read_text()
    test_rule = next(line for line in makefile.splitlines() if line.startswith("test:"))
    assert "lint" in test_rule.split(":", 1)[1].split()
    lint_recipe = makefile.split("\nlint:", 1)[1].split("\n\n", 1)[0]
    for command in ("ruff check", "ruff format --check", "mypy"):
        assert f"$(VENV)/bin/{command}" in lint_recipe
    pins = (REPO / "requirements" / "test.txt").read_text().split()
    assert any(p.startswith("ruff==") for p in pins) and any(p.startswith("mypy==") for p in pins)
