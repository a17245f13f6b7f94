// The simulator camera's CPU ray caster: the grid path of lnn_nav/sim/render_kernels.py in C++.
//
// Why a second implementation: Warp's CPU backend runs a kernel's threads one after another through a
// generic per-thread entry (argument structs, strided array indexing, no vectorisation), which held
// 128x96 frames to ~2.8 M rays/s per core. This file casts the same rays with the same float32
// operations in the same order, so its images are the Warp kernel's bit for bit (tests/test_sim_raycast.py):
//   * every expression keeps the Warp code's evaluation order and float32 rounding; the build passes
//     -ffp-contract=off so no multiply-add is fused (Warp's CPU code fuses none: the frames agree);
//   * the transcendental functions are the C library's (sinf, expf, atan2f), the ones Warp's CPU
//     builtins call, resolved in the same process;
//   * min/max/clamp are Warp's own expressions, sign() is x < 0 ? -1 : 1.
// Speed: no per-thread argument and stride handling, min/max inline (as calls they were a fifth of the
// frame), each cell's primitives visited from the lowest up so the walk stops at the first that starts
// above the ray (ties broken as Warp breaks them), and a footprint test before each exact one: 1.6x Warp's
// on one core. By default the rays go further from Warp's order: a camera's rays are cast in columns that
// share one candidate list (Caster::camera), four rays at a time through the cheap tests, the exact tests
// still the walk's own, so every hit is the same float (ties, where order decides, are walked): another
// 1.6x. LNN_NAV_RAY_COLUMN=0 walks every ray as the Warp kernel does.
//
// Plain C ABI (ctypes), no Python or torch headers: lnn_nav.sim stands alone.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#define RC_EXPORT __attribute__((visibility("default")))

namespace {

constexpr float kMiss = 1.0e30f;
// The footprint tests' slack on a disc's squared radius, per squared metre of the disc's distance from the
// ray's origin: far above the exact tests' float error there, so a rejected item could not have been hit.
constexpr float kFootprintSlack = 1.0e-5f;
constexpr int kSky = -1;
constexpr int kGround = -2;
constexpr int kCylinder = 0;
constexpr int kBox = 1;
constexpr int kSphere = 2;

// min/max as Warp's CPU builtins compute them (warp/native/builtin.h, _wp_native_fmin/fmax): the first
// argument on equality, the non-NaN one otherwise; inline (as library calls they were a fifth of the frame).
inline float fmin_(float a, float b) { return (a <= b) ? a : ((b == b) ? b : a); }
inline float fmax_(float a, float b) { return (a >= b) ? a : ((b == b) ? b : a); }
inline float clampf(float x, float a, float b) { return fmin_(fmax_(a, x), b); }
inline int clampi(int x, int a, int b) { return x < a ? a : (x > b ? b : x); }
inline float signf(float x) { return x < 0.0f ? -1.0f : 1.0f; }
// std::nextafter(x, kMiss) without the library call (one per exact test where ties are watched): for
// 0 < x < kMiss, as every hit distance here, the next float up is the next bit pattern.
inline float next_up(float x) {
  if (!(x > 0.0f && x < kMiss)) return std::nextafter(x, kMiss);
  uint32_t bits;
  __builtin_memcpy(&bits, &x, sizeof bits);
  bits += 1u;
  __builtin_memcpy(&x, &bits, sizeof bits);
  return x;
}

// Four floats as one vector (GCC/Clang vector extensions: SSE2 on x86-64, NEON on aarch64), for the cheap
// tests that decide which rays need an exact intersection; the exact tests stay scalar.
typedef float F4 __attribute__((vector_size(16)));
typedef int32_t I4 __attribute__((vector_size(16)));
inline bool any(I4 m) { return (m[0] | m[1] | m[2] | m[3]) != 0; }
inline F4 vsel(I4 m, F4 x, F4 y) {
  I4 xi, yi;
  __builtin_memcpy(&xi, &x, sizeof xi);
  __builtin_memcpy(&yi, &y, sizeof yi);
  I4 ri = (m & xi) | (~m & yi);
  F4 r;
  __builtin_memcpy(&r, &ri, sizeof r);
  return r;
}
inline F4 vmin(F4 x, F4 y) { return vsel(x <= y, x, y); }
inline F4 vmax(F4 x, F4 y) { return vsel(x >= y, x, y); }
inline F4 vabs(F4 x) { return vsel(x < 0.0f, -x, x); }

struct V3 {
  float x, y, z;
};

inline V3 v3(float x, float y, float z) { return V3{x, y, z}; }
inline float dot(V3 a, V3 b) { return a.x * b.x + a.y * b.y + a.z * b.z; }
inline V3 normalize(V3 a) {
  float l = std::sqrt(a.x * a.x + a.y * a.y + a.z * a.z);
  if (l > 0.0f) return V3{a.x / l, a.y / l, a.z / l};
  return V3{0.0f, 0.0f, 0.0f};
}
inline V3 scale(V3 a, float s) { return V3{a.x * s, a.y * s, a.z * s}; }

float hash3(int ix, int iy, int iz) {
  uint32_t h = static_cast<uint32_t>(ix) * 73856093u ^ static_cast<uint32_t>(iy) * 19349663u ^
               static_cast<uint32_t>(iz) * 83492791u;
  h = (h ^ (h >> 13u)) * 668265261u;
  h = h ^ (h >> 15u);
  return static_cast<float>(h & 16777215u) / 16777216.0f;
}

inline float lerp(float a, float b, float t) { return a * (1.0f - t) + b * t; }

// The four lattice hashes of the last cell value_noise looked up, for one seed: neighbouring pixels mostly
// fall in the same cell (the ground's cells are 9 m and 2.5 m wide), and a hash is a pure function.
struct NoiseCell {
  int ix = 0, iy = 0;
  bool valid = false;
  float a = 0.0f, b = 0.0f, c = 0.0f, d = 0.0f;
};

float value_noise(float x, float y, int seed, NoiseCell& cell) {
  float fx = std::floor(x);
  float fy = std::floor(y);
  int ix = static_cast<int>(fx);
  int iy = static_cast<int>(fy);
  float sx = x - fx;
  float sy = y - fy;
  sx = sx * sx * (3.0f - 2.0f * sx);
  sy = sy * sy * (3.0f - 2.0f * sy);
  if (!cell.valid || cell.ix != ix || cell.iy != iy) {
    cell.a = hash3(ix, iy, seed);
    cell.b = hash3(ix + 1, iy, seed);
    cell.c = hash3(ix, iy + 1, seed);
    cell.d = hash3(ix + 1, iy + 1, seed);
    cell.ix = ix;
    cell.iy = iy;
    cell.valid = true;
  }
  return lerp(lerp(cell.a, cell.b, sx), lerp(cell.c, cell.d, sx), sy);
}

struct Slab {
  float lo, hi;
};

inline Slab slab(float o, float d, float h) {
  if (std::fabs(d) < 1.0e-12f) {
    if (std::fabs(o) > h) return Slab{1.0f, -1.0f};
    return Slab{-kMiss, kMiss};
  }
  float ta = (-h - o) / d;
  float tb = (h - o) / d;
  return Slab{fmin_(ta, tb), fmax_(ta, tb)};
}

}  // namespace

