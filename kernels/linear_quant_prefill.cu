// linear_quant_prefill.cu — y[M,N] = bf16(x[M,K] · Wᵀ) for M > 16 (prefill) with W in either 4-bit kernel layout of
// stepaudio_native.h (W4A16: int4 codes + 16-bit group scales + optional zero codes; NF4: nibbles + absmax, with or
// without double quant). One tensor-core GEMM for both formats; the decode kernels (linear_w4a16.cu, linear_nf4.cu)
// keep M <= 16 (and M <= 32 for small weights: sa_prefill::use_prefill). Before it, M > 16 ran the decode kernel over
// 16-token slices, reading and dequantizing the whole weight once per slice (1000 tokens: 63 passes); this kernel is
// 1.9–4.8x faster from M = 64 (kernels/NOTES_QUANT.md, "Prefill GEMM", for every figure quoted here).
//
// Design (H100: 132 SMs; bf16 mma.sync; ~3 TB/s copy):
//  * Block = 8 warps; tile = rows x tokens with rows = 128 or 256 (4 or 8 warps of 32 weight rows) and tokens = 64
//    or 128 (the 2 or 1 remaining warp columns). A warp owns 32 rows x (tokens / warp columns): 2 m16 tiles x NT n8
//    tiles of mma.m16n8k16, W rows on the MMA's M side and tokens on its N side, as in the decode kernels. The 4-bit
//    side is the cheap one (0.5 B per weight per k against 2 B per token per k for x), so tiles are long in W rows:
//    per k a 256 x 128 block reads 256 B of x and 128 B of codes for 65536 flops (170 flop/B) — at 128 x 128 it was
//    102 flop/B, and gate_up / qkv at M = 1000 run ~20% slower on it (measured).
//  * x is staged in shared memory by cp.async.cg (L2 only), 3 stages (W4A16) / 4 stages (NF4) deep, one stage = one
//    scale group (128 / 64 k's). Token rows are 16-byte chunks XOR-swizzled by (token & 7), so each ldmatrix.x4 (B
//    fragments of two n8 tiles) reads 8 rows from 8 different bank groups. The packed codes of the block's rows are
//    staged by cp.async too (row pitch padded by 16 B: the 8 rows a warp reads per LDS.128 hit 8 bank groups).
//  * Dequantization happens in registers, straight into MMA A fragments, each feeding NT MMAs (up to 16): thread
//    (g, t) needs k = 2t, 2t+1 (and +8) of rows g, g+8 — with B read by ldmatrix the k-slot order is the natural one,
//    so a thread uses nibble pair t of every code word (W4A16: (q >> 4t) & 0x000f000f, the decode kernel's lop3 /
//    magic-number conversion, one packed fma subtracting 128 + z exactly; NF4: byte t of every word, looked up in the
//    decode kernel's lane-replicated 32 KB table of bf16 pairs). The 4 threads of a row read the same 16 B (a
//    broadcast LDS.128) and each keeps its quarter.
//  * Scales in fp32 per group, like the decode kernels, without a second accumulator set: acc is kept in units of the
//    current group's scale s — before a group's MMAs it is multiplied by s_prev / s (one IEEE division per row and
//    group, by the scale-loading thread), after the last by s. That is the decode kernels' Σ s·(partial sum) to a
//    relative 2^-23 per group, and frees the 4·NT·2 partial-sum registers that made 256-row tiles impossible (v1
//    kept them: 212–254 registers at 128 x 128). Scales below 2^-96 in magnitude (zero, subnormal) are raised to
//    2^-96 so the ratio stays finite: such a group then adds 2^-96 times its sum instead of exactly 0. The MMA
//    operands are exact for W4A16 ((c - z) is a small integer) and bf16(quant_map) for NF4, so the roundings are the
//    fp32 sums, these ratios and the final bf16.
//  * Small grids: qkv / o / down have 12–28 row tiles, so at small M a grid of tiles covers a fraction of the SMs. K
//    is then split over a thread-block cluster of 2, 4 or 8 blocks (sm_90): each block runs its share of the scale
//    groups, the partial tiles are summed in distributed shared memory (each rank reduces rows / splits rows, in rank
//    order: deterministic) and written once in bf16. There is no workspace (the entry points are captured into
//    graphs and take none), hence DSMEM and not a global split-K buffer. choose() picks the tile and the split from a
//    wave model fitted to a sweep of all 16 shapes (its comment).
//  * The epilogue always goes through shared memory, so y is written in 8-byte row-contiguous pieces.
//  * Programmatic dependent launch as the decode kernels: the first stages' codes and scales (and the NF4 tables)
//    are loaded before pdl_wait(); x is read and y written only after it.
// Where it stands: 190–320 TFLOP/s at M >= 512 (W4A16 up to 324, NF4 up to 258), 0.25–0.43x cuBLAS bf16 there; equal
// to or faster than cuBLAS bf16 for gate_up / down up to M = 64 (those are bound by cuBLAS reading the bf16 weight).
// mma.sync with register-dequantized A and 8 warps per SM is latency-bound (~10–12 clock cycles per MMA per SM
// sub-partition at 320 TFLOP/s, where the tensor pipe needs ~4–6). So on sm_90a builds, from 128 tokens, the entry
// points take the second kernel of this file, quant_prefill_wg (wgmma: B straight from the swizzled shared-memory
// tile, A from registers with the same dequant; its own comment): H100, session 17, W4A16 gate_up at M = 1000 317.5 ->
// 207.8 µs (484 TFLOP/s), qkv 80.3 -> 61.2, down 197.3 -> 155.4; NF4 gate_up 399.1 -> 296.2; at M = 128 qkv 17.6 ->
// 13.3 (kernels/NOTES_QUANT.md, "The prefill GEMM on wgmma"). This kernel keeps M = 17–127 and sm_80.
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdlib>
#include <string>

#include "cuda_common.cuh"
#include "wgmma.cuh"
#include "linear_quant_prefill.h"
#include "nf4_common.h"

