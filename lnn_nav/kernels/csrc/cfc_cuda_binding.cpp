// Torch binding of the fused CfC CUDA kernels: checks, allocation, the input
// projection matrix products (cuBLAS through ATen), and the launches on the
// current stream (so CUDA-graph capture records them).
#include <torch/extension.h>

#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>

#include <vector>

#include "cfc_cuda.h"
#include "cfc_layout.h"

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

bool on_cuda(const at::Tensor& t, at::ScalarType dtype, const at::Device& device) {
  return t.is_cuda() && t.scalar_type() == dtype && t.device() == device;
}

void check_launch(cudaError_t err) {
  TORCH_CHECK(err == cudaSuccess, "lnn_nav fused CfC CUDA launch failed: ", cudaGetErrorString(err));
}

// One step; {} when the inputs need the reference path (wrong device, dtype, shape).
// Δt values are not screened here (that would sync with the GPU); the model
// validates them before calling.
std::vector<at::Tensor> step(const at::Tensor& x_in, const at::Tensor& h_in, const at::Tensor& ts_in,
                             const at::Tensor& packed, const std::vector<int64_t>& meta) {
  const CfCLayout L = layout_from(meta, packed);
  const auto dtype = packed.scalar_type();
  if (dtype != at::kFloat && dtype != at::kDouble) return {};
  const at::Device device = packed.device();
  if (!packed.is_cuda() || !on_cuda(x_in, dtype, device) || !on_cuda(h_in, dtype, device) ||
      x_in.dim() != 2 || h_in.dim() != 2 || x_in.size(1) != L.input_size ||
      h_in.size(0) != x_in.size(0) || h_in.size(1) != L.state_size || !ts_in.is_cuda() ||
      !packed.is_contiguous())
    return {};
  const int64_t B = x_in.size(0);
  if (ts_in.numel() != 1 && ts_in.numel() != B) return {};
  const c10::cuda::CUDAGuard guard(device);
  const at::Tensor x = x_in.contiguous();
  const at::Tensor h = h_in.contiguous();
  const at::Tensor ts = ts_in.to(dtype).reshape({-1}).expand({B}).contiguous();
  at::Tensor hnew = at::empty({B, L.state_size}, x.options());
  AT_DISPATCH_FLOATING_TYPES(dtype, "lnn_nav_cfc_step_cuda", [&] {
    check_launch(launch_step<scalar_t>(L, packed.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(),
                                       h.data_ptr<scalar_t>(), ts.data_ptr<scalar_t>(), B,
                                       hnew.data_ptr<scalar_t>(), c10::cuda::getCurrentCUDAStream().stream()));
  });
  at::Tensor out;
  if (L.proj > 0) {
    const at::Tensor w = packed.narrow(0, L.proj_w, static_cast<int64_t>(L.out_len) * L.proj)
                             .view({L.out_len, L.proj});
    out = at::addmm(packed.narrow(0, L.proj_b, L.proj), hnew.narrow(1, L.out_start, L.out_len), w);
  } else if (L.out_start == 0 && L.out_len == L.state_size) {
    out = hnew;
  } else {
    out = hnew.narrow(1, L.out_start, L.out_len);
  }
  return {out, hnew};
}

void check_sequence(const at::Tensor& P, const at::Tensor& h0, const at::Tensor& ts,
                    const at::Tensor& packed, const CfCLayout& L) {
  const auto dtype = packed.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble,
              "lnn_nav fused CfC (CUDA): float32 or float64 expected, got ", dtype);
  for (const at::Tensor* t : {&P, &h0, &ts, &packed}) {
    TORCH_CHECK(on_cuda(*t, dtype, packed.device()) && t->is_contiguous(),
                "lnn_nav fused CfC (CUDA): every tensor must be a contiguous ", dtype,
                " tensor on the parameters' device");
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
  const c10::cuda::CUDAGuard guard(packed.device());
  const int64_t B = P.size(0), T = P.size(1);
  at::Tensor states = at::empty({B, T, L.state_size}, P.options());
  AT_DISPATCH_FLOATING_TYPES(packed.scalar_type(), "lnn_nav_cfc_seq_forward_cuda", [&] {
    check_launch(launch_seq_forward<scalar_t>(L, packed.data_ptr<scalar_t>(), P.data_ptr<scalar_t>(),
                                              h0.data_ptr<scalar_t>(), ts.data_ptr<scalar_t>(), B, T,
                                              states.data_ptr<scalar_t>(),
                                              c10::cuda::getCurrentCUDAStream().stream()));
  });
  return states;
}

std::vector<at::Tensor> seq_backward(const at::Tensor& grad_states, const at::Tensor& P,
                                     const at::Tensor& h0, const at::Tensor& ts,
                                     const at::Tensor& packed, const std::vector<int64_t>& meta,
                                     const at::Tensor& states) {
  const CfCLayout L = layout_from(meta, packed);
  check_sequence(P, h0, ts, packed, L);
  TORCH_CHECK(grad_states.sizes() == states.sizes() && states.dim() == 3 &&
                  states.size(2) == L.state_size,
              "grad_states and states must be [B, T, ", L.state_size, "]");
  const c10::cuda::CUDAGuard guard(packed.device());
  const int64_t B = P.size(0), T = P.size(1);
  const at::Tensor gs = grad_states.to(packed.scalar_type()).contiguous();
  const at::Tensor st = states.contiguous();
  at::Tensor dP = at::empty_like(P);
  at::Tensor dh0 = at::empty_like(h0);
  at::Tensor dts = at::empty_like(ts);
  // One gradient row per sample (one block each): no atomics, one sum at the end.
  at::Tensor gbuf = at::zeros({B, L.packed_size}, packed.options());
  AT_DISPATCH_FLOATING_TYPES(packed.scalar_type(), "lnn_nav_cfc_seq_backward_cuda", [&] {
    check_launch(launch_seq_backward<scalar_t>(
        L, packed.data_ptr<scalar_t>(), P.data_ptr<scalar_t>(), h0.data_ptr<scalar_t>(),
        ts.data_ptr<scalar_t>(), st.data_ptr<scalar_t>(), gs.data_ptr<scalar_t>(), B, T,
        dP.data_ptr<scalar_t>(), dh0.data_ptr<scalar_t>(), dts.data_ptr<scalar_t>(),
        gbuf.data_ptr<scalar_t>(), c10::cuda::getCurrentCUDAStream().stream()));
  });
  return {dP, dh0, dts, gbuf.sum(0)};
}

}  // namespace
}  // namespace lnn_nav

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "lnn_nav fused CfC kernels (CUDA)";
  m.def("step", &lnn_nav::step, "one fused CfC step on CUDA: [out, h], or [] for the reference path");
  m.def("seq_forward", &lnn_nav::seq_forward, "fused CfC sequence forward -> states [B, T, S]");
  m.def("seq_backward", &lnn_nav::seq_backward, "gradients of seq_forward (recompute)");
}
