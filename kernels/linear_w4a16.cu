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
//    Versions v2 (persistent blocks) and v3 (cluster split-K) were slower: kernels/NOTES_QUANT.md;
//  * v5: programmatic dependent launch, as the bf16 GEMV (see the kernel's comment).
#include <cuda_fp16.h>

#include <string>

#include "cuda_common.cuh"
#include "linear_quant_prefill.h"

namespace {

constexpr int kWarps = 8;
constexpr int kGroup = SA_W4A16_GROUP;
constexpr int kUnroll = 4;  // groups per warp whose codes are loaded before any is multiplied
// Blocks per SM ptxas must fit (the register budget: 1 = up to 255 registers); a build-time knob for the register
// pressure experiment of NOTES_QUANT.md.
#ifndef SA_W4A16_MIN_BLOCKS
#define SA_W4A16_MIN_BLOCKS 1
#endif

__device__ __forceinline__ uint4 ld_stream16(const uint32_t *p) {
    uint4 r;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
                 : "l"(p));
    return r;
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

// One batch: kUnroll groups of this warp (codes of rows r and r + 8, their scales and zero codes).
struct Batch {
    uint4 wa[kUnroll], wb[kUnroll];
    uint16_t sa[kUnroll], sb[kUnroll];
    uint8_t za[kUnroll], zb[kUnroll];
};

// Programmatic dependent launch (kernels/cuda_common.cuh): the weights never depend on the previous kernel, so a
// block issues its first batch (codes, scales, zeros) and, in the first wave, an L2 prefetch of the rest of its
// rows (up to prefetch_bytes per block) before pdl_wait(); x is read and y written only after it. Keep the prefetch
// branch between the first batch and the wait: with nothing there ptxas hoists the wait above the loads (NOTES.md).
// x and y are not __restrict__ and x is read with plain loads: x was written by the previous kernel, so it must not
// go through the non-coherent path.
template <int Tiles, bool Fp16Scales, bool HasZeros>
__global__ void __launch_bounds__(kWarps * 32, SA_W4A16_MIN_BLOCKS)
    w4a16_skinny(const uint16_t *x, const uint32_t *__restrict__ qweight, const uint16_t *__restrict__ scales,
                 const uint8_t *__restrict__ zeros, uint16_t *y, int m, int n, int k, int prefetch_blocks,
                 int prefetch_bytes) {
    pdl_launch_dependents();
    __shared__ float partial[kWarps][16][16];  // [warp][row][token]
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, r = lane / 4, t = lane % 4;
    const int n0 = blockIdx.x * 16, groups = k / kGroup, kw = k / 8;
    const int row_a = min(n0 + r, n - 1), row_b = min(n0 + r + 8, n - 1);  // clamped: ragged rows load valid memory
    const uint32_t *qa = qweight + (size_t)row_a * kw + t * 4;
    const uint32_t *qb = qweight + (size_t)row_b * kw + t * 4;
    constexpr int kStride = kWarps * kUnroll;  // groups the block covers per batch

    auto load = [&](Batch &b, int base) {  // codes, scales and zeros in one round trip
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
            const int grp = base + u * kWarps;
            if (grp < groups) {
                b.wa[u] = ld_stream16(qa + (size_t)grp * (kGroup / 8));
                b.wb[u] = ld_stream16(qb + (size_t)grp * (kGroup / 8));
                b.sa[u] = __ldg(scales + (size_t)row_a * groups + grp);
                b.sb[u] = __ldg(scales + (size_t)row_b * groups + grp);
                b.za[u] = HasZeros ? __ldg(zeros + (size_t)row_a * groups + grp) : 8;
                b.zb[u] = HasZeros ? __ldg(zeros + (size_t)row_b * groups + grp) : 8;
            }
        }
    };

    float acc[Tiles][4];
#pragma unroll
    for (int tt = 0; tt < Tiles; ++tt) acc[tt][0] = acc[tt][1] = acc[tt][2] = acc[tt][3] = 0.0f;

