// linear_nf4.cu — y = x · Wᵀ with W a bitsandbytes NF4 weight in the kernel layout of stepaudio_native.h.
//
// Decode / skinny GEMM (M <= 16): two tensor-core kernels with the same per-unit arithmetic (kernels/NOTES_QUANT.md,
// "NF4 v4/v5" and "NF4 code ring": versions, predictions, measurements). Common to both:
//  * work unit = (16-row tile, one 64-block): thread (lane = 4·g + t) multiplies 8 B of row g and 8 B of row g + 8 at
//    byte 8t of the block, so the 4 threads of a row cover exactly one 64-block and each MMA's partial sum belongs to
//    one absmax, applied once per block in fp32;
//  * codes: warp w owns the contiguous 64-blocks [w·kb/8, (w+1)·kb/8) of every row of a tile and streams them through
//    a ring of cp.async stages in shared memory (WarpRing: 16-byte copies, 4 rows × 128 B per warp instruction, then
//    one LDS.64 per row and unit); beyond K = 16384 v4 falls back to 8-byte register loads (warp w: 64-blocks w,
//    w + 8, ...; ld.global.nc.L1::no_allocate, two batches of kBatch units in flight);
//  * lookup (kernels/nf4_dequant.cuh): a per-lane replicated table of bf16 pairs in shared memory, built by each
//    block while its first codes are in flight; one PRMT + one conflict-free LDS.32 per two weights, the word going
//    straight into an MMA A register. The double-quant absmax decode is bitsandbytes' (nested_map[code]·nested_absmax
//    + offset, two rounded fp32 operations), done per tile into shared memory ([64-block][g] = (row g, row g + 8):
//    one LDS.64 per unit);
//  * mma.m16n8k16 with W rows on the M side, tokens on the n = 8 side (one or two 8-token tiles), units multiplied
//    two at a time (two independent MMA chains); the logical k slots of a thread are its own loaded k's, and x (read
//    through the one pointer x, via L1) with the same mapping;
//  * the 8 warps' partial sums are reduced in shared memory and y is written once per tile through the epilogues of
//    linear_epilogue.cuh: plain bf16, the residual add, or SwiGLU — a SwiGLU tile reads 8 gate rows and the same
//    8 up rows (sa_epilogue::tile_row).
// v4, nf4_gemv (default): one tile per block (grid = tiles); the tile's absmax decoded in the prologue, 256 64-blocks
//    (16384 k) at a time (the register path re-decodes between segments).
// v5, nf4_gemv_stream: persistent blocks (as many as are resident), each warp's ring running on from one tile into
//    the next, so the copies of the next tile overlap the multiplies of this one; the table is built once per block,
//    the next tile's absmax loaded during this one, one barrier per tile. Used for K <= 4096 when the tiles fill
//    a wave of resident blocks (gate_up 16384 x 3072), where v4 blocks hold their whole tile in flight at once and so
//    load and multiply in lockstep waves (the dispatch in launch()).
// v1–v3 (persistent blocks with a per-tile barrier, the absmax and x fetched on the multiply path, 29–41% of copy
// bandwidth at M = 1) and the earlier v5 (register ring of units, absmax decoded per unit) are in NOTES_QUANT.md.
// Numerics: the kernels multiply bf16(quant_map[q]) by x on tensor cores and apply absmax to the fp32 sum;
// the reference (sa_cpu_linear_nf4) rounds quant_map[q]·absmax to bf16 per weight. Both round each weight once
// with a relative error below 2^-9, so results differ by a few bf16 ulps in relative L2 (checked in tests/native).
// M > 16 (prefill): the tensor-core GEMM of linear_quant_prefill.cu where sa_prefill::use_prefill() says so, else
// these kernels over 16-row slices of x (17–32 tokens on small weights).
// Programmatic dependent launch (kernels/cuda_common.cuh): the codes, absmax and tables never depend on the previous
// kernel, so they are loaded (and the table built, the first tile's absmax decoded) before pdl_wait(); x is read and y written
// only after it. x and y are not __restrict__ and x is read with plain loads: x was written by the previous kernel,
// so it must not go through the non-coherent path.
#include <string>

#include "cuda_common.cuh"
#include "linear_epilogue.cuh"
#include "linear_quant_prefill.h"
#include "nf4_common.h"
#include "nf4_dequant.cuh"

namespace {

constexpr int kWarps = 8, kThreads = 32 * kWarps;
constexpr int kTileRows = 16;
// Register budget: blocks per SM that ptxas must fit (a build-time knob for the register-pressure experiments).
#ifndef SA_NF4_BLOCKS_PER_SM
#define SA_NF4_BLOCKS_PER_SM 2
#endif
// Units per code batch for one / two 8-token tiles (two batches in flight).
#ifndef SA_NF4_BATCH
#define SA_NF4_BATCH 4
#endif
#ifndef SA_NF4_BATCH2
#define SA_NF4_BATCH2 4
#endif
// v4: multiply two units at a time (interleaved MMA chains).
#ifndef SA_NF4_PAIRS
#define SA_NF4_PAIRS 1
#endif
// Timing ablations (experiments only; every value but 0 gives wrong results). v5 only: 1 = no tile-end block barrier,
// 2 = no barrier and no reduction / store of y (1 and 2 act on the barrier-per-tile form: SA_NF4_STREAM_LAGGED=0 or
// two token tiles), 3 = no multiply (the ring, scales, barriers and reduction only; session 20's table). Both kernels,
// parts of the multiply (session 21): 4 = no pair-table loads (the PRMT word goes to the MMA), 5 = no MMA (a LOP3 +
// FADD per MMA keeps the table loads live), 6 = no x loads (x from the code words), 7 = no ring reads of the codes
// (codes from the unit's index; the copies still run).
#ifndef SA_NF4_ABLATE
#define SA_NF4_ABLATE 0
#endif
// v5 (persistent) is used when K <= 4096 and the tiles fill at least this many waves of resident v4 blocks (0: for
// every K <= 4096 launch — measured best in the decode step, NOTES_QUANT.md "NF4 v5 for every K <= 4096").
#ifndef SA_NF4_STREAM_WAVES
#define SA_NF4_STREAM_WAVES 0
#endif
constexpr int kSegBlocks = 256;  // 64-blocks whose decoded absmax are in shared memory at a time
constexpr int kSegUnits = kSegBlocks / kWarps;
constexpr int kDecodeUnroll = 8;  // absmax entries per thread loaded at once: K <= 8192 decodes in one round trip
// Dynamic shared memory: the pair table, nested_map, the scales of one segment ([64-block][g] float2).
constexpr int kNestedOffset = kNf4LutBytes;
constexpr int kScalesOffset = kNestedOffset + 256 * 4;
constexpr int kSmemMax = kScalesOffset + kSegBlocks * 8 * 8;
static_assert((kWarps * kTileRows * kTileRows + SA_EPILOGUE_MAX_M) * 4 <= kNf4LutBytes,
              "the partial sums and a folded norm's 1/rms reuse the table's space");

__device__ __forceinline__ uint2 load_stream8(const uint8_t *p) {
    uint2 v;
    asm volatile("ld.global.nc.L1::no_allocate.L2::256B.v2.u32 {%0,%1}, [%2];" : "=r"(v.x), "=r"(v.y) : "l"(p));
    return v;
}

// ---- shared by both kernels ------------------------------------------------------------------------------------------
// The multiply of one unit, or of two (interleaved: two independent MMA chains), into acc. Codes: 8 B of rows g and
// g + 8 (ca, cb) at byte 8t of the unit's 64-block blk; sc = the (row g, row g + 8) absmax. A missing second unit of a
// pair (two = false) gets zero x and a zero scale (its codes must be defined values), so it adds nothing.
template <int Tiles>
struct UnitMma {
    const uint8_t *lut;
    const uint16_t *x;
    int k, m, g, t;
    uint32_t lane_off;

