// Fused CfC core on the CPU: one step (onboard, batch 1) and whole sequences
// forward and backward (training), for dense and wired cells in every mode.
//
// Work is per sample: the recurrent weights are small enough to stay in cache,
// so matrix-vector products in plain loops beat calling a BLAS per step. The
// input projection of layer 0 for all steps is one matrix product done by the
// caller (lnn_nav/kernels/ops.py), which hands it in as P.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "cfc_layout.h"
#include "cfc_math.h"

namespace lnn_nav {
namespace {

CfCLayout layout_from(const std::vector<int64_t>& meta, const at::Tensor& packed) {
  CfCLayout lay;
  const char* err = parse_layout(meta.data(), static_cast<int64_t>(meta.size()), lay);
  TORCH_CHECK(err == nullptr, "lnn_nav fused CfC: bad layout: ", err ? err : "");
  TORCH_CHECK(packed.dim() == 1 && packed.numel() == lay.packed_size,
              "lnn_nav fused CfC: packed parameters have ", packed.numel(), " values, layout needs ",
              lay.packed_size);
  return lay;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define LNN_NAV_X86_CLONES 1
#define LNN_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define LNN_ALWAYS_INLINE inline
#endif

// out[o] += sum_{i in [r0, r1)} v[i] * Wt[i, o]  (Wt is [rows, O], row-major).
// Four rows per pass, so `out` is loaded and stored a quarter as often.
template <typename T>
LNN_ALWAYS_INLINE void mv_acc_body(const T* __restrict Wt, int O, const T* __restrict v, int r0,
                                   int r1, T* __restrict out) {
  int i = r0;
  for (; i + 4 <= r1; i += 4) {
    const T v0 = v[i], v1 = v[i + 1], v2 = v[i + 2], v3 = v[i + 3];
    const T* __restrict w0 = Wt + static_cast<int64_t>(i) * O;
    const T* __restrict w1 = w0 + O;
    const T* __restrict w2 = w1 + O;
    const T* __restrict w3 = w2 + O;
#pragma omp simd
    for (int o = 0; o < O; ++o) out[o] += v0 * w0[o] + v1 * w1[o] + v2 * w2[o] + v3 * w3[o];
  }
  for (; i < r1; ++i) {
    const T vi = v[i];
    const T* __restrict row = Wt + static_cast<int64_t>(i) * O;
#pragma omp simd
    for (int o = 0; o < O; ++o) out[o] += vi * row[o];
  }
}

// Weight gradient and input gradient of one matrix product for one sample.
template <typename T>
LNN_ALWAYS_INLINE void mt_body(const T* __restrict W, T* __restrict gW, int O, const T* __restrict z,
                               int r0, int r1, const T* __restrict d, T* __restrict dz) {
  for (int i = r0; i < r1; ++i) {
    const T zi = z[i];
    const T* __restrict row = W + static_cast<int64_t>(i) * O;
    T* __restrict grow = gW + static_cast<int64_t>(i) * O;
    T acc = T(0);
#pragma omp simd reduction(+ : acc)
    for (int o = 0; o < O; ++o) {
      grow[o] += zi * d[o];
      acc += row[o] * d[o];
    }
    dz[i] = acc;
  }
}

template <typename T>
void mv_acc_generic(const T* Wt, int O, const T* v, int r0, int r1, T* out) {
  mv_acc_body(Wt, O, v, r0, r1, out);
}
template <typename T>
void mt_generic(const T* W, T* gW, int O, const T* z, int r0, int r1, const T* d, T* dz) {
  mt_body(W, gW, O, z, r0, r1, d, dz);
}

#ifdef LNN_NAV_X86_CLONES
// The same loops built for AVX2+FMA, picked at run time: the library stays
// loadable on any x86-64 while using the wide units where they exist.
template <typename T>
__attribute__((target("avx2,fma"))) void mv_acc_avx2(const T* Wt, int O, const T* v, int r0, int r1,
                                                     T* out) {
  mv_acc_body(Wt, O, v, r0, r1, out);
}
template <typename T>
__attribute__((target("avx2,fma"))) void mt_avx2(const T* W, T* gW, int O, const T* z, int r0, int r1,
                                                 const T* d, T* dz) {
  mt_body(W, gW, O, z, r0, r1, d, dz);
}
const bool kHasAvx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif

template <typename T>
inline void mv_acc(const T* Wt, int O, const T* v, int r0, int r1, T* out) {
#ifdef LNN_NAV_X86_CLONES
  if (kHasAvx2) return mv_acc_avx2(Wt, O, v, r0, r1, out);
#endif
  mv_acc_generic(Wt, O, v, r0, r1, out);
}

template <typename T>
inline void mt(const T* W, T* gW, int O, const T* z, int r0, int r1, const T* d, T* dz) {
#ifdef LNN_NAV_X86_CLONES
  if (kHasAvx2) return mt_avx2(W, gW, O, z, r0, r1, d, dz);
#endif
  mt_generic(W, gW, O, z, r0, r1, d, dz);
}

// Backward of one matrix product u = Wt^T z + b for one sample. With `ext`, the
// rows [0, r0) and the bias belong to the input projection, whose gradients
// the caller computes for all steps at once from dP.
template <typename T>
inline void matrix_backward(const T* __restrict W, T* __restrict gW, T* __restrict gb, int O,
                            const T* __restrict z, int width, const T* __restrict d, int r0,
                            T* __restrict dP, T* __restrict dz) {
  if (dP != nullptr) {
    std::copy(d, d + O, dP);
  } else {
#pragma omp simd
    for (int o = 0; o < O; ++o) gb[o] += d[o];
  }
  for (int i = 0; i < r0; ++i) dz[i] = T(0);
  mt(W, gW, O, z, r0, width, d, dz);
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
    mv_acc(pk + ly.bb_w[j], ly.bu, zin, r0, width, u);
    for (int o = 0; o < ly.bu; ++o) zb[o] = act_fwd(L.act, u[o]);
    P = nullptr;
    r0 = 0;
    zin = zb;
    width = ly.bu;
  }
  const int hn = L.heads * ly.n;
  T* pre = scr + ly.s_pre;
  std::copy_n(P != nullptr ? P : pk + ly.head_b, hn, pre);
  mv_acc(pk + ly.head_w, hn, zin, r0, width, pre);
  const bool pure = L.mode == kPure;
  for (int k = 0; k < ly.n; ++k) {
    hnew[k] = cell_fwd(L.mode, pre, ly.n, k, ts, pure ? pk[ly.pure_a + k] : T(0),
                       pure ? pk[ly.pure_w + k] : T(0));
  }
}

// Backward of layer_forward (its scratch must hold that step's activations).
// g: d loss / d new layer state. Adds into gx (feed-forward input; null for a
// layer 0 fed by P, whose gradient goes to dP) and gh (previous layer state).
template <typename T>
T layer_backward(const CfCLayout& L, const LayerLayout& ly, const T* pk, T ts, const T* scr,
                 const T* g, T* gpk, T* gx, T* gh, T* dP, T* bufA, T* bufB) {
  const bool pure = L.mode == kPure;
  const T* pre = scr + ly.s_pre;
  T dts = T(0);
  for (int k = 0; k < ly.n; ++k) {
    T gA, gw;
    dts += cell_bwd(L.mode, pre, ly.n, k, ts, g[k], pure ? pk[ly.pure_a + k] : T(0),
                    pure ? pk[ly.pure_w + k] : T(0), bufA, &gA, &gw);
    if (pure) {
      gpk[ly.pure_a + k] += gA;
      gpk[ly.pure_w + k] += gw;
    }
  }
  const T* z0 = scr + ly.s_z0;
  const T* zin = ly.nb > 0 ? scr + ly.s_zb[ly.nb - 1] : z0;
  const bool head_ext = dP != nullptr && ly.nb == 0;
  matrix_backward(pk + ly.head_w, gpk + ly.head_w, gpk + ly.head_b, L.heads * ly.n, zin, ly.head_in,
                  bufA, head_ext ? ly.in : 0, head_ext ? dP : nullptr, bufB);
  for (int j = ly.nb - 1; j >= 0; --j) {
    const T* u = scr + ly.s_u[j];
    const T* zb = scr + ly.s_zb[j];
    for (int o = 0; o < ly.bu; ++o) bufA[o] = bufB[o] * act_grad(L.act, u[o], zb[o]);
    const T* input = j > 0 ? scr + ly.s_zb[j - 1] : z0;
    const bool ext = dP != nullptr && j == 0;
    matrix_backward(pk + ly.bb_w[j], gpk + ly.bb_w[j], gpk + ly.bb_b[j], ly.bu, input, ly.bb_in[j],
                    bufA, ext ? ly.in : 0, ext ? dP : nullptr, bufB);
  }
  if (gx != nullptr) {
    for (int i = 0; i < ly.in; ++i) gx[i] += bufB[i];
  }
  for (int k = 0; k < ly.n; ++k) gh[k] += bufB[ly.in + k];
  return dts;
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

bool same_cpu_float(const at::Tensor& t, at::ScalarType dtype) {
  return t.device().is_cpu() && t.scalar_type() == dtype && t.layout() == at::kStrided;
}

// Parsed layout and packed parameters of one model, kept between onboard
// steps. The packed copy is checked against the version counters of the
// module's own tensors, which every in-place update (optimizer step,
// load_state_dict) bumps, so a stale copy is never used.
struct Plan {
  CfCLayout L;
  std::vector<int64_t> meta;
  std::vector<at::Tensor> params;
  at::Tensor packed;
  int64_t packed_version = -1;

  Plan(std::vector<int64_t> meta_in, std::vector<at::Tensor> params_in)
      : meta(std::move(meta_in)), params(std::move(params_in)) {
    const char* err = parse_layout(meta.data(), static_cast<int64_t>(meta.size()), L);
    TORCH_CHECK(err == nullptr, "lnn_nav fused CfC: bad layout: ", err ? err : "");
  }
  int64_t version() const {
    int64_t v = 0;
    for (const at::Tensor& p : params) v += p.is_inference() ? 0 : p._version();
    return v;
  }
  bool stale() const { return !packed.defined() || version() != packed_version; }
  void set_packed(const at::Tensor& pk) {
    TORCH_CHECK(pk.dim() == 1 && pk.numel() == L.packed_size, "packed parameters have ", pk.numel(),
                " values, layout needs ", L.packed_size);
    packed = pk.contiguous();
    packed_version = version();
  }
};

template <typename T>
T read_dt(const at::Tensor& d, int64_t b) {
  const int64_t offset = d.dim() == 0 ? 0 : b * d.stride(0);
  return d.scalar_type() == at::kDouble ? static_cast<T>(d.const_data_ptr<double>()[offset])
                                        : static_cast<T>(d.const_data_ptr<float>()[offset]);
}

// One onboard step without autograd. Returns {} (not an error) whenever the
// inputs are not the plain case, so the caller takes the reference path, which
// raises the package's documented errors for bad input; {undefined} when the
// packed parameters are stale (the caller repacks and calls again).
std::vector<at::Tensor> step(const at::Tensor& x, const at::Tensor& h,
                             const c10::optional<at::Tensor>& dt, double dt_value, const Plan& plan) {
  const CfCLayout& L = plan.L;
  if (plan.stale()) return {at::Tensor()};
  const at::Tensor& packed = plan.packed;
  const auto dtype = packed.scalar_type();
  if (!same_cpu_float(x, dtype) || !same_cpu_float(h, dtype) || x.dim() != 2 || h.dim() != 2 ||
      x.size(1) != L.input_size || h.size(0) != x.size(0) || h.size(1) != L.state_size ||
      !x.is_contiguous() || !h.is_contiguous())
    return {};
  const int64_t B = x.size(0);
  if (dt.has_value()) {
    const at::Tensor& d = *dt;
    const bool shape_ok = d.dim() == 0 || (d.dim() == 1 && d.size(0) == B) ||
                          (d.dim() == 2 && d.size(0) == B && d.size(1) == 1);
    const bool type_ok = d.scalar_type() == at::kFloat || d.scalar_type() == at::kDouble;
    if (!shape_ok || !type_ok || !d.device().is_cpu() || d.layout() != at::kStrided) return {};
  } else if (!std::isfinite(dt_value) || dt_value < 0) {
    return {};
  }
  at::Tensor hnew = at::empty({B, L.state_size}, x.options());
  bool ok = true;
  AT_DISPATCH_FLOATING_TYPES(dtype, "lnn_nav_cfc_step", [&] {
    std::vector<scalar_t> ts(B);
    for (int64_t b = 0; b < B; ++b) {
      ts[b] = dt.has_value() ? read_dt<scalar_t>(*dt, b) : static_cast<scalar_t>(dt_value);
      // NaN fails both comparisons: a bad Δt must not poison the state.
      if (!(ts[b] >= scalar_t(0) && ts[b] < std::numeric_limits<scalar_t>::infinity())) ok = false;
    }
    if (!ok) return;
    const scalar_t* pk = packed.const_data_ptr<scalar_t>();
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* hp = h.const_data_ptr<scalar_t>();
    scalar_t* out = hnew.data_ptr<scalar_t>();
    const int S = L.state_size;
    // Small batches run inline: a thread hand-off costs more than the step.
    const int64_t grain = B * L.scratch < 16384 ? B : 1;
    at::parallel_for(0, B, grain, [&](int64_t b0, int64_t b1) {
      std::vector<scalar_t> scr(L.scratch);
      for (int64_t b = b0; b < b1; ++b) {
        step_sample(L, pk, xp + b * L.input_size, static_cast<const scalar_t*>(nullptr), hp + b * S,
                    ts[b], scr.data(), out + b * S);
      }
    });
  });
  if (!ok) return {};
  at::Tensor result;
  if (L.proj > 0) {
    const at::Tensor w = packed.narrow(0, L.proj_w, static_cast<int64_t>(L.out_len) * L.proj)
                             .view({L.out_len, L.proj});
    const at::Tensor b = packed.narrow(0, L.proj_b, L.proj);
    result = at::addmm(b, hnew.narrow(1, L.out_start, L.out_len), w);
  } else if (L.out_start == 0 && L.out_len == L.state_size) {
    result = hnew;
  } else {
    result = hnew.narrow(1, L.out_start, L.out_len);
  }
  return {result, hnew};
}

void check_sequence(const at::Tensor& P, const at::Tensor& h0, const at::Tensor& ts,
                    const at::Tensor& packed, const CfCLayout& L) {
  const auto dtype = packed.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble,
              "lnn_nav fused CfC (CPU): float32 or float64 expected, got ", dtype);
  for (const at::Tensor* t : {&P, &h0, &ts, &packed}) {
    TORCH_CHECK(same_cpu_float(*t, dtype) && t->is_contiguous(),
                "lnn_nav fused CfC (CPU): every tensor must be a contiguous CPU ", dtype, " tensor");
  }
  TORCH_CHECK(P.dim() == 3 && P.size(2) == L.u0, "P must be [B, T, ", L.u0, "]");
  TORCH_CHECK(h0.dim() == 2 && h0.size(0) == P.size(0) && h0.size(1) == L.state_size,
              "h0 must be [B, ", L.state_size, "]");
  TORCH_CHECK(ts.dim() == 2 && ts.size(0) == P.size(0) && ts.size(1) == P.size(1), "ts must be [B, T]");
}

at::Tensor seq_forward(const at::Tensor& P, const at::Tensor& h0, const at::Tensor& ts,
                       const at::Tensor& packed, const std::vector<int64_t>& meta) {
  const CfCLayout L = layout_from(meta, packed);
  check_sequence(P, h0, ts, packed, L);
  const int64_t B = P.size(0), T = P.size(1);
  const int S = L.state_size;
  at::Tensor states = at::empty({B, T, S}, P.options());
  AT_DISPATCH_FLOATING_TYPES(packed.scalar_type(), "lnn_nav_cfc_seq_forward", [&] {
    const scalar_t* pk = packed.data_ptr<scalar_t>();
    const scalar_t* pp = P.data_ptr<scalar_t>();
    const scalar_t* hp = h0.data_ptr<scalar_t>();
    const scalar_t* tp = ts.data_ptr<scalar_t>();
    scalar_t* st = states.data_ptr<scalar_t>();
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      std::vector<scalar_t> scr(L.scratch);
      for (int64_t b = b0; b < b1; ++b) {
        for (int64_t t = 0; t < T; ++t) {
          const scalar_t* hprev = t == 0 ? hp + b * S : st + (b * T + t - 1) * S;
          step_sample(L, pk, static_cast<const scalar_t*>(nullptr), pp + (b * T + t) * L.u0, hprev,
                      tp[b * T + t], scr.data(), st + (b * T + t) * S);
        }
      }
    });
  });
  return states;
}