    Batch b;
    load(b, warp);
    if ((int)blockIdx.x < prefetch_blocks && (int)threadIdx.x < 16) {  // thread i: the rest of row n0 + i, into L2
        const int row = n0 + threadIdx.x, row_bytes = k / 2, first = kStride * kGroup / 2;
        if (row < n && first < row_bytes) {
            const int bytes = min(row_bytes - first, prefetch_bytes / 16) & ~15;
            if (bytes > 0)
                prefetch_l2(reinterpret_cast<const uint8_t *>(qweight) + (size_t)row * row_bytes + first, (uint32_t)bytes);
        }
    }
    pdl_wait();

    for (int base = warp; base < groups; base += kStride) {
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
            const int grp = base + u * kWarps;
            if (grp >= groups) break;
            const float sa = scale_to_f32<Fp16Scales>(b.sa[u]), sb = scale_to_f32<Fp16Scales>(b.sb[u]);
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
        load(b, base + kStride);  // the next batch (nothing past the last group)
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
sa_status launch_zeros(bool has_zeros, dim3 grid, cudaStream_t s, const uint16_t *x, const uint32_t *q,
                       const uint16_t *sc, const uint8_t *z, uint16_t *y, int m, int n, int k) {
    const sa_cuda::DeviceTraits &dev = sa_cuda::device_traits();
    // Blocks of the first wave (two per SM) may start early under PDL; only they prefetch into L2.
    const int prefetch_blocks = dev.quant_pdl && dev.gemv_prefetch_bytes > 0 ? 2 * dev.sms : 0;
    auto kernel = has_zeros ? &w4a16_skinny<Tiles, Fp16Scales, true> : &w4a16_skinny<Tiles, Fp16Scales, false>;
    return sa_cuda::launch_pdl_if(dev.quant_pdl, "w4a16_skinny", kernel, grid, dim3(kWarps * 32), 0, s, x, q, sc, z, y,
                                  m, n, k, prefetch_blocks, dev.gemv_prefetch_bytes);
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
    if (!sa_cuda::aligned16(x) || !sa_cuda::aligned16(qweight))
        return sa::fail(SA_E_INVALID_ARGUMENT, "sa_cuda_linear_w4a16: x and qweight must be 16-byte aligned");
    if (flags & ~SA_W4A16_FP16_SCALES)
        return sa::fail(SA_E_INVALID_ARGUMENT, "sa_cuda_linear_w4a16: unknown flags " + std::to_string(flags));
    auto s = static_cast<cudaStream_t>(stream);
    const dim3 grid((unsigned)((n + 15) / 16));
    const bool fp16 = flags & SA_W4A16_FP16_SCALES;
    if (sa_prefill::use_prefill(m, n, k))  // prefill: the tensor-core GEMM of linear_quant_prefill.cu
        return sa_prefill::linear_w4a16(x, qweight, scales, zeros, fp16, y, m, n, k, s);
    for (int32_t m0 = 0; m0 < m; m0 += 16) {  // prefill: the decode kernel over 16-token tiles
        const int mc = m - m0 < 16 ? m - m0 : 16;
        const uint16_t *xc = x + (size_t)m0 * k;
        uint16_t *yc = y + (size_t)m0 * n;
        const bool z = zeros != nullptr;
        const sa_status st =
            mc <= 8 ? (fp16 ? launch_zeros<1, true>(z, grid, s, xc, qweight, scales, zeros, yc, mc, n, k)
                            : launch_zeros<1, false>(z, grid, s, xc, qweight, scales, zeros, yc, mc, n, k))
                    : (fp16 ? launch_zeros<2, true>(z, grid, s, xc, qweight, scales, zeros, yc, mc, n, k)
                            : launch_zeros<2, false>(z, grid, s, xc, qweight, scales, zeros, yc, mc, n, k));
        if (st != SA_OK) return st;
    }
    return SA_OK;
}