    // x of this thread for unit blk: k = blk·64 + 16t .. +15 (8 bf16 pairs), for tokens g and g + 8.
    __device__ __forceinline__ void load_x(uint4 (&xv)[Tiles][2], int blk, bool ok) const {
#pragma unroll
        for (int tt = 0; tt < Tiles; ++tt) {
            const int token = tt * 8 + g;
            const uint4 *xp = reinterpret_cast<const uint4 *>(x + (size_t)token * k + blk * SA_NF4_BLOCK + 16 * t);
            if (SA_NF4_ABLATE == 6) {  // timing ablation: no x loads
                const uint32_t v = 0x3f803f80u ^ (uint32_t)(blk * 16 + t);
                xv[tt][0] = xv[tt][1] = make_uint4(v, v ^ 1u, v ^ 2u, v ^ 3u);
                continue;
            }
            xv[tt][0] = ok && token < m ? xp[0] : make_uint4(0, 0, 0, 0);
            xv[tt][1] = ok && token < m ? xp[1] : make_uint4(0, 0, 0, 0);
        }
    }
    __device__ __forceinline__ uint32_t table_pair(uint32_t w, int j) const {
        if (SA_NF4_ABLATE == 4) return __byte_perm(w, lane_off, 0x5504u | ((uint32_t)j << 4));  // no table load
        return nf4_pair(lut, w, j, lane_off);
    }
    // MMA step s (0..3) of one unit: code bytes 2s, 2s+1 (weights 16t + 4s .. +3) of rows g and g + 8.
    __device__ __forceinline__ void step(float (&part)[Tiles][4], uint2 ca, uint2 cb, const uint4 (&xv)[Tiles][2],
                                         int s) const {
        const uint32_t wa = s < 2 ? ca.x : ca.y, wb = s < 2 ? cb.x : cb.y;
        const int j = 2 * (s & 1);
        const uint32_t a0 = table_pair(wa, j), a2 = table_pair(wa, j + 1);
        const uint32_t a1 = table_pair(wb, j), a3 = table_pair(wb, j + 1);
#pragma unroll
        for (int tt = 0; tt < Tiles; ++tt) {
            const uint4 &xq = xv[tt][s >> 1];
            const uint32_t b0 = (s & 1) ? xq.z : xq.x, b1 = (s & 1) ? xq.w : xq.y;
            if (SA_NF4_ABLATE == 5)  // timing ablation: no MMA
                part[tt][0] += __uint_as_float(((a0 ^ a1 ^ a2) & (a3 ^ b0 ^ b1)) & 0x3fffffffu);
            else
                mma_bf16_16816(part[tt], a0, a1, a2, a3, b0, b1);
        }
    }
    __device__ __forceinline__ void one(float (&acc)[Tiles][4], uint2 ca, uint2 cb, float2 sc, int blk) const {
        uint4 xv[Tiles][2];
        load_x(xv, blk, true);
        float part[Tiles][4] = {};
#pragma unroll
        for (int s = 0; s < 4; ++s) step(part, ca, cb, xv, s);
#pragma unroll
        for (int tt = 0; tt < Tiles; ++tt) {  // c0,c1: row g, tokens 2t, 2t+1; c2,c3: row g + 8
            acc[tt][0] = fmaf(part[tt][0], sc.x, acc[tt][0]);
            acc[tt][1] = fmaf(part[tt][1], sc.x, acc[tt][1]);
            acc[tt][2] = fmaf(part[tt][2], sc.y, acc[tt][2]);
            acc[tt][3] = fmaf(part[tt][3], sc.y, acc[tt][3]);
        }
    }
    __device__ __forceinline__ void pair(float (&acc)[Tiles][4], uint2 ca0, uint2 cb0, float2 sc0, int blk0, uint2 ca1,
                                         uint2 cb1, float2 sc1, int blk1, bool two) const {
        uint4 xv0[Tiles][2], xv1[Tiles][2];
        load_x(xv0, blk0, true);
        load_x(xv1, blk1, two);
        if (!two) sc1 = make_float2(0.0f, 0.0f);
        float part0[Tiles][4] = {}, part1[Tiles][4] = {};
#pragma unroll
        for (int s = 0; s < 4; ++s) {
            step(part0, ca0, cb0, xv0, s);
            step(part1, ca1, cb1, xv1, s);
        }
#pragma unroll
        for (int tt = 0; tt < Tiles; ++tt) {
            acc[tt][0] = fmaf(part1[tt][0], sc1.x, fmaf(part0[tt][0], sc0.x, acc[tt][0]));
            acc[tt][1] = fmaf(part1[tt][1], sc1.x, fmaf(part0[tt][1], sc0.x, acc[tt][1]));
            acc[tt][2] = fmaf(part1[tt][2], sc1.y, fmaf(part0[tt][2], sc0.y, acc[tt][2]));
            acc[tt][3] = fmaf(part1[tt][3], sc1.y, fmaf(part0[tt][3], sc0.y, acc[tt][3]));
        }
    }
};

// The code ring (K <= 16384 in v4; always in v5). Instead of 8-byte register loads that touch 8 rows (8 cache lines)
// per warp instruction, warp w copies the tile's 64-blocks [w·kb/8, (w+1)·kb/8) — a contiguous range of every row —
// with 16-byte cp.async, each instruction 4 rows × 128 aligned bytes (4 lines), in stages of 16 rows × 4 64-blocks
// (2 KB) through kRingSlots slots; the fragments are then read with LDS.64. A warp reads only what it copied, so the
// ring needs no block barrier (cp.async.wait_group + __syncwarp). Slots 0 and 1 live in the unused upper halves of the
// pair table's 256-byte rows (slot q of warp w: rows (2w + q)·16 + r, row stride 256 B), further slots in a region of
// their own (row stride 128 B). Chunk c (16 B) of stage row r sits at chunk c ^ 2·(r & 3): the LDS.64 of a half-warp
// (rows g..g+3, bytes 8t of one 64-block) then hit 32 different banks, and the copies of one row 8 different chunks.
// Ring slots per warp for one / two 8-token tiles (build-time knobs; 3 and 4 slots, with their own shared memory,
// measured 0-17% slower at M = 1). More slots also mean more shared memory per block, so fewer resident blocks and
// more L1 left for x (two token tiles: x of 16 tokens at K = 3072 is 96 KB).
#ifndef SA_NF4_RING_SLOTS
#define SA_NF4_RING_SLOTS 2
#endif
#ifndef SA_NF4_RING_SLOTS2
#define SA_NF4_RING_SLOTS2 SA_NF4_RING_SLOTS
#endif
__host__ __device__ constexpr int ring_slots(int tiles) { return tiles == 1 ? SA_NF4_RING_SLOTS : SA_NF4_RING_SLOTS2; }
constexpr int kStageBlocks = 4;
constexpr int kExtraSlotBytes = kWarps * kTileRows * 128;  // per slot beyond the first two, all warps
static_assert(kNf4LutRowBytes == 256, "the ring's first two slots live in the pair table's spare half-rows");
static_assert(kWarps * 2 * kTileRows <= 256 && ring_slots(1) >= 2 && ring_slots(2) >= 2,
              "two slots per warp in the table's half-rows");

template <int kRingSlots>
struct WarpRing {
    int lo, hi, base0, stages;  // the warp's 64-blocks [lo, hi) of a tile, in stages from base0 (128-byte aligned)
    uint32_t slot01, extra;     // shared byte offsets of row 0 of the warp's slot 0 and of its first extra slot

