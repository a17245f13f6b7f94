// Fused CfC core on the CPU: one step (onboard, batch 1) and whole sequences
// forward and backward (training), for dense and wired cells in every mode.
//
// Work is per sample: the recurrent weights are small enough to stay in cache,
// so matrix-vector products in plain loops beat calling a BLAS per step. The
// input projection of layer 0 for all steps is one matrix product done by the
// caller (lnn_nav/kernels/ops.py), which hands it in as P; the backward pass
// gathers the weight gradients of many (sample, step) pairs into one BLAS
// matrix product (GatheredGrads). A batch-1 step allocates nothing but its
// output, and its element-wise math vectorises (see cfc_math.h).
#include <torch/extension.h>

#include <ATen/EmptyTensor.h>
#include <ATen/Parallel.h>
#include <c10/util/SmallVector.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "cfc_layout.h"
#include "cfc_math.h"
#include "cfc_step.h"
#include "encoder_cpu.h"

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

// d[o] = g[o] * act'(u[o]).
template <int Act, typename T>
LNN_ALWAYS_INLINE void act_backward_as(const T* __restrict g, const T* __restrict u, const T* __restrict z,
                                       int n, T* __restrict d) {
#pragma omp simd
  for (int o = 0; o < n; ++o) d[o] = g[o] * act_grad(Act, u[o], z[o]);
}

template <typename T>
LNN_ALWAYS_INLINE void act_backward(int act, const T* g, const T* u, const T* z, int n, T* d) {
  switch (act) {
    case kLecunTanh: return act_backward_as<kLecunTanh>(g, u, z, n, d);
    case kTanh: return act_backward_as<kTanh>(g, u, z, n, d);
    case kRelu: return act_backward_as<kRelu>(g, u, z, n, d);
    case kSilu: return act_backward_as<kSilu>(g, u, z, n, d);
    default: return act_backward_as<kGelu>(g, u, z, n, d);
  }
}

// Backward of cells_forward: writes dpre and, in pure mode, the parameter
// gradients gA and gw; returns d/d ts.
template <int Mode, typename T>
LNN_ALWAYS_INLINE T cells_backward_as(const T* __restrict pre, int n, T ts, const T* __restrict g,
                                      const T* __restrict A, const T* __restrict w_tau, T* __restrict dpre,
                                      T* __restrict gA, T* __restrict gw) {
  T dts = T(0);
#pragma omp simd reduction(+ : dts)
  for (int k = 0; k < n; ++k) {
    T a_grad, w_grad;
    dts += cell_bwd(Mode, pre, n, k, ts, g[k], Mode == kPure ? A[k] : T(0), Mode == kPure ? w_tau[k] : T(0),
                    dpre, &a_grad, &w_grad);
    if (Mode == kPure) {
      gA[k] = a_grad;
      gw[k] = w_grad;
    }
  }
  return dts;
}

template <typename T>
LNN_ALWAYS_INLINE T cells_backward(int mode, const T* pre, int n, T ts, const T* g, const T* A,
                                   const T* w_tau, T* dpre, T* gA, T* gw) {
  switch (mode) {
    case kDefault: return cells_backward_as<kDefault>(pre, n, ts, g, A, w_tau, dpre, gA, gw);
    case kNoGate: return cells_backward_as<kNoGate>(pre, n, ts, g, A, w_tau, dpre, gA, gw);
    default: return cells_backward_as<kPure>(pre, n, ts, g, A, w_tau, dpre, gA, gw);
  }
}

// Calls fn(l, j, weight offset, bias offset, rows, cols) for every matrix
// product of the cell (layer l, backbone j < nb, heads at j == nb), each
// weight [rows, cols].
template <typename F>
void for_each_matrix(const CfCLayout& L, const F& fn) {
  for (int l = 0; l < L.num_layers; ++l) {
    const LayerLayout& ly = L.layers[l];
    for (int j = 0; j < ly.nb; ++j) fn(l, j, ly.bb_w[j], ly.bb_b[j], ly.bb_in[j], ly.bu);
    fn(l, ly.nb, ly.head_w, ly.head_b, ly.head_in, L.heads * ly.n);
  }
}

// The packed parameters with each weight matrix transposed at its own offset,
// so the backward pass gets its input gradients (W d) with the same contiguous,
// vectorised loop as the forward pass rather than a dot product per row.
// Made once per backward call; it costs less than one sample's step.
at::Tensor transposed_weights(const CfCLayout& L, const at::Tensor& packed) {
  at::Tensor out = packed.clone();
  for_each_matrix(L, [&](int, int, int64_t offset, int64_t, int rows, int cols) {
    const int64_t size = static_cast<int64_t>(rows) * cols;
    const at::Tensor weight = packed.narrow(0, offset, size).view({rows, cols});
    out.narrow(0, offset, size).view({cols, rows}).copy_(weight.t());
  });
  return out;
}

