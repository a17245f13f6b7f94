// The CNN encoder on the CPU, torch side: weight packing and the Python binding
// (see encoder_cpu.h; the kernels are in encoder_kernels.h).
#include "encoder_cpu.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>

namespace lnn_nav {

EncoderPlan::EncoderPlan(std::vector<int64_t> meta, std::vector<double> eps, std::vector<at::Tensor> sources_in)
    : sources(std::move(sources_in)) {
  const char* err = parse_encoder_layout(meta.data(), static_cast<int64_t>(meta.size()), eps.data(),
                                         static_cast<int64_t>(eps.size()), E);
  TORCH_CHECK(err == nullptr, "lnn_nav encoder: bad layout: ", err ? err : "");
  size_t expected = 4 + (E.head_in > 0 ? 4 : 0);
  for (int l = 0; l < E.num_layers; ++l) {
    const int norm = E.layers[l].norm;
    expected += 2 + (norm == kNormGroup ? 2 : norm == kNormAffine ? 4 : 0);
  }
  TORCH_CHECK(sources.size() == expected, "lnn_nav encoder: ", expected, " tensors expected, got ", sources.size());
  for (const at::Tensor& t : sources) {
    TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kFloat, "lnn_nav encoder: float32 CPU tensors expected");
  }
  packed = at::zeros({E.packed_size}, at::TensorOptions().dtype(at::kFloat));
  scratch = new_scratch();
  repack();
}

at::Tensor EncoderPlan::new_scratch() const {
  return at::zeros({E.scratch_size}, at::TensorOptions().dtype(at::kFloat));
}

int64_t EncoderPlan::version() const {
  int64_t v = 0;
  for (const at::Tensor& t : sources) v += t.is_inference() ? 0 : t._version();
  return v;
}

void EncoderPlan::repack() {
  std::vector<at::Tensor> src;
  src.reserve(sources.size());
  for (const at::Tensor& t : sources) src.push_back(t.detach().contiguous());
  float* pk = packed.data_ptr<float>();
  std::fill(pk, pk + packed.numel(), 0.0f);
  size_t i = 0;
  auto next = [&](int64_t numel) -> const float* {
    TORCH_CHECK(i < src.size() && src[i].numel() == numel, "lnn_nav encoder: tensor ", i, " has ",
                i < src.size() ? src[i].numel() : -1, " values, ", numel, " expected");
    return src[i++].const_data_ptr<float>();
  };
  for (int l = 0; l < E.num_layers; ++l) {
    const ConvLayerPlan& L = E.layers[l];
    const int k = L.k, kc = k * L.cstride;
    const int CB = kChannelBlock * L.nv;
    // conv weight [cout, cin, k, k] -> blocks of CB output channels, [k rows][k * cstride][CB].
    const float* w = next(static_cast<int64_t>(L.cout) * L.cin * k * k);
    for (int co = 0; co < L.cout; ++co) {
      const int blk = co / CB, lane = co % CB;
      for (int ci = 0; ci < L.cin; ++ci) {
        for (int kh = 0; kh < k; ++kh) {
          for (int kw = 0; kw < k; ++kw) {
            const int64_t at = ((static_cast<int64_t>(blk) * k + kh) * kc + kw * L.cstride + ci) * CB + lane;
            pk[L.w_off + at] = w[((static_cast<int64_t>(co) * L.cin + ci) * k + kh) * k + kw];
          }
        }
      }
    }
    std::copy_n(next(L.cout), L.cout, pk + L.b_off);
    if (L.norm == kNormGroup) {
      std::copy_n(next(L.cout), L.cout, pk + L.scale_off);
      std::copy_n(next(L.cout), L.cout, pk + L.shift_off);
    } else if (L.norm == kNormAffine) {
      // Eval-mode BatchNorm as ATen computes it: y = x * alpha + beta,
      // alpha = weight / sqrt(running_var + eps), beta = bias - running_mean * alpha.
      const float* weight = next(L.cout);
      const float* bias = next(L.cout);
      const float* rmean = next(L.cout);
      const float* rvar = next(L.cout);
      for (int c = 0; c < L.cout; ++c) {
        const float invstd = static_cast<float>(1.0 / std::sqrt(static_cast<double>(rvar[c]) + L.eps));
        const float alpha = weight[c] * invstd;
        pk[L.scale_off + c] = alpha;
        pk[L.shift_off + c] = bias[c] - rmean[c] * alpha;
      }
    }
  }
  const float* mean = next(E.c0);
  const float* stdv = next(E.c0);
  std::copy_n(mean, E.c0, pk + E.mean_off);
  std::copy_n(stdv, E.c0, pk + E.std_off);
  // uint8 frames (fixed input norm): the normalised value of each byte, as the reference computes it.
  for (int c = 0; c < E.c0; ++c) {
    for (int v = 0; v < 256; ++v) pk[E.lut_off + 256 * c + v] = (static_cast<float>(v) / 255.0f - mean[c]) / stdv[c];
  }
  // Bottleneck weight [F, C * H * W] (flattened channels-first) -> [(y * W + x) * cpad + c][F].
  const ConvLayerPlan& last = E.layers[E.num_layers - 1];
  const int F = E.features;
  const float* fw = next(static_cast<int64_t>(F) * last.cout * E.last_hw);
  for (int f = 0; f < F; ++f) {
    for (int c = 0; c < last.cout; ++c) {
      for (int64_t q = 0; q < E.last_hw; ++q) {
        pk[E.fc_w + (q * E.last_cpad + c) * F + f] = fw[(static_cast<int64_t>(f) * last.cout + c) * E.last_hw + q];
      }
    }
  }
  std::copy_n(next(F), F, pk + E.fc_b);
  if (E.head_in > 0) {
    const float* hw = next(static_cast<int64_t>(kCommands) * E.head_in);  // [4, head_in]
    for (int c = 0; c < kCommands; ++c) {
      for (int j = 0; j < E.head_in; ++j) pk[E.head_w + j * kCommands + c] = hw[c * E.head_in + j];
    }
    std::copy_n(next(kCommands), kCommands, pk + E.head_b);
    std::copy_n(next(kCommands), kCommands, pk + E.gain_off);
    std::copy_n(next(kCommands), kCommands, pk + E.scale_off);
  }
  packed_version = version();
}