// Gradients of seq_forward by recomputing each step's activations from the
// stored states (no activation storage beyond the states themselves).
// Returns {dP, dh0, dts, dpacked}; dpacked leaves the input-projection rows
// and bias of layer 0's first matrix at zero: the caller adds them from dP.
std::vector<at::Tensor> seq_backward(const at::Tensor& grad_states, const at::Tensor& P,
                                     const at::Tensor& h0, const at::Tensor& ts,
                                     const at::Tensor& packed, const std::vector<int64_t>& meta,
                                     const at::Tensor& states) {
  const CfCLayout L = layout_from(meta, packed);
  check_sequence(P, h0, ts, packed, L);
  const int64_t B = P.size(0), T = P.size(1);
  const int S = L.state_size;
  TORCH_CHECK(grad_states.sizes() == states.sizes() && states.dim() == 3 && states.size(2) == S,
              "grad_states and states must be [B, T, ", S, "]");
  const at::Tensor gs = grad_states.contiguous().to(packed.scalar_type());
  const at::Tensor st_c = states.contiguous();
  at::Tensor dP = at::empty_like(P);
  at::Tensor dh0 = at::empty_like(h0);
  at::Tensor dts = at::empty_like(ts);
  const int threads = at::get_num_threads();
  // One gradient buffer per worker thread, summed at the end: no atomics.
  at::Tensor gbuf = at::zeros({threads, L.packed_size}, packed.options());
  AT_DISPATCH_FLOATING_TYPES(packed.scalar_type(), "lnn_nav_cfc_seq_backward", [&] {
    const scalar_t* pk = packed.data_ptr<scalar_t>();
    const scalar_t* pp = P.data_ptr<scalar_t>();
    const scalar_t* hp = h0.data_ptr<scalar_t>();
    const scalar_t* tp = ts.data_ptr<scalar_t>();
    const scalar_t* st = st_c.data_ptr<scalar_t>();
    const scalar_t* gsp = gs.data_ptr<scalar_t>();
    scalar_t* dPp = dP.data_ptr<scalar_t>();
    scalar_t* dhp = dh0.data_ptr<scalar_t>();
    scalar_t* dtp = dts.data_ptr<scalar_t>();
    scalar_t* gb = gbuf.data_ptr<scalar_t>();
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      scalar_t* gpk = gb + static_cast<int64_t>(at::get_thread_num()) * L.packed_size;
      std::vector<scalar_t> scr(L.scratch), g(S), carry(S, scalar_t(0));
      std::vector<scalar_t> bufA(L.max_width), bufB(L.max_width), hl(S);
      for (int64_t b = b0; b < b1; ++b) {
        std::fill(carry.begin(), carry.end(), scalar_t(0));
        for (int64_t t = T - 1; t >= 0; --t) {
          const int64_t bt = b * T + t;
          for (int s = 0; s < S; ++s) g[s] = gsp[bt * S + s] + carry[s];
          std::fill(carry.begin(), carry.end(), scalar_t(0));
          const scalar_t* hprev = t == 0 ? hp + b * S : st + (bt - 1) * S;
          const scalar_t* hnew = st + bt * S;
          const scalar_t tsb = tp[bt];
          scalar_t dt_acc = scalar_t(0);
          for (int l = L.num_layers - 1; l >= 0; --l) {
            const LayerLayout& ly = L.layers[l];
            // Recompute this layer's activations (its inputs are stored states).
            layer_forward(L, ly, pk, l == 0 ? nullptr : hnew + L.layers[l - 1].state_off,
                          hprev + ly.state_off, tsb, l == 0 ? pp + bt * L.u0 : nullptr, scr.data(),
                          hl.data());
            dt_acc += layer_backward(L, ly, pk, tsb, scr.data(), g.data() + ly.state_off, gpk,
                                     l == 0 ? nullptr : g.data() + L.layers[l - 1].state_off,
                                     carry.data() + ly.state_off, l == 0 ? dPp + bt * L.u0 : nullptr,
                                     bufA.data(), bufB.data());
          }
          dtp[bt] = dt_acc;
        }
        std::copy(carry.begin(), carry.end(), dhp + b * S);
      }
    });
  });
  return {dP, dh0, dts, gbuf.sum(0)};
}

}  // namespace
}  // namespace lnn_nav

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "lnn_nav fused CfC kernels (CPU)";
  py::class_<lnn_nav::Plan>(m, "Plan", "parsed layout and packed parameters of one CfC core")
      .def(py::init<std::vector<int64_t>, std::vector<at::Tensor>>(), py::arg("meta"), py::arg("params"))
      .def("set_packed", &lnn_nav::Plan::set_packed)
      .def_property_readonly("stale", &lnn_nav::Plan::stale);
  m.def("step", &lnn_nav::step,
        "one fused CfC step: [out, h] , [] for the reference path, [None] when the plan is stale",
        py::arg("x"), py::arg("h"), py::arg("dt"), py::arg("dt_value"), py::arg("plan"));
  m.def("seq_forward", &lnn_nav::seq_forward, "fused CfC sequence forward -> states [B, T, S]");
  m.def("seq_backward", &lnn_nav::seq_backward, "gradients of seq_forward (recompute)");
}
