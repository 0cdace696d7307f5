// linear_bf16.cu — y[M,N] = bf16(x[M,K] · W[N,K]^T) with fp32 accumulation.
//
// Two kernels, chosen by M:
//  * M <= 16 (decode): a weight-streaming skinny GEMM on tensor cores. Each block owns 16 output features
//    (16 rows of W; 32 when N >= 8192) and its 8 warps split K between them (steps of 32 k, interleaved so the block reads each W row
//    front to back); the partial sums are reduced in shared memory. W is read exactly once with 16-byte
//    ld.global.nc.L1::no_allocate loads, software-pipelined: the next batch of 4 steps (8 loads of 16 B per
//    thread) is issued before the current one is multiplied, so loads stay in flight without bubbles. Tokens are the n=8 side of mma.m16n8k16 (one or two 8-token tiles),
//    so x (tiny, L1-resident) costs at most half the W bytes in L1 traffic. The MMA needs each thread's 16 B of W
//    to hold k = 8t..8t+7; since a dot product does not care about the order of k, the same permutation of k is
//    applied to the x fragment, which makes both operands plain 16-byte loads (no shuffles, no shared memory).
//  * M > 16 (prefill): a classic tensor-core GEMM: 128 (or 64) x 128 x 64 block tiles, 8 warps, cp.async 3-stage
//    pipeline with zero-fill for ragged edges, an XOR swizzle so ldmatrix is bank-conflict free, mma.m16n8k16;
//    from 128 tokens on sm_90a builds the same tiles go to wgmma instead (gemm_bf16_wg_kernel).
// Ragged M and N are handled by predication; K must be a multiple of 8 (every W row starts 16-byte aligned).
#include <cstdlib>
#include <string>

#include "linear_epilogue.cuh"
#include "wgmma.cuh"