namespace {

constexpr int kWarps = 8, kThreads = 32 * kWarps;
constexpr int kMT = 2;  // m16 tiles per warp: a warp owns 32 weight rows
constexpr int kMaxSplits = 8;
#ifndef SA_PREFILL_H_UNROLL
#define SA_PREFILL_H_UNROLL 1
#endif
constexpr int kHUnroll = SA_PREFILL_H_UNROLL;
// Scales below this magnitude (0, subnormals) are raised to it: the running accumulator is kept in units of the
// current group's scale (kernel comment), so a scale must have a finite reciprocal. A group of such a row then
// contributes 2^-96 times its sum instead of 0 or a denormal multiple of it.
constexpr float kMinScale = 0x1p-96f;

// Weight formats (template parameter Fmt).
enum Fmt : int { kW4Bf16 = 0, kW4Bf16Zeros, kW4Fp16, kW4Fp16Zeros, kNf4F32, kNf4Dq };
constexpr bool is_nf4(int f) { return f >= kNf4F32; }

// Block shape and shared-memory plan (bytes) of one instantiation: WM warps along the weight rows, 8 / WM along the
// tokens, NT n8 tiles per warp. The reduction buffer of the epilogue aliases the pipeline; the NF4 tables follow.
template <int Fmt, int WM, int NT>
struct Plan {
    static constexpr bool kNf4 = is_nf4(Fmt);
    static constexpr int kWT = kWarps / WM;
    static constexpr int kRows = WM * kMT * 16;  // weight rows per block
    static constexpr int kTokens = kWT * NT * 8;  // tokens per block
    static constexpr int kStages = kNf4 ? 4 : 3;
    static constexpr int kKs = kNf4 ? SA_NF4_BLOCK : SA_W4A16_GROUP;  // k per stage = one scale group
    static constexpr int kXRow = kKs * 2;                             // bytes of one token's x per stage
    static constexpr int kWPitch = kKs / 2 + 16;                      // bytes of one row's codes per stage, padded
    static constexpr int kXStage = kTokens * kXRow;                   // bytes of x per stage
    static constexpr int kXTokenPitch = kXRow;
    static constexpr int kXBytes = kStages * kXStage;
    static constexpr int kWBytes = kStages * kRows * kWPitch;
    static constexpr int kRBytes = kStages * kRows * 4;              // fp32 ratio s_prev / s per row and stage
    static constexpr int kZBytes = kNf4 ? 0 : kStages * kRows * 4;  // W4A16: the -(128 + z) bf16 pair
    static constexpr int kLastBytes = kRows * 4;                     // the last group's scale per row
    static constexpr int kPipe = kXBytes + kWBytes + kRBytes + kZBytes + kLastBytes;
    static constexpr int kRed = kTokens * (kRows + 4 * kMaxSplits) * 4;  // [splits][tokens][rows / splits + 4]
    static constexpr int kMain = kPipe > kRed ? kPipe : kRed;
    static constexpr int kLutBytes = kNf4 ? 256 * 32 * 4 + 256 * 4 : 0;  // pair table [byte][lane] + nested_map
    static constexpr int kSmem = kMain + kLutBytes;
    static constexpr int kXChunks = kTokens * kKs / 8 / kThreads;  // 16-byte cp.async per thread per stage
    static constexpr int kWChunks = kRows * kKs / 32 / kThreads;
    static_assert(kTokens * kKs / 8 % kThreads == 0 && kRows * kKs / 32 % kThreads == 0, "whole chunks per thread");
    static_assert(kRows <= kThreads, "one loader thread per row for the scales");
    static_assert(NT % 2 == 0, "ldmatrix.x4 loads two n8 tiles");
    // Byte offset of token tok's 16-byte chunk ch in a stage: [tokens][kXRow], chunks XOR-swizzled by token & 7.
    __device__ static uint32_t x_offset(int tok, int ch) { return tok * kXRow + ((ch ^ (tok & 7)) * 16); }
};

struct Params {
    const uint16_t *x;      // [m, k] bf16
    const uint8_t *q;       // packed codes, row-major [n, k/2] bytes (both layouts)
    const void *scales;     // W4A16: uint16 [n, k/128]; NF4: absmax [n, k/64] (u8 codes or fp32)
    const uint8_t *zeros;   // W4A16 zero codes or null
    const float *tables;    // NF4 tables (quant_map, nested_map, nested pairs)
    uint16_t *y;            // [m, n] bf16
    int m, n, k;
};



// W4A16: the nibble pair at bits (0..3, 16..19) of v as the exact bf16 pair (c - z): lop3 makes 128 + c, the packed
// fma adds -(128 + z) (linear_w4a16.cu's conversion).
__device__ __forceinline__ uint32_t w4_pair(uint32_t v, uint32_t neg_magic_z) {
    uint32_t r;
    asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(r) : "r"(v), "r"(0x000f000fu), "r"(0x43004300u));
    asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(r) : "r"(r), "r"(0x3f803f80u), "r"(neg_magic_z));
    return r;
}

// Thread-block cluster pieces beside cuda_common.cuh's (sm_90; the host launches splits > 1 only there): the
// reduction addresses shared memory through 32-bit shared-window addresses.
__device__ __forceinline__ uint32_t cluster_map(uint32_t addr, int rank) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    uint32_t r;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(r) : "r"(addr), "r"(rank));
    return r;
#else
    return addr;
#endif
}
__device__ __forceinline__ void st_cluster_f32(uint32_t addr, float v) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("st.shared::cluster.f32 [%0], %1;" ::"r"(addr), "f"(v) : "memory");
#endif
}
__device__ __forceinline__ void st_shared_f32(uint32_t addr, float v) {
    asm volatile("st.shared.f32 [%0], %1;" ::"r"(addr), "f"(v) : "memory");
}

// ---- what both kernels share: one row's scale of one group, and the NF4 tables ----
// The raw scale of entry idx (row · groups + group), loaded when the stage's codes are requested: W4A16 the 16-bit
// scale | the zero code << 16 (8 without zeros); NF4 the fp32 absmax bits, or the u8 absmax code and its nested pair
// (double quant). Decoded after that iteration's MMAs (decode_group_scale), off the load's critical path.
template <int Fmt>
__device__ __forceinline__ void load_group_scale(const Params &p, size_t idx, uint32_t &raw, float2 &nest) {
    if constexpr (Fmt >= kNf4F32) {
        if constexpr (Fmt == kNf4Dq) {
            raw = __ldg(static_cast<const uint8_t *>(p.scales) + idx);
            nest = __ldg(reinterpret_cast<const float2 *>(p.tables + SA_NF4_TABLE_HEADER) + idx / SA_NF4_NESTED_BLOCK);
        } else {
            raw = __float_as_uint(__ldg(static_cast<const float *>(p.scales) + idx));
        }
    } else {
        constexpr bool kZeros = Fmt == kW4Bf16Zeros || Fmt == kW4Fp16Zeros;
        raw = __ldg(static_cast<const uint16_t *>(p.scales) + idx) | (uint32_t)(kZeros ? __ldg(p.zeros + idx) : 8) << 16;
    }
}
// The group's scale in fp32, raised to kMinScale in magnitude (kMinScale's comment).
template <int Fmt>
__device__ __forceinline__ float decode_group_scale(uint32_t raw, float2 nest, const float *nested_map) {
    float s;
    if constexpr (Fmt == kNf4Dq) {
        s = __fadd_rn(__fmul_rn(nested_map[raw], nest.x), nest.y);  // bitsandbytes: product, then sum (no FMA)
    } else if constexpr (Fmt == kNf4F32) {
        s = __uint_as_float(raw);
    } else {
        const uint16_t bits = (uint16_t)(raw & 0xffffu);
        if constexpr (Fmt == kW4Fp16 || Fmt == kW4Fp16Zeros) s = __half2float(__ushort_as_half(bits));
        else s = __uint_as_float((uint32_t)bits << 16);
    }
    if (fabsf(s) < kMinScale) s = copysignf(kMinScale, s);
    return s;
}
// W4A16: -(128 + z) as a bf16 pair (w4_pair's packed fma operand), from the raw value's zero code.
__device__ __forceinline__ uint32_t neg_magic_zero(uint32_t raw) { return (0xC300u + (raw >> 16)) * 0x00010001u; }
// NF4: thread b (of 256) builds the pair of byte b (quant_map[b >> 4] low, quant_map[b & 15] high) and writes its 32
// copies rotated by b, so a warp's stores hit 32 banks; and nested_map[b].
__device__ __forceinline__ void build_nf4_tables(uint32_t *lut, float *nested_map, const float *tables, int b) {
    const uint32_t pair = (uint32_t)sa_f32_to_bf16(__ldg(tables + (b >> 4))) |
                          (uint32_t)sa_f32_to_bf16(__ldg(tables + (b & 15))) << 16;
#pragma unroll 8
    for (int j = 0; j < 32; ++j) lut[b * 32 + ((j + b) & 31)] = pair;
    nested_map[b] = __ldg(tables + 16 + b);
}