    __device__ __forceinline__ void init(int warp, int kb, uint32_t extra_offset) {
        lo = warp * kb / kWarps, hi = (warp + 1) * kb / kWarps, base0 = lo & ~(kStageBlocks - 1);
        stages = hi > lo ? (hi - base0 + kStageBlocks - 1) / kStageBlocks : 0;
        slot01 = (uint32_t)(warp * 2 * kTileRows * kNf4LutRowBytes + 128);
        extra = extra_offset + (uint32_t)(warp * (kRingSlots - 2) * kTileRows * 128);
    }
    __device__ __forceinline__ uint32_t row0(int q) const {
        return q < 2 ? slot01 + q * kTileRows * kNf4LutRowBytes : extra + (q - 2) * kTileRows * 128;
    }
    __device__ __forceinline__ uint32_t stride(int q) const { return q < 2 ? kNf4LutRowBytes : 128; }
    // Lane's copies of the stage at 64-block `base` into slot q: chunk lane % 8 of rows lane / 8 + 4i, whose bytes
    // are src[i] + 32·base (src[i] = row start + 16·(lane % 8)).
    __device__ __forceinline__ void copy(const uint8_t *smem, int q, const uint8_t *const (&src)[4], int base,
                                         int lane) const {
        const int cr = lane / 8, cc = lane % 8, blk = base + cc / 2;
        if (blk < lo || blk >= hi) return;
        const uint32_t st = stride(q);
        const uint32_t d = (uint32_t)__cvta_generic_to_shared(smem) + row0(q) + cr * st + 16 * (cc ^ (2 * (cr & 3)));
#pragma unroll
        for (int i = 0; i < 4; ++i) cp_async16_l2_256(d + 4 * i * st, src[i] + (size_t)base * (SA_NF4_BLOCK / 2));
    }
    // Thread (g, t)'s codes of 64-block blk of the stage at `base` in slot q: 8 B of rows g and g + 8 at byte 8t.
    __device__ __forceinline__ void codes(const uint8_t *smem, int q, int base, int blk, int g, int t, uint2 &ca,
                                          uint2 &cb) const {
        if (SA_NF4_ABLATE == 7) {  // timing ablation: no ring reads
            const uint32_t v = 0x9e3779b9u * (uint32_t)(blk * 32 + 4 * g + t);
            ca = make_uint2(v, v >> 3), cb = make_uint2(v >> 5, v >> 7);
            return;
        }
        const uint32_t st = stride(q);
        const uint8_t *p = smem + row0(q) + g * st + 8 * t + 32 * ((blk - base) ^ (g & 3));
        ca = *reinterpret_cast<const uint2 *>(p);
        cb = *reinterpret_cast<const uint2 *>(p + 8 * st);
    }
    // Multiplies the stage at `base` from slot q: its units two at a time (Pairs) or one at a time; sc = the scales
    // [64-block][g] of the tile.
    template <bool Pairs, int Tiles>
    __device__ __forceinline__ void multiply(const UnitMma<Tiles> &mma, float (&acc)[Tiles][4], const uint8_t *smem,
                                             int q, int base, const float2 *sc) const {
        const int first = max(lo, base), end = min(hi, base + kStageBlocks);
        if constexpr (Pairs) {
#pragma unroll
            for (int p = 0; p < kStageBlocks / 2; ++p) {
                const int blk0 = first + 2 * p;
                if (blk0 >= end) break;  // warp-uniform
                const bool two = blk0 + 1 < end;
                uint2 ca0, cb0, ca1, cb1;
                codes(smem, q, base, blk0, mma.g, mma.t, ca0, cb0);
                codes(smem, q, base, two ? blk0 + 1 : blk0, mma.g, mma.t, ca1, cb1);
                mma.pair(acc, ca0, cb0, sc[blk0 * 8 + mma.g], blk0, ca1, cb1, sc[(two ? blk0 + 1 : blk0) * 8 + mma.g],
                         blk0 + 1, two);
            }
        } else {
#pragma unroll
            for (int j = 0; j < kStageBlocks; ++j) {
                const int blk = first + j;
                if (blk >= end) break;  // warp-uniform
                uint2 ca, cb;
                codes(smem, q, base, blk, mma.g, mma.t, ca, cb);
                mma.one(acc, ca, cb, sc[blk * 8 + mma.g], blk);
            }
        }
    }
};

// ---- v4: one tile per block ------------------------------------------------------------------------------------------
// One code batch (register path, K > 16384): 8 bytes of rows g and g + 8 for kBatch units.
template <int kBatch>
struct Codes {
    uint2 a[kBatch], b[kBatch];
};
// Ring-path smem beyond the scales: the extra ring slots.
__host__ __device__ constexpr int v4_extra_offset(int kb) { return kScalesOffset + (kb < kSegBlocks ? kb : kSegBlocks) * 8 * 8; }

template <int Tiles, bool DQ, bool Ring>
__global__ void __launch_bounds__(kThreads, SA_NF4_BLOCKS_PER_SM)
    nf4_gemv(const uint16_t *x, const uint8_t *__restrict__ qweight, const void *__restrict__ absmax,
             const float *__restrict__ tables, uint16_t *y, int m, int n, int k, int epi, sa_norm_fold fold) {
    const bool late = sa_epilogue::trigger_after_wait(epi, n, k);  // o: after the wait (linear_epilogue.cuh)
    pdl_launch_dependents(!late);
    constexpr int kBatch = Tiles == 1 ? SA_NF4_BATCH : SA_NF4_BATCH2;
    constexpr int kRingSlots = ring_slots(Tiles);
    static_assert(kSegUnits % (2 * kBatch) == 0, "a segment is a whole number of batch pairs");
    extern __shared__ __align__(16) uint8_t smem[];
    uint8_t *lut = smem;
    float *nested_map = reinterpret_cast<float *>(smem + kNestedOffset);
    float *scales = reinterpret_cast<float *>(smem + kScalesOffset);  // [64-block % kSegBlocks][g][row g, row g + 8]
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const int tile = blockIdx.x, kb = k / SA_NF4_BLOCK;
    const int units = (kb + kWarps - 1) / kWarps;  // per warp, block-uniform (the segment barriers)
    // W row of tile row i (linear_epilogue.cuh: consecutive rows, or a SwiGLU tile's gate and up rows); rows past n
    // read row n - 1 (valid memory) and are never stored.
    auto w_row = [&](int i) { return sa_epilogue::row_ok(tile, i, n, epi) ? sa_epilogue::tile_row(tile, i, n, epi) : n - 1; };

    // Register path: thread (g, t) loads 8 B of rows g and g + 8 at byte 8t of the warp's units' 64-blocks.
    const uint8_t *qa = nullptr, *qb = nullptr;
    if constexpr (!Ring) {
        qa = qweight + (size_t)w_row(g) * (k / 2) + 8 * t;
        qb = qweight + (size_t)w_row(g + 8) * (k / 2) + 8 * t;
    }
    auto load_codes = [&](Codes<kBatch> &c, int u0) {
#pragma unroll
        for (int u = 0; u < kBatch; ++u) {
            const int blk = warp + kWarps * (u0 + u);
            if (blk < kb) {
                c.a[u] = load_stream8(qa + (size_t)blk * (SA_NF4_BLOCK / 2));
                c.b[u] = load_stream8(qb + (size_t)blk * (SA_NF4_BLOCK / 2));
            } else {  // defined values: a missing second unit of a pair is multiplied (by zero x and scale)
                c.a[u] = c.b[u] = make_uint2(0, 0);
            }
        }
    };
    // Ring path: the first kRingSlots stages of the warp's range.
    WarpRing<kRingSlots> ring{};
    const uint8_t *src[4];
    if constexpr (Ring) {
        ring.init(warp, kb, v4_extra_offset(kb));
#pragma unroll
        for (int i = 0; i < 4; ++i) src[i] = qweight + (size_t)w_row(lane / 8 + 4 * i) * (k / 2) + 16 * (lane % 8);
    }
    auto issue_stage = [&](int s) {  // always commits a group (possibly empty): wait_group counts stay uniform
        if (s < ring.stages) ring.copy(smem, s % kRingSlots, src, ring.base0 + kStageBlocks * s, lane);
        cp_async_commit();
    };
    // Absmax of the tile's 64-blocks [blk0, blk0 + kSegBlocks): entry e = (block blk0 + e / 16, local row e % 16),
    // kDecodeUnroll entries per thread per chunk, loaded at once and then decoded into `scales`.
    struct ScaleChunk {
        uint32_t raw[kDecodeUnroll];  // u8 code, or fp32 bits without double quant
        float2 group[kDecodeUnroll];
    };
    auto load_scales = [&](ScaleChunk &c, int blk0, int e0) {
        const int entries = min(kb - blk0, kSegBlocks) * kTileRows;
#pragma unroll
        for (int i = 0; i < kDecodeUnroll; ++i) {
            const int e = e0 + i * kThreads + (int)threadIdx.x;
            if (e < entries) {
                const int64_t blk = (int64_t)w_row(e & 15) * kb + blk0 + (e >> 4);
                if (DQ) {
                    c.raw[i] = __ldg(static_cast<const uint8_t *>(absmax) + blk);
                    c.group[i] = __ldg(nf4_nested_groups(tables) + blk / SA_NF4_NESTED_BLOCK);
                } else {
                    c.raw[i] = __float_as_uint(__ldg(static_cast<const float *>(absmax) + blk));
                }
            }
        }
    };
    auto store_scales = [&](const ScaleChunk &c, int blk0, int e0) {
        const int entries = min(kb - blk0, kSegBlocks) * kTileRows;
#pragma unroll
        for (int i = 0; i < kDecodeUnroll; ++i) {
            const int e = e0 + i * kThreads + (int)threadIdx.x;
            if (e < entries) {
                const int r = e & 15;
                scales[(e >> 4) * 16 + (r & 7) * 2 + (r >> 3)] =
                    DQ ? nf4_double_quant_absmax(nested_map[c.raw[i]], c.group[i]) : __uint_as_float(c.raw[i]);
            }
        }
    };
    auto decode_segment = [&](int blk0, int e_first) {  // chunks from e_first on, load then store
        const int entries = min(kb - blk0, kSegBlocks) * kTileRows;
        for (int e0 = e_first; e0 < entries; e0 += kDecodeUnroll * kThreads) {
            ScaleChunk c;
            load_scales(c, blk0, e0);
            store_scales(c, blk0, e0);
        }
    };

    // Prologue, all before pdl_wait: the codes (both batches, or the first kRingSlots ring stages), the first absmax
    // chunk, the pair table and nested_map.
    Codes<kBatch> c0, c1;
    if constexpr (Ring) {
#pragma unroll
        for (int s = 0; s < kRingSlots; ++s) issue_stage(s);
    } else {
        load_codes(c0, 0);
        load_codes(c1, kBatch);
    }
    {
        ScaleChunk first;
        load_scales(first, 0, 0);
        nf4_build_pair_lut(lut, tables);
        if (DQ) nested_map[threadIdx.x] = __ldg(tables + 16 + threadIdx.x);
        __syncthreads();  // nested_map
        store_scales(first, 0, 0);
    }
    decode_segment(0, kDecodeUnroll * kThreads);  // K > 8192 only
    __syncthreads();  // pair table and scales
    pdl_wait();
    if (late) pdl_trigger();
    sa_epilogue::fold_prefetch(fold, m, k);

    float acc[Tiles][4] = {};
    const UnitMma<Tiles> mma{lut, x, k, m, g, t, 4u * lane};
    // Two units at a time (two token tiles in the register path: no registers left for a second unit's codes).
    constexpr bool kPairs = SA_NF4_PAIRS && (Tiles == 1 || Ring);
    if constexpr (Ring) {
        for (int s = 0; s < ring.stages; ++s) {
            cp_async_wait<kRingSlots - 1>();  // stage s has landed (this thread's copies) ...
            __syncwarp();                     // ... and every lane's
            ring.template multiply<kPairs>(mma, acc, smem, s % kRingSlots, ring.base0 + kStageBlocks * s,
                                           reinterpret_cast<const float2 *>(scales));
            __syncwarp();  // every lane has read the slot before it is refilled
            issue_stage(s + kRingSlots);
        }
        cp_async_wait<0>();  // (empty groups only) nothing may land in the table's space after the loop
    } else {
        const int my_units = kb > warp ? (kb - warp + kWarps - 1) / kWarps : 0;
        auto multiply_batch = [&](const Codes<kBatch> &c, int u0) {
            const float2 *sc = reinterpret_cast<const float2 *>(scales);
            if constexpr (kPairs) {
                static_assert(kBatch % 2 == 0, "units are multiplied in pairs");
#pragma unroll
                for (int u = 0; u < kBatch; u += 2) {
                    if (u0 + u >= my_units) break;  // warp-uniform
                    const bool two = u0 + u + 1 < my_units;
                    const int blk0 = warp + kWarps * (u0 + u), blk1 = two ? blk0 + kWarps : blk0;
                    mma.pair(acc, c.a[u], c.b[u], sc[(blk0 % kSegBlocks) * 8 + g], blk0, c.a[u + 1], c.b[u + 1],
                             sc[(blk1 % kSegBlocks) * 8 + g], blk1, two);
                }
            } else {
#pragma unroll
                for (int u = 0; u < kBatch; ++u) {
                    const int blk = warp + kWarps * (u0 + u);
                    if (blk >= kb) break;  // warp-uniform
                    mma.one(acc, c.a[u], c.b[u], sc[(blk % kSegBlocks) * 8 + g], blk);
                }
            }
        };
        for (int u0 = 0; u0 < units; u0 += 2 * kBatch) {
            if (u0 > 0 && u0 % kSegUnits == 0) {  // K > 16384: the next segment's absmax (block-uniform)
                __syncthreads();
                decode_segment(u0 * kWarps, 0);
                __syncthreads();
            }
            multiply_batch(c0, u0);
            load_codes(c0, u0 + 2 * kBatch);
            multiply_batch(c1, u0 + kBatch);
            load_codes(c1, u0 + 3 * kBatch);
        }
    }

    // Reduce the warps' partial sums over the table's space and write y once, in bf16.
    __syncthreads();
    float *partial = reinterpret_cast<float *>(smem);  // [warp][row][token]
    sa_epilogue::write_partials<Tiles>(partial + warp * kTileRows * 16, acc, g, t);
    float *fold_inv = partial + kWarps * kTileRows * 16;  // also in the table's space
    if (sa_epilogue::folds_in(fold)) sa_epilogue::fold_inverse(fold, m, k, fold_inv);
    __syncthreads();
    if (threadIdx.x < 128)
        sa_epilogue::reduce_store<kWarps>(partial, kTileRows * 16, threadIdx.x, y, epi, n, m, Tiles * 8, tile, fold,
                                          fold_inv);
}

// ---- v5: persistent blocks, the code ring streaming across tiles ---------------------------------------------------
// Block b owns tiles b, b + grid, ...; each warp's ring (above) runs on from one tile's stages into the next tile's,
// so the copies of the next tile are in flight while this one is multiplied. The pair table is built once per block;
// the absmax of tile ti + 1 are loaded into registers during tile ti and decoded into the other of two shared buffers
// at its end; the warps' partial sums go to one of two shared buffers (one for two token tiles: L1 room for x), one
// barrier per tile (two), and the tile's y is reduced and written while the warps go on with the next tile.
// K <= 4096 (<= 4 absmax entries per thread and tile).
constexpr int kStreamMaxKb = 64;
constexpr int kScaleRegs = kStreamMaxKb * kTileRows / kThreads;
constexpr int kPartialBytes = kWarps * kTileRows * 16 * 4;
// Partial-sum buffers of the two-token-tile kernel (a build-time knob): 1 saves 8 KB of shared memory per block, which
// lets the carveout leave L1 room for x of 12 tokens at 2 blocks per SM (2 x 80 KB + 92 KB of L1; with 2 buffers
// ~60 KB, and x of 9-16 tokens at K = 3072 is 54-96 KB, re-read by every tile), for one more block barrier per tile
// (before the partials are written, so that the previous tile's reduction has read them). Measured (H100, session
// 16, NOTES_QUANT.md): the 12-token NF4 forward 1.866 -> 1.800 ms; 1 block per SM with more L1 was far slower.
#ifndef SA_NF4_STREAM_PARTIALS2
#define SA_NF4_STREAM_PARTIALS2 1
#endif
__host__ __device__ constexpr int partial_buffers(int tiles) { return tiles == 1 ? 2 : SA_NF4_STREAM_PARTIALS2; }
static_assert(partial_buffers(2) == 1 || partial_buffers(2) == 2, "one or two partial-sum buffers");
__host__ __device__ constexpr int stream_partial_offset(int kb) { return kScalesOffset + 2 * kb * 8 * 8; }
__host__ __device__ constexpr int stream_inv_offset(int kb, int tiles) {
    return stream_partial_offset(kb) + partial_buffers(tiles) * kPartialBytes;
}
// The lagged reduction (one token tile; SA_NF4_STREAM_LAGGED=0 gives the barrier per tile back, two token tiles
// always have it): no block barrier per tile. Each warp decodes the absmax of its own 64-blocks (no other warp reads
// them); the partial sums go through two buffers guarded by mbarriers (full: the 8 warps have written tile ti's;
// empty: its reduction has read them), and tile ti - 1's reducer warps (sa_epilogue::reducer_slot: they rotate over
// the block) reduce it at the end of tile ti, so a warp waits only when it is a whole tile ahead of another. Why
// (NOTES_QUANT.md, session 20, H100): without its reduction the gate_up launch was 10% faster; lagging with warps 0-3
// reducing every tile did not pay (those warps set the block's end); lagged and rotating: gate_up 14.10 -> 13.85 µs,
// the NF4 decode step 1.385 -> 1.351 ms.
#ifndef SA_NF4_STREAM_LAGGED
#define SA_NF4_STREAM_LAGGED 1
#endif
__host__ __device__ constexpr bool stream_lagged(int tiles) { return tiles == 1 && SA_NF4_STREAM_LAGGED != 0; }
__host__ __device__ constexpr int stream_bar_offset(int kb, int tiles) {  // after a folded norm's 1/rms
    return stream_inv_offset(kb, tiles) + (SA_EPILOGUE_MAX_M * 4 + 15) / 16 * 16;
}
__host__ __device__ constexpr int stream_extra_offset(int kb, int tiles) {  // after the lagged reduction's 4 mbarriers
    return stream_bar_offset(kb, tiles) + (stream_lagged(tiles) ? 32 : 0);
}

template <int Tiles, bool DQ>
__global__ void __launch_bounds__(kThreads, SA_NF4_BLOCKS_PER_SM)
    nf4_gemv_stream(const uint16_t *x, const uint8_t *__restrict__ qweight, const void *__restrict__ absmax,
                    const float *__restrict__ tables, uint16_t *y, int m, int n, int k, int epi, sa_norm_fold fold) {
    const bool late = sa_epilogue::trigger_after_wait(epi, n, k);  // o: after the wait (linear_epilogue.cuh)
    pdl_launch_dependents(!late);
    constexpr int kRingSlots = ring_slots(Tiles);
    constexpr bool kLagged = stream_lagged(Tiles);
    extern __shared__ __align__(16) uint8_t smem[];
    uint8_t *lut = smem;
    float *nested_map = reinterpret_cast<float *>(smem + kNestedOffset);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const int kb = k / SA_NF4_BLOCK, tiles = (n + kTileRows - 1) / kTileRows, grid = gridDim.x;
    // Absmax entries e (= 64-block e / 16, row e % 16) this thread decodes: strided over the block (threadIdx.x + 256i
    // < 16·kb), or (lagged) over the warp's own 64-blocks (e_first + 32i < e_end).
    const int e_first = (warp * kb / kWarps) * kTileRows + lane, e_end = ((warp + 1) * kb / kWarps) * kTileRows;
    const uint32_t bars = smem_u32(smem + stream_bar_offset(kb, Tiles));  // full[2], empty[2] (lagged)
    const int my_tiles = (tiles - (int)blockIdx.x + grid - 1) / grid;  // block-uniform (the tile-end barriers)
    // Tile ti's scales ([64-block][g] float2) and partial sums ([warp][row][token]) in buffer ti & 1 (the partials in
    // buffer 0 when there is one).
    constexpr int kPartialBuffers = partial_buffers(Tiles);
    auto scales = [&](int ti) { return reinterpret_cast<float *>(smem + kScalesOffset + (ti & 1) * kb * 64); };
    auto partials = [&](int ti) {
        return reinterpret_cast<float *>(smem + stream_partial_offset(kb) + (ti % kPartialBuffers) * kPartialBytes);
    };
    // W row of row i of the block's tile ti (linear_epilogue.cuh); rows past n read row n - 1 and are never stored.
    auto w_row = [&](int ti, int i) {
        const int tile = (int)blockIdx.x + ti * grid;
        return sa_epilogue::row_ok(tile, i, n, epi) ? sa_epilogue::tile_row(tile, i, n, epi) : n - 1;
    };

    // Absmax of tile ti: entry e = threadIdx.x + i·256 = (64-block e / 16, row e % 16), loaded early into registers.
    struct ScaleRegs {
        uint32_t raw[kScaleRegs];  // u8 code, or fp32 bits without double quant
        float2 group[kScaleRegs];
    };
    auto load_scales = [&](ScaleRegs &c, int ti) {
        if (ti >= my_tiles) return;
#pragma unroll
        for (int i = 0; i < kScaleRegs; ++i) {
            const int e = kLagged ? e_first + i * 32 : i * kThreads + (int)threadIdx.x;
            if (kLagged ? e < e_end : e < kb * kTileRows) {
                const int64_t blk = (int64_t)w_row(ti, e & 15) * kb + (e >> 4);
                if (DQ) {
                    c.raw[i] = __ldg(static_cast<const uint8_t *>(absmax) + blk);
                    c.group[i] = __ldg(nf4_nested_groups(tables) + blk / SA_NF4_NESTED_BLOCK);
                } else {
                    c.raw[i] = __float_as_uint(__ldg(static_cast<const float *>(absmax) + blk));
                }
            }
        }
    };
    auto store_scales = [&](const ScaleRegs &c, int ti) {
        if (ti >= my_tiles) return;
        float *sc = scales(ti);
#pragma unroll
        for (int i = 0; i < kScaleRegs; ++i) {
            const int e = kLagged ? e_first + i * 32 : i * kThreads + (int)threadIdx.x;
            if (kLagged ? e < e_end : e < kb * kTileRows) {
                const int r = e & 15;
                sc[(e >> 4) * 16 + (r & 7) * 2 + (r >> 3)] =
                    DQ ? nf4_double_quant_absmax(nested_map[c.raw[i]], c.group[i]) : __uint_as_float(c.raw[i]);
            }
        }
    };

    // The issue cursor walks the warp's stages tile after tile, kRingSlots stages ahead of the multiplies; stage
    // number sig goes to slot sig % kRingSlots.
    WarpRing<kRingSlots> ring{};
    ring.init(warp, kb, stream_extra_offset(kb, Tiles));
    int issue_ti = 0, issue_s = 0, issue_sig = 0;
    const uint8_t *src[4];
    auto set_src = [&](int ti) {
        if (ti < my_tiles)
#pragma unroll
            for (int i = 0; i < 4; ++i) src[i] = qweight + (size_t)w_row(ti, lane / 8 + 4 * i) * (k / 2) + 16 * (lane % 8);
    };
    auto issue_next = [&] {  // always commits a group (possibly empty): wait_group counts stay uniform
        if (issue_ti < my_tiles && ring.stages > 0) {
            ring.copy(smem, issue_sig % kRingSlots, src, ring.base0 + kStageBlocks * issue_s, lane);
            if (++issue_s == ring.stages) {
                issue_s = 0;
                set_src(++issue_ti);
            }
        }
        cp_async_commit();
        ++issue_sig;
    };

    // Prologue, all before pdl_wait: the first kRingSlots stages, the pair table, nested_map, tile 0's scales decoded
    // and tile 1's loaded.
    set_src(0);
#pragma unroll
    for (int i = 0; i < kRingSlots; ++i) issue_next();
    ScaleRegs sr;
    load_scales(sr, 0);
    nf4_build_pair_lut(lut, tables);
    if (DQ) nested_map[threadIdx.x] = __ldg(tables + 16 + threadIdx.x);
    if (kLagged && threadIdx.x < 4)  // full: every thread; empty: the reducer warps' threads
        mbar_init(bars + 8 * threadIdx.x, threadIdx.x < 2 ? kThreads : 32 * sa_epilogue::reducer_warps(m, Tiles * 8));
    __syncthreads();  // nested_map, the mbarriers
    store_scales(sr, 0);
    load_scales(sr, 1);
    __syncthreads();  // pair table, tile 0's scales
    pdl_wait();
    if (late) pdl_trigger();
    sa_epilogue::fold_prefetch(fold, m, k);
    float *fold_inv = reinterpret_cast<float *>(smem + stream_inv_offset(kb, Tiles));

    const UnitMma<Tiles> mma{lut, x, k, m, g, t, 4u * lane};
    // Lagged: tile tj's reducer warps (sa_epilogue::reducer_slot) reduce it once the 8 warps have written it (full,
    // completion tj / 2 of buffer tj & 1), then release its buffer (empty).
    auto reduce_lagged = [&](int tj) {
        const int slot = sa_epilogue::reducer_slot<kWarps>(warp, tj, m, Tiles * 8);
        if (slot < 0) return;  // warp-uniform
        mbar_wait(bars + 8 * (tj & 1), (tj >> 1) & 1);
        sa_epilogue::reduce_store<kWarps>(partials(tj), kTileRows * 16, 32 * slot + lane, y, epi, n, m, Tiles * 8,
                                          (int)blockIdx.x + tj * grid, fold, fold_inv);
        mbar_arrive(bars + 16 + 8 * (tj & 1));
    };
    int sig = 0;
    for (int ti = 0; ti < my_tiles; ++ti) {
        float acc[Tiles][4] = {};
        const float2 *sc = reinterpret_cast<const float2 *>(scales(ti));
        for (int s = 0; s < ring.stages; ++s, ++sig) {
            cp_async_wait<kRingSlots - 1>();  // stage sig has landed (this thread's copies) ...
            __syncwarp();                     // ... and every lane's
            if (SA_NF4_ABLATE != 3)
                ring.template multiply<SA_NF4_PAIRS != 0>(mma, acc, smem, sig % kRingSlots,
                                                          ring.base0 + kStageBlocks * s, sc);
            __syncwarp();  // every lane has read the slot before it is refilled
            issue_next();
        }
        if constexpr (kLagged) {
            if (ti >= 2) mbar_wait(bars + 16 + 8 * (ti & 1), ((ti - 2) >> 1) & 1);  // tile ti - 2 was reduced
            sa_epilogue::write_partials<Tiles>(partials(ti) + warp * kTileRows * 16, acc, g, t);
            if (ti == 0 && sa_epilogue::folds_in(fold)) sa_epilogue::fold_inverse(fold, m, k, fold_inv);
            mbar_arrive(bars + 8 * (ti & 1));
            store_scales(sr, ti + 1);  // this warp's own 64-blocks: only its lanes read them
            __syncwarp();
            load_scales(sr, ti + 2);
            if (ti >= 1) reduce_lagged(ti - 1);
            continue;
        }
        // Tile ti done by this warp. Buffers ti & 1 (partials) and (ti + 1) & 1 (scales) were last read before the
        // previous barrier (the reduction of tile ti - 2, the multiplies of tile ti - 1), which every thread has passed.
        // One partial buffer: the reduction of tile ti - 1 read it after that barrier, so wait for it (block-uniform).
        if (kPartialBuffers == 1 && ti > 0 && SA_NF4_ABLATE != 1 && SA_NF4_ABLATE != 2) __syncthreads();
        float *partial = partials(ti);
        sa_epilogue::write_partials<Tiles>(partial + warp * kTileRows * 16, acc, g, t);
        store_scales(sr, ti + 1);
        if (ti == 0 && sa_epilogue::folds_in(fold)) sa_epilogue::fold_inverse(fold, m, k, fold_inv);  // once per block
        if (SA_NF4_ABLATE != 1 && SA_NF4_ABLATE != 2) __syncthreads();
        load_scales(sr, ti + 2);
        if (threadIdx.x < 128 && SA_NF4_ABLATE != 2)
            sa_epilogue::reduce_store<kWarps>(partial, kTileRows * 16, threadIdx.x, y, epi, n, m, Tiles * 8,
                                              (int)blockIdx.x + ti * grid, fold, fold_inv);
    }
    if (kLagged && my_tiles > 0) reduce_lagged(my_tiles - 1);
    cp_async_wait<0>();
}

template <int Tiles, bool DQ>
sa_status launch_stream(const uint16_t *x, const uint8_t *qw, const void *absmax, const float *tables, uint16_t *y,
                        int m, int n, int k, int epi, const sa_norm_fold &fold, cudaStream_t s) {
    auto kernel = &nf4_gemv_stream<Tiles, DQ>;
    const int kb = k / SA_NF4_BLOCK;
    constexpr int kRingSlots = ring_slots(Tiles);
    const int smem = stream_extra_offset(kb, Tiles) + (kRingSlots - 2) * kExtraSlotBytes;
    constexpr int kMaxSmem = stream_extra_offset(kStreamMaxKb, Tiles) + (kRingSlots - 2) * kExtraSlotBytes;
    // Above 48 KB of dynamic shared memory needs an opt-in, once per kernel (not a stream operation); the grid is
    // as many blocks as are resident at once (at the largest K) or the tile count.
    static int resident_per_sm = 0;
    static const cudaError_t opt_in = [&] {
        cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kMaxSmem);
        if (e == cudaSuccess)
            e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&resident_per_sm, kernel, kThreads, kMaxSmem);
        return e;
    }();
    if (opt_in != cudaSuccess || resident_per_sm < 1)
        return sa::fail(SA_E_CUDA, std::string("nf4_gemv_stream: cannot reserve shared memory: ") + cudaGetErrorName(opt_in));
    const sa_cuda::DeviceTraits &dev = sa_cuda::device_traits();
    const int tiles = (n + kTileRows - 1) / kTileRows, resident = resident_per_sm * (dev.sms > 0 ? dev.sms : 132);
    const dim3 grid((unsigned)(tiles < resident ? tiles : resident)), block(kThreads);
    return sa_cuda::launch_pdl_if(dev.quant_pdl, "nf4_gemv_stream", kernel, grid, block, (size_t)smem, s, x, qw,
                                  absmax, tables, y, m, n, k, epi, fold);
}

