// Fused CfC kernels for CUDA: one thread block per sample runs every layer of
// a step (and, for sequences, every step) in one launch. The per-step vectors
// (inputs, backbone activations, head pre-activations, gradients) live in
// shared memory; the small weight matrices are read through the read-only
// cache, where they stay across steps. Same math and layout as the CPU path.
#include "cfc_cuda.h"
#include "cfc_math.h"

namespace lnn_nav {
namespace {

template <typename T>
struct Shared;  // typed view of the dynamic shared memory buffer
template <>
struct Shared<float> {
  __device__ static float* get() {
    extern __shared__ float smem_f[];
    return smem_f;
  }
};
template <>
struct Shared<double> {
  __device__ static double* get() {
    extern __shared__ double smem_d[];
    return smem_d;
  }
};

// out[o] = init[o] + sum_{i in [r0, r1)} v[i] * Wt[i, o]; consecutive threads
// take consecutive o, so the weight reads coalesce.
template <typename T>
__device__ void block_mv(const T* __restrict__ Wt, int O, const T* v, int r0, int r1, const T* init,
                         T* out) {
  for (int o = threadIdx.x; o < O; o += blockDim.x) {
    T acc = init[o];
    for (int i = r0; i < r1; ++i) acc += v[i] * __ldg(Wt + static_cast<int64_t>(i) * O + o);
    out[o] = acc;
  }
  __syncthreads();
}

template <typename T>
__device__ void layer_forward(const CfCLayout& L, const LayerLayout& ly, const T* __restrict__ pk,
                              const T* xpart, const T* hprev, T ts, const T* P, T* scr, T* hnew) {
  T* z0 = scr + ly.s_z0;
  for (int i = threadIdx.x; i < ly.in + ly.n; i += blockDim.x) {
    z0[i] = i < ly.in ? (xpart != nullptr ? xpart[i] : T(0)) : hprev[i - ly.in];
  }
  __syncthreads();
  const T* zin = z0;
  int width = ly.in + ly.n;
  int r0 = P != nullptr ? ly.in : 0;
  for (int j = 0; j < ly.nb; ++j) {
    T* u = scr + ly.s_u[j];
    T* zb = scr + ly.s_zb[j];
    block_mv(pk + ly.bb_w[j], ly.bu, zin, r0, width, P != nullptr ? P : pk + ly.bb_b[j], u);
    for (int o = threadIdx.x; o < ly.bu; o += blockDim.x) zb[o] = act_fwd(L.act, u[o]);
    __syncthreads();
    P = nullptr;
    r0 = 0;
    zin = zb;
    width = ly.bu;
  }
  T* pre = scr + ly.s_pre;
  block_mv(pk + ly.head_w, L.heads * ly.n, zin, r0, width, P != nullptr ? P : pk + ly.head_b, pre);
  const bool pure = L.mode == kPure;
  for (int k = threadIdx.x; k < ly.n; k += blockDim.x) {
    hnew[k] = cell_fwd(L.mode, pre, ly.n, k, ts, pure ? pk[ly.pure_a + k] : T(0),
                       pure ? pk[ly.pure_w + k] : T(0));
  }
  __syncthreads();
}

template <typename T>
__device__ void step_sample(const CfCLayout& L, const T* __restrict__ pk, const T* x, const T* P,
                            const T* hprev, T ts, T* scr, T* hnew) {
  for (int l = 0; l < L.num_layers; ++l) {
    const LayerLayout& ly = L.layers[l];
    const T* xpart = l == 0 ? x : hnew + L.layers[l - 1].state_off;
    layer_forward(L, ly, pk, xpart, hprev + ly.state_off, ts, l == 0 ? P : nullptr, scr,
                  hnew + ly.state_off);
  }
}

template <typename T>
__global__ void step_kernel(CfCLayout L, const T* __restrict__ pk, const T* __restrict__ x,
                            const T* __restrict__ h, const T* __restrict__ ts, T* __restrict__ hnew) {
  const int64_t b = blockIdx.x;
  const int S = L.state_size;
  step_sample(L, pk, x + b * L.input_size, static_cast<const T*>(nullptr), h + b * S, ts[b],
              Shared<T>::get(), hnew + b * S);
}

template <typename T>
__global__ void seq_forward_kernel(CfCLayout L, const T* __restrict__ pk, const T* __restrict__ P,
                                   const T* __restrict__ h0, const T* __restrict__ ts, int64_t steps,
                                   T* __restrict__ states) {
  const int64_t b = blockIdx.x;
  const int S = L.state_size;
  T* scr = Shared<T>::get();
  for (int64_t t = 0; t < steps; ++t) {
    const int64_t bt = b * steps + t;
    const T* hprev = t == 0 ? h0 + b * S : states + (bt - 1) * S;
    step_sample(L, pk, static_cast<const T*>(nullptr), P + bt * L.u0, hprev, ts[bt], scr,
                states + bt * S);
  }
}

// Backward of u = Wt^T z + b over rows [r0, width). With dP, the bias and the
// input rows belong to the input projection (the binding's matrix products).
template <typename T>
__device__ void matrix_backward(const T* __restrict__ W, T* gW, T* gb, int O, const T* z, int width,
                                const T* d, int r0, T* dP, T* dz) {
  for (int o = threadIdx.x; o < O; o += blockDim.x) {
    if (dP != nullptr) {
      dP[o] = d[o];
    } else {
      gb[o] += d[o];
    }
  }
  const int64_t cells = static_cast<int64_t>(width - r0) * O;
  for (int64_t idx = threadIdx.x; idx < cells; idx += blockDim.x) {
    const int i = r0 + static_cast<int>(idx / O);
    const int o = static_cast<int>(idx % O);
    gW[static_cast<int64_t>(i) * O + o] += z[i] * d[o];
  }
  for (int i = threadIdx.x; i < width; i += blockDim.x) {
    T acc = T(0);
    if (i >= r0) {
      const T* row = W + static_cast<int64_t>(i) * O;
      for (int o = 0; o < O; ++o) acc += __ldg(row + o) * d[o];
    }
    dz[i] = acc;
  }
  __syncthreads();
}

// Shared-memory workspace of the backward kernel, after the forward scratch.
template <typename T>
struct BackwardSmem {
  T *scr, *g, *carry, *bufA, *bufB, *hl, *dts;
  __device__ BackwardSmem(const CfCLayout& L, T* base) {
    scr = base;
    g = scr + L.scratch;
    carry = g + L.state_size;
    bufA = carry + L.state_size;
    bufB = bufA + L.max_width;
    hl = bufB + L.max_width;
    dts = hl + L.state_size;
  }
};

template <typename T>
__device__ void layer_backward(const CfCLayout& L, const LayerLayout& ly, const T* __restrict__ pk, T ts,
                               BackwardSmem<T>& sm, const T* g, T* gpk, T* gx, T* gh, T* dP) {
  const bool pure = L.mode == kPure;
  const T* pre = sm.scr + ly.s_pre;
  for (int k = threadIdx.x; k < ly.n; k += blockDim.x) {
    T gA, gw;
    sm.dts[k] = cell_bwd(L.mode, pre, ly.n, k, ts, g[k], pure ? pk[ly.pure_a + k] : T(0),
                         pure ? pk[ly.pure_w + k] : T(0), sm.bufA, &gA, &gw);
    if (pure) {
      gpk[ly.pure_a + k] += gA;
      gpk[ly.pure_w + k] += gw;
    }
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    T sum = T(0);
    for (int k = 0; k < ly.n; ++k) sum += sm.dts[k];
    sm.dts[ly.n] = sum;  // the slot after the per-neuron terms
  }
  const T* z0 = sm.scr + ly.s_z0;
  const T* zin = ly.nb > 0 ? sm.scr + ly.s_zb[ly.nb - 1] : z0;
  const bool head_ext = dP != nullptr && ly.nb == 0;
  matrix_backward(pk + ly.head_w, gpk + ly.head_w, gpk + ly.head_b, L.heads * ly.n, zin, ly.head_in,
                  sm.bufA, head_ext ? ly.in : 0, head_ext ? dP : nullptr, sm.bufB);
  for (int j = ly.nb - 1; j >= 0; --j) {
    const T* u = sm.scr + ly.s_u[j];
    const T* zb = sm.scr + ly.s_zb[j];
    for (int o = threadIdx.x; o < ly.bu; o += blockDim.x) sm.bufA[o] = sm.bufB[o] * act_grad(L.act, u[o], zb[o]);
    __syncthreads();
    const T* input = j > 0 ? sm.scr + ly.s_zb[j - 1] : z0;
    const bool ext = dP != nullptr && j == 0;
    matrix_backward(pk + ly.bb_w[j], gpk + ly.bb_w[j], gpk + ly.bb_b[j], ly.bu, input, ly.bb_in[j],
                    sm.bufA, ext ? ly.in : 0, ext ? dP : nullptr, sm.bufB);
  }
  for (int i = threadIdx.x; i < ly.in + ly.n; i += blockDim.x) {
    if (i < ly.in) {
      if (gx != nullptr) gx[i] += sm.bufB[i];
    } else {
      gh[i - ly.in] += sm.bufB[i];
    }
  }
  __syncthreads();
}

template <typename T>
__global__ void seq_backward_kernel(CfCLayout L, const T* __restrict__ pk, const T* __restrict__ P,
                                    const T* __restrict__ h0, const T* __restrict__ ts,
                                    const T* __restrict__ states, const T* __restrict__ grad_states,
                                    int64_t steps, T* __restrict__ dP, T* __restrict__ dh0,
                                    T* __restrict__ dts, T* __restrict__ gbuf) {
  const int64_t b = blockIdx.x;
  const int S = L.state_size;
  BackwardSmem<T> sm(L, Shared<T>::get());
  T* gpk = gbuf + b * L.packed_size;
  for (int s = threadIdx.x; s < S; s += blockDim.x) sm.carry[s] = T(0);
  __syncthreads();
  for (int64_t t = steps - 1; t >= 0; --t) {
    const int64_t bt = b * steps + t;
    for (int s = threadIdx.x; s < S; s += blockDim.x) {
      sm.g[s] = grad_states[bt * S + s] + sm.carry[s];
      sm.carry[s] = T(0);
    }
    __syncthreads();
    const T* hprev = t == 0 ? h0 + b * S : states + (bt - 1) * S;
    const T* hnew = states + bt * S;
    T dt_acc = T(0);
    for (int l = L.num_layers - 1; l >= 0; --l) {
      const LayerLayout& ly = L.layers[l];
      layer_forward(L, ly, pk, l == 0 ? static_cast<const T*>(nullptr) : hnew + L.layers[l - 1].state_off,
                    hprev + ly.state_off, ts[bt], l == 0 ? P + bt * L.u0 : static_cast<const T*>(nullptr),
                    sm.scr, sm.hl + ly.state_off);
      layer_backward(L, ly, pk, ts[bt], sm, sm.g + ly.state_off, gpk,
                     l == 0 ? static_cast<T*>(nullptr) : sm.g + L.layers[l - 1].state_off,
                     sm.carry + ly.state_off, l == 0 ? dP + bt * L.u0 : static_cast<T*>(nullptr));
      dt_acc += sm.dts[ly.n];
      __syncthreads();
    }
    if (threadIdx.x == 0) dts[bt] = dt_acc;
  }
  for (int s = threadIdx.x; s < S; s += blockDim.x) dh0[b * S + s] = sm.carry[s];
}

int threads_for(const CfCLayout& L) { return L.max_width > 128 ? 256 : 128; }

}  // namespace

template <typename T>
cudaError_t launch_step(const CfCLayout& L, const T* packed, const T* x, const T* h, const T* ts,
                        int64_t batch, T* hnew, cudaStream_t stream) {
  if (batch == 0) return cudaSuccess;
  const size_t smem = sizeof(T) * L.scratch;
  step_kernel<T><<<static_cast<unsigned>(batch), threads_for(L), smem, stream>>>(L, packed, x, h, ts, hnew);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_seq_forward(const CfCLayout& L, const T* packed, const T* P, const T* h0, const T* ts,
                               int64_t batch, int64_t steps, T* states, cudaStream_t stream) {
  if (batch == 0 || steps == 0) return cudaSuccess;
  const size_t smem = sizeof(T) * L.scratch;
  seq_forward_kernel<T><<<static_cast<unsigned>(batch), threads_for(L), smem, stream>>>(
      L, packed, P, h0, ts, steps, states);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_seq_backward(const CfCLayout& L, const T* packed, const T* P, const T* h0,
                                const T* ts, const T* states, const T* grad_states, int64_t batch,
                                int64_t steps, T* dP, T* dh0, T* dts, T* gbuf, cudaStream_t stream) {
  if (batch == 0 || steps == 0) return cudaSuccess;
  int max_n = 0;
  for (int l = 0; l < L.num_layers; ++l) max_n = L.layers[l].n > max_n ? L.layers[l].n : max_n;
  const size_t smem =
      sizeof(T) * (L.scratch + 3 * static_cast<size_t>(L.state_size) + 2 * L.max_width + max_n + 1);
  seq_backward_kernel<T><<<static_cast<unsigned>(batch), threads_for(L), smem, stream>>>(
      L, packed, P, h0, ts, states, grad_states, steps, dP, dh0, dts, gbuf);
  return cudaGetLastError();
}

#define LNN_NAV_INSTANTIATE(T)                                                                        \
  template cudaError_t launch_step<T>(const CfCLayout&, const T*, const T*, const T*, const T*,       \
                                      int64_t, T*, cudaStream_t);                                     \
  template cudaError_t launch_seq_forward<T>(const CfCLayout&, const T*, const T*, const T*,          \
                                             const T*, int64_t, int64_t, T*, cudaStream_t);           \
  template cudaError_t launch_seq_backward<T>(const CfCLayout&, const T*, const T*, const T*,         \
                                              const T*, const T*, const T*, int64_t, int64_t, T*, T*, \
                                              T*, T*, cudaStream_t);
LNN_NAV_INSTANTIATE(float)
LNN_NAV_INSTANTIATE(double)

}  // namespace lnn_nav