bool image_view(const EncoderPlan& plan, const at::Tensor& images, ImageView& view) {
  const EncoderLayout& E = plan.E;
  if (!images.defined() || images.dim() != 4 || !images.device().is_cpu() || images.layout() != at::kStrided)
    return false;
  if (images.size(0) < 1 || images.size(1) != E.c0 || images.size(2) != E.h || images.size(3) != E.w) return false;
  switch (images.scalar_type()) {
    case at::kByte: view.dtype = 0; break;
    case at::kFloat: view.dtype = 1; break;
    case at::kDouble: view.dtype = 2; break;
    default: return false;
  }
  view.data = images.const_data_ptr();
  view.sb = images.stride(0);
  view.sc = images.stride(1);
  view.sh = images.stride(2);
  view.sw = images.stride(3);
  return true;
}

namespace {

// Features [B, F] of a batch of images, or () when the reference path must judge the input.
py::tuple encode(const at::Tensor& images, EncoderPlan& plan) {
  ImageView view;
  if (!image_view(plan, images, view)) return py::tuple();
  plan.refresh();
  const int64_t B = images.size(0);
  const int F = plan.E.features;
  at::Tensor out = at::empty({B, F}, at::TensorOptions().dtype(at::kFloat));
  float* op = out.data_ptr<float>();
  if (B == 1) {
    encode_sample(plan.E, plan.weights(), view, 0, plan.scratch.data_ptr<float>(), op);
  } else {
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      at::Tensor scr = plan.new_scratch();
      for (int64_t b = b0; b < b1; ++b) encode_sample(plan.E, plan.weights(), view, b, scr.data_ptr<float>(), op + b * F);
    });
  }
  return py::make_tuple(out);
}

}  // namespace

void register_encoder(py::module& m) {
  py::class_<EncoderPlan>(m, "EncoderPlan", "packed weights and scratch of one ConvEncoder (and policy head)")
      .def(py::init<std::vector<int64_t>, std::vector<double>, std::vector<at::Tensor>>(), py::arg("meta"),
           py::arg("eps"), py::arg("sources"))
      .def("repack", &EncoderPlan::repack)
      .def_property_readonly("stale", [](const EncoderPlan& p) { return p.version() != p.packed_version; })
      // The packed weights (repacked first if a source changed): what the torch-free runtime is given.
      .def_property_readonly("packed", [](EncoderPlan& p) {
        p.refresh();
        return p.packed;
      });
  m.def("encode", &encode, "ConvEncoder features [B, F] for inference; () for the reference path",
        py::arg("images"), py::arg("plan"));
}

}  // namespace lnn_nav
