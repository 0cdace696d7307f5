// linear_w4a16.cu — y[M,N] = bf16(x[M,K] · W^T) for W in the W4A16 kernel layout (stepaudio_native.h):
// int4 codes [N, K/8] (nibbles interleaved 0,2,4,6,1,3,5,7), 16-bit group scales [N, K/128], optional zero codes.
//
// One skinny tensor-core kernel for M <= 16 (decode), the same one over 16-token tiles for larger M (prefill; not a
// dedicated prefill GEMM yet):
//  * a block owns one 16-row tile; its 8 warps split the tile's 128-wide groups (group g goes to warp g % 8) and
//    reduce in shared memory at the end. Matrices with fewer than two tiles per SM (qkv, o, down at Step1 shapes)
//    split each tile over a thread-block cluster of 2 or 4 blocks instead (v3): the cluster's 16 or 32 warps split
//    the groups and reduce in rank 0's shared memory through DSMEM, so no workspace is needed and y is rounded to
//    bf16 once. A thread (lane = 4·r + t) loads, per group, 16 B of codes of row r and 16 B of row r + 8: the
//    4 threads t of a row cover exactly one group, so the scale (and zero) is applied once per group to the fp32
//    MMA partial sum;
//  * software pipeline: a batch of kBatch groups — codes, scales and zeros together — is loaded before the previous
//    batch is multiplied (v1 fetched the scales only after the codes had arrived: two DRAM round trips). v2 made
//    blocks persistent (several tiles each, one barrier per tile) and was slower at K = 3072: see NOTES_QUANT.md;
//  * int4 → bf16 is the magic-number trick: (q >> 4i) & 0x000f000f | 0x43004300 is the bf16 pair 128 + c of
//    elements (2i, 2i+1), and one packed fma subtracts 128 + z exactly — (c − z) is a small integer, so the MMA
//    operand is exact and the only rounding is the fp32 accumulation and the final bf16;
//  * mma.m16n8k16: W rows are the M=16 side, tokens the n=8 side (one or two 8-token tiles). A dot product does not
//    care about the order of k, so each thread's logical k slots are mapped to the k of its own 16-byte load, and
//    the same mapping is applied to x: both operands come straight from plain 16-byte loads;
//  * codes are streamed with ld.global.nc.L1::no_allocate, so x (tiny) stays in L1.
#include <cooperative_groups.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include <string>

#include "errors.h"
#include "sa_numeric.h"
#include "stepaudio_native.h"

