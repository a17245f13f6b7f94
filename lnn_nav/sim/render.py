"""Batched RGB / depth / segmentation ray casting of world specs with NVIDIA Warp.

One Warp thread per (env, pixel) casts a primary ray against the world's
analytic primitives (vertical cylinders with caps, boxes rotated about z,
spheres) and the ground plane ``z = 0``, then shades the closest hit:
season-palette base colour x procedural texture x (ambient + Lambert sun),
exponential fog, a sky gradient with a dusk tint, emissive beacons.

Outputs per env: ``rgb`` uint8 ``[E, H, W, 3]`` (sRGB), ``depth`` float32
``[E, H, W]`` as **z-depth** (metres along the optical axis, not ray length;
no return within ``far`` reads ``far``), ``segmentation`` uint8 ``[E, H, W]``
(material id + 1, 0 = sky, see :data:`lnn_nav.sim.world.SEGMENTATION_CLASSES`).

Several worlds can be loaded at once and each env picks one by index (a
vector env whose envs sit in different worlds renders in one launch); all
envs share one :class:`~lnn_nav.sim.camera.CameraConfig`.

Acceleration (``backend``):

* ``"grid"`` (default): a uniform 2D grid over xy, built in NumPy and
  uploaded as CSR arrays (primitives stored in every cell their footprint
  overlaps), walked with a 2D DDA after clipping the ray to the grid's
  z-range; primitives are intersected exactly.
* ``"mesh"``: the same primitives tessellated into one ``wp.Mesh`` per world
  (Warp's BVH) queried with ``wp.mesh_query_ray``; normals and materials still
  come from the analytic primitive that owns the hit face, so only silhouettes
  and depth differ (facets, by up to ~3% of a radius).

On one CPU core (Xeon, 614 trunks + 1398 canopy/bush spheres, 128x96,
``benchmarks/sim_throughput.py``) the grid renders 2.1-2.7x faster than the
mesh BVH (4.8 ms vs 12.3 ms a frame in the quietest run), so it is the
default; the mesh path stays for comparison and for future mesh assets.

Warp runs a CPU kernel on a single thread; :class:`RenderPool` spreads envs
over worker processes on CPU and renders in-process on CUDA when present.
"""

from __future__ import annotations

import ctypes.util
import math
import multiprocessing as mp
import os
import pickle
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing import shared_memory
from typing import Any, cast

import numpy as np
import warp as wp

from lnn_nav.sim.camera import CameraConfig, camera_pose
from lnn_nav.sim.world import MATERIAL_ID, WorldSpec

# Warp prints a banner and a line per module load; a simulator stepping at
# 15 Hz would bury the user's own logs under them. (camera and world above
# do not use Warp, so they may be imported before this.)
wp.config.quiet = True  # type: ignore[attr-defined]  # Warp < 1.0's switch; harmless (unused) in 1.x
wp.config.log_level = wp.LOG_WARNING

BACKENDS = ("grid", "mesh")

# Rendering is not differentiated; skipping adjoint code halves the compile time.
wp.set_module_options({"enable_backward": False})

# Hit item encoding: primitive index * 4 + kind; the ground and sky are negative.
_KIND_CYLINDER = wp.constant(0)
_KIND_BOX = wp.constant(1)
_KIND_SPHERE = wp.constant(2)
_ITEM_SKY = wp.constant(-1)
_ITEM_GROUND = wp.constant(-2)
_MISS = wp.constant(1.0e30)
_SRGB_STEPS = wp.constant(4096)
_MAT_GROUND = wp.constant(MATERIAL_ID["ground"])
_MAT_BARK = wp.constant(MATERIAL_ID["bark"])
_MAT_LEAVES = wp.constant(MATERIAL_ID["leaves"])
_MAT_UNDERGROWTH = wp.constant(MATERIAL_ID["undergrowth"])
_MAT_CONCRETE = wp.constant(MATERIAL_ID["concrete"])
_MAT_GLASS = wp.constant(MATERIAL_ID["glass"])
_MAT_BEACON = wp.constant(MATERIAL_ID["beacon"])

# Sky and light tints (linear RGB) for low sun.
_DUSK_HORIZON = np.array([1.0, 0.55, 0.32])
_DUSK_ZENITH = np.array([0.30, 0.32, 0.52])
_DUSK_SUNLIGHT = np.array([1.0, 0.72, 0.48])


# --------------------------------------------------------------------------- #
# Warp device functions
# --------------------------------------------------------------------------- #
@wp.func
def _hash(ix: int, iy: int, iz: int) -> float:
    """Integer lattice hash in [0, 1) (a spatial hash with murmur-style finalisation)."""
    h = wp.uint32(ix) * wp.uint32(73856093) ^ wp.uint32(iy) * wp.uint32(19349663) ^ wp.uint32(iz) * wp.uint32(83492791)
    h = (h ^ (h >> wp.uint32(13))) * wp.uint32(668265261)
    h = h ^ (h >> wp.uint32(15))
    return float(h & wp.uint32(16777215)) / 16777216.0


@wp.func
def _value_noise(x: float, y: float, seed: int) -> float:
    """Smooth 2D value noise in [0, 1], features of unit size."""
    fx = wp.floor(x)
    fy = wp.floor(y)
    ix = int(fx)
    iy = int(fy)
    sx = x - fx
    sy = y - fy
    sx = sx * sx * (3.0 - 2.0 * sx)
    sy = sy * sy * (3.0 - 2.0 * sy)
    a = _hash(ix, iy, seed)
    b = _hash(ix + 1, iy, seed)
    c = _hash(ix, iy + 1, seed)
    d = _hash(ix + 1, iy + 1, seed)
    return wp.lerp(wp.lerp(a, b, sx), wp.lerp(c, d, sx), sy)


@wp.func
def _hit_cylinder(o: wp.vec3, d: wp.vec3, cyl: wp.array2d(dtype=float), i: int, tmin: float, tmax: float) -> float:
    ox = o[0] - cyl[i, 0]
    oy = o[1] - cyl[i, 1]
    z0 = cyl[i, 2]
    z1 = cyl[i, 3]
    r = cyl[i, 4]
    best = tmax
    a = d[0] * d[0] + d[1] * d[1]
    if a > 1.0e-12:
        b = ox * d[0] + oy * d[1]
        c = ox * ox + oy * oy - r * r
        disc = b * b - a * c
        if disc >= 0.0:
            s = wp.sqrt(disc)
            t = (-b - s) / a
            z = o[2] + t * d[2]
            if t > tmin and t < best and z >= z0 and z <= z1:
                best = t
            t = (-b + s) / a
            z = o[2] + t * d[2]
            if t > tmin and t < best and z >= z0 and z <= z1:
                best = t
    if wp.abs(d[2]) > 1.0e-12:
        t = (z1 - o[2]) / d[2]
        px = ox + t * d[0]
        py = oy + t * d[1]
        if t > tmin and t < best and px * px + py * py <= r * r:
            best = t
        t = (z0 - o[2]) / d[2]
        px = ox + t * d[0]
        py = oy + t * d[1]
        if t > tmin and t < best and px * px + py * py <= r * r:
            best = t
    if best < tmax:
        return best
    return _MISS


@wp.func
def _hit_sphere(o: wp.vec3, d: wp.vec3, sph: wp.array2d(dtype=float), i: int, tmin: float, tmax: float) -> float:
    oc = o - wp.vec3(sph[i, 0], sph[i, 1], sph[i, 2])
    r = sph[i, 3]
    b = wp.dot(oc, d)
    disc = b * b - (wp.dot(oc, oc) - r * r)
    if disc < 0.0:
        return _MISS
    s = wp.sqrt(disc)
    t = -b - s
    if t <= tmin:
        t = -b + s  # inside the sphere: the exit point is what the camera sees
    if t > tmin and t < tmax:
        return t
    return _MISS