extern "C" {

// Everything a render call reads, as the Python side lays it out (lnn_nav/sim/render.py): the Warp
// arrays' host buffers, so both paths read the same memory. Shapes as in render_kernel's arguments.
struct RcArgs {
  // per call (the launch's buffers)
  const float* cam_origin;  // [E, 3]
  const float* cam_rot;     // [E, 3, 3] world <- optical, row-major
  const int32_t* env_world; // [E]
  int32_t envs, height, width;
  float fx, fy, cx, cy, near_, far_;
  uint8_t* rgb;             // [E, H, W, 3]
  float* depth;             // [E, H, W]
  uint8_t* seg;             // [E, H, W]
  // the scene
  const float* grid_f;       // [W, 4] x0, y0, cell, 1/cell
  const int32_t* grid_i;     // [W, 7] nx, ny, first cell, first face, first cyl, first box, first sphere
  const float* grid_z;       // [W, 2]
  const int32_t* cell_start; // [cells + 1]
  const int32_t* cell_items; // [items]
  const float* cell_item_z;  // [items, 2]
  const int32_t* sorted_items; // cell_items with each cell's items ordered by their lowest point
  const float* sorted_z;       // their [z_lo, z_hi]
  const int32_t* sorted_rank;  // their places in cell_items: the order Warp tests a cell's items in
  const float* sorted_disc;    // their footprints on the ground: [items, 4] x, y, r (grown), r^2
  const int32_t* world_item_start; // [W + 1]: world w's distinct items are world_items[start[w]:start[w + 1]]
  const int32_t* world_items;      // item codes
  const float* world_disc;         // their footprint discs, as sorted_disc
  const float* world_z;            // their height ranges [n, 2]
  int32_t column_width;            // pixels a column of rays shares a candidate list over; 0: every ray walks the grid
  const float* cyl;          // [C, 5] x, y, z0, z1, r
  const float* box;          // [B, 8] x, y, z, hx, hy, hz, cos, sin
  const float* sph;          // [S, 4] x, y, z, r
  const int32_t* cyl_mat;
  const int32_t* box_mat;
  const int32_t* sph_mat;
  const float* palette;      // [W, M, 3]
  int32_t materials;         // M
  const float* sky_zenith;   // [W, 3]
  const float* sky_horizon;  // [W, 3]
  const float* sky_glow;     // [W, 3]
  const float* sun_dir;      // [W, 3]
  const float* sun_rgb;      // [W, 3]
  const float* ambient;      // [W]
  const float* fog_density;  // [W]
  const float* fog_colour;   // [W, 3]
  const uint8_t* srgb_lut;   // [srgb_steps]
  int32_t srgb_steps;
  // material ids (lnn_nav.sim.world.MATERIAL_ID)
  int32_t mat_ground, mat_bark, mat_leaves, mat_undergrowth, mat_concrete, mat_glass, mat_beacon;
};

}  // extern "C"

namespace {

struct Caster {
  const RcArgs& a;
  mutable NoiseCell noise[4];  // value_noise's last cell per use (one caster per call, one thread)

  float hit_cylinder(V3 o, V3 d, int i, float tmin, float tmax) const {
    const float* c = a.cyl + 5 * i;
    float ox = o.x - c[0];
    float oy = o.y - c[1];
    float z0 = c[2];
    float z1 = c[3];
    float r = c[4];
    float best = tmax;
    float aa = d.x * d.x + d.y * d.y;
    if (aa > 1.0e-12f) {
      float b = ox * d.x + oy * d.y;
      float cc = ox * ox + oy * oy - r * r;
      float disc = b * b - aa * cc;
      if (disc >= 0.0f) {
        float s = std::sqrt(disc);
        float t = (-b - s) / aa;
        float z = o.z + t * d.z;
        if (t > tmin && t < best && z >= z0 && z <= z1) best = t;
        t = (-b + s) / aa;
        z = o.z + t * d.z;
        if (t > tmin && t < best && z >= z0 && z <= z1) best = t;
      }
    }
    if (std::fabs(d.z) > 1.0e-12f) {
      float t = (z1 - o.z) / d.z;
      float px = ox + t * d.x;
      float py = oy + t * d.y;
      if (t > tmin && t < best && px * px + py * py <= r * r) best = t;
      t = (z0 - o.z) / d.z;
      px = ox + t * d.x;
      py = oy + t * d.y;
      if (t > tmin && t < best && px * px + py * py <= r * r) best = t;
    }
    if (best < tmax) return best;
    return kMiss;
  }