// Parameter gradients of a sequence, gathered rather than added pair by pair:
// for up to kRows (sample, step) pairs each matrix product's input row z and
// output gradient d are kept (and, in pure mode, each layer's A and w_tau
// gradients), then dW += Z^T D is one BLAS matrix product and the bias and
// A, w_tau gradients are column sums. Adding z d^T for every pair read and
// wrote all of dW each time, which bounded the backward pass by memory
// traffic; and the column sums (ATen's cascade summation) keep float32 sums
// over long sequences accurate where adding one pair at a time drifted.
template <typename T>
struct GatheredGrads {
  static constexpr int kRows = 256;
  // One row per gathered pair of one gradient (or matrix product input).
  struct Rows {
    at::Tensor rows;  // [kRows, width]
    T* data = nullptr;
    int width = 0;
    void init(int w, const at::TensorOptions& options) {
      width = w;
      rows = at::empty({kRows, w}, options);
      data = rows.template data_ptr<T>();
    }
    T* row(int i) const { return data + static_cast<int64_t>(i) * width; }
    at::Tensor first(int count) const { return rows.narrow(0, 0, count); }
  };
  struct Product {
    at::Tensor weight_grad;  // [rows, cols] view of the packed gradient
    at::Tensor bias_grad;    // undefined where the caller owns it (the input projection)
    Rows z, d;
  };
  struct PureLayer {
    at::Tensor a_grad, w_grad;
    Rows a, w;
  };
  Product products[kMaxLayers * (kMaxBackbone + 1)];
  PureLayer pure[kMaxLayers];
  int first[kMaxLayers] = {0};  // layer l's products: backbone 0..nb-1, then heads
  int num_products = 0, num_pure = 0;
  int count = 0;

  GatheredGrads(const CfCLayout& L, const at::Tensor& gpk) {
    const auto options = gpk.options();
    for_each_matrix(L, [&](int l, int j, int64_t w_off, int64_t b_off, int rows, int cols) {
      if (j == 0) first[l] = num_products;
      Product& p = products[num_products++];
      p.weight_grad = gpk.narrow(0, w_off, static_cast<int64_t>(rows) * cols).view({rows, cols});
      // Layer 0's first product is fed P: the caller owns its bias gradient
      // (and that of the x rows, whose z entries are zero here).
      if (!(l == 0 && j == 0)) p.bias_grad = gpk.narrow(0, b_off, cols);
      p.z.init(rows, options);
      p.d.init(cols, options);
    });
    if (L.mode == kPure) {
      for (int l = 0; l < L.num_layers; ++l) {
        const LayerLayout& ly = L.layers[l];
        PureLayer& q = pure[num_pure++];
        q.a_grad = gpk.narrow(0, ly.pure_a, ly.n);
        q.w_grad = gpk.narrow(0, ly.pure_w, ly.n);
        q.a.init(ly.n, options);
        q.w.init(ly.n, options);
      }
    }
  }
  // Where layer l's product j keeps the current pair's z and d.
  T* z_row(int l, int j) const { return products[first[l] + j].z.row(count); }
  T* d_row(int l, int j) const { return products[first[l] + j].d.row(count); }
  // Where layer l keeps the current pair's A and w_tau gradients (pure mode).
  T* a_row(int l) const { return num_pure ? pure[l].a.row(count) : nullptr; }
  T* w_row(int l) const { return num_pure ? pure[l].w.row(count) : nullptr; }

  void next_pair() {
    if (++count == kRows) flush();
  }
  // Out of line: ATen and BLAS are called from here, not from the vectorised clones.
  LNN_NOINLINE void flush() {
    if (count == 0) return;
    for (int m = 0; m < num_products; ++m) {
      Product& p = products[m];
      p.weight_grad.addmm_(p.z.first(count).t(), p.d.first(count));
      if (p.bias_grad.defined()) p.bias_grad.add_(p.d.first(count).sum(0));
    }
    for (int l = 0; l < num_pure; ++l) {
      pure[l].a_grad.add_(pure[l].a.first(count).sum(0));
      pure[l].w_grad.add_(pure[l].w.first(count).sum(0));
    }
    count = 0;
  }
};

// Backward of one matrix product u = Wt^T z + b for one sample: the input
// gradient dz = Wt d (from W, Wt transposed: see transposed_weights), and z
// and d kept for the weight and bias gradients. With `dP`, the rows [0, r0)
// and the bias belong to the input projection, whose gradients the caller
// computes for all steps at once from dP.
template <typename T>
LNN_ALWAYS_INLINE void matrix_backward(const T* __restrict W, int O, const T* __restrict z, int width,
                                       const T* __restrict d, int r0, T* __restrict dP, T* __restrict dz,
                                       T* __restrict z_row, T* __restrict d_row) {
  if (dP != nullptr) std::copy(d, d + O, dP);
  std::fill(z_row, z_row + r0, T(0));
  std::copy(z + r0, z + width, z_row + r0);
  std::copy(d, d + O, d_row);
  std::fill(dz, dz + width, T(0));
  mv_acc(W + r0, width, width - r0, d, 0, O, dz + r0);
}

