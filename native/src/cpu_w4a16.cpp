// cpu_w4a16.cpp — CPU reference for the W4A16 kernel layout (see the W4A16 section of stepaudio_native.h):
// dequantize exactly, w = (c - z) * s in fp32, then the plain bf16-output matmul. It runs the CPU backend and is
// the oracle for kernels/linear_w4a16.cu.
#include <string>
#include <vector>

#include "cpu_linear.h"
#include "errors.h"
#include "sa_numeric.h"
#include "stepaudio_native.h"

using sa::fail;

namespace {

// Nibble position of element e (0..7) inside a word: the 0,2,4,6,1,3,5,7 interleave.
constexpr int kNibbleOf[8] = {0, 4, 1, 5, 2, 6, 3, 7};

float half_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0x1f) bits = sign | 0x7f800000u | (man << 13);  // inf / NaN
    else if (exp != 0) bits = sign | ((exp + 112) << 23) | (man << 13);
    else if (man == 0) bits = sign;
    else {  // subnormal: normalise
        int e = -1;
        do { man <<= 1; ++e; } while (!(man & 0x400u));
        bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ffu) << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

sa_status check_shape(const char *fn, int32_t n, int32_t k) {
    if (n <= 0 || k <= 0 || k % SA_W4A16_GROUP != 0)
        return fail(SA_E_INVALID_ARGUMENT, std::string(fn) + ": W4A16 needs N > 0 and K a positive multiple of " +
                                               std::to_string(SA_W4A16_GROUP) + ", got N=" + std::to_string(n) +
                                               " K=" + std::to_string(k));
    return SA_OK;
}

// Row n of W, dequantized into out[0..k).
void dequant_row(const uint32_t *qweight, const uint16_t *scales, const uint8_t *zeros, int32_t flags, int32_t n,
                 int32_t k, float *out) {
    const int32_t groups = k / SA_W4A16_GROUP;
    for (int32_t g = 0; g < groups; ++g) {
        uint16_t sb = scales[(int64_t)n * groups + g];
        float s = (flags & SA_W4A16_FP16_SCALES) ? half_to_f32(sb) : sa_bf16_to_f32(sb);
        int z = zeros ? zeros[(int64_t)n * groups + g] : 8;
        for (int32_t j = g * SA_W4A16_GROUP / 8; j < (g + 1) * SA_W4A16_GROUP / 8; ++j) {
            uint32_t word = qweight[(int64_t)n * (k / 8) + j];
            for (int e = 0; e < 8; ++e) out[8 * j + e] = (float)((int)((word >> (4 * kNibbleOf[e])) & 15u) - z) * s;
        }
    }
}

}  // namespace

SA_API sa_status sa_cpu_w4a16_dequant(const uint32_t *qweight, const uint16_t *scales, const uint8_t *zeros,
                                      int32_t flags, int32_t n, int32_t k, float *out) {
    if (!qweight || !scales || !out) return fail(SA_E_INVALID_ARGUMENT, "sa_cpu_w4a16_dequant: null pointer");
    if (sa_status s = check_shape("sa_cpu_w4a16_dequant", n, k)) return s;
    for (int32_t r = 0; r < n; ++r) dequant_row(qweight, scales, zeros, flags, r, k, out + (int64_t)r * k);
    return SA_OK;
}

SA_API sa_status sa_cpu_linear_w4a16(const uint16_t *x, const uint32_t *qweight, const uint16_t *scales,
                                     const uint8_t *zeros, int32_t flags, uint16_t *y, int32_t m, int32_t n, int32_t k) {
    if (!x || !qweight || !scales || !y || m < 0) return fail(SA_E_INVALID_ARGUMENT, "sa_cpu_linear_w4a16: bad arguments");
    if (sa_status s = check_shape("sa_cpu_linear_w4a16", n, k)) return s;
    SA_GUARD_BEGIN
    sa::linear_from_rows(x, y, m, n, k, [&](int32_t j, float *row) { dequant_row(qweight, scales, zeros, flags, j, k, row); });
    return SA_OK;
    SA_GUARD_END
}