  float hit_sphere(V3 o, V3 d, int i, float tmin, float tmax) const {
    const float* s = a.sph + 4 * i;
    V3 oc = v3(o.x - s[0], o.y - s[1], o.z - s[2]);
    float r = s[3];
    float b = dot(oc, d);
    float disc = b * b - (dot(oc, oc) - r * r);
    if (disc < 0.0f) return kMiss;
    float q = std::sqrt(disc);
    float t = -b - q;
    if (t <= tmin) t = -b + q;
    if (t > tmin && t < tmax) return t;
    return kMiss;
  }

  static V3 box_local(V3 v, float c, float s) { return V3{c * v.x + s * v.y, -s * v.x + c * v.y, v.z}; }

  float hit_box(V3 o, V3 d, int i, float tmin, float tmax) const {
    const float* b = a.box + 8 * i;
    float c = b[6];
    float s = b[7];
    V3 lo = box_local(v3(o.x - b[0], o.y - b[1], o.z - b[2]), c, s);
    V3 ld = box_local(d, c, s);
    Slab sx = slab(lo.x, ld.x, b[3]);
    Slab sy = slab(lo.y, ld.y, b[4]);
    Slab sz = slab(lo.z, ld.z, b[5]);
    float t_enter = fmax_(sx.lo, fmax_(sy.lo, sz.lo));
    float t_exit = fmin_(sx.hi, fmin_(sy.hi, sz.hi));
    if (t_enter > t_exit) return kMiss;
    float t = t_enter;
    if (t <= tmin) t = t_exit;
    if (t > tmin && t < tmax) return t;
    return kMiss;
  }

  float hit_item(int item, V3 o, V3 d, float tmin, float tmax) const {
    int kind = item & 3;
    int i = item >> 2;
    if (kind == kCylinder) return hit_cylinder(o, d, i, tmin, tmax);
    if (kind == kBox) return hit_box(o, d, i, tmin, tmax);
    return hit_sphere(o, d, i, tmin, tmax);
  }

  // 2D DDA over the world's xy grid (render_kernels._trace_grid).
  void trace_grid(V3 o, V3 d, float tmin, float tmax, int w, float& best_t, int& best_item) const {
    const int32_t* gi = a.grid_i + 7 * w;
    int nx = gi[0];
    int ny = gi[1];
    int base = gi[2];
    if (nx == 0) return;
    const float* gf = a.grid_f + 4 * w;
    float x0 = gf[0];
    float y0 = gf[1];
    float cs = gf[2];
    float zr0 = a.grid_z[2 * w];
    float zr1 = a.grid_z[2 * w + 1];
    Slab sz = slab(o.z - 0.5f * (zr0 + zr1), d.z, 0.5f * (zr1 - zr0));
    Slab sx = slab(o.x - (x0 + 0.5f * static_cast<float>(nx) * cs), d.x, 0.5f * static_cast<float>(nx) * cs);
    Slab sy = slab(o.y - (y0 + 0.5f * static_cast<float>(ny) * cs), d.y, 0.5f * static_cast<float>(ny) * cs);
    float t0 = fmax_(tmin, fmax_(sz.lo, fmax_(sx.lo, sy.lo)));
    float t1 = fmin_(tmax, fmin_(sz.hi, fmin_(sx.hi, sy.hi)));
    if (t0 >= t1) return;
    float inv = gf[3];
    int ix = clampi(static_cast<int>(std::floor((o.x + d.x * t0 - x0) * inv)), 0, nx - 1);
    int iy = clampi(static_cast<int>(std::floor((o.y + d.y * t0 - y0) * inv)), 0, ny - 1);
    int step_x = 0, step_y = 0;
    float t_next_x = kMiss, t_next_y = kMiss, dt_x = kMiss, dt_y = kMiss;
    if (d.x > 1.0e-12f) {
      step_x = 1;
      t_next_x = (x0 + static_cast<float>(ix + 1) * cs - o.x) / d.x;
      dt_x = cs / d.x;
    } else if (d.x < -1.0e-12f) {
      step_x = -1;
      t_next_x = (x0 + static_cast<float>(ix) * cs - o.x) / d.x;
      dt_x = -cs / d.x;
    }
    if (d.y > 1.0e-12f) {
      step_y = 1;
      t_next_y = (y0 + static_cast<float>(iy + 1) * cs - o.y) / d.y;
      dt_y = cs / d.y;
    } else if (d.y < -1.0e-12f) {
      step_y = -1;
      t_next_y = (y0 + static_cast<float>(iy) * cs - o.y) / d.y;
      dt_y = -cs / d.y;
    }
    // The footprint test: a ray whose line in the ground plane passes further from an item's centre than
    // the (grown) footprint radius cannot hit it. It only skips exact tests that would return a miss (the
    // radius is grown by 0.1 % and 0.1 mm and the bound by 1e-5 of the squared distance, far above the
    // float error of the exact tests at any distance), so the frame stays bit for bit the same. Off for
    // near-vertical rays, whose ground-plane line is not defined.
    float aa_xy = d.x * d.x + d.y * d.y;
    bool footprint = aa_xy > 1.0e-8f;
    float t_enter = t0;
    float bt = tmax;
    int bi = best_item;
    int bi_cell = -1;  // the cell whose walk found bi (the ground: none)
    int bi_rank = 0;   // bi's place in that cell's list
    for (;;) {
      int cell = base + iy * nx + ix;
      float t_exit = fmin_(fmin_(t_next_x, t_next_y), t1);
      float za = o.z + d.z * t_enter;
      float zb = o.z + d.z * t_exit;
      float z_lo = fmin_(za, zb) - 1.0e-4f;
      float z_hi = fmax_(za, zb) + 1.0e-4f;
      // The cell's items in order of their lowest point: past the first that starts above the ray, none
      // can pass the z test, so the walk stops there (Warp's kernel tests them all).
      for (int k = a.cell_start[cell], end = a.cell_start[cell + 1]; k < end; ++k) {
        const float* zr = a.sorted_z + 2 * k;
        if (zr[0] > z_hi) break;
        if (zr[1] >= z_lo) {
          if (footprint) {
            const float* q = a.sorted_disc + 4 * k;
            float ox = o.x - q[0];
            float oy = o.y - q[1];
            float cr = ox * d.y - oy * d.x;
            if (cr * cr > aa_xy * (q[3] + kFootprintSlack * (ox * ox + oy * oy))) continue;
          }
          int item = a.sorted_items[k];
          // A tie must come back from the test to be judged: its bound is then the next float above.
          float bound = bi_cell == cell ? next_up(bt) : bt;
          float t = hit_item(item, o, d, tmin, bound);
          // Warp tests a cell's items in list order and keeps the first of equal hits: a tie within this
          // cell goes to the item listed first, one with an earlier cell's hit to that hit.
          int rank = a.sorted_rank[k];
          if (t < bt || (t == bt && bi_cell == cell && rank < bi_rank)) {
            bt = t;
            bi = item;
            bi_cell = cell;
            bi_rank = rank;
          }
        }
      }
      if (bt <= t_exit || t_exit >= t1) break;
      t_enter = t_exit;
      if (t_next_x < t_next_y) {
        ix += step_x;
        t_next_x += dt_x;
        if (ix < 0 || ix >= nx) break;
      } else {
        iy += step_y;
        t_next_y += dt_y;
        if (iy < 0 || iy >= ny) break;
      }
    }
    best_t = bt;
    best_item = bi;
  }

