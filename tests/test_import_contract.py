"""The package's one direction of dependency (docs/development.md, "Layout"), read from the source.

Every module under ``lnn_nav/`` is parsed (imports inside functions count:
a lazy import is still a dependency, it only moves the cost), mapped to its
package, and each import of another package is checked against
:data:`SITS_ON`. ROS client code stays under ``lnn_nav/nodes/``, so training
and simulation run where ROS is absent. Light modules are imported in fresh
interpreters to show that they do not pull in torch or gymnasium.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "lnn_nav"

#: Package -> the packages it sits on directly; it may import those and, transitively, what they sit on.
SITS_ON: dict[str, set[str]] = {
    "kernels": set(),
    "models": {"kernels"},
    "sim": set(),
    # Datasets prepare frames and goals as the policy takes them (models.preprocess: numpy + OpenCV).
    "data": {"models"},
    # Flies the simulator with the expert or a checkpoint and records the episodes as bags.
    "rollouts": {"sim", "models", "data"},
    # Adapt ROS messages to the models, the simulator and the bags.
    "nodes": {"models", "sim", "data"},
    "train": {"rollouts"},
    # Graph runs (lnn-nav eval --ros-episodes, the demo) start the nodes; nodes never import eval.
    "eval": {"rollouts", "nodes"},
    "deploy": {"rollouts"},
    # The `lnn-nav` command hands off to every package; nothing imports it.
    "cli": {"kernels", "models", "sim", "data", "rollouts", "nodes", "train", "eval", "deploy"},
    # lnn_nav/__init__.py: the version and the lazy-export helper of the package __init__s; it imports no
    # package, and every package may use it.
    "lnn_nav": set(),
}

#: Imports against the direction above, each with the reason it is tolerated: (importer, imported module).
EXCEPTIONS: dict[tuple[str, str], str] = {
    # The fused kernels pack a CfC cell's weights into their layout; the cell class names the type of
    # what is packed. Only under TYPE_CHECKING (a runtime import would be a cycle: models.cfc imports
    # kernels), which test_exceptions_are_type_only holds.
    ("lnn_nav.kernels.layout", "lnn_nav.models.cfc"): "type annotation of the packed cell",
}

#: Top-level modules of ``lnn_nav/`` (not packages); any other needs a package.
TOP_LEVEL_MODULES = {"__init__", "cli", "geometry", "argtypes", "share", "cbuild"}
#: Top-level modules that belong to the root package: they import no package, and every package may use them.
ROOT_MODULES = {"geometry", "argtypes", "share", "cbuild"}


def _closure(package: str) -> set[str]:
    allowed, todo = set(), list(SITS_ON[package])
    while todo:
        below = todo.pop()
        if below not in allowed:
            allowed.add(below)
            todo.extend(SITS_ON[below])
    return allowed


ALLOWED = {package: _closure(package) for package in SITS_ON}


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module name
    module: str  # dotted name of what is imported
    line: int
    type_only: bool  # under `if TYPE_CHECKING:`


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path) -> list[Import]:
    name = _module_name(path)
    # A relative import resolves against the package: the module itself for an __init__.
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: list[Import] = []

    def visit(node: ast.AST, type_only: bool) -> None:
        if isinstance(node, ast.Import):
            found.extend(Import(name, alias.name, node.lineno, type_only) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module == "lnn_nav" or (module.startswith("lnn_nav.") and module.count(".") == 1):
                # `from lnn_nav import models`, `from lnn_nav.data import messages`: the names may be modules.
                found.extend(Import(name, f"{module}.{alias.name}", node.lineno, type_only) for alias in node.names)
            else:
                found.append(Import(name, module, node.lineno, type_only))
        for child in ast.iter_child_nodes(node):
            if isinstance(node, ast.If) and _is_type_checking(node.test) and child in node.body:
                visit(child, True)
            else:
                visit(child, type_only)

    visit(ast.parse(path.read_text(), filename=str(path)), False)
    return found


#: Names lnn_nav/__init__.py itself defines (``from lnn_nav import lazy_exports``): the root package.
ROOT_NAMES = {
    node.name for node in ast.parse((PACKAGE / "__init__.py").read_text()).body if isinstance(node, ast.FunctionDef)
}


def _package_of(module: str) -> str:
    """The package of a dotted ``lnn_nav`` module name: ``lnn_nav.models.cfc`` -> ``models``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] not in ROOT_NAMES | ROOT_MODULES else "lnn_nav"


MODULES = sorted(PACKAGE.rglob("*.py"))
IMPORTS = [imp for path in MODULES for imp in _imports(path)]


def test_every_module_has_a_package_of_the_table() -> None:
    top_level = {p.stem for p in PACKAGE.glob("*.py")}
    assert top_level == TOP_LEVEL_MODULES, f"modules without a package: {sorted(top_level - TOP_LEVEL_MODULES)}"
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert packages == set(SITS_ON) - {"cli", "lnn_nav"}
    assert len(MODULES) > 50 and len(IMPORTS) > 300  # the parser found the code


