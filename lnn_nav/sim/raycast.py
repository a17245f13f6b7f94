"""The C++ CPU ray caster (``csrc/raycast.cpp``): built on first use, called through ctypes.

The grid path of :func:`lnn_nav.sim.render_kernels.render_kernel` cast in C++
with the same float32 exact intersections, so a frame is the Warp kernel's bit
for bit (``tests/test_sim_raycast.py``) at about 2.5x the speed on a CPU core:
the rays of a camera are cast in columns that share one list of candidate
primitives, four rays at a time through the cheap tests.
:class:`~lnn_nav.sim.render.Renderer` uses it for CPU grid rendering; the Warp
kernel stays the reference, for the mesh backend and on CUDA.

Switches: ``LNN_NAV_REFERENCE_RENDER=1`` (or :func:`set_reference_render`)
renders with the Warp kernel. ``LNN_NAV_RAY_COLUMN`` sets how many pixels wide
the columns of rays that share one candidate list are (default 8; ``0`` walks
the grid ray by ray, the Warp kernel's order: the same frames, slower). Without
a C++ compiler (``CXX``, else ``c++``) the build fails once, says why on
stderr, and the Warp kernel renders.

The library is plain C ABI (no Python, NumPy or torch headers), built with
``-O3 -ffp-contract=off`` by :mod:`lnn_nav.cbuild` into
``$LNN_NAV_KERNEL_CACHE/sim`` or ``~/.cache/lnn_nav/sim``, named by a hash of
its source, flags, compiler and machine.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np

from lnn_nav import cbuild

__all__ = ["RcArgs", "build_error", "compiler_found", "load", "reference_render", "set_reference_render"]

SOURCE = Path(__file__).with_name("csrc") / "raycast.cpp"
# -ffp-contract=off: no fused multiply-adds, as in Warp's baseline-ISA CPU code (bit-identical frames).
FLAGS = (
    "-O3",
    "-std=c++17",
    "-shared",
    "-fPIC",
    "-ffp-contract=off",
    "-fno-math-errno",  # sqrtf as one instruction (IEEE exact either way)
    "-fvisibility=hidden",
)
ABI_VERSION = 4
#: The widest column of rays LNN_NAV_RAY_COLUMN may ask for (wider than any camera: one column).
MAX_COLUMN_WIDTH = 4096

_lock = threading.Lock()
_state: dict[str, object] = {}
_reference_forced = os.environ.get("LNN_NAV_REFERENCE_RENDER", "") not in ("", "0")


def set_reference_render(on: bool) -> None:
    """Renderers made from now on render with the Warp kernel (True) or the C++ caster where it builds
    (False); one made before keeps the implementation it was made with."""
    global _reference_forced
    _reference_forced = bool(on)


def reference_render() -> bool:
    return _reference_forced


def column_width() -> int:
    """Pixels a column of rays shares one candidate list over (``LNN_NAV_RAY_COLUMN``, default 8); 0 walks the
    grid ray by ray (the Warp kernel's order). Read when a renderer records a launch."""
    value = os.environ.get("LNN_NAV_RAY_COLUMN", "8")
    try:
        width = int(value)
    except ValueError:
        raise ValueError(
            f"LNN_NAV_RAY_COLUMN must be a whole number of pixels (0: walk the grid), got {value!r}"
        ) from None
    if not 0 <= width <= MAX_COLUMN_WIDTH:
        raise ValueError(f"LNN_NAV_RAY_COLUMN must be in [0, {MAX_COLUMN_WIDTH}], got {width}")
    return width


_P = ctypes.c_void_p
_I = ctypes.c_int32
_F = ctypes.c_float


class RcArgs(ctypes.Structure):
    """``struct RcArgs`` of csrc/raycast.cpp, field for field."""

    _fields_ = [
        ("cam_origin", _P),
        ("cam_rot", _P),
        ("env_world", _P),
        ("envs", _I),
        ("height", _I),
        ("width", _I),
        ("fx", _F),
        ("fy", _F),
        ("cx", _F),
        ("cy", _F),
        ("near_", _F),
        ("far_", _F),
        ("rgb", _P),
        ("depth", _P),
        ("seg", _P),
        ("grid_f", _P),
        ("grid_i", _P),
        ("grid_z", _P),
        ("cell_start", _P),
        ("cell_items", _P),
        ("cell_item_z", _P),
        ("sorted_items", _P),
        ("sorted_z", _P),
        ("sorted_rank", _P),
        ("sorted_disc", _P),
        ("world_item_start", _P),
        ("world_items", _P),
        ("world_disc", _P),
        ("world_z", _P),
        ("column_width", _I),
        ("cyl", _P),
        ("box", _P),
        ("sph", _P),
        ("cyl_mat", _P),
        ("box_mat", _P),
        ("sph_mat", _P),
        ("palette", _P),
        ("materials", _I),
        ("sky_zenith", _P),
        ("sky_horizon", _P),
        ("sky_glow", _P),
        ("sun_dir", _P),
        ("sun_rgb", _P),
        ("ambient", _P),
        ("fog_density", _P),
        ("fog_colour", _P),
        ("srgb_lut", _P),
        ("srgb_steps", _I),
        ("mat_ground", _I),
        ("mat_bark", _I),
        ("mat_leaves", _I),
        ("mat_undergrowth", _I),
        ("mat_concrete", _I),
        ("mat_glass", _I),
        ("mat_beacon", _I),
    ]


def _build() -> ctypes.CDLL:
    target = cbuild.build_shared("sim", "raycast", SOURCE, FLAGS)
    lib = ctypes.CDLL(str(target))
    if lib.rc_abi_version() != ABI_VERSION:
        raise RuntimeError(f"{target} has ABI {lib.rc_abi_version()}, expected {ABI_VERSION}")
    lib.rc_render.argtypes = [ctypes.POINTER(RcArgs), ctypes.c_int32, ctypes.c_int32]
    lib.rc_render.restype = None
    return lib


def load() -> ctypes.CDLL | None:
    """The built caster, or None (reference forced, or the build failed: :func:`build_error` says why)."""
    if _reference_forced:
        return None
    with _lock:
        if "lib" not in _state:
            try:
                _state["lib"] = _build()
            except (OSError, RuntimeError, AttributeError, subprocess.SubprocessError) as exc:
                _state["lib"] = None
                _state["error"] = str(exc)
                print(f"lnn_nav.sim: the C++ ray caster did not build, rendering with Warp: {exc}", file=sys.stderr)
    lib = _state["lib"]
    return lib if isinstance(lib, ctypes.CDLL) else None


def compiler_found() -> bool:
    """Whether a C++ compiler is on PATH (the caster can be built here)."""
    return cbuild.compiler() is not None


def build_error() -> str | None:
    error = _state.get("error")
    return str(error) if error is not None else None


def pointer(array: np.ndarray) -> int:
    """The address of a C-contiguous array (checked: the caster reads it as packed rows)."""
    if not array.flags.c_contiguous:
        raise ValueError("the ray caster needs C-contiguous arrays")
    return int(array.ctypes.data)


def _primitive_rows(
    items: np.ndarray, cyl: np.ndarray, box: np.ndarray, sph: np.ndarray
) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """For each primitive kind the item codes name (kind in the low two bits, index above them): the kind, which
    items are of it (and name an existing row), and those rows, float64."""
    kind, index = items & 3, items >> 2
    out = []
    for k, prims in enumerate((cyl.reshape(-1, 5), box.reshape(-1, 8), sph.reshape(-1, 4))):
        take = (kind == k) & (index < len(prims))
        if take.any():
            out.append((k, take, prims[index[take]].astype(np.float64)))
    return out


def item_discs(items: np.ndarray, cyl: np.ndarray, box: np.ndarray, sph: np.ndarray) -> np.ndarray:
    """``[len(items), 4]`` float32: each item's footprint on the ground as a disc (centre x, y, radius, squared
    radius) that holds it with room to spare, for the caster's cheap tests before the exact one.

    The radius is the cylinder's or sphere's, a box's half-diagonal, grown by 0.1 % and 0.1 mm, so that
    rounding never turns an exact hit into a rejection (the caster adds a slack that grows with distance
    too). Items that name no primitive get an infinite disc: never rejected (the renderer's empty-scene
    padding row names its all-zero padding primitive instead; no cell lists it).
    """
    out = np.zeros((len(items), 4), np.float32)
    out[:, 2:] = np.inf
    for kind, take, rows in _primitive_rows(items, cyl, box, sph):
        radius = np.hypot(rows[:, 3], rows[:, 4]) if kind == 1 else rows[:, 4 if kind == 0 else 3]
        r = np.abs(radius) * 1.001 + 1.0e-4
        out[take, 0], out[take, 1], out[take, 2], out[take, 3] = rows[:, 0], rows[:, 1], r, r * r
    return out


def item_heights(items: np.ndarray, cyl: np.ndarray, box: np.ndarray, sph: np.ndarray) -> np.ndarray:
    """``[len(items), 2]`` float32: each item's lowest and highest point (items naming no primitive: all
    heights)."""
    out = np.empty((len(items), 2), np.float32)
    out[:, 0], out[:, 1] = -np.inf, np.inf
    for kind, take, rows in _primitive_rows(items, cyl, box, sph):
        if kind == 0:
            lo, hi = rows[:, 2], rows[:, 3]
        else:
            half = rows[:, 5] if kind == 1 else rows[:, 3]  # a box's half-height, a sphere's radius
            lo, hi = rows[:, 2] - half, rows[:, 2] + half
        out[take, 0], out[take, 1] = lo, hi
    return out


def world_items(
    grid_i: np.ndarray,
    cell_start: np.ndarray,
    cell_items: np.ndarray,
    cyl: np.ndarray,
    box: np.ndarray,
    sph: np.ndarray,
) -> dict[str, np.ndarray]:
    """Each world's distinct items (from its grid cells' lists) with their footprint discs
    (:func:`item_discs`) and heights (:func:`item_heights`), for the caster's columns of rays."""
    starts, lists = [0], []
    grid_i = grid_i.reshape(-1, 7)
    for nx, ny, first, *_ in grid_i:
        cells = int(nx) * int(ny)
        if cells and len(cell_start) > first + cells:
            items = np.unique(cell_items[cell_start[first] : cell_start[first + cells]])
        else:
            items = np.zeros(0, np.int32)
        lists.append(items.astype(np.int32))
        starts.append(starts[-1] + len(items))
    items = np.concatenate(lists) if lists else np.zeros(0, np.int32)
    if len(items) == 0:  # a null pointer is refused: one unused row
        items = np.zeros(1, np.int32)
    return {
        "world_item_start": np.asarray(starts, np.int32),
        "world_items": np.ascontiguousarray(items),
        "world_disc": item_discs(items, cyl, box, sph),
        "world_z": item_heights(items, cyl, box, sph),
    }


def sorted_cells(
    cell_start: np.ndarray,
    cell_items: np.ndarray,
    cell_item_z: np.ndarray,
    cyl: np.ndarray,
    box: np.ndarray,
    sph: np.ndarray,
) -> dict[str, np.ndarray]:
    """Each cell's items ordered by their lowest point, for the caster's early stop, with each one's place in
    ``cell_items`` (Warp's order within a cell: equal hits go to the item listed first) and its footprint
    disc (:func:`item_discs`)."""
    n = len(cell_items)
    rank = np.arange(n, dtype=np.int32)
    if n <= 1 or len(cell_start) < 2:
        return {
            "sorted_items": np.ascontiguousarray(cell_items),
            "sorted_z": np.ascontiguousarray(cell_item_z),
            "sorted_rank": rank,
            "sorted_disc": item_discs(cell_items, cyl, box, sph),
        }
    counts: np.ndarray = (cell_start[1:] - cell_start[:-1]).astype(np.int64)
    cell_of = np.repeat(np.arange(len(counts)), counts)
    # The padding row of an empty scene is no item of any cell.
    cell_of = np.concatenate([cell_of, np.full(n - len(cell_of), len(counts))]) if len(cell_of) < n else cell_of
    order = np.lexsort((rank, cell_item_z[:, 0], cell_of))
    return {
        "sorted_items": np.ascontiguousarray(cell_items[order]),
        "sorted_z": np.ascontiguousarray(cell_item_z[order]),
        "sorted_rank": np.ascontiguousarray(rank[order]),
        "sorted_disc": item_discs(cell_items[order], cyl, box, sph),
    }


#: The scene arrays the caster reads (RcArgs' pointer fields that are not the launch's own buffers).
SCENE_FIELDS = frozenset(
    str(field[0])
    for field in RcArgs._fields_
    if field[1] is _P and field[0] not in ("cam_origin", "cam_rot", "env_world", "rgb", "depth", "seg")
)
