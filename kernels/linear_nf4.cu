// linear_nf4.cu — y = x · Wᵀ with W a bitsandbytes NF4 weight in the kernel layout of stepaudio_native.h.
//
// Decode / skinny GEMM (M <= 16), v2: the W4A16 kernel's structure (linear_w4a16.cu) on tensor cores.
//  * work unit = (16-row tile, one 64-block). A block owns tiles blockIdx.x, +gridDim.x, ... (at most 2 blocks per
//    SM); its 8 warps split each tile's 64-blocks and reduce in shared memory when the tile is done. Thread
//    (lane = 4·g + t) loads 8 B of row g and 8 B of row g + 8 at byte 8t of the block: the 4 threads of a row
//    cover exactly one 64-block, so each MMA's partial sum belongs to one absmax, applied once per block in fp32;
//  * a batch of units (codes and absmax codes together) is loaded before the previous batch is multiplied;
//  * lookup: a 256-entry table of bf16 pairs (quant_map[b >> 4], quant_map[b & 15]) for a byte b, replicated
//    once per lane in shared memory ([byte][lane], 32 KB), so a warp's 32 lookups hit 32 different banks: one
//    conflict-free LDS.32 gives two weights, straight into an MMA A register;
//  * mma.m16n8k16 with W rows on the M side, tokens on the n = 8 side; as in linear_w4a16.cu the logical k slots
//    of a thread are its own loaded k's, and x is loaded with the same mapping;
//  * the double-quant absmax is decoded in-kernel (nested_map[code]·nested_absmax + offset, two rounded fp32
//    operations like bitsandbytes), once per row and 64-block.
// Numerics: the kernel multiplies bf16(quant_map[q]) by x on tensor cores and applies absmax to the fp32 sum;
// the reference (sa_cpu_linear_nf4) rounds quant_map[q]·absmax to bf16 per weight. Both round each weight once
// with a relative error below 2^-9, so results differ by a few bf16 ulps in relative L2 (checked in tests/native).
// M > 16 (prefill) runs the same kernel over 16-row slices of x: correct, but it re-reads the weight per slice; a
// dequantize-to-shared-memory tensor-core GEMM is the planned replacement.
// v3: programmatic dependent launch (kernels/cuda_common.cuh), as the bf16 GEMV: the first batch of codes and absmax
// and the lookup tables are loaded before pdl_wait() (they never depend on the previous kernel); x is read and y
// written only after it. x and y are not __restrict__ and x is read with plain loads: x was written by the previous
// kernel, so it must not go through the non-coherent path.
#include <string>

#include "cuda_common.cuh"
#include "linear_quant_prefill.h"
#include "nf4_common.h"