@wp.func
def _box_local(v: wp.vec3, c: float, s: float) -> wp.vec3:
    """World-aligned vector into the frame of a box rotated by yaw (cos c, sin s)."""
    return wp.vec3(c * v[0] + s * v[1], -s * v[0] + c * v[1], v[2])


@wp.func
def _slab(o: float, d: float, h: float) -> wp.vec2:
    if wp.abs(d) < 1.0e-12:
        if wp.abs(o) > h:
            return wp.vec2(1.0, -1.0)  # parallel and outside: empty interval
        return wp.vec2(-_MISS, _MISS)
    ta = (-h - o) / d
    tb = (h - o) / d
    return wp.vec2(wp.min(ta, tb), wp.max(ta, tb))


@wp.func
def _hit_box(o: wp.vec3, d: wp.vec3, box: wp.array2d(dtype=float), i: int, tmin: float, tmax: float) -> float:
    c = box[i, 6]
    s = box[i, 7]
    lo = _box_local(o - wp.vec3(box[i, 0], box[i, 1], box[i, 2]), c, s)
    ld = _box_local(d, c, s)
    sx = _slab(lo[0], ld[0], box[i, 3])
    sy = _slab(lo[1], ld[1], box[i, 4])
    sz = _slab(lo[2], ld[2], box[i, 5])
    t_enter = wp.max(sx[0], wp.max(sy[0], sz[0]))
    t_exit = wp.min(sx[1], wp.min(sy[1], sz[1]))
    if t_enter > t_exit:
        return _MISS
    t = t_enter
    if t <= tmin:
        t = t_exit
    if t > tmin and t < tmax:
        return t
    return _MISS


@wp.func
def _hit_item(
    item: int,
    o: wp.vec3,
    d: wp.vec3,
    tmin: float,
    tmax: float,
    cyl: wp.array2d(dtype=float),
    box: wp.array2d(dtype=float),
    sph: wp.array2d(dtype=float),
) -> float:
    kind = item & 3
    i = item >> 2
    if kind == _KIND_CYLINDER:
        return _hit_cylinder(o, d, cyl, i, tmin, tmax)
    if kind == _KIND_BOX:
        return _hit_box(o, d, box, i, tmin, tmax)
    return _hit_sphere(o, d, sph, i, tmin, tmax)


@wp.func
def _trace_grid(
    o: wp.vec3,
    d: wp.vec3,
    tmin: float,
    tmax: float,
    hit_item: int,
    grid_f: wp.vec4,
    nx: int,
    ny: int,
    base: int,
    zrange: wp.vec2,
    cell_start: wp.array(dtype=int),
    cell_items: wp.array(dtype=int),
    cell_item_z: wp.array(dtype=wp.vec2),
    cyl: wp.array2d(dtype=float),
    box: wp.array2d(dtype=float),
    sph: wp.array2d(dtype=float),
) -> tuple[float, int]:
    """Closest primitive hit in (tmin, tmax), else ``(tmax, hit_item)``: 2D DDA over the xy grid
    (Amanatides & Woo 1987)."""
    best_t = tmax
    best_item = hit_item
    if nx == 0:
        return best_t, best_item
    x0 = grid_f[0]
    y0 = grid_f[1]
    cs = grid_f[2]
    # Clip the ray to the grid's box (xy extent x primitive z-range): rays
    # over the canopy or into the ground near the camera skip the walk.
    sz = _slab(o[2] - 0.5 * (zrange[0] + zrange[1]), d[2], 0.5 * (zrange[1] - zrange[0]))
    sx = _slab(o[0] - (x0 + 0.5 * float(nx) * cs), d[0], 0.5 * float(nx) * cs)
    sy = _slab(o[1] - (y0 + 0.5 * float(ny) * cs), d[1], 0.5 * float(ny) * cs)
    t0 = wp.max(tmin, wp.max(sz[0], wp.max(sx[0], sy[0])))
    t1 = wp.min(tmax, wp.min(sz[1], wp.min(sx[1], sy[1])))
    if t0 >= t1:
        return best_t, best_item
    inv = grid_f[3]
    ix = wp.clamp(int(wp.floor((o[0] + d[0] * t0 - x0) * inv)), 0, nx - 1)
    iy = wp.clamp(int(wp.floor((o[1] + d[1] * t0 - y0) * inv)), 0, ny - 1)
    step_x = 0
    step_y = 0
    t_next_x = float(_MISS)
    t_next_y = float(_MISS)
    dt_x = float(_MISS)
    dt_y = float(_MISS)
    if d[0] > 1.0e-12:
        step_x = 1
        t_next_x = (x0 + float(ix + 1) * cs - o[0]) / d[0]
        dt_x = cs / d[0]
    elif d[0] < -1.0e-12:
        step_x = -1
        t_next_x = (x0 + float(ix) * cs - o[0]) / d[0]
        dt_x = -cs / d[0]
    if d[1] > 1.0e-12:
        step_y = 1
        t_next_y = (y0 + float(iy + 1) * cs - o[1]) / d[1]
        dt_y = cs / d[1]
    elif d[1] < -1.0e-12:
        step_y = -1
        t_next_y = (y0 + float(iy) * cs - o[1]) / d[1]
        dt_y = -cs / d[1]
    t_enter = t0
    while True:
        cell = base + iy * nx + ix
        t_exit = wp.min(wp.min(t_next_x, t_next_y), t1)
        # The ray's height while over this cell: horizontal rays under the
        # canopy skip the canopy spheres without touching their geometry.
        # A skipped primitive cannot be hit here; where it is hit, the ray is
        # over another of its cells.
        za = o[2] + d[2] * t_enter
        zb = o[2] + d[2] * t_exit
        z_lo = wp.min(za, zb) - 1.0e-4
        z_hi = wp.max(za, zb) + 1.0e-4
        for k in range(cell_start[cell], cell_start[cell + 1]):
            zr = cell_item_z[k]
            if zr[0] <= z_hi and zr[1] >= z_lo:
                item = cell_items[k]
                t = _hit_item(item, o, d, tmin, best_t, cyl, box, sph)
                if t < best_t:
                    best_t = t
                    best_item = item
        # A primitive spanning several cells may be hit beyond this cell;
        # only a hit inside it is guaranteed to be the closest.
        if best_t <= t_exit or t_exit >= t1:
            break
        t_enter = t_exit
        if t_next_x < t_next_y:
            ix += step_x
            t_next_x += dt_x
            if ix < 0 or ix >= nx:
                break
        else:
            iy += step_y
            t_next_y += dt_y
            if iy < 0 or iy >= ny:
                break
    return best_t, best_item


