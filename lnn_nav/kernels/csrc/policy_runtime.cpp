// The whole policy step (CNN encoder, goal/IMU inputs, CfC core, head) without torch or Python: a plain
// C ABI over the same kernels the torch extension runs (encoder_kernels.h, cfc_step.h), for a process
// that must not carry torch: a native ROS node on a Jetson, a flight computer's own loop.
//
// The weights come packed by the extension (lnn_nav/kernels/native.py exports them): this file parses the
// same layouts and calls the same per-sample code as policy_step() in cfc_cpu.cpp, so a step built with
// the extension's flags gives the extension's commands (tests/test_kernels_native.py compares them).
// Batch 1, one thread, no allocation per step.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#include "cfc_layout.h"
#include "cfc_math.h"
#include "cfc_step.h"
#include "encoder_kernels.h"
#include "policy_runtime.h"

#define RT_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

// 64-byte aligned float buffers, as ATen allocates the extension's, so the encoder's vector loads meet the
// same alignment in both.
struct Floats {
  float* p = nullptr;
  size_t n = 0;
  Floats() = default;
  Floats(const Floats&) = delete;
  Floats& operator=(const Floats&) = delete;
  ~Floats() { std::free(p); }
  bool assign(const float* src, size_t count) {
    std::free(p);
    n = count;
    p = static_cast<float*>(std::aligned_alloc(64, ((count * sizeof(float) + 63) / 64) * 64 + 64));
    if (p == nullptr) return false;
    if (src != nullptr) {
      std::copy(src, src + count, p);
    } else {
      std::fill(p, p + count, 0.0f);
    }
    return true;
  }
  float* data() { return p; }
  const float* data() const { return p; }
};

struct Runtime {
  lnn_nav::EncoderLayout E;
  lnn_nav::CfCLayout L;
  Floats enc_packed, core_packed;
  Floats enc_scratch;  // borders stay zero: the encoder never writes them
  Floats x, zeros, prev, proj, scratch;
  int use_imu = 0, use_goal = 0;
  float goal_clip = 1.0f;
};

// Error text for the caller (the runtime's C ABI returns codes; this says why).
thread_local char g_error[256] = "";

void set_error(const char* what) {
  std::strncpy(g_error, what, sizeof(g_error) - 1);
  g_error[sizeof(g_error) - 1] = '\0';
}

}  // namespace

RT_EXPORT int32_t lnn_rt_abi_version() { return 1; }

RT_EXPORT const char* lnn_rt_last_error() { return g_error; }

// Creates a runtime from the packed layouts; nullptr on a mismatch (lnn_rt_last_error says which).
RT_EXPORT void* lnn_rt_create(const int64_t* enc_meta, int64_t enc_meta_len, const double* eps, int64_t num_eps,
                              const float* enc_packed, int64_t enc_packed_len, const int64_t* core_meta,
                              int64_t core_meta_len, const float* core_packed, int64_t core_packed_len,
                              int32_t use_imu, int32_t use_goal, float goal_clip) {
  auto* rt = new (std::nothrow) Runtime();
  if (rt == nullptr) {
    set_error("out of memory");
    return nullptr;
  }
  // The layouts' parsers (shared with the extension, which hands them its own sizes) add these values in
  // int: from a file they are bounded first, so no sum can wrap (every size here is far below 2^20).
  constexpr int64_t kMaxMeta = int64_t{1} << 20;
  const char* err = nullptr;
  if (enc_meta == nullptr || core_meta == nullptr || enc_meta_len < 1 || core_meta_len < 1 || enc_meta_len > 4096 ||
      core_meta_len > 4096)
    err = "layout metadata missing or too long";
  for (int64_t i = 0; err == nullptr && i < enc_meta_len; ++i)
    if (enc_meta[i] < 0 || enc_meta[i] > kMaxMeta) err = "encoder layout value out of range";
  for (int64_t i = 0; err == nullptr && i < core_meta_len; ++i)
    if (core_meta[i] < 0 || core_meta[i] > kMaxMeta) err = "core layout value out of range";
  if (err == nullptr) err = lnn_nav::parse_encoder_layout(enc_meta, enc_meta_len, eps, num_eps, rt->E);
  if (err == nullptr) err = lnn_nav::parse_layout(core_meta, core_meta_len, rt->L);
  if (err == nullptr && enc_packed_len != rt->E.packed_size) err = "encoder weights do not match the layout";
  if (err == nullptr && core_packed_len != rt->L.packed_size) err = "core parameters do not match the layout";
  if (err == nullptr && rt->E.head_in != (rt->L.proj > 0 ? rt->L.proj : rt->L.out_len))
    err = "the head does not read the core's output";
  const int64_t width = rt->E.features + (use_imu ? 6 : 0) + (use_goal ? 4 : 0);
  if (err == nullptr && width != rt->L.input_size) err = "the core's input is not the features plus IMU/goal";
  if (err == nullptr && !(goal_clip > 0.0f)) err = "goal clip must be positive";
  if (err != nullptr) {
    set_error(err);
    delete rt;
    return nullptr;
  }
  const bool ok = rt->enc_packed.assign(enc_packed, static_cast<size_t>(enc_packed_len)) &&
                  rt->core_packed.assign(core_packed, static_cast<size_t>(core_packed_len)) &&
                  rt->enc_scratch.assign(nullptr, static_cast<size_t>(rt->E.scratch_size)) &&
                  rt->x.assign(nullptr, static_cast<size_t>(rt->L.input_size)) &&
                  rt->zeros.assign(nullptr, static_cast<size_t>(rt->L.state_size)) &&
                  rt->prev.assign(nullptr, static_cast<size_t>(rt->L.state_size)) &&
                  rt->proj.assign(nullptr, static_cast<size_t>(rt->L.proj > 0 ? rt->L.proj : 1)) &&
                  rt->scratch.assign(nullptr, static_cast<size_t>(rt->L.scratch));
  if (!ok) {
    set_error("out of memory");
    delete rt;
    return nullptr;
  }
  rt->use_imu = use_imu != 0;
  rt->use_goal = use_goal != 0;
  rt->goal_clip = goal_clip;
  return rt;
}

