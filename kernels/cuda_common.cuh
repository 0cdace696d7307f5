// cuda_common.cuh — what every kernel file shares: the stream cast, the launch check and small device helpers.
//
// Every sa_cuda_* entry point is captured into a CUDA graph by the C# side, so none of them may allocate,
// synchronise or read device memory on the host. The only host work is argument validation and the launch; each
// launch is followed by SA_CHECK_LAUNCH, which turns a launch error into SA_E_CUDA naming the kernel and the error.
#pragma once
#include <cuda_runtime.h>
#include <stdint.h>

#include <string>

#include "errors.h"
#include "sa_numeric.h"
#include "stepaudio_native.h"

namespace sa_cuda {

// The C# side passes a driver-API CUstream; it is the same object as a runtime cudaStream_t.
inline cudaStream_t as_stream(void *stream) { return static_cast<cudaStream_t>(stream); }

// SA_OK, or SA_E_CUDA with "kernel: cudaErrorName (description)" as the last-error message.
inline sa_status check_launch(const char *kernel) {
    cudaError_t err = cudaGetLastError();
    if (err == cudaSuccess) return SA_OK;
    return sa::fail(SA_E_CUDA, std::string(kernel) + ": launch failed with " + cudaGetErrorName(err) + " (" +
                                   cudaGetErrorString(err) + ")");
}

inline bool aligned16(const void *p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

inline sa_status invalid(const std::string &message) { return sa::fail(SA_E_INVALID_ARGUMENT, message); }

}  // namespace sa_cuda

// Use right after a <<<>>> launch inside a function returning sa_status.
#define SA_CHECK_LAUNCH(kernel_name)                                         \
    do {                                                                     \
        sa_status sa_launch_status_ = sa_cuda::check_launch(kernel_name);    \
        if (sa_launch_status_ != SA_OK) return sa_launch_status_;            \
    } while (0)

// ---- device helpers ----

// Two bf16 packed in a 32-bit word (low half = lower address) -> two floats.
__device__ __forceinline__ float bf16_lo(uint32_t w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float bf16_hi(uint32_t w) { return __uint_as_float(w & 0xffff0000u); }
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
    return (uint32_t)sa_f32_to_bf16(lo) | ((uint32_t)sa_f32_to_bf16(hi) << 16);
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