// Backward of layer_forward (its scratch must hold that step's activations).
// g: d loss / d new layer state. Adds into gx (feed-forward input; null for a
// layer 0 fed by P, whose gradient goes to dP) and gh (previous layer state);
// the parameter gradients go to `grads`. pkt: the packed parameters with every
// weight matrix transposed (see transposed_weights), for the input gradients.
template <typename T>
T layer_backward(const CfCLayout& L, int l, const T* pk, const T* pkt, T ts, const T* scr, const T* g,
                 GatheredGrads<T>& grads, T* gx, T* gh, T* dP, T* bufA, T* bufB) {
  const LayerLayout& ly = L.layers[l];
  const T dts = cells_backward(L.mode, scr + ly.s_pre, ly.n, ts, g, pk + ly.pure_a, pk + ly.pure_w, bufA,
                               grads.a_row(l), grads.w_row(l));
  const T* z0 = scr + ly.s_z0;
  const T* zin = ly.nb > 0 ? scr + ly.s_zb[ly.nb - 1] : z0;
  const bool head_ext = dP != nullptr && ly.nb == 0;
  matrix_backward(pkt + ly.head_w, L.heads * ly.n, zin, ly.head_in, bufA, head_ext ? ly.in : 0,
                  head_ext ? dP : nullptr, bufB, grads.z_row(l, ly.nb), grads.d_row(l, ly.nb));
  for (int j = ly.nb - 1; j >= 0; --j) {
    const T* u = scr + ly.s_u[j];
    const T* zb = scr + ly.s_zb[j];
    act_backward(L.act, bufB, u, zb, ly.bu, bufA);
    const T* input = j > 0 ? scr + ly.s_zb[j - 1] : z0;
    const bool ext = dP != nullptr && j == 0;
    matrix_backward(pkt + ly.bb_w[j], ly.bu, input, ly.bb_in[j], bufA, ext ? ly.in : 0,
                    ext ? dP : nullptr, bufB, grads.z_row(l, j), grads.d_row(l, j));
  }
  if (gx != nullptr) {
    for (int i = 0; i < ly.in; ++i) gx[i] += bufB[i];
  }
  for (int k = 0; k < ly.n; ++k) gh[k] += bufB[ly.in + k];
  return dts;
}

// Inference on a group of samples at once (sequence_infer): each weight row is
// read once per step for the whole group instead of once per sample, so a
// matrix that lives in L2 (a 64-unit dense cell's 180 KB) streams once per step.
constexpr int kGroup = 8;

// out_b[o] += sum_{i in [r0, r1)} v_b[i] * Wt[i, o] for the nb samples of a group
// (v_b = v + b * vs, out_b = out + b * os); four rows per pass, as mv_acc.
template <typename T>
LNN_ALWAYS_INLINE void mv_acc_group(const T* __restrict Wt, int64_t ld, int O, const T* __restrict v, int64_t vs,
                                    int nb, int r0, int r1, T* __restrict out, int64_t os) {
  int i = r0;
  for (; i + 4 <= r1; i += 4) {
    const T* __restrict w0 = Wt + i * ld;
    const T* __restrict w1 = w0 + ld;
    const T* __restrict w2 = w1 + ld;
    const T* __restrict w3 = w2 + ld;
    for (int b = 0; b < nb; ++b) {
      const T* vb = v + b * vs;
      T* __restrict ob = out + b * os;
      const T v0 = vb[i], v1 = vb[i + 1], v2 = vb[i + 2], v3 = vb[i + 3];
#pragma omp simd
      for (int o = 0; o < O; ++o) ob[o] += v0 * w0[o] + v1 * w1[o] + v2 * w2[o] + v3 * w3[o];
    }
  }
  for (; i < r1; ++i) {
    const T* __restrict row = Wt + i * ld;
    for (int b = 0; b < nb; ++b) {
      const T vi = v[b * vs + i];
      T* __restrict ob = out + b * os;
#pragma omp simd
      for (int o = 0; o < O; ++o) ob[o] += vi * row[o];
    }
  }
}

