// linear_w4a16.cu — y[M,N] = bf16(x[M,K] · W^T) for W in the W4A16 kernel layout (stepaudio_native.h):
// int4 codes [N, K/8] (nibbles interleaved 0,2,4,6,1,3,5,7), 16-bit group scales [N, K/128], optional zero codes.
//
// Two skinny tensor-core kernels for M <= 16 (decode; also over 16-token slices for 17–32 tokens on small weights —
// larger M goes to the prefill GEMM of linear_quant_prefill.cu). What they share:
//  * a block owns 16 · RowTiles output rows; its warps (8, or 6 for multi-wave K = 3072 launches: skinny_warps)
//    split the K groups (group g goes to warp g % warps) and reduce in shared memory at the end. A thread
//    (lane = 4·r + t) handles, per group and 16-row tile, 16 B of codes of row r and 16 B of row r + 8: the 4
//    threads t of a row cover exactly one 128-wide group, so the scale (and zero) is applied once per group to the
//    fp32 MMA partial sum;
//  * int4 → bf16 is the magic-number trick (w4a16_dequant.cuh): (q >> 4i) & 0x000f000f | 0x43004300 is the bf16
//    pair 128 + c of elements (2i, 2i+1), and one packed fma subtracts 128 + z exactly — (c − z) is a small integer,
//    so the MMA operand is exact and the only rounding is the fp32 accumulation and the final bf16;
//  * mma.m16n8k16: W rows are the M=16 side, tokens the n=8 side (one or two 8-token tiles). A dot product does not
//    care about the order of k, so each thread's logical k slots are mapped to the k of its own 16-byte chunk, and
//    the same mapping is applied to x: both operands come straight from 16-byte words;
//  * programmatic dependent launch (as the bf16 GEMV): weights are requested before pdl_wait, x is read and y
//    written after it;
//  * the epilogues (linear_epilogue.cuh): rows come from sa_epilogue::tile_row (a SwiGLU tile reads 8 gate and the
//    same 8 up rows) and the warps' sums are reduced and stored by sa_epilogue::reduce_store.
//
// w4a16_skinny (v5, 16-row blocks; every M = 1..4 launch and the M > 4 launches whose N is too small for wider
// blocks): each warp loads a batch of 4 groups (codes, scales, zeros) into registers, then multiplies it.
//
// w4a16_stream (v8, the M <= 4 launches with K <= 3072 whose tiles fill 1–4 persistent waves: Step1's gate_up): v5's
// blocks made persistent, each requesting its next tile before reducing the current one. At M <= 4 it multiplies on
// int8 tensor cores (v9, the integer path below: x staged once per block as exact 8-bit slices).
//
// w4a16_wide (v6, M > 4 with N / 32 >= SMs: 64- or 32-row blocks): one x fragment, loaded per group, feeds 4 or 2
// row tiles (at M = 16 the x loads — 16 tokens × 8 scattered 16-byte chunks per instruction — bound v5, not the
// weights). Codes stream through a per-thread cp.async ring in shared memory (WIDE_STAGES groups per warp in
// flight; registers hold the accumulators and x): each thread copies exactly the chunks it multiplies, so no
// barrier guards the ring — cp.async.wait_group orders a thread's own copies, and a slot is refilled right after
// its group is multiplied. The block's group scales (and zero codes) are staged once in shared memory [group][row].
//
// The ring kernel was also measured for the 16-row launches (4 groups in flight per warp, 4 blocks per SM): no
// faster on the large shapes at M = 1 and 25–40% slower on qkv / o / down in a PDL chain; capped at 2 blocks per SM
// it got most of that back but lost on the large shapes. So v5 stays there (the build knobs of that experiment,
// SA_W4A16_RING_NARROW / SA_W4A16_RING_SMEM_PAD, are in the history of this file, commit 1afe55e). Versions v2
// (persistent blocks), v3 (cluster split-K) and 80-register caps were slower too; all of it, with predictions and
// measurements: kernels/NOTES_QUANT.md.
#include <cuda_fp16.h>

#include <algorithm>
#include <string>

#include "cuda_common.cuh"
#include "linear_epilogue.cuh"
#include "linear_quant_prefill.h"
#include "w4a16_dequant.cuh"

namespace {

using sa_w4a16::dequant_pair;
using sa_w4a16::neg_magic;
using sa_w4a16::scale_to_f32;

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kGroup = SA_W4A16_GROUP;

// ---- build-time knobs (the measurements of NOTES_QUANT.md) ----
// v5: blocks per SM ptxas must fit (the register budget: 1 = up to 255 registers).
#ifndef SA_W4A16_MIN_BLOCKS
#define SA_W4A16_MIN_BLOCKS 1
#endif
// Ring kernel: groups per warp in flight; the widest block (row tiles; 1 turns the ring kernel off); the token count
// from which it is used.
#ifndef SA_W4A16_WIDE_STAGES
#define SA_W4A16_WIDE_STAGES 2
#endif
#ifndef SA_W4A16_MAX_ROW_TILES
#define SA_W4A16_MAX_ROW_TILES 4
#endif
#ifndef SA_W4A16_SIX_WARPS
#define SA_W4A16_SIX_WARPS 1
#endif
#ifndef SA_W4A16_DEEP_BATCH  // 8-group batches for K >= 8192 without zero codes (0: off, the A/B knob)
#define SA_W4A16_DEEP_BATCH 1
#endif
#ifndef SA_W4A16_SIX_WARP_BLOCKS  // blocks per SM the six-warp kernel's registers must allow
#define SA_W4A16_SIX_WARP_BLOCKS 3
#endif
#ifndef SA_W4A16_WIDE_MIN_M
#define SA_W4A16_WIDE_MIN_M 5
#endif

// ==== v5: w4a16_skinny, the register kernel ====
constexpr int kUnroll = 4;  // groups per warp whose codes are loaded before any is multiplied (8 at K >= 8192)

// The v5 / v8 weight loads carry no L2 prefetch-size hint (the bf16 and NF4 weight loads use .L2::256B): measured in
// session 7, .L2::256B here cost the W4A16 step 25 µs (kernels/NOTES_QUANT.md).
#define SA_W4A16_WEIGHT_LOAD "ld.global.nc.L1::no_allocate.v4.u32"

__device__ __forceinline__ uint4 ld_stream16(const uint32_t *p) {
    uint4 r;
    asm volatile(SA_W4A16_WEIGHT_LOAD " {%0,%1,%2,%3}, [%4];"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
                 : "l"(p));
    return r;
}

// One batch: U groups of this warp (codes of rows r and r + 8, their scales and zero codes).
template <int U>
struct Batch {
    uint4 wa[U], wb[U];
    uint16_t sa[U], sb[U];
    uint8_t za[U], zb[U];