namespace {

// ------------------------------------------------------------------------------------------------ PTX wrappers
__device__ __forceinline__ uint4 ld_stream16(const uint16_t *p) {
    uint4 r;
    // volatile: the load sits under a predicate and must never be speculated past it.
    asm volatile("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0,%1,%2,%3}, [%4];"
        : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
        : "l"(p));
    return r;
}

// Activations are written by the previous kernel, which (with PDL) may still be running when this one starts: read
// them with a plain coherent load after pdl_wait(), never through the non-coherent path.
__device__ __forceinline__ uint4 ld_coherent16(const uint16_t *p) {
    uint4 r;
    asm volatile("ld.global.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p));
    return r;
}



// ------------------------------------------------------------------------------------------ decode (M <= 16)
constexpr int kGemvWarps = 8;  // split-K between the warps of a block
constexpr int kGemvRows = 16;  // W rows (output features) per block

// One batch of loads: kUnroll 32-wide k steps of the W rows and the x rows this lane feeds to the MMA.
template <int kTokenTiles, int kRowTiles, int kUnroll>
struct GemvBatch {
    uint4 w_lo[kUnroll][kRowTiles], w_hi[kUnroll][kRowTiles], x[kUnroll][kTokenTiles];
};

// kTokenTiles: 1 for M <= 8, 2 for M <= 16. kRowTiles: 16-row tiles of W per block (2 for wide matrices, which
// halves the x loads per W byte and the per-block reduction; 1 keeps small N spread over enough blocks).
// Two batches are in flight: the next one is loaded before the current one is multiplied, so each warp keeps
// 2 * kUnroll * 2 * kRowTiles loads of 16 B of W outstanding all the time.
//
// Programmatic dependent launch: W never depends on the previous kernel, so a block issues its first batch of W loads
// (and, if it is in the first wave, an L2 prefetch of up to prefetch_bytes more of its rows) before pdl_wait(); only
// x is read after it. The weight stream thus starts while the previous kernel (a norm, attention) is finishing.
// Keep the prefetch branch between load_w and pdl_wait: without code there, ptxas hoists the wait (ACQBULK) to the
// kernel entry, above the W loads, and the overlap is lost (v6 notes: 3.12 instead of 2.85 ms per decode step).
// Epilogues (linear_epilogue.cuh): rows come from sa_epilogue::tile_row and y is written by sa_epilogue::store.
template <int kTokenTiles, int kRowTiles>
__global__ void __launch_bounds__(kGemvWarps * 32, 2)
    gemv_bf16_kernel(const uint16_t *x, const uint16_t *__restrict__ w, uint16_t *y, int m, int n, int k,
                     int prefetch_blocks, int prefetch_bytes, int epi, sa_norm_fold fold) {
    pdl_launch_dependents();
    // Steps per batch, sized so two batches fit in 128 registers: (1,1) -> 4, (2 token tiles) -> 3, (2 row tiles) -> 2.
    constexpr int kUnroll = kRowTiles == 2 ? (kTokenTiles == 1 ? 2 : 1) : (kTokenTiles == 1 ? 4 : 3);
    constexpr int kStride = kGemvWarps * kUnroll;  // steps a warp advances per batch
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int g = lane >> 2, t = lane & 3;  // mma fragment coordinates
    const int tile0 = blockIdx.x * kRowTiles;
    // This lane reads k = 32*s + 8t .. +7 of tile rows g and g+8 of each of the block's 16-row tiles, and of x rows
    // (tokens) g, g+8.
    const uint16_t *w_lo[kRowTiles], *w_hi[kRowTiles];
    bool lo_ok[kRowTiles], hi_ok[kRowTiles];
#pragma unroll
    for (int rt = 0; rt < kRowTiles; ++rt) {
        const int tile = tile0 + rt;
        lo_ok[rt] = sa_epilogue::row_ok(tile, g, n, epi);
        hi_ok[rt] = sa_epilogue::row_ok(tile, g + 8, n, epi);
        w_lo[rt] = w + (int64_t)(lo_ok[rt] ? sa_epilogue::tile_row(tile, g, n, epi) : 0) * k + 8 * t;
        w_hi[rt] = w + (int64_t)(hi_ok[rt] ? sa_epilogue::tile_row(tile, g + 8, n, epi) : 0) * k + 8 * t;
    }
    const uint16_t *x_row[kTokenTiles];
    bool x_ok[kTokenTiles];
#pragma unroll
    for (int mt = 0; mt < kTokenTiles; ++mt) {
        x_ok[mt] = g + 8 * mt < m;
        x_row[mt] = x + (int64_t)(x_ok[mt] ? g + 8 * mt : 0) * k + 8 * t;
    }
    const int steps = (k + 31) / 32;
    const uint4 zero = make_uint4(0, 0, 0, 0);

    // Steps s0, s0 + 8, ... of this warp; past the end every load is predicated off (no traffic).
    auto load_w = [&](GemvBatch<kTokenTiles, kRowTiles, kUnroll> &b, int s0) {
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
            const int s = s0 + u * kGemvWarps;
            const bool k_ok = s < steps && 32 * s + 8 * t < k;
#pragma unroll
            for (int rt = 0; rt < kRowTiles; ++rt) {
                b.w_lo[u][rt] = (k_ok && lo_ok[rt]) ? ld_stream16(w_lo[rt] + 32 * s) : zero;
                b.w_hi[u][rt] = (k_ok && hi_ok[rt]) ? ld_stream16(w_hi[rt] + 32 * s) : zero;
            }
        }
    };
    auto load_x = [&](GemvBatch<kTokenTiles, kRowTiles, kUnroll> &b, int s0) {
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
            const int s = s0 + u * kGemvWarps;
            const bool k_ok = s < steps && 32 * s + 8 * t < k;
#pragma unroll
            for (int mt = 0; mt < kTokenTiles; ++mt)
                b.x[u][mt] = (k_ok && x_ok[mt]) ? ld_coherent16(x_row[mt] + 32 * s) : zero;
        }
    };
    auto load = [&](GemvBatch<kTokenTiles, kRowTiles, kUnroll> &b, int s0) {
        load_w(b, s0);
        load_x(b, s0);
    };

