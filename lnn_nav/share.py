"""Where the package's shared files (launch files, configs, shipped checkpoints) are found.

Three places, in this order: the ament index (a colcon workspace or a ROS
install that is sourced), the Python prefix (``pip install`` lays
``share/lnn_nav`` out there, see ``setup.py`` and ``scripts/ament_layout.py``),
and the source tree (a checkout run in place). Here, at the root of the
package, because the nodes (default configs and checkpoint) and the `lnn-nav`
command (``info``) both look them up.
"""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGE_NAME = "lnn_nav"


def share_candidates() -> list[tuple[Path, str]]:
    """The share directories to look in, each with how it was found, in lookup order."""
    found: list[tuple[Path, str]] = []
    try:
        from ament_index_python.packages import get_package_share_directory

        found.append((Path(get_package_share_directory(PACKAGE_NAME)), "ament index"))
    except Exception:  # noqa: BLE001 - no ament_index_python, no sourced workspace (OSError), or not in it
        pass
    found.append((Path(sys.prefix) / "share" / PACKAGE_NAME, "python prefix"))
    found.append((Path(__file__).resolve().parent.parent, "source tree"))
    return found


def share_directory() -> tuple[Path | None, str]:
    """The first share directory that holds the package (its ``package.xml``), and how it was found."""
    for directory, how in share_candidates():
        if how == "ament index" or (directory / "package.xml").is_file():
            return directory, how
    return None, "not found"


def share_path(relative: str) -> Path:
    """``relative`` (e.g. ``config/sim.yaml``) from the first share directory that has it.

    Raises :class:`FileNotFoundError` naming every place looked in.
    """
    candidates = [directory / relative for directory, _ in share_candidates()]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"{relative} not found; looked in: {', '.join(str(c) for c in candidates)}")
