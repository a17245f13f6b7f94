"""Building a plain C-ABI shared library from C++ sources on first use (no Python or torch headers).

Used by the simulator's ray caster (``lnn_nav/sim/csrc``) and the torch-free policy runtime
(``lnn_nav/kernels/csrc/policy_runtime.cpp``). The compiler is ``CXX`` (it may carry a wrapper, e.g.
``ccache g++``), else ``c++``. Libraries go to ``$LNN_NAV_KERNEL_CACHE/<kind>`` or
``~/.cache/lnn_nav/<kind>``, named by a hash of the sources, flags, compiler and machine, so a changed
source or compiler builds anew; several processes building at once each write their own file and
rename it into place. Standard library only: every package may use it.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path


def cache_dir(kind: str) -> Path:
    explicit = os.environ.get("LNN_NAV_KERNEL_CACHE")
    if explicit:
        return Path(explicit) / kind
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "lnn_nav" / kind


def compiler() -> list[str] | None:
    """The compiler command, or None if it is not on PATH."""
    words = shlex.split(os.environ.get("CXX") or "c++")
    found = shutil.which(words[0]) if words else None
    return [found, *words[1:]] if found else None


def _tag(command: list[str], files: Sequence[Path], flags: Sequence[str]) -> str:
    try:
        version = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        version = ""
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.read_bytes())
    # The machine too: an x86-64 and an aarch64 host sharing a home report the same compiler version.
    for text in (" ".join(flags), version, " ".join(command), platform.machine()):
        digest.update(text.encode())
    return digest.hexdigest()[:16]


def build_shared(
    kind: str, name: str, source: Path, flags: Sequence[str], depends: Sequence[Path] = (), timeout: float = 300
) -> Path:
    """The shared library of ``source`` (built now unless the cache has it); RuntimeError if it cannot be.

    ``depends``: headers whose changes must rebuild it. ``flags`` must include ``-shared -fPIC``.
    """
    command = compiler()
    if command is None:
        raise RuntimeError(f"no C++ compiler ('{os.environ.get('CXX') or 'c++'}' is not on PATH)")
    target = cache_dir(kind) / f"{name}-{_tag(command, [source, *depends], flags)}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        done = subprocess.run(
            [*command, *flags, str(source), "-o", tmp], capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed on {source.name}:\n{done.stderr.strip()[-2000:]}")
        os.replace(tmp, target)  # atomic: a concurrent builder's file is the same bytes
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target
