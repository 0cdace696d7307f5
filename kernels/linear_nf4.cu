// linear_nf4.cu — y = x · Wᵀ with W a bitsandbytes NF4 weight in the kernel layout of stepaudio_native.h.
//
// Decode / skinny GEMM (M <= 16): two tensor-core kernels with the same per-unit arithmetic (kernels/NOTES_QUANT.md,
// "NF4 v4/v5": versions, predictions, measurements). Common to both:
//  * work unit = (16-row tile, one 64-block): warp w takes the 64-blocks w, w + 8, ... of a tile's 16 rows, so a
//    block reads each row front to back; thread (lane = 4·g + t) loads 8 B of row g and 8 B of row g + 8 at byte 8t
//    of the block (ld.global.nc.L1::no_allocate), so the 4 threads of a row cover exactly one 64-block and each
//    MMA's partial sum belongs to one absmax, applied once per block in fp32;
//  * lookup (kernels/nf4_dequant.cuh): a per-lane replicated table of bf16 pairs in shared memory, built by each
//    block while its first codes are in flight; one PRMT + one conflict-free LDS.32 per two weights, the word going
//    straight into an MMA A register. The double-quant absmax decode is bitsandbytes' (nested_map[code]·nested_absmax
//    + offset, two rounded fp32 operations);
//  * mma.m16n8k16 with W rows on the M side, tokens on the n = 8 side (one or two 8-token tiles); the logical k slots
//    of a thread are its own loaded k's, and x (read through the one pointer x, via L1) with the same mapping;
//  * the 8 warps' partial sums are reduced in shared memory and y is written once per tile (the end of nf4_gemv,
//    end_tile in nf4_gemv_stream) through the epilogues of linear_epilogue.cuh: plain bf16, the residual add, or
//    SwiGLU — a SwiGLU tile reads 8 gate rows and the same 8 up rows (sa_epilogue::tile_row).
// v4, nf4_gemv (default): one tile per block (grid = tiles). Codes stream through two register batches of kBatch
//    units, both issued first, so at K <= 4096 a block has its whole tile in flight at once (one round trip); a batch
//    is refilled right after it has been multiplied, units are multiplied two at a time (two independent MMA chains).
//    The tile's absmax are decoded in the prologue into shared memory ([64-block][g] = (row g, row g + 8): one LDS.64
//    per unit), 256 64-blocks (16384 k) at a time: a K > 16384 tile re-decodes between segments.
// v5, nf4_gemv_stream: persistent blocks (as many as are resident) streaming a ring of kRing units per warp across
//    their tiles, so the loads of the next tile overlap the multiplies of this one; the table is built once per
//    block, the absmax decoded per unit (codes loaded with the weight codes, nested groups through L1), one barrier
//    per tile. Used for K <= 4096 when the tiles fill >= 3 waves (gate_up 16384 x 3072), where v4's one-round-trip
//    blocks load and multiply in lockstep waves; elsewhere v4 measured faster (the dispatch in launch()).
// v1–v3 (persistent blocks with a per-tile barrier, the absmax and x fetched on the multiply path, 29–41% of copy
// bandwidth at M = 1) are described in NOTES_QUANT.md.
// Numerics: the kernels multiply bf16(quant_map[q]) by x on tensor cores and apply absmax to the fp32 sum;
// the reference (sa_cpu_linear_nf4) rounds quant_map[q]·absmax to bf16 per weight. Both round each weight once
// with a relative error below 2^-9, so results differ by a few bf16 ulps in relative L2 (checked in tests/native).
// M > 16 (prefill): the tensor-core GEMM of linear_quant_prefill.cu where sa_prefill::use_prefill() says so, else
// these kernels over 16-row slices of x (17–32 tokens on small weights).
// Programmatic dependent launch (kernels/cuda_common.cuh): the codes, absmax and tables never depend on the previous
// kernel, so they are loaded (and the table built, v4's absmax decoded) before pdl_wait(); x is read and y written
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
// v5 (persistent) is used when K <= 4096 and the tiles fill at least this many waves of resident blocks, else v4.
#ifndef SA_NF4_STREAM_WAVES
#define SA_NF4_STREAM_WAVES 3
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