namespace {

constexpr int kWarps = 8;
// Resident blocks per SM (the persistent grid's size and the register budget); a build-time knob for the register
// pressure experiment of NOTES_QUANT.md.
#ifndef SA_NF4_BLOCKS_PER_SM
#define SA_NF4_BLOCKS_PER_SM 2
#endif
constexpr int kBlocksPerSm = SA_NF4_BLOCKS_PER_SM;

__device__ __forceinline__ uint2 load_stream8(const uint8_t *p) {
    uint2 v;
    asm volatile("ld.global.nc.L1::no_allocate.L2::256B.v2.u32 {%0,%1}, [%2];" : "=r"(v.x), "=r"(v.y) : "l"(p));
    return v;
}

// One batch of units: 8 code bytes of rows g and g + 8, and their absmax (u8 codes packed into sa, or fp32 bits).
template <int kBatch>
struct Batch {
    uint2 qa[kBatch], qb[kBatch];
    uint32_t sa[kBatch], sb[kBatch];
};

template <int Tiles, bool DQ>
__global__ void __launch_bounds__(32 * kWarps, kBlocksPerSm)
    nf4_gemv(const uint16_t *x, const uint8_t *__restrict__ qweight, const void *__restrict__ absmax,
             const float *__restrict__ tables, uint16_t *y, int m, int n, int k) {
    pdl_launch_dependents();
    constexpr int kBatch = Tiles == 1 ? 6 : 4;  // 8-byte loads: more units in flight than W4A16
    __shared__ uint32_t pair_lut[256 * 32];  // [byte][lane]: bf16 pair (quant_map[b >> 4] low, quant_map[b & 15] high)
    __shared__ float nested_map[256];
    __shared__ float partial[kWarps][16][16];  // [warp][row][token]
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const int kb = k / SA_NF4_BLOCK, tiles = (n + 15) / 16;
    const int upw = (kb + kWarps - 1) / kWarps;  // units per warp per tile
    const int my_tiles = (tiles - (int)blockIdx.x + (int)gridDim.x - 1) / (int)gridDim.x;
    const int units = my_tiles * upw;  // block-uniform
    const uint32_t *lut = pair_lut + lane;
    const float2 *nested = reinterpret_cast<const float2 *>(tables + SA_NF4_TABLE_HEADER);

    auto rows_of = [&](int unit, int &ra, int &rb) {
        const int n0 = ((int)blockIdx.x + (unit / upw) * (int)gridDim.x) * 16;
        ra = min(n0 + g, n - 1), rb = min(n0 + g + 8, n - 1);  // ragged rows load valid memory
    };
    auto load = [&](Batch<kBatch> &b, int u0) {
#pragma unroll
        for (int u = 0; u < kBatch; ++u) {
            const int unit = u0 + u, blk = warp + (unit % upw) * kWarps;
            if (unit < units && blk < kb) {
                int ra, rb;
                rows_of(unit, ra, rb);
                const int64_t ba = (int64_t)ra * kb + blk, bb = (int64_t)rb * kb + blk;
                b.qa[u] = load_stream8(qweight + ba * (SA_NF4_BLOCK / 2) + 8 * t);
                b.qb[u] = load_stream8(qweight + bb * (SA_NF4_BLOCK / 2) + 8 * t);
                if (DQ) {
                    b.sa[u] = __ldg(static_cast<const uint8_t *>(absmax) + ba);
                    b.sb[u] = __ldg(static_cast<const uint8_t *>(absmax) + bb);
                } else {
                    b.sa[u] = __float_as_uint(__ldg(static_cast<const float *>(absmax) + ba));
                    b.sb[u] = __float_as_uint(__ldg(static_cast<const float *>(absmax) + bb));
                }
            }
        }
    };

    float acc[Tiles][4];
#pragma unroll
    for (int tt = 0; tt < Tiles; ++tt) acc[tt][0] = acc[tt][1] = acc[tt][2] = acc[tt][3] = 0.0f;

    Batch<kBatch> cur, next;
    load(cur, 0);  // the first batch is in flight while the tables are built (and the previous kernel finishes)
    {
        // Thread b builds the pair of byte b and writes its 32 copies rotated by b, so the 32 lanes of a store
        // hit 32 different banks (blockDim is exactly 256).
        const int b = threadIdx.x;
        const uint32_t pair = (uint32_t)sa_f32_to_bf16(__ldg(tables + (b >> 4))) |
                              (uint32_t)sa_f32_to_bf16(__ldg(tables + (b & 15))) << 16;
#pragma unroll
        for (int j = 0; j < 32; ++j) pair_lut[b * 32 + ((j + b) & 31)] = pair;
        nested_map[b] = __ldg(tables + 16 + b);
    }
    __syncthreads();
    pdl_wait();
    for (int u0 = 0; u0 < units; u0 += kBatch) {
        load(next, u0 + kBatch);
#pragma unroll
        for (int u = 0; u < kBatch; ++u) {
            const int unit = u0 + u;
            if (unit >= units) break;  // block-uniform
            const int slot = unit % upw, blk = warp + slot * kWarps;
            if (blk < kb) {
                int ra, rb;
                rows_of(unit, ra, rb);
                float sa, sb;
                if (DQ) {
                    const float2 na = __ldg(nested + ((int64_t)ra * kb + blk) / SA_NF4_NESTED_BLOCK);
                    const float2 nb = __ldg(nested + ((int64_t)rb * kb + blk) / SA_NF4_NESTED_BLOCK);
                    sa = __fadd_rn(__fmul_rn(nested_map[cur.sa[u]], na.x), na.y);
                    sb = __fadd_rn(__fmul_rn(nested_map[cur.sb[u]], nb.x), nb.y);
                } else {
                    sa = __uint_as_float(cur.sa[u]);
                    sb = __uint_as_float(cur.sb[u]);
                }
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
                    const uint32_t wa = (s < 2 ? cur.qa[u].x : cur.qa[u].y) >> (16 * (s & 1));
                    const uint32_t wb = (s < 2 ? cur.qb[u].x : cur.qb[u].y) >> (16 * (s & 1));
                    const uint32_t a0 = lut[(wa & 0xffu) * 32], a2 = lut[((wa >> 8) & 0xffu) * 32];
                    const uint32_t a1 = lut[(wb & 0xffu) * 32], a3 = lut[((wb >> 8) & 0xffu) * 32];
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
            }
            if (slot == upw - 1) {  // tile done: reduce the warps' partial sums, write y once in bf16
                const int tile_i = unit / upw;
#pragma unroll
                for (int tt = 0; tt < Tiles; ++tt) {
                    partial[warp][g][tt * 8 + 2 * t] = acc[tt][0];
                    partial[warp][g][tt * 8 + 2 * t + 1] = acc[tt][1];
                    partial[warp][g + 8][tt * 8 + 2 * t] = acc[tt][2];
                    partial[warp][g + 8][tt * 8 + 2 * t + 1] = acc[tt][3];
                    acc[tt][0] = acc[tt][1] = acc[tt][2] = acc[tt][3] = 0.0f;
                }
                __syncthreads();
                const int row = threadIdx.x / 16, token = threadIdx.x % 16;
                const int n0 = ((int)blockIdx.x + tile_i * (int)gridDim.x) * 16;
                if (token < m && token < Tiles * 8 && n0 + row < n) {
                    float sum = 0.0f;
#pragma unroll
                    for (int wi = 0; wi < kWarps; ++wi) sum += partial[wi][row][token];
                    y[(size_t)token * n + n0 + row] = sa_f32_to_bf16(sum);
                }
                __syncthreads();  // one buffer (the 32 KB table leaves no room for two): read before rewritten
            }
        }
        cur = next;
    }
}

template <int Tiles>
sa_status launch(const uint16_t *x, const uint8_t *qw, const void *absmax, const float *tables, bool dq, uint16_t *y,
                 int m, int n, int k, cudaStream_t s) {
    const sa_cuda::DeviceTraits &dev = sa_cuda::device_traits();
    const int tiles = (n + 15) / 16, resident = kBlocksPerSm * (dev.sms > 0 ? dev.sms : 132);
    const dim3 grid((unsigned)(tiles < resident ? tiles : resident)), block(32 * kWarps);
    auto kernel = dq ? &nf4_gemv<Tiles, true> : &nf4_gemv<Tiles, false>;
    return sa_cuda::launch_pdl_if(dev.quant_pdl, "nf4_gemv", kernel, grid, block, 0, s, x, qw, absmax, tables, y, m,
                                  n, k);
}

}  // namespace

