"""The native controller node (``csrc/native_controller.cpp``): built here against the ROS wheels, then run.

``python -m lnn_nav.nodes.native --weights W.native.safetensors [node options] [--ros-args ...]`` builds
the node once (into ``~/.cache/lnn_nav/native_node``, named by a hash of its sources, flags and
compiler) and runs it in place of this process. The weights come from
``lnn-nav export CKPT --format native``. What the node does and does not do (yet) is in its source's
header comment and in docs/nodes.md, "The native controller node".

The ``ros-jazzy-*`` wheels carry rcl's headers and libraries; they are auditwheel-repaired (their own
dependencies in ``*.libs`` folders beside them) and some link the Python message bindings, so the
program links the shared ``libpython`` and runs with the environment's ``lib`` and those ``*.libs``
folders on ``LD_LIBRARY_PATH`` (:func:`ros_link_environment`). Without the wheels, a sourced ROS install
(``AMENT_PREFIX_PATH``: /opt/ros/jazzy on a Jetson) is used: its include and lib folders, no libpython.
Only the wheels' build was exercised here.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lnn_nav import cbuild

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "csrc" / "native_controller.cpp"
NODE_HEADERS = (HERE / "csrc" / "node_lifecycle.h", HERE / "csrc" / "node_parameters.h")
KERNELS = HERE.parent / "kernels" / "csrc"
RUNTIME = KERNELS / "policy_runtime.cpp"
RUNTIME_HEADERS = ("cfc_layout.h", "cfc_math.h", "cfc_step.h", "encoder_kernels.h", "policy_runtime.h")
# The runtime with the torch extension's flags (its commands are the extension's); the node's own code
# without fused multiply-adds, so the goal input is NumPy's bits on every machine.
RUNTIME_FLAGS = ("-O3", "-fopenmp-simd", "-fno-trapping-math", "-std=c++17", "-fPIC")
NODE_FLAGS = ("-O2", "-ffp-contract=off", "-std=c++17")
#: rcl and the camera-in, command-out messages: what any such node links (benchmarks/native_relay.c too).
RCL_LIBS = (
    "rcl",
    "rcutils",
    "rmw",
    "rosidl_runtime_c",
    "sensor_msgs__rosidl_generator_c",
    "sensor_msgs__rosidl_typesupport_c",
    "geometry_msgs__rosidl_generator_c",
    "geometry_msgs__rosidl_typesupport_c",
)
LIBS = (
    *RCL_LIBS,
    "rcl_yaml_param_parser",
    "rcl_lifecycle",
    "lifecycle_msgs__rosidl_generator_c",
    "lifecycle_msgs__rosidl_typesupport_c",
    "rcl_interfaces__rosidl_generator_c",
    "rcl_interfaces__rosidl_typesupport_c",
    "nav_msgs__rosidl_generator_c",
    "nav_msgs__rosidl_typesupport_c",
    "builtin_interfaces__rosidl_generator_c",
    "std_msgs__rosidl_generator_c",
    "std_srvs__rosidl_generator_c",
    "rosgraph_msgs__rosidl_generator_c",
    "rosgraph_msgs__rosidl_typesupport_c",
    "diagnostic_msgs__rosidl_generator_c",
    "diagnostic_msgs__rosidl_typesupport_c",
    "std_srvs__rosidl_typesupport_c",
)


#: The Python controller's parameter (config/controller.yaml) -> the native node's flag.
NATIVE_FLAGS = {
    "max_speed_xy": "--max-speed-xy",
    "max_speed_z": "--max-speed-z",
    "max_yaw_rate": "--max-yaw-rate",
    "image_timeout": "--image-timeout",
    "odom_timeout": "--odom-timeout",
    "failsafe_rate_hz": "--failsafe-rate",
    "expected_rate": "--expected-rate",
    "max_dt": "--max-dt",
    "sync_timeout": "--sync-timeout",
}
#: Switches of the native node from the controller's boolean parameters.
NATIVE_SWITCHES = {"use_sim_time": "--use-sim-time", "sync_inputs": "--sync-inputs"}


def native_arguments(weights: str, image_topic: str, parameters: dict) -> list[str]:
    """The native node's command line for the controller's ``parameters`` (config/controller.yaml's, with any
    overrides): the weights, the camera topic, the limits, timeouts and rates, sim time and input sync, so
    both nodes fly alike."""
    out = ["--weights", str(weights), "--image-topic", image_topic]
    for name, flag in NATIVE_FLAGS.items():
        if name in parameters:
            out += [flag, str(float(parameters[name]))]
    out += [flag for name, flag in NATIVE_SWITCHES.items() if parameters.get(name)]
    return out


@dataclass(frozen=True)
class RosLink:
    """Where this environment's rcl headers and libraries are, and how a program linked to them runs."""

    includes: list[Path]
    libdir: Path
    libpython: Path  # Path() where the libraries do not need it (a ROS install)
    env: dict[str, str]


