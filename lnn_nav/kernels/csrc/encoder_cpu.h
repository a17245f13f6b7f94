// The CNN image encoder (lnn_nav/models/encoder.py, ConvEncoder) and the policy
// head for inference on the CPU: the torch side (packing, bindings). The kernels
// are in encoder_kernels.h; cfc_cpu.cpp runs the whole policy step with them.
//
// Batch 1 is the onboard case: a 48x64 frame is about 4 M multiply-adds, over a
// millisecond through ATen's convolutions (each a dispatch, an allocation and a
// layout change), about 0.1 ms here. Weights are packed once, and again when a
// parameter changed in place: the version counters are checked on every call,
// as for the CfC plan.
#pragma once

#include <torch/extension.h>

#include <cstdint>
#include <vector>

#include "encoder_kernels.h"

namespace lnn_nav {

struct EncoderPlan {
  // meta and eps: see EncoderLayout (encoder_kernels.h). sources, in order: per
  // layer conv weight, conv bias, then GroupNorm weight, bias or BatchNorm
  // weight, bias, running_mean, running_var; then mean, std, bottleneck weight,
  // bottleneck bias; with a head also head weight, head bias, output_gain,
  // command_scale. All float32 on the CPU.
  EncoderPlan(std::vector<int64_t> meta, std::vector<double> eps, std::vector<at::Tensor> sources);

  EncoderLayout E;
  std::vector<at::Tensor> sources;
  at::Tensor packed;  // float32 [E.packed_size]
  int64_t packed_version = -1;
  at::Tensor scratch;  // one sample's scratch (borders zero), reused by batch-1 calls

  int64_t version() const;
  // Packs again when a source changed in place since the last pack; cheap otherwise.
  void refresh() {
    if (version() != packed_version) repack();
  }
  void repack();
  // A zeroed scratch for one sample (the map borders must be zero).
  at::Tensor new_scratch() const;
  const float* weights() const { return packed.const_data_ptr<float>(); }
};

// Checks an image batch against the plan: [B >= 1, C, H, W] on the CPU, uint8,
// float32 or float64, strided; fills `view`. False: the reference path must judge it.
bool image_view(const EncoderPlan& plan, const at::Tensor& images, ImageView& view);

// The Python bindings of the encoder (registered by the module in cfc_cpu.cpp).
void register_encoder(pybind11::module& m);

}  // namespace lnn_nav
