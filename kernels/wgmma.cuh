// wgmma.cuh — the Hopper warpgroup-MMA pieces (sm_90a) shared by the prefill GEMMs (linear_quant_prefill.cu,
// linear_bf16.cu). Each compiles to nothing outside sm_90a code (__CUDA_ARCH_FEAT_SM90_ALL); the host launches the
// kernels that use them only where the library carries sm_90a code (SA_HAVE_WGMMA, set by CMake).
// Conventions: operands in shared memory are K-major tiles of rows of 64 bf16 (128 B) with the 128-byte swizzle
// (16-byte chunk c of row r stored at c ^ (r & 7)), each tile 1024-byte aligned; a k16 step inside the 64-k row is
// +32 B on the descriptor's start. The fp32 accumulator of m64nN is, per thread of warp v of the warpgroup, N / 8
// groups of 4: (row 16v + g: columns 8j + 2t, 2t + 1; row 16v + g + 8: the same), the mma.m16n8k16 C layout.
#pragma once
#include <stdint.h>

__device__ __forceinline__ void wg_fence() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
#endif
}
__device__ __forceinline__ void wg_commit() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
#endif
}
template <int N>
__device__ __forceinline__ void wg_wait() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory");
#endif
}
// cp.async writes x through the generic proxy; wgmma reads it through the async proxy.
__device__ __forceinline__ void fence_proxy_async() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
#endif
}
// Keeps the compiler from moving accumulator reads / writes across the asynchronous wgmma (CUTLASS does the same).
__device__ __forceinline__ void wg_pin(float (&d)[64]) {
#pragma unroll
    for (int i = 0; i < 64; ++i) asm volatile("" : "+f"(d[i])::"memory");
}
// K-major shared-memory descriptor with the 128-byte swizzle: start >> 4, leading byte offset 16 (unused for this
// layout), stride 1024 B between 8-row groups, layout type 1 (128B swizzle).
__device__ __forceinline__ uint64_t wg_desc(uint32_t addr) {
    return (uint64_t)((addr & 0x3FFFF) >> 4) | (uint64_t)1 << 16 | (uint64_t)(1024 >> 4) << 32 | (uint64_t)1 << 62;
}

#define SA_WG_D8(i) "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), "+f"(d[i + 5]), \
                    "+f"(d[i + 6]), "+f"(d[i + 7])
// d (64 fp32) += A (this warp's 16 rows x 16 k, registers) · B (128 tokens x 16 k at desc).
__device__ __forceinline__ void wgmma_m64n128k16(float (&d)[64], const uint32_t (&a)[4], uint64_t desc) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
        "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
        "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
        "{%64, %65, %66, %67}, %68, p, 1, 1, 0;\n}\n"
        : SA_WG_D8(0), SA_WG_D8(8), SA_WG_D8(16), SA_WG_D8(24), SA_WG_D8(32), SA_WG_D8(40), SA_WG_D8(48), SA_WG_D8(56)
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(1));
#endif
}

// d (64 fp32) += A (64 rows x 16 k at desc_a) · B (128 columns x 16 k at desc_b), both K-major in shared memory.
__device__ __forceinline__ void wgmma_m64n128k16_ss(float (&d)[64], uint64_t desc_a, uint64_t desc_b) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
        "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
        "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
        "%64, %65, p, 1, 1, 0, 0;\n}\n"
        : SA_WG_D8(0), SA_WG_D8(8), SA_WG_D8(16), SA_WG_D8(24), SA_WG_D8(32), SA_WG_D8(40), SA_WG_D8(48), SA_WG_D8(56)
        : "l"(desc_a), "l"(desc_b), "r"(1));
#endif
}
#undef SA_WG_D8