// ---- the stage pipeline both kernels share ----
// A stage is one scale group of K: the block's codes and x by 16-byte cp.async (x of tokens past m zero-filled), and
// one row's scale per thread tid < kRows, loaded when the stage is requested and decoded after that iteration's MMAs,
// off the load's critical path, into the ratio s_prev / s (rs), the W4A16 zero operand (zs) and the last group's
// scale (last). The kernels differ only in where x sits in a stage (P::x_offset). Block (split, tile, token block)
// owns the groups [g0, g0 + iters) of its K share.
template <int Fmt, class P>
struct StagePipe {
    static constexpr bool kNf4 = is_nf4(Fmt);
    static constexpr int S = P::kStages, KS = P::kKs, kRows = P::kRows;
    static constexpr int kWStep = kThreads / (KS / 32);  // rows between a thread's code chunks
    static constexpr int kXStep = kThreads / (KS / 8);   // tokens between a thread's x chunks
    static_assert(kXStep % 8 == 0, "the swizzle of a thread's x chunks does not change with i");

    const Params &p;
    // The block's shared memory, carved here for both kernels: the pipeline's stages, then (NF4) the pair table and
    // nested_map after the kMain region (which the cross-split reduction reuses).
    uint8_t *const xs;          // [S] stages of x; layout P::x_offset
    uint8_t *const ws;          // [S][kRows][kWPitch] codes
    float *const rs;            // [S][kRows] ratio s_prev / s
    uint32_t *const zs;         // [S][kRows] (W4A16) zero operand
    float *const last;          // [kRows] scale of the last group
    uint32_t *const lut;        // NF4: [256][32] pair table, built by the prologue
    float *const nested_map;    // NF4: [256], filled by the prologue
    const int tid, n0;
    int g0, iters;
    // Loader state, incremental pointers: little live state across the main loop.
    int wrow, wch, x_left;  // x chunk i is a real token when i * kXStep < x_left
    uint32_t w_dst, x_dst;
    const uint8_t *w_src;
    const uint16_t *x_src;
    size_t sidx;        // this thread's row's scale entries (threads tid < kRows)
    float prev = 1.0f;  // this row's previous scale, for the ratio

    __device__ __forceinline__ StagePipe(const Params &p_, uint8_t *smem, int n0_, int m0)
        : p(p_), xs(smem), ws(smem + P::kXBytes), rs(reinterpret_cast<float *>(ws + P::kWBytes)),
          zs(reinterpret_cast<uint32_t *>(rs + S * kRows)), last(reinterpret_cast<float *>(smem + P::kPipe) - kRows),
          lut(reinterpret_cast<uint32_t *>(smem + P::kMain)), nested_map(reinterpret_cast<float *>(lut + 256 * 32)),
          tid(threadIdx.x), n0(n0_) {
        const int groups = p.k / KS, split = blockIdx.x, splits = gridDim.x;
        g0 = split * groups / splits, iters = (split + 1) * groups / splits - g0;
        wrow = tid / (KS / 32);
        wch = tid % (KS / 32);
        const int xtok = tid / (KS / 8), xch = tid % (KS / 8);
        w_dst = smem_u32(ws) + wrow * P::kWPitch + wch * 16;
        x_dst = smem_u32(xs) + P::x_offset(xtok, xch);
        w_src = p.q + (size_t)min(n0 + wrow, p.n - 1) * (p.k / 2) + wch * 16;
        x_src = p.x + (size_t)(m0 + xtok) * p.k + xch * 8;
        x_left = p.m - m0 - xtok;
        sidx = (size_t)min(n0 + tid, p.n - 1) * groups;
    }
    __device__ __forceinline__ void load_codes(int stage, int grp) const {
#pragma unroll
        for (int i = 0; i < P::kWChunks; ++i) {
            const int r = min(n0 + wrow + i * kWStep, p.n - 1);  // ragged rows load valid memory
            const uint8_t *src = i == 0 ? w_src : p.q + (size_t)r * (p.k / 2) + wch * 16;
            cp_async16(w_dst + (stage * kRows + i * kWStep) * P::kWPitch, src + (size_t)grp * (KS / 2), 16);
        }
    }
    __device__ __forceinline__ void load_x(int stage, int grp) const {
        const uint16_t *src = x_src + (size_t)grp * KS;
#pragma unroll
        for (int i = 0; i < P::kXChunks; ++i) {
            const bool ok = i * kXStep < x_left;
            cp_async16(x_dst + stage * P::kXStage + i * kXStep * P::kXTokenPitch, ok ? src : p.x, ok ? 16 : 0);
            src += (size_t)kXStep * p.k;
        }
    }
    __device__ __forceinline__ void load_scale(int grp, uint32_t &raw, float2 &nest) const {
        load_group_scale<Fmt>(p, sidx + grp, raw, nest);
    }
    __device__ __forceinline__ void store_scale(int stage, int it, uint32_t raw, float2 nest) {
        if constexpr (!kNf4) zs[stage * kRows + tid] = neg_magic_zero(raw);
        const float s = decode_group_scale<Fmt>(raw, nest, nested_map);
        rs[stage * kRows + tid] = it == 0 ? 1.0f : __fdiv_rn(prev, s);
        prev = s;
        if (it == iters - 1) last[tid] = s;
    }
    // The first S - 1 stages: weights and scales first (they never depend on the previous kernel; NF4 also builds
    // its tables, lut = the pair table [256][32]), then pdl_wait, then x. One cp.async group per stage.
    __device__ __forceinline__ void prologue() {
#pragma unroll
        for (int s = 0; s < S - 1; ++s)
            if (s < iters) load_codes(s, g0 + s);
        uint32_t raw0[S - 1];
        float2 nest0[S - 1];
#pragma unroll
        for (int s = 0; s < S - 1; ++s) {
            raw0[s] = 0;
            nest0[s] = make_float2(0.0f, 0.0f);
            if (tid < kRows && s < iters) load_scale(g0 + s, raw0[s], nest0[s]);
        }
        if constexpr (kNf4) {
            build_nf4_tables(lut, nested_map, p.tables, tid);
            __syncthreads();  // nested_map before store_scale
        }
#pragma unroll
        for (int s = 0; s < S - 1; ++s)
            if (tid < kRows && s < iters) store_scale(s, s, raw0[s], nest0[s]);
        pdl_wait();
#pragma unroll
        for (int s = 0; s < S - 1; ++s) {
            if (s < iters) load_x(s, g0 + s);
            cp_async_commit();
        }
    }
    // Iteration it requests stage it + S - 1 (codes, x, raw scale; always one cp.async group) before its MMAs ...
    __device__ __forceinline__ void request(int it, uint32_t &raw, float2 &nest) const {
        const int nx = it + S - 1;
        raw = 0;
        nest = make_float2(0.0f, 0.0f);
        if (nx < iters) {
            load_codes(nx % S, g0 + nx);
            load_x(nx % S, g0 + nx);
            if (tid < kRows) load_scale(g0 + nx, raw, nest);
        }
        cp_async_commit();
    }
    // ... and decodes that stage's scale after them.
    __device__ __forceinline__ void finish(int it, uint32_t raw, float2 nest) {
        const int nx = it + S - 1;
        if (nx < iters && tid < kRows) store_scale(nx % S, nx, raw, nest);
    }
    // Before a group's MMAs: a thread's accumulators of rows `row` (c0, c1 of each quad) and row + 8 (c2, c3) are
    // rescaled by the stage's ratio s_prev / s, and (W4A16) those rows' zero operands are read.
    template <int Quads>
    __device__ __forceinline__ void enter_group(int stage, int row, float (&acc)[Quads][4], uint32_t &za,
                                                uint32_t &zb) const {
        const float ra = rs[stage * kRows + row], rb = rs[stage * kRows + row + 8];
#pragma unroll
        for (int i = 0; i < Quads; ++i) {
            acc[i][0] *= ra, acc[i][1] *= ra;
            acc[i][2] *= rb, acc[i][3] *= rb;
        }
        if constexpr (!kNf4) {
            za = zs[stage * kRows + row];
            zb = zs[stage * kRows + row + 8];
        }
    }
};