    // Groups first, first + stride, ... (none past the last) of rows row_a and row_b, in one round trip; qa / qb
    // point at this thread's 16 B of the rows' group 0.
    template <bool HasZeros>
    __device__ __forceinline__ void load(const uint32_t *qa, const uint32_t *qb, const uint16_t *__restrict__ scales,
                                         const uint8_t *__restrict__ zeros, int row_a, int row_b, int groups,
                                         int first, int stride) {
#pragma unroll
        for (int u = 0; u < U; ++u) load_one<HasZeros>(u, qa, qb, scales, zeros, row_a, row_b, groups, first + u * stride);
    }
    // Entry u only: group grp (none past the last).
    template <bool HasZeros>
    __device__ __forceinline__ void load_one(int u, const uint32_t *qa, const uint32_t *qb,
                                             const uint16_t *__restrict__ scales, const uint8_t *__restrict__ zeros,
                                             int row_a, int row_b, int groups, int grp) {
        if (grp < groups) {
            wa[u] = ld_stream16(qa + (size_t)grp * (kGroup / 8));
            wb[u] = ld_stream16(qb + (size_t)grp * (kGroup / 8));
            sa[u] = __ldg(scales + (size_t)row_a * groups + grp);
            sb[u] = __ldg(scales + (size_t)row_b * groups + grp);
            za[u] = HasZeros ? __ldg(zeros + (size_t)row_a * groups + grp) : 8;
            zb[u] = HasZeros ? __ldg(zeros + (size_t)row_b * groups + grp) : 8;
        }
    }
};

// One code word per row into the MMA: word w of rows r and r + 8 (qa, qb: 8 codes each) against the x fragments of
// the same k (xv[tt]: token tt·8 + r), in two MMA steps h, elements 4h..4h+3 — every kernel here multiplies this way.
template <int Tiles>
__device__ __forceinline__ void mma_code_word(float (&part)[Tiles][4], uint32_t qa, uint32_t qb, uint32_t za,
                                              uint32_t zb, const uint4 (&xv)[Tiles]) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        const uint32_t a0 = dequant_pair(qa, 8 * h, za), a2 = dequant_pair(qa, 8 * h + 4, za);
        const uint32_t a1 = dequant_pair(qb, 8 * h, zb), a3 = dequant_pair(qb, 8 * h + 4, zb);
#pragma unroll
        for (int tt = 0; tt < Tiles; ++tt) {
            const uint32_t b0 = h == 0 ? xv[tt].x : xv[tt].z, b1 = h == 0 ? xv[tt].y : xv[tt].w;
            mma_bf16_16816(part[tt], a0, a1, a2, a3, b0, b1);
        }
    }
}

// ==== The integer path (SA_W4A16_IMMA; v9): the decode kernels' multiply on int8 tensor cores ====
// Why: the bf16 multiply spends ~16 instructions per mma.m16n8k16 (LOP3 + SHF + HFMA2 to turn 8 codes into 4 exact
// bf16 pairs), and the decode GEMVs are bound by that consume path (~18–22 GB/s per SM, kernels/NOTES_QUANT.md,
// sessions 7–8). mma.m16n8k32 on 8-bit codes needs 3 ALU instructions per code word (w4a16_dequant.cuh: codes_s8x16
// for symmetric weights, codes_u8 with zero codes) and covers twice the k per instruction. x must then be integers:
// each warp stages x of its own groups (tokens < m) once, after the wait, as X = round(x · 2^s) with one power-of-two
// s per (token, 128-group) that puts the group's largest |x| in [2^14, 2^15). X fits 16 bits and is split exactly
// into a signed high and an unsigned low byte, each multiplied by its own MMA, so the group's Σ (c − z)·X (256·Σ hi
// part + Σ lo part, minus z·Σ X with zero codes) is exact in int32; times (weight scale · 2^−s) it joins the fp32
// accumulator.
// Exactness: bf16 has 8 significant bits, so X = x · 2^s exactly for every element within 2^8 of its group's
// largest; a smaller element is rounded to the group's step, an error of at most 2^−15 of the group's largest |x|
// (the bf16 path's only rounding is the fp32 accumulation; both are far below the output's bf16 rounding). An Inf or
// NaN in a group makes that group's result NaN.
// Shared memory (dynamic, per block): [token][k / 8 chunk] 16 B = the chunk's MMA B registers {b0 hi, b1 hi, b0 lo,
// b1 lo} (elements 0, 4, 1, 5 and 2, 6, 3, 7, the order of the codes' A registers), then [token][group] float2
// {2^−s, Σ X as int bits (zero codes only)}.
// Measured in session 9 (kernels/NOTES_QUANT.md), H200, M = 1: gate_up alone 10.87 -> 10.45 µs (9.63 with the
// refill, w4a16_stream), the W4A16 step at 64 keys 1.128 / 1.130 -> 1.122 (1.108) ms, the AWQ-style step (zero codes,
// fp16 scales) 1.241 / 1.244 -> 1.172 ms. In the
// single-tile kernels (qkv, o, down, lm_head) the staging sits on the critical path after the wait and costs more
// than the cheaper multiply saves (qkv 3.44 -> 3.91 µs, down 6.77 -> 7.71): so 2 is the default.
#ifndef SA_W4A16_IMMA
#define SA_W4A16_IMMA 2
#endif
constexpr int kImmaMaxM = 4;                // tokens the integer path takes (the decode launches)
constexpr size_t kImmaMaxSmem = 36 * 1024;  // with the static partial sums, under the 48 KB that needs no opt-in
constexpr int kImmaStageRound = 4;          // groups a warp stages at once (their loads and reductions overlap)
__host__ __device__ constexpr size_t imma_smem_bytes(int m, int k) { return (size_t)m * (2 * k + 8 * (k / kGroup)); }
// SA_W4A16_IMMA: 0 off, 1 every decode kernel, 2 only the streaming kernel (gate_up), where the staging is paid once
// per block for ~2.6 tiles.
bool imma_fits(int m, int k, bool stream) {
    return (SA_W4A16_IMMA == 1 || (SA_W4A16_IMMA == 2 && stream)) && m <= kImmaMaxM && imma_smem_bytes(m, k) <= kImmaMaxSmem;
}

// Stages x of this warp's groups (warp, warp + Warps, ... below k / 128) for tokens < m, one group per warp
// instruction: lane (chunk c = lane / 2, word j = lane % 2) makes B word j of chunk c from elements 2j, 2j + 1 and
// 2j + 4, 2j + 5. Warp-synchronous: the warp reads only what it staged.
template <int Warps, bool HasZeros>
__device__ __forceinline__ void imma_stage_x(const uint16_t *x, int m, int k, int warp, int lane, uint32_t *xq,
                                             float2 *xs) {
    const int groups = k / kGroup, my_groups = (groups - warp + Warps - 1) / Warps, c = lane >> 1, j = lane & 1;
    for (int token = 0; token < m; ++token)
        for (int base = 0; base < my_groups; base += kImmaStageRound) {
            uint32_t near[kImmaStageRound], far[kImmaStageRound];  // elements (2j, 2j + 1) and (2j + 4, 2j + 5)
#pragma unroll
            for (int i = 0; i < kImmaStageRound; ++i) {  // past the last group: repeat it (never stored)
                const int grp = warp + min(base + i, my_groups - 1) * Warps;
                const uint16_t *p = x + (size_t)token * k + grp * kGroup + c * 8 + 2 * j;
                near[i] = *reinterpret_cast<const uint32_t *>(p);
                far[i] = *reinterpret_cast<const uint32_t *>(p + 4);
            }
#pragma unroll
            for (int i = 0; i < kImmaStageRound; ++i) {
                if (base + i >= my_groups) break;  // warp-uniform
                const int grp = warp + (base + i) * Warps;
                // The group's largest magnitude: bf16 bits without the sign order like the values.
                const uint32_t pair = __vmaxu2(near[i] & 0x7fff7fffu, far[i] & 0x7fff7fffu);
                const uint32_t mx = __reduce_max_sync(0xffffffffu, max(pair & 0xffffu, pair >> 16));
                // Its biased exponent e; 2^(141 − e) puts it in [2^14, 2^15). e >= 15 keeps both powers normal
                // floats (a group below 2^−112 loses its smallest bits, nothing else).
                const int e = max((int)(mx >> 7), 15);
                const float mul = __uint_as_float((uint32_t)(268 - e) << 23);
                const float scale = mx >= 0x7f80u ? __uint_as_float(0x7fc00000u) : __uint_as_float((uint32_t)(e - 14) << 23);
                // f = bits of x·mul + 1.5·2^23 = 0x4B400000 + round(x·mul): byte 0 is X's low byte, byte 1 its high.
                const uint32_t f0 = __float_as_uint(fmaf(__uint_as_float(near[i] << 16), mul, 12582912.0f));
                const uint32_t f1 = __float_as_uint(fmaf(__uint_as_float(near[i] & 0xffff0000u), mul, 12582912.0f));
                const uint32_t f2 = __float_as_uint(fmaf(__uint_as_float(far[i] << 16), mul, 12582912.0f));
                const uint32_t f3 = __float_as_uint(fmaf(__uint_as_float(far[i] & 0xffff0000u), mul, 12582912.0f));
                const uint32_t u = __byte_perm(f0, f1, 0x5140), v = __byte_perm(f2, f3, 0x5140);
                uint32_t *chunk = xq + ((size_t)token * (k / 8) + grp * 16 + c) * 4;
                chunk[j] = __byte_perm(u, v, 0x7362);      // high bytes of elements 2j, 2j + 4, 2j + 1, 2j + 5
                chunk[2 + j] = __byte_perm(u, v, 0x5140);  // low bytes
                int sum = 0;
                if constexpr (HasZeros) sum = (int)__reduce_add_sync(0xffffffffu, f0 + f1 + f2 + f3 - 4u * 0x4B400000u);
                if (lane == 0) xs[token * groups + grp] = make_float2(scale, __int_as_float(sum));
            }
        }
    __syncwarp();
}

