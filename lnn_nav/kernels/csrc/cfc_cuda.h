// Launchers of the fused CfC CUDA kernels (cfc_cuda.cu), called by the torch
// binding (cfc_cuda_binding.cpp). No torch types here: the .cu file compiles
// with nvcc alone, which is how CI checks it on machines without a GPU.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cfc_layout.h"

namespace lnn_nav {

// One step for B samples: hnew [B, S] from x [B, F], h [B, S], ts [B].
template <typename T>
cudaError_t launch_step(const CfCLayout& L, const T* packed, const T* x, const T* h, const T* ts,
                        int64_t batch, T* hnew, cudaStream_t stream);

// Sequence forward: states [B, T, S] from the input projection P [B, T, U0].
template <typename T>
cudaError_t launch_seq_forward(const CfCLayout& L, const T* packed, const T* P, const T* h0, const T* ts,
                               int64_t batch, int64_t steps, T* states, cudaStream_t stream);

// Sequence backward (recompute). gbuf [B, packed_size] must be zeroed; each
// sample's block accumulates its weight gradients in its own row.
template <typename T>
cudaError_t launch_seq_backward(const CfCLayout& L, const T* packed, const T* P, const T* h0,
                                const T* ts, const T* states, const T* grad_states, int64_t batch,
                                int64_t steps, T* dP, T* dh0, T* dts, T* gbuf, cudaStream_t stream);

}  // namespace lnn_nav
