// linear_fusion.cuh — the decode step's elementwise work folded into the linears (sa_linear_fusion in
// stepaudio_native.h), shared by every decode linear kernel (bf16, W4A16, NF4) and by elementwise.cu, so the fused
// and the stand-alone paths round at exactly the same points as the CPU reference (cpu_reference.cpp).
//
// Why: at 4 bits a Step1 decode linear moves 2–25 MB and takes 3–13 µs, so the 1.5–2.3 µs of a separate RMSNorm,
// residual-add or SwiGLU launch per use (96 of them per token) is a large share of the step. Folding them in:
//  * prologue: each block normalises the m (<= 16) rows of the residual stream into shared memory after pdl_wait —
//    every block repeats this (m·k·2 bytes from L2, ~6 KB per token), which is far cheaper than a launch;
//  * epilogue: the thread that finishes an output element adds it to the residual (in place) or, for the fused
//    gate+up, applies SwiGLU — a "SwiGLU tile" holds 8 gate rows and the same 8 up rows, so the MMA lane that owns
//    row g (accumulators c0, c1) also owns its up row g + 8 (c2, c3).
// The kernels see the fusion through three calls: stage_rmsnorm (prologue), tile_row / row_ok (which W row a logical
// tile row reads) and store (epilogue).
#pragma once
#include <map>
#include <mutex>

#include "cuda_common.cuh"

// ---- the CPU reference's rounding points (IEEE intrinsics: the library is built with --use_fast_math) ----

// 1 / sqrt(mean(x^2) + eps) from the row's total sum of squares.
__device__ __forceinline__ float rms_inverse(float total_sq, int dim, float eps) {
    return __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(__fdiv_rn(total_sq, (float)dim), eps)));
}
// bf16(bf16(v * inv) * w) before the final cast.
__device__ __forceinline__ float rms_scale(float v, float inv, float w) {
    return __fmul_rn(sa_round_bf16(__fmul_rn(v, inv)), w);
}
// rms_scale for 8 consecutive elements (16-byte vectors of x and of the norm weight).
__device__ __forceinline__ uint4 rms_scale8(uint4 a, uint4 g, float inv) {
    uint4 o;
    o.x = pack_bf16x2(rms_scale(bf16_lo(a.x), inv, bf16_lo(g.x)), rms_scale(bf16_hi(a.x), inv, bf16_hi(g.x)));
    o.y = pack_bf16x2(rms_scale(bf16_lo(a.y), inv, bf16_lo(g.y)), rms_scale(bf16_hi(a.y), inv, bf16_hi(g.y)));
    o.z = pack_bf16x2(rms_scale(bf16_lo(a.z), inv, bf16_lo(g.z)), rms_scale(bf16_hi(a.z), inv, bf16_hi(g.z)));
    o.w = pack_bf16x2(rms_scale(bf16_lo(a.w), inv, bf16_lo(g.w)), rms_scale(bf16_hi(a.w), inv, bf16_hi(g.w)));
    return o;
}
__device__ __forceinline__ float sum_sq8(uint4 a, float sum_sq) {
    const uint32_t words[4] = {a.x, a.y, a.z, a.w};
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        sum_sq = fmaf(bf16_lo(words[j]), bf16_lo(words[j]), sum_sq);
        sum_sq = fmaf(bf16_hi(words[j]), bf16_hi(words[j]), sum_sq);
    }
    return sum_sq;
}
// bf16(silu(g)) * u for bf16 values g, u (before the final cast).
__device__ __forceinline__ float swiglu_one(float g, float u) {
    const float silu = __fdiv_rn(g, __fadd_rn(1.0f, __expf(-g)));
    return __fmul_rn(sa_round_bf16(silu), u);
}
// bf16(a + b) for two packed pairs.
__device__ __forceinline__ uint32_t add_bf16x2(uint32_t a, uint32_t b) {
    return pack_bf16x2(__fadd_rn(bf16_lo(a), bf16_lo(b)), __fadd_rn(bf16_hi(a), bf16_hi(b)));
}

namespace sa_fusion {

// The kernel-side copy of sa_linear_fusion (by value: a kernel argument).
struct Args {
    const uint16_t *norm_weight;  // nullptr: no prologue
    float eps;
    int epilogue;  // SA_EPILOGUE_*
};

// Prologue: xs[r, :] = rmsnorm(x[r, :]) * norm_weight for the m rows, one warp per row, then a block barrier.
// Call after pdl_wait (x is written by the previous kernel; plain coherent loads) from every thread of the block.
// k % 8 == 0 and 16-byte aligned x / norm_weight / xs (checked by check_host_args).
__device__ inline void stage_rmsnorm(const uint16_t *x, const Args &f, int m, int k, uint16_t *xs) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, warps = blockDim.x >> 5, chunks = k / 8;
    const uint4 *w = reinterpret_cast<const uint4 *>(f.norm_weight);
    for (int r = warp; r < m; r += warps) {
        const uint4 *row = reinterpret_cast<const uint4 *>(x + (int64_t)r * k);
        float sum_sq = 0.0f;
        for (int c = lane; c < chunks; c += 32) sum_sq = sum_sq8(row[c], sum_sq);
        const float inv = rms_inverse(warp_sum(sum_sq), k, f.eps);
        uint4 *out = reinterpret_cast<uint4 *>(xs + (int64_t)r * k);
        for (int c = lane; c < chunks; c += 32) out[c] = rms_scale8(row[c], w[c], inv);
    }
    __syncthreads();
}