// One group of one 16-row tile on the integer path: acc (rows g / g + 8 × tokens 2t / 2t + 1, as mma's C) += the
// group's sums times the scales sa / sb. xq / xs: what imma_stage_x wrote; za / zb: the rows' zero codes (HasZeros).
// Tokens past m read token m − 1 (those columns are never stored).
template <bool HasZeros>
__device__ __forceinline__ void imma_group(float (&acc)[4], const uint4 &wa, const uint4 &wb, float sa, float sb,
                                           int za, int zb, const uint4 *xq, const float2 *xs, int grp, int m, int k,
                                           int g, int t) {
    const int groups = k / kGroup;
    const uint4 *xq_lane = xq + (size_t)min(g, m - 1) * (k / 8) + grp * 16 + t * 4;  // chunks 4t + w of token g
    const float2 xs0 = xs[min(2 * t, m - 1) * groups + grp], xs1 = xs[min(2 * t + 1, m - 1) * groups + grp];
    int hi[4] = {0, 0, 0, 0}, lo[4] = {0, 0, 0, 0};
    const uint32_t qa[4] = {wa.x, wa.y, wa.z, wa.w}, qb[4] = {wb.x, wb.y, wb.z, wb.w};
#pragma unroll
    for (int w = 0; w < 4; ++w) {  // word w of this thread: the group's chunk 4t + w
        const uint4 xv = xq_lane[w];
        if constexpr (HasZeros) {
            const uint32_t a0 = sa_w4a16::codes_u8(qa[w], false), a2 = sa_w4a16::codes_u8(qa[w], true);
            const uint32_t a1 = sa_w4a16::codes_u8(qb[w], false), a3 = sa_w4a16::codes_u8(qb[w], true);
            sa_w4a16::imma_16832<false, true>(hi, a0, a1, a2, a3, xv.x, xv.y);
            sa_w4a16::imma_16832<false, false>(lo, a0, a1, a2, a3, xv.z, xv.w);
        } else {
            const uint32_t a0 = sa_w4a16::codes_s8x16(qa[w], false), a2 = sa_w4a16::codes_s8x16(qa[w], true);
            const uint32_t a1 = sa_w4a16::codes_s8x16(qb[w], false), a3 = sa_w4a16::codes_s8x16(qb[w], true);
            sa_w4a16::imma_16832<true, true>(hi, a0, a1, a2, a3, xv.x, xv.y);
            sa_w4a16::imma_16832<true, false>(lo, a0, a1, a2, a3, xv.z, xv.w);
        }
    }
    if constexpr (HasZeros) {  // Σ (c − z)·X = Σ c·X − z·Σ X
        const int s0 = __float_as_int(xs0.y), s1 = __float_as_int(xs1.y);
        acc[0] += (float)(hi[0] * 256 + lo[0] - za * s0) * (sa * xs0.x);
        acc[1] += (float)(hi[1] * 256 + lo[1] - za * s1) * (sa * xs1.x);
        acc[2] += (float)(hi[2] * 256 + lo[2] - zb * s0) * (sb * xs0.x);
        acc[3] += (float)(hi[3] * 256 + lo[3] - zb * s1) * (sb * xs1.x);
    } else {  // the codes were 16·(c − 8)
        sa *= 0.0625f, sb *= 0.0625f;
        acc[0] += (float)(hi[0] * 256 + lo[0]) * (sa * xs0.x);
        acc[1] += (float)(hi[1] * 256 + lo[1]) * (sa * xs1.x);
        acc[2] += (float)(hi[2] * 256 + lo[2]) * (sb * xs0.x);
        acc[3] += (float)(hi[3] * 256 + lo[3]) * (sb * xs1.x);
    }
}

