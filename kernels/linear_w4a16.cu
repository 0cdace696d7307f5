// linear_w4a16.cu — y[M,N] = bf16(x[M,K] · W^T) for W in the W4A16 kernel layout (stepaudio_native.h):
// int4 codes [N, K/8] (nibbles interleaved 0,2,4,6,1,3,5,7), 16-bit group scales [N, K/128], optional zero codes.
//
// One skinny tensor-core kernel for M <= 16 (decode), the same one over 16-token tiles for larger M (prefill; not a
// dedicated prefill GEMM yet):
//  * work unit = (16-row tile, one 128-wide group). A block owns tiles blockIdx.x, +gridDim.x, ... (at most
//    2 blocks per SM are launched, so wide matrices are streamed by resident blocks instead of waves of short
//    ones); its 8 warps split each tile's groups (group g goes to warp g % 8) and reduce in shared memory when
//    the tile is done. A thread (lane = 4·r + t) loads, per unit, 16 B of codes of row r and 16 B of row r + 8:
//    the 4 threads t of a row cover exactly one group, so the scale (and zero) is applied once per group to the
//    fp32 MMA partial sum;
//  * software pipeline (v2): a batch of kBatch units — codes, scales and zeros together — is loaded before the
//    previous batch is multiplied, across tile boundaries, so each thread keeps 3–6 independent 16-byte loads in
//    flight the whole time (v1 loaded one tile, waited, then fetched the scales: two DRAM round trips per tile);
//  * int4 → bf16 is the magic-number trick: (q >> 4i) & 0x000f000f | 0x43004300 is the bf16 pair 128 + c of
//    elements (2i, 2i+1), and one packed fma subtracts 128 + z exactly — (c − z) is a small integer, so the MMA
//    operand is exact and the only rounding is the fp32 accumulation and the final bf16;
//  * mma.m16n8k16: W rows are the M=16 side, tokens the n=8 side (one or two 8-token tiles). A dot product does not
//    care about the order of k, so each thread's logical k slots are mapped to the k of its own 16-byte load, and
//    the same mapping is applied to x: both operands come straight from plain 16-byte loads;
//  * codes are streamed with ld.global.nc.L1::no_allocate, so x (tiny) stays in L1.
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include <string>

#include "errors.h"
#include "sa_numeric.h"
#include "stepaudio_native.h"