template <int Tiles, bool DQ, bool Ring>
sa_status launch_v4(const uint16_t *x, const uint8_t *qw, const void *absmax, const float *tables, uint16_t *y, int m,
                    int n, int k, int epi, const sa_norm_fold &fold, cudaStream_t s) {
    auto kernel = &nf4_gemv<Tiles, DQ, Ring>;
    constexpr int kRingSlots = ring_slots(Tiles);
    constexpr int kMaxSmem = Ring ? v4_extra_offset(kSegBlocks) + (kRingSlots - 2) * kExtraSlotBytes : kSmemMax;
    // Above 48 KB of dynamic shared memory needs an opt-in, once per kernel (not a stream operation).
    static const cudaError_t opt_in = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kMaxSmem);
    if (opt_in != cudaSuccess)
        return sa::fail(SA_E_CUDA, std::string("nf4_gemv: cannot reserve shared memory: ") + cudaGetErrorName(opt_in));
    const int kb = k / SA_NF4_BLOCK;
    const size_t smem = v4_extra_offset(kb) + (Ring ? (kRingSlots - 2) * kExtraSlotBytes : 0);
    const dim3 grid((unsigned)((n + kTileRows - 1) / kTileRows)), block(kThreads);
    return sa_cuda::launch_pdl_if(sa_cuda::device_traits().quant_pdl, "nf4_gemv", kernel, grid, block, smem, s, x, qw,
                                  absmax, tables, y, m, n, k, epi, fold);
}