    float acc[kRowTiles][kTokenTiles][4];
#pragma unroll
    for (int rt = 0; rt < kRowTiles; ++rt)
#pragma unroll
        for (int mt = 0; mt < kTokenTiles; ++mt) acc[rt][mt][0] = acc[rt][mt][1] = acc[rt][mt][2] = acc[rt][mt][3] = 0.0f;

    GemvBatch<kTokenTiles, kRowTiles, kUnroll> cur, next;
    // Before the wait: this block's first batch of W (into registers) and, in the first wave, the part of its rows
    // after that batch (into L2; one bulk prefetch per row, issued by the row's thread).
    load_w(cur, warp);
    constexpr int kBlockRows = kGemvRows * kRowTiles;
    if ((int)blockIdx.x < prefetch_blocks && (int)threadIdx.x < kBlockRows) {
        const int tile = tile0 + threadIdx.x / kGemvRows, tr = threadIdx.x % kGemvRows;
        const int r = sa_epilogue::tile_row(tile, tr, n, epi);
        const int first = kStride * 32;  // k columns the first batch covers
        if (sa_epilogue::row_ok(tile, tr, n, epi) && first < k) {
            const int bytes = min((k - first) * 2, prefetch_bytes / kBlockRows) & ~15;
            if (bytes > 0) prefetch_l2(w + (int64_t)r * k + first, (uint32_t)bytes);
        }
    }
    pdl_wait();
    load_x(cur, warp);
    sa_epilogue::fold_prefetch(fold, m, k);
    for (int s0 = warp; s0 < steps; s0 += kStride) {
        load(next, s0 + kStride);
#pragma unroll
        for (int u = 0; u < kUnroll; ++u)
#pragma unroll
            for (int rt = 0; rt < kRowTiles; ++rt)
#pragma unroll
                for (int mt = 0; mt < kTokenTiles; ++mt) {
                    // k permutation: mma #0 takes this lane's k 0..3, mma #1 its k 4..7 (same for W and x).
                    const uint4 &lo = cur.w_lo[u][rt], &hi = cur.w_hi[u][rt], &xv = cur.x[u][mt];
                    mma_bf16_16816(acc[rt][mt], lo.x, hi.x, lo.y, hi.y, xv.x, xv.y);
                    mma_bf16_16816(acc[rt][mt], lo.z, hi.z, lo.w, hi.w, xv.z, xv.w);
                }
        cur = next;
    }

    // Reduce the split-K partials of the 8 warps. Layout [warp][value][lane] is bank-conflict free.
    constexpr int kValues = kRowTiles * kTokenTiles * 4;
    __shared__ float partial[kGemvWarps][kValues][32];
    __shared__ float fold_inv[SA_EPILOGUE_MAX_M];
#pragma unroll
    for (int rt = 0; rt < kRowTiles; ++rt)
#pragma unroll
        for (int mt = 0; mt < kTokenTiles; ++mt)
#pragma unroll
            for (int i = 0; i < 4; ++i) partial[warp][(rt * kTokenTiles + mt) * 4 + i][lane] = acc[rt][mt][i];
    if (sa_epilogue::folds_in(fold)) sa_epilogue::fold_inverse(fold, m, k, fold_inv);
    __syncthreads();
    // Accumulator c of lane l: c0,c1 -> (tile row g, tokens 2t, 2t+1), c2,c3 -> (tile row g+8, same tokens). A thread
    // finishes both rows of one (lane, c in {0, 1}) pair, as the SwiGLU epilogue needs; whole warps take part (the
    // folded norm's tile sums are shuffles over the 8 lanes l >> 2 of a token).
    for (int e = threadIdx.x; e < kValues / 2 * 32; e += blockDim.x) {
        const int p = e >> 5, l = e & 31;
        const int c = p & 1, mt = (p >> 1) % kTokenTiles, rt = (p >> 1) / kTokenTiles;
        const int i = (rt * kTokenTiles + mt) * 4 + c;
        float lo = 0.0f, hi = 0.0f;
#pragma unroll
        for (int wv = 0; wv < kGemvWarps; ++wv) {
            lo += partial[wv][i][l];
            hi += partial[wv][i + 2][l];
        }
        const int tok = 8 * mt + 2 * (l & 3) + c;
        float share = 0.0f;
        if (tok < m)
            share = sa_epilogue::store(y, epi, n, tok, tile0 + rt, l >> 2, lo, hi, fold,
                                       sa_epilogue::folds_in(fold) ? fold_inv[tok] : 1.0f);
        if (sa_epilogue::folds_out(fold)) {
            const float sum_sq = sa_epilogue::tile_sumsq(share, 0x1c);
            if (tok < m && (l >> 2) == 0) fold.sumsq_out[tok * (n / 16) + tile0 + rt] = sum_sq;
        }
    }
}

