/* sa_numeric.h — numeric definitions shared by the CPU reference (C++) and the CUDA kernels (nvcc).
 * One definition of bf16 rounding, SiLU and the sampler's random draw, so both sides compute the same function. */
#ifndef SA_NUMERIC_H
#define SA_NUMERIC_H

#include <stdint.h>
#include <string.h>

#ifdef __CUDACC__
#define SA_HD __host__ __device__ __forceinline__
#else
#define SA_HD inline
#endif

/* bf16 bits -> fp32 (exact). */
SA_HD float sa_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* fp32 -> bf16 bits, round to nearest even, NaN kept quiet (what torch's .to(bfloat16) does). */
SA_HD uint16_t sa_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

SA_HD float sa_round_bf16(float f) { return sa_bf16_to_f32(sa_f32_to_bf16(f)); }

/* splitmix64 finaliser: a counter-based generator, so a draw depends only on (seed, step). */
SA_HD uint64_t sa_mix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [0,1) with 24 random bits (exactly representable in fp32). */
SA_HD float sa_uniform_draw(uint64_t seed, uint64_t step) {
    uint64_t r = sa_mix64(seed ^ sa_mix64(step));
    return (float)(r >> 40) * (1.0f / 16777216.0f);
}

#endif