  V3 surface_normal(int item, V3 p) const {
    if (item == kGround) return v3(0.0f, 0.0f, 1.0f);
    int kind = item & 3;
    int i = item >> 2;
    if (kind == kSphere) {
      const float* s = a.sph + 4 * i;
      return normalize(v3(p.x - s[0], p.y - s[1], p.z - s[2]));
    }
    if (kind == kCylinder) {
      const float* c = a.cyl + 5 * i;
      float rx = p.x - c[0];
      float ry = p.y - c[1];
      float q = std::sqrt(rx * rx + ry * ry);
      float side_err = std::fabs(q - c[4]);
      float top_err = std::fabs(p.z - c[3]);
      float bottom_err = std::fabs(p.z - c[2]);
      if (side_err <= fmin_(top_err, bottom_err) && q > 1.0e-9f) return v3(rx / q, ry / q, 0.0f);
      if (top_err < bottom_err) return v3(0.0f, 0.0f, 1.0f);
      return v3(0.0f, 0.0f, -1.0f);
    }
    const float* b = a.box + 8 * i;
    float c = b[6];
    float s = b[7];
    V3 lp = box_local(v3(p.x - b[0], p.y - b[1], p.z - b[2]), c, s);
    float ax = std::fabs(lp.x) / b[3];
    float ay = std::fabs(lp.y) / b[4];
    float az = std::fabs(lp.z) / b[5];
    if (az >= ax && az >= ay) return v3(0.0f, 0.0f, signf(lp.z));
    V3 ln = v3(signf(lp.x), 0.0f, 0.0f);
    if (ay > ax) ln = v3(0.0f, signf(lp.y), 0.0f);
    return v3(c * ln.x - s * ln.y, s * ln.x + c * ln.y, 0.0f);
  }