// v5 (persistent) when K <= 4096 — there a v4 block holds its whole tile in flight at once, so v4's blocks load and
// multiply in lockstep waves (measured: 8192 x 3072 -18%, gate_up 16384 x 3072 -19% against v4 with the ring; and in
// the decode step also for the single-wave qkv and o: -68 µs per token); else v4, with the code ring for K <= 16384
// (the register path beyond: its absmax segments need block barriers between units).
template <int Tiles, bool DQ>
sa_status launch(const uint16_t *x, const uint8_t *qw, const void *absmax, const float *tables, uint16_t *y, int m,
                 int n, int k, int epi, const sa_norm_fold &fold, cudaStream_t s) {
    const sa_cuda::DeviceTraits &dev = sa_cuda::device_traits();
    const int tiles = (n + kTileRows - 1) / kTileRows, kb = k / SA_NF4_BLOCK;
    if (kb <= kStreamMaxKb &&
        (int64_t)tiles >= (int64_t)SA_NF4_STREAM_WAVES * SA_NF4_BLOCKS_PER_SM * (dev.sms > 0 ? dev.sms : 132))
        return launch_stream<Tiles, DQ>(x, qw, absmax, tables, y, m, n, k, epi, fold, s);
    if (kb <= kSegBlocks) return launch_v4<Tiles, DQ, true>(x, qw, absmax, tables, y, m, n, k, epi, fold, s);
    return launch_v4<Tiles, DQ, false>(x, qw, absmax, tables, y, m, n, k, epi, fold, s);
}

}  // namespace

