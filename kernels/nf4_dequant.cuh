// nf4_dequant.cuh — the NF4 dequantization steps the CUDA kernels share (layout in stepaudio_native.h, "bitsandbytes
// NF4 weights"): the code byte -> bf16 pair lookup and the double-quant absmax decode.
//
// Pair table. A code byte b holds two weights, element 2i in the high nibble. Its pair is the 32-bit word
// (bf16(quant_map[b >> 4]) in the low half, bf16(quant_map[b & 15]) in the high half): lower k in the low half, which
// is how an mma.m16n8k16 A register (and a bf16x2 pair from memory) is laid out. The table is replicated per lane:
// the word of (byte b, lane l) sits at byte offset b * kNf4LutRowBytes + 4 * l, so the 32 lanes of a warp always
// read 32 different banks whatever bytes they look up (one conflict-free LDS.32 per two weights).
// Rows are 256 bytes (only the first 128 are used): the offset is then (b << 8) | 4 * l, which one byte permute
// (PRMT) builds from the code word and the lane offset — no shift, no mask. With 128-byte rows it takes a shift and
// a LOP3 (kernels/NOTES_QUANT.md, NF4 v4: both measured).
#pragma once
#include <stdint.h>

#include "cuda_common.cuh"
#include "nf4_common.h"

#ifndef SA_NF4_LUT_ROW_BYTES
#define SA_NF4_LUT_ROW_BYTES 256
#endif
constexpr int kNf4LutRowBytes = SA_NF4_LUT_ROW_BYTES;
static_assert(kNf4LutRowBytes == 128 || kNf4LutRowBytes == 256, "pair table rows are 128 or 256 bytes");
constexpr int kNf4LutBytes = 256 * kNf4LutRowBytes;

// Fills the pair table (kNf4LutBytes of shared memory, 16-byte aligned) from quant_map = tables[0..15]. Called by
// every thread of a block of exactly 256 threads; the caller synchronises before the first lookup. Thread b writes
// row b as 8 stores of 16 bytes, rotated by b so that the 8 lanes of each store phase hit 8 different bank groups.
__device__ __forceinline__ void nf4_build_pair_lut(uint8_t *lut, const float *__restrict__ quant_map) {
    const int b = threadIdx.x;
    const uint32_t pair = (uint32_t)sa_f32_to_bf16(__ldg(quant_map + (b >> 4))) |
                          (uint32_t)sa_f32_to_bf16(__ldg(quant_map + (b & 15))) << 16;
    const uint4 v = make_uint4(pair, pair, pair, pair);
#pragma unroll
    for (int q = 0; q < 8; ++q) *reinterpret_cast<uint4 *>(lut + b * kNf4LutRowBytes + 16 * ((q + b) & 7)) = v;
}

// The bf16 pair of byte j (0..3; a constant once inlined and unrolled) of the code word w, for the lane whose
// 4 * lane is lane_off.
__device__ __forceinline__ uint32_t nf4_pair(const uint8_t *lut, uint32_t w, int j, uint32_t lane_off) {
    uint32_t off;
    if constexpr (kNf4LutRowBytes == 256)
        off = __byte_perm(w, lane_off, 0x5504u | ((uint32_t)j << 4));  // bytes: lane_off, w.byte[j], 0, 0
    else
        off = ((w >> (8 * j)) & 0xffu) << 7 | lane_off;
    return *reinterpret_cast<const uint32_t *>(lut + off);
}

// Double-quant absmax: nested_map[code] * nested_absmax + nested_offset, as two separately rounded fp32 operations
// (bitsandbytes; the same as sa_nf4_absmax in nf4_common.h). `group` is the (nested_absmax, nested_offset) pair of
// the block's group of 256, `nested_value` = nested_map[code].
__device__ __forceinline__ float nf4_double_quant_absmax(float nested_value, float2 group) {
    return __fadd_rn(__fmul_rn(nested_value, group.x), group.y);
}

// The (nested_absmax, nested_offset) pairs of a tables array, indexed by group (block / 256).
__device__ __forceinline__ const float2 *nf4_nested_groups(const float *tables) {
    return reinterpret_cast<const float2 *>(tables + SA_NF4_TABLE_HEADER);
}