  V3 texture(int mat, int item, int local, V3 p, V3 n, float dist, V3 base) const {
    float fine = clampf(1.0f - dist / 30.0f, 0.0f, 1.0f);
    int i = item >> 2;
    if (mat == a.mat_ground) {
      float patches = value_noise(p.x / 9.0f, p.y / 9.0f, 1, noise[0]);
      float mid = value_noise(p.x / 2.5f, p.y / 2.5f, 2, noise[1]);
      float grain = hash3(static_cast<int>(std::floor(p.x * 8.0f)), static_cast<int>(std::floor(p.y * 8.0f)), 3) - 0.5f;
      float f = 0.72f + 0.4f * patches + 0.18f * mid + 0.25f * fine * grain;
      return v3(base.x * f * (0.9f + 0.2f * patches), base.y * f, base.z * f * (1.1f - 0.2f * patches));
    }
    if (mat == a.mat_bark && (item & 3) == kCylinder) {
      const float* c = a.cyl + 5 * i;
      float angle = std::atan2(p.y - c[1], p.x - c[0]);
      float wobble = value_noise(p.z * 1.5f, static_cast<float>(local), 4, noise[2]);
      float ridges = 0.5f + 0.5f * std::sin(angle * 9.0f + 4.0f * wobble);
      float grain = hash3(static_cast<int>(std::floor(p.z * 12.0f)), local, 5) - 0.5f;
      return scale(base, 0.7f + 0.45f * ridges + 0.2f * fine * grain);
    }
    if (mat == a.mat_leaves || mat == a.mat_undergrowth) {
      float speck = hash3(static_cast<int>(std::floor(p.x * 7.0f)), static_cast<int>(std::floor(p.y * 7.0f)),
                          static_cast<int>(std::floor(p.z * 7.0f)));
      float clump = value_noise(p.x * 0.7f + p.z, p.y * 0.7f, 6, noise[3]);
      float f = 0.75f + 0.35f * clump + 0.45f * fine * (speck - 0.5f);
      return v3(base.x * f * (0.85f + 0.3f * speck), base.y * f, base.z * f);
    }
    if ((mat == a.mat_concrete || mat == a.mat_glass) && std::fabs(n.z) < 0.5f) {
      float s = p.x * (-n.y) + p.y * n.x;
      float bay = s / 3.0f;
      float storey = p.z / 3.2f;
      float fu = bay - std::floor(bay);
      float fv = storey - std::floor(storey);
      float lit = hash3(static_cast<int>(std::floor(bay)), static_cast<int>(std::floor(storey)), local);
      if (mat == a.mat_concrete) {
        if (fu > 0.22f && fu < 0.78f && fv > 0.3f && fv < 0.85f) return scale(v3(0.10f, 0.13f, 0.18f), 0.7f + 0.8f * lit);
        return scale(base, 0.9f + 0.2f * fine *
                                      hash3(static_cast<int>(std::floor(s * 6.0f)),
                                            static_cast<int>(std::floor(p.z * 6.0f)), 7));
      }
      if (fu < 0.05f || fv < 0.07f) return v3(0.55f, 0.56f, 0.58f);
      return scale(base, 0.75f + 0.5f * lit);
    }
    float grain = hash3(static_cast<int>(std::floor(p.x * 10.0f)), static_cast<int>(std::floor(p.y * 10.0f)),
                        static_cast<int>(std::floor(p.z * 10.0f))) - 0.5f;
    return scale(base, 1.0f + 0.2f * fine * grain);
  }

  static V3 sky(V3 d, const float* zen, const float* hor, const float* glow, const float* sun) {
    float up = std::sqrt(clampf(d.z, 0.0f, 1.0f));
    float h = std::sqrt(d.x * d.x + d.y * d.y);
    float hs = std::sqrt(sun[0] * sun[0] + sun[1] * sun[1]);
    float facing = 0.0f;
    if (h > 1.0e-6f && hs > 1.0e-6f) facing = fmax_(0.0f, (d.x * sun[0] + d.y * sun[1]) / (h * hs));
    facing = facing * facing * facing;
    float g = facing * (1.0f - up);
    V3 lo = v3(hor[0] + glow[0] * g, hor[1] + glow[1] * g, hor[2] + glow[2] * g);
    return v3(lo.x * (1.0f - up) + zen[0] * up, lo.y * (1.0f - up) + zen[1] * up, lo.z * (1.0f - up) + zen[2] * up);
  }

  uint8_t srgb(float c) const {
    return a.srgb_lut[static_cast<int>(clampf(c, 0.0f, 1.0f) * static_cast<float>(a.srgb_steps - 1) + 0.5f)];
  }

  // One camera ray: its direction, range and the first hit so far (the ground's, or the sky).
  struct Ray {
    V3 d;
    float dlen, tmin, best_t;
    int best_item;
    // For the columns' cheap tests: the direction's ground-plane length (h), its square and the height
    // gained per metre on the ground plane.
    float h, aa, slope;
  };

  Ray setup(int e, int v, int u, V3 o) const {
    V3 dc = v3((static_cast<float>(u) - a.cx) / a.fx, (static_cast<float>(v) - a.cy) / a.fy, 1.0f);
    Ray ray;
    ray.dlen = std::sqrt(dot(dc, dc));
    const float* r = a.cam_rot + 9 * e;
    // Warp's mat33 * vec3: column 0 * x, then + column 1 * y, then + column 2 * z.
    V3 rd = v3(r[0] * dc.x + r[1] * dc.y + r[2] * dc.z, r[3] * dc.x + r[4] * dc.y + r[5] * dc.z,
               r[6] * dc.x + r[7] * dc.y + r[8] * dc.z);
    ray.d = normalize(rd);
    ray.aa = ray.d.x * ray.d.x + ray.d.y * ray.d.y;
    ray.h = std::sqrt(ray.aa);
    ray.slope = ray.d.z * (1.0f / ray.h);  // +-inf straight up or down: such rays are walked
    ray.tmin = a.near_ * ray.dlen;
    ray.best_t = a.far_ * ray.dlen;
    ray.best_item = kSky;
    if (ray.d.z < 0.0f && o.z > 0.0f) {
      float tg = -o.z / ray.d.z;
      if (tg > ray.tmin && tg < ray.best_t) {
        ray.best_t = tg;
        ray.best_item = kGround;
      }
    }
    return ray;
  }

  void pixel(int e, int v, int u) const {
    const float* oe = a.cam_origin + 3 * e;
    V3 o = v3(oe[0], oe[1], oe[2]);
    Ray ray = setup(e, v, u, o);
    trace_grid(o, ray.d, ray.tmin, ray.best_t, a.env_world[e], ray.best_t, ray.best_item);
    shade(e, v, u, o, ray);
  }