// layer_forward for nb samples: sample b's scratch at scr + b * L.scratch, its
// feed-forward input at xpart + b * xs, previous state at hprev + b * hs, new
// state to hnew + b * hns.
template <typename T>
void layer_forward_group(const CfCLayout& L, const LayerLayout& ly, const T* pk, const T* xpart, int64_t xs,
                         const T* hprev, int64_t hs, const T* ts, int nb, T* scr, T* hnew, int64_t hns) {
  const int64_t ss = L.scratch;
  for (int b = 0; b < nb; ++b) {
    T* z0 = scr + b * ss + ly.s_z0;
    std::copy(xpart + b * xs, xpart + b * xs + ly.in, z0);
    std::copy(hprev + b * hs, hprev + b * hs + ly.n, z0 + ly.in);
  }
  int64_t zoff = ly.s_z0;
  int width = ly.in + ly.n;
  for (int j = 0; j < ly.nb; ++j) {
    for (int b = 0; b < nb; ++b) std::copy_n(pk + ly.bb_b[j], ly.bu, scr + b * ss + ly.s_u[j]);
    mv_acc_group(pk + ly.bb_w[j], ly.bu, ly.bu, scr + zoff, ss, nb, 0, width, scr + ly.s_u[j], ss);
    for (int b = 0; b < nb; ++b) act_forward(L.act, scr + b * ss + ly.s_u[j], ly.bu, scr + b * ss + ly.s_zb[j]);
    zoff = ly.s_zb[j];
    width = ly.bu;
  }
  const int hn = L.heads * ly.n;
  for (int b = 0; b < nb; ++b) std::copy_n(pk + ly.head_b, hn, scr + b * ss + ly.s_pre);
  mv_acc_group(pk + ly.head_w, hn, hn, scr + zoff, ss, nb, 0, width, scr + ly.s_pre, ss);
  for (int b = 0; b < nb; ++b) {
    cells_forward(L.mode, scr + b * ss + ly.s_pre, ly.n, ts[b], pk + ly.pure_a, pk + ly.pure_w, hnew + b * hns);
  }
}

// step_sample for a group of nb <= kGroup samples (strides as layer_forward_group).
template <typename T>
void step_group(const CfCLayout& L, const T* pk, const T* x, int64_t xs, const T* hprev, int64_t hs, const T* ts,
                int nb, T* scr, T* hnew, int64_t hns) {
  for (int l = 0; l < L.num_layers; ++l) {
    const LayerLayout& ly = L.layers[l];
    const bool first = l == 0;
    const T* xpart = first ? x : hnew + L.layers[l - 1].state_off;
    layer_forward_group(L, ly, pk, xpart, first ? xs : hns, hprev + ly.state_off, hs, ts, nb, scr, hnew + ly.state_off,
                        hns);
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
  bool any_requires_grad() const {
    for (const at::Tensor& p : params) {
      if (p.requires_grad()) return true;
    }
    return false;
  }
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

// One onboard step without autograd: the tuple (out, new h). Returns () (not
// an error) whenever the inputs are not the plain case, so the caller takes the
// reference path, which raises the package's documented errors for bad input;
// (None,) when the packed parameters are stale (the caller repacks and calls
// again). A tuple, not a list: the caller hands it on as it is.
py::tuple step(const at::Tensor& x, const at::Tensor& h, const c10::optional<at::Tensor>& dt,
               double dt_value, const Plan& plan) {
  const CfCLayout& L = plan.L;
  if (plan.stale()) return py::make_tuple(py::none());
  const at::Tensor& packed = plan.packed;
  const auto dtype = packed.scalar_type();
  if (!same_cpu_float(x, dtype) || !same_cpu_float(h, dtype) || x.dim() != 2 || h.dim() != 2 ||
      x.size(1) != L.input_size || h.size(0) != x.size(0) || h.size(1) != L.state_size ||
      !x.is_contiguous() || !h.is_contiguous())
    return py::tuple();
  const int64_t B = x.size(0);
  if (dt.has_value()) {
    const at::Tensor& d = *dt;
    const bool shape_ok = d.dim() == 0 || (d.dim() == 1 && d.size(0) == B) ||
                          (d.dim() == 2 && d.size(0) == B && d.size(1) == 1);
    const bool type_ok = d.scalar_type() == at::kFloat || d.scalar_type() == at::kDouble;
    if (!shape_ok || !type_ok || !d.device().is_cpu() || d.layout() != at::kStrided) return py::tuple();
  } else if (!std::isfinite(dt_value) || dt_value < 0) {
    return py::tuple();
  }
  at::Tensor hnew = at::empty({B, L.state_size}, x.options());
  bool ok = true;
  AT_DISPATCH_FLOATING_TYPES(dtype, "lnn_nav_cfc_step", [&] {
    // Inline buffers: a heap allocation costs a sizeable part of a batch-1 step.
    c10::SmallVector<scalar_t, 8> ts(B);
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
      c10::SmallVector<scalar_t, 1024> scr(L.scratch);
      run_vectorised([&] {
        for (int64_t b = b0; b < b1; ++b) {
          step_sample(L, pk, xp + b * L.input_size, static_cast<const scalar_t*>(nullptr), hp + b * S,
                      ts[b], scr.data(), out + b * S);
        }
      });
    });
  });
  if (!ok) return py::tuple();
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
  return py::make_tuple(result, hnew);
}