// ---- the epilogue both kernels share: partial tiles -> owner rank's shared memory -> sum in rank order -> bf16 y ----
// red[src][token][pitch]: rank r owns rows r·R .. r·R + R - 1 of the tile (R = kRows / splits); pitch = R + 4 ≡ 4 or
// 20 (mod 32) floats, so a warp's stores hit 32 banks. A thread puts its (row, tokens tok, tok + 1) and (row + 8, the
// same) values at a (the owner's copy through DSMEM when the cluster has more than one rank).
__device__ __forceinline__ void put_partials(uint32_t a, int pitch, bool cluster, float v0, float v1, float v2, float v3) {
    if (cluster) {
        st_cluster_f32(a, v0);
        st_cluster_f32(a + pitch * 4, v1);
        st_cluster_f32(a + 32, v2);
        st_cluster_f32(a + pitch * 4 + 32, v3);
    } else {
        st_shared_f32(a, v0);
        st_shared_f32(a + pitch * 4, v1);
        st_shared_f32(a + 32, v2);
        st_shared_f32(a + pitch * 4 + 32, v3);
    }
}
// After the barrier that lands every rank's partials: this rank's R rows (from row0) of BT tokens (from m0), summed
// over the ranks in rank order (the same sum whatever the schedule), written as bf16, 4 rows per thread and step.
template <int BT>
__device__ __forceinline__ void sum_store(const Params &p, const float *red, int pitch, int R, int splits, int m0,
                                          int row0) {
    const bool vec = (p.n % 4 == 0) && ((reinterpret_cast<uintptr_t>(p.y) & 7u) == 0);
    for (int idx = threadIdx.x; idx < BT * (R / 4); idx += kThreads) {
        const int tok = idx / (R / 4), r4 = (idx % (R / 4)) * 4;
        if (m0 + tok >= p.m || row0 + r4 >= p.n) continue;
        float4 sum = *reinterpret_cast<const float4 *>(red + tok * pitch + r4);
        for (int src = 1; src < splits; ++src) {
            const float4 v = *reinterpret_cast<const float4 *>(red + ((size_t)src * BT + tok) * pitch + r4);
            sum.x += v.x, sum.y += v.y, sum.z += v.z, sum.w += v.w;
        }
        uint16_t *yp = p.y + (size_t)(m0 + tok) * p.n + row0 + r4;
        if (vec) {
            *reinterpret_cast<uint2 *>(yp) =
                make_uint2((uint32_t)sa_f32_to_bf16(sum.x) | (uint32_t)sa_f32_to_bf16(sum.y) << 16,
                           (uint32_t)sa_f32_to_bf16(sum.z) | (uint32_t)sa_f32_to_bf16(sum.w) << 16);
        } else {
            const float v[4] = {sum.x, sum.y, sum.z, sum.w};
#pragma unroll
            for (int e = 0; e < 4; ++e)
                if (row0 + r4 + e < p.n) yp[e] = sa_f32_to_bf16(v[e]);
        }
    }
}

