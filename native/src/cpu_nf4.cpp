// cpu_nf4.cpp — the reference NF4 dequantization and linear (the oracle for kernels/linear_nf4.cu and what the CPU
// backend runs for bitsandbytes checkpoints). Layout and formula: stepaudio_native.h, "bitsandbytes NF4 weights".
#include <string>
#include <vector>

#include "cpu_linear.h"
#include "errors.h"
#include "nf4_common.h"
#include "stepaudio_native.h"

using sa::fail;

static sa_status check_nf4_args(const char *fn, const uint8_t *qweight, const void *absmax, const float *tables, int32_t n,
                                int32_t k) {
    if (!qweight || !absmax || !tables || n <= 0 || k <= 0)
        return fail(SA_E_INVALID_ARGUMENT, std::string(fn) + ": null pointer or non-positive size");
    if (k % SA_NF4_BLOCK != 0)
        return fail(SA_E_INVALID_ARGUMENT, std::string(fn) + ": K = " + std::to_string(k) +
                                               " is not a multiple of the NF4 block size 64 (the kernel layout needs whole blocks per row)");
    return SA_OK;
}

// One row of W dequantized to fp32 before the cast.
static void dequantize_row_f32(const uint8_t *qweight, const void *absmax, const float *tables, int32_t double_quant,
                               int32_t k, int32_t row, float *out) {
    const int64_t base = (int64_t)row * k;
    for (int32_t b = 0; b < k / SA_NF4_BLOCK; ++b) {
        const float scale = sa_nf4_absmax(absmax, tables, double_quant, base / SA_NF4_BLOCK + b);
        for (int32_t j = 0; j < SA_NF4_BLOCK; ++j) {
            const int64_t e = base + (int64_t)b * SA_NF4_BLOCK + j;
            const uint8_t byte = qweight[e >> 1];
            const int nibble = (e & 1) ? (byte & 15) : (byte >> 4);  // element 2i is the high nibble
            out[b * SA_NF4_BLOCK + j] = tables[nibble] * scale;
        }
    }
}

SA_API sa_status sa_cpu_nf4_dequantize(const uint8_t *qweight, const void *absmax, const float *tables, int32_t double_quant,
                                       int32_t n, int32_t k, float *w_f32, uint16_t *w_bf16) {
    if (sa_status s = check_nf4_args("sa_cpu_nf4_dequantize", qweight, absmax, tables, n, k)) return s;
    SA_GUARD_BEGIN
    std::vector<float> row(k);
    for (int32_t r = 0; r < n; ++r) {
        dequantize_row_f32(qweight, absmax, tables, double_quant, k, r, row.data());
        for (int32_t i = 0; i < k; ++i) {
            if (w_f32) w_f32[(int64_t)r * k + i] = row[i];
            if (w_bf16) w_bf16[(int64_t)r * k + i] = sa_f32_to_bf16(row[i]);
        }
    }
    return SA_OK;
    SA_GUARD_END
}

SA_API sa_status sa_cpu_linear_nf4(const uint16_t *x, const uint8_t *qweight, const void *absmax, const float *tables,
                                   int32_t double_quant, uint16_t *y, int32_t m, int32_t n, int32_t k) {
    if (sa_status s = check_nf4_args("sa_cpu_linear_nf4", qweight, absmax, tables, n, k)) return s;
    if (!x || !y || m < 0) return fail(SA_E_INVALID_ARGUMENT, "sa_cpu_linear_nf4: bad activations");
    SA_GUARD_BEGIN
    sa::linear_from_rows(x, y, m, n, k, [&](int32_t j, float *row) {
        dequantize_row_f32(qweight, absmax, tables, double_quant, k, j, row);
        for (int32_t i = 0; i < k; ++i) row[i] = sa_round_bf16(row[i]);  // the bf16 weight bitsandbytes hands to the matmul
    });
    return SA_OK;
    SA_GUARD_END
}