// Checks the onboard Δt (a 0-d, [B] or [B, 1] float tensor, or a number) and
// writes one value per sample; false whenever the reference path must judge it.
template <typename T>
bool step_timespans(const c10::optional<at::Tensor>& dt, double dt_value, int64_t B, T* ts) {
  if (dt.has_value()) {
    const at::Tensor& d = *dt;
    const bool shape_ok = d.dim() == 0 || (d.dim() == 1 && d.size(0) == B) ||
                          (d.dim() == 2 && d.size(0) == B && d.size(1) == 1);
    const bool type_ok = d.scalar_type() == at::kFloat || d.scalar_type() == at::kDouble;
    if (!shape_ok || !type_ok || !d.device().is_cpu() || d.layout() != at::kStrided) return false;
  } else if (!std::isfinite(dt_value) || dt_value < 0) {
    return false;
  }
  for (int64_t b = 0; b < B; ++b) {
    ts[b] = dt.has_value() ? read_dt<T>(*dt, b) : static_cast<T>(dt_value);
    // NaN fails both comparisons: a bad Δt must not poison the state.
    if (!(ts[b] >= T(0) && ts[b] < std::numeric_limits<T>::infinity())) return false;
  }
  return true;
}

// An extra policy input ([B, n] float32/float64 on the CPU), or false for the reference path.
bool extra_ok(const c10::optional<at::Tensor>& t, int64_t B, int64_t n) {
  if (!t.has_value()) return true;
  const at::Tensor& v = *t;
  return v.dim() == 2 && v.size(0) == B && v.size(1) == n && v.device().is_cpu() && v.layout() == at::kStrided &&
         (v.scalar_type() == at::kFloat || v.scalar_type() == at::kDouble);
}

float extra_at(const at::Tensor& v, int64_t b, int64_t i) {
  const int64_t offset = b * v.stride(0) + i * v.stride(1);
  return v.scalar_type() == at::kDouble ? static_cast<float>(v.const_data_ptr<double>()[offset])
                                        : v.const_data_ptr<float>()[offset];
}

// The whole policy step without autograd (lnn_nav/models/policy.py, LiquidPolicy.step):
// image -> encoder features, then the IMU and the goal (its distance clipped and
// scaled), the CfC step, the head: (command [B, 4], new state [B, S]). Returns ()
// whenever an input is not the plain case (the reference path raises the
// package's errors), (None,) when the core's packed parameters are stale.
py::tuple policy_step(const at::Tensor& image, const c10::optional<at::Tensor>& imu,
                      const c10::optional<at::Tensor>& goal, const c10::optional<at::Tensor>& h,
                      const c10::optional<at::Tensor>& dt, double dt_value, EncoderPlan& enc, const Plan& core,
                      double goal_clip) {
  const CfCLayout& L = core.L;
  if (core.stale()) return py::make_tuple(py::none());
  if (core.packed.scalar_type() != at::kFloat) return py::tuple();
  ImageView view;
  if (!image_view(enc, image, view)) return py::tuple();
  const int64_t B = image.size(0);
  constexpr int kImu = 6, kGoal = 4;
  if (!extra_ok(imu, B, kImu) || !extra_ok(goal, B, kGoal)) return py::tuple();
  const int64_t width = enc.E.features + (imu.has_value() ? kImu : 0) + (goal.has_value() ? kGoal : 0);
  const int out_size = L.proj > 0 ? L.proj : L.out_len;
  if (width != L.input_size || enc.E.head_in != out_size) return py::tuple();
  if (h.has_value()) {
    const at::Tensor& hv = *h;
    if (!same_cpu_float(hv, at::kFloat) || hv.dim() != 2 || hv.size(0) != B || hv.size(1) != L.state_size ||
        !hv.is_contiguous())
      return py::tuple();
  }
  c10::SmallVector<float, 8> ts(B);
  if (!step_timespans<float>(dt, dt_value, B, ts.data())) return py::tuple();
  enc.refresh();
  const auto options = at::TensorOptions().dtype(at::kFloat);
  at::Tensor command = at::empty({B, kCommands}, options);
  at::Tensor hnew = at::empty({B, L.state_size}, options);
  const float* pk = core.packed.const_data_ptr<float>();
  const float* hp = h.has_value() ? h->const_data_ptr<float>() : nullptr;
  float* hout = hnew.data_ptr<float>();
  float* cmd = command.data_ptr<float>();
  const float clip = static_cast<float>(goal_clip);
  const int S = L.state_size;
  auto sample = [&](int64_t b, float* enc_scr, float* x, float* scr, float* zeros, float* proj) {
    encode_sample(enc.E, enc.weights(), view, b, enc_scr, x);
    int64_t at_col = enc.E.features;
    if (imu.has_value()) {
      for (int i = 0; i < kImu; ++i) x[at_col + i] = extra_at(*imu, b, i);
      at_col += kImu;
    }
    if (goal.has_value()) {
      for (int i = 0; i < 3; ++i) x[at_col + i] = extra_at(*goal, b, i);
      const float d = extra_at(*goal, b, 3);
      x[at_col + 3] = (d > clip ? clip : d) / clip;  // NaN stays NaN, as with clamp
    }
    float* hn = hout + b * S;
    run_vectorised([&] {
      step_sample(L, pk, static_cast<const float*>(x), static_cast<const float*>(nullptr),
                  hp != nullptr ? hp + b * S : zeros, ts[b], scr, hn);
    });
    policy_head(enc.E, enc.weights(), core_output(L, pk, static_cast<const float*>(hn), proj), cmd + b * kCommands);
  };
  auto run_range = [&](int64_t b0, int64_t b1, float* enc_scr) {
    c10::SmallVector<float, 256> x(L.input_size), zeros(S, 0.0f), proj(std::max(L.proj, 1));
    c10::SmallVector<float, 1024> scr(L.scratch);
    for (int64_t b = b0; b < b1; ++b) sample(b, enc_scr, x.data(), scr.data(), zeros.data(), proj.data());
  };
  if (B == 1) {
    run_range(0, 1, enc.scratch.data_ptr<float>());
  } else {
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      at::Tensor enc_scr = enc.new_scratch();
      run_range(b0, b1, enc_scr.data_ptr<float>());
    });
  }
  return py::make_tuple(command, hnew);
}