// ------------------------------------------------------------------------------------------ prefill (M > 16)
constexpr int kGemmBN = 128, kGemmBK = 64, kGemmStages = 3, kGemmThreads = 256;

template <int kBM>
constexpr int gemm_smem_bytes() { return kGemmStages * (kBM + kGemmBN) * kGemmBK * 2; }

// Element offset of 16-byte chunk `chunk` (0..7) of tile row `row` (rows of 64 bf16 = 128 B). XOR-swizzling the
// chunk with the low 3 bits of the row puts the 8 rows one ldmatrix reads in 8 different bank groups.
__device__ __forceinline__ int tile_offset(int row, int chunk) { return row * kGemmBK + ((chunk ^ (row & 7)) * 8); }

// Copy a rows x 64 tile of a [rows_total, k] row-major bf16 matrix starting at (row0, k0); zeros outside.
template <int kRows>
__device__ __forceinline__ void load_tile_async(uint16_t *tile, const uint16_t *__restrict__ src, int row0, int rows_total,
                                                int k0, int k) {
#pragma unroll
    for (int c = threadIdx.x; c < kRows * 8; c += kGemmThreads) {
        const int r = c >> 3, ch = c & 7;
        const int gr = row0 + r, gk = k0 + ch * 8;
        const bool ok = gr < rows_total && gk < k;
        const uint16_t *p = ok ? src + (int64_t)gr * k + gk : src;
        cp_async16(smem_u32(tile + tile_offset(r, ch)), p, ok ? 16 : 0);
    }
}

// y[row][col], y[row][col + 1] = bf16(v0), bf16(v1) within the m x n output: one 4-byte store when the pair is
// aligned (n even), else per element. The prefill GEMMs' epilogue.
__device__ __forceinline__ void store_pair(uint16_t *y, int row, int col, int m, int n, bool pairs_aligned, float v0,
                                           float v1) {
    if (row >= m || col >= n) return;
    uint16_t *dst = y + (int64_t)row * n + col;
    if (pairs_aligned && col + 1 < n) {
        *reinterpret_cast<uint32_t *>(dst) = pack_bf16x2(v0, v1);
    } else {
        dst[0] = sa_f32_to_bf16(v0);
        if (col + 1 < n) dst[1] = sa_f32_to_bf16(v1);
    }
}

