// linear_epilogue.cuh — linear epilogues (SA_EPILOGUE_* in stepaudio_native.h) shared by every decode linear kernel
// (bf16, W4A16, NF4), and the elementwise rounding helpers they share with elementwise.cu, so the fused and the
// stand-alone paths round at exactly the same points as the CPU reference (cpu_reference.cpp).
//
// Why: a separate residual-add or SwiGLU launch costs ~1.4 µs of a decode step each (measured: SwiGLU folded into
// gate_up and the adds into o / down save 44 µs per bf16 token). The thread that finishes an output element adds it
// to the residual in place or, for the fused gate+up, applies SwiGLU: a "SwiGLU tile" holds 8 gate rows and the same
// 8 up rows, so the MMA lane that owns row g (accumulators c0, c1) also owns its up row g + 8 (c2, c3).
// (An RMSNorm prologue — every block normalising x into shared memory — was measured too and lost: every block of a
// multi-wave GEMV pays the extra L2 round trip; kernels/NOTES.md.)
// The kernels see an epilogue through tile_row / row_ok (which W row a logical tile row reads) and store.
#pragma once
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

namespace sa_epilogue {

// The W row that row r (0..15) of 16-row tile `tile` reads: consecutive rows, or for SwiGLU gate row 8·tile + r
// (r < 8) and the matching up row n/2 + 8·tile + r − 8 (r >= 8).
__device__ __forceinline__ int tile_row(int tile, int r, int n, int epilogue) {
    if (epilogue != SA_EPILOGUE_SWIGLU) return 16 * tile + r;
    return (r < 8 ? 0 : n / 2) + 8 * tile + (r & 7);
}
__device__ __forceinline__ bool row_ok(int tile, int r, int n, int epilogue) {
    return epilogue == SA_EPILOGUE_SWIGLU ? tile < n / 16 : 16 * tile + r < n;  // SwiGLU: n % 16 == 0
}

// The finished fp32 sums of rows r and r + 8 (0 <= r < 8) of tile `tile` for token tok (< m).
__device__ __forceinline__ void store(uint16_t *y, int epilogue, int n, int tok, int tile, int r, float lo, float hi) {
    if (epilogue == SA_EPILOGUE_SWIGLU) {
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
        if (epilogue == SA_EPILOGUE_ADD) v = __fadd_rn(sa_bf16_to_f32(*dst), sa_round_bf16(v));
        *dst = sa_f32_to_bf16(v);
    }
}

// The end of a 4-bit decode GEMV tile (linear_w4a16.cu, linear_nf4.cu): the warps' MMA accumulators of one 16-row
// tile go to shared memory, [warp][16 rows][16 tokens] floats with warp_stride floats between warps, and after a block
// barrier thread i < 128 reduces them over the warps (in warp order) and finishes tile rows i / 16 and i / 16 + 8 for
// token i % 16 through store().
template <int Tiles>
__device__ __forceinline__ void write_partials(float *warp_partial, const float (&acc)[Tiles][4], int g, int t) {
#pragma unroll
    for (int tt = 0; tt < Tiles; ++tt) {  // c0,c1: row g, tokens 2t, 2t+1; c2,c3: row g + 8
        warp_partial[g * 16 + tt * 8 + 2 * t] = acc[tt][0];
        warp_partial[g * 16 + tt * 8 + 2 * t + 1] = acc[tt][1];
        warp_partial[(g + 8) * 16 + tt * 8 + 2 * t] = acc[tt][2];
        warp_partial[(g + 8) * 16 + tt * 8 + 2 * t + 1] = acc[tt][3];
    }
}
template <int Warps>
__device__ __forceinline__ void reduce_store(const float *partial, int warp_stride, int i, uint16_t *y, int epilogue,
                                             int n, int m, int tokens, int tile) {
    const int row = i / 16, token = i % 16;
    if (token >= m || token >= tokens) return;
    float lo = 0.0f, hi = 0.0f;
#pragma unroll
    for (int w = 0; w < Warps; ++w) {
        lo += partial[w * warp_stride + row * 16 + token];
        hi += partial[w * warp_stride + (row + 8) * 16 + token];
    }
    store(y, epilogue, n, token, tile, row, lo, hi);
}

// Host side: SA_OK if `epilogue` is valid for y[m, n] = x[m, k] · W^T, else SA_E_INVALID_ARGUMENT naming the problem
// (`fn` is the entry point).
inline sa_status check_host_args(const char *fn, int epilogue, const void *x, const void *y, int m, int n) {
    const std::string name(fn);
    if (epilogue < SA_EPILOGUE_STORE || epilogue > SA_EPILOGUE_SWIGLU)
        return sa_cuda::invalid(name + ": unknown epilogue " + std::to_string(epilogue));
    if (epilogue == SA_EPILOGUE_STORE) return SA_OK;
    if (m > SA_EPILOGUE_MAX_M)
        return sa_cuda::invalid(name + ": the add / SwiGLU epilogues are for decode (m <= " +
                                std::to_string(SA_EPILOGUE_MAX_M) + "), got m = " + std::to_string(m));
    if (x == y) return sa_cuda::invalid(name + ": with an add / SwiGLU epilogue y must not alias x");
    if (epilogue == SA_EPILOGUE_SWIGLU && n % 16 != 0)
        return sa_cuda::invalid(name + ": the SwiGLU epilogue needs n = 2·f with n % 16 == 0, got n = " +
                                std::to_string(n));
    return SA_OK;
}

}  // namespace sa_epilogue
