// Layout of a fused CfC core: how the int "meta" vector and the flat "packed"
// parameter vector built by lnn_nav/kernels/layout.py are read.
//
// Plain C++ (no torch headers) so the CUDA sources compile with nvcc alone
// and the same struct is handed by value to the kernels.
//
// meta = [mode, activation, num_layers, input_size, out_start, out_len, proj_size,
//         then per layer: hidden n, x-part width, backbone depth, backbone width]
//
// packed, per layer in order:
//   for each backbone layer j: Wt_j [in_j, bu] (transposed nn.Linear weight), b_j [bu]
//   heads Wt [head_in, H*n] with columns ff1 | ff2 | time_a | time_b (H = 4), or
//         ff1 only (H = 1, pure mode); masked weights already multiplied in; bias [H*n]
//   pure mode only: A [n], w_tau [n]
// then, if proj_size > 0: Wt_proj [out_len, proj_size], b_proj [proj_size].
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define LNN_HD __host__ __device__
#else
#define LNN_HD
#endif

namespace lnn_nav {

constexpr int kMaxLayers = 8;
constexpr int kMaxBackbone = 4;
constexpr int kMetaHeader = 7;
constexpr int kMetaPerLayer = 4;

enum Mode : int { kDefault = 0, kNoGate = 1, kPure = 2 };
enum Activation : int { kLecunTanh = 0, kTanh = 1, kRelu = 2, kSilu = 3, kGelu = 4 };

struct LayerLayout {
  int n = 0;        // neurons of this layer
  int in = 0;       // width of the feed-forward input (x for layer 0, previous layer otherwise)
  int nb = 0;       // backbone depth
  int bu = 0;       // backbone width
  int state_off = 0;
  int head_in = 0;  // width the heads see (bu, or in + n without a backbone)
  int64_t bb_w[kMaxBackbone] = {0};
  int64_t bb_b[kMaxBackbone] = {0};
  int bb_in[kMaxBackbone] = {0};
  int64_t head_w = 0, head_b = 0, pure_a = 0, pure_w = 0;
  // Per sample and step scratch (activations kept for the backward pass).
  int s_z0 = 0;
  int s_u[kMaxBackbone] = {0};
  int s_zb[kMaxBackbone] = {0};
  int s_pre = 0;
};

struct CfCLayout {
  int mode = 0, act = 0, num_layers = 0, input_size = 0;
  int out_start = 0, out_len = 0, proj = 0;
  int heads = 4;       // H
  int state_size = 0;  // S
  int u0 = 0;          // width of layer 0's first matrix product (the precomputed input projection)
  int scratch = 0;     // scalars of scratch per sample and step
  int max_width = 0;   // widest vector a backward temp must hold
  int64_t proj_w = 0, proj_b = 0, packed_size = 0;
  LayerLayout layers[kMaxLayers];
};

// Fills `out` from meta; returns nullptr on success or a static message.
inline const char* parse_layout(const int64_t* meta, int64_t len, CfCLayout& out) {
  if (len < kMetaHeader) return "meta is too short";
  out.mode = static_cast<int>(meta[0]);
  out.act = static_cast<int>(meta[1]);
  out.num_layers = static_cast<int>(meta[2]);
  out.input_size = static_cast<int>(meta[3]);
  out.out_start = static_cast<int>(meta[4]);
  out.out_len = static_cast<int>(meta[5]);
  out.proj = static_cast<int>(meta[6]);
  if (out.mode < kDefault || out.mode > kPure) return "unknown CfC mode";
  if (out.act < kLecunTanh || out.act > kGelu) return "unknown backbone activation";
  if (out.num_layers < 1 || out.num_layers > kMaxLayers) return "unsupported number of layers";
  if (len != kMetaHeader + kMetaPerLayer * out.num_layers) return "meta length does not match the layer count";
  out.heads = out.mode == kPure ? 1 : 4;
  int64_t off = 0;
  int scr = 0, state = 0, widest = out.input_size;
  for (int l = 0; l < out.num_layers; ++l) {
    LayerLayout& ly = out.layers[l];
    const int64_t* m = meta + kMetaHeader + kMetaPerLayer * l;
    ly.n = static_cast<int>(m[0]);
    ly.in = static_cast<int>(m[1]);
    ly.nb = static_cast<int>(m[2]);
    ly.bu = static_cast<int>(m[3]);
    if (ly.n < 1 || ly.in < 1 || ly.nb < 0 || ly.nb > kMaxBackbone || (ly.nb > 0 && ly.bu < 1))
      return "bad layer sizes";
    if (l == 0 && ly.in != out.input_size) return "layer 0 must see the input";
    if (l > 0 && ly.in != out.layers[l - 1].n) return "layer input must be the previous layer";
    ly.state_off = state;
    state += ly.n;
    ly.s_z0 = scr;
    scr += ly.in + ly.n;
    int width = ly.in + ly.n;
    widest = widest > width ? widest : width;
    for (int j = 0; j < ly.nb; ++j) {
      ly.bb_in[j] = width;
      ly.bb_w[j] = off;
      off += static_cast<int64_t>(width) * ly.bu;
      ly.bb_b[j] = off;
      off += ly.bu;
      ly.s_u[j] = scr;
      scr += ly.bu;
      ly.s_zb[j] = scr;
      scr += ly.bu;
      width = ly.bu;
      widest = widest > width ? widest : width;
    }
    ly.head_in = width;
    const int hn = out.heads * ly.n;
    ly.head_w = off;
    off += static_cast<int64_t>(width) * hn;
    ly.head_b = off;
    off += hn;
    if (out.mode == kPure) {
      ly.pure_a = off;
      off += ly.n;
      ly.pure_w = off;
      off += ly.n;
    }
    ly.s_pre = scr;
    scr += hn;
    widest = widest > hn ? widest : hn;
  }
  out.state_size = state;
  const LayerLayout& first = out.layers[0];
  out.u0 = first.nb > 0 ? first.bu : out.heads * first.n;
  if (out.out_len < 1 || out.out_start < 0 || out.out_start + out.out_len > state)
    return "output slice outside the state";
  if (out.proj < 0) return "negative projection size";
  if (out.proj > 0) {
    out.proj_w = off;
    off += static_cast<int64_t>(out.out_len) * out.proj;
    out.proj_b = off;
    off += out.proj;
  }
  out.packed_size = off;
  out.scratch = scr;
  out.max_width = widest;
  return nullptr;
}

}  // namespace lnn_nav