// Programmatic dependent launch (kernels/cuda_common.cuh): the weights never depend on the previous kernel, so a
// block issues its first batch (codes, scales, zeros) and, in the first wave, an L2 prefetch of the rest of its
// rows (up to prefetch_bytes per block) before pdl_wait(); x is read and y written only after it. Keep the prefetch
// branch between the first batch and the wait: with nothing there ptxas hoists the wait above the loads (NOTES.md).
// x and y are not __restrict__ and x is read with plain loads: x was written by the previous kernel, so it must not
// go through the non-coherent path.
// Warps: 8, or 6 for multi-wave K = 3072-class launches at M <= 8 (skinny_warps below).
// Imma: the integer path above (Tiles == 1; dynamic shared memory imma_smem_bytes(m, k)).
template <int Tiles, bool Fp16Scales, bool HasZeros, int Warps, int Unroll = kUnroll, bool Imma = false>
__global__ void __launch_bounds__(Warps * 32, Warps == 8 ? SA_W4A16_MIN_BLOCKS : SA_W4A16_SIX_WARP_BLOCKS)
    w4a16_skinny(const uint16_t *x, const uint32_t *__restrict__ qweight, const uint16_t *__restrict__ scales,
                 const uint8_t *__restrict__ zeros, uint16_t *y, int m, int n, int k, int prefetch_blocks,
                 int prefetch_bytes, int epi, sa_norm_fold fold) {
    const bool late = sa_epilogue::trigger_after_wait(epi, n, k);  // o: after the wait (linear_epilogue.cuh)
    pdl_launch_dependents(!late);
    __shared__ float partial[Warps * 16 * 16];  // [warp][row][token]
    __shared__ float fold_inv[SA_EPILOGUE_MAX_M];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, r = lane / 4, t = lane % 4;
    const int tile = blockIdx.x, groups = k / kGroup, kw = k / 8;
    // Tile rows r and r + 8 (linear_epilogue.cuh: consecutive W rows, or a SwiGLU tile's gate and up rows); rows
    // past n read row n - 1 (valid memory) and are never stored.
    const int row_a = sa_epilogue::row_ok(tile, r, n, epi) ? sa_epilogue::tile_row(tile, r, n, epi) : n - 1;
    const int row_b = sa_epilogue::row_ok(tile, r + 8, n, epi) ? sa_epilogue::tile_row(tile, r + 8, n, epi) : n - 1;
    const uint32_t *qa = qweight + (size_t)row_a * kw + t * 4;
    const uint32_t *qb = qweight + (size_t)row_b * kw + t * 4;
    constexpr int kStride = Warps * Unroll;  // groups the block covers per batch

    auto load = [&](Batch<Unroll> &b, int base) {  // codes, scales and zeros in one round trip
        b.template load<HasZeros>(qa, qb, scales, zeros, row_a, row_b, groups, base, Warps);
    };

    float acc[Tiles][4];
#pragma unroll
    for (int tt = 0; tt < Tiles; ++tt) acc[tt][0] = acc[tt][1] = acc[tt][2] = acc[tt][3] = 0.0f;

    Batch<Unroll> b;
    load(b, warp);
    if ((int)blockIdx.x < prefetch_blocks && (int)threadIdx.x < 16) {  // thread i: the rest of tile row i, into L2
        const int row = sa_epilogue::tile_row(tile, threadIdx.x, n, epi), row_bytes = k / 2, first = kStride * kGroup / 2;
        if (sa_epilogue::row_ok(tile, threadIdx.x, n, epi) && first < row_bytes) {
            const int bytes = min(row_bytes - first, prefetch_bytes / 16) & ~15;
            if (bytes > 0)
                prefetch_l2(reinterpret_cast<const uint8_t *>(qweight) + (size_t)row * row_bytes + first, (uint32_t)bytes);
        }
    }
    pdl_wait();
    if (late) pdl_trigger();
    sa_epilogue::fold_prefetch(fold, m, k);
    static_assert(!Imma || Tiles == 1, "the integer path takes one 8-token tile");
    extern __shared__ __align__(16) uint4 imma_x[];  // Imma: staged x, then {2^-s, sum} per (token, group)
    float2 *imma_xs = reinterpret_cast<float2 *>(imma_x + (size_t)m * (k / 8));
    if constexpr (Imma) imma_stage_x<Warps, HasZeros>(x, m, k, warp, lane, reinterpret_cast<uint32_t *>(imma_x), imma_xs);

    for (int base = warp; base < groups; base += kStride) {
#pragma unroll
        for (int u = 0; u < Unroll; ++u) {
            const int grp = base + u * Warps;
            if (grp >= groups) break;
            const float sa = scale_to_f32<Fp16Scales>(b.sa[u]), sb = scale_to_f32<Fp16Scales>(b.sb[u]);
            if constexpr (Imma) {
                imma_group<HasZeros>(acc[0], b.wa[u], b.wb[u], sa, sb, b.za[u], b.zb[u], imma_x, imma_xs, grp, m, k, r, t);
                continue;
            }
            const uint32_t za = neg_magic(b.za[u]), zb = neg_magic(b.zb[u]);
            float part[Tiles][4];
#pragma unroll
            for (int tt = 0; tt < Tiles; ++tt) part[tt][0] = part[tt][1] = part[tt][2] = part[tt][3] = 0.0f;
            const uint32_t qwa[4] = {b.wa[u].x, b.wa[u].y, b.wa[u].z, b.wa[u].w};
            const uint32_t qwb[4] = {b.wb[u].x, b.wb[u].y, b.wb[u].z, b.wb[u].w};
#pragma unroll
            for (int w = 0; w < 4; ++w) {
                // This thread's word w covers k = grp·128 + (4t + w)·8 + 0..7 for rows r and r + 8.
                const int kx = grp * kGroup + (t * 4 + w) * 8;
                uint4 xv[Tiles];
#pragma unroll
                for (int tt = 0; tt < Tiles; ++tt) {
                    const int token = tt * 8 + r;
                    xv[tt] = token < m ? *reinterpret_cast<const uint4 *>(x + (size_t)token * k + kx)
                                       : make_uint4(0, 0, 0, 0);
                }
                mma_code_word<Tiles>(part, qwa[w], qwb[w], za, zb, xv);
            }
#pragma unroll
            for (int tt = 0; tt < Tiles; ++tt) {  // c0,c1: row r, tokens 2t, 2t+1; c2,c3: row r + 8
                acc[tt][0] += part[tt][0] * sa;
                acc[tt][1] += part[tt][1] * sa;
                acc[tt][2] += part[tt][2] * sb;
                acc[tt][3] += part[tt][3] * sb;
            }
        }
        load(b, base + kStride);  // the next batch (nothing past the last group)
    }
    sa_epilogue::write_partials<Tiles>(partial + warp * 256, acc, r, t);
    if (sa_epilogue::folds_in(fold)) sa_epilogue::fold_inverse(fold, m, k, fold_inv);
    __syncthreads();
    if (threadIdx.x < 128)
        sa_epilogue::reduce_store<Warps>(partial, 256, threadIdx.x, y, epi, n, m, Tiles * 8, tile, fold, fold_inv);
}

// Warps per skinny block. A warp's batch is kUnroll = 4 groups, so for K = 17..24 groups (Step1's hidden 3072)
// 8 warps leave a quarter of each batch's registers empty; 6 warps fill their batches and, at <= 113 registers,
// fit 3 blocks per SM: 1.5x the bytes in flight per SM. That pays only when the row tiles fill more than one wave
// of 8-warp blocks (2 per SM: gate_up 12.83 vs 13.34 µs, lm_head 43.1 vs 49.6); a single wave (qkv, o) gets
// slower (4.08 vs 3.83 µs: the same bytes per block, fewer threads to issue them). Only for one 8-token tile
// (Tiles = 1): two tiles need the registers. kernels/NOTES_QUANT.md, session 4.
int skinny_warps(int tiles, int groups, int row_tiles) {
    const bool multi_wave = row_tiles > 2 * sa_cuda::device_traits().sms;
    return SA_W4A16_SIX_WARPS && tiles == 1 && groups > 16 && groups <= 6 * kUnroll && multi_wave ? 6 : 8;
}

// ==== v8: w4a16_stream, persistent v5 blocks that request their next tile before reducing this one ====
// Why: in the decode step gate_up (1024 tiles, ~2.6 waves of v5 blocks) took 16.6 µs against 12.8 alone and 8.7 at
// copy speed; its later waves started ~10 µs after its release (the step's timeline, NOTES.md), each new block paying
// its launch and a load round trip. Here the grid is one wave (3 blocks of 6 warps per SM) and each block walks its
// tiles tile, tile + grid, ...: it reads a tile as v5 does (all warps together request the whole 16-row tile in one
// batch: DRAM-friendly), multiplies it, requests its next tile into the same registers and only then reduces across
// warps and stores. The first tile is requested before pdl_wait, plus an L2 prefetch of the second. One batch per
// tile: K <= 6 · 4 groups. Measured (kernels/NOTES_QUANT.md, session 5): the W4A16 step 1.444 → 1.397 ms; gate_up
// alone unchanged (12.8 µs). Not kept: two tiles in flight per block (2 blocks per SM: step 1.467), 4 or 2 blocks
// per SM (1.450, 1.527), and a first form where one warp owned a whole tile and streamed it in 4-group pieces
// (41–48% of copy alone; likely because a tile's DRAM pages were then visited once per piece).
#ifndef SA_W4A16_STREAM  // 0 turns the streaming kernel off (the A/B knob)
#define SA_W4A16_STREAM 1
#endif
#ifndef SA_W4A16_STREAM_SLOTS  // tiles in flight per block
#define SA_W4A16_STREAM_SLOTS 1
#endif
#ifndef SA_W4A16_STREAM_BLOCKS  // blocks per SM: the register budget and the persistent grid
#define SA_W4A16_STREAM_BLOCKS 3
#endif
constexpr int kStreamWarps = 6, kStreamSlots = SA_W4A16_STREAM_SLOTS;