SA_API sa_status sa_cuda_linear_nf4(const uint16_t *x, const uint8_t *qweight, const void *absmax, const float *tables,
                                    int32_t double_quant, uint16_t *y, int32_t m, int32_t n, int32_t k, void *stream) {
    if (!x || !qweight || !absmax || !tables || !y || m < 0 || n <= 0 || k <= 0)
        return sa::fail(SA_E_INVALID_ARGUMENT, "sa_cuda_linear_nf4: null pointer or bad size");
    if (k % SA_NF4_BLOCK != 0)
        return sa::fail(SA_E_INVALID_ARGUMENT, "sa_cuda_linear_nf4: K = " + std::to_string(k) + " is not a multiple of 64");
    if ((reinterpret_cast<uintptr_t>(x) | reinterpret_cast<uintptr_t>(qweight)) & 15u)
        return sa::fail(SA_E_INVALID_ARGUMENT, "sa_cuda_linear_nf4: x and qweight must be 16-byte aligned");
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    const bool dq = double_quant != 0;
    if (sa_prefill::use_prefill(m, n, k))  // prefill: the tensor-core GEMM of linear_quant_prefill.cu
        return sa_prefill::linear_nf4(x, qweight, absmax, tables, dq, y, m, n, k, s);
    for (int r0 = 0; r0 < m; r0 += 16) {  // M > 16: 16-row slices (see the file comment)
        const int mm = m - r0 < 16 ? m - r0 : 16;
        const uint16_t *xs = x + (int64_t)r0 * k;
        uint16_t *ys = y + (int64_t)r0 * n;
        const sa_status st = mm <= 8 ? launch<1>(xs, qweight, absmax, tables, dq, ys, mm, n, k, s)
                                     : launch<2>(xs, qweight, absmax, tables, dq, ys, mm, n, k, s);
        if (st != SA_OK) return st;
    }
    return SA_OK;
}