@wp.func
def _surface_normal(
    item: int,
    p: wp.vec3,
    cyl: wp.array2d(dtype=float),
    box: wp.array2d(dtype=float),
    sph: wp.array2d(dtype=float),
) -> wp.vec3:
    if item == _ITEM_GROUND:
        return wp.vec3(0.0, 0.0, 1.0)
    kind = item & 3
    i = item >> 2
    if kind == _KIND_SPHERE:
        return wp.normalize(p - wp.vec3(sph[i, 0], sph[i, 1], sph[i, 2]))  # type: ignore[return-value]  # Warp kernel code: Warp's stubs type normalize() as a generic Vector
    if kind == _KIND_CYLINDER:
        rx = p[0] - cyl[i, 0]
        ry = p[1] - cyl[i, 1]
        q = wp.sqrt(rx * rx + ry * ry)
        side_err = wp.abs(q - cyl[i, 4])
        top_err = wp.abs(p[2] - cyl[i, 3])
        bottom_err = wp.abs(p[2] - cyl[i, 2])
        if side_err <= wp.min(top_err, bottom_err) and q > 1.0e-9:
            return wp.vec3(rx / q, ry / q, 0.0)
        if top_err < bottom_err:
            return wp.vec3(0.0, 0.0, 1.0)
        return wp.vec3(0.0, 0.0, -1.0)
    c = box[i, 6]
    s = box[i, 7]
    lp = _box_local(p - wp.vec3(box[i, 0], box[i, 1], box[i, 2]), c, s)
    ax = wp.abs(lp[0]) / box[i, 3]
    ay = wp.abs(lp[1]) / box[i, 4]
    az = wp.abs(lp[2]) / box[i, 5]
    if az >= ax and az >= ay:
        return wp.vec3(0.0, 0.0, wp.sign(lp[2]))
    ln = wp.vec3(wp.sign(lp[0]), 0.0, 0.0)
    if ay > ax:
        ln = wp.vec3(0.0, wp.sign(lp[1]), 0.0)
    # Back to world: the transpose of the yaw rotation in _box_local.
    return wp.vec3(c * ln[0] - s * ln[1], s * ln[0] + c * ln[1], 0.0)


@wp.func
def _texture(
    mat: int,
    item: int,
    local: int,
    p: wp.vec3,
    n: wp.vec3,
    dist: float,
    base: wp.vec3,
    cyl: wp.array2d(dtype=float),
) -> wp.vec3:
    """Procedural variation of the base colour, fixed to the world point (no shimmer as the camera moves).

    ``local``: the primitive's index within its own world, so a trunk or facade looks the same whichever
    other worlds share the batch (``item``'s index runs over all loaded worlds).
    """
    # Fine grain aliases into flicker far away, so it fades out with distance.
    fine = wp.clamp(1.0 - dist / 30.0, 0.0, 1.0)
    i = item >> 2
    if mat == _MAT_GROUND:
        patches = _value_noise(p[0] / 9.0, p[1] / 9.0, 1)
        mid = _value_noise(p[0] / 2.5, p[1] / 2.5, 2)
        grain = _hash(int(wp.floor(p[0] * 8.0)), int(wp.floor(p[1] * 8.0)), 3) - 0.5
        f = 0.72 + 0.4 * patches + 0.18 * mid + 0.25 * fine * grain
        return wp.vec3(base[0] * f * (0.9 + 0.2 * patches), base[1] * f, base[2] * f * (1.1 - 0.2 * patches))
    if mat == _MAT_BARK and (item & 3) == _KIND_CYLINDER:
        angle = wp.atan2(p[1] - cyl[i, 1], p[0] - cyl[i, 0])
        wobble = _value_noise(p[2] * 1.5, float(local), 4)
        ridges = 0.5 + 0.5 * wp.sin(angle * 9.0 + 4.0 * wobble)
        grain = _hash(int(wp.floor(p[2] * 12.0)), local, 5) - 0.5
        return base * (0.7 + 0.45 * ridges + 0.2 * fine * grain)
    if mat == _MAT_LEAVES or mat == _MAT_UNDERGROWTH:
        speck = _hash(int(wp.floor(p[0] * 7.0)), int(wp.floor(p[1] * 7.0)), int(wp.floor(p[2] * 7.0)))
        clump = _value_noise(p[0] * 0.7 + p[2], p[1] * 0.7, 6)
        f = 0.75 + 0.35 * clump + 0.45 * fine * (speck - 0.5)
        return wp.vec3(base[0] * f * (0.85 + 0.3 * speck), base[1] * f, base[2] * f)
    if (mat == _MAT_CONCRETE or mat == _MAT_GLASS) and wp.abs(n[2]) < 0.5:
        # Window grid on facades: 3 m bays, 3.2 m storeys.
        s = p[0] * (-n[1]) + p[1] * n[0]
        bay = s / 3.0
        storey = p[2] / 3.2
        fu = bay - wp.floor(bay)
        fv = storey - wp.floor(storey)
        lit = _hash(int(wp.floor(bay)), int(wp.floor(storey)), local)
        if mat == _MAT_CONCRETE:
            if fu > 0.22 and fu < 0.78 and fv > 0.3 and fv < 0.85:
                return wp.vec3(0.10, 0.13, 0.18) * (0.7 + 0.8 * lit)  # type: ignore[return-value]  # Warp kernel code: vec3 * float is a vec3
            return base * (0.9 + 0.2 * fine * _hash(int(wp.floor(s * 6.0)), int(wp.floor(p[2] * 6.0)), 7))  # type: ignore[return-value]  # Warp kernel code: vec3 * float is a vec3
        if fu < 0.05 or fv < 0.07:
            return wp.vec3(0.55, 0.56, 0.58)
        return base * (0.75 + 0.5 * lit)  # type: ignore[return-value]  # Warp kernel code: vec3 * float is a vec3
    grain = _hash(int(wp.floor(p[0] * 10.0)), int(wp.floor(p[1] * 10.0)), int(wp.floor(p[2] * 10.0))) - 0.5
    return base * (1.0 + 0.2 * fine * grain)  # type: ignore[return-value]  # Warp kernel code: vec3 * float is a vec3


@wp.func
def _sky(d: wp.vec3, zenith: wp.vec3, horizon: wp.vec3, glow: wp.vec3, sun: wp.vec3) -> wp.vec3:
    """Gradient from a light horizon to the zenith colour, brighter towards a low sun."""
    up = wp.sqrt(wp.clamp(d[2], 0.0, 1.0))
    h = wp.length(wp.vec2(d[0], d[1]))
    hs = wp.length(wp.vec2(sun[0], sun[1]))
    facing = 0.0
    if h > 1.0e-6 and hs > 1.0e-6:
        facing = wp.max(0.0, (d[0] * sun[0] + d[1] * sun[1]) / (h * hs))
    facing = facing * facing * facing
    return wp.lerp(horizon + glow * (facing * (1.0 - up)), zenith, up)


@wp.func
def _to_srgb8(c: float, lut: wp.array(dtype=wp.uint8)) -> wp.uint8:
    # Table lookup: three pow() calls a pixel cost as much as shading the sky.
    return lut[int(wp.clamp(c, 0.0, 1.0) * float(_SRGB_STEPS - 1) + 0.5)]