// kBM = 128 or 64 token rows per block; warps are 2 (M) x 4 (N), each computing (kBM/2) x 32. The stages live in
// dynamic shared memory (96 KB for kBM = 128), so two blocks fit on an SM.
template <int kBM>
__global__ void __launch_bounds__(kGemmThreads)
    gemm_bf16_kernel(const uint16_t *__restrict__ x, const uint16_t *__restrict__ w, uint16_t *__restrict__ y, int m,
                     int n, int k) {
    constexpr int kMI = kBM / 2 / 16;  // m16 tiles per warp
    constexpr int kNI = 4;             // n8 tiles per warp (32 columns)
    extern __shared__ __align__(128) uint16_t gemm_smem[];
    auto a_tile = [&](int stage) { return gemm_smem + stage * kBM * kGemmBK; };
    auto b_tile = [&](int stage) { return gemm_smem + kGemmStages * kBM * kGemmBK + stage * kGemmBN * kGemmBK; };

    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int wm = warp >> 2, wn = warp & 3;
    const int m0 = blockIdx.y * kBM, n0 = blockIdx.x * kGemmBN;
    const int k_tiles = (k + kGemmBK - 1) / kGemmBK;

    float acc[kMI][kNI][4];
#pragma unroll
    for (int i = 0; i < kMI; ++i)
#pragma unroll
        for (int j = 0; j < kNI; ++j) acc[i][j][0] = acc[i][j][1] = acc[i][j][2] = acc[i][j][3] = 0.0f;

#pragma unroll
    for (int s = 0; s < kGemmStages - 1; ++s) {
        if (s < k_tiles) {
            load_tile_async<kBM>(a_tile(s), x, m0, m, s * kGemmBK, k);
            load_tile_async<kGemmBN>(b_tile(s), w, n0, n, s * kGemmBK, k);
        }
        cp_async_commit();
    }

    for (int kt = 0; kt < k_tiles; ++kt) {
        cp_async_wait<kGemmStages - 2>();
        __syncthreads();  // tile kt is in shared memory and everyone is done with the stage we refill next
        const int next = kt + kGemmStages - 1;
        if (next < k_tiles) {
            load_tile_async<kBM>(a_tile(next % kGemmStages), x, m0, m, next * kGemmBK, k);
            load_tile_async<kGemmBN>(b_tile(next % kGemmStages), w, n0, n, next * kGemmBK, k);
        }
        cp_async_commit();

        const uint16_t *as = a_tile(kt % kGemmStages);
        const uint16_t *bs = b_tile(kt % kGemmStages);
#pragma unroll
        for (int kk = 0; kk < kGemmBK / 16; ++kk) {
            uint32_t af[kMI][4], bfr[kNI][2];
#pragma unroll
            for (int mi = 0; mi < kMI; ++mi) {
                const int row = wm * (kBM / 2) + mi * 16 + (lane & 15);
                ldmatrix_x4(smem_u32(as + tile_offset(row, kk * 2 + (lane >> 4))), af[mi][0], af[mi][1], af[mi][2],
                            af[mi][3]);
            }
#pragma unroll
            for (int nj = 0; nj < kNI / 2; ++nj) {
                const int quad = lane >> 3;
                const int row = wn * 32 + nj * 16 + (lane & 7) + 8 * (quad >> 1);
                ldmatrix_x4(smem_u32(bs + tile_offset(row, kk * 2 + (quad & 1))), bfr[2 * nj][0], bfr[2 * nj][1],
                            bfr[2 * nj + 1][0], bfr[2 * nj + 1][1]);
            }
#pragma unroll
            for (int mi = 0; mi < kMI; ++mi)
#pragma unroll
                for (int ni = 0; ni < kNI; ++ni)
                    mma_bf16_16816(acc[mi][ni], af[mi][0], af[mi][1], af[mi][2], af[mi][3], bfr[ni][0], bfr[ni][1]);
        }
    }
    cp_async_wait<0>();

    const int g = lane >> 2, t = lane & 3;
    const bool pairs_aligned = (n & 1) == 0;
#pragma unroll
    for (int mi = 0; mi < kMI; ++mi)
#pragma unroll
        for (int ni = 0; ni < kNI; ++ni)
#pragma unroll
            for (int half = 0; half < 2; ++half) {
                const int row = m0 + wm * (kBM / 2) + mi * 16 + g + 8 * half;
                const int col = n0 + wn * 32 + ni * 8 + 2 * t;
                store_pair(y, row, col, m, n, pairs_aligned, acc[mi][ni][2 * half], acc[mi][ni][2 * half + 1]);
            }
}

