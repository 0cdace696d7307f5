// quant_bench_common.cuh — what the 4-bit bench programs (w4a16_bench.cu, nf4_bench.cu, quant_prefill_bench.cu)
// share: the check registry their included gpu_checks_*.inc files register into, the CUDA-call check of a main()
// body, and a fill of device memory with hashed random words (so no weight is ever zeros).
#pragma once
#include <cuda_runtime.h>

#include <cstdio>
#include <functional>
#include <string>
#include <vector>

struct Check {
    std::string name;
    std::function<std::string()> run;
};
static std::vector<Check> &registry() {
    static std::vector<Check> checks;
    return checks;
}

// Inside main(): a failed CUDA call prints its error and line and returns 1.
#define CK(x)                                                                                    \
    do {                                                                                         \
        cudaError_t e_ = (x);                                                                    \
        if (e_ != cudaSuccess) {                                                                 \
            std::printf("CUDA %s at line %d\n", cudaGetErrorName(e_), __LINE__);                 \
            return 1;                                                                            \
        }                                                                                        \
    } while (0)

// p[i] = (hash(i, seed) & mask) + add for the bytes / 4 words at p.
__global__ void fill_random(uint32_t *p, size_t n, uint32_t seed, uint32_t mask, uint32_t add) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint32_t h = (uint32_t)i * 2654435761u ^ seed;
        h ^= h >> 15; h *= 2246822519u; h ^= h >> 13; h *= 3266489917u; h ^= h >> 16;
        p[i] = (h & mask) + add;
    }
}
static void fill(void *p, size_t bytes, uint32_t seed, uint32_t mask = 0xffffffffu, uint32_t add = 0) {
    fill_random<<<1024, 256>>>((uint32_t *)p, bytes / 4, seed, mask, add);
}