@wp.kernel
def _render_kernel(
    cam_origin: wp.array(dtype=wp.vec3),
    cam_rot: wp.array(dtype=wp.mat33),
    env_world: wp.array(dtype=int),
    intr: wp.vec4,
    near: float,
    far: float,
    use_mesh: int,
    grid_f: wp.array(dtype=wp.vec4),
    grid_i: wp.array2d(dtype=int),
    grid_z: wp.array(dtype=wp.vec2),
    cell_start: wp.array(dtype=int),
    cell_items: wp.array(dtype=int),
    cell_item_z: wp.array(dtype=wp.vec2),
    mesh_ids: wp.array(dtype=wp.uint64),
    face_items: wp.array(dtype=int),
    cyl: wp.array2d(dtype=float),
    box: wp.array2d(dtype=float),
    sph: wp.array2d(dtype=float),
    cyl_mat: wp.array(dtype=int),
    box_mat: wp.array(dtype=int),
    sph_mat: wp.array(dtype=int),
    palette: wp.array2d(dtype=wp.vec3),
    sky_zenith: wp.array(dtype=wp.vec3),
    sky_horizon: wp.array(dtype=wp.vec3),
    sky_glow: wp.array(dtype=wp.vec3),
    sun_dir: wp.array(dtype=wp.vec3),
    sun_rgb: wp.array(dtype=wp.vec3),
    ambient: wp.array(dtype=float),
    fog_density: wp.array(dtype=float),
    fog_colour: wp.array(dtype=wp.vec3),
    srgb_lut: wp.array(dtype=wp.uint8),
    rgb: wp.array4d(dtype=wp.uint8),
    depth: wp.array3d(dtype=float),
    seg: wp.array3d(dtype=wp.uint8),
):
    e, v, u = wp.tid()  # type: ignore[misc]  # Warp kernel code: a 3-d launch's tid() is three ints
    w = env_world[e]
    o = cam_origin[e]
    dc = wp.vec3((float(u) - intr[2]) / intr[0], (float(v) - intr[3]) / intr[1], 1.0)
    # Ray length per unit z-depth: converts the clip planes and the hit back to z-depth.
    dlen = wp.length(dc)
    d = wp.normalize(cam_rot[e] * dc)
    tmin = near * dlen
    best_t = far * dlen
    best_item = int(_ITEM_SKY)
    if d[2] < 0.0 and o[2] > 0.0:
        tg = -o[2] / d[2]
        if tg > tmin and tg < best_t:
            best_t = tg
            best_item = int(_ITEM_GROUND)
    if use_mesh == 0:
        best_t, best_item = _trace_grid(
            o,
            d,
            tmin,
            best_t,
            best_item,
            grid_f[w],
            grid_i[w, 0],
            grid_i[w, 1],
            grid_i[w, 2],
            grid_z[w],
            cell_start,
            cell_items,
            cell_item_z,
            cyl,
            box,
            sph,
        )
    elif mesh_ids[w] != wp.uint64(0):
        q = wp.mesh_query_ray(mesh_ids[w], o + d * tmin, d, best_t - tmin)
        # Warp kernel code: the stubs' MeshQueryRay lacks the fields the kernel language gives it.
        if q.result:  # type: ignore[attr-defined]
            best_t = tmin + q.t  # type: ignore[attr-defined]
            best_item = face_items[grid_i[w, 3] + q.face]  # type: ignore[attr-defined]

    fog = fog_density[w]
    if best_item == _ITEM_SKY:
        col = _sky(d, sky_zenith[w], sky_horizon[w], sky_glow[w], sun_dir[w])
        f = wp.exp(-fog * far * dlen)
        col = col * f + fog_colour[w] * (1.0 - f)
        depth[e, v, u] = far
        seg[e, v, u] = wp.uint8(0)
    else:
        mat = int(_MAT_GROUND)
        local = 0
        if best_item != _ITEM_GROUND:
            kind = best_item & 3
            i = best_item >> 2
            local = i - grid_i[w, 4 + kind]  # grid_i[w, 4:7]: the world's first cylinder, box, sphere
            if kind == _KIND_CYLINDER:
                mat = cyl_mat[i]
            elif kind == _KIND_BOX:
                mat = box_mat[i]
            else:
                mat = sph_mat[i]
        p = o + d * best_t
        base = palette[w, mat]
        col = base
        if mat != _MAT_BEACON:  # the beacon is emissive: unshaded
            n = _surface_normal(best_item, p, cyl, box, sph)
            if wp.dot(n, d) > 0.0:
                n = -n  # seen from inside (camera within a canopy): light the face we see
            tex = _texture(mat, best_item, local, p, n, best_t, base, cyl)
            light = wp.max(wp.dot(n, sun_dir[w]), 0.0)
            col = wp.cw_mul(tex, wp.vec3(ambient[w]) + sun_rgb[w] * light)
        f = wp.exp(-fog * best_t)
        col = col * f + fog_colour[w] * (1.0 - f)
        depth[e, v, u] = best_t / dlen
        seg[e, v, u] = wp.uint8(mat + 1)
    rgb[e, v, u, 0] = _to_srgb8(col[0], srgb_lut)
    rgb[e, v, u, 1] = _to_srgb8(col[1], srgb_lut)
    rgb[e, v, u, 2] = _to_srgb8(col[2], srgb_lut)


# --------------------------------------------------------------------------- #
# Host side: packing worlds into flat arrays
# --------------------------------------------------------------------------- #
@dataclass
class RenderOutput:
    """One batch of images: ``rgb`` ``[E, H, W, 3]`` uint8, ``depth`` ``[E, H, W]`` float32 z-depth (m),
    ``segmentation`` ``[E, H, W]`` uint8 (material id + 1, 0 = sky)."""

    rgb: np.ndarray
    depth: np.ndarray
    segmentation: np.ndarray

    @classmethod
    def empty(cls, envs: int, camera: CameraConfig) -> RenderOutput:
        h, w = camera.height, camera.width
        return cls(
            np.empty((envs, h, w, 3), np.uint8), np.empty((envs, h, w), np.float32), np.empty((envs, h, w), np.uint8)
        )


def _footprints(world: WorldSpec) -> np.ndarray:
    """Axis-aligned bounds ``[P, 6]`` (x0, x1, y0, y1, z0, z1) of cylinders, then boxes, then spheres."""
    c, b, s = world.cylinders, world.boxes, world.spheres
    cyl = np.stack([c[:, 0] - c[:, 4], c[:, 0] + c[:, 4], c[:, 1] - c[:, 4], c[:, 1] + c[:, 4], c[:, 2], c[:, 3]], 1)
    ex = np.abs(b[:, 3] * np.cos(b[:, 6])) + np.abs(b[:, 4] * np.sin(b[:, 6]))
    ey = np.abs(b[:, 3] * np.sin(b[:, 6])) + np.abs(b[:, 4] * np.cos(b[:, 6]))
    box = np.stack([b[:, 0] - ex, b[:, 0] + ex, b[:, 1] - ey, b[:, 1] + ey, b[:, 2] - b[:, 5], b[:, 2] + b[:, 5]], 1)
    r = s[:, 3]
    sph = np.stack([s[:, 0] - r, s[:, 0] + r, s[:, 1] - r, s[:, 1] + r, s[:, 2] - r, s[:, 2] + r], 1)
    return np.concatenate([cyl.reshape(-1, 6), box.reshape(-1, 6), sph.reshape(-1, 6)])


def default_cell_size(world: WorldSpec) -> float:
    """Grid cell edge (m): about one primitive footprint per cell, in [0.5, 16] m."""
    fp = _footprints(world)
    if len(fp) == 0:
        return 1.0
    area = float((fp[:, 1].max() - fp[:, 0].min()) * (fp[:, 3].max() - fp[:, 2].min()))
    return float(np.clip(math.sqrt(max(area, 1e-6) / len(fp)), 0.5, 16.0))