  void shade(int e, int v, int u, V3 o, const Ray& ray) const {
    int w = a.env_world[e];
    V3 d = ray.d;
    float dlen = ray.dlen;
    float best_t = ray.best_t;
    int best_item = ray.best_item;
    float fog = a.fog_density[w];
    const float* fc = a.fog_colour + 3 * w;
    size_t px = (static_cast<size_t>(e) * a.height + v) * a.width + u;
    V3 col;
    if (best_item == kSky) {
      col = sky(d, a.sky_zenith + 3 * w, a.sky_horizon + 3 * w, a.sky_glow + 3 * w, a.sun_dir + 3 * w);
      // Without fog the blend is exp(-0) = 1: the colour itself, bit for bit, so it is skipped.
      if (fog != 0.0f) {
        float f = std::exp(-fog * a.far_ * dlen);
        col = v3(col.x * f + fc[0] * (1.0f - f), col.y * f + fc[1] * (1.0f - f), col.z * f + fc[2] * (1.0f - f));
      }
      a.depth[px] = a.far_;
      a.seg[px] = 0;
    } else {
      int mat = a.mat_ground;
      int local = 0;
      if (best_item != kGround) {
        int kind = best_item & 3;
        int i = best_item >> 2;
        local = i - a.grid_i[7 * w + 4 + kind];
        if (kind == kCylinder) {
          mat = a.cyl_mat[i];
        } else if (kind == kBox) {
          mat = a.box_mat[i];
        } else {
          mat = a.sph_mat[i];
        }
      }
      V3 p = v3(o.x + d.x * best_t, o.y + d.y * best_t, o.z + d.z * best_t);
      const float* pb = a.palette + 3 * (static_cast<size_t>(w) * a.materials + mat);
      V3 base = v3(pb[0], pb[1], pb[2]);
      col = base;
      if (mat != a.mat_beacon) {
        V3 n = surface_normal(best_item, p);
        if (dot(n, d) > 0.0f) n = v3(-n.x, -n.y, -n.z);
        V3 tex = texture(mat, best_item, local, p, n, best_t, base);
        const float* sd = a.sun_dir + 3 * w;
        const float* sr = a.sun_rgb + 3 * w;
        float light = fmax_(n.x * sd[0] + n.y * sd[1] + n.z * sd[2], 0.0f);
        float amb = a.ambient[w];
        col = v3(tex.x * (amb + sr[0] * light), tex.y * (amb + sr[1] * light), tex.z * (amb + sr[2] * light));
      }
      if (fog != 0.0f) {
        float f = std::exp(-fog * best_t);
        col = v3(col.x * f + fc[0] * (1.0f - f), col.y * f + fc[1] * (1.0f - f), col.z * f + fc[2] * (1.0f - f));
      }
      a.depth[px] = best_t / dlen;
      a.seg[px] = static_cast<uint8_t>(mat + 1);
    }
    a.rgb[3 * px] = srgb(col.x);
    a.rgb[3 * px + 1] = srgb(col.y);
    a.rgb[3 * px + 2] = srgb(col.z);
  }

  // Columns of rays (pixels [u0, u0 + cw) of the band's rows) each against one candidate list: the world's
  // items whose footprint discs reach into the wedge the column's rays span on the ground plane, ordered by
  // how near their discs come to the camera. Each ray tests them in that order until the nearest remaining
  // disc lies beyond its hit so far, so a ray's hit is the nearest exact hit over every item that could
  // give one: the grid walk's answer, since the walk stops only once no unvisited cell can hold a nearer
  // hit. The exact tests are the walk's own (same function, same bounds), so the hit is the same float.
  // Where the walk's answer depends on its visiting order (two items hit at the same distance: the walk
  // keeps the first it met), the ray is cast again by the walk. Columns whose wedge is not narrow (a camera
  // pitched steeply or rolled far, rays near vertical) are walked ray by ray.
  struct Candidate {
    float lb, ub;  // on the ground plane, every point of the item's disc lies between these from the camera
    float z0, z1;  // the item's height range, grown by a millimetre
    int k;         // its index in world_items
    float px, py, r;  // the disc's centre from the camera, its radius with the float slack
  };

  // kLanes rays of a column against its candidate list together: the cheap tests (the ground-plane reach,
  // the ray's height over the disc, the footprint) for all of them in one vector pass per candidate, the
  // exact test for each ray that passes them, one ray at a time, as the scalar code runs it.
  static constexpr size_t kLanes = 4;

