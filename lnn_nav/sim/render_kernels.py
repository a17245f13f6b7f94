"""The Warp kernel that ray-casts worlds, and its device functions (see :mod:`lnn_nav.sim.render`).

One Warp thread per (env, pixel) casts a primary ray against the world's
analytic primitives (vertical cylinders with caps, boxes rotated about z,
spheres) and the ground plane ``z = 0``, then shades the closest hit:
season-palette base colour x procedural texture x (ambient + Lambert sun),
exponential fog, a sky gradient with a dusk tint, emissive beacons. The grid
walk (2D DDA over CSR cells) and the mesh query (``wp.mesh_query_ray``) are
the two acceleration paths.
"""

from __future__ import annotations

import warp as wp

from lnn_nav.sim.world import MATERIAL_ID

# Warp prints a banner and a line per module load; a simulator stepping at
# 15 Hz would bury the user's own logs under them. (camera and world above
# do not use Warp, so they may be imported before this.)
wp.config.quiet = True  # type: ignore[attr-defined]  # Warp < 1.0's switch; harmless (unused) in 1.x
wp.config.log_level = wp.LOG_WARNING

# Rendering is not differentiated; skipping adjoint code halves the compile time.
wp.set_module_options({"enable_backward": False})

# Hit item encoding: primitive index * 4 + kind; the ground and sky are negative.
_KIND_CYLINDER = wp.constant(0)
_KIND_BOX = wp.constant(1)
_KIND_SPHERE = wp.constant(2)
_ITEM_SKY = wp.constant(-1)
_ITEM_GROUND = wp.constant(-2)
_MISS = wp.constant(1.0e30)
SRGB_STEPS = wp.constant(4096)
_MAT_GROUND = wp.constant(MATERIAL_ID["ground"])
_MAT_BARK = wp.constant(MATERIAL_ID["bark"])
_MAT_LEAVES = wp.constant(MATERIAL_ID["leaves"])
_MAT_UNDERGROWTH = wp.constant(MATERIAL_ID["undergrowth"])
_MAT_CONCRETE = wp.constant(MATERIAL_ID["concrete"])
_MAT_GLASS = wp.constant(MATERIAL_ID["glass"])
_MAT_BEACON = wp.constant(MATERIAL_ID["beacon"])


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
    return lut[int(wp.clamp(c, 0.0, 1.0) * float(SRGB_STEPS - 1) + 0.5)]


@wp.kernel
def render_kernel(
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
