// w4a16_dequant.cuh — the W4A16 int4 -> bf16 building blocks (kernel layout of stepaudio_native.h), shared by the
// decode kernel (linear_w4a16.cu) and whatever else reads the layout on tensor cores.
#pragma once
#include <cuda_fp16.h>
#include <stdint.h>

namespace sa_w4a16 {

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

}  // namespace sa_w4a16

// ---- The integer path of the decode kernels (linear_w4a16.cu, SA_W4A16_IMMA) ----
// mma.m16n8k32 on 8-bit integers: the codes go in as u8 (0..15), one LOP3 per 4 of them (`codes_u8`), and x as two
// exact 8-bit slices of a 16-bit integer per 128-wide group (the kernels stage them in shared memory). The int32
// sums are exact; the zero point and the two scales are applied once per group.
namespace sa_w4a16 {

// The A register of one row for 4 k from a code word: its low nibbles (hi = false: nibbles 0, 2, 4, 6, i.e. elements
// 0, 4, 1, 5) or high nibbles (elements 2, 6, 3, 7), in the same element order as the staged x.
//  * codes_u8: the codes c as u8 (0..15), for weights with zero codes (one LOP3, plus a shift for the low nibbles);
//  * codes_s8x16: 16·(c − 8) as s8 (−128..112), for symmetric weights: (c ^ 8) is c − 8 as a 4-bit two's complement
//    number, so placed in a byte's high nibble it reads as 16·(c − 8) — one LOP3 ((q ^ 0x88888888) & 0xf0f0f0f0),
//    plus a shift for the low nibbles — and the zero point needs no Σ x.
__device__ __forceinline__ uint32_t codes_u8(uint32_t q, bool hi) { return (hi ? q >> 4 : q) & 0x0f0f0f0fu; }
__device__ __forceinline__ uint32_t codes_s8x16(uint32_t q, bool hi) { return ((hi ? q : q << 4) ^ 0x88888888u) & 0xf0f0f0f0u; }

// c += A(16x32) · B(32x8), 8-bit integers (A s8 when SignedA else u8, B likewise), int32 accumulators.
template <bool SignedA, bool SignedB>
__device__ __forceinline__ void imma_16832(int c[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                           uint32_t b1) {
#define SA_IMMA_16832(TYPES)                                                                                    \
    asm volatile("mma.sync.aligned.m16n8k32.row.col.s32." TYPES ".s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, " \
                 "{%0,%1,%2,%3};"                                                                               \
                 : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])                                               \
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1))
    if constexpr (SignedA && SignedB) SA_IMMA_16832("s8.s8");
    else if constexpr (SignedA) SA_IMMA_16832("s8.u8");
    else if constexpr (SignedB) SA_IMMA_16832("u8.s8");
    else SA_IMMA_16832("u8.u8");
#undef SA_IMMA_16832
}

}  // namespace sa_w4a16