namespace {

namespace cg = cooperative_groups;
constexpr int kWarps = 8;
constexpr int kGroup = SA_W4A16_GROUP;
constexpr int kBlocksPerSm = 2;

__device__ __forceinline__ uint4 ld_stream16(const uint32_t *p) {
    uint4 r;
    asm volatile("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
                 : "l"(p));
    return r;
}

__device__ __forceinline__ void mma_bf16_16816(float c[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                               uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// Elements (2i, 2i+1) of a code word as the exact bf16 pair (c − z): lop3 gives 128 + c, fma adds −(128 + z).
__device__ __forceinline__ uint32_t dequant_pair(uint32_t q, int shift, uint32_t neg_magic_z) {
    uint32_t v;
    asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(v) : "r"(q >> shift), "r"(0x000f000fu), "r"(0x43004300u));
    uint32_t r;
    asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(r) : "r"(v), "r"(0x3f803f80u), "r"(neg_magic_z));
    return r;
}

template <bool Fp16Scales>
__device__ __forceinline__ float scale_to_f32(uint32_t s) {
    if constexpr (Fp16Scales) return __half2float(__ushort_as_half((unsigned short)s));
    else return __uint_as_float(s << 16);
}

// -(128 + z) as a bf16 pair (bf16 128..143 are 0x4300 + z; the sign bit makes them negative).
__device__ __forceinline__ uint32_t neg_magic(uint32_t z) { return (0xC300u + z) * 0x00010001u; }

// One batch of units in registers: codes of rows r and r + 8, their scales (row r low half, row r + 8 high half)
// and zero codes (row r byte 0, row r + 8 byte 1).
template <int kBatch>
struct Batch {
    uint4 qa[kBatch], qb[kBatch];
    uint32_t s[kBatch], z[kBatch];
};

template <int Tiles, bool Fp16Scales, bool HasZeros, int Split>
__global__ void __launch_bounds__(kWarps * 32, kBlocksPerSm)
    w4a16_gemv(const uint16_t *__restrict__ x, const uint32_t *__restrict__ qweight,
               const uint16_t *__restrict__ scales, const uint8_t *__restrict__ zeros, uint16_t *__restrict__ y,
               int m, int n, int k) {
    constexpr int kBatch = Tiles == 1 ? 3 : 2;  // units per batch; two batches in flight fit 128 registers
    // [split rank · warp][row][token]; with Split > 1 only rank 0's copy is used: the others write into it.
    __shared__ float partial[Split * kWarps][16][16];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, r = lane / 4, t = lane % 4;
    const int rank = Split > 1 ? (int)cg::this_cluster().block_rank() : 0;
    const int vwarp = rank * kWarps + warp;                       // the cluster's warps split the groups
    const int groups = k / kGroup, kw = k / 8;
    const int units = (groups + Split * kWarps - 1) / (Split * kWarps);  // groups per warp
    const int n0 = (int)(blockIdx.x / Split) * 16;
    const int ra = min(n0 + r, n - 1), rb = min(n0 + r + 8, n - 1);  // ragged rows load valid memory
    const uint32_t *qa = qweight + (size_t)ra * kw + t * 4, *qb = qweight + (size_t)rb * kw + t * 4;
    const uint16_t *sca = scales + (size_t)ra * groups, *scb = scales + (size_t)rb * groups;

    auto load = [&](Batch<kBatch> &b, int u0) {
#pragma unroll
        for (int u = 0; u < kBatch; ++u) {
            const int grp = vwarp + (u0 + u) * Split * kWarps;
            if (u0 + u < units && grp < groups) {
                b.qa[u] = ld_stream16(qa + grp * (kGroup / 8));
                b.qb[u] = ld_stream16(qb + grp * (kGroup / 8));
                b.s[u] = (uint32_t)__ldg(sca + grp) | (uint32_t)__ldg(scb + grp) << 16;
                if (HasZeros)
                    b.z[u] = (uint32_t)__ldg(zeros + (size_t)ra * groups + grp) |
                             (uint32_t)__ldg(zeros + (size_t)rb * groups + grp) << 8;
                else b.z[u] = 8u | 8u << 8;
            }
        }
    };

    float acc[Tiles][4];
#pragma unroll
    for (int tt = 0; tt < Tiles; ++tt) acc[tt][0] = acc[tt][1] = acc[tt][2] = acc[tt][3] = 0.0f;

    Batch<kBatch> cur, next;
    load(cur, 0);
    for (int u0 = 0; u0 < units; u0 += kBatch) {
        load(next, u0 + kBatch);
#pragma unroll
        for (int u = 0; u < kBatch; ++u) {
            const int grp = vwarp + (u0 + u) * Split * kWarps;
            if (u0 + u >= units || grp >= groups) break;
            const float sa = scale_to_f32<Fp16Scales>(cur.s[u] & 0xffffu);
            const float sb = scale_to_f32<Fp16Scales>(cur.s[u] >> 16);
            const uint32_t za = neg_magic(cur.z[u] & 0xffu), zb = neg_magic((cur.z[u] >> 8) & 0xffu);
            float part[Tiles][4];
#pragma unroll
            for (int tt = 0; tt < Tiles; ++tt) part[tt][0] = part[tt][1] = part[tt][2] = part[tt][3] = 0.0f;
            const uint32_t qwa[4] = {cur.qa[u].x, cur.qa[u].y, cur.qa[u].z, cur.qa[u].w};
            const uint32_t qwb[4] = {cur.qb[u].x, cur.qb[u].y, cur.qb[u].z, cur.qb[u].w};
#pragma unroll
            for (int w = 0; w < 4; ++w) {
                // This thread's word w covers k = grp·128 + (4t + w)·8 + 0..7 for rows r and r + 8.
                const int kx = grp * kGroup + (t * 4 + w) * 8;
                uint4 xv[Tiles];
#pragma unroll
                for (int tt = 0; tt < Tiles; ++tt) {
                    const int token = tt * 8 + r;
                    xv[tt] = token < m ? __ldg(reinterpret_cast<const uint4 *>(x + (size_t)token * k + kx))
                                       : make_uint4(0, 0, 0, 0);
                }
#pragma unroll
                for (int h = 0; h < 2; ++h) {  // MMA step h: elements 4h..4h+3 of the word
                    const uint32_t a0 = dequant_pair(qwa[w], 8 * h, za), a2 = dequant_pair(qwa[w], 8 * h + 4, za);
                    const uint32_t a1 = dequant_pair(qwb[w], 8 * h, zb), a3 = dequant_pair(qwb[w], 8 * h + 4, zb);
#pragma unroll
                    for (int tt = 0; tt < Tiles; ++tt) {
                        const uint32_t b0 = h == 0 ? xv[tt].x : xv[tt].z, b1 = h == 0 ? xv[tt].y : xv[tt].w;
                        mma_bf16_16816(part[tt], a0, a1, a2, a3, b0, b1);
                    }
                }
            }
#pragma unroll
            for (int tt = 0; tt < Tiles; ++tt) {  // c0,c1: row r, tokens 2t, 2t+1; c2,c3: row r + 8
                acc[tt][0] += part[tt][0] * sa;
                acc[tt][1] += part[tt][1] * sa;
                acc[tt][2] += part[tt][2] * sb;
                acc[tt][3] += part[tt][3] * sb;
            }
        }
        cur = next;
    }

    // Reduce the Split·8 warps' partial sums in rank 0's shared memory (other ranks write through DSMEM), then
    // write y once in bf16.
    float(*dst)[16][16] = partial;
    if constexpr (Split > 1)
        dst = reinterpret_cast<float(*)[16][16]>(cg::this_cluster().map_shared_rank(&partial[0][0][0], 0));
#pragma unroll
    for (int tt = 0; tt < Tiles; ++tt) {
        dst[vwarp][r][tt * 8 + 2 * t] = acc[tt][0];
        dst[vwarp][r][tt * 8 + 2 * t + 1] = acc[tt][1];
        dst[vwarp][r + 8][tt * 8 + 2 * t] = acc[tt][2];
        dst[vwarp][r + 8][tt * 8 + 2 * t + 1] = acc[tt][3];
    }
    if constexpr (Split > 1) cg::this_cluster().sync();  // rank 0 stays resident until every remote write landed
    else __syncthreads();
    if (rank != 0) return;
    const int row = threadIdx.x / 16, token = threadIdx.x % 16;
    if (token < m && token < Tiles * 8 && n0 + row < n) {
        float sum = 0.0f;
#pragma unroll
        for (int wi = 0; wi < Split * kWarps; ++wi) sum += partial[wi][row][token];
        y[(size_t)token * n + n0 + row] = sa_f32_to_bf16(sum);
    }
}

// Split > 1: a cluster of Split blocks (one per SM) shares one 16-row tile, splitting its groups.
template <int Tiles, bool Fp16Scales, bool HasZeros, int Split>
cudaError_t launch_split(int tiles, cudaStream_t s, const uint16_t *x, const uint32_t *q, const uint16_t *sc,
                         const uint8_t *z, uint16_t *y, int m, int n, int k) {
    auto kernel = w4a16_gemv<Tiles, Fp16Scales, HasZeros, Split>;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned)(tiles * Split));
    cfg.blockDim = dim3(kWarps * 32);
    cfg.stream = s;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = Split;
    attr[0].val.clusterDim.y = 1;
    attr[0].val.clusterDim.z = 1;
    cfg.attrs = attr;
    cfg.numAttrs = Split > 1 ? 1 : 0;
    return cudaLaunchKernelEx(&cfg, kernel, x, q, sc, z, y, m, n, k);
}