// ---------------------------------------------------------------------- prefill on wgmma (sm_90a, M >= 128)
// Why: gemm_bf16_kernel's mma.sync runs 150–300 TFLOP/s, 2.2–4.5x slower than cuBLAS (kernels/NOTES.md, "Prefill
// GEMM"), and a long prompt's prefill is mostly these linears. Hopper's warpgroup MMA reads both operands from shared
// memory (wgmma.cuh): the tiles gemm_bf16_kernel already stages (rows of 64 bf16 with the 128-byte XOR swizzle) are
// its K-major layout as they are.
//  * Block = 2 warpgroups, tile = 128 tokens x 128·NB features x 64 k; warpgroup w computes tokens [64w, 64w + 64)
//    against all the tile's features, NB wgmma.m64n128k16 per k16 step.
//  * 4 stages, loaded two k-tiles ahead by cp.async (fence.proxy.async before the barrier that publishes them), so a
//    stage is refilled two iterations after its wgmmas were issued, when wgmma.wait_group 1 has retired them:
//    one barrier per k-tile and up to two k-tiles of wgmmas in flight per warpgroup.
//  * fp32 accumulation, bf16 output written straight from the accumulators (pairs of features).
constexpr int kWgStages = 4, kWgM = 128;

template <int NB>
constexpr int gemm_wg_smem_bytes() { return 1024 + kWgStages * (kWgM + 128 * NB) * kGemmBK * 2; }

template <int NB>
__global__ void __launch_bounds__(kGemmThreads, 1)
    gemm_bf16_wg_kernel(const uint16_t *__restrict__ x, const uint16_t *__restrict__ w, uint16_t *__restrict__ y,
                        int m, int n, int k) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    constexpr int kBN = 128 * NB;
    extern __shared__ __align__(128) uint8_t wg_smem_raw[];
    uint16_t *smem = reinterpret_cast<uint16_t *>(wg_smem_raw + ((1024 - (smem_u32(wg_smem_raw) & 1023)) & 1023));
    auto a_tile = [&](int stage) { return smem + stage * kWgM * kGemmBK; };
    auto b_tile = [&](int stage) { return smem + kWgStages * kWgM * kGemmBK + stage * kBN * kGemmBK; };

    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, wg = warp >> 2, wv = warp & 3;
    const int m0 = blockIdx.y * kWgM, n0 = blockIdx.x * kBN;
    const int k_tiles = (k + kGemmBK - 1) / kGemmBK;
    float acc[NB][64];
#pragma unroll
    for (int h = 0; h < NB; ++h)
#pragma unroll
        for (int i = 0; i < 64; ++i) acc[h][i] = 0.0f;

#pragma unroll
    for (int s = 0; s < 2; ++s) {
        if (s < k_tiles) {
            load_tile_async<kWgM>(a_tile(s), x, m0, m, s * kGemmBK, k);
            load_tile_async<kBN>(b_tile(s), w, n0, n, s * kGemmBK, k);
        }
        cp_async_commit();
    }
    for (int kt = 0; kt < k_tiles; ++kt) {
        cp_async_wait<1>();
        fence_proxy_async();
        __syncthreads();  // k-tile kt is in for everyone; every warpgroup has retired k-tile kt - 2's wgmmas
        if (kt + 2 < k_tiles) {
            load_tile_async<kWgM>(a_tile((kt + 2) % kWgStages), x, m0, m, (kt + 2) * kGemmBK, k);
            load_tile_async<kBN>(b_tile((kt + 2) % kWgStages), w, n0, n, (kt + 2) * kGemmBK, k);
        }
        cp_async_commit();
        const uint32_t a_s = smem_u32(a_tile(kt % kWgStages)) + wg * 64 * 128, b_s = smem_u32(b_tile(kt % kWgStages));
#pragma unroll
        for (int h = 0; h < NB; ++h) wg_pin(acc[h]);
        wg_fence();
#pragma unroll
        for (int kk = 0; kk < kGemmBK / 16; ++kk)
#pragma unroll
            for (int h = 0; h < NB; ++h)
                wgmma_m64n128k16_ss(acc[h], wg_desc(a_s + kk * 32), wg_desc(b_s + h * 128 * 128 + kk * 32));
        wg_commit();
        wg_wait<1>();
    }
    wg_wait<0>();