// The kernel. Grid: (splits, ceil(n / rows), ceil(m / tokens)); blockIdx.x is the K share (= the cluster rank).
template <int Fmt, int WM, int NT>
__global__ void __launch_bounds__(kThreads, NT <= 4 ? 2 : 1) quant_prefill(const Params p) {
    using P = Plan<Fmt, WM, NT>;
    constexpr bool kNf4 = P::kNf4;
    constexpr int S = P::kStages, KS = P::kKs, BT = P::kTokens, kRows = P::kRows;
    pdl_launch_dependents();
    extern __shared__ __align__(128) uint8_t smem[];

    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
    const int wm = warp % WM, wn = warp / WM;
    const int split = blockIdx.x, splits = gridDim.x;  // the K share (= the cluster rank), the cluster size
    const int n0 = blockIdx.y * kRows, m0 = blockIdx.z * BT;
    StagePipe<Fmt, P> pipe(p, smem, n0, m0);  // x stages [S][BT][kXRow] here, chunks swizzled
    const int iters = pipe.iters;
    pipe.prologue();

    // ---- per-lane constants of the MMA loop ----
    // ldmatrix.x4 for n8 tiles (2q, 2q+1) of k16 step s: lane l gives row (l & 7) of matrix l >> 3: matrix bit 0 =
    // k half (chunk 2s or 2s+1), bit 1 = which of the two n8 tiles. The chunk index is swizzled by token & 7 = l & 7.
    const int lt = wn * NT * 8 + (lane >> 4) * 8 + (lane & 7);  // this lane's token row for q = 0
    const uint32_t x_lane = smem_u32(pipe.xs) + lt * P::kXRow;
    const int x_xor = ((lane >> 3) & 1) ^ (lane & 7);  // chunk (2s + half) ^ (token & 7) = 2s ^ x_xor
    const uint32_t *lut_lane = pipe.lut + lane;
    int row_a[kMT];  // local row of this thread's A rows g (and g + 8) per m16 tile
#pragma unroll
    for (int j = 0; j < kMT; ++j) row_a[j] = wm * (kMT * 16) + j * 16 + g;

    // acc is kept in units of the current group's scale s: before a group's MMAs it is multiplied by s_prev / s
    // (rs), after the last by that group's s (last). Same sum as scaling each group's partial sum by s in fp32 (the
    // decode kernels), to a relative 2^-23 per group, without a second set of 4·NT·kMT partial-sum registers.
    float acc[kMT][NT][4];
#pragma unroll
    for (int j = 0; j < kMT; ++j)
#pragma unroll
        for (int i = 0; i < NT; ++i) acc[j][i][0] = acc[j][i][1] = acc[j][i][2] = acc[j][i][3] = 0.0f;

    for (int it = 0; it < iters; ++it) {
        cp_async_wait<S - 2>();
        __syncthreads();  // stage `it` has landed for every thread; stage it - 1 is free for reuse
        const int stage = it % S;
        uint32_t raw;
        float2 nest;
        pipe.request(it, raw, nest);

        const uint8_t *wst = pipe.ws + stage * kRows * P::kWPitch;
        uint32_t za[kMT], zb[kMT];
#pragma unroll
        for (int j = 0; j < kMT; ++j) pipe.enter_group(stage, row_a[j], acc[j], za[j], zb[j]);
        const uint32_t x_stage = x_lane + stage * BT * P::kXRow;
#pragma unroll kHUnroll
        for (int h = 0; h < KS / 32; ++h) {  // 16 B of codes per row = 32 k = two k16 steps
            uint4 qa[kMT], qb[kMT];
#pragma unroll
            for (int j = 0; j < kMT; ++j) {
                qa[j] = *reinterpret_cast<const uint4 *>(wst + row_a[j] * P::kWPitch + h * 16);
                qb[j] = *reinterpret_cast<const uint4 *>(wst + (row_a[j] + 8) * P::kWPitch + h * 16);
            }
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                const int s = 2 * h + e;  // k16 step within the stage
                uint32_t a[kMT][4];
#pragma unroll
                for (int j = 0; j < kMT; ++j) {
                    // Words of k 16s..16s+7 (a0 / a1) and 16s+8..16s+15 (a2 / a3) of rows g and g + 8.
                    const uint32_t wa0 = e ? qa[j].z : qa[j].x, wa1 = e ? qa[j].w : qa[j].y;
                    const uint32_t wb0 = e ? qb[j].z : qb[j].x, wb1 = e ? qb[j].w : qb[j].y;
                    if constexpr (kNf4) {  // byte t of each word = elements 2t, 2t+1 of its 8 k's
                        a[j][0] = lut_lane[((wa0 >> (8 * t)) & 0xffu) * 32];
                        a[j][2] = lut_lane[((wa1 >> (8 * t)) & 0xffu) * 32];
                        a[j][1] = lut_lane[((wb0 >> (8 * t)) & 0xffu) * 32];
                        a[j][3] = lut_lane[((wb1 >> (8 * t)) & 0xffu) * 32];
                    } else {  // nibble pair t of each word = elements 2t, 2t+1
                        a[j][0] = w4_pair(wa0 >> (4 * t), za[j]);
                        a[j][2] = w4_pair(wa1 >> (4 * t), za[j]);
                        a[j][1] = w4_pair(wb0 >> (4 * t), zb[j]);
                        a[j][3] = w4_pair(wb1 >> (4 * t), zb[j]);
                    }
                }
                const uint32_t xa = x_stage + (((2 * s) ^ x_xor) << 4);
#pragma unroll
                for (int q = 0; q < NT / 2; ++q) {  // B fragments of n8 tiles 2q, 2q+1, each used by kMT MMAs
                    uint32_t b0, b1, b2, b3;
                    ldmatrix_x4(xa + q * 16 * P::kXRow, b0, b1, b2, b3);
#pragma unroll
                    for (int j = 0; j < kMT; ++j) {
                        mma_bf16_16816(acc[j][2 * q], a[j][0], a[j][1], a[j][2], a[j][3], b0, b1);
                        mma_bf16_16816(acc[j][2 * q + 1], a[j][0], a[j][1], a[j][2], a[j][3], b2, b3);
                    }
                }
            }
        }
        pipe.finish(it, raw, nest);
    }
    cp_async_wait<0>();  // only empty groups are left; keep the accounting clean

    // ---- epilogue (put_partials, sum_store) ----
    const int R = kRows / splits, pitch = R + 4;
    float *red = reinterpret_cast<float *>(smem);
    float sl[kMT][2];
#pragma unroll
    for (int j = 0; j < kMT; ++j) sl[j][0] = pipe.last[row_a[j]], sl[j][1] = pipe.last[row_a[j] + 8];
    if (splits > 1) cluster_sync_all();  // every block of the cluster is done with its pipeline buffers
    else __syncthreads();
    const uint32_t red_src = smem_u32(red + (size_t)split * BT * pitch);
#pragma unroll
    for (int j = 0; j < kMT; ++j) {
        const int owner = (wm * kMT * 16 + j * 16) / R;  // an m16 tile never straddles two owners (R >= 16)
        const int rl = row_a[j] - owner * R;
        const uint32_t base = splits > 1 ? cluster_map(red_src, owner) : red_src;
#pragma unroll
        for (int i = 0; i < NT; ++i) {
            const int tok = wn * NT * 8 + i * 8 + 2 * t;
            put_partials(base + (uint32_t)(tok * pitch + rl) * 4, pitch, splits > 1, acc[j][i][0] * sl[j][0],
                         acc[j][i][1] * sl[j][0], acc[j][i][2] * sl[j][1], acc[j][i][3] * sl[j][1]);
        }
    }
    if (splits > 1) cluster_sync_all();  // all partials of my rows have landed
    else __syncthreads();
    sum_store<BT>(p, red, pitch, R, splits, m0, n0 + split * R);
}

