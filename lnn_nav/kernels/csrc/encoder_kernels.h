// The CNN image encoder's inference kernels on the CPU: plain C++ (no torch
// headers), read by encoder_cpu.cpp. The model is lnn_nav/models/encoder.py
// (ConvEncoder); the layout of the packed weights and of the scratch is made by
// parse_encoder_layout below and filled by EncoderPlan::repack (encoder_cpu.cpp).
//
// Every map is channels-last ("NHWC") and kept with its zero border ("same"
// padding), so one row of a kernel window is one contiguous run of k * C values
// and no bounds are checked. A register tile of P output pixels by 8 * NV output
// channels accumulates over those runs: per input value one broadcast and NV
// fused multiply-adds against weights held in registers (P + 1) * NV + 1 <= 16
// vector registers, AVX2's count). Bias, normalisation (GroupNorm, or eval-mode
// BatchNorm as a per-channel affine) and ReLU follow in one pass over the
// layer's output, written straight into the next layer's bordered input.
//
// Portable: the tiles use the GCC/Clang vector extension (8 floats: one AVX
// register, two NEON or SSE registers), compiled for the baseline ISA (NEON on
// aarch64, SSE2 on x86-64) and on x86-64 once more for AVX2+FMA, picked at run
// time (as cfc_cpu.cpp does). Other compilers get plain loops.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