  void cast_lanes(V3 o, int w, Ray* rays, size_t n, const std::vector<Candidate>& cand) const {
    F4 dx{}, dy{}, slope{}, h{}, aa{}, lim{};
    float bt[kLanes], tmin[kLanes];
    int bi[kLanes];
    bool tie[kLanes] = {};
    for (size_t l = 0; l < kLanes; ++l) {
      const Ray& r = rays[l < n ? l : 0];  // spare lanes repeat the first ray; their results are dropped
      const float hl = r.h;
      dx[l] = r.d.x;
      dy[l] = r.d.y;
      aa[l] = r.aa;
      h[l] = hl;
      slope[l] = r.slope;
      bt[l] = r.best_t;
      bi[l] = r.best_item;
      tmin[l] = r.tmin;
      lim[l] = r.best_t * hl * 1.00001f + 1.0e-5f;
    }
    const F4 abs_slope = vabs(slope);
    for (const Candidate& c : cand) {
      // A hit on this item lies at least c.lb from the camera on the ground plane: t * h >= c.lb.
      I4 live = c.lb <= lim;
      if (!any(live)) break;
      // The ray's height while over the disc (ground-plane distance lb to ub) against the item's.
      F4 za = o.z + slope * c.lb;
      F4 zb = o.z + slope * c.ub;
      F4 slack = 1.0e-4f * (1.0f + c.ub * abs_slope);
      I4 pass = live & (vmin(za, zb) <= c.z1 + slack) & (vmax(za, zb) >= c.z0 - slack);
      if (!any(pass)) continue;
      // The footprint: the ray's ground-plane line against the item's grown disc.
      const float* q = a.world_disc + 4 * c.k;
      const float ox = o.x - q[0];
      const float oy = o.y - q[1];
      F4 cr = ox * dy - oy * dx;
      pass &= cr * cr <= aa * (q[3] + kFootprintSlack * (ox * ox + oy * oy));
      if (!any(pass)) continue;
      const int item = a.world_items[c.k];
      for (size_t l = 0; l < n; ++l) {
        if (!pass[l]) continue;
        const Ray& r = rays[l];
        // An item's hit equal to another item's must be seen (the walk would keep the one it met first).
        const bool item_hit = bi[l] >= 0;
        const float t = hit_item(item, o, r.d, tmin[l], item_hit ? next_up(bt[l]) : bt[l]);
        if (t < bt[l]) {
          bt[l] = t;
          bi[l] = item;
          tie[l] = false;
          lim[l] = t * h[l] * 1.00001f + 1.0e-5f;
        } else if (t == bt[l] && item_hit && item != bi[l]) {
          tie[l] = true;
        }
      }
    }
    for (size_t l = 0; l < n; ++l) {
      Ray& r = rays[l];
      if (tie[l]) {
        trace_grid(o, r.d, r.tmin, r.best_t, w, r.best_t, r.best_item);
      } else {
        r.best_t = bt[l];
        r.best_item = bi[l];
      }
    }
  }

  struct Wedge {
    float ax = 0.0f, ay = 0.0f;  // the axis: the rays' mean ground-plane direction
    float cos_half = 1.0f, sin_half = 0.0f;
    float reach = 0.0f;          // the furthest any ray's hit so far lies on the ground plane
    bool narrow = false;
  };

  static Wedge wedge_of(const Ray* rays, size_t n) {
    Wedge g;
    float sx = 0.0f, sy = 0.0f;
    for (size_t i = 0; i < n; ++i) {
      const V3 d = rays[i].d;
      const float h = rays[i].h;
      if (!(h > 0.05f)) return g;  // a ray near vertical: no wedge
      sx += d.x / h;
      sy += d.y / h;
      g.reach = fmax_(g.reach, rays[i].best_t * h);
    }
    const float len = std::sqrt(sx * sx + sy * sy);
    if (!(len > 0.0f)) return g;
    g.ax = sx / len;
    g.ay = sy / len;
    for (size_t i = 0; i < n; ++i) {
      const V3 d = rays[i].d;
      g.cos_half = fmin_(g.cos_half, (d.x * g.ax + d.y * g.ay) / rays[i].h);
    }
    // Widen it a little past its rays (float error in the cosines) and the reach by a metre.
    g.cos_half = fmax_(g.cos_half - 1.0e-3f, 0.0f);
    g.sin_half = std::sqrt(1.0f - g.cos_half * g.cos_half);
    g.reach = g.reach * 1.0001f + 1.0f;
    g.narrow = g.cos_half > 0.5f;  // half-angle under 60 degrees
    return g;
  }

  // Whether a disc (centre p from the camera, radius r, lb its nearest point's distance) reaches into a wedge.
  // The disc's distance from the wedge: from its nearer edge ray (|p| sin of the angle past the edge) where the
  // centre projects onto that ray, else from the apex (the camera).
  static bool in_wedge(const Wedge& g, float px, float py, float r, float lb, bool holds_camera) {
    if (holds_camera) return true;
    if (lb > g.reach) return false;
    const float along = px * g.ax + py * g.ay;
    const float across = std::fabs(px * g.ay - py * g.ax);
    if (along * g.cos_half + across * g.sin_half >= 0.0f) return across * g.cos_half - along * g.sin_half <= r;
    return lb <= 0.0f;
  }

  static constexpr int kTileRows = 8;