template <int Tiles, bool Fp16Scales, bool HasZeros>
cudaError_t launch_tiles(int split, int tiles, cudaStream_t s, const uint16_t *x, const uint32_t *q, const uint16_t *sc,
                         const uint8_t *z, uint16_t *y, int m, int n, int k) {
    if (split == 4) return launch_split<Tiles, Fp16Scales, HasZeros, 4>(tiles, s, x, q, sc, z, y, m, n, k);
    if (split == 2) return launch_split<Tiles, Fp16Scales, HasZeros, 2>(tiles, s, x, q, sc, z, y, m, n, k);
    return launch_split<Tiles, Fp16Scales, HasZeros, 1>(tiles, s, x, q, sc, z, y, m, n, k);
}

template <int Tiles, bool Fp16Scales>
cudaError_t launch_zeros(bool has_zeros, int split, int tiles, cudaStream_t s, const uint16_t *x, const uint32_t *q,
                         const uint16_t *sc, const uint8_t *z, uint16_t *y, int m, int n, int k) {
    if (has_zeros) return launch_tiles<Tiles, Fp16Scales, true>(split, tiles, s, x, q, sc, z, y, m, n, k);
    return launch_tiles<Tiles, Fp16Scales, false>(split, tiles, s, x, q, sc, z, y, m, n, k);
}

