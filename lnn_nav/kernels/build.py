"""Build once (cached on disk) and load the fused-kernel extensions; log once when they cannot be.

The CPU extension is compiled with ``torch.utils.cpp_extension`` on first use,
or ahead of time with ``python -m lnn_nav.kernels.build`` (the Makefile's
install step does this), into a cache keyed by the sources, flags, torch and
Python versions, so a changed source or a new torch rebuilds and everything
else loads in milliseconds. The CUDA extension is built the same way where
torch has CUDA and ``nvcc`` is found.

Cache: ``$LNN_NAV_KERNEL_CACHE``, else ``$XDG_CACHE_HOME/lnn_nav/kernels``,
else ``~/.cache/lnn_nav/kernels``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import platform
import shutil
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import torch

LOG = logging.getLogger("lnn_nav.kernels")

CSRC = Path(__file__).resolve().parent / "csrc"
HEADERS = ("cfc_layout.h", "cfc_math.h", "cfc_step.h")
CPU_NAME = "lnn_nav_cfc_cpu"
# The CNN encoder and the whole policy step (encoder_cpu.cpp) build into the same
# module as the cell, so one call runs the policy step end to end.
CPU_SOURCES = ("cfc_cpu.cpp", "encoder_cpu.cpp")
CPU_HEADERS = ("encoder_cpu.h", "encoder_kernels.h")
# -fopenmp-simd: honour the `omp simd` loop hints without an OpenMP runtime
# (GCC and Clang, x86 and ARM alike). -fno-trapping-math (torch builds with it
# too) lets the compiler turn the clamps and selects of the element-wise math
# into vector min/max/blend: with it the activation and cell loops vectorise,
# without it they stay scalar. Results are unchanged; only FP exception flags
# are no longer modelled.
CPU_FLAGS = ("-O3", "-fopenmp-simd", "-fno-trapping-math")
CUDA_NAME = "lnn_nav_cfc_cuda"
CUDA_SOURCES = ("cfc_cuda_binding.cpp", "cfc_cuda.cu")
CUDA_HEADERS = ("cfc_cuda.h",)
CUDA_FLAGS = ("-O3",)
#: Architectures CI compiles the .cu sources for: Jetson Xavier (7.2) and
#: Orin (8.7), A100 (8.0), H100 (9.0). The on-device build targets the GPU
#: it finds (or TORCH_CUDA_ARCH_LIST).
CUDA_ARCHS = ("7.2", "8.0", "8.7", "9.0")

_lock = threading.Lock()
_loaded: dict[str, ModuleType | None] = {}
_errors: dict[str, str] = {}


def cache_root() -> Path:
    """Where built extensions are kept."""
    explicit = os.environ.get("LNN_NAV_KERNEL_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "lnn_nav" / "kernels"


def _build_tag(name: str, files: Sequence[str], flags: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for part in (name, torch.__version__, str(torch.version.cuda), sys.version, platform.machine(), *flags):
        digest.update(part.encode())
    for file in files:
        digest.update((CSRC / file).read_bytes())
    return f"{name}-{digest.hexdigest()[:16]}"


def _import_built(name: str, directory: Path) -> ModuleType | None:
    candidates = sorted(directory.glob(f"{name}*.so")) + sorted(directory.glob(f"{name}*.pyd"))
    if not candidates:
        return None
    spec = importlib.util.spec_from_file_location(name, candidates[0])
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _build(
    name: str, sources: Sequence[str], headers: Sequence[str], cflags: Sequence[str], cuda_flags: Sequence[str] = ()
) -> ModuleType:
    from torch.utils import cpp_extension

    final = cache_root() / _build_tag(
        name, (*sources, *headers), (*cflags, *cuda_flags, os.environ.get("TORCH_CUDA_ARCH_LIST", ""))
    )
    module = _import_built(name, final) if final.is_dir() else None
    if module is not None:
        return module
    final.parent.mkdir(parents=True, exist_ok=True)
    # Build in a private folder and rename it into place: a process that
    # finds the final folder always finds a complete library.
    work = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    LOG.info("building %s in %s (once; later runs load it from the cache)", name, final)
    try:
        module = cpp_extension.load(
            name=name,
            sources=[str(CSRC / s) for s in sources],
            extra_cflags=list(cflags),
            extra_cuda_cflags=list(cuda_flags),
            extra_include_paths=[str(CSRC)],
            build_directory=str(work),
            verbose=os.environ.get("LNN_NAV_KERNEL_VERBOSE") == "1",
        )
        try:
            os.rename(work, final)
        except OSError:  # another process finished first; both libraries are identical
            shutil.rmtree(work, ignore_errors=True)
        return module
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def _load(name: str, builder) -> ModuleType | None:
    with _lock:
        if name in _loaded:
            return _loaded[name]
        try:
            module = builder()
        except Exception as exc:  # a missing compiler, ninja or CUDA toolkit, or a build error
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            _errors[name] = f"{type(exc).__name__}: {first_line}"
            LOG.warning(
                "fused CfC kernels (%s) unavailable, using the reference PyTorch path: %s "
                "(set LNN_NAV_KERNEL_VERBOSE=1 to see the build)",
                name,
                _errors[name],
            )
            module = None
        _loaded[name] = module
        return module


def load_cpu() -> ModuleType | None:
    """The CPU extension, built on first call; ``None`` (logged once) if it cannot be built."""
    return _load(CPU_NAME, lambda: _build(CPU_NAME, CPU_SOURCES, (*HEADERS, *CPU_HEADERS), CPU_FLAGS))


def cuda_build_possible() -> str | None:
    """``None`` if the CUDA extension can be built here, else why not."""
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a CPU-only build"
    from torch.utils import cpp_extension

    if cpp_extension.CUDA_HOME is None:
        return "no CUDA toolkit (nvcc) found; set CUDA_HOME"
    return None


def load_cuda() -> ModuleType | None:
    """The CUDA extension, built on first call; ``None`` (logged once) where it cannot be."""

    def builder() -> ModuleType:
        reason = cuda_build_possible()
        if reason is not None:
            raise RuntimeError(reason)
        return _build(CUDA_NAME, CUDA_SOURCES, (*HEADERS, *CUDA_HEADERS), CPU_FLAGS, CUDA_FLAGS)

    return _load(CUDA_NAME, builder)


def load_error(name: str) -> str | None:
    """Why an extension did not load (``None`` if it loaded or was not tried)."""
    return _errors.get(name)


def main(argv: list[str] | None = None) -> int:
    """Build the extensions now (e.g. at install time) and say what happened."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m lnn_nav.kernels.build",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--cuda", action="store_true", help="also build the CUDA extension")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    status = 0
    targets = [(CPU_NAME, load_cpu)] + ([(CUDA_NAME, load_cuda)] if args.cuda else [])
    for name, loader in targets:
        if loader() is None:
            print(f"{name}: not built ({load_error(name)}); the reference PyTorch path will be used")
            status = 1
        else:
            print(f"{name}: ready (cache {cache_root()})")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
