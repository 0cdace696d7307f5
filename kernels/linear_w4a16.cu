// linear_w4a16.cu — y[M,N] = bf16(x[M,K] · W^T) for W in the W4A16 kernel layout (stepaudio_native.h):
// int4 codes [N, K/8] (nibbles interleaved 0,2,4,6,1,3,5,7), 16-bit group scales [N, K/128], optional zero codes.
//
// One skinny tensor-core kernel for M <= 16 (decode), the same one over 16-token tiles for larger M (prefill; not a
// dedicated prefill GEMM yet):
//  * a block owns 16 output rows; its 8 warps split the K groups (group g goes to warp g % 8) and reduce in shared
//    memory at the end. A thread (lane = 4·r + t) loads, per group, 16 B of codes of row r and 16 B of row r + 8:
//    the 4 threads t of a row cover exactly one 128-wide group, so the scale (and zero) is applied once per group
//    to the fp32 MMA partial sum;
//  * int4 → bf16 is the magic-number trick: (q >> 4i) & 0x000f000f | 0x43004300 is the bf16 pair 128 + c of
//    elements (2i, 2i+1), and one packed fma subtracts 128 + z exactly — (c − z) is a small integer, so the MMA
//    operand is exact and the only rounding is the fp32 accumulation and the final bf16;
//  * mma.m16n8k16: W rows are the M=16 side, tokens the n=8 side (one or two 8-token tiles). A dot product does not
//    care about the order of k, so each thread's logical k slots are mapped to the k of its own 16-byte load, and
//    the same mapping is applied to x: both operands come straight from plain 16-byte loads;
//  * codes are streamed with ld.global.nc.L1::no_allocate, 4 groups (8 loads of 16 B per thread) in flight; the
//    groups' scales and zeros are loaded in the same batch (v4; v1 loaded them only after the codes had arrived).
//    Versions v2 (persistent blocks) and v3 (cluster split-K) were slower: kernels/NOTES_QUANT.md.
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
constexpr int kUnroll = 4;  // groups per warp whose codes are loaded before any is multiplied

__device__ __forceinline__ uint4 ld_stream16(const uint32_t *p) {
    uint4 r;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
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
__device__ __forceinline__ float scale_to_f32(uint16_t s) {
    if constexpr (Fp16Scales) return __half2float(__ushort_as_half(s));
    else return __uint_as_float((uint32_t)s << 16);
}

// -(128 + z) as a bf16 pair (bf16 128..143 are 0x4300 + z; the sign bit makes them negative).
__device__ __forceinline__ uint32_t neg_magic(int z) { return (0xC300u + (uint32_t)z) * 0x00010001u; }

template <int Tiles, bool Fp16Scales, bool HasZeros>
__global__ void __launch_bounds__(kWarps * 32)
    w4a16_skinny(const uint16_t *__restrict__ x, const uint32_t *__restrict__ qweight,
                 const uint16_t *__restrict__ scales, const uint8_t *__restrict__ zeros, uint16_t *__restrict__ y,
                 int m, int n, int k) {
    __shared__ float partial[kWarps][16][16];  // [warp][row][token]
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, r = lane / 4, t = lane % 4;
    const int n0 = blockIdx.x * 16, groups = k / kGroup, kw = k / 8;
    const int row_a = min(n0 + r, n - 1), row_b = min(n0 + r + 8, n - 1);  // clamped: ragged rows load valid memory
    const uint32_t *qa = qweight + (size_t)row_a * kw + t * 4;
    const uint32_t *qb = qweight + (size_t)row_b * kw + t * 4;

    float acc[Tiles][4];
#pragma unroll
    for (int tt = 0; tt < Tiles; ++tt) acc[tt][0] = acc[tt][1] = acc[tt][2] = acc[tt][3] = 0.0f;

    for (int base = warp; base < groups; base += kWarps * kUnroll) {
        uint4 wa[kUnroll], wb[kUnroll];
        uint16_t sa_raw[kUnroll], sb_raw[kUnroll];
        uint8_t za_raw[kUnroll], zb_raw[kUnroll];
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {  // codes, scales and zeros in one round trip
            const int grp = base + u * kWarps;
            if (grp < groups) {
                wa[u] = ld_stream16(qa + (size_t)grp * (kGroup / 8));
                wb[u] = ld_stream16(qb + (size_t)grp * (kGroup / 8));
                sa_raw[u] = __ldg(scales + (size_t)row_a * groups + grp);
                sb_raw[u] = __ldg(scales + (size_t)row_b * groups + grp);
                za_raw[u] = HasZeros ? __ldg(zeros + (size_t)row_a * groups + grp) : 8;
                zb_raw[u] = HasZeros ? __ldg(zeros + (size_t)row_b * groups + grp) : 8;
            }
        }
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
            const int grp = base + u * kWarps;
            if (grp >= groups) break;
            const float sa = scale_to_f32<Fp16Scales>(sa_raw[u]), sb = scale_to_f32<Fp16Scales>(sb_raw[u]);
            const uint32_t za = neg_magic(za_raw[u]), zb = neg_magic(zb_raw[u]);
            float part[Tiles][4];
#pragma unroll
            for (int tt = 0; tt < Tiles; ++tt) part[tt][0] = part[tt][1] = part[tt][2] = part[tt][3] = 0.0f;
            const uint32_t qwa[4] = {wa[u].x, wa[u].y, wa[u].z, wa[u].w};
            const uint32_t qwb[4] = {wb[u].x, wb[u].y, wb[u].z, wb[u].w};
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
    }
#pragma unroll
    for (int tt = 0; tt < Tiles; ++tt) {
        partial[warp][r][tt * 8 + 2 * t] = acc[tt][0];
        partial[warp][r][tt * 8 + 2 * t + 1] = acc[tt][1];
        partial[warp][r + 8][tt * 8 + 2 * t] = acc[tt][2];
        partial[warp][r + 8][tt * 8 + 2 * t + 1] = acc[tt][3];
    }
    __syncthreads();
    const int row = threadIdx.x / 16, token = threadIdx.x % 16;
    if (token < m && token < Tiles * 8 && n0 + row < n) {
        float sum = 0.0f;
#pragma unroll
        for (int wi = 0; wi < kWarps; ++wi) sum += partial[wi][row][token];
        y[(size_t)token * n + n0 + row] = sa_f32_to_bf16(sum);
    }
}

template <int Tiles, bool Fp16Scales>
void launch_zeros(bool has_zeros, dim3 grid, cudaStream_t s, const uint16_t *x, const uint32_t *q, const uint16_t *sc,
                  const uint8_t *z, uint16_t *y, int m, int n, int k) {
    if (has_zeros) w4a16_skinny<Tiles, Fp16Scales, true><<<grid, kWarps * 32, 0, s>>>(x, q, sc, z, y, m, n, k);
    else w4a16_skinny<Tiles, Fp16Scales, false><<<grid, kWarps * 32, 0, s>>>(x, q, sc, z, y, m, n, k);
}

bool aligned16(const void *p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

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
    const dim3 grid((unsigned)((n + 15) / 16));
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
            return sa::fail(SA_E_CUDA, std::string("w4a16_skinny: launch failed with ") + cudaGetErrorName(err) + " (" +
                                           cudaGetErrorString(err) + ")");
    }
    return SA_OK;
}
