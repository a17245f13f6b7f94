// The C ABI of the torch-free policy runtime (policy_runtime.cpp; docs/deploy.md, "Without torch").
#pragma once

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

int32_t lnn_rt_abi_version(void);
const char* lnn_rt_last_error(void);
// A runtime for the packed weights lnn_nav.kernels.native exports; NULL on a mismatch (see lnn_rt_last_error).
void* lnn_rt_create(const int64_t* enc_meta, int64_t enc_meta_len, const double* eps, int64_t num_eps,
                    const float* enc_packed, int64_t enc_packed_len, const int64_t* core_meta, int64_t core_meta_len,
                    const float* core_packed, int64_t core_packed_len, int32_t use_imu, int32_t use_goal,
                    float goal_clip);
void lnn_rt_destroy(void* handle);
// 0 state size, 1 image height, 2 width, 3 channels.
int64_t lnn_rt_size(const void* handle, int32_t what);
// One step: 0, or a negative code (lnn_rt_last_error says why; nothing written).
int32_t lnn_rt_step(void* handle, const uint8_t* image, int64_t height, int64_t width, int64_t row_stride,
                    const float* imu, const float* goal, const float* h_in, float dt, float* h_out, float* command);

#ifdef __cplusplus
}
#endif
