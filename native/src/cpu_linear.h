// cpu_linear.h — the one CPU matmul loop behind every weight format's reference linear: each format only says how
// to produce row j of W in fp32 (bf16 bits widened, NF4 or int4 dequantized); the dot products, their fp32
// accumulation order and the single bf16 rounding of y are the same for all.
#pragma once
#include <cstdint>
#include <vector>

#include "sa_numeric.h"

namespace sa {

// y[m, n] = bf16(x[m, k] · Wᵀ), where make_row(j, out) writes the k fp32 values of W's row j.
template <class MakeRow>
void linear_from_rows(const uint16_t *x, uint16_t *y, int32_t m, int32_t n, int32_t k, MakeRow make_row) {
    std::vector<float> xf((size_t)m * k);  // activations widened once; weight rows are streamed
    for (size_t i = 0; i < xf.size(); ++i) xf[i] = sa_bf16_to_f32(x[i]);
#pragma omp parallel
    {
        std::vector<float> wf(k);
#pragma omp for schedule(static)
        for (int32_t j = 0; j < n; ++j) {
            make_row(j, wf.data());
            for (int32_t r = 0; r < m; ++r) {
                const float *xr = xf.data() + (int64_t)r * k;
                float acc = 0.0f;
                for (int32_t i = 0; i < k; ++i) acc += xr[i] * wf[i];
                y[(int64_t)r * n + j] = sa_f32_to_bf16(acc);
            }
        }
    }
}

}  // namespace sa