namespace {

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

template <int Tiles, bool Fp16Scales, bool HasZeros>
__global__ void __launch_bounds__(kWarps * 32, kBlocksPerSm)
    w4a16_gemv(const uint16_t *__restrict__ x, const uint32_t *__restrict__ qweight,
               const uint16_t *__restrict__ scales, const uint8_t *__restrict__ zeros, uint16_t *__restrict__ y,
               int m, int n, int k) {
    constexpr int kBatch = Tiles == 1 ? 3 : 2;  // units per batch; two batches in flight fit 128 registers
    __shared__ float partial[2][kWarps][16][16];  // [tile parity][warp][row][token]
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, r = lane / 4, t = lane % 4;
    const int groups = k / kGroup, kw = k / 8, tiles = (n + 15) / 16;
    const int upw = (groups + kWarps - 1) / kWarps;  // units per warp per tile (warps past the last group idle)
    const int my_tiles = (tiles - (int)blockIdx.x + (int)gridDim.x - 1) / (int)gridDim.x;
    const int units = my_tiles * upw;  // the same for every warp of the block: flushes stay block-uniform

    auto load = [&](Batch<kBatch> &b, int u0) {
#pragma unroll
        for (int u = 0; u < kBatch; ++u) {
            const int unit = u0 + u, slot = unit % upw, grp = warp + slot * kWarps;
            if (unit < units && grp < groups) {
                const int n0 = ((int)blockIdx.x + (unit / upw) * (int)gridDim.x) * 16;
                const int ra = min(n0 + r, n - 1), rb = min(n0 + r + 8, n - 1);  // ragged rows load valid memory
                b.qa[u] = ld_stream16(qweight + (size_t)ra * kw + grp * (kGroup / 8) + t * 4);
                b.qb[u] = ld_stream16(qweight + (size_t)rb * kw + grp * (kGroup / 8) + t * 4);
                b.s[u] = (uint32_t)__ldg(scales + (size_t)ra * groups + grp) |
                         (uint32_t)__ldg(scales + (size_t)rb * groups + grp) << 16;
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
            const int unit = u0 + u;
            if (unit >= units) break;  // block-uniform
            const int slot = unit % upw, grp = warp + slot * kWarps;
            if (grp < groups) {
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
            if (slot == upw - 1) {  // tile done: reduce the 8 warps' partial sums, write y once in bf16
                const int tile_i = unit / upw, buf = tile_i & 1;
#pragma unroll
                for (int tt = 0; tt < Tiles; ++tt) {
                    partial[buf][warp][r][tt * 8 + 2 * t] = acc[tt][0];
                    partial[buf][warp][r][tt * 8 + 2 * t + 1] = acc[tt][1];
                    partial[buf][warp][r + 8][tt * 8 + 2 * t] = acc[tt][2];
                    partial[buf][warp][r + 8][tt * 8 + 2 * t + 1] = acc[tt][3];
                    acc[tt][0] = acc[tt][1] = acc[tt][2] = acc[tt][3] = 0.0f;
                }
                // One barrier per tile: the two buffers alternate, and the next write to this one comes after
                // the next tile's barrier, which every thread reaches only after finishing this reduction.
                __syncthreads();
                const int row = threadIdx.x / 16, token = threadIdx.x % 16;
                const int n0 = ((int)blockIdx.x + tile_i * (int)gridDim.x) * 16;
                if (token < m && token < Tiles * 8 && n0 + row < n) {
                    float sum = 0.0f;
#pragma unroll
                    for (int wi = 0; wi < kWarps; ++wi) sum += partial[buf][wi][row][token];
                    y[(size_t)token * n + n0 + row] = sa_f32_to_bf16(sum);
                }
            }
        }
        cur = next;
    }
}

template <int Tiles, bool Fp16Scales>
void launch_zeros(bool has_zeros, dim3 grid, cudaStream_t s, const uint16_t *x, const uint32_t *q, const uint16_t *sc,
                  const uint8_t *z, uint16_t *y, int m, int n, int k) {
    if (has_zeros) w4a16_gemv<Tiles, Fp16Scales, true><<<grid, kWarps * 32, 0, s>>>(x, q, sc, z, y, m, n, k);
    else w4a16_gemv<Tiles, Fp16Scales, false><<<grid, kWarps * 32, 0, s>>>(x, q, sc, z, y, m, n, k);
}

bool aligned16(const void *p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// Resident blocks: kBlocksPerSm per SM of the current device (a host query, legal inside stream capture).
int resident_blocks() {
    int dev = 0, sms = 132;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
        sms = 132;
    return kBlocksPerSm * sms;
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
    const int tiles = (n + 15) / 16, resident = resident_blocks();
    const dim3 grid((unsigned)(tiles < resident ? tiles : resident));
    const bool fp16 = flags & SA_W4A16_FP16_SCALES;
    for (int32_t m0 = 0; m0 < m; m0 += 16) {  // prefill: the decode kernel over 16-token tiles
        const int mc = m - m0 < 16 ? m - m0 : 16;
        const uint16_t *xc = x + (size_t)m0 * k;
        uint16_t *yc = y + (size_t)m0 * n;
        if (mc <= 8) {
            if (fp16) launch_zeros<1, true>(zeros != nullptr, grid, s, xc, qweight, scales, zeros, yc, mc, n, k);
            else launch_zeros<1, false>(zeros != nullptr, grid, s, xc, qweight, scales, zeros, yc, mc, n, k);
        } else {
            if (fp16) launch_zeros<2, true>(zeros != nullptr, grid, s, xc, qweight, scales, zeros, yc, mc, n, k);
            else launch_zeros<2, false>(zeros != nullptr, grid, s, xc, qweight, scales, zeros, yc, mc, n, k);
        }
        cudaError_t err = cudaGetLastError();
        if (err != cudaSuccess)
            return sa::fail(SA_E_CUDA, std::string("w4a16_gemv: launch failed with ") + cudaGetErrorName(err) + " (" +
                                           cudaGetErrorString(err) + ")");
    }
    return SA_OK;
}