RT_EXPORT void lnn_rt_destroy(void* handle) { delete static_cast<Runtime*>(handle); }

// Sizes a caller needs: 0 state size, 1 image height, 2 width, 3 channels.
RT_EXPORT int64_t lnn_rt_size(const void* handle, int32_t what) {
  const auto* rt = static_cast<const Runtime*>(handle);
  switch (what) {
    case 0: return rt->L.state_size;
    case 1: return rt->E.h;
    case 2: return rt->E.w;
    case 3: return rt->E.c0;
    default: return -1;
  }
}

// One step. image: uint8, `height` x `width` x channels, rows `row_stride` bytes apart (interleaved
// channels, as a sensor_msgs/Image rgb8 buffer). imu [6] / goal [4] (distance last): null unless the
// policy takes them. h_in: the state (null: zeros); h_out: the new state (may alias h_in); command [4].
// Returns 0, or a negative code with lnn_rt_last_error set (nothing written then).
RT_EXPORT int32_t lnn_rt_step(void* handle, const uint8_t* image, int64_t height, int64_t width,
                              int64_t row_stride, const float* imu, const float* goal, const float* h_in,
                              float dt, float* h_out, float* command) {
  auto* rt = static_cast<Runtime*>(handle);
  const lnn_nav::EncoderLayout& E = rt->E;
  const lnn_nav::CfCLayout& L = rt->L;
  if (image == nullptr || height != E.h || width != E.w || row_stride < width * E.c0) {
    set_error("the image is not the encoder's size");
    return -1;
  }
  if ((imu == nullptr) == (rt->use_imu != 0) || (goal == nullptr) == (rt->use_goal != 0)) {
    set_error("the IMU/goal inputs do not match the policy's");
    return -2;
  }
  // NaN fails both comparisons, as in the extension's step_timespans.
  if (!(dt >= 0.0f && dt < INFINITY)) {
    set_error("dt must be finite and not negative");
    return -3;
  }
  lnn_nav::ImageView view;
  view.data = image;
  view.dtype = 0;
  view.sb = height * row_stride;
  view.sc = 1;
  view.sh = row_stride;
  view.sw = E.c0;
  float* x = rt->x.data();
  lnn_nav::encode_sample(E, rt->enc_packed.data(), view, 0, rt->enc_scratch.data(), x);
  int64_t at = E.features;
  if (imu != nullptr) {
    for (int i = 0; i < 6; ++i) x[at + i] = imu[i];
    at += 6;
  }
  if (goal != nullptr) {
    for (int i = 0; i < 3; ++i) x[at + i] = goal[i];
    const float d = goal[3];
    x[at + 3] = (d > rt->goal_clip ? rt->goal_clip : d) / rt->goal_clip;  // NaN stays NaN, as with clamp
  }
  const float* pk = rt->core_packed.data();
  const float* hprev = h_in != nullptr ? h_in : rt->zeros.data();
  // step_sample reads the previous state while it writes the new one layer by layer: an aliased h_out
  // steps from a copy.
  if (h_out == h_in && h_in != nullptr) {
    std::copy(h_in, h_in + L.state_size, rt->prev.data());
    hprev = rt->prev.data();
  }
  float* hnew = h_out;
  float* scr = rt->scratch.data();
  lnn_nav::run_vectorised([&] {
    lnn_nav::step_sample(L, pk, static_cast<const float*>(x), static_cast<const float*>(nullptr), hprev, dt, scr,
                         hnew);
  });
  lnn_nav::policy_head(E, rt->enc_packed.data(), lnn_nav::core_output(L, pk, static_cast<const float*>(hnew),
                                                                        rt->proj.data()),
                       command);
  return 0;
}