namespace lnn_nav {

constexpr int kEncMaxLayers = 16;
// Output channels are padded to a multiple of this (one 8-float vector) in the
// packed weights and in the maps; the padded channels stay zero.
constexpr int kChannelBlock = 8;
constexpr int kEncMeta = 8;
constexpr int kEncMetaPerLayer = 5;
constexpr int kCommands = 4;

enum EncoderNorm : int { kNormNone = 0, kNormAffine = 1, kNormGroup = 2 };
enum InputNorm : int { kInputFixed = 0, kInputFrame = 1 };

struct ConvLayerPlan {
  int cin = 0;      // real input channels
  int cstride = 0;  // values per input pixel in the bordered input map (the previous layer's cpad)
  int cout = 0, cpad = 0, k = 0, s = 0, pad = 0;
  int hin = 0, win = 0, hp = 0, wp = 0;  // input size, and with the border
  int hout = 0, wout = 0;
  int norm = kNormNone, groups = 1;
  double eps = 0.0;
  int nv = 1;  // 8-channel vectors per register tile
  int64_t w_off = 0, b_off = 0, scale_off = 0, shift_off = 0;  // in the packed weights
  int64_t in_off = 0;                                           // its bordered input map in the scratch
};

// One batch of images as the caller holds it: element type and strides.
struct ImageView {
  const void* data = nullptr;
  int dtype = 0;  // 0 uint8, 1 float32, 2 float64
  int64_t sb = 0, sc = 0, sh = 0, sw = 0;
};

// meta = [in_channels, height, width, num_layers, input_norm, tanh output, feature_dim,
//         policy head: 0, or the core's output size (the head reads it),
//         then per layer: out_channels, kernel, stride, norm kind, groups]
// Packed weights, each at a 16-float boundary: per layer the conv weight in blocks
// of 8 * nv output channels [k][k * cstride][8 * nv], bias [cpad], and with a
// normalisation its scale and shift (GroupNorm: gamma, beta; BatchNorm: alpha,
// beta) [cout]; then mean, std [C]; uint8 lookup [C][256] ((v / 255 - mean) / std,
// fixed input norm); bottleneck weight [last H * W * cpad][F] (rows of padded
// channels zero), bias [F]; with a head: weight [head_in][4], bias, gain, scale [4].
struct EncoderLayout {
  int c0 = 0, h = 0, w = 0, num_layers = 0, input_norm = kInputFixed, out_tanh = 0, features = 0;
  int head_in = 0;  // 0: no head
  ConvLayerPlan layers[kEncMaxLayers];
  int64_t mean_off = 0, std_off = 0, lut_off = 0, fc_w = 0, fc_b = 0;
  int64_t head_w = 0, head_b = 0, gain_off = 0, scale_off = 0;
  int64_t packed_size = 0;
  // Scratch (floats per sample): the bordered input maps, the last map, the
  // features, and room for per-channel statistics (doubles) and coefficients.
  int64_t last_off = 0, last_hw = 0, last_cpad = 0, feat_off = 0, stats_off = 0, coef_off = 0;
  int64_t scratch_size = 0;
};

inline int64_t enc_round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// Fills `out` from meta (and one eps per layer); nullptr on success, else why not.
inline const char* parse_encoder_layout(const int64_t* meta, int64_t len, const double* eps, int64_t num_eps,
                                        EncoderLayout& out) {
  if (len < kEncMeta) return "meta is too short";
  out.c0 = static_cast<int>(meta[0]);
  out.h = static_cast<int>(meta[1]);
  out.w = static_cast<int>(meta[2]);
  out.num_layers = static_cast<int>(meta[3]);
  out.input_norm = static_cast<int>(meta[4]);
  out.out_tanh = static_cast<int>(meta[5]);
  out.features = static_cast<int>(meta[6]);
  out.head_in = static_cast<int>(meta[7]);
  if (out.num_layers < 1 || out.num_layers > kEncMaxLayers) return "unsupported number of layers";
  if (len != kEncMeta + kEncMetaPerLayer * out.num_layers) return "meta length does not match the layer count";
  if (num_eps != out.num_layers) return "one eps per layer expected";
  if (out.c0 < 1 || out.h < 1 || out.w < 1 || out.features < 1 || out.head_in < 0) return "bad sizes";
  if (out.input_norm != kInputFixed && out.input_norm != kInputFrame) return "unknown input norm";
  int64_t off = 0, scr = 0;
  auto take = [&off](int64_t n) {
    const int64_t at = off;
    off += enc_round_up(n, 16);
    return at;
  };
  int hin = out.h, win = out.w, cin = out.c0, cstride = out.c0, widest = out.c0;
  for (int l = 0; l < out.num_layers; ++l) {
    const int64_t* m = meta + kEncMeta + kEncMetaPerLayer * l;
    ConvLayerPlan& L = out.layers[l];
    L.cin = cin;
    L.cstride = cstride;
    L.cout = static_cast<int>(m[0]);
    L.k = static_cast<int>(m[1]);
    L.s = static_cast<int>(m[2]);
    L.norm = static_cast<int>(m[3]);
    L.groups = static_cast<int>(m[4]);
    L.eps = eps[l];
    if (L.cout < 1 || L.k < 1 || L.s < 1) return "bad layer sizes";
    if (L.norm < kNormNone || L.norm > kNormGroup) return "unknown normalisation";
    if (L.norm == kNormGroup && (L.groups < 1 || L.cout % L.groups != 0)) return "groups must divide the channels";
    L.cpad = static_cast<int>(enc_round_up(L.cout, kChannelBlock));
    const int vectors = L.cpad / kChannelBlock;
    // At most 3 vectors per tile: 4 rows of 3 accumulators plus 3 weights and a
    // broadcast fill AVX2's 16 registers; 32 channels run as two tiles of 16.
    L.nv = vectors % 3 == 0 ? 3 : vectors % 2 == 0 ? 2 : 1;
    L.pad = L.k / 2;
    L.hin = hin;
    L.win = win;
    L.hp = hin + 2 * L.pad;
    L.wp = win + 2 * L.pad;
    L.hout = (L.hp - L.k) / L.s + 1;
    L.wout = (L.wp - L.k) / L.s + 1;
    if (L.hout < 1 || L.wout < 1) return "a map shrinks to nothing";
    L.w_off = take(static_cast<int64_t>(L.k) * L.k * L.cstride * L.cpad);
    L.b_off = take(L.cpad);
    if (L.norm != kNormNone) {
      L.scale_off = take(L.cout);
      L.shift_off = take(L.cout);
    }
    L.in_off = scr;
    scr += enc_round_up(static_cast<int64_t>(L.hp) * L.wp * L.cstride, 16);
    hin = L.hout;
    win = L.wout;
    cin = L.cout;
    cstride = L.cpad;
    widest = std::max(widest, L.cpad);
  }
  const ConvLayerPlan& last = out.layers[out.num_layers - 1];
  out.last_hw = static_cast<int64_t>(last.hout) * last.wout;
  out.last_cpad = last.cpad;
  out.last_off = scr;
  scr += enc_round_up(out.last_hw * out.last_cpad, 16);
  out.feat_off = scr;
  scr += enc_round_up(out.features, 16);
  out.stats_off = scr;  // 2 * widest doubles
  scr += enc_round_up(4 * static_cast<int64_t>(widest), 16);
  out.coef_off = scr;  // 2 * widest floats
  scr += enc_round_up(2 * static_cast<int64_t>(widest), 16);
  out.scratch_size = scr;
  out.mean_off = take(out.c0);
  out.std_off = take(out.c0);
  out.lut_off = take(256 * static_cast<int64_t>(out.c0));
  out.fc_w = take(out.last_hw * out.last_cpad * out.features);
  out.fc_b = take(out.features);
  if (out.head_in > 0) {
    out.head_w = take(static_cast<int64_t>(out.head_in) * kCommands);
    out.head_b = take(kCommands);
    out.gain_off = take(kCommands);
    out.scale_off = take(kCommands);
  }
  out.packed_size = off;
  return nullptr;
}

namespace enc {

#if defined(__GNUC__) || defined(__clang__)
#define ENC_INLINE inline __attribute__((always_inline))
#define ENC_VECTOR 1
typedef float v8 __attribute__((vector_size(32)));
// Unaligned, and allowed to alias float storage.
typedef float v8u __attribute__((vector_size(32), aligned(4), may_alias));
#define ENC_LOAD8(p) (*reinterpret_cast<const ::lnn_nav::enc::v8u*>(p))
#define ENC_STORE8(p, v) (*reinterpret_cast<::lnn_nav::enc::v8u*>(p) = (v))
#else
#define ENC_INLINE inline
#endif
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define ENC_X86_CLONES 1
#endif

// Output pixels per register tile by 8-channel vectors per tile: 12 accumulators.
constexpr int kTilePixels[4] = {0, 12, 6, 4};

#ifdef ENC_VECTOR
// acc[p][v] = bias + sum over the k rows of the window, each k*C contiguous inputs,
// of input * weight; `in[p]` is pixel p's window origin, `w` this channel block's
// packed weights [k][k*C][8*NV]. Stores to out[p] (8*NV consecutive channels).
template <int P, int NV>
ENC_INLINE void conv_tile(const float* const* in, int64_t in_row, int k, int kc, const float* __restrict w,
                          const float* __restrict bias, float* const* out) {
  v8 acc[P][NV];
  for (int v = 0; v < NV; ++v) {
    const v8 b = ENC_LOAD8(bias + 8 * v);
    for (int p = 0; p < P; ++p) acc[p][v] = b;
  }
  for (int kh = 0; kh < k; ++kh) {
    const float* rows[P];
    for (int p = 0; p < P; ++p) rows[p] = in[p] + kh * in_row;
    const float* __restrict wr = w + static_cast<int64_t>(kh) * kc * (8 * NV);
    for (int j = 0; j < kc; ++j) {
      v8 wv[NV];
      for (int v = 0; v < NV; ++v) wv[v] = ENC_LOAD8(wr + (8 * NV) * j + 8 * v);
      for (int p = 0; p < P; ++p) {
        const float a = rows[p][j];  // vector * scalar: one broadcast from memory
        for (int v = 0; v < NV; ++v) acc[p][v] += wv[v] * a;
      }
    }
  }
  for (int p = 0; p < P; ++p) {
    for (int v = 0; v < NV; ++v) ENC_STORE8(out[p] + 8 * v, acc[p][v]);
  }
}
#else
template <int P, int NV>
inline void conv_tile(const float* const* in, int64_t in_row, int k, int kc, const float* w, const float* bias,
                      float* const* out) {
  constexpr int CB = 8 * NV;
  for (int p = 0; p < P; ++p) {
    float acc[CB];
    for (int o = 0; o < CB; ++o) acc[o] = bias[o];
    for (int kh = 0; kh < k; ++kh) {
      const float* row = in[p] + kh * in_row;
      const float* wr = w + static_cast<int64_t>(kh) * kc * CB;
      for (int j = 0; j < kc; ++j) {
        const float a = row[j];
        for (int o = 0; o < CB; ++o) acc[o] += a * wr[CB * j + o];
      }
    }
    for (int o = 0; o < CB; ++o) out[p][o] = acc[o];
  }
}
#endif

// The last, partial tile of a layer (fewer than kTilePixels[NV] pixels).
template <int NV>
ENC_INLINE void conv_tile_n(int count, const float* const* in, int64_t in_row, int k, int kc, const float* w,
                            const float* bias, float* const* out) {
  switch (count) {
#define ENC_CASE(n)                                                                        \
  case n:                                                                                  \
    if constexpr (n <= kTilePixels[NV]) conv_tile<n, NV>(in, in_row, k, kc, w, bias, out); \
    return;
    ENC_CASE(1)
    ENC_CASE(2)
    ENC_CASE(3)
    ENC_CASE(4)
    ENC_CASE(5)
    ENC_CASE(6)
    ENC_CASE(7)
    ENC_CASE(8)
    ENC_CASE(9)
    ENC_CASE(10)
    ENC_CASE(11)
#undef ENC_CASE
    default: return;
  }
}

// Where layer l's output pixels go: the next layer's bordered input, or the last map.
struct OutMap {
  float* base;
  int64_t row, pix;  // floats per row and per pixel
};

ENC_INLINE OutMap out_map(const EncoderLayout& E, int l, float* scr) {
  const ConvLayerPlan& L = E.layers[l];
  if (l + 1 < E.num_layers) {
    const ConvLayerPlan& N = E.layers[l + 1];
    const int64_t row = static_cast<int64_t>(N.wp) * N.cstride;
    return {scr + N.in_off + N.pad * row + static_cast<int64_t>(N.pad) * N.cstride, row, N.cstride};
  }
  return {scr + E.last_off, static_cast<int64_t>(L.wout) * L.cpad, L.cpad};
}

// Adds a tile's outputs (count pixels by CB channels, hot in L1) to the per-channel
// sums and sums of squares (double) that GroupNorm needs: partial sums over the
// tile in float, at most 12 values each, then into double.
ENC_INLINE void tile_stats(float* const* outs, int count, int CB, double* __restrict s, double* __restrict ss) {
  for (int c0 = 0; c0 < CB; c0 += 8) {
    float ts[8] = {0}, tq[8] = {0};
    for (int p = 0; p < count; ++p) {
      const float* __restrict x = outs[p] + c0;
#pragma omp simd
      for (int c = 0; c < 8; ++c) {
        ts[c] += x[c];
        tq[c] += x[c] * x[c];
      }
    }
#pragma omp simd
    for (int c = 0; c < 8; ++c) {
      s[c0 + c] += ts[c];
      ss[c0 + c] += tq[c];
    }
  }
}

// One convolution: tiles of TP output pixels (in row-major order, across rows) by
// 8 * NV channels. With `s` (GroupNorm), also the per-channel sums the norm needs.
template <int NV>
ENC_INLINE void conv_layer(const ConvLayerPlan& L, const float* pk, const float* in, const OutMap& om, double* s,
                           double* ss) {
  constexpr int TP = kTilePixels[NV];
  constexpr int CB = 8 * NV;
  const int64_t in_row = static_cast<int64_t>(L.wp) * L.cstride;
  const int kc = L.k * L.cstride;
  const int npix = L.hout * L.wout;
  const int blocks = L.cpad / CB;
  const int64_t in_step = static_cast<int64_t>(L.s) * L.cstride;  // next pixel in a row
  const int64_t in_down = static_cast<int64_t>(L.s) * in_row;     // next row
  for (int blk = 0; blk < blocks; ++blk) {
    const float* w = pk + L.w_off + static_cast<int64_t>(blk) * L.k * kc * CB;
    const float* bias = pk + L.b_off + blk * CB;
    int oy = 0, ox = 0;  // the next tile's first pixel
    for (int q0 = 0; q0 < npix; q0 += TP) {
      const int count = std::min(TP, npix - q0);
      const float* ins[TP];
      float* outs[TP];
      for (int p = 0; p < count; ++p) {
        ins[p] = in + oy * in_down + ox * in_step;
        outs[p] = om.base + oy * om.row + ox * om.pix + blk * CB;
        if (++ox == L.wout) {
          ox = 0;
          ++oy;
        }
      }
      if (count == TP) {
        conv_tile<TP, NV>(ins, in_row, L.k, kc, w, bias, outs);
      } else {
        conv_tile_n<NV>(count, ins, in_row, L.k, kc, w, bias, outs);
      }
      if (s != nullptr) tile_stats(outs, count, CB, s + blk * CB, ss + blk * CB);
    }
  }
}

// Normalisation and ReLU over a layer's output, in place. The ReLU lets NaN
// through, as torch.relu does (NaN frames are not screened here). GroupNorm as ATen
// computes it: per group mean and biased variance (from the sums conv_layer
// gathered, in double here), then y = x * a + b with a = rstd * gamma,
// b = beta - mean * a per channel.
ENC_INLINE void norm_relu(const EncoderLayout& E, const ConvLayerPlan& L, const float* pk, const OutMap& om,
                          float* scr) {
  const int C = L.cout;
  const int npix = L.hout * L.wout;
  float* __restrict a = scr + E.coef_off;
  float* __restrict b = a + C;
  if (L.norm == kNormGroup) {
    // Sums from conv_layer (padded channels included there, read only up to C here).
    const double* __restrict s = reinterpret_cast<const double*>(scr + E.stats_off);
    const double* __restrict ss = s + L.cpad;
    const int cpg = C / L.groups;
    const double count = static_cast<double>(cpg) * npix;
    const float* gamma = pk + L.scale_off;
    const float* beta = pk + L.shift_off;
    for (int g = 0; g < L.groups; ++g) {
      double sum = 0.0, sq = 0.0;
      for (int c = g * cpg; c < (g + 1) * cpg; ++c) {
        sum += s[c];
        sq += ss[c];
      }
      const double mean = sum / count;
      const double var = std::max(sq / count - mean * mean, 0.0);
      const float rstd = static_cast<float>(1.0 / std::sqrt(var + L.eps));
      const float m = static_cast<float>(mean);
      for (int c = g * cpg; c < (g + 1) * cpg; ++c) {
        a[c] = rstd * gamma[c];
        b[c] = beta[c] - m * a[c];
      }
    }
  } else if (L.norm == kNormAffine) {
    std::copy_n(pk + L.scale_off, C, a);
    std::copy_n(pk + L.shift_off, C, b);
  }
  for (int oy = 0; oy < L.hout; ++oy) {
    for (int ox = 0; ox < L.wout; ++ox) {
      float* __restrict x = om.base + oy * om.row + ox * om.pix;
      if (L.norm == kNormNone) {
#pragma omp simd
        for (int c = 0; c < C; ++c) x[c] = x[c] < 0.0f ? 0.0f : x[c];
      } else {
#pragma omp simd
        for (int c = 0; c < C; ++c) {
          const float y = x[c] * a[c] + b[c];
          x[c] = y < 0.0f ? 0.0f : y;
        }
      }
    }
  }
}

template <typename In>
ENC_INLINE float to_unit(In v) {
  if constexpr (std::is_same_v<In, uint8_t>) {
    return static_cast<float>(v) / 255.0f;
  } else {
    return static_cast<float>(v);
  }
}

// The frame into layer 0's bordered input, normalised as ConvEncoder.feature_maps does.
template <typename In>
ENC_INLINE void fill_input(const EncoderLayout& E, const float* pk, const In* src, const ImageView& v, float* scr) {
  const ConvLayerPlan& L = E.layers[0];
  const int C = E.c0;
  const int64_t row = static_cast<int64_t>(L.wp) * C;
  float* dst = scr + L.in_off + L.pad * row + static_cast<int64_t>(L.pad) * C;
  if (E.input_norm == kInputFixed) {
    if constexpr (std::is_same_v<In, uint8_t>) {
      // (v / 255 - mean) / std for each of the 256 values, computed at packing.
      const float* lut = pk + E.lut_off;
      if (C == 3) {  // RGB: the three planes read side by side, the pixels written in order
        for (int y = 0; y < E.h; ++y) {
          const In* s0 = src + y * v.sh;
          const In* s1 = s0 + v.sc;
          const In* s2 = s1 + v.sc;
          float* d = dst + y * row;
          for (int x = 0; x < E.w; ++x) {
            const int64_t o = x * v.sw;
            d[3 * x] = lut[s0[o]];
            d[3 * x + 1] = lut[256 + s1[o]];
            d[3 * x + 2] = lut[512 + s2[o]];
          }
        }
        return;
      }
      for (int y = 0; y < E.h; ++y) {
        for (int c = 0; c < C; ++c) {
          const In* s = src + c * v.sc + y * v.sh;
          const float* t = lut + 256 * c;
          float* d = dst + y * row + c;
          for (int x = 0; x < E.w; ++x) d[x * C] = t[s[x * v.sw]];
        }
      }
    } else {
      const float* mean = pk + E.mean_off;
      const float* stdv = pk + E.std_off;
      for (int y = 0; y < E.h; ++y) {
        for (int c = 0; c < C; ++c) {
          const In* s = src + c * v.sc + y * v.sh;
          float* d = dst + y * row + c;
          const float m = mean[c], sd = stdv[c];
          for (int x = 0; x < E.w; ++x) d[x * C] = (to_unit(s[x * v.sw]) - m) / sd;
        }
      }
    }
    return;
  }
  // Frame norm: remove each channel's mean, divide by the RMS over all values (floor 0.02).
  double* sums = reinterpret_cast<double*>(scr + E.stats_off);
  float* means = scr + E.coef_off;
  std::fill(sums, sums + C, 0.0);
  for (int y = 0; y < E.h; ++y) {
    for (int c = 0; c < C; ++c) {
      const In* s = src + c * v.sc + y * v.sh;
      float* d = dst + y * row + c;
      double acc = 0.0;
      for (int x = 0; x < E.w; ++x) {
        const float u = to_unit(s[x * v.sw]);
        d[x * C] = u;
        acc += u;
      }
      sums[c] += acc;
    }
  }
  const double n = static_cast<double>(E.h) * E.w;
  for (int c = 0; c < C; ++c) means[c] = static_cast<float>(sums[c] / n);
  double sq = 0.0;
  for (int y = 0; y < E.h; ++y) {
    float* d = dst + y * row;
    for (int x = 0; x < E.w; ++x) {
      for (int c = 0; c < C; ++c) {
        const float u = d[x * C + c] - means[c];
        d[x * C + c] = u;
        sq += static_cast<double>(u) * u;
      }
    }
  }
  const float rms = std::max(static_cast<float>(std::sqrt(sq / (n * C))), 0.02f);
  for (int y = 0; y < E.h; ++y) {
    float* d = dst + y * row;
    for (int i = 0; i < E.w * C; ++i) d[i] = d[i] / rms;
  }
}

ENC_INLINE void encode_body(const EncoderLayout& E, const float* pk, const ImageView& v, int64_t b, float* scr,
                            float* features) {
  const char* base = static_cast<const char*>(v.data);
  switch (v.dtype) {
    case 0: fill_input(E, pk, reinterpret_cast<const uint8_t*>(base) + b * v.sb, v, scr); break;
    case 1: fill_input(E, pk, reinterpret_cast<const float*>(base) + b * v.sb, v, scr); break;
    default: fill_input(E, pk, reinterpret_cast<const double*>(base) + b * v.sb, v, scr); break;
  }
  for (int l = 0; l < E.num_layers; ++l) {
    const ConvLayerPlan& L = E.layers[l];
    const OutMap om = out_map(E, l, scr);
    const float* in = scr + L.in_off;
    double* s = nullptr;
    double* ss = nullptr;
    if (L.norm == kNormGroup) {
      s = reinterpret_cast<double*>(scr + E.stats_off);
      ss = s + L.cpad;
      std::fill(s, s + 2 * L.cpad, 0.0);
    }
    switch (L.nv) {
      case 1: conv_layer<1>(L, pk, in, om, s, ss); break;
      case 2: conv_layer<2>(L, pk, in, om, s, ss); break;
      default: conv_layer<3>(L, pk, in, om, s, ss); break;
    }
    norm_relu(E, L, pk, om, scr);
  }
  // Bottleneck: features = b + W last (its columns reordered to the channels-last map).
  const int F = E.features;
  const float* __restrict last = scr + E.last_off;
  const float* __restrict wt = pk + E.fc_w;
  float* __restrict out = scr + E.feat_off;
  std::copy_n(pk + E.fc_b, F, out);
  const int64_t n = E.last_hw * E.last_cpad;
  for (int64_t i = 0; i < n; ++i) {
    const float xi = last[i];
    const float* __restrict row = wt + i * F;
#pragma omp simd
    for (int f = 0; f < F; ++f) out[f] += xi * row[f];
  }
  if (E.out_tanh) {
    for (int f = 0; f < F; ++f) features[f] = std::tanh(out[f]);
  } else {
    std::copy_n(out, F, features);
  }
}

#ifdef ENC_X86_CLONES
template <typename Fn>
__attribute__((target("avx2,fma"), flatten)) void run_avx2(const Fn& body) {
  body();
}
inline bool has_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
}
#endif
#if defined(__GNUC__) || defined(__clang__)
template <typename Fn>
__attribute__((flatten)) void run_baseline(const Fn& body) {
  body();
}
#else
template <typename Fn>
void run_baseline(const Fn& body) {
  body();
}
#endif

}  // namespace enc

// Features of image b of `v` into `features` (feature_dim floats); `scr` holds
// scratch_size floats whose borders are zero (they are never written).
inline void encode_sample(const EncoderLayout& E, const float* pk, const ImageView& v, int64_t b, float* scr,
                          float* features) {
  auto body = [&] { enc::encode_body(E, pk, v, b, scr, features); };
#ifdef ENC_X86_CLONES
  if (enc::has_avx2()) return enc::run_avx2(body);
#endif
  enc::run_baseline(body);
}

// The command from the core output y (head_in values): tanh((W y + b) * gain) * scale.
inline void policy_head(const EncoderLayout& E, const float* pk, const float* y, float* command) {
  for (int c = 0; c < kCommands; ++c) {
    float u = pk[E.head_b + c];
    for (int j = 0; j < E.head_in; ++j) u += y[j] * pk[E.head_w + j * kCommands + c];
    command[c] = std::tanh(u * pk[E.gain_off + c]) * pk[E.scale_off + c];
  }
}

}  // namespace lnn_nav
