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
