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
// bf16(a + b) for 8 consecutive elements (16-byte vectors).
__device__ __forceinline__ uint4 add_bf16x8(uint4 a, uint4 b) {
    return make_uint4(add_bf16x2(a.x, b.x), add_bf16x2(a.y, b.y), add_bf16x2(a.z, b.z), add_bf16x2(a.w, b.w));
}

// 0 turns trigger_after_wait off (the A/B knob of NOTES_QUANT.md, session 5).
#ifndef SA_LATE_TRIGGER_O
#define SA_LATE_TRIGGER_O 1
#endif

namespace sa_epilogue {

// Whether a 4-bit decode linear lets the next kernel launch only after its own pdl_wait instead of at its start: the
// attention output projection does (an ADD epilogue with K <= N; the FFN's down, also ADD, has K > N). Its successor
// is gate_up, whose blocks would otherwise become resident while attention runs and request their first tiles then;
// that traffic slowed attention and its combine down by more than the early tiles saved (W4A16 step −55 µs; NF4,
// whose gate_up blocks do not fit beside attention's anyway, ±5). Triggering later is always safe under PDL.
__device__ __forceinline__ bool trigger_after_wait(int epilogue, int n, int k) {
    return SA_LATE_TRIGGER_O && epilogue == SA_EPILOGUE_ADD && k <= n;
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

// ---- a folded RMSNorm (sa_norm_fold in stepaudio_native.h) ----
// Producer: the ADD epilogue also writes h·g and, per 16-row tile and token, the sum of h² (the 8 threads that
// finish a tile's rows for one token combine theirs with three shuffles). Consumer: the producer's sums are pulled
// into L1 right after pdl_wait (no registers held over the main loop) and turned into 1/rms per token at the end.
// Why not a separate RMSNorm kernel: it sits on the critical path between two linears (wait, read, reduce, write,
// ~2–3 µs per norm at decode); an RMSNorm prologue in every consumer block lost (kernels/NOTES.md), since each block
// had to reduce x before its first MMA. Here nothing waits on the sums until the epilogue.

__device__ __forceinline__ bool folds_in(const sa_norm_fold &f) { return f.sumsq_in != nullptr; }
__device__ __forceinline__ bool folds_out(const sa_norm_fold &f) { return f.weight != nullptr; }

// After pdl_wait: the consumer's [m, k/16] sums into L1, one 128-byte line per thread.
__device__ __forceinline__ void fold_prefetch(const sa_norm_fold &f, int m, int k) {
    if (!folds_in(f)) return;
    const int lines = (m * (k / 16) * 4 + 127) / 128;
    for (int i = threadIdx.x; i < lines; i += blockDim.x) prefetch_l1(f.sumsq_in + 32 * i);
}
// inv_s[t] = 1/rms of token t < min(m, 16), warp w computing tokens w and w + 8. The caller makes it visible with a
// __syncthreads before store() reads it. Sums are read with plain (coherent) loads: written by the previous kernel.
__device__ __forceinline__ void fold_inverse(const sa_norm_fold &f, int m, int k, float *inv_s) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, parts = k / 16;
    for (int t = warp; t < m && t < SA_EPILOGUE_MAX_M; t += (int)blockDim.x / 32) {
        float sum = 0.0f;
        for (int j = lane; j < parts; j += 32) sum += f.sumsq_in[t * parts + j];
        sum = warp_sum(sum);
        if (lane == 0) inv_s[t] = rms_inverse(sum, k, f.eps);
    }
}

// The finished fp32 sums of rows r and r + 8 (0 <= r < 8) of tile `tile` for token tok (< m). inv: the consumer's
// 1/rms of this token (used only with folds_in). Returns this thread's share of the tile's sum of h² (folds_out;
// else 0): the caller adds the 8 shares of a token (tile_sumsq) and one thread writes it.
__device__ __forceinline__ float store(uint16_t *y, int epilogue, int n, int tok, int tile, int r, float lo, float hi,
                                       const sa_norm_fold &fold, float inv) {
    if (folds_in(fold)) {  // bf16(bf16(x·W^T) · inv), then the epilogue as if that were the product
        lo = __fmul_rn(sa_round_bf16(lo), inv);
        hi = __fmul_rn(sa_round_bf16(hi), inv);
    }
    if (epilogue == SA_EPILOGUE_SWIGLU) {
        if (tile < n / 16)
            y[(int64_t)tok * (n / 2) + 8 * tile + r] =
                sa_f32_to_bf16(swiglu_one(sa_round_bf16(lo), sa_round_bf16(hi)));
        return 0.0f;
    }
    float sum_sq = 0.0f;
#pragma unroll
    for (int half = 0; half < 2; ++half) {
        const int row = 16 * tile + r + 8 * half;
        if (row >= n) continue;
        uint16_t *dst = y + (int64_t)tok * n + row;
        float v = half ? hi : lo;
        if (epilogue == SA_EPILOGUE_ADD) v = __fadd_rn(sa_bf16_to_f32(*dst), sa_round_bf16(v));
        const uint16_t h = sa_f32_to_bf16(v);
        *dst = h;
        if (folds_out(fold)) {
            const float hv = sa_bf16_to_f32(h);
            sum_sq = __fadd_rn(sum_sq, __fmul_rn(hv, hv));
            fold.out[(int64_t)tok * n + row] = sa_f32_to_bf16(__fmul_rn(hv, sa_bf16_to_f32(fold.weight[row])));
        }
    }
    return sum_sq;
}
// Sum of the shares of the 8 lanes that finished one token's tile rows; they differ in the lane bits of `mask`
// (three bits). Every lane of the warp must call it.
__device__ __forceinline__ float tile_sumsq(float share, int mask) {
#pragma unroll
    for (int b = 1; b < 32; b <<= 1)
        if (mask & b) share = __fadd_rn(share, __shfl_xor_sync(0xffffffffu, share, b));
    return share;
}

// The end of a 4-bit decode GEMV tile (linear_w4a16.cu, linear_nf4.cu): the warps' MMA accumulators of one 16-row
// tile go to shared memory, [warp][16 rows][16 tokens] floats with warp_stride floats between warps, and after a block
// barrier thread i < 128 reduces them over the warps (in warp order) and finishes tile rows i % 8 and i % 8 + 8 for
// token i / 8 through store() (the 8 threads of a token are 8 consecutive lanes: tile_sumsq over lane bits 0..2).
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
// Called by all 32 lanes of a warp together (i = 32·w + lane for w < 4). inv_s: fold_inverse's output (folds_in).
template <int Warps>
__device__ __forceinline__ void reduce_store(const float *partial, int warp_stride, int i, uint16_t *y, int epilogue,
                                             int n, int m, int tokens, int tile, const sa_norm_fold &fold,
                                             const float *inv_s) {
    const int row = i % 8, token = i / 8;
    const bool ok = token < m && token < tokens;
    float share = 0.0f;
    if (ok) {
        float lo = 0.0f, hi = 0.0f;
#pragma unroll
        for (int w = 0; w < Warps; ++w) {
            lo += partial[w * warp_stride + row * 16 + token];
            hi += partial[w * warp_stride + (row + 8) * 16 + token];
        }
        share = store(y, epilogue, n, token, tile, row, lo, hi, fold, folds_in(fold) ? inv_s[token] : 1.0f);
    }
    if (folds_out(fold)) {  // block-uniform
        const float sum_sq = tile_sumsq(share, 7);
        if (ok && row == 0) fold.sumsq_out[token * (n / 16) + tile] = sum_sq;
    }
}

// Which warps reduce tile ti of a persistent block whose warps are not held together by a barrier per tile (NF4's
// lagged reduction): tokens need 8 threads each, so nw = ceil(min(m, tokens) / 4) warps, those from ti·nw mod Warps
// on, so that the reduction moves over the warps instead of delaying warps 0-3 at every tile (measured, session 20:
// kernels/NOTES_QUANT.md). Returns this warp's slot (its threads reduce outputs 32·slot + lane), or -1.
__device__ __forceinline__ int reducer_warps(int m, int tokens) { return ((m < tokens ? m : tokens) + 3) / 4; }
template <int Warps>
__device__ __forceinline__ int reducer_slot(int warp, int ti, int m, int tokens) {
    const int nw = reducer_warps(m, tokens);
    const int slot = ((warp - ti * nw) % Warps + Warps) % Warps;
    return slot < nw ? slot : -1;
}

// Host side: SA_OK if `epilogue` is valid for y[m, n] = x[m, k] · W^T, else SA_E_INVALID_ARGUMENT naming the problem
// (`fn` is the entry point).
inline sa_status check_host_args(const char *fn, int epilogue, const sa_norm_fold *fold, const void *x, const void *y,
                                 int m, int n, int k) {
    const std::string name(fn);
    if (fold && (fold->weight || fold->sumsq_in)) {
        if (m > SA_EPILOGUE_MAX_M)
            return sa_cuda::invalid(name + ": a folded RMSNorm is for decode (m <= " + std::to_string(SA_EPILOGUE_MAX_M) +
                                    "), got m = " + std::to_string(m));
        if (fold->weight && (epilogue != SA_EPILOGUE_ADD || !fold->out || !fold->sumsq_out || n % 16 != 0 ||
                             fold->out == x || fold->out == y))
            return sa_cuda::invalid(name + ": a folded RMSNorm's producer needs the ADD epilogue, out and sumsq_out, "
                                           "n % 16 == 0 and out aliasing neither x nor y (n = " + std::to_string(n) + ")");
        if (fold->sumsq_in && (k % 16 != 0 || !(fold->eps >= 0.0f)))
            return sa_cuda::invalid(name + ": a folded RMSNorm's consumer needs k % 16 == 0 and eps >= 0 (k = " +
                                    std::to_string(k) + ")");
    }
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

// The fold a kernel receives by value (none when the caller passed NULL).
inline sa_norm_fold fold_value(const sa_norm_fold *fold) { return fold ? *fold : sa_norm_fold{}; }

}  // namespace sa_epilogue