// ---- v4: one tile per block ------------------------------------------------------------------------------------------
// One code batch: 8 bytes of rows g and g + 8 for kBatch units.
template <int kBatch>
struct Codes {
    uint2 a[kBatch], b[kBatch];
};

template <int Tiles, bool DQ>
__global__ void __launch_bounds__(kThreads, SA_NF4_BLOCKS_PER_SM)
    nf4_gemv(const uint16_t *x, const uint8_t *__restrict__ qweight, const void *__restrict__ absmax,
             const float *__restrict__ tables, uint16_t *y, int m, int n, int k, int epi, sa_norm_fold fold) {
    pdl_launch_dependents();
    constexpr int kBatch = Tiles == 1 ? SA_NF4_BATCH : SA_NF4_BATCH2;
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
    const int ra = w_row(g), rb = w_row(g + 8);
    const uint8_t *qa = qweight + (size_t)ra * (k / 2) + 8 * t, *qb = qweight + (size_t)rb * (k / 2) + 8 * t;
    const uint32_t lane_off = 4 * lane;

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

    // Prologue, all before pdl_wait: both code batches, the first absmax chunk, the pair table and nested_map.
    Codes<kBatch> c0, c1;
    load_codes(c0, 0);
    load_codes(c1, kBatch);
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
    sa_epilogue::fold_prefetch(fold, m, k);

    float acc[Tiles][4];
#pragma unroll
    for (int tt = 0; tt < Tiles; ++tt) acc[tt][0] = acc[tt][1] = acc[tt][2] = acc[tt][3] = 0.0f;
    // Two units at a time, interleaved (two independent MMA chains); a missing second unit (odd count, or a warp one
    // 64-block short) gets zero x and a zero scale, so it adds nothing.
    constexpr bool kPairs = SA_NF4_PAIRS && Tiles == 1;  // two token tiles: no registers left for a second unit
    static_assert(kBatch % 2 == 0, "units are multiplied in pairs");
    const int my_units = kb > warp ? (kb - warp + kWarps - 1) / kWarps : 0;
    auto multiply_pairs = [&](const Codes<kBatch> &c, int u0) {
#pragma unroll
        for (int u = 0; u < kBatch; u += 2) {
            if (u0 + u >= my_units) break;  // warp-uniform
            const bool two = u0 + u + 1 < my_units;
            const int blk0 = warp + kWarps * (u0 + u), blk1 = blk0 + kWarps;
            const float2 sc0 = reinterpret_cast<const float2 *>(scales)[(blk0 % kSegBlocks) * 8 + g];
            const float2 sc1 = two ? reinterpret_cast<const float2 *>(scales)[(blk1 % kSegBlocks) * 8 + g]
                                   : make_float2(0.0f, 0.0f);
            uint4 xv[2][Tiles][2];
#pragma unroll
            for (int h = 0; h < 2; ++h)
#pragma unroll
                for (int tt = 0; tt < Tiles; ++tt) {
                    const int token = tt * 8 + g;
                    const bool ok = token < m && (h == 0 || two);
                    const uint4 *xp = reinterpret_cast<const uint4 *>(x + (size_t)token * k +
                                                                      (h ? blk1 : blk0) * SA_NF4_BLOCK + 16 * t);
                    xv[h][tt][0] = ok ? xp[0] : make_uint4(0, 0, 0, 0);
                    xv[h][tt][1] = ok ? xp[1] : make_uint4(0, 0, 0, 0);
                }
            float part[2][Tiles][4];
#pragma unroll
            for (int h = 0; h < 2; ++h)
#pragma unroll
                for (int tt = 0; tt < Tiles; ++tt) part[h][tt][0] = part[h][tt][1] = part[h][tt][2] = part[h][tt][3] = 0.0f;
#pragma unroll
            for (int s = 0; s < 4; ++s)
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                    // MMA step s: code bytes 2s, 2s+1 (weights 16t + 4s .. +3) of rows g and g + 8.
                    const uint32_t wa = s < 2 ? c.a[u + h].x : c.a[u + h].y, wb = s < 2 ? c.b[u + h].x : c.b[u + h].y;
                    const int j = 2 * (s & 1);
                    const uint32_t a0 = nf4_pair(lut, wa, j, lane_off), a2 = nf4_pair(lut, wa, j + 1, lane_off);
                    const uint32_t a1 = nf4_pair(lut, wb, j, lane_off), a3 = nf4_pair(lut, wb, j + 1, lane_off);
#pragma unroll
                    for (int tt = 0; tt < Tiles; ++tt) {
                        const uint4 &xq = xv[h][tt][s >> 1];
                        const uint32_t b0 = (s & 1) ? xq.z : xq.x, b1 = (s & 1) ? xq.w : xq.y;
                        mma_bf16_16816(part[h][tt], a0, a1, a2, a3, b0, b1);
                    }
                }
#pragma unroll
            for (int tt = 0; tt < Tiles; ++tt) {  // c0,c1: row g, tokens 2t, 2t+1; c2,c3: row g + 8
                acc[tt][0] = fmaf(part[1][tt][0], sc1.x, fmaf(part[0][tt][0], sc0.x, acc[tt][0]));
                acc[tt][1] = fmaf(part[1][tt][1], sc1.x, fmaf(part[0][tt][1], sc0.x, acc[tt][1]));
                acc[tt][2] = fmaf(part[1][tt][2], sc1.y, fmaf(part[0][tt][2], sc0.y, acc[tt][2]));
                acc[tt][3] = fmaf(part[1][tt][3], sc1.y, fmaf(part[0][tt][3], sc0.y, acc[tt][3]));
            }
        }
    };
    auto multiply = [&](const Codes<kBatch> &c, int u0) {
#pragma unroll
        for (int u = 0; u < kBatch; ++u) {
            const int blk = warp + kWarps * (u0 + u);
            if (blk >= kb) break;  // warp-uniform
            const float2 sc = reinterpret_cast<const float2 *>(scales)[(blk % kSegBlocks) * 8 + g];
            // x of this thread: k = blk·64 + 16t .. +15 (8 bf16 pairs), for tokens g and g + 8.
            uint4 xv[Tiles][2];
#pragma unroll
            for (int tt = 0; tt < Tiles; ++tt) {
                const int token = tt * 8 + g;
                const uint4 *xp = reinterpret_cast<const uint4 *>(x + (size_t)token * k + blk * SA_NF4_BLOCK + 16 * t);
                xv[tt][0] = token < m ? xp[0] : make_uint4(0, 0, 0, 0);
                xv[tt][1] = token < m ? xp[1] : make_uint4(0, 0, 0, 0);
            }
            float part[Tiles][4];
#pragma unroll
            for (int tt = 0; tt < Tiles; ++tt) part[tt][0] = part[tt][1] = part[tt][2] = part[tt][3] = 0.0f;
#pragma unroll
            for (int s = 0; s < 4; ++s) {
                // MMA step s: code bytes 2s, 2s+1 (weights 16t + 4s .. +3) of rows g and g + 8.
                const uint32_t wa = s < 2 ? c.a[u].x : c.a[u].y, wb = s < 2 ? c.b[u].x : c.b[u].y;
                const int j = 2 * (s & 1);
                const uint32_t a0 = nf4_pair(lut, wa, j, lane_off), a2 = nf4_pair(lut, wa, j + 1, lane_off);
                const uint32_t a1 = nf4_pair(lut, wb, j, lane_off), a3 = nf4_pair(lut, wb, j + 1, lane_off);
#pragma unroll
                for (int tt = 0; tt < Tiles; ++tt) {
                    const uint4 &xq = xv[tt][s >> 1];
                    const uint32_t b0 = (s & 1) ? xq.z : xq.x, b1 = (s & 1) ? xq.w : xq.y;
                    mma_bf16_16816(part[tt], a0, a1, a2, a3, b0, b1);
                }
            }
#pragma unroll
            for (int tt = 0; tt < Tiles; ++tt) {  // c0,c1: row g, tokens 2t, 2t+1; c2,c3: row g + 8
                acc[tt][0] = fmaf(part[tt][0], sc.x, acc[tt][0]);
                acc[tt][1] = fmaf(part[tt][1], sc.x, acc[tt][1]);
                acc[tt][2] = fmaf(part[tt][2], sc.y, acc[tt][2]);
                acc[tt][3] = fmaf(part[tt][3], sc.y, acc[tt][3]);
            }
        }
    };
    for (int u0 = 0; u0 < units; u0 += 2 * kBatch) {
        if (u0 > 0 && u0 % kSegUnits == 0) {  // K > 16384: the next segment's absmax (block-uniform)
            __syncthreads();
            decode_segment(u0 * kWarps, 0);
            __syncthreads();
        }
        if constexpr (kPairs) multiply_pairs(c0, u0);
        else multiply(c0, u0);
        load_codes(c0, u0 + 2 * kBatch);
        if constexpr (kPairs) multiply_pairs(c1, u0 + kBatch);
        else multiply(c1, u0 + kBatch);
        load_codes(c1, u0 + 3 * kBatch);
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

// ---- v5: persistent blocks, one ring of units streaming across tiles -----------------------------------------------
// Block b owns tiles b, b + grid, ...; warp w's units are the 64-blocks w, w + 8, ... of each of them in turn, and
// the codes and absmax codes of the next kRing units are always in flight (loaded right after the unit they replace
// in the ring is multiplied), across tile boundaries. The pair table is built once per block. The absmax is decoded
// per unit (nested_map in shared memory, the nested group pair through L1: the next tile's groups are prefetched
// there, and x once per block), so nothing is staged per tile; at a tile's end the warps' partial sums go to one of
// two shared buffers, one barrier, and the tile's y is reduced and written while the warps go on with the next tile.
#ifndef SA_NF4_RING
#define SA_NF4_RING 6
#endif
#ifndef SA_NF4_RING2
#define SA_NF4_RING2 4
#endif
constexpr int kStreamNestedOffset = kNf4LutBytes;
constexpr int kStreamPartialOffset = kStreamNestedOffset + 256 * 4;
constexpr int kStreamInvOffset = kStreamPartialOffset + 2 * kWarps * kTileRows * 16 * 4;  // a folded norm's 1/rms
constexpr int kStreamSmem = kStreamInvOffset + SA_EPILOGUE_MAX_M * 4;

template <int Tiles, bool DQ>
__global__ void __launch_bounds__(kThreads, SA_NF4_BLOCKS_PER_SM)
    nf4_gemv_stream(const uint16_t *x, const uint8_t *__restrict__ qweight, const void *__restrict__ absmax,
                    const float *__restrict__ tables, uint16_t *y, int m, int n, int k, int epi, sa_norm_fold fold) {
    pdl_launch_dependents();
    constexpr int kRing = Tiles == 1 ? SA_NF4_RING : SA_NF4_RING2;
    extern __shared__ __align__(16) uint8_t smem[];
    uint8_t *lut = smem;
    float *nested_map = reinterpret_cast<float *>(smem + kStreamNestedOffset);
    float *partials = reinterpret_cast<float *>(smem + kStreamPartialOffset);  // [tile & 1][warp][row][token]
    float *fold_inv = reinterpret_cast<float *>(smem + kStreamInvOffset);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const int kb = k / SA_NF4_BLOCK, tiles = (n + kTileRows - 1) / kTileRows, grid = gridDim.x;
    const int upw = (kb + kWarps - 1) / kWarps;  // units per warp and tile
    const int my_tiles = (tiles - (int)blockIdx.x + grid - 1) / grid;
    const int total = my_tiles * upw;  // units per warp, block-uniform (the tile-end barriers)
    const uint32_t lane_off = 4 * lane;
    const float2 *groups = nf4_nested_groups(tables);

    // A cursor walks this warp's units in order: the 64-blocks warp, warp + 8, ... of the block's tile ti = 0, then of
    // ti = 1, ...; ia, ib = the 64-block indices of rows g and g + 8 (row-major over [n, K/64], 32-bit: the host
    // checks that they fit), the rows clamped so that a ragged tile loads valid memory. Advancing is a few adds; the
    // rows are recomputed only when the cursor enters the next tile.
    struct Cursor {
        int ti, slot, blk;  // blk >= kb: no unit (this warp is one block short, or past the last tile)
        uint32_t ia, ib;
    };
    // W row of row i of the block's tile ti (linear_epilogue.cuh); rows past n read row n - 1 and are never stored.
    auto w_row = [&](int ti, int i) {
        const int tile = (int)blockIdx.x + ti * grid;
        return sa_epilogue::row_ok(tile, i, n, epi) ? sa_epilogue::tile_row(tile, i, n, epi) : n - 1;
    };
    auto enter_tile = [&](Cursor &c, int ti) {
        c.ti = ti, c.slot = 0, c.blk = ti < my_tiles ? warp : kb;  // past the last tile: never valid
        c.ia = (uint32_t)w_row(ti, g) * (uint32_t)kb + warp;
        c.ib = (uint32_t)w_row(ti, g + 8) * (uint32_t)kb + warp;
    };
    auto advance = [&](Cursor &c) {
        if (++c.slot == upw) {  // block-uniform
            enter_tile(c, c.ti + 1);
        } else {
            c.blk += kWarps, c.ia += kWarps, c.ib += kWarps;
        }
    };
    // The groups of tile ti into L1 (double quant): a handful of 128-byte lines, one per thread, for each 8-row half
    // of the tile (contiguous W rows, also for a SwiGLU tile).
    auto prefetch_groups = [&](int ti) {
        if (!DQ || ti >= my_tiles) return;
        const int half = threadIdx.x >= kThreads / 2, i = threadIdx.x % (kThreads / 2);
        const int64_t first = (int64_t)w_row(ti, 8 * half) * kb / SA_NF4_NESTED_BLOCK;
        const int64_t last = ((int64_t)(w_row(ti, 8 * half + 7) + 1) * kb - 1) / SA_NF4_NESTED_BLOCK;
        const int lines = (int)((last - first) * 8 / 128) + 2;
        if (i < lines)
            prefetch_l1(reinterpret_cast<const uint8_t *>(groups + first) + min((int64_t)i * 128, (last - first) * 8));
    };

    uint2 ca[kRing], cb[kRing];
    uint32_t raw_a[kRing], raw_b[kRing];  // absmax: u8 codes, or fp32 bits without double quant
    const uint8_t *q_t = qweight + 8 * t;
    auto load = [&](int i, const Cursor &u) {
        if (u.blk < kb) {
            ca[i] = load_stream8(q_t + (uint64_t)u.ia * (SA_NF4_BLOCK / 2));
            cb[i] = load_stream8(q_t + (uint64_t)u.ib * (SA_NF4_BLOCK / 2));
            if (DQ) {
                raw_a[i] = __ldg(static_cast<const uint8_t *>(absmax) + u.ia);
                raw_b[i] = __ldg(static_cast<const uint8_t *>(absmax) + u.ib);
            } else {
                raw_a[i] = __float_as_uint(__ldg(static_cast<const float *>(absmax) + u.ia));
                raw_b[i] = __float_as_uint(__ldg(static_cast<const float *>(absmax) + u.ib));
            }
        }
    };

    // Prologue, all before pdl_wait: the first kRing units, the pair table, nested_map, the first tiles' groups.
    Cursor lc, mc;  // the load cursor runs kRing units ahead of the multiply cursor
    enter_tile(lc, 0);
    enter_tile(mc, 0);
#pragma unroll
    for (int i = 0; i < kRing; ++i) {
        load(i, lc);
        advance(lc);
    }
    nf4_build_pair_lut(lut, tables);
    if (DQ) nested_map[threadIdx.x] = __ldg(tables + 16 + threadIdx.x);
    prefetch_groups(0);
    prefetch_groups(1);
    __syncthreads();
    pdl_wait();
    sa_epilogue::fold_prefetch(fold, m, k);
    const int x_rows = min(m, Tiles * 8);
    if (x_rows * k <= 4 * kThreads * 64)  // x is read again for every tile: pull it into L1 once (<= 128 KB)
        for (int i = threadIdx.x; i < x_rows * k / 64; i += kThreads) prefetch_l1(x + (size_t)i * 64);

    float acc[Tiles][4];
#pragma unroll
    for (int tt = 0; tt < Tiles; ++tt) acc[tt][0] = acc[tt][1] = acc[tt][2] = acc[tt][3] = 0.0f;
    auto multiply = [&](int i, const Cursor &u) {
        float sa, sb;
        if (DQ) {
            const float2 ga = __ldg(groups + u.ia / SA_NF4_NESTED_BLOCK);
            const float2 gb = __ldg(groups + u.ib / SA_NF4_NESTED_BLOCK);
            sa = nf4_double_quant_absmax(nested_map[raw_a[i]], ga);
            sb = nf4_double_quant_absmax(nested_map[raw_b[i]], gb);
        } else {
            sa = __uint_as_float(raw_a[i]);
            sb = __uint_as_float(raw_b[i]);
        }
        // x of this thread: k = blk·64 + 16t .. +15 (8 bf16 pairs), for tokens g and g + 8.
        uint4 xv[Tiles][2];
#pragma unroll
        for (int tt = 0; tt < Tiles; ++tt) {
            const int token = tt * 8 + g;
            const uint4 *xp = reinterpret_cast<const uint4 *>(x + (size_t)token * k + u.blk * SA_NF4_BLOCK + 16 * t);
            xv[tt][0] = token < m ? xp[0] : make_uint4(0, 0, 0, 0);
            xv[tt][1] = token < m ? xp[1] : make_uint4(0, 0, 0, 0);
        }
        float part[Tiles][4];
#pragma unroll
        for (int tt = 0; tt < Tiles; ++tt) part[tt][0] = part[tt][1] = part[tt][2] = part[tt][3] = 0.0f;
#pragma unroll
        for (int s = 0; s < 4; ++s) {
            // MMA step s: code bytes 2s, 2s+1 (weights 16t + 4s .. +3) of rows g and g + 8.
            const uint32_t wa = s < 2 ? ca[i].x : ca[i].y, wb = s < 2 ? cb[i].x : cb[i].y;
            const int j = 2 * (s & 1);
            const uint32_t a0 = nf4_pair(lut, wa, j, lane_off), a2 = nf4_pair(lut, wa, j + 1, lane_off);
            const uint32_t a1 = nf4_pair(lut, wb, j, lane_off), a3 = nf4_pair(lut, wb, j + 1, lane_off);
#pragma unroll
            for (int tt = 0; tt < Tiles; ++tt) {
                const uint4 &xq = xv[tt][s >> 1];
                const uint32_t b0 = (s & 1) ? xq.z : xq.x, b1 = (s & 1) ? xq.w : xq.y;
                mma_bf16_16816(part[tt], a0, a1, a2, a3, b0, b1);
            }
        }
#pragma unroll
        for (int tt = 0; tt < Tiles; ++tt) {  // c0,c1: row g, tokens 2t, 2t+1; c2,c3: row g + 8
            acc[tt][0] = fmaf(part[tt][0], sa, acc[tt][0]);
            acc[tt][1] = fmaf(part[tt][1], sa, acc[tt][1]);
            acc[tt][2] = fmaf(part[tt][2], sb, acc[tt][2]);
            acc[tt][3] = fmaf(part[tt][3], sb, acc[tt][3]);
        }
    };
    // Tile ti done by every warp: partial sums into buffer ti & 1, one barrier, then thread (row, token) writes y.
    // Buffer ti & 1 is next written at the end of tile ti + 2, after the barrier of tile ti + 1 that every thread
    // reaches only once it has read this tile's sums.
    auto end_tile = [&](int ti) {
        float *partial = partials + (ti & 1) * kWarps * kTileRows * 16;
        sa_epilogue::write_partials<Tiles>(partial + warp * kTileRows * 16, acc, g, t);
#pragma unroll
        for (int tt = 0; tt < Tiles; ++tt) acc[tt][0] = acc[tt][1] = acc[tt][2] = acc[tt][3] = 0.0f;
        prefetch_groups(ti + 2);
        if (ti == 0 && sa_epilogue::folds_in(fold)) sa_epilogue::fold_inverse(fold, m, k, fold_inv);  // once per block
        __syncthreads();
        if (threadIdx.x < 128)
            sa_epilogue::reduce_store<kWarps>(partial, kTileRows * 16, threadIdx.x, y, epi, n, m, Tiles * 8,
                                              (int)blockIdx.x + ti * grid, fold, fold_inv);
    };

    for (int q0 = 0; q0 < total; q0 += kRing) {
#pragma unroll
        for (int i = 0; i < kRing; ++i) {
            if (q0 + i >= total) break;  // block-uniform
            if (mc.blk < kb) multiply(i, mc);
            if (mc.slot == upw - 1) end_tile(mc.ti);  // block-uniform
            advance(mc);
            load(i, lc);  // the unit kRing ahead takes ring slot i
            advance(lc);
        }
    }
}

template <int Tiles, bool DQ>
sa_status launch_stream(const uint16_t *x, const uint8_t *qw, const void *absmax, const float *tables, uint16_t *y,
                        int m, int n, int k, int epi, const sa_norm_fold &fold, cudaStream_t s) {
    auto kernel = &nf4_gemv_stream<Tiles, DQ>;
    // Above 48 KB of dynamic shared memory needs an opt-in, once per kernel (not a stream operation); the grid is
    // as many blocks as are resident at once (or the tile count).
    static int resident_per_sm = 0;
    static const cudaError_t opt_in = [&] {
        cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kStreamSmem);
        if (e == cudaSuccess)
            e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&resident_per_sm, kernel, kThreads, kStreamSmem);
        return e;
    }();
    if (opt_in != cudaSuccess || resident_per_sm < 1)
        return sa::fail(SA_E_CUDA, std::string("nf4_gemv_stream: cannot reserve shared memory: ") + cudaGetErrorName(opt_in));
    const sa_cuda::DeviceTraits &dev = sa_cuda::device_traits();
    const int tiles = (n + kTileRows - 1) / kTileRows, resident = resident_per_sm * (dev.sms > 0 ? dev.sms : 132);
    const dim3 grid((unsigned)(tiles < resident ? tiles : resident)), block(kThreads);
    return sa_cuda::launch_pdl_if(dev.quant_pdl, "nf4_gemv_stream", kernel, grid, block, kStreamSmem, s, x, qw,
                                  absmax, tables, y, m, n, k, epi, fold);
}