// A short sequence without autograd, step by step (CfC.forward in inference):
// x [B, T, F] -> (outputs [B, T, O], final state [B, S]). The ncps-style call
// model(x[B, 1, F], h, timespans=...) lands here. Δt: `ts` in any layout
// lnn_nav/models/timespans.py accepts (0-d, [B, T], [B, T, 1], [B] or [B, 1]
// when T == 1, [T] when B == 1), or the number `ts_value`. Returns () for the
// reference path (anything else, or a Δt it must refuse), (None,) when stale.
py::tuple sequence_infer(const at::Tensor& x, const c10::optional<at::Tensor>& h0,
                         const c10::optional<at::Tensor>& ts, double ts_value, const Plan& plan) {
  const CfCLayout& L = plan.L;
  if (plan.stale()) return py::make_tuple(py::none());
  const at::Tensor& packed = plan.packed;
  const auto dtype = packed.scalar_type();
  if (!same_cpu_float(x, dtype) || x.dim() != 3 || x.size(2) != L.input_size || !x.is_contiguous() ||
      x.size(0) < 1 || x.size(1) < 1)
    return py::tuple();
  const int64_t B = x.size(0), T = x.size(1);
  const int S = L.state_size;
  if (h0.has_value()) {
    const at::Tensor& hv = *h0;
    if (!same_cpu_float(hv, dtype) || hv.dim() != 2 || hv.size(0) != B || hv.size(1) != S || !hv.is_contiguous())
      return py::tuple();
  }
  int64_t sb = 0, st = 0;  // strides of the Δt read for (b, t)
  if (ts.has_value()) {
    const at::Tensor& d = *ts;
    if (!d.device().is_cpu() || d.layout() != at::kStrided ||
        (d.scalar_type() != at::kFloat && d.scalar_type() != at::kDouble))
      return py::tuple();
    const auto sz = d.sizes();
    if (d.dim() == 0) {
    } else if ((d.dim() == 2 && sz[0] == B && sz[1] == T) || (d.dim() == 3 && sz[0] == B && sz[1] == T && sz[2] == 1)) {
      sb = d.stride(0);
      st = d.stride(1);
    } else if (T == 1 && ((d.dim() == 1 && sz[0] == B) || (d.dim() == 2 && sz[0] == B && sz[1] == 1))) {
      sb = d.stride(0);
    } else if (B == 1 && d.dim() == 1 && sz[0] == T) {
      st = d.stride(0);
    } else {
      return py::tuple();
    }
  } else if (!std::isfinite(ts_value) || ts_value < 0) {
    return py::tuple();
  }
  const int out_size = L.proj > 0 ? L.proj : L.out_len;
  // Straight from the CPU allocator: through the dispatcher (at::empty, a view of
  // the outputs) each costs about as much as a small step.
  at::Tensor outputs(at::detail::empty_cpu({B, T, out_size}, dtype, false, c10::nullopt));
  at::Tensor hlast(at::detail::empty_cpu({B, S}, dtype, false, c10::nullopt));
  bool ok = true;
  AT_DISPATCH_FLOATING_TYPES(dtype, "lnn_nav_cfc_sequence_infer", [&] {
    const int64_t n = B * T;
    c10::SmallVector<scalar_t, 64> tv(n);
    for (int64_t b = 0; b < B && ok; ++b) {
      for (int64_t t = 0; t < T; ++t) {
        scalar_t value;
        if (!ts.has_value()) {
          value = static_cast<scalar_t>(ts_value);
        } else {
          const int64_t offset = b * sb + t * st;
          value = ts->scalar_type() == at::kDouble ? static_cast<scalar_t>(ts->const_data_ptr<double>()[offset])
                                                   : static_cast<scalar_t>(ts->const_data_ptr<float>()[offset]);
        }
        if (!(value >= scalar_t(0) && value < std::numeric_limits<scalar_t>::infinity())) {
          ok = false;
          break;
        }
        tv[b * T + t] = value;
      }
    }
    if (!ok) return;
    const scalar_t* pk = packed.const_data_ptr<scalar_t>();
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* hp = h0.has_value() ? h0->const_data_ptr<scalar_t>() : nullptr;
    scalar_t* op = outputs.data_ptr<scalar_t>();
    scalar_t* hl = hlast.data_ptr<scalar_t>();
    // Groups of up to kGroup samples, step by step; groups run in parallel when
    // there is enough work to share.
    const int64_t groups = (B + kGroup - 1) / kGroup;
    const int64_t grain = n * L.scratch < 65536 ? groups : 1;
    const int gmax = static_cast<int>(std::min<int64_t>(B, kGroup));  // samples in the largest group
    at::parallel_for(0, groups, grain, [&](int64_t g0, int64_t g1) {
      c10::SmallVector<scalar_t, 4096> scr(static_cast<int64_t>(gmax) * L.scratch);
      c10::SmallVector<scalar_t, 1024> ha(gmax * S), hb(gmax * S);
      c10::SmallVector<scalar_t, 64> proj(std::max(L.proj, 1)), tstep(kGroup);
      for (int64_t g = g0; g < g1; ++g) {
        const int64_t b0 = g * kGroup;
        const int nb = static_cast<int>(std::min<int64_t>(kGroup, B - b0));
        if (hp != nullptr) {
          std::copy_n(hp + b0 * S, nb * S, ha.data());
        } else {
          std::fill_n(ha.data(), nb * S, scalar_t(0));
        }
        scalar_t* cur = ha.data();
        scalar_t* nxt = hb.data();
        for (int64_t t = 0; t < T; ++t) {
          for (int b = 0; b < nb; ++b) tstep[b] = tv[(b0 + b) * T + t];
          run_vectorised([&] {
            step_group(L, pk, xp + (b0 * T + t) * L.input_size, T * L.input_size,
                       static_cast<const scalar_t*>(cur), static_cast<int64_t>(S),
                       static_cast<const scalar_t*>(tstep.data()), nb, scr.data(), nxt, static_cast<int64_t>(S));
          });
          for (int b = 0; b < nb; ++b) {
            const scalar_t* y = core_output(L, pk, static_cast<const scalar_t*>(nxt + b * S), proj.data());
            std::copy_n(y, out_size, op + ((b0 + b) * T + t) * out_size);
          }
          std::swap(cur, nxt);
        }
        std::copy_n(cur, nb * S, hl + b0 * S);
      }
    });
  });
  if (!ok) return py::tuple();
  return py::make_tuple(outputs, hlast);
}

