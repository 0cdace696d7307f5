// nf4_common.h — the NF4 kernel layout's dequantization, one definition for the CPU reference and the CUDA kernels
// (layout described in stepaudio_native.h, "bitsandbytes NF4 weights").
#pragma once
#include <stdint.h>

#include "sa_numeric.h"

#define SA_NF4_BLOCK 64         /* weights per absmax */
#define SA_NF4_NESTED_BLOCK 256 /* absmax codes per nested (scale, offset) pair */
#define SA_NF4_TABLE_HEADER (16 + 256)

/* Floats in the tables array of a weight with n_blocks 64-blocks. */
SA_HD int64_t sa_nf4_table_floats(int64_t n_blocks, int32_t double_quant) {
    return SA_NF4_TABLE_HEADER + (double_quant ? 2 * ((n_blocks + SA_NF4_NESTED_BLOCK - 1) / SA_NF4_NESTED_BLOCK) : 0);
}

/* bitsandbytes: nested_map[code] * nested_absmax[g] + offset, as two separately rounded fp32 operations. */
SA_HD float sa_nf4_absmax(const void *absmax, const float *tables, int32_t double_quant, int64_t block) {
    if (!double_quant) return ((const float *)absmax)[block];
    const uint8_t code = ((const uint8_t *)absmax)[block];
    const float *group = tables + SA_NF4_TABLE_HEADER + 2 * (block / SA_NF4_NESTED_BLOCK);
#ifdef __CUDA_ARCH__
    return __fadd_rn(__fmul_rn(tables[16 + code], group[0]), group[1]);
#else
    volatile float product = tables[16 + code] * group[0];  // volatile: never contracted into an FMA
    return product + group[1];
#endif
}