// v4 (one tile per block) or v5 (persistent) when the tiles fill SA_NF4_STREAM_WAVES waves of resident blocks and
// K <= 4096 — where a v4 block is a single round trip (its two batches hold the whole tile), so its blocks load and
// multiply in lockstep waves. Measured (NOTES_QUANT.md, NF4 v4/v5): v5 wins at 16384 x 3072 (4 waves), v4 at
// 8192 x 8192 (2 waves) and at 16384 x 8192 (4 waves, K = 8192: a v4 block already streams its tile).
template <int Tiles, bool DQ>
sa_status launch(const uint16_t *x, const uint8_t *qw, const void *absmax, const float *tables, uint16_t *y, int m,
                 int n, int k, int epi, const sa_norm_fold &fold, cudaStream_t s) {
    const sa_cuda::DeviceTraits &dev = sa_cuda::device_traits();
    const int tiles = (n + kTileRows - 1) / kTileRows;
    if (k <= 4096 &&
        (int64_t)tiles >= (int64_t)SA_NF4_STREAM_WAVES * SA_NF4_BLOCKS_PER_SM * (dev.sms > 0 ? dev.sms : 132))
        return launch_stream<Tiles, DQ>(x, qw, absmax, tables, y, m, n, k, epi, fold, s);
    auto kernel = &nf4_gemv<Tiles, DQ>;
    // Above 48 KB of dynamic shared memory needs an opt-in, once per kernel (not a stream operation).
    static const cudaError_t opt_in = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemMax);
    if (opt_in != cudaSuccess)
        return sa::fail(SA_E_CUDA, std::string("nf4_gemv: cannot reserve shared memory: ") + cudaGetErrorName(opt_in));
    const int kb = k / SA_NF4_BLOCK;
    const size_t smem = kScalesOffset + (size_t)(kb < kSegBlocks ? kb : kSegBlocks) * 8 * 8;
    const dim3 grid((unsigned)tiles), block(kThreads);
    return sa_cuda::launch_pdl_if(dev.quant_pdl, "nf4_gemv", kernel, grid, block, smem, s, x, qw, absmax, tables, y, m,
                                  n, k, epi, fold);
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