template <bool Fp16Scales, bool HasZeros, bool Imma = false>
__global__ void __launch_bounds__(kStreamWarps * 32, SA_W4A16_STREAM_BLOCKS)
    w4a16_stream(const uint16_t *x, const uint32_t *__restrict__ qweight, const uint16_t *__restrict__ scales,
                 const uint8_t *__restrict__ zeros, uint16_t *y, int m, int n, int k, int prefetch_bytes, int epi,
                 sa_norm_fold fold) {
    pdl_launch_dependents();
    // Refill: the next tile goes out group by group as soon as each group of this one is multiplied (its registers
    // are then free); otherwise all at once after the multiply. Measured (NOTES_QUANT.md): on the bf16 path it pays
    // with zero codes only (session 7: AWQ-style step 1.337 -> 1.300–1.305 ms, symmetric 1.204 -> 1.260); on the
    // integer path it pays for symmetric weights too (session 9: gate_up 10.41 -> 9.63 µs, step 1.118 -> 1.108).
    constexpr bool kRefill = HasZeros || Imma;
    __shared__ float partial[kStreamWarps * 16 * 16];  // [warp][row][token]
    __shared__ float fold_inv[SA_EPILOGUE_MAX_M];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, r = lane / 4, t = lane % 4;
    const int groups = k / kGroup, kw = k / 8, tiles = (n + 15) / 16;
    const int my_tiles = (int)blockIdx.x < tiles ? (tiles - 1 - (int)blockIdx.x) / (int)gridDim.x + 1 : 0;
    auto tile_of = [&](int j) { return (int)blockIdx.x + j * (int)gridDim.x; };
    struct TileRows {  // this thread's rows r and r + 8 of a tile, and its code pointers into them
        int row_a, row_b;
        const uint32_t *qa, *qb;
    };
    auto rows_of = [&](int j) {
        const int tile = tile_of(j);
        TileRows tr;
        tr.row_a = sa_epilogue::row_ok(tile, r, n, epi) ? sa_epilogue::tile_row(tile, r, n, epi) : n - 1;
        tr.row_b = sa_epilogue::row_ok(tile, r + 8, n, epi) ? sa_epilogue::tile_row(tile, r + 8, n, epi) : n - 1;
        tr.qa = qweight + (size_t)tr.row_a * kw + t * 4;
        tr.qb = qweight + (size_t)tr.row_b * kw + t * 4;
        return tr;
    };
    auto load = [&](Batch<kUnroll> &b, int j) {  // the block's j-th tile: codes, scales and zeros, one round trip
        if (j >= my_tiles) return;
        const TileRows tr = rows_of(j);
        b.template load<HasZeros>(tr.qa, tr.qb, scales, zeros, tr.row_a, tr.row_b, groups, warp, kStreamWarps);
    };

    Batch<kUnroll> slot[kStreamSlots];
#pragma unroll
    for (int s = 0; s < kStreamSlots; ++s) load(slot[s], s);
    if (kStreamSlots < my_tiles && (int)threadIdx.x < 16) {  // thread i: row i of the next tile, into L2 (keeps the wait below)
        const int tile = tile_of(kStreamSlots), row_bytes = k / 2;
        const int bytes = min(row_bytes, prefetch_bytes / 16) & ~15;
        if (sa_epilogue::row_ok(tile, threadIdx.x, n, epi) && bytes > 0)
            prefetch_l2(reinterpret_cast<const uint8_t *>(qweight) +
                            (size_t)sa_epilogue::tile_row(tile, threadIdx.x, n, epi) * row_bytes, (uint32_t)bytes);
    }
    pdl_wait();
    sa_epilogue::fold_prefetch(fold, m, k);
    if (sa_epilogue::folds_in(fold)) sa_epilogue::fold_inverse(fold, m, k, fold_inv);  // read after the first barrier
    extern __shared__ __align__(16) uint4 imma_x[];  // Imma: staged x (a warp's groups are the same in every tile)
    float2 *imma_xs = reinterpret_cast<float2 *>(imma_x + (size_t)m * (k / 8));
    if constexpr (Imma) imma_stage_x<kStreamWarps, HasZeros>(x, m, k, warp, lane, reinterpret_cast<uint32_t *>(imma_x), imma_xs);

    for (int j0 = 0; j0 < my_tiles; j0 += kStreamSlots) {
#pragma unroll
        for (int s = 0; s < kStreamSlots; ++s) {  // tile j0 + s sits in slot s (static register indices)
            const int j = j0 + s;
            if (j >= my_tiles) break;  // block-uniform
            float acc[1][4] = {{0.0f, 0.0f, 0.0f, 0.0f}};
            Batch<kUnroll> &b = slot[s];
            const bool refill = kRefill && j + kStreamSlots < my_tiles;  // block-uniform
            const TileRows next = rows_of(refill ? j + kStreamSlots : j);
#pragma unroll
            for (int u = 0; u < kUnroll; ++u) {  // v5's multiply, one 8-token tile
                const int grp = warp + u * kStreamWarps;
                if (grp >= groups) break;
                const float sa = scale_to_f32<Fp16Scales>(b.sa[u]), sb = scale_to_f32<Fp16Scales>(b.sb[u]);
                if constexpr (Imma) {
                    imma_group<HasZeros>(acc[0], b.wa[u], b.wb[u], sa, sb, b.za[u], b.zb[u], imma_x, imma_xs, grp, m,
                                         k, r, t);
                } else {
                    const uint32_t za = neg_magic(b.za[u]), zb = neg_magic(b.zb[u]);
                    float part[1][4] = {{0.0f, 0.0f, 0.0f, 0.0f}};
                    const uint32_t qwa[4] = {b.wa[u].x, b.wa[u].y, b.wa[u].z, b.wa[u].w};
                    const uint32_t qwb[4] = {b.wb[u].x, b.wb[u].y, b.wb[u].z, b.wb[u].w};
#pragma unroll
                    for (int w = 0; w < 4; ++w) {
                        const int kx = grp * kGroup + (t * 4 + w) * 8;
                        const uint4 xv[1] = {r < m ? *reinterpret_cast<const uint4 *>(x + (size_t)r * k + kx)
                                                   : make_uint4(0, 0, 0, 0)};
                        mma_code_word<1>(part, qwa[w], qwb[w], za, zb, xv);
                    }
                    acc[0][0] += part[0][0] * sa;
                    acc[0][1] += part[0][1] * sa;
                    acc[0][2] += part[0][2] * sb;
                    acc[0][3] += part[0][3] * sb;
                }
                if (refill)  // this group's registers are free: the slot's next tile's group u goes out now
                    b.template load_one<HasZeros>(u, next.qa, next.qb, scales, zeros, next.row_a, next.row_b, groups, grp);
            }
            if (!kRefill) load(slot[s], j + kStreamSlots);  // the slot's next tile goes out before this one's reduction
            sa_epilogue::write_partials<1>(partial + warp * 256, acc, r, t);
            __syncthreads();
            if (threadIdx.x < 128)
                sa_epilogue::reduce_store<kStreamWarps>(partial, 256, threadIdx.x, y, epi, n, m, 8, tile_of(j), fold,
                                                        fold_inv);
            __syncthreads();  // partial is rewritten by the next tile
        }
    }
}

// The streaming kernel takes launches of one 8-token tile with K <= 3072 whose tiles fill more than one wave of v5
// blocks (2 per SM) and at most 4 per persistent block — Step1's gate_up (2.6 per block). The 4-bit lm_head (11.8 per
// block) stays on v5's waves: alone 43.8 vs 45.5 µs. false: the caller launches v5.
bool stream_fits(int m, int n, int k) {
    const int tiles = (n + 15) / 16, sms = sa_cuda::device_traits().sms;
    return SA_W4A16_STREAM && m <= 8 && k / kGroup <= kStreamWarps * kUnroll && tiles > 2 * sms &&
           tiles <= 4 * SA_W4A16_STREAM_BLOCKS * sms;
}
template <bool Fp16Scales>
sa_status launch_stream(bool has_zeros, cudaStream_t s, const uint16_t *x, const uint32_t *q, const uint16_t *sc,
                        const uint8_t *z, uint16_t *y, int m, int n, int k, int epi, const sa_norm_fold &fold) {
    const sa_cuda::DeviceTraits &dev = sa_cuda::device_traits();
    const dim3 grid((unsigned)std::min((n + 15) / 16, SA_W4A16_STREAM_BLOCKS * dev.sms));
    const bool imma = imma_fits(m, k, true);
    auto kernel = imma ? (has_zeros ? &w4a16_stream<Fp16Scales, true, true> : &w4a16_stream<Fp16Scales, false, true>)
                       : (has_zeros ? &w4a16_stream<Fp16Scales, true> : &w4a16_stream<Fp16Scales, false>);
    return sa_cuda::launch_pdl_if(dev.quant_pdl, "w4a16_stream", kernel, grid, dim3(kStreamWarps * 32),
                                  imma ? imma_smem_bytes(m, k) : 0, s, x, q, sc, z, y, m, n, k, dev.gemv_prefetch_bytes,
                                  epi, fold);
}