// ==== the wgmma kernel (sm_90a): quant_prefill_wg ====
// Why: quant_prefill's mma.sync runs ~10–12 clock cycles per MMA per sub-partition (190–320 TFLOP/s at M >= 512,
// 0.25–0.43x cuBLAS); Hopper's warpgroup MMA issues a 64 x 128 x 16 product per instruction, asynchronously, with B
// read straight from shared memory. Same arithmetic as quant_prefill (exact (c − z) / bf16(quant_map) operands, fp32
// sums, the accumulator kept in units of the current group's scale), so the same bounds hold:
//  * Block = 2 warpgroups (8 warps), tile = 2·64·MH weight rows x 128 tokens; warpgroup w owns rows [64·MH·w, +64·MH)
//    as MH m64 halves. Its warp v holds rows 16v .. 16v + 15 of each half as the register A operand of
//    wgmma.m64n128k16 (the mma.m16n8k16 A fragment layout), dequantized exactly as quant_prefill does.
//  * x: per stage (one scale group) 128 tokens x KS k in 64-k halves, each [128 tokens][128 B] with the 128-byte
//    swizzle (16-byte chunk c of token row r at c ^ (r & 7)), written by cp.async, read by wgmma through a
//    shared-memory descriptor (K-major, stride 1024 B between 8-row groups; +32 B per k16 step).
//  * Codes, scales and the pipeline (3 / 4 stages, one barrier per group) as quant_prefill. Per k16 step: dequantize
//    into one of kASets A register sets (2 for 256-row tiles, 3 for 128: registers), wgmma.fence, MH wgmmas, commit;
//    wait until at most kASets - 1 steps are in flight before a set is reused; all in flight are waited for at each
//    group boundary (the rescale and the stage reuse need it).
//  * Small grids split K over a cluster of 2–8 blocks (choose_wg), reduced as quant_prefill does (DSMEM, rank order).
//  * The accumulator of m64n128 is, per thread, 16 n8 tiles of (row g: tokens 2t, 2t+1; row g + 8: the same), the
//    mma.sync C layout (kernels/wgmma.cuh); the epilogue is quant_prefill's.
constexpr int kWgTokens = 128;  // tokens per block: the N of wgmma.m64n128k16
// The entry points take it from this many tokens (choose_engine). Measured (H100, session 17, forced at every M
// against the best forced mma.sync shape): from 128 tokens it wins on every Step1 linear of both formats (W4A16 qkv
// 13.3 vs 17.6 µs, down 24.5 vs 35.7; NF4 gate_up 43.6 vs 57.6); at 48–64 it ties for W4A16 and loses 5–15% for NF4.
constexpr int kWgMinTokens = 128;

template <int Fmt, int MH>
struct WgPlan {
    static constexpr bool kNf4 = is_nf4(Fmt);
    static constexpr int kRows = 2 * 64 * MH;
    static constexpr int kStages = kNf4 ? 4 : 3;
    static constexpr int kKs = kNf4 ? SA_NF4_BLOCK : SA_W4A16_GROUP;
    static constexpr int kHalves = kKs / 64;                          // 128-byte swizzle atoms per token row and stage
    static constexpr int kXStage = kHalves * kWgTokens * 128;         // bytes, a multiple of 1024
    static constexpr int kXTokenPitch = 128;
    static constexpr int kWPitch = kKs / 2 + 16;
    static constexpr int kXBytes = kStages * kXStage;
    static constexpr int kWBytes = kStages * kRows * kWPitch;
    static constexpr int kRBytes = kStages * kRows * 4;
    static constexpr int kZBytes = kNf4 ? 0 : kStages * kRows * 4;
    static constexpr int kLastBytes = kRows * 4;
    static constexpr int kPipe = kXBytes + kWBytes + kRBytes + kZBytes + kLastBytes;
    static constexpr int kRed = kWgTokens * (kRows + 4 * kMaxSplits) * 4;  // [splits][tokens][rows / splits + 4]
    static constexpr int kMain = kPipe > kRed ? kPipe : kRed;
    static constexpr int kLutBytes = kNf4 ? 256 * 32 * 4 + 256 * 4 : 0;
    static constexpr int kSmem = 1024 + kMain + kLutBytes;  // + 1024: the x stages start 1024-byte aligned
    static constexpr int kXChunks = kWgTokens * kKs / 8 / kThreads;
    static constexpr int kWChunks = kRows * kKs / 32 / kThreads;
    static_assert(kRows <= kThreads, "one loader thread per row for the scales");
    // Byte offset of token tok's 16-byte chunk ch in a stage: [64-k half][tokens][128 B], the 128-byte swizzle.
    __device__ static uint32_t x_offset(int tok, int ch) {
        return (ch >> 3) * (kWgTokens * 128) + tok * 128 + (((ch & 7) ^ (tok & 7)) * 16);
    }
};