def test_every_package_imports_only_what_it_sits_on() -> None:
    wrong = []
    for imp in IMPORTS:
        if not imp.module.startswith("lnn_nav"):
            continue
        source, target = _package_of(imp.importer), _package_of(imp.module)
        if target == "lnn_nav" and source != "lnn_nav":
            continue  # the root package: the version and lazy_exports, importing nothing
        if source == target or target in ALLOWED[source] or (imp.importer, imp.module) in EXCEPTIONS:
            continue
        wrong.append(f"{imp.importer}:{imp.line} imports {imp.module} ({source} -> {target})")
    assert not wrong, "imports against the direction of dependency:\n" + "\n".join(wrong)


def test_nothing_imports_the_command_line_entry_point() -> None:
    importers = [f"{imp.importer}:{imp.line}" for imp in IMPORTS if imp.module == "lnn_nav.cli"]
    assert not importers


def test_the_table_has_no_cycle() -> None:
    assert all(package not in ALLOWED[package] for package in SITS_ON)


def test_exceptions_are_type_only_and_still_needed() -> None:
    for (importer, module), why in EXCEPTIONS.items():
        uses = [imp for imp in IMPORTS if (imp.importer, imp.module) == (importer, module)]
        assert uses, f"{importer} no longer imports {module}: drop the exception ({why})"
        assert all(imp.type_only for imp in uses), f"{importer} imports {module} at run time ({why})"


def _is_ros(module: str) -> bool:
    top = module.split(".")[0]
    return (
        top in ("rclpy", "launch", "launch_ros", "std_srvs")
        or top.startswith("rosidl")
        or top.endswith(("_msgs", "_interfaces"))
    )


def test_ros_client_code_is_imported_only_under_nodes() -> None:
    outside = [
        f"{imp.importer}:{imp.line} imports {imp.module}"
        for imp in IMPORTS
        if _is_ros(imp.module) and _package_of(imp.importer) != "nodes"
    ]
    assert not outside, "rclpy and ROS message packages belong under lnn_nav/nodes/:\n" + "\n".join(outside)
    assert any(imp.module.startswith("rclpy") for imp in IMPORTS)  # the check looks at the right names


HEAVY = ("torch", "gymnasium", "warp", "rclpy")

#: Modules that import without any of HEAVY: every package (its __init__ is lazy) and the light modules.
LIGHT_MODULES = [
    "lnn_nav",
    "lnn_nav.kernels",
    "lnn_nav.models",
    "lnn_nav.sim",
    "lnn_nav.data",
    "lnn_nav.rollouts",
    "lnn_nav.nodes",
    "lnn_nav.train",
    "lnn_nav.eval",
    "lnn_nav.deploy",
    "lnn_nav.sim.presets",
    "lnn_nav.sim.kinds",
    "lnn_nav.sim.world",
    "lnn_nav.data.formats",
    "lnn_nav.argtypes",
    "lnn_nav.models.preprocess",
    "lnn_nav.models.errors",
    "lnn_nav.data.errors",
    "lnn_nav.rollouts.options",
    "lnn_nav.cli",
]


def _loaded_after(code: str) -> list[str]:
    probe = f"import sys\n{code}\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert run.returncode == 0, run.stderr
    return run.stdout.split()


@pytest.mark.parametrize("module", LIGHT_MODULES)
def test_light_modules_import_without_torch_gymnasium_warp_or_rclpy(module: str) -> None:
    assert _loaded_after(f"import {module}") == []


def test_the_full_command_line_parser_builds_without_torch_gymnasium_warp_or_rclpy() -> None:
    # `lnn-nav --help` imports every subcommand's module: their heavy imports wait for `run`.
    assert _loaded_after("from lnn_nav.cli import build_parser\nbuild_parser()") == []


@pytest.mark.parametrize("code", ["import gymnasium, lnn_nav.sim", "import lnn_nav.sim.env, gymnasium"])
def test_the_gymnasium_environments_are_registered_for_their_users(code: str) -> None:
    probe = f"{code}\nprint(all(i in gymnasium.registry for i in lnn_nav.sim.ENV_IDS.values()))"
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split()[-1] == "True"


LAZY_PACKAGES = ["lnn_nav.kernels", "lnn_nav.models", "lnn_nav.data"]


def _type_checking_names(package: str) -> dict[str, str]:
    """Name -> defining module of the ``if TYPE_CHECKING:`` imports in ``package``'s __init__."""
    init = PACKAGE.joinpath(*package.split(".")[1:], "__init__.py")
    names = {}
    for imp_node in ast.walk(ast.parse(init.read_text())):
        if isinstance(imp_node, ast.If) and _is_type_checking(imp_node.test):
            for node in imp_node.body:
                assert isinstance(node, ast.ImportFrom) and node.level == 1 and node.module
                names.update({alias.name: node.module for alias in node.names})
    return names


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_lazy_names_are_what_type_checkers_see_and_all_resolve(package: str) -> None:
    module = importlib.import_module(package)
    exports = module._EXPORTS
    assert set(module.__all__) == set(exports)
    assert _type_checking_names(package) == exports
    for name, defining in exports.items():
        value = getattr(module, name)
        assert value is getattr(importlib.import_module(f"{package}.{defining}"), name)
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        module.not_a_name  # noqa: B018