template <int Tiles, bool Fp16Scales>
sa_status launch_skinny(bool has_zeros, dim3 grid, cudaStream_t s, const uint16_t *x, const uint32_t *q,
                        const uint16_t *sc, const uint8_t *z, uint16_t *y, int m, int n, int k, int epi,
                        const sa_norm_fold &fold) {
    const sa_cuda::DeviceTraits &dev = sa_cuda::device_traits();
    const int warps = skinny_warps(Tiles, k / kGroup, (int)grid.x);
    // Blocks of the first wave (two or three per SM) may start early under PDL; only they prefetch into L2.
    const int prefetch_blocks =
        dev.quant_pdl && dev.gemv_prefetch_bytes > 0 ? (warps == 8 ? 2 : SA_W4A16_SIX_WARP_BLOCKS) * dev.sms : 0;
    if (Tiles == 1 && stream_fits(m, n, k))
        return launch_stream<Fp16Scales>(has_zeros, s, x, q, sc, z, y, m, n, k, epi, fold);
    const bool imma = Tiles == 1 && imma_fits(m, k, false);
    auto launch = [&](auto kernel, int warps_per_block) {
        return sa_cuda::launch_pdl_if(dev.quant_pdl, "w4a16_skinny", kernel, grid, dim3(warps_per_block * 32),
                                      imma ? imma_smem_bytes(m, k) : 0, s, x, q, sc, z, y, m, n, k, prefetch_blocks,
                                      dev.gemv_prefetch_bytes, epi, fold);
    };
    if constexpr (Tiles == 1) {
        if constexpr (SA_W4A16_IMMA == 1) if (imma) {  // the integer path: the same block shapes as below
            if (warps == 6)
                return has_zeros ? launch(&w4a16_skinny<1, Fp16Scales, true, 6, kUnroll, true>, 6)
                                 : launch(&w4a16_skinny<1, Fp16Scales, false, 6, kUnroll, true>, 6);
            if (SA_W4A16_DEEP_BATCH && !has_zeros && k / kGroup >= 8 * 2 * kUnroll)
                return launch(&w4a16_skinny<1, Fp16Scales, false, 8, 8, true>, 8);
            return has_zeros ? launch(&w4a16_skinny<1, Fp16Scales, true, 8, kUnroll, true>, 8)
                             : launch(&w4a16_skinny<1, Fp16Scales, false, 8, kUnroll, true>, 8);
        }
        if (warps == 6)
            return has_zeros ? launch(&w4a16_skinny<1, Fp16Scales, true, 6>, 6)
                             : launch(&w4a16_skinny<1, Fp16Scales, false, 6>, 6);
        // K >= 64 groups (Step1's down: K = 8192): 8-group batches, so a warp's 8 groups of a K = 8192 row pair are
        // requested at once instead of in two dependent batches (127 registers, still 2 blocks per SM; with zero
        // codes it needs 155 and would fit only one, so AWQ-style weights keep 4-group batches). Measured: down
        // 7.95 → 7.46 µs, the W4A16 step −10 µs (kernels/NOTES_QUANT.md, session 4).
        if (SA_W4A16_DEEP_BATCH && !has_zeros && k / kGroup >= 8 * 2 * kUnroll)
            return launch(&w4a16_skinny<1, Fp16Scales, false, 8, 8>, 8);
    }
    return has_zeros ? launch(&w4a16_skinny<Tiles, Fp16Scales, true, 8>, 8)
                     : launch(&w4a16_skinny<Tiles, Fp16Scales, false, 8>, 8);
}

// ==== v6: w4a16_wide, the ring kernel ====
constexpr int kStageChunk = 8;  // scale (and zero) elements per thread per round trip when staging them

__host__ __device__ constexpr int stages_for(int) { return SA_W4A16_WIDE_STAGES; }
// Blocks per SM ptxas must fit (register budget), fewer as the accumulators and x fragments grow with tokens × row
// tiles: 4 (64 registers), 3 (80), 2 (128).
__host__ __device__ constexpr int min_blocks_for(int tiles, int row_tiles) {
    return tiles * row_tiles <= 1 ? 4 : tiles * row_tiles <= 2 ? 3 : 2;
}
// Dynamic shared memory: the code ring [stage][row tile][row r | r + 8][thread] (16 B each), then the staged scales
// [group][row] (uint16) and zero codes [group][row] (uint8). The final reduction reuses the ring.
__host__ __device__ constexpr size_t ring_bytes(int row_tiles) {
    return (size_t)stages_for(row_tiles) * row_tiles * 2 * kThreads * 16;
}
__host__ __device__ constexpr size_t smem_bytes(int row_tiles, int groups, bool has_zeros) {
    return ring_bytes(row_tiles) + (size_t)groups * 16 * row_tiles * (has_zeros ? 3 : 2);
}