template <int Fmt, int MH>
__global__ void __launch_bounds__(kThreads, 1) quant_prefill_wg(const Params p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    using P = WgPlan<Fmt, MH>;
    constexpr bool kNf4 = P::kNf4;
    constexpr int S = P::kStages, KS = P::kKs, BT = kWgTokens, kRows = P::kRows, kSteps = KS / 16;
    constexpr int kASets = MH == 1 ? 3 : 2;  // A register sets: wgmma steps in flight (256-row tiles: no registers left)
    pdl_launch_dependents();
    extern __shared__ __align__(128) uint8_t smem_raw[];
    uint8_t *smem = smem_raw + ((1024 - (smem_u32(smem_raw) & 1023)) & 1023);

    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
    const int wg = warp / 4, wv = warp % 4;
    const int split = blockIdx.x, splits = gridDim.x;  // the K share (= the cluster rank), the cluster size
    const int n0 = blockIdx.y * kRows, m0 = blockIdx.z * BT;
    StagePipe<Fmt, P> pipe(p, smem, n0, m0);  // x stages [S][halves][BT][128] here, swizzled
    const int iters = pipe.iters;
    pipe.prologue();

    const uint32_t *lut_lane = pipe.lut + lane;
    int row_a[MH];  // local row of this thread's A row g (and g + 8) per m64 half
#pragma unroll
    for (int j = 0; j < MH; ++j) row_a[j] = wg * (64 * MH) + j * 64 + wv * 16 + g;

    float acc[MH][64];
#pragma unroll
    for (int j = 0; j < MH; ++j)
#pragma unroll
        for (int i = 0; i < 64; ++i) acc[j][i] = 0.0f;

    for (int it = 0; it < iters; ++it) {
        cp_async_wait<S - 2>();
        fence_proxy_async();
        wg_wait<0>();  // the previous group's wgmmas are done: its stage may be refilled, acc rescaled
#pragma unroll
        for (int j = 0; j < MH; ++j) wg_pin(acc[j]);
        __syncthreads();
        const int stage = it % S;
        uint32_t raw;
        float2 nest;
        pipe.request(it, raw, nest);

        const uint8_t *wst = pipe.ws + stage * kRows * P::kWPitch;
        uint32_t za[MH], zb[MH];
#pragma unroll
        for (int j = 0; j < MH; ++j)
            pipe.enter_group(stage, row_a[j], reinterpret_cast<float (&)[16][4]>(acc[j]), za[j], zb[j]);
        const uint32_t x_stage = smem_u32(pipe.xs) + stage * P::kXStage;
        uint32_t a[kASets][MH][4];
#pragma unroll
        for (int s = 0; s < kSteps; ++s) {
            const int h = s / 2, e = s % 2;  // 16 B of codes per row = 32 k = two k16 steps
            if (s >= kASets) wg_wait<kASets - 1>();  // step s - kASets, the last reader of A set s % kASets, is done
#pragma unroll
            for (int j = 0; j < MH; ++j) {
                const uint4 qa = *reinterpret_cast<const uint4 *>(wst + row_a[j] * P::kWPitch + h * 16);
                const uint4 qb = *reinterpret_cast<const uint4 *>(wst + (row_a[j] + 8) * P::kWPitch + h * 16);
                const uint32_t wa0 = e ? qa.z : qa.x, wa1 = e ? qa.w : qa.y;
                const uint32_t wb0 = e ? qb.z : qb.x, wb1 = e ? qb.w : qb.y;
                uint32_t(&f)[4] = a[s % kASets][j];
                if constexpr (kNf4) {
                    f[0] = lut_lane[((wa0 >> (8 * t)) & 0xffu) * 32];
                    f[2] = lut_lane[((wa1 >> (8 * t)) & 0xffu) * 32];
                    f[1] = lut_lane[((wb0 >> (8 * t)) & 0xffu) * 32];
                    f[3] = lut_lane[((wb1 >> (8 * t)) & 0xffu) * 32];
                } else {
                    f[0] = w4_pair(wa0 >> (4 * t), za[j]);
                    f[2] = w4_pair(wa1 >> (4 * t), za[j]);
                    f[1] = w4_pair(wb0 >> (4 * t), zb[j]);
                    f[3] = w4_pair(wb1 >> (4 * t), zb[j]);
                }
            }
            const uint64_t desc = wg_desc(x_stage + (s >> 2) * (BT * 128) + (s & 3) * 32);
#pragma unroll
            for (int j = 0; j < MH; ++j) wg_pin(acc[j]);
            wg_fence();
#pragma unroll
            for (int j = 0; j < MH; ++j) wgmma_m64n128k16(acc[j], a[s % kASets][j], desc);
            wg_commit();
        }
        pipe.finish(it, raw, nest);
    }
    wg_wait<0>();
#pragma unroll
    for (int j = 0; j < MH; ++j) wg_pin(acc[j]);
    cp_async_wait<0>();

    // ---- epilogue (put_partials, sum_store) ----
    const int R = kRows / splits, pitch = R + 4;
    float *red = reinterpret_cast<float *>(smem);
    float sl[MH][2];  // read before red overwrites the pipeline (and `last` with it, where kRed > kPipe)
#pragma unroll
    for (int j = 0; j < MH; ++j) sl[j][0] = pipe.last[row_a[j]], sl[j][1] = pipe.last[row_a[j] + 8];
    if (splits > 1) cluster_sync_all();  // every block of the cluster is done with its pipeline buffers
    else __syncthreads();
    const uint32_t red_src = smem_u32(red + (size_t)split * BT * pitch);
#pragma unroll
    for (int j = 0; j < MH; ++j) {
        const int owner = (row_a[j] - g) / R;  // a warp's 16 rows never straddle two owners (R >= 16)
        const int rl = row_a[j] - owner * R;
        const uint32_t base = splits > 1 ? cluster_map(red_src, owner) : red_src;
#pragma unroll
        for (int i = 0; i < 16; ++i) {
            put_partials(base + (uint32_t)((i * 8 + 2 * t) * pitch + rl) * 4, pitch, splits > 1, acc[j][4 * i] * sl[j][0],
                         acc[j][4 * i + 1] * sl[j][0], acc[j][4 * i + 2] * sl[j][1], acc[j][4 * i + 3] * sl[j][1]);
        }
    }
    if (splits > 1) cluster_sync_all();  // all partials of my rows have landed
    else __syncthreads();
    sum_store<BT>(p, red, pitch, R, splits, m0, n0 + split * R);
#else
    __trap();  // launched only where the library was built for sm_90a (SA_HAVE_WGMMA)
#endif
}

// ---- host side ----

template <int Fmt, int WM, int NT>
sa_status launch(const Params &p, int splits, cudaStream_t stream) {
    using P = Plan<Fmt, WM, NT>;
    auto kernel = &quant_prefill<Fmt, WM, NT>;
    static const cudaError_t attr_err =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, P::kSmem);
    if (attr_err != cudaSuccess)
        return sa::fail(SA_E_CUDA, std::string("quant_prefill: cannot reserve ") + std::to_string(P::kSmem) +
                                       " bytes of shared memory (" + cudaGetErrorName(attr_err) + ")");
    const dim3 grid((unsigned)splits, (unsigned)((p.n + P::kRows - 1) / P::kRows),
                    (unsigned)((p.m + P::kTokens - 1) / P::kTokens));
    return sa_cuda::launch_cluster_pdl_if(sa_cuda::device_traits().quant_pdl, (unsigned)splits, "quant_prefill", kernel,
                                          grid, dim3(kThreads), P::kSmem, stream, p);
}

template <int Fmt, int MH>
sa_status launch_wg(const Params &p, int splits, cudaStream_t stream) {
    using P = WgPlan<Fmt, MH>;
    auto kernel = &quant_prefill_wg<Fmt, MH>;
    static const cudaError_t attr_err =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, P::kSmem);
    if (attr_err != cudaSuccess)
        return sa::fail(SA_E_CUDA, std::string("quant_prefill_wg: cannot reserve ") + std::to_string(P::kSmem) +
                                       " bytes of shared memory (" + cudaGetErrorName(attr_err) + ")");
    const dim3 grid((unsigned)splits, (unsigned)((p.n + P::kRows - 1) / P::kRows),
                    (unsigned)((p.m + kWgTokens - 1) / kWgTokens));
    return sa_cuda::launch_cluster_pdl_if(sa_cuda::device_traits().quant_pdl, (unsigned)splits, "quant_prefill_wg",
                                          kernel, grid, dim3(kThreads), P::kSmem, stream, p);
}