#pragma unroll
    for (int h = 0; h < NB; ++h) wg_pin(acc[h]);
    cp_async_wait<0>();

    const int g = lane >> 2, t = lane & 3;
    const bool pairs_aligned = (n & 1) == 0;
#pragma unroll
    for (int h = 0; h < NB; ++h)
#pragma unroll
        for (int j = 0; j < 16; ++j)
#pragma unroll
            for (int half = 0; half < 2; ++half) {
                const int row = m0 + wg * 64 + wv * 16 + g + 8 * half;
                const int col = n0 + h * 128 + j * 8 + 2 * t;
                store_pair(y, row, col, m, n, pairs_aligned, acc[h][4 * j + 2 * half], acc[h][4 * j + 2 * half + 1]);
            }
#else
    __trap();  // launched only where the library was built for sm_90a (SA_HAVE_WGMMA)
#endif
}

template <int NB>
sa_status launch_gemm_wg(const uint16_t *x, const uint16_t *w, uint16_t *y, int m, int n, int k, cudaStream_t stream) {
    constexpr int smem = gemm_wg_smem_bytes<NB>();
    static const cudaError_t opt_in =
        cudaFuncSetAttribute(gemm_bf16_wg_kernel<NB>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    if (opt_in != cudaSuccess)
        return sa::fail(SA_E_CUDA, std::string("gemm_bf16_wg_kernel: cannot reserve ") + std::to_string(smem) +
                                       " bytes of shared memory (" + cudaGetErrorName(opt_in) + ")");
    const dim3 grid((unsigned)((n + 128 * NB - 1) / (128 * NB)), (unsigned)((m + kWgM - 1) / kWgM));
    gemm_bf16_wg_kernel<NB><<<grid, kGemmThreads, smem, stream>>>(x, w, y, m, n, k);
    SA_CHECK_LAUNCH(NB == 2 ? "gemm_bf16_wg_kernel<2>" : "gemm_bf16_wg_kernel<1>");
    return SA_OK;
}

// Whether a prefill of m tokens runs on gemm_bf16_wg_kernel: from kWgMinM tokens on an sm_90a build and an sm_90 GPU.
// STEPAUDIO_PREFILL_WGMMA=0 / 1 (the A/B knob, shared with the 4-bit prefill GEMM): never / from 17 tokens.
constexpr int kWgMinM = 128;
bool use_gemm_wg(int m) {
#if SA_HAVE_WGMMA
    static const int forced = [] {
        const char *env = std::getenv("STEPAUDIO_PREFILL_WGMMA");
        return env && env[0] ? (env[0] == '0' ? 1 : 2) : 0;
    }();
    if (!sa_cuda::device_traits().clusters || forced == 1) return false;
    return forced == 2 || m >= kWgMinM;
#else
    (void)m;
    return false;
#endif
}

constexpr int kMaxDecodeM = 16;
constexpr int kWideN = 8192;
constexpr int kTargetBlocks = 2 * 132;  // two waves' worth of blocks on an H100

template <int kBM>
sa_status launch_gemm(const uint16_t *x, const uint16_t *w, uint16_t *y, int m, int n, int k, cudaStream_t stream) {
    constexpr int smem = gemm_smem_bytes<kBM>();
    // Above 48 KB of dynamic shared memory needs an opt-in, once per kernel (not a stream operation).
    static const cudaError_t opt_in =
        cudaFuncSetAttribute(gemm_bf16_kernel<kBM>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    if (opt_in != cudaSuccess)
        return sa::fail(SA_E_CUDA, std::string("gemm_bf16_kernel: cannot reserve shared memory: ") + cudaGetErrorName(opt_in));
    const dim3 grid((unsigned)((n + kGemmBN - 1) / kGemmBN), (unsigned)((m + kBM - 1) / kBM));
    gemm_bf16_kernel<kBM><<<grid, kGemmThreads, smem, stream>>>(x, w, y, m, n, k);
    SA_CHECK_LAUNCH(kBM == 128 ? "gemm_bf16_kernel<128>" : "gemm_bf16_kernel<64>");
    return SA_OK;
}

}  // namespace

SA_API sa_status sa_cuda_linear_bf16(const uint16_t *x, const uint16_t *w, uint16_t *y, int32_t m, int32_t n, int32_t k,
                                     int32_t epilogue, const sa_norm_fold *fold, void *stream) {
    SA_GUARD_BEGIN
    using namespace sa_cuda;
    if (!x || !w || !y || m < 0 || n <= 0 || k <= 0)
        return invalid("sa_cuda_linear_bf16: null pointer, negative m or non-positive n/k (m=" + std::to_string(m) +
                       ", n=" + std::to_string(n) + ", k=" + std::to_string(k) + ")");
    if (k % 8 != 0)
        return invalid("sa_cuda_linear_bf16: K = " + std::to_string(k) +
                       " is not a multiple of 8 (the kernels read 16-byte rows)");
    if (!aligned16(x) || !aligned16(w) || (reinterpret_cast<uintptr_t>(y) & 3u) != 0)
        return invalid("sa_cuda_linear_bf16: x and W must be 16-byte aligned and y 4-byte aligned");
    const sa_status epilogue_ok = sa_epilogue::check_host_args("sa_cuda_linear_bf16", epilogue, fold, x, y, m, n, k);
    if (epilogue_ok != SA_OK) return epilogue_ok;
    if (m == 0) return SA_OK;
    cudaStream_t s = as_stream(stream);
    if (m <= kMaxDecodeM) {
        // Wide matrices (gate_up, lm_head) take 32 rows per block at M <= 8; everything else 16 rows, which keeps
        // >= 2 blocks per SM for N = 3072 (and two token tiles plus two row tiles would not fit 128 registers).
        const bool wide = n >= kWideN && m <= 8;
        const unsigned blocks = (unsigned)((n + kGemvRows * (wide ? 2 : 1) - 1) / (kGemvRows * (wide ? 2 : 1)));
        // Blocks of the first wave (two per SM) may start early under PDL; only they prefetch into L2.
        const DeviceTraits &dev = device_traits();
        const int prefetch_blocks = dev.gemv_prefetch_bytes > 0 ? 2 * dev.sms : 0;
        auto kernel = wide ? &gemv_bf16_kernel<1, 2> : m <= 8 ? &gemv_bf16_kernel<1, 1> : &gemv_bf16_kernel<2, 1>;
        return launch_pdl("gemv_bf16_kernel", kernel, dim3(blocks), dim3(kGemvWarps * 32), 0, s, x, w, y, m, n, k,
                          prefetch_blocks, dev.gemv_prefetch_bytes, (int)epilogue, sa_epilogue::fold_value(fold));
    }
    if (use_gemm_wg(m)) {  // 256-feature tiles where they fill the GPU, else 128
        const int64_t wide = (int64_t)((n + 255) / 256) * ((m + kWgM - 1) / kWgM);
        return wide >= device_traits().sms ? launch_gemm_wg<2>(x, w, y, m, n, k, s) : launch_gemm_wg<1>(x, w, y, m, n, k, s);
    }
    const int64_t blocks_128 = (int64_t)((n + kGemmBN - 1) / kGemmBN) * ((m + 127) / 128);
    return blocks_128 >= kTargetBlocks ? launch_gemm<128>(x, w, y, m, n, k, s) : launch_gemm<64>(x, w, y, m, n, k, s);
    SA_GUARD_END
}