// The ring kernel. PDL as above: the first Stages groups of codes and the first round of scales are requested
// before pdl_wait(), with the prefetch branch between them and the wait.
template <int Tiles, int RowTiles, bool Fp16Scales, bool HasZeros>
__global__ void __launch_bounds__(kThreads, min_blocks_for(Tiles, RowTiles))
    w4a16_wide(const uint16_t *x, const uint32_t *__restrict__ qweight, const uint16_t *__restrict__ scales,
               const uint8_t *__restrict__ zeros, uint16_t *y, int m, int n, int k, int prefetch_blocks,
               int prefetch_bytes, int epi, sa_norm_fold fold) {
    constexpr int kStages = stages_for(RowTiles);
    constexpr int kRows = 16 * RowTiles;  // output rows of the block
    pdl_launch_dependents();
    extern __shared__ __align__(16) uint4 smem[];
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, r = lane / 4, t = lane % 4;
    const int groups = k / kGroup, kw = k / 8;
    const int my_groups = (groups - warp + kWarps - 1) / kWarps;  // groups warp, warp + 8, ... below `groups`
    uint4 *ring = smem;
    uint16_t *sc = reinterpret_cast<uint16_t *>(smem + kStages * RowTiles * 2 * kThreads);  // [group][row]
    uint8_t *zc = reinterpret_cast<uint8_t *>(sc + groups * kRows);                          // [group][row]

    // Ring slot `slot` <- this thread's chunks of group `grp`: 16 B of rows r and r + 8 of every row tile.
    auto request = [&](int slot, int grp) {
#pragma unroll
        for (int rt = 0; rt < RowTiles; ++rt)
#pragma unroll
            for (int half = 0; half < 2; ++half) {
                const int tile = blockIdx.x * RowTiles + rt, tr = half * 8 + r;  // rows past n copy row n - 1
                const int row = sa_epilogue::row_ok(tile, tr, n, epi) ? sa_epilogue::tile_row(tile, tr, n, epi) : n - 1;
                cp_async16(smem_u32(ring + ((slot * RowTiles + rt) * 2 + half) * kThreads + tid),
                           qweight + (size_t)row * kw + grp * (kGroup / 8) + t * 4);
            }
    };
#pragma unroll
    for (int s = 0; s < kStages; ++s) {  // one commit group per slot, empty ones included: the waits count them
        if (s < my_groups) request(s, warp + s * kWarps);
        cp_async_commit();
    }

    // Scales (and zero codes) of the block's rows into [group][row]: element i is row i % kRows of group i / kRows,
    // kStageChunk per thread per round trip; the first round is requested before the wait.
    const int staged = kRows * groups;
    uint16_t s_val[kStageChunk];
    uint8_t z_val[kStageChunk];
    auto stage_load = [&](int round) {
#pragma unroll
        for (int e = 0; e < kStageChunk; ++e) {
            const int i = (round * kStageChunk + e) * kThreads + tid;
            if (i < staged) {
                const int tile = blockIdx.x * RowTiles + i % kRows / 16, tr = i % 16;  // rows past n: row n - 1
                const int row = sa_epilogue::row_ok(tile, tr, n, epi) ? sa_epilogue::tile_row(tile, tr, n, epi) : n - 1;
                const size_t f = (size_t)row * groups + i / kRows;
                s_val[e] = __ldg(scales + f);
                if constexpr (HasZeros) z_val[e] = __ldg(zeros + f);
            }
        }
    };
    auto stage_store = [&](int round) {
#pragma unroll
        for (int e = 0; e < kStageChunk; ++e) {
            const int i = (round * kStageChunk + e) * kThreads + tid;
            if (i < staged) {
                sc[i] = s_val[e];
                if constexpr (HasZeros) zc[i] = z_val[e];
            }
        }
    };
    stage_load(0);
    if ((int)blockIdx.x < prefetch_blocks && tid < kRows) {  // thread i: the rest of block row i, into L2
        const int tile = blockIdx.x * RowTiles + tid / 16, tr = tid % 16;
        const int row = sa_epilogue::tile_row(tile, tr, n, epi), row_bytes = k / 2, first = kStages * kWarps * kGroup / 2;
        if (sa_epilogue::row_ok(tile, tr, n, epi) && first < row_bytes) {
            const int bytes = min(row_bytes - first, prefetch_bytes / kRows) & ~15;
            if (bytes > 0)
                prefetch_l2(reinterpret_cast<const uint8_t *>(qweight) + (size_t)row * row_bytes + first, (uint32_t)bytes);
        }
    }
    pdl_wait();
    sa_epilogue::fold_prefetch(fold, m, k);
    stage_store(0);
    for (int round = 1; round * kStageChunk * kThreads < staged; ++round) {
        stage_load(round);
        stage_store(round);
    }
    __syncthreads();

    float acc[RowTiles][Tiles][4];
#pragma unroll
    for (int rt = 0; rt < RowTiles; ++rt)
#pragma unroll
        for (int tt = 0; tt < Tiles; ++tt) acc[rt][tt][0] = acc[rt][tt][1] = acc[rt][tt][2] = acc[rt][tt][3] = 0.0f;

    for (int j0 = 0; j0 < my_groups; j0 += kStages) {
#pragma unroll
        for (int s = 0; s < kStages; ++s) {  // slot s holds this warp's group j0 + s
            const int j = j0 + s;
            if (j >= my_groups) break;
            const int grp = warp + j * kWarps;
            cp_async_wait<kStages - 1>();  // commit groups 0..j have landed (kStages + j were committed)
            // x of this group, one fragment for every row tile: thread word w covers k = grp·128 + (4t + w)·8 + 0..7
            // of token tt·8 + r. (Requested before the wait instead, it measured slower: 212 B of spills.)
            uint4 xv[4][Tiles];
#pragma unroll
            for (int w = 0; w < 4; ++w)
#pragma unroll
                for (int tt = 0; tt < Tiles; ++tt) {
                    const int token = tt * 8 + r;
                    xv[w][tt] = token < m ? *reinterpret_cast<const uint4 *>(x + (size_t)token * k + grp * kGroup +
                                                                             (t * 4 + w) * 8)
                                          : make_uint4(0, 0, 0, 0);
                }
#pragma unroll
            for (int rt = 0; rt < RowTiles; ++rt) {
                const uint4 ca = ring[((s * RowTiles + rt) * 2 + 0) * kThreads + tid];
                const uint4 cb = ring[((s * RowTiles + rt) * 2 + 1) * kThreads + tid];
                const int ra = grp * kRows + rt * 16 + r;  // staged scale / zero of row r (row r + 8 is ra + 8)
                const uint32_t za = neg_magic(HasZeros ? zc[ra] : 8), zb = neg_magic(HasZeros ? zc[ra + 8] : 8);
                const uint32_t qwa[4] = {ca.x, ca.y, ca.z, ca.w}, qwb[4] = {cb.x, cb.y, cb.z, cb.w};
                float part[Tiles][4];
#pragma unroll
                for (int tt = 0; tt < Tiles; ++tt) part[tt][0] = part[tt][1] = part[tt][2] = part[tt][3] = 0.0f;
#pragma unroll
                for (int w = 0; w < 4; ++w) mma_code_word<Tiles>(part, qwa[w], qwb[w], za, zb, xv[w]);
                const float sa = scale_to_f32<Fp16Scales>(sc[ra]), sb = scale_to_f32<Fp16Scales>(sc[ra + 8]);
#pragma unroll
                for (int tt = 0; tt < Tiles; ++tt) {  // c0,c1: row r, tokens 2t, 2t+1; c2,c3: row r + 8
                    acc[rt][tt][0] += part[tt][0] * sa;
                    acc[rt][tt][1] += part[tt][1] * sa;
                    acc[rt][tt][2] += part[tt][2] * sb;
                    acc[rt][tt][3] += part[tt][3] * sb;
                }
            }
            if (j + kStages < my_groups) request(s, grp + kStages * kWarps);  // refill the slot just multiplied
            cp_async_commit();
        }
    }

    cp_async_wait<0>();
    __syncthreads();  // every warp is done with the ring: it now holds the partial sums [warp][row][token]
    float *partial = reinterpret_cast<float *>(smem);  // [warp][block row][token]
#pragma unroll
    for (int rt = 0; rt < RowTiles; ++rt) sa_epilogue::write_partials<Tiles>(partial + (warp * kRows + rt * 16) * 16, acc[rt], r, t);
    float *fold_inv = partial + kWarps * kRows * 16;  // the ring holds twice the partial sums: room after them
    static_assert(ring_bytes(RowTiles) / 4 >= kWarps * kRows * 16 + SA_EPILOGUE_MAX_M, "fold_inv must fit the ring");
    if (sa_epilogue::folds_in(fold)) sa_epilogue::fold_inverse(fold, m, k, fold_inv);
    __syncthreads();
    for (int i = tid; i < RowTiles * 128; i += kThreads)  // row tile i / 128
        sa_epilogue::reduce_store<kWarps>(partial + i / 128 * 256, kRows * 16, i % 128, y, epi, n, m, Tiles * 8,
                                          blockIdx.x * RowTiles + i / 128, fold, fold_inv);
}

template <int Tiles, int RowTiles, bool Fp16Scales, bool HasZeros>
sa_status launch_wide(cudaStream_t s, const uint16_t *x, const uint32_t *q, const uint16_t *sc, const uint8_t *z,
                      uint16_t *y, int m, int n, int k, int epi, const sa_norm_fold &fold) {
    const sa_cuda::DeviceTraits &dev = sa_cuda::device_traits();
    // Blocks of the first wave may start early under PDL; only they prefetch into L2.
    const int prefetch_blocks =
        dev.quant_pdl && dev.gemv_prefetch_bytes > 0 ? min_blocks_for(Tiles, RowTiles) * dev.sms : 0;
    const dim3 grid((unsigned)((n + 16 * RowTiles - 1) / (16 * RowTiles)));
    return sa_cuda::launch_pdl_if(dev.quant_pdl, "w4a16_wide", &w4a16_wide<Tiles, RowTiles, Fp16Scales, HasZeros>,
                                  grid, dim3(kThreads), smem_bytes(RowTiles, k / kGroup, HasZeros), s,
                                  x, q, sc, z, y, m, n, k, prefetch_blocks, dev.gemv_prefetch_bytes, epi, fold);
}