bool aligned16(const void *p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// SMs of the current device (a host query, legal inside stream capture).
int sm_count() {
    int dev = 0, sms = 132;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
        sms = 132;
    return sms;
}

// Blocks per tile: matrices with fewer tiles than two per SM (qkv, o, down at Step1 shapes) split each tile's
// groups over a cluster of 2 or 4 blocks, so every SM gets a similar share of the bytes.
int split_for(int tiles, int groups) {
    if (tiles >= 2 * sm_count()) return 1;
    return groups >= 4 * 2 * kWarps ? 4 : groups >= 2 * kWarps ? 2 : 1;
}

}  // namespace

SA_API sa_status sa_cuda_linear_w4a16(const uint16_t *x, const uint32_t *qweight, const uint16_t *scales,
                                      const uint8_t *zeros, int32_t flags, uint16_t *y, int32_t m, int32_t n, int32_t k,
                                      void *stream) {
    if (!x || !qweight || !scales || !y || m < 0 || n <= 0 || k <= 0)
        return sa::fail(SA_E_INVALID_ARGUMENT, "sa_cuda_linear_w4a16: bad arguments");
    if (k % kGroup != 0)
        return sa::fail(SA_E_INVALID_ARGUMENT, "sa_cuda_linear_w4a16: K=" + std::to_string(k) +
                                                   " is not a multiple of the group size 128");
    if (!aligned16(x) || !aligned16(qweight))
        return sa::fail(SA_E_INVALID_ARGUMENT, "sa_cuda_linear_w4a16: x and qweight must be 16-byte aligned");
    if (flags & ~SA_W4A16_FP16_SCALES)
        return sa::fail(SA_E_INVALID_ARGUMENT, "sa_cuda_linear_w4a16: unknown flags " + std::to_string(flags));
    auto s = static_cast<cudaStream_t>(stream);
    const int tiles = (n + 15) / 16, split = split_for(tiles, k / kGroup);
    const bool fp16 = flags & SA_W4A16_FP16_SCALES, has_zeros = zeros != nullptr;
    for (int32_t m0 = 0; m0 < m; m0 += 16) {  // prefill: the decode kernel over 16-token tiles
        const int mc = m - m0 < 16 ? m - m0 : 16;
        const uint16_t *xc = x + (size_t)m0 * k;
        uint16_t *yc = y + (size_t)m0 * n;
        cudaError_t err;
        if (mc <= 8)
            err = fp16 ? launch_zeros<1, true>(has_zeros, split, tiles, s, xc, qweight, scales, zeros, yc, mc, n, k)
                       : launch_zeros<1, false>(has_zeros, split, tiles, s, xc, qweight, scales, zeros, yc, mc, n, k);
        else
            err = fp16 ? launch_zeros<2, true>(has_zeros, split, tiles, s, xc, qweight, scales, zeros, yc, mc, n, k)
                       : launch_zeros<2, false>(has_zeros, split, tiles, s, xc, qweight, scales, zeros, yc, mc, n, k);
        if (err == cudaSuccess) err = cudaGetLastError();
        if (err != cudaSuccess)
            return sa::fail(SA_E_CUDA, std::string("w4a16_gemv: launch failed with ") + cudaGetErrorName(err) + " (" +
                                           cudaGetErrorString(err) + ")");
    }
    return SA_OK;
}