def build_grid(
    world: WorldSpec, items: np.ndarray, cell_size: float
) -> tuple[tuple[float, float, int, int], tuple[float, float], np.ndarray, np.ndarray, np.ndarray]:
    """Uniform xy grid over the primitives' footprints, as CSR.

    ``items[j]`` is the code stored for primitive ``j`` (cylinders, boxes,
    spheres order). Returns ``(x0, y0, nx, ny)``, the z-range, ``cell_start``
    ``[nx * ny + 1]``, ``cell_items`` and their z-ranges ``cell_item_z``
    ``[len(cell_items), 2]``: cell ``iy * nx + ix`` holds
    ``cell_items[cell_start[c]:cell_start[c + 1]]``.
    """
    fp = _footprints(world)
    if len(fp) == 0:
        return (0.0, 0.0, 0, 0), (0.0, 0.0), np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros((0, 2))
    pad = 1e-3
    x0, y0 = fp[:, 0].min() - pad, fp[:, 2].min() - pad
    nx = max(1, int(math.ceil((fp[:, 1].max() + pad - x0) / cell_size)))
    ny = max(1, int(math.ceil((fp[:, 3].max() + pad - y0) / cell_size)))
    ix0 = np.clip(np.floor((fp[:, 0] - x0) / cell_size).astype(np.int64), 0, nx - 1)
    ix1 = np.clip(np.floor((fp[:, 1] - x0) / cell_size).astype(np.int64), 0, nx - 1)
    iy0 = np.clip(np.floor((fp[:, 2] - y0) / cell_size).astype(np.int64), 0, ny - 1)
    iy1 = np.clip(np.floor((fp[:, 3] - y0) / cell_size).astype(np.int64), 0, ny - 1)
    wx = ix1 - ix0 + 1
    counts = wx * (iy1 - iy0 + 1)
    owner = np.repeat(np.arange(len(fp)), counts)
    k = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    cells = (iy0[owner] + k // wx[owner]) * nx + ix0[owner] + k % wx[owner]
    order = np.argsort(cells, kind="stable")
    cell_start = np.zeros(nx * ny + 1, np.int64)
    cell_start[1:] = np.cumsum(np.bincount(cells, minlength=nx * ny))
    zrange = (float(fp[:, 4].min()) - pad, float(fp[:, 5].max()) + pad)
    stored = owner[order]
    return (float(x0), float(y0), nx, ny), zrange, cell_start, items[stored].astype(np.int32), fp[stored, 4:6]


def tessellate(world: WorldSpec, segments: int = 12, rings: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Triangle mesh of the primitives: vertices ``[V, 3]``, triangles ``[F, 3]`` and the owning primitive
    ``[F]`` (index in cylinders, boxes, spheres order)."""
    verts: list[np.ndarray] = []
    tris: list[np.ndarray] = []
    owners: list[np.ndarray] = []
    count = 0

    def add(v: np.ndarray, f: np.ndarray, owner: int) -> None:
        nonlocal count
        verts.append(v)
        tris.append(f + count)
        owners.append(np.full(len(f), owner))
        count += len(v)

    a = np.linspace(0.0, 2.0 * np.pi, segments, endpoint=False)
    ring = np.stack([np.cos(a), np.sin(a)], 1)
    j = np.arange(segments)
    jn = (j + 1) % segments
    side = np.concatenate([np.stack([j, jn, segments + jn], 1), np.stack([j, segments + jn, segments + j], 1)])
    bottom_centre, top_centre = 2 * segments, 2 * segments + 1
    caps = np.concatenate(
        [
            np.stack([np.full(segments, bottom_centre), jn, j], 1),
            np.stack([np.full(segments, top_centre), segments + j, segments + jn], 1),
        ]
    )
    cyl_faces = np.concatenate([side, caps])
    for p, (x, y, z0, z1, r) in enumerate(world.cylinders):
        xy = np.array([x, y]) + r * ring
        rims = [np.c_[xy, np.full(segments, z0)], np.c_[xy, np.full(segments, z1)]]
        v = np.concatenate([*rims, [[x, y, z0], [x, y, z1]]])
        add(v, cyl_faces, p)
    corners = np.array([[sx, sy, sz] for sz in (-1, 1) for sy in (-1, 1) for sx in (-1, 1)], float)
    # fmt: off
    # Kept as a grid (the formatter would put one triangle per line): each pair of triangles is one cube
    # face, -z, +z, -y on the first row and +y, -x, +x on the second.
    box_faces = np.array(
        [[0, 2, 1], [1, 2, 3], [4, 5, 6], [5, 7, 6], [0, 1, 4], [1, 5, 4],
         [2, 6, 3], [3, 6, 7], [0, 4, 2], [2, 4, 6], [1, 3, 5], [3, 7, 5]]
    )
    # fmt: on
    offset = len(world.cylinders)
    for p, (cx, cy, cz, hx, hy, hz, yaw) in enumerate(world.boxes):
        local = corners * [hx, hy, hz]
        c, s = math.cos(yaw), math.sin(yaw)
        v = np.c_[cx + c * local[:, 0] - s * local[:, 1], cy + s * local[:, 0] + c * local[:, 1], cz + local[:, 2]]
        add(v, box_faces, offset + p)
    theta = np.linspace(0.0, np.pi, rings + 1)[1:-1]
    unit = np.concatenate(
        [
            [[0, 0, 1]],
            np.stack(
                [
                    np.outer(np.sin(theta), np.cos(a)),
                    np.outer(np.sin(theta), np.sin(a)),
                    np.outer(np.cos(theta), np.ones(segments)),
                ],
                -1,
            ).reshape(-1, 3),
            [[0, 0, -1]],
        ]
    )
    faces = [[0, 1 + jn[k], 1 + k] for k in range(segments)]
    for r_ in range(rings - 2):
        top, bot = 1 + r_ * segments, 1 + (r_ + 1) * segments
        for k in range(segments):
            faces += [[top + k, top + jn[k], bot + k], [top + jn[k], bot + jn[k], bot + k]]
    last = len(unit) - 1
    faces += [[last, 1 + (rings - 2) * segments + k, 1 + (rings - 2) * segments + jn[k]] for k in range(segments)]
    sph_faces = np.array(faces)
    offset += len(world.boxes)
    for p, (x, y, z, r) in enumerate(world.spheres):
        add(np.array([x, y, z]) + r * unit, sph_faces, offset + p)
    if not verts:
        return np.zeros((0, 3)), np.zeros((0, 3), np.int32), np.zeros(0, np.int64)
    return np.concatenate(verts), np.concatenate(tris).astype(np.int32), np.concatenate(owners)


def _lighting(world: WorldSpec) -> dict[str, np.ndarray]:
    """Per-world sky, sun and fog constants (linear RGB) from its conditions."""
    cond = world.conditions
    sun, intensity = cond.sun()
    zenith = np.asarray(world.palette["sky"], float)
    horizon = zenith + (1.0 - zenith) * 0.45
    # Sun elevation under ~20 deg (sin 0.35) turns the horizon orange and the light warm.
    dusk = float(np.clip((0.35 - sun[2]) / 0.3, 0.0, 1.0))
    horizon = horizon + (_DUSK_HORIZON - horizon) * 0.55 * dusk
    zenith = zenith + (_DUSK_ZENITH - zenith) * 0.35 * dusk
    brightness = 0.4 + 0.6 * intensity
    tint = np.ones(3) + (_DUSK_SUNLIGHT - 1.0) * dusk
    return {
        "sky_zenith": zenith * brightness,
        "sky_horizon": horizon * brightness,
        "sky_glow": np.array([0.45, 0.22, 0.06]) * dusk * brightness,
        "sun_dir": sun,
        "sun_rgb": tint * 0.75 * intensity,
        "ambient": np.array(0.25 + 0.2 * intensity),
        "fog_density": np.array(cond.fog_density),
        "fog_colour": horizon * brightness,
    }


def linear_to_srgb8(linear: np.ndarray) -> np.ndarray:
    """Linear intensities in [0, 1] to 8-bit display values (gamma 2.2), as the renderer writes them."""
    return (np.clip(linear, 0.0, 1.0) ** (1.0 / 2.2) * 255.0 + 0.5).astype(np.uint8)


def fog_colour_srgb(world: WorldSpec) -> np.ndarray:
    """The colour fogged distances converge to, as uint8 sRGB."""
    return linear_to_srgb8(_lighting(world)["fog_colour"])


def resolve_world_ids(world_ids: np.ndarray | None, envs: int, worlds: int) -> np.ndarray:
    """Which world each env renders: as given, else all world 0 (one world) or env i -> world i (one per env)."""
    if world_ids is None:
        if worlds == 1:
            return np.zeros(envs, np.int32)
        if worlds == envs:
            return np.arange(envs, dtype=np.int32)
        raise ValueError(f"{envs} envs and {worlds} worlds: pass world_ids to say which env renders which world")
    ids = np.asarray(world_ids, np.int32).reshape(-1)
    if len(ids) != envs:
        raise ValueError(f"{envs} camera poses but {len(ids)} world ids")
    if envs and (ids.min() < 0 or ids.max() >= worlds):
        raise ValueError(f"world ids must be in [0, {worlds}), got {ids.min()}..{ids.max()}")
    return ids


def init_warp() -> None:
    """``wp.init()``, quiet where no NVIDIA driver exists.

    Warp's C++ core prints "Warp CUDA warning: Could not find or load the NVIDIA CUDA driver" to stderr
    in every process that initialises it, the render workers included (a dozen lines per `make demo`).
    Where the loader finds no ``libcuda`` the warning only says that rendering runs on the CPU, which
    :attr:`Renderer.device` says too, so it is kept out of the output. ``LNN_NAV_WARP_VERBOSE=1`` shows it.
    """
    if ctypes.util.find_library("cuda") is not None or os.environ.get("LNN_NAV_WARP_VERBOSE"):
        wp.init()
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            wp.init()
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _default_device() -> str:
    return "cuda:0" if wp.get_cuda_device_count() > 0 else "cpu"


class Renderer:
    """Ray-casts RGB, z-depth and segmentation for a batch of envs on one Warp device.

    ``worlds``: one world or a list; env ``e`` renders ``worlds[world_ids[e]]``.
    Geometry is uploaded once (and again on :meth:`set_world`); a render call
    uploads only the camera poses. ``cell_size`` overrides the grid cell edge
    (m) for every world.
    """

    def __init__(
        self,
        worlds: WorldSpec | Sequence[WorldSpec],
        camera: CameraConfig | None = None,
        *,
        device: str | None = None,
        backend: str = "grid",
        cell_size: float | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown render backend '{backend}'; expected one of {', '.join(BACKENDS)}")
        init_warp()
        self.camera = camera or CameraConfig()
        self.device = device or _default_device()
        self.backend = backend
        self.cell_size = cell_size
        self._worlds: list[WorldSpec] = [worlds] if isinstance(worlds, WorldSpec) else list(worlds)
        if not self._worlds:
            raise ValueError("Renderer needs at least one world")
        self._launches: dict[int, tuple[Any, dict[str, wp.array], dict[str, np.ndarray]]] = {}
        self._upload()

    @property
    def worlds(self) -> tuple[WorldSpec, ...]:
        return tuple(self._worlds)

    def set_world(self, index: int, world: WorldSpec) -> None:
        """Replace world ``index`` (a new episode's world, or new conditions) and re-upload."""
        if not 0 <= index < len(self._worlds):
            raise IndexError(f"world index {index} out of range for {len(self._worlds)} world(s)")
        self._worlds[index] = world
        self._upload()

    def _upload(self) -> None:
        prims: dict[str, list[np.ndarray]] = {k: [] for k in ("cyl", "box", "sph", "cyl_mat", "box_mat", "sph_mat")}
        grid_f, grid_i, grid_z, starts, items_all, items_z = [], [], [], [], [], []
        light: dict[str, list[np.ndarray]] = {}
        palettes = []
        meshes, mesh_ids, face_items = [], [], []
        n_cyl = n_box = n_sph = n_cells = n_items = n_faces = 0
        for world in self._worlds:
            c, b, s = world.cylinders, world.boxes, world.spheres
            prims["cyl"].append(c)
            prims["box"].append(np.c_[b[:, :6], np.cos(b[:, 6]), np.sin(b[:, 6])])
            prims["sph"].append(s)
            prims["cyl_mat"].append(world.cylinder_materials)
            prims["box_mat"].append(world.box_materials)
            prims["sph_mat"].append(world.sphere_materials)
            codes = np.concatenate(
                [
                    (n_cyl + np.arange(len(c))) * 4 + 0,
                    (n_box + np.arange(len(b))) * 4 + 1,
                    (n_sph + np.arange(len(s))) * 4 + 2,
                ]
            ).astype(np.int64)
            cs = self.cell_size or default_cell_size(world)
            (x0, y0, nx, ny), zr, start, items, item_z = build_grid(world, codes, cs)
            grid_f.append([x0, y0, cs, 1.0 / cs])
            grid_z.append(zr)
            grid_i.append([nx, ny, n_cells, n_faces, n_cyl, n_box, n_sph])
            starts.append((start[:-1] if nx else start[:0]) + n_items)
            items_all.append(items)
            items_z.append(item_z)
            n_cells += nx * ny
            n_items += len(items)
            if self.backend == "mesh":
                verts, tris, owner = tessellate(world)
                if len(tris):
                    mesh = wp.Mesh(
                        points=wp.array(verts.astype(np.float32), dtype=wp.vec3, device=self.device),
                        indices=wp.array(tris.reshape(-1), dtype=int, device=self.device),
                    )
                    meshes.append(mesh)
                    mesh_ids.append(mesh.id)
                    face_items.append(codes[owner])
                    n_faces += len(tris)
                else:
                    mesh_ids.append(0)
            n_cyl, n_box, n_sph = n_cyl + len(c), n_box + len(b), n_sph + len(s)
            for k, v in _lighting(world).items():
                light.setdefault(k, []).append(v)
            palettes.append(world.material_colours())
        starts.append(np.array([n_items]))
        dev = self.device

        def arr(data: Any, dtype: Any, width: int = 0) -> wp.array:
            a = np.asarray(data, dtype=np.int32 if dtype is int else np.float32)
            if width:
                # Warp arrays cannot be empty of rows here: pad with an unused one.
                a = a.reshape(-1, width)
                if len(a) == 0:
                    a = np.zeros((1, width), a.dtype)
            elif a.size == 0:
                a = np.zeros(1, a.dtype)
            return wp.array(a, dtype=dtype, device=dev)

        self._arrays = {
            "grid_f": arr(grid_f, wp.vec4),
            "grid_i": arr(grid_i, int, 7),
            "grid_z": arr(grid_z, wp.vec2),
            "cell_start": arr(np.concatenate(starts), int),
            "cell_items": arr(np.concatenate(items_all), int),
            "cell_item_z": arr(np.concatenate(items_z), wp.vec2, 2),
            "mesh_ids": wp.array(
                np.asarray(mesh_ids or [0] * len(self._worlds), np.uint64), dtype=wp.uint64, device=dev
            ),
            "face_items": arr(np.concatenate(face_items) if face_items else [], int),
            "cyl": arr(np.concatenate(prims["cyl"]), float, 5),
            "box": arr(np.concatenate(prims["box"]), float, 8),
            "sph": arr(np.concatenate(prims["sph"]), float, 4),
            "cyl_mat": arr(np.concatenate(prims["cyl_mat"]), int),
            "box_mat": arr(np.concatenate(prims["box_mat"]), int),
            "sph_mat": arr(np.concatenate(prims["sph_mat"]), int),
            "palette": wp.array(np.stack(palettes).astype(np.float32), dtype=wp.vec3, device=dev),
            "srgb_lut": wp.array(linear_to_srgb8(np.linspace(0.0, 1.0, int(_SRGB_STEPS))), dtype=wp.uint8, device=dev),
        }
        for k, per_world in light.items():
            self._arrays[k] = arr(np.stack(per_world), float if np.ndim(per_world[0]) == 0 else wp.vec3)
        self._meshes = meshes  # the BVHs live as long as their ids are in use
        self._launches = {}  # recorded launches point at the old arrays

    def render(
        self,
        positions: np.ndarray,
        quaternions: np.ndarray,
        world_ids: np.ndarray | None = None,
        out: RenderOutput | None = None,
    ) -> RenderOutput:
        """Render E envs from body poses: ``positions [E, 3]`` (world, m), ``quaternions [E, 4]`` (w, x, y, z,
        body FLU -> world ENU), ``world_ids [E]`` (default: world 0 with one world, env i -> world i with
        one world per env; see :func:`resolve_world_ids`). ``out`` receives the images if given."""
        origins, rotations = camera_pose(positions, quaternions, self.camera)
        return self.render_cameras(origins, rotations, world_ids, out)

    def render_cameras(
        self,
        origins: np.ndarray,
        rotations: np.ndarray,
        world_ids: np.ndarray | None = None,
        out: RenderOutput | None = None,
    ) -> RenderOutput:
        """Render from camera poses (:func:`~lnn_nav.sim.camera.camera_pose`): ``origins [E, 3]``,
        rotations world <- optical ``[E, 3, 3]``."""
        origins = np.asarray(origins, np.float32).reshape(-1, 3)
        envs = len(origins)
        ids = resolve_world_ids(world_ids, envs, len(self._worlds))
        if envs == 0:
            return out if out is not None else RenderOutput.empty(0, self.camera)
        launch, buffers, views = self._launch_for(envs)
        inputs = (origins, np.asarray(rotations, np.float32).reshape(-1, 3, 3), ids)
        for name, value in zip(("origins", "rotations", "world_ids"), inputs):
            if views:
                views[name][...] = value  # CPU: write through a cached view, cheaper than assign()
            else:
                buffers[name].assign(value)
        launch.launch()
        names = ("rgb", "depth", "segmentation")
        images = [views[name] for name in names] if views else [buffers[name].numpy() for name in names]
        if out is None:
            if views:
                images = [im.copy() for im in images]  # the views are overwritten by the next call
            return RenderOutput(*images)
        for target, im in zip((out.rgb, out.depth, out.segmentation), images):
            target[...] = im
        return out

    def _launch_for(self, envs: int) -> tuple[Any, dict[str, wp.array], dict[str, np.ndarray]]:
        """A recorded kernel launch for ``envs`` envs, its pose/image buffers and, on CPU, NumPy views of them.

        Packing ~30 kernel arguments costs a few hundred microseconds a call,
        as much as rendering a small frame; a recorded launch skips it.
        """
        cached = self._launches.get(envs)
        if cached is not None:
            return cached
        cam, dev, a = self.camera, self.device, self._arrays
        h, w = cam.height, cam.width
        buffers = {
            "origins": wp.zeros(envs, dtype=wp.vec3, device=dev),
            "rotations": wp.zeros(envs, dtype=wp.mat33, device=dev),
            "world_ids": wp.zeros(envs, dtype=int, device=dev),
            "rgb": wp.zeros((envs, h, w, 3), dtype=wp.uint8, device=dev),
            "depth": wp.zeros((envs, h, w), dtype=float, device=dev),
            "segmentation": wp.zeros((envs, h, w), dtype=wp.uint8, device=dev),
        }
        fx, fy, cx, cy = cam.intrinsics()
        launch = wp.launch(
            _render_kernel,
            dim=(envs, h, w),
            inputs=[
                buffers["origins"],
                buffers["rotations"],
                buffers["world_ids"],
                wp.vec4(fx, fy, cx, cy),
                float(cam.near),
                float(cam.far),
                int(self.backend == "mesh"),
                a["grid_f"],
                a["grid_i"],
                a["grid_z"],
                a["cell_start"],
                a["cell_items"],
                a["cell_item_z"],
                a["mesh_ids"],
                a["face_items"],
                a["cyl"],
                a["box"],
                a["sph"],
                a["cyl_mat"],
                a["box_mat"],
                a["sph_mat"],
                a["palette"],
                a["sky_zenith"],
                a["sky_horizon"],
                a["sky_glow"],
                a["sun_dir"],
                a["sun_rgb"],
                a["ambient"],
                a["fog_density"],
                a["fog_colour"],
                a["srgb_lut"],
                buffers["rgb"],
                buffers["depth"],
                buffers["segmentation"],
            ],
            device=dev,
            record_cmd=True,
        )
        views = {k: b.numpy() for k, b in buffers.items()} if wp.get_device(dev).is_cpu else {}
        self._launches[envs] = (launch, buffers, views)
        return launch, buffers, views


# --------------------------------------------------------------------------- #
# Process pool for CPU rendering
# --------------------------------------------------------------------------- #
_Layout = dict[str, tuple[int, tuple[int, ...], np.dtype]]


def _layout(capacity: int, camera: CameraConfig) -> _Layout:
    """Offsets of the shared-memory arrays (inputs, then outputs), 64-byte aligned."""
    h, w = camera.height, camera.width
    specs = [
        ("positions", (capacity, 3), np.float64),
        ("quaternions", (capacity, 4), np.float64),
        ("world_ids", (capacity,), np.int32),
        ("rgb", (capacity, h, w, 3), np.uint8),
        ("depth", (capacity, h, w), np.float32),
        ("segmentation", (capacity, h, w), np.uint8),
    ]
    layout, offset = {}, 0
    for name, shape, dtype in specs:
        layout[name] = (offset, shape, np.dtype(dtype))
        offset += -(-int(np.prod(shape)) * np.dtype(dtype).itemsize // 64) * 64
    layout["_size"] = (offset, (), np.dtype(np.uint8))
    return layout


def _views(shm: shared_memory.SharedMemory, layout: _Layout) -> dict[str, np.ndarray]:
    return {
        name: np.ndarray(shape, dtype, buffer=shm.buf, offset=off)
        for name, (off, shape, dtype) in layout.items()
        if name != "_size"
    }


_INHERITED_WARP_CONFIG = ("kernel_cache_dir", "log_level", "mode")


def _worker_main(conn: Any, setup_name: str) -> None:
    """Worker process: owns one CPU Renderer and renders env slices into shared memory on request."""
    shm: shared_memory.SharedMemory | None = None
    views: dict[str, np.ndarray] = {}
    try:
        setup = shared_memory.SharedMemory(name=setup_name)
        try:
            # buf is None only after close()
            worlds, camera, backend, cell_size, warp_config = pickle.loads(cast(memoryview, setup.buf))
        finally:
            setup.close()
        cache = warp_config.pop("kernel_cache_dir")
        if cache is not None and os.path.basename(cache) == wp.config.version:
            # After init the parent's setting reads <base>/<version>; init appends the version again.
            cache = os.path.dirname(cache)
        wp.config.kernel_cache_dir = cache
        for key, value in warp_config.items():
            setattr(wp.config, key, value)
        renderer = Renderer(worlds, camera, device="cpu", backend=backend, cell_size=cell_size)
        # Load (or compile) the kernel now, so the first real call is not slow.
        renderer.render(np.array([[0.0, 0.0, 1.0]]), np.array([[1.0, 0.0, 0.0, 0.0]]), world_ids=np.zeros(1))
        conn.send(("ok", None))
    except Exception:  # noqa: BLE001 - the parent re-raises it with the traceback
        conn.send(("error", traceback.format_exc()))
        return
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            break
        cmd = msg[0]
        if cmd == "close":
            break
        try:
            if cmd == "attach":
                views = {}
                if shm is not None:
                    shm.close()
                shm = shared_memory.SharedMemory(name=msg[1])
                views = _views(shm, _layout(msg[2], camera))
            elif cmd == "render":
                lo, hi = msg[1], msg[2]
                out = RenderOutput(views["rgb"][lo:hi], views["depth"][lo:hi], views["segmentation"][lo:hi])
                renderer.render(views["positions"][lo:hi], views["quaternions"][lo:hi], views["world_ids"][lo:hi], out)
            elif cmd == "world":
                renderer.set_world(msg[1], msg[2])
            conn.send(("ok", None))
        except Exception:  # noqa: BLE001
            conn.send(("error", traceback.format_exc()))
    views = {}
    if shm is not None:
        shm.close()
    conn.close()


class RenderPool:
    """Batched rendering across processes on CPU (Warp runs a CPU kernel on one thread).

    Envs are split into contiguous slices, one per worker process; each worker
    holds its own Warp arrays and writes into shared memory, so no image is
    pickled. With ``workers <= 1``, or on CUDA, rendering happens in-process.
    Use as a context manager or call :meth:`close`. Workers are spawned
    processes, so a script that builds a pool must guard its entry point
    with ``if __name__ == "__main__":``.
    """

    def __init__(
        self,
        worlds: WorldSpec | Sequence[WorldSpec],
        camera: CameraConfig | None = None,
        workers: int = 2,
        *,
        device: str | None = None,
        backend: str = "grid",
        cell_size: float | None = None,
        start_method: str = "spawn",
        startup_timeout: float = 300.0,
    ) -> None:
        self.camera = camera or CameraConfig()
        self._worlds = [worlds] if isinstance(worlds, WorldSpec) else list(worlds)
        init_warp()
        self.device = device or _default_device()
        self._local: Renderer | None = None
        self._procs: list[Any] = []
        self._conns: list[Any] = []
        self._shm: shared_memory.SharedMemory | None = None
        self._views: dict[str, np.ndarray] = {}
        self._capacity = 0
        if workers <= 1 or not wp.get_device(self.device).is_cpu:
            self._local = Renderer(self._worlds, self.camera, device=self.device, backend=backend, cell_size=cell_size)
            self.workers = 1
            return
        if backend not in BACKENDS:
            raise ValueError(f"unknown render backend '{backend}'; expected one of {', '.join(BACKENDS)}")
        self.workers = workers
        ctx = mp.get_context(start_method)
        # The worlds reach the workers through shared memory, not as Process
        # arguments: spawn writes those into a pipe the child reads only after
        # importing the caller's main module, and a large write would block
        # forever if that import failed or hung.
        # Workers share the parent's kernel cache (no second compile) and verbosity.
        warp_config = {key: getattr(wp.config, key) for key in _INHERITED_WARP_CONFIG}
        payload = pickle.dumps((self._worlds, self.camera, backend, cell_size, warp_config))
        setup = shared_memory.SharedMemory(create=True, size=len(payload))
        cast(memoryview, setup.buf)[: len(payload)] = payload  # buf is None only after close()
        try:
            for _ in range(workers):
                parent, child = ctx.Pipe()
                # typeshed's BaseContext (get_context of a str) lacks Process; every concrete context has it.
                proc = ctx.Process(target=_worker_main, args=(child, setup.name), daemon=True)  # type: ignore[attr-defined]
                proc.start()
                child.close()
                self._procs.append(proc)
                self._conns.append(parent)
            self._wait(range(workers), timeout=startup_timeout)
        except BaseException:
            self.close()
            raise
        finally:
            setup.close()
            setup.unlink()

    @property
    def worlds(self) -> tuple[WorldSpec, ...]:
        return tuple(self._worlds)

    def _wait(self, indices: Sequence[int], timeout: float | None = None) -> None:
        """Collect one reply from each worker; a dead or silent worker closes the pool."""
        errors = []
        deadline = None if timeout is None else time.monotonic() + timeout
        for i in indices:
            conn, proc = self._conns[i], self._procs[i]
            problem = None
            while problem is None and not conn.poll(0.5):
                if not proc.is_alive():
                    problem = f"exited with code {proc.exitcode}"
                elif deadline is not None and time.monotonic() > deadline:
                    problem = f"did not start within {timeout:.0f} s"
            if problem is None:
                try:
                    status, detail = conn.recv()
                except EOFError:
                    problem = "closed its pipe"
            if problem is not None:
                self.close()
                raise RuntimeError(
                    f"render worker {i} {problem}; workers are spawned, so a script that runs work at "
                    "import time must guard its entry point with `if __name__ == '__main__':`"
                )
            if status != "ok":
                errors.append(f"render worker {i} failed:\n{detail}")
        if errors:
            raise RuntimeError("\n".join(errors))

    def _ensure_capacity(self, envs: int) -> None:
        if envs <= self._capacity:
            return
        capacity = max(envs, 2 * self._capacity)
        layout = _layout(capacity, self.camera)
        shm = shared_memory.SharedMemory(create=True, size=layout["_size"][0])
        for conn in self._conns:
            conn.send(("attach", shm.name, capacity))
        self._wait(range(len(self._conns)))
        self._release_shm()
        self._shm, self._views, self._capacity = shm, _views(shm, layout), capacity

    def _release_shm(self) -> None:
        self._views = {}
        if self._shm is not None:
            self._shm.close()
            self._shm.unlink()
            self._shm = None

    def set_world(self, index: int, world: WorldSpec) -> None:
        """Replace world ``index`` in every worker."""
        if not 0 <= index < len(self._worlds):
            raise IndexError(f"world index {index} out of range for {len(self._worlds)} world(s)")
        self._worlds[index] = world
        if self._local is not None:
            self._local.set_world(index, world)
            return
        for conn in self._conns:
            conn.send(("world", index, world))
        self._wait(range(len(self._conns)))

    def render(
        self, positions: np.ndarray, quaternions: np.ndarray, world_ids: np.ndarray | None = None
    ) -> RenderOutput:
        """Same contract as :meth:`Renderer.render`; the arrays returned are the caller's to keep."""
        if self._local is not None:
            return self._local.render(positions, quaternions, world_ids)
        if not self._conns:
            raise RuntimeError("RenderPool is closed")
        pos = np.asarray(positions, np.float64).reshape(-1, 3)
        quat = np.asarray(quaternions, np.float64).reshape(-1, 4)
        envs = len(pos)
        if len(quat) != envs:
            raise ValueError(f"{envs} positions but {len(quat)} quaternions")
        ids = resolve_world_ids(world_ids, envs, len(self._worlds))
        if envs == 0:
            return RenderOutput.empty(0, self.camera)
        self._ensure_capacity(envs)
        v = self._views
        v["positions"][:envs], v["quaternions"][:envs], v["world_ids"][:envs] = pos, quat, ids
        bounds = np.linspace(0, envs, min(self.workers, envs) + 1).round().astype(int)
        active = range(len(bounds) - 1)
        for i in active:
            self._conns[i].send(("render", int(bounds[i]), int(bounds[i + 1])))
        self._wait(active)
        return RenderOutput(v["rgb"][:envs].copy(), v["depth"][:envs].copy(), v["segmentation"][:envs].copy())

    def close(self) -> None:
        """Stop the workers and free the shared memory; safe to call twice."""
        for conn in self._conns:
            try:
                conn.send(("close",))
            except (BrokenPipeError, OSError):
                pass
        for proc in self._procs:
            proc.join(timeout=5.0)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5.0)
        for conn in self._conns:
            conn.close()
        self._conns, self._procs = [], []
        self._release_shm()
        self._local = None

    def __enter__(self) -> RenderPool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_procs", None) or getattr(self, "_shm", None) is not None:
            try:
                self.close()
            except Exception:  # noqa: BLE001 - at interpreter exit the modules close() needs may be gone
                pass


__all__ = [
    "BACKENDS",
    "RenderOutput",
    "RenderPool",
    "Renderer",
    "build_grid",
    "default_cell_size",
    "fog_colour_srgb",
    "linear_to_srgb8",
    "resolve_world_ids",
    "tessellate",
]
