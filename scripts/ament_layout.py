"""Give a pip-installed lnn_nav the layout ROS 2 tools look for, inside a venv (PREFIX).

    python scripts/ament_layout.py .venv           # then: export AMENT_PREFIX_PATH=$PWD/.venv

`ros2 run lnn_nav <exe>` and launch files' ``Node(package="lnn_nav", ...)``
look for executables in ``PREFIX/lib/lnn_nav/`` and for the package in the
ament resource index; ``get_package_share_directory`` for
``PREFIX/share/lnn_nav/``. colcon (ament_python) makes that layout; pip does
not: it puts console scripts in ``bin/`` (setup.cfg's ``install_scripts`` is a
setuptools-only option pip ignores) and an editable install copies no data
files. This links what is missing (never overwrites a file): the executables
into ``lib/lnn_nav/``, the resource-index marker, and for an editable install
``share/lnn_nav/{package.xml,launch,config,sim,models}`` file by file to the
source tree, so edits there take effect as the code's do (run it again after
adding a file). `make install` runs it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

PACKAGE = "lnn_nav"
ROOT = Path(__file__).resolve().parents[1]
#: What setup.py installs under share/lnn_nav (its SHARE_DIRS, and package.xml).
SHARE_ENTRIES = ("package.xml", "launch", "config", "sim", "models")


def node_executables() -> list[str]:
    """The console scripts the installed lnn_nav declares besides ``lnn-nav``: the nodes ``ros2 run`` starts."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        scripts = [ep.name for ep in distribution(PACKAGE).entry_points if ep.group == "console_scripts"]
    except PackageNotFoundError:
        raise SystemExit(f"ament_layout: {PACKAGE} is not installed for {sys.executable}") from None
    return sorted(name for name in scripts if name != "lnn-nav")


def _link(target: Path, link: Path, made: list[str], relative: bool) -> None:
    if link.is_symlink() and not link.exists():
        link.unlink()  # dangling: left by an older checkout
    if link.exists() or link.is_symlink():
        return  # a colcon or pip install's own file, or done before
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(target, link.parent) if relative else target)
    made.append(str(link))


def lay_out(prefix: Path, root: Path = ROOT) -> list[str]:
    """Create what is missing under ``prefix``; the paths made."""
    made: list[str] = []
    bin_dir = prefix / "bin"
    for exe in node_executables():
        if not (bin_dir / exe).exists():
            raise SystemExit(f"ament_layout: {bin_dir / exe} does not exist: is {PACKAGE} installed in {prefix}?")
        _link(bin_dir / exe, prefix / "lib" / PACKAGE / exe, made, relative=True)
    marker = prefix / "share" / "ament_index" / "resource_index" / "packages" / PACKAGE
    if not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("")
        made.append(str(marker))
    share = prefix / "share" / PACKAGE
    for entry in SHARE_ENTRIES:
        for source in _share_files(root / entry):
            # File by file: ros2 launch finds launch files with os.walk, which does not enter linked folders.
            _link(source, share / source.relative_to(root), made, relative=False)
    return made


def _share_files(entry: Path) -> list[Path]:
    """``entry`` (a file), or the files under it as setup.py installs them (no caches, no models/eval)."""
    if entry.is_file():
        return [entry]
    return sorted(
        path
        for path in entry.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc" and "eval" not in path.parts
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prefix", type=Path, help="the venv (or install prefix) lnn_nav is pip-installed in")
    args = parser.parse_args(argv)
    made = lay_out(args.prefix.resolve())
    print(
        f"ament_layout: {len(made)} link(s) made under {args.prefix}; export AMENT_PREFIX_PATH={args.prefix.resolve()}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