def _ros_prefixes() -> list[Path]:
    """Where to look for rcl: this Python environment (the ros-jazzy-* wheels), then a sourced ROS install's
    prefixes (``AMENT_PREFIX_PATH``: /opt/ros/jazzy, a colcon workspace's install)."""
    ament = [Path(p) for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    return [Path(sys.prefix), *ament]


def ros_link_environment() -> RosLink:
    """The include folders and libraries of the ROS this process sees; RuntimeError naming what is missing.

    The wheels (this environment's prefix) are auditwheel-repaired and some of their libraries link the
    Python message bindings: the program then links the shared ``libpython`` too and runs with the wheels'
    ``*.libs`` folders on ``LD_LIBRARY_PATH``. A ROS install's libraries need neither.
    """
    prefixes = _ros_prefixes()
    prefix = next((p for p in prefixes if (p / "include" / "rcl").is_dir()), None)
    if prefix is None:
        looked = ", ".join(str(p / "include") for p in prefixes)
        raise RuntimeError(f"no rcl headers under {looked} (install the ros-jazzy-* wheels or source a ROS install)")
    wheels = prefix == Path(sys.prefix)
    folders = [str(prefix / "lib")]
    libpython = Path()
    if wheels:
        if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
            raise RuntimeError("this Python has no shared libpython, which the ROS wheels' libraries link")
        libdir = Path(str(sysconfig.get_config_var("LIBDIR") or ""))
        libpython = libdir / str(sysconfig.get_config_var("LDLIBRARY") or "")  # e.g. libpython3.11.so
        site = Path(sysconfig.get_paths()["purelib"])
        folders += [*sorted(str(p) for p in site.glob("*.libs") if p.is_dir()), str(libdir)]
    inherited = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]  # no empty entry
    env = dict(os.environ, LD_LIBRARY_PATH=os.pathsep.join([*folders, *inherited]))
    # The wheels put each package's headers in include/<pkg>/<pkg>/..., as a ROS install does.
    includes = sorted(p for p in (prefix / "include").iterdir() if p.is_dir())
    return RosLink(includes, prefix / "lib", libpython, env)


def link_flags(link: RosLink, libs: Sequence[str]) -> list[str]:
    """The linker arguments for ``libs`` (rcl and message libraries) in this environment."""
    return [
        f"-L{link.libdir}",
        "-Wl,--allow-shlib-undefined",
        *(f"-l{lib}" for lib in libs),
        *(["-Wl,--no-as-needed", str(link.libpython)] if link.libpython != Path() else []),
    ]


def _run(cmd: list[str], what: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{done.stderr.strip()[-2000:]}")


def build() -> tuple[Path, dict[str, str]]:
    """The node's executable (built now unless cached) and the environment it runs in; RuntimeError if it
    cannot be built here."""
    compiler = cbuild.compiler()
    if compiler is None:
        raise RuntimeError(f"no C++ compiler ('{os.environ.get('CXX') or 'c++'}' is not on PATH)")
    link = ros_link_environment()
    digest = hashlib.sha256()
    for f in (SOURCE, *NODE_HEADERS, RUNTIME, *(KERNELS / h for h in RUNTIME_HEADERS)):
        digest.update(f.read_bytes())
    try:
        version = subprocess.run([*compiler, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        version = ""
    # The ROS it links: where it is and which build of rcl (a wheel update, a sourced /opt/ros instead).
    rcl = [link.libdir / "librcl.so", *(p / "rcl" / "rcl.h" for p in link.includes if p.name == "rcl")]
    stamps = [f"{f}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in rcl if f.exists()]
    for text in (
        " ".join(RUNTIME_FLAGS),
        " ".join(NODE_FLAGS),
        " ".join(LIBS),
        " ".join(compiler),
        version,
        platform.machine(),
        " ".join(str(p) for p in link.includes),
        str(link.libdir),
        str(link.libpython),
        " ".join(stamps),
    ):
        digest.update(text.encode())
    target = cbuild.cache_dir("native_node") / f"native_controller-{digest.hexdigest()[:16]}"
    if target.exists():
        return target, link.env
    target.parent.mkdir(parents=True, exist_ok=True)
    includes = [f"-I{p}" for p in link.includes]
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        runtime_o, node_o, binary = Path(tmp) / "runtime.o", Path(tmp) / "node.o", Path(tmp) / "native_controller"
        _run([*compiler, *RUNTIME_FLAGS, "-c", str(RUNTIME), "-o", str(runtime_o)], f"compiling {RUNTIME.name}")
        _run(
            [*compiler, *NODE_FLAGS, f"-I{KERNELS}", *includes, "-c", str(SOURCE), "-o", str(node_o)],
            f"compiling {SOURCE.name}",
        )
        _run(
            [*compiler, str(node_o), str(runtime_o), "-o", str(binary), *link_flags(link, LIBS)],
            "linking the native controller",
        )
        os.replace(binary, target)  # atomic: a concurrent builder's file is the same program
    return target, link.env


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    try:
        binary, env = build()
    except (RuntimeError, OSError, subprocess.SubprocessError) as err:
        print(f"native controller: cannot build it here: {err}", file=sys.stderr)
        return 2
    # The node replaces this process: signals reach it directly, its exit code is the command's.
    os.execve(str(binary), [str(binary), *args], env)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