template <int Tiles, int RowTiles>
sa_status launch_wide_scales(bool fp16, bool has_zeros, cudaStream_t s, const uint16_t *x, const uint32_t *q,
                             const uint16_t *sc, const uint8_t *z, uint16_t *y, int m, int n, int k, int epi,
                             const sa_norm_fold &fold) {
    if (fp16)
        return has_zeros ? launch_wide<Tiles, RowTiles, true, true>(s, x, q, sc, z, y, m, n, k, epi, fold)
                         : launch_wide<Tiles, RowTiles, true, false>(s, x, q, sc, z, y, m, n, k, epi, fold);
    return has_zeros ? launch_wide<Tiles, RowTiles, false, true>(s, x, q, sc, z, y, m, n, k, epi, fold)
                     : launch_wide<Tiles, RowTiles, false, false>(s, x, q, sc, z, y, m, n, k, epi, fold);
}

template <int Tiles>
sa_status launch_wide_rows(int row_tiles, bool fp16, bool has_zeros, cudaStream_t s, const uint16_t *x,
                           const uint32_t *q, const uint16_t *sc, const uint8_t *z, uint16_t *y, int m, int n, int k,
                           int epi, const sa_norm_fold &fold) {
    if (row_tiles == 4) return launch_wide_scales<Tiles, 4>(fp16, has_zeros, s, x, q, sc, z, y, m, n, k, epi, fold);
    return launch_wide_scales<Tiles, 2>(fp16, has_zeros, s, x, q, sc, z, y, m, n, k, epi, fold);
}


// The ring kernels may use up to the device's opt-in shared memory (64-row blocks need more than the default
// 48 KB). Set once per process; the result is that limit, or -1 on error.
template <int Tiles, int RowTiles>
cudaError_t allow_smem_rows(int bytes) {
    cudaError_t e = cudaSuccess;
    auto set = [&](auto kernel) {  // the opt-in limit counts the kernel's static shared memory too
        cudaFuncAttributes attr{};
        if (e == cudaSuccess) e = cudaFuncGetAttributes(&attr, kernel);
        if (e == cudaSuccess)
            e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes - (int)attr.sharedSizeBytes);
    };
    set(&w4a16_wide<Tiles, RowTiles, false, false>);
    set(&w4a16_wide<Tiles, RowTiles, false, true>);
    set(&w4a16_wide<Tiles, RowTiles, true, false>);
    set(&w4a16_wide<Tiles, RowTiles, true, true>);
    return e;
}
int max_dynamic_smem() {
    static const int bytes = [] {
        int dev = 0, optin = 0;
        if (cudaGetDevice(&dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess) {
            (void)cudaGetLastError();
            return -1;
        }
        cudaError_t e = allow_smem_rows<1, 2>(optin);
        if (e == cudaSuccess) e = allow_smem_rows<1, 4>(optin);
        if (e == cudaSuccess) e = allow_smem_rows<2, 2>(optin);
        if (e == cudaSuccess) e = allow_smem_rows<2, 4>(optin);
        if (e != cudaSuccess) {
            (void)cudaGetLastError();
            return -1;
        }
        return optin;
    }();
    return bytes;
}

// Row tiles per block: 1 (the v5 kernel) below SA_W4A16_WIDE_MIN_M tokens — x is cheap there, and N / 16 blocks
// spread best — else the widest block that still gives every SM one, so one x fragment feeds 4 or 2 row tiles.
int row_tiles_for(int m, int n, int k, bool has_zeros, int smem_limit) {
    if (m < SA_W4A16_WIDE_MIN_M) return 1;
    const int sms = sa_cuda::device_traits().sms;
    for (int rt = SA_W4A16_MAX_ROW_TILES; rt > 1; rt /= 2)
        if ((n + 16 * rt - 1) / (16 * rt) >= sms && smem_bytes(rt, k / kGroup, has_zeros) <= (size_t)smem_limit)
            return rt;
    return 1;
}

}  // namespace

SA_API sa_status sa_cuda_linear_w4a16(const uint16_t *x, const uint32_t *qweight, const uint16_t *scales,
                                      const uint8_t *zeros, int32_t flags, uint16_t *y, int32_t m, int32_t n, int32_t k,
                                      int32_t epilogue, const sa_norm_fold *fold, void *stream) {
    if (!x || !qweight || !scales || !y || m < 0 || n <= 0 || k <= 0)
        return sa::fail(SA_E_INVALID_ARGUMENT, "sa_cuda_linear_w4a16: bad arguments");
    if (k % kGroup != 0)
        return sa::fail(SA_E_INVALID_ARGUMENT, "sa_cuda_linear_w4a16: K=" + std::to_string(k) +
                                                   " is not a multiple of the group size 128");
    if (!sa_cuda::aligned16(x) || !sa_cuda::aligned16(qweight))
        return sa::fail(SA_E_INVALID_ARGUMENT, "sa_cuda_linear_w4a16: x and qweight must be 16-byte aligned");
    if (flags & ~SA_W4A16_FP16_SCALES)
        return sa::fail(SA_E_INVALID_ARGUMENT, "sa_cuda_linear_w4a16: unknown flags " + std::to_string(flags));
    const sa_status epilogue_ok = sa_epilogue::check_host_args("sa_cuda_linear_w4a16", epilogue, fold, x, y, m, n, k);
    if (epilogue_ok != SA_OK) return epilogue_ok;
    const int smem_limit = max_dynamic_smem();
    if (smem_limit < 0) return sa::fail(SA_E_CUDA, "sa_cuda_linear_w4a16: could not enable the shared-memory ring");
    auto s = static_cast<cudaStream_t>(stream);
    const bool fp16 = flags & SA_W4A16_FP16_SCALES, has_zeros = zeros != nullptr;
    const sa_norm_fold f = sa_epilogue::fold_value(fold);  // m <= 16 when set: one slice below
    if (sa_prefill::use_prefill(m, n, k))  // prefill: the tensor-core GEMM of linear_quant_prefill.cu
        return sa_prefill::linear_w4a16(x, qweight, scales, zeros, fp16, y, m, n, k, s);
    for (int32_t m0 = 0; m0 < m; m0 += 16) {  // up to 32 tokens: the decode kernels over 16-token slices
        const int mc = m - m0 < 16 ? m - m0 : 16;
        const uint16_t *xc = x + (size_t)m0 * k;
        uint16_t *yc = y + (size_t)m0 * n;
        const int rt = row_tiles_for(mc, n, k, has_zeros, smem_limit);
        sa_status st;
        if (rt > 1) {
            st = mc <= 8 ? launch_wide_rows<1>(rt, fp16, has_zeros, s, xc, qweight, scales, zeros, yc, mc, n, k, epilogue, f)
                         : launch_wide_rows<2>(rt, fp16, has_zeros, s, xc, qweight, scales, zeros, yc, mc, n, k, epilogue, f);
        } else {
            const dim3 grid((unsigned)((n + 15) / 16));
            st = mc <= 8 ? (fp16 ? launch_skinny<1, true>(has_zeros, grid, s, xc, qweight, scales, zeros, yc, mc, n, k, epilogue, f)
                                 : launch_skinny<1, false>(has_zeros, grid, s, xc, qweight, scales, zeros, yc, mc, n, k, epilogue, f))
                         : (fp16 ? launch_skinny<2, true>(has_zeros, grid, s, xc, qweight, scales, zeros, yc, mc, n, k, epilogue, f)
                                 : launch_skinny<2, false>(has_zeros, grid, s, xc, qweight, scales, zeros, yc, mc, n, k, epilogue, f));
        }
        if (st != SA_OK) return st;
    }
    return SA_OK;
}