  void camera(int e, int v0, int v1, int cw, std::vector<Ray>& rays, std::vector<Candidate>& cam,
              std::vector<Candidate>& col, std::vector<Candidate>& tile, std::vector<Wedge>& wedges) const {
    const int w = a.env_world[e];
    const float* oe = a.cam_origin + 3 * e;
    const V3 o = v3(oe[0], oe[1], oe[2]);
    const int W = a.width, rows = v1 - v0;
    if (cw > W) cw = W;
    const int blocks = (W + cw - 1) / cw;
    // The rays, column block by column block (each block's rows one after another).
    rays.clear();
    for (int b = 0; b < blocks; ++b)
      for (int v = v0; v < v1; ++v)
        for (int u = b * cw; u < W && u < (b + 1) * cw; ++u) rays.push_back(setup(e, v, u, o));
    wedges.clear();
    // A camera somewhere not finite is walked ray by ray: the cheap tests' comparisons with NaN would drop
    // primitives the walk (whose tests fall the other way) keeps.
    const bool finite = std::isfinite(o.x) && std::isfinite(o.y) && std::isfinite(o.z);
    const bool columns = finite && a.grid_i[7 * w] > 0;  // else every ray is walked: no list to build
    bool all_narrow = columns;
    float sx = 0.0f, sy = 0.0f;
    for (int b = 0, first = 0; b < blocks; ++b) {
      const int n = rows * (std::min(W, (b + 1) * cw) - b * cw);
      wedges.push_back(wedge_of(&rays[first], static_cast<size_t>(n)));
      first += n;
      all_narrow = all_narrow && wedges.back().narrow;
      sx += wedges.back().ax;
      sy += wedges.back().ay;
    }
    // The camera's candidates, nearest disc first: the world's items in the wedge holding every column's
    // (or all of them where that wedge would be too wide to cull).
    Wedge whole;
    whole.narrow = false;
    const float len = std::sqrt(sx * sx + sy * sy);
    if (all_narrow && len > 0.0f) {
      whole.ax = sx / len;
      whole.ay = sy / len;
      float half = 0.0f;
      for (const Wedge& g : wedges) {
        const float off = std::acos(fmin_(fmax_(g.ax * whole.ax + g.ay * whole.ay, -1.0f), 1.0f));
        half = fmax_(half, off + std::acos(g.cos_half) + 1.0e-3f);
        whole.reach = fmax_(whole.reach, g.reach);
      }
      whole.narrow = half < 1.4f;  // 80 degrees
      whole.cos_half = std::cos(half);
      whole.sin_half = std::sin(half);
    }
    cam.clear();
    if (columns) {
      for (int k = a.world_item_start[w], end = a.world_item_start[w + 1]; k < end; ++k) {
        const float* q = a.world_disc + 4 * k;
        const float px = q[0] - o.x;
        const float py = q[1] - o.y;
        const float dist = std::sqrt(px * px + py * py);
        const float r = q[2] + 1.0e-3f + 1.0e-5f * dist;
        const float lb = fmax_(dist - r, 0.0f);
        if (whole.narrow && !in_wedge(whole, px, py, r, lb, dist <= r)) continue;
        const float* zr = a.world_z + 2 * k;
        cam.push_back(Candidate{lb, dist + r, zr[0] - 1.0e-3f, zr[1] + 1.0e-3f, k, px, py, r});
      }
      std::sort(cam.begin(), cam.end(), [](const Candidate& x, const Candidate& y) { return x.lb < y.lb; });
    }
    for (int b = 0, first = 0; b < blocks; ++b) {
      const int u0 = b * cw, u1 = std::min(W, (b + 1) * cw);
      const size_t n = static_cast<size_t>(rows * (u1 - u0));
      Ray* rs = &rays[first];
      const Wedge& g = wedges[b];
      if (!columns || !g.narrow) {
        for (size_t i = 0; i < n; ++i) trace_grid(o, rs[i].d, rs[i].tmin, rs[i].best_t, w, rs[i].best_t, rs[i].best_item);
      } else {
        col.clear();
        for (const Candidate& c : cam)
          if (in_wedge(g, c.px, c.py, c.r, c.lb, c.lb <= 0.0f)) col.push_back(c);
        // Tiles of kTileRows rows: the column's candidates within the tile's reach and height band.
        const size_t per_tile = static_cast<size_t>(kTileRows * (u1 - u0));
        for (size_t t0 = 0; t0 < n; t0 += per_tile) {
          const size_t m = n - t0 < per_tile ? n - t0 : per_tile;
          float smin = kMiss, smax = -kMiss, reach = 0.0f;
          for (size_t i = t0; i < t0 + m; ++i) {
            smin = fmin_(smin, rs[i].slope);
            smax = fmax_(smax, rs[i].slope);
            reach = fmax_(reach, rs[i].best_t * rs[i].h);
          }
          reach = reach * 1.0001f + 1.0e-3f;
          tile.clear();
          for (const Candidate& c : col) {
            if (c.lb > reach) break;  // the list is nearest first
            const float lo = o.z + fmin_(smin * c.lb, smin * c.ub);
            const float hi = o.z + fmax_(smax * c.lb, smax * c.ub);
            const float slack = 1.0e-3f * (1.0f + c.ub * fmax_(std::fabs(smin), std::fabs(smax)));
            if (lo > c.z1 + slack || hi < c.z0 - slack) continue;
            tile.push_back(c);
          }
          for (size_t i = t0; i < t0 + m; i += kLanes)
            cast_lanes(o, w, rs + i, t0 + m - i < kLanes ? t0 + m - i : kLanes, tile);
        }
      }
      size_t i = 0;
      for (int v = v0; v < v1; ++v)
        for (int u = u0; u < u1; ++u) shade(e, v, u, o, rs[i++]);
      first += static_cast<int>(n);
    }
  }
};

}  // namespace

extern "C" {

// Renders image rows [v_begin, v_end) of every env (rows of the launch's own band, 0-based).
RC_EXPORT void rc_render(const RcArgs* args, int32_t v_begin, int32_t v_end) {
  const Caster caster{*args, {}};
  const int cw = args->column_width;
  if (cw <= 0) {
    for (int e = 0; e < args->envs; ++e)
      for (int v = v_begin; v < v_end; ++v)
        for (int u = 0; u < args->width; ++u) caster.pixel(e, v, u);
    return;
  }
  std::vector<Caster::Ray> rays;
  std::vector<Caster::Candidate> cam, col, tile;
  std::vector<Caster::Wedge> wedges;
  for (int e = 0; e < args->envs; ++e) caster.camera(e, v_begin, v_end, cw, rays, cam, col, tile, wedges);
}

RC_EXPORT int32_t rc_abi_version() { return 4; }

}  // extern "C"