template <int Fmt>
sa_status launch_shape(const Params &p, int group, sa_prefill::Config c, cudaStream_t stream) {
    if (c.engine == 0) c.engine = c.rows || c.tokens || c.splits ? 1 : sa_prefill::choose_engine(p.m);  // a forced shape is mma.sync's
    if (c.engine == 2) {
        if (!sa_prefill::wgmma_available())
            return sa::fail(SA_E_INVALID_ARGUMENT, "quant_prefill: the wgmma kernel needs an sm_90a build on an sm_90 GPU");
        const sa_prefill::WgShape w = sa_prefill::choose_wg(p.m, p.n, p.k, group);
        return w.rows == 256 ? launch_wg<Fmt, 2>(p, w.splits, stream) : launch_wg<Fmt, 1>(p, w.splits, stream);
    }
    if (!c.rows || !c.tokens || !c.splits) {
        const sa_prefill::Config chosen = sa_prefill::choose(p.m, p.n, p.k, group);
        if (!c.rows) c.rows = chosen.rows;
        if (!c.tokens) c.tokens = chosen.tokens;
        if (!c.splits) c.splits = chosen.splits;
    }
    if ((c.rows != 128 && c.rows != 256) || (c.tokens != 64 && c.tokens != 128))
        return sa::fail(SA_E_INVALID_ARGUMENT, "quant_prefill: no " + std::to_string(c.rows) + " x " +
                                                   std::to_string(c.tokens) + " tile (128 or 256 rows x 64 or 128 tokens)");
    if (c.splits != 1 && c.splits != 2 && c.splits != 4 && c.splits != 8)
        return sa::fail(SA_E_INVALID_ARGUMENT, "quant_prefill: splits must be 1, 2, 4 or 8, got " + std::to_string(c.splits));
    if (c.splits > 1 && !sa_cuda::device_traits().clusters)
        return sa::fail(SA_E_INVALID_ARGUMENT, "quant_prefill: a K split needs thread-block clusters (sm_90)");
    if (c.splits > p.k / group)
        return sa::fail(SA_E_INVALID_ARGUMENT, "quant_prefill: " + std::to_string(c.splits) + " splits of " +
                                                   std::to_string(p.k / group) + " scale groups");
    if (c.rows == 128) return c.tokens == 64 ? launch<Fmt, 4, 4>(p, c.splits, stream) : launch<Fmt, 4, 8>(p, c.splits, stream);
    return c.tokens == 64 ? launch<Fmt, 8, 8>(p, c.splits, stream) : launch<Fmt, 8, 16>(p, c.splits, stream);
}

}  // namespace

namespace sa_prefill {

bool wgmma_available() {
#if SA_HAVE_WGMMA
    return sa_cuda::device_traits().clusters;  // an sm_90 GPU, and the library carries sm_90a code
#else
    return false;
#endif
}

// The engine for an m-token product: wgmma from kWgMinTokens tokens where available (STEPAUDIO_PREFILL_WGMMA=0 / 1
// forces mma.sync / wgmma, the A/B knob), else quant_prefill.
// The wgmma kernel's shape: 256-row tiles where they alone fill the GPU; else 128-row tiles, with the K range split
// over a cluster of 2, 4 or 8 blocks until ~96 blocks run (each split keeping >= 4 scale groups).
WgShape choose_wg(int m, int n, int k, int group) {
    const int sms = sa_cuda::device_traits().sms > 0 ? sa_cuda::device_traits().sms : 132;
    const long long token_tiles = (m + kWgTokens - 1) / kWgTokens;
    if ((long long)((n + 255) / 256) * token_tiles >= sms) return {256, 1};
    const long long blocks = (long long)((n + 127) / 128) * token_tiles;
    int splits = 1;
    while (splits < kMaxSplits && blocks * splits < 96 && k / group >= 8 * splits) splits *= 2;
    return {128, splits};
}

int choose_engine(int m) {
    static const int forced = [] {
        const char *env = std::getenv("STEPAUDIO_PREFILL_WGMMA");
        return env && env[0] ? (env[0] == '0' ? 1 : 2) : 0;
    }();
    if (!wgmma_available()) return 1;
    if (forced) return forced;
    return m >= kWgMinTokens ? 2 : 1;
}

// The launch shape of the least modelled time over the 4 tiles x 4 splits: waves x (a block's MACs / its SM's rate
// + fixed cost), waves = ceil(blocks / resident blocks), x 1.2 for clusters of 4 or 8 over more than one wave. The
// rates (M MAC/µs per SM), the fixed cost (µs: launch, pipeline fill, epilogue; grows with the cluster size) and the
// 1.2 were fitted to the forced-shape sweep of quant_prefill_bench on the H100 (kernels/NOTES_QUANT.md, "Prefill
// GEMM"): on the 64 measured (format, linear, M) points the chosen shape is at most 2.5% slower than the best one.
Config choose(int m, int n, int k, int group) {
    struct Tile {
        int rows, tokens, per_sm;
        double rate;
    };
    static const Tile tiles[] = {{128, 64, 2, 0.8}, {256, 64, 1, 0.9}, {128, 128, 1, 1.0}, {256, 128, 1, 1.2}};
    constexpr double kFixed = 4.0, kFixedPerSplit = 1.0, kBigClusterWaves = 1.2;
    const sa_cuda::DeviceTraits &dev = sa_cuda::device_traits();
    const int sms = dev.sms > 0 ? dev.sms : 132;  // a failed device query: size for an H100 (nothing runs anyway)
    const int groups = k / group;
    Config best;
    double best_cost = 0;
    for (const Tile &tile : tiles) {
        const long long blocks_per_split = (long long)((n + tile.rows - 1) / tile.rows) * ((m + tile.tokens - 1) / tile.tokens);
        for (int s = 1; s <= kMaxSplits; s *= 2) {
            if (s > 1 && (!dev.clusters || s > groups)) break;
            const long long resident = (long long)sms * tile.per_sm;
            const long long waves = (blocks_per_split * s + resident - 1) / resident;
            const double macs = (double)tile.rows * tile.tokens * ((double)k / s);
            double cost = (double)waves * (macs / (tile.rate * 1e6 / tile.per_sm) + kFixed + kFixedPerSplit * s);
            if (s >= 4 && waves > 1) cost *= kBigClusterWaves;
            if (best.rows == 0 || cost < best_cost) {
                best_cost = cost;
                best.rows = tile.rows, best.tokens = tile.tokens, best.splits = s;
            }
        }
    }
    return best;
}

sa_status linear_w4a16(const uint16_t *x, const uint32_t *qweight, const uint16_t *scales, const uint8_t *zeros,
                       bool fp16_scales, uint16_t *y, int m, int n, int k, cudaStream_t stream, Config config) {
    if (m <= 0) return SA_OK;
    const Params p{x, reinterpret_cast<const uint8_t *>(qweight), scales, zeros, nullptr, y, m, n, k};
    if (fp16_scales)
        return zeros ? launch_shape<kW4Fp16Zeros>(p, SA_W4A16_GROUP, config, stream)
                     : launch_shape<kW4Fp16>(p, SA_W4A16_GROUP, config, stream);
    return zeros ? launch_shape<kW4Bf16Zeros>(p, SA_W4A16_GROUP, config, stream)
                 : launch_shape<kW4Bf16>(p, SA_W4A16_GROUP, config, stream);
}

sa_status linear_nf4(const uint16_t *x, const uint8_t *qweight, const void *absmax, const float *tables,
                     bool double_quant, uint16_t *y, int m, int n, int k, cudaStream_t stream, Config config) {
    if (m <= 0) return SA_OK;
    const Params p{x, qweight, absmax, nullptr, tables, y, m, n, k};
    return double_quant ? launch_shape<kNf4Dq>(p, SA_NF4_BLOCK, config, stream)
                        : launch_shape<kNf4F32>(p, SA_NF4_BLOCK, config, stream);
}

}  // namespace sa_prefill
