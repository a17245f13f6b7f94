"""The CUDA sources compile for every target GPU (Jetson Xavier/Orin, A100, H100) wherever nvcc is.

No GPU is needed: the kernels (cfc_cuda.cu) build with nvcc alone, one
architecture per invocation, in parallel; the torch binding is checked for
syntax against torch's headers. A build break fails here, not on the robot.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lnn_nav.kernels.build import CSRC, CUDA_ARCHS

NVCC = shutil.which("nvcc")
pytestmark = pytest.mark.skipif(NVCC is None, reason="nvcc is not installed")


def _supported_archs() -> set:
    out = subprocess.run([NVCC, "--list-gpu-arch"], capture_output=True, text=True, check=True).stdout
    return {line.strip().removeprefix("compute_") for line in out.split()}


def _nvcc(arch: str, out_dir: Path) -> tuple[int, str]:
    sm = arch.replace(".", "")
    cmd = [
        NVCC,
        "-c",
        "-O3",
        "-std=c++17",
        f"-I{CSRC}",
        f"-gencode=arch=compute_{sm},code=sm_{sm}",
        str(CSRC / "cfc_cuda.cu"),
        "-o",
        str(out_dir / f"cfc_cuda_sm{sm}.o"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    return proc.returncode, proc.stderr


def _cuda_include() -> Path:
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or "/usr/local/cuda"
    return Path(home) / "include"


def _binding_syntax(stub: Path) -> tuple[int, str]:
    from torch.utils.cpp_extension import include_paths

    # The CPU wheel of torch ships the c10/cuda headers but not this generated one.
    (stub / "c10" / "cuda" / "impl").mkdir(parents=True)
    (stub / "c10" / "cuda" / "impl" / "cuda_cmake_macros.h").write_text("#pragma once\n")
    cuda_include = _cuda_include()
    cmd = [
        "c++",
        "-std=c++17",
        "-fsyntax-only",
        "-w",
        "-DTORCH_EXTENSION_NAME=lnn_nav_cfc_cuda",
        *[f"-I{p}" for p in include_paths()],
        f"-I{stub}",
        f"-I{cuda_include}",
        f"-I{sysconfig.get_paths()['include']}",
        f"-I{CSRC}",
        str(CSRC / "cfc_cuda_binding.cpp"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    return proc.returncode, proc.stderr


@pytest.fixture(scope="module")
def builds(tmp_path_factory) -> dict[str, tuple[int, str]]:
    out = tmp_path_factory.mktemp("nvcc")
    supported = _supported_archs()
    jobs = {}
    with ThreadPoolExecutor(max_workers=4) as pool:
        for arch in CUDA_ARCHS:
            if arch.replace(".", "") in supported:
                jobs[arch] = pool.submit(_nvcc, arch, out)
        if shutil.which("c++") and (_cuda_include() / "cuda_runtime_api.h").is_file():
            jobs["binding"] = pool.submit(_binding_syntax, out / "stub")
        return {name: job.result() for name, job in jobs.items()}


@pytest.mark.parametrize("arch", CUDA_ARCHS)
def test_cuda_kernels_compile_for(arch, builds):
    if arch not in builds:
        pytest.skip(
            f"this nvcc cannot target sm_{arch.replace('.', '')} (CUDA 13 dropped it; "
            f"JetPack's CUDA 11/12 still builds it on the Xavier)"
        )
    code, err = builds[arch]
    assert code == 0, err


def test_cuda_binding_compiles_against_torch_headers(builds):
    if "binding" not in builds:
        pytest.skip("no host C++ compiler or no CUDA headers (set CUDA_HOME)")
    code, err = builds["binding"]
    assert code == 0, err


def test_archs_cover_jetson_and_datacenter():
    assert {"7.2", "8.7", "8.0", "9.0"} <= set(CUDA_ARCHS), sys.version