SA_API sa_status sa_cuda_linear_nf4(const uint16_t *x, const uint8_t *qweight, const void *absmax, const float *tables,
                                    int32_t double_quant, uint16_t *y, int32_t m, int32_t n, int32_t k, int32_t epilogue,
                                    const sa_norm_fold *fold, void *stream) {
    if (!x || !qweight || !absmax || !tables || !y || m < 0 || n <= 0 || k <= 0)
        return sa::fail(SA_E_INVALID_ARGUMENT, "sa_cuda_linear_nf4: null pointer or bad size");
    if (k % SA_NF4_BLOCK != 0)
        return sa::fail(SA_E_INVALID_ARGUMENT, "sa_cuda_linear_nf4: K = " + std::to_string(k) + " is not a multiple of 64");
    if ((int64_t)n * (k / SA_NF4_BLOCK) > (int64_t)UINT32_MAX)  // 64-blocks are indexed in 32 bits
        return sa::fail(SA_E_INVALID_ARGUMENT, "sa_cuda_linear_nf4: N = " + std::to_string(n) + ", K = " +
                                                   std::to_string(k) + " has more than 2^32 64-blocks");
    if ((reinterpret_cast<uintptr_t>(x) | reinterpret_cast<uintptr_t>(qweight)) & 15u)
        return sa::fail(SA_E_INVALID_ARGUMENT, "sa_cuda_linear_nf4: x and qweight must be 16-byte aligned");
    const sa_status epilogue_ok = sa_epilogue::check_host_args("sa_cuda_linear_nf4", epilogue, fold, x, y, m, n, k);
    if (epilogue_ok != SA_OK) return epilogue_ok;
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    const bool dq = double_quant != 0;
    const sa_norm_fold f = sa_epilogue::fold_value(fold);  // m <= 16 when set: one slice below
    if (sa_prefill::use_prefill(m, n, k))  // prefill: the tensor-core GEMM of linear_quant_prefill.cu
        return sa_prefill::linear_nf4(x, qweight, absmax, tables, dq, y, m, n, k, s);
    for (int r0 = 0; r0 < m; r0 += 16) {  // M > 16: 16-row slices (see the file comment)
        const int mm = m - r0 < 16 ? m - r0 : 16;
        const uint16_t *xs = x + (int64_t)r0 * k;
        uint16_t *ys = y + (int64_t)r0 * n;
        const sa_status st = mm <= 8 ? (dq ? launch<1, true>(xs, qweight, absmax, tables, ys, mm, n, k, epilogue, f, s)
                                              : launch<1, false>(xs, qweight, absmax, tables, ys, mm, n, k, epilogue, f, s))
                                     : (dq ? launch<2, true>(xs, qweight, absmax, tables, ys, mm, n, k, epilogue, f, s)
                                           : launch<2, false>(xs, qweight, absmax, tables, ys, mm, n, k, epilogue, f, s));
        if (st != SA_OK) return st;
    }
    return SA_OK;
}
