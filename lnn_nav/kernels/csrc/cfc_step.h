// The forward step of a fused CfC core for one sample, without torch: shared by the torch extension
// (cfc_cpu.cpp) and the torch-free policy runtime (policy_runtime.cpp), so both compute a step with the
// same code (and, built with the same flags, the same bits).
#pragma once

#include <algorithm>
#include <cstdint>

#include "cfc_layout.h"
#include "cfc_math.h"

namespace lnn_nav {
namespace {

#if defined(__GNUC__) || defined(__clang__)
#define LNN_ALWAYS_INLINE inline __attribute__((always_inline))
#define LNN_FLATTEN __attribute__((flatten))
#define LNN_NOINLINE __attribute__((noinline))
#else
#define LNN_ALWAYS_INLINE inline
#define LNN_FLATTEN
#define LNN_NOINLINE
#endif
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define LNN_NAV_X86_CLONES 1
#endif

// out[o] += sum_{i in [r0, r1)} v[i] * Wt[i, o] for o in [0, O)  (Wt row-major,
// ld values per row). Four rows per pass, so `out` is loaded and stored a
// quarter as often. No reduction across lanes: each output is its own lane.
template <typename T>
LNN_ALWAYS_INLINE void mv_acc(const T* __restrict Wt, int64_t ld, int O, const T* __restrict v, int r0,
                              int r1, T* __restrict out) {
  int i = r0;
  for (; i + 4 <= r1; i += 4) {
    const T v0 = v[i], v1 = v[i + 1], v2 = v[i + 2], v3 = v[i + 3];
    const T* __restrict w0 = Wt + i * ld;
    const T* __restrict w1 = w0 + ld;
    const T* __restrict w2 = w1 + ld;
    const T* __restrict w3 = w2 + ld;
#pragma omp simd
    for (int o = 0; o < O; ++o) out[o] += v0 * w0[o] + v1 * w1[o] + v2 * w2[o] + v3 * w3[o];
  }
  for (; i < r1; ++i) {
    const T vi = v[i];
    const T* __restrict row = Wt + i * ld;
#pragma omp simd
    for (int o = 0; o < O; ++o) out[o] += vi * row[o];
  }
}

// The element-wise passes, one loop per activation and cell mode (the switch
// outside the loop), so each loop vectorises (see tanh_rational in cfc_math.h).
template <int Act, typename T>
LNN_ALWAYS_INLINE void act_forward_as(const T* __restrict u, int n, T* __restrict z) {
#pragma omp simd
  for (int o = 0; o < n; ++o) z[o] = act_fwd(Act, u[o]);
}

template <typename T>
LNN_ALWAYS_INLINE void act_forward(int act, const T* u, int n, T* z) {
  switch (act) {
    case kLecunTanh: return act_forward_as<kLecunTanh>(u, n, z);
    case kTanh: return act_forward_as<kTanh>(u, n, z);
    case kRelu: return act_forward_as<kRelu>(u, n, z);
    case kSilu: return act_forward_as<kSilu>(u, n, z);
    default: return act_forward_as<kGelu>(u, n, z);
  }
}

// New states of a layer's n neurons; A and w_tau are read in pure mode only.
template <int Mode, typename T>
LNN_ALWAYS_INLINE void cells_forward_as(const T* __restrict pre, int n, T ts, const T* __restrict A,
                                        const T* __restrict w_tau, T* __restrict hnew) {
#pragma omp simd
  for (int k = 0; k < n; ++k) {
    hnew[k] = cell_fwd(Mode, pre, n, k, ts, Mode == kPure ? A[k] : T(0), Mode == kPure ? w_tau[k] : T(0));
  }
}

template <typename T>
LNN_ALWAYS_INLINE void cells_forward(int mode, const T* pre, int n, T ts, const T* A, const T* w_tau,
                                     T* hnew) {
  switch (mode) {
    case kDefault: return cells_forward_as<kDefault>(pre, n, ts, A, w_tau, hnew);
    case kNoGate: return cells_forward_as<kNoGate>(pre, n, ts, A, w_tau, hnew);
    default: return cells_forward_as<kPure>(pre, n, ts, A, w_tau, hnew);
  }
}

// Runs `body` with everything it calls inlined into one function (flatten),
// on x86-64 compiled twice more, for AVX2+FMA and for AVX-512, and picked at
// run time: the library loads on any x86-64 and uses the widest units there
// are (measured, 64-unit dense step on a Xeon with AVX-512: the 512-bit build
// takes 12% less time than the AVX2 one; the matrix-vector products are bound
// by how fast the weights stream from L2). Elsewhere (aarch64, where NEON is
// the baseline) the one build is vectorised.
template <typename F>
LNN_FLATTEN void run_generic(const F& body) {
  body();
}
#ifdef LNN_NAV_X86_CLONES
template <typename F>
__attribute__((target("avx2,fma"), flatten)) void run_avx2(const F& body) {
  body();
}
// GCC otherwise keeps to 256-bit vectors even where AVX-512 is enabled.
template <typename F>
__attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,prefer-vector-width=512"), flatten))
void run_avx512(const F& body) {
  body();
}
// __builtin_cpu_supports also checks that the OS saves the wide registers.
const bool kHasAvx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
const bool kHasAvx512 = kHasAvx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
#endif

template <typename F>
inline void run_vectorised(const F& body) {
#ifdef LNN_NAV_X86_CLONES
  if (kHasAvx512) return run_avx512(body);
  if (kHasAvx2) return run_avx2(body);
#endif
  run_generic(body);
}

// One CfC layer for one sample. `P` (layer 0 of a sequence) replaces the x rows
// and bias of the first matrix product; `xpart` is unused then.
template <typename T>
void layer_forward(const CfCLayout& L, const LayerLayout& ly, const T* pk, const T* xpart,
                   const T* hprev, T ts, const T* P, T* scr, T* hnew) {
  T* z0 = scr + ly.s_z0;
  if (xpart != nullptr) {
    std::copy(xpart, xpart + ly.in, z0);
  } else {
    std::fill(z0, z0 + ly.in, T(0));
  }
  std::copy(hprev, hprev + ly.n, z0 + ly.in);
  const T* zin = z0;
  int width = ly.in + ly.n;
  int r0 = P != nullptr ? ly.in : 0;
  for (int j = 0; j < ly.nb; ++j) {
    T* u = scr + ly.s_u[j];
    T* zb = scr + ly.s_zb[j];
    std::copy_n(P != nullptr ? P : pk + ly.bb_b[j], ly.bu, u);
    mv_acc(pk + ly.bb_w[j], ly.bu, ly.bu, zin, r0, width, u);
    act_forward(L.act, u, ly.bu, zb);
    P = nullptr;
    r0 = 0;
    zin = zb;
    width = ly.bu;
  }
  const int hn = L.heads * ly.n;
  T* pre = scr + ly.s_pre;
  std::copy_n(P != nullptr ? P : pk + ly.head_b, hn, pre);
  mv_acc(pk + ly.head_w, hn, hn, zin, r0, width, pre);
  cells_forward(L.mode, pre, ly.n, ts, pk + ly.pure_a, pk + ly.pure_w, hnew);
}

// All layers of one step for one sample: layer l > 0 sees layer l-1's new state.
template <typename T>
inline void step_sample(const CfCLayout& L, const T* pk, const T* x, const T* P, const T* hprev,
                        T ts, T* scr, T* hnew) {
  for (int l = 0; l < L.num_layers; ++l) {
    const LayerLayout& ly = L.layers[l];
    const T* xpart = l == 0 ? x : hnew + L.layers[l - 1].state_off;
    layer_forward(L, ly, pk, xpart, hprev + ly.state_off, ts, l == 0 ? P : nullptr, scr,
                  hnew + ly.state_off);
  }
}

// Output of the core for one sample from its new state: the motor slice, projected if the core has a projection.
template <typename T>
inline const T* core_output(const CfCLayout& L, const T* pk, const T* hnew, T* proj_out) {
  const T* y = hnew + L.out_start;
  if (L.proj == 0) return y;
  std::copy_n(pk + L.proj_b, L.proj, proj_out);
  mv_acc(pk + L.proj_w, L.proj, L.proj, y, 0, L.out_len, proj_out);
  return proj_out;
}

}  // namespace
}  // namespace lnn_nav