// The W row that row r (0..15) of 16-row tile `tile` reads: consecutive rows, or for SwiGLU gate row 8·tile + r
// (r < 8) and the matching up row n/2 + 8·tile + r − 8 (r >= 8).
__device__ __forceinline__ int tile_row(int tile, int r, int n, int epilogue) {
    if (epilogue != SA_EPILOGUE_SWIGLU) return 16 * tile + r;
    return (r < 8 ? 0 : n / 2) + 8 * tile + (r & 7);
}
__device__ __forceinline__ bool row_ok(int tile, int r, int n, int epilogue) {
    return epilogue == SA_EPILOGUE_SWIGLU ? tile < n / 16 : 16 * tile + r < n;  // SwiGLU: n % 16 == 0
}

// Epilogue: the finished fp32 sums of rows r and r + 8 (0 <= r < 8) of tile `tile` for token tok (< m).
__device__ __forceinline__ void store(uint16_t *y, const Args &f, int n, int tok, int tile, int r, float lo, float hi) {
    if (f.epilogue == SA_EPILOGUE_SWIGLU) {
        if (tile < n / 16)
            y[(int64_t)tok * (n / 2) + 8 * tile + r] =
                sa_f32_to_bf16(swiglu_one(sa_round_bf16(lo), sa_round_bf16(hi)));
        return;
    }
#pragma unroll
    for (int half = 0; half < 2; ++half) {
        const int row = 16 * tile + r + 8 * half;
        if (row >= n) continue;
        uint16_t *dst = y + (int64_t)tok * n + row;
        float v = half ? hi : lo;
        if (f.epilogue == SA_EPILOGUE_ADD) v = __fadd_rn(sa_bf16_to_f32(*dst), sa_round_bf16(v));
        *dst = sa_f32_to_bf16(v);
    }
}

// Host side: validates a sa_linear_fusion for a decode linear y[m, n] = x[m, k] · W^T and fills the kernel's Args
// and the dynamic shared memory the prologue needs. `fn` names the entry point in the error message.
inline sa_status check_host_args(const char *fn, const sa_linear_fusion *fusion, const void *x, const void *y, int m,
                                 int n, int k, Args &args, size_t &smem_bytes) {
    args = Args{nullptr, 0.0f, SA_EPILOGUE_STORE};
    smem_bytes = 0;
    if (!fusion) return SA_OK;
    const std::string name(fn);
    if (fusion->epilogue < SA_EPILOGUE_STORE || fusion->epilogue > SA_EPILOGUE_SWIGLU)
        return sa_cuda::invalid(name + ": unknown fusion epilogue " + std::to_string(fusion->epilogue));
    if (m > SA_FUSION_MAX_M)
        return sa_cuda::invalid(name + ": fusions are for decode (m <= " + std::to_string(SA_FUSION_MAX_M) +
                                "), got m = " + std::to_string(m));
    if (x == y) return sa_cuda::invalid(name + ": a fused linear's y must not alias x");
    if (fusion->epilogue == SA_EPILOGUE_SWIGLU && n % 16 != 0)
        return sa_cuda::invalid(name + ": the SwiGLU epilogue needs n = 2·f with n % 16 == 0, got n = " +
                                std::to_string(n));
    if (fusion->norm_weight) {
        if (k % 8 != 0 || !sa_cuda::aligned16(fusion->norm_weight) || !sa_cuda::aligned16(x))
            return sa_cuda::invalid(name + ": the RMSNorm prologue needs k % 8 == 0 and 16-byte aligned x and weight");
        if (!(fusion->norm_eps >= 0.0f))
            return sa_cuda::invalid(name + ": the RMSNorm epsilon must be >= 0, got " + std::to_string(fusion->norm_eps));
        smem_bytes = (size_t)m * k * 2;
    }
    args = Args{fusion->norm_weight, fusion->norm_eps, fusion->epilogue};
    return SA_OK;
}

// Lets `kernel` use `bytes` of dynamic shared memory (above 48 KB needs an opt-in; a host call, allowed while a graph
// is being captured). Remembers the largest size granted per kernel.
template <typename Kernel>
sa_status reserve_smem(const char *name, Kernel kernel, size_t bytes) {
    if (bytes <= 48 * 1024) return SA_OK;
    static std::mutex lock;
    static std::map<const void *, size_t> granted;
    std::lock_guard<std::mutex> hold(lock);
    size_t &have = granted[reinterpret_cast<const void *>(kernel)];
    if (bytes <= have) return SA_OK;
    const cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
    if (err != cudaSuccess) {
        (void)cudaGetLastError();
        return sa::fail(SA_E_INVALID_ARGUMENT, std::string(name) + ": the RMSNorm prologue needs " +
                                                   std::to_string(bytes) + " bytes of shared memory per block (" +
                                                   cudaGetErrorName(err) + ")");
    }
    have = bytes;
    return SA_OK;
}

}  // namespace sa_fusion