// CfC.forward in inference, its dispatch checks done here rather than in Python
// (each Python check costs a sizeable part of a few-µs call): x, hx and timespans
// as the caller passed them. () whenever the reference path must run: a
// gradient is wanted (grad mode on and x, hx, Δt or a parameter requires it),
// an argument that is not a tensor (Δt: or a number), more than `max_macs`
// multiply-adds in all (batch x steps x `macs` per step: the sequence op's
// batched input projection pays again) or more than `max_batch_macs` in one
// step of the batch (the reference's batched matrix products win, as for the
// sequence op: fused.py CPU_PER_SAMPLE_MAX_BATCH_MACS). Else as sequence_infer.
py::tuple forward_infer(py::handle x_obj, py::handle h_obj, py::handle ts_obj, const Plan& plan, int64_t macs,
                        int64_t max_macs, int64_t max_batch_macs) {
  if (!THPVariable_Check(x_obj.ptr())) return py::tuple();
  const at::Tensor& x = THPVariable_Unpack(x_obj.ptr());
  c10::optional<at::Tensor> h0, ts;
  if (!h_obj.is_none()) {
    if (!THPVariable_Check(h_obj.ptr())) return py::tuple();
    h0 = THPVariable_Unpack(h_obj.ptr());
  }
  double ts_value = 0.0;
  PyObject* t = ts_obj.ptr();
  if (ts_obj.is_none()) {
    ts_value = 1.0;
  } else if (THPVariable_Check(t)) {
    ts = THPVariable_Unpack(t);
  } else if (PyFloat_Check(t) || (PyLong_Check(t) && !PyBool_Check(t))) {
    ts_value = PyFloat_AsDouble(t);
    if (ts_value == -1.0 && PyErr_Occurred()) {  // an int too large for a double: the reference says so
      PyErr_Clear();
      return py::tuple();
    }
  } else {
    return py::tuple();
  }
  if (at::GradMode::is_enabled() && (x.requires_grad() || (h0.has_value() && h0->requires_grad()) ||
                                     (ts.has_value() && ts->requires_grad()) || plan.any_requires_grad()))
    return py::tuple();
  const int64_t per_step = std::max<int64_t>(macs, 1);
  if (x.dim() != 3 || x.numel() / std::max<int64_t>(x.size(2), 1) > max_macs / per_step ||
      x.size(0) > max_batch_macs / per_step)
    return py::tuple();
  return sequence_infer(x, h0, ts, ts_value, plan);
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
      run_vectorised([&] {
        for (int64_t b = b0; b < b1; ++b) {
          for (int64_t t = 0; t < T; ++t) {
            const scalar_t* hprev = t == 0 ? hp + b * S : st + (b * T + t - 1) * S;
            step_sample(L, pk, static_cast<const scalar_t*>(nullptr), pp + (b * T + t) * L.u0, hprev,
                        tp[b * T + t], scr.data(), st + (b * T + t) * S);
          }
        }
      });
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
  const at::Tensor packed_t = transposed_weights(L, packed);
  AT_DISPATCH_FLOATING_TYPES(packed.scalar_type(), "lnn_nav_cfc_seq_backward", [&] {
    const scalar_t* pk = packed.data_ptr<scalar_t>();
    const scalar_t* pkt = packed_t.data_ptr<scalar_t>();
    const scalar_t* pp = P.data_ptr<scalar_t>();
    const scalar_t* hp = h0.data_ptr<scalar_t>();
    const scalar_t* tp = ts.data_ptr<scalar_t>();
    const scalar_t* st = st_c.data_ptr<scalar_t>();
    const scalar_t* gsp = gs.data_ptr<scalar_t>();
    scalar_t* dPp = dP.data_ptr<scalar_t>();
    scalar_t* dhp = dh0.data_ptr<scalar_t>();
    scalar_t* dtp = dts.data_ptr<scalar_t>();
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      // Layer 0 always takes P here, as GatheredGrads expects.
      GatheredGrads<scalar_t> grads(L, gbuf.select(0, at::get_thread_num()));
      std::vector<scalar_t> scr(L.scratch), g(S), carry(S, scalar_t(0));
      std::vector<scalar_t> bufA(L.max_width), bufB(L.max_width), hl(S);
      run_vectorised([&] {
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
              dt_acc += layer_backward(L, l, pk, pkt, tsb, scr.data(), g.data() + ly.state_off, grads,
                                       l == 0 ? nullptr : g.data() + L.layers[l - 1].state_off,
                                       carry.data() + ly.state_off, l == 0 ? dPp + bt * L.u0 : nullptr,
                                       bufA.data(), bufB.data());
            }
            dtp[bt] = dt_acc;
            grads.next_pair();
          }
          std::copy(carry.begin(), carry.end(), dhp + b * S);
        }
      });
      grads.flush();
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
        "one fused CfC step: (out, h), () for the reference path, (None,) when the plan is stale",
        py::arg("x"), py::arg("h"), py::arg("dt"), py::arg("dt_value"), py::arg("plan"));
  m.def("sequence_infer", &lnn_nav::sequence_infer,
        "a short sequence without autograd: (outputs, h), () for the reference path, (None,) when stale",
        py::arg("x"), py::arg("h0"), py::arg("ts"), py::arg("ts_value"), py::arg("plan"));
  m.def("forward_infer", &lnn_nav::forward_infer,
        "CfC.forward without autograd, dispatch checks included: (outputs, h), () for the reference path, "
        "(None,) when stale",
        py::arg("x"), py::arg("hx"), py::arg("timespans"), py::arg("plan"), py::arg("macs"), py::arg("max_macs"),
        py::arg("max_batch_macs"));
  m.def("policy_step", &lnn_nav::policy_step,
        "the whole policy step without autograd: (command, h), () for the reference path, (None,) when the "
        "core plan is stale",
        py::arg("image"), py::arg("imu"), py::arg("goal"), py::arg("h"), py::arg("dt"), py::arg("dt_value"),
        py::arg("encoder"), py::arg("core"), py::arg("goal_clip"));
  lnn_nav::register_encoder(m);
  m.def("seq_forward", &lnn_nav::seq_forward, "fused CfC sequence forward -> states [B, T, S]");
  m.def("seq_backward", &lnn_nav::seq_backward, "gradients of seq_forward (recompute)");
}
