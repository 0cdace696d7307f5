// cuda_common.cuh — what every kernel file shares: the stream cast, the launch check and small device helpers.
//
// Every sa_cuda_* entry point is captured into a CUDA graph by the C# side, so none of them may allocate,
// synchronise or read device memory on the host. The only host work is argument validation and the launch; each
// launch is followed by SA_CHECK_LAUNCH, which turns a launch error into SA_E_CUDA naming the kernel and the error.
#pragma once
#include <cuda_runtime.h>
#include <stdint.h>

#include <cstdlib>
#include <string>
#include <utility>

#include "errors.h"
#include "sa_numeric.h"
#include "stepaudio_native.h"

namespace sa_cuda {

// The C# side passes a driver-API CUstream; it is the same object as a runtime cudaStream_t.
inline cudaStream_t as_stream(void *stream) { return static_cast<cudaStream_t>(stream); }

// SA_OK, or SA_E_CUDA with "kernel: cudaErrorName (description)" as the last-error message.
inline sa_status check_launch(const char *kernel) {
    cudaError_t err = cudaGetLastError();
    if (err == cudaSuccess) return SA_OK;
    return sa::fail(SA_E_CUDA, std::string(kernel) + ": launch failed with " + cudaGetErrorName(err) + " (" +
                                   cudaGetErrorString(err) + ")");
}

inline bool aligned16(const void *p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

inline sa_status invalid(const std::string &message) { return sa::fail(SA_E_INVALID_ARGUMENT, message); }

// What the launches need to know about the device, queried once per process (the library serves one GPU model).
//  pdl: programmatic dependent launch (sm_90+). Each kernel launched with launch_pdl() may start while its
//       predecessor in the stream is still running; it runs its independent prologue (weight prefetch), then
//       pdl_wait() blocks until the predecessor has completed and its writes are visible. STEPAUDIO_NO_PDL=1 turns
//       it off (plain stream order; used by the decode-step benchmark to measure what PDL buys).
//  quant_pdl: PDL for the W4A16 and NF4 linears too: pdl, unless STEPAUDIO_NO_QUANT_PDL=1 (a benchmark knob: the
//       quantized decode step with those kernels launched plainly, as before, next to PDL everywhere else).
//  sms: multiprocessor count (sizes the GEMV's first-wave L2 prefetch, and the prefill GEMM's waves).
//  clusters: thread-block clusters (sm_90+; the prefill GEMM's K split).
//  gemv_prefetch_bytes: L2 prefetch per first-wave GEMV block before its wait (STEPAUDIO_GEMV_PREFETCH_KB, a tuning
//       knob of the benchmark; default 8 KB, 0 when PDL is off since there is nothing to overlap). 8 KB since
//       session 5: with W4A16 v8 and the attention head slices, 32 KB of early L2 traffic per block cost the W4A16
//       step 20-27 µs (4-12 KB tie; NOTES_QUANT.md).
struct DeviceTraits {
    bool pdl = false;
    bool quant_pdl = false;
    int sms = 0;
    bool clusters = false;
    int gemv_prefetch_bytes = 0;
};
inline const DeviceTraits &device_traits() {
    static const DeviceTraits traits = [] {
        DeviceTraits t;
        int dev = 0, major = 0, sms = 0;
        if (cudaGetDevice(&dev) == cudaSuccess &&
            cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
            cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) == cudaSuccess) {
            const char *off = std::getenv("STEPAUDIO_NO_PDL");
            t.pdl = major >= 9 && !(off && off[0] && off[0] != '0');
            const char *quant_off = std::getenv("STEPAUDIO_NO_QUANT_PDL");
            t.quant_pdl = t.pdl && !(quant_off && quant_off[0] && quant_off[0] != '0');
            t.sms = sms;
            t.clusters = major >= 9;
            const char *kb = std::getenv("STEPAUDIO_GEMV_PREFETCH_KB");
            t.gemv_prefetch_bytes = t.pdl ? (kb && kb[0] ? std::atoi(kb) : 8) * 1024 : 0;
            if (t.gemv_prefetch_bytes < 0) t.gemv_prefetch_bytes = 0;
        }
        (void)cudaGetLastError();  // a failed query must not surface as the next launch's error
        return t;
    }();
    return traits;
}

// Launches kernel<<<grid, block, smem, stream>>>(args...) with the programmatic-stream-serialization attribute
// when `allow` is set and the stream is a created one (the legacy default stream, which the kernel checks use, keeps
// plain ordering). The kernel must call pdl_wait() before it reads anything an earlier kernel wrote, and before it
// writes anything (an earlier kernel may still be reading it). SA_OK or SA_E_CUDA naming the kernel.
// cluster > 1: thread-block clusters of that many blocks along x (only where device_traits().clusters; grid.x must be
// a multiple of it).
template <typename... KernelArgs, typename... Args>
sa_status launch_cluster_pdl_if(bool allow, unsigned cluster, const char *name, void (*kernel)(KernelArgs...), dim3 grid,
                                dim3 block, size_t smem, cudaStream_t stream, Args &&...args) {
    cudaLaunchAttribute attr[2];
    unsigned nattr = 0;
    if (allow && stream != nullptr) {
        attr[nattr].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        attr[nattr].val.programmaticStreamSerializationAllowed = 1;
        ++nattr;
    }
    if (cluster > 1) {
        attr[nattr].id = cudaLaunchAttributeClusterDimension;
        attr[nattr].val.clusterDim.x = cluster;
        attr[nattr].val.clusterDim.y = 1;
        attr[nattr].val.clusterDim.z = 1;
        ++nattr;
    }
    cudaLaunchConfig_t config = {};
    config.gridDim = grid;
    config.blockDim = block;
    config.dynamicSmemBytes = smem;
    config.stream = stream;
    config.attrs = attr;
    config.numAttrs = nattr;
    const cudaError_t err = cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
    if (err == cudaSuccess) return check_launch(name);
    (void)cudaGetLastError();
    return sa::fail(SA_E_CUDA, std::string(name) + ": launch failed with " + cudaGetErrorName(err) + " (" +
                                   cudaGetErrorString(err) + ")");
}

// launch_cluster_pdl_if without clusters.
template <typename... KernelArgs, typename... Args>
sa_status launch_pdl_if(bool allow, const char *name, void (*kernel)(KernelArgs...), dim3 grid, dim3 block,
                        size_t smem, cudaStream_t stream, Args &&...args) {
    return launch_cluster_pdl_if(allow, 1, name, kernel, grid, block, smem, stream, std::forward<Args>(args)...);
}

// launch_pdl_if with PDL as the device allows (the bf16-path kernels).
template <typename... KernelArgs, typename... Args>
sa_status launch_pdl(const char *name, void (*kernel)(KernelArgs...), dim3 grid, dim3 block, size_t smem,
                     cudaStream_t stream, Args &&...args) {
    return launch_pdl_if(device_traits().pdl, name, kernel, grid, block, smem, stream, std::forward<Args>(args)...);
}

}  // namespace sa_cuda

// Use right after a <<<>>> launch inside a function returning sa_status.
#define SA_CHECK_LAUNCH(kernel_name)                                         \
    do {                                                                     \
        sa_status sa_launch_status_ = sa_cuda::check_launch(kernel_name);    \
        if (sa_launch_status_ != SA_OK) return sa_launch_status_;            \
    } while (0)

// ---- device helpers ----

// ---- step timeline (a build-time tool: -DSA_TRACE=1; kernel_bench trace) ----
// No profiler timeline is available on the GPU machine, so each block's thread 0 records when it started
// (pdl_launch_dependents, every kernel's first call) and when its dependency was released (pdl_wait returned) into a
// buffer attached by sa_debug_trace_attach (kernels/cuda_present.cu). Under PDL no block of launch i + 1 starts before
// every block of launch i has started, so sorting the records by start time keeps each launch's blocks together.
#ifndef SA_TRACE
#define SA_TRACE 0
#endif
#if SA_TRACE
struct sa_trace_record {
    unsigned long long start, released;
    uint32_t sm, shape;  // shape: blocks in the grid | warps per block << 20
};
// One copy per translation unit (no relocatable device code): each registers its attach function at load time.
static __device__ sa_trace_record *g_sa_trace;
static __device__ unsigned *g_sa_trace_count;
static __device__ unsigned g_sa_trace_capacity;
void sa_trace_register(void (*attach)(void *records, unsigned *count, unsigned capacity));
namespace {
void sa_trace_attach_this_unit(void *records, unsigned *count, unsigned capacity) {
    cudaMemcpyToSymbol(g_sa_trace, &records, sizeof records);
    cudaMemcpyToSymbol(g_sa_trace_count, &count, sizeof count);
    cudaMemcpyToSymbol(g_sa_trace_capacity, &capacity, sizeof capacity);
}
const bool sa_trace_registered = (sa_trace_register(&sa_trace_attach_this_unit), true);
}  // namespace
__device__ __forceinline__ unsigned long long sa_trace_now() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}
// This block's start time and record slot, taken before its wait (the counter's round trip stays off the
// critical path: a block resident early waits anyway).
struct sa_trace_block {
    unsigned long long start;
    unsigned slot;
};
__device__ __forceinline__ sa_trace_block &sa_trace_this_block() {
    __shared__ sa_trace_block block;
    return block;
}
#endif

// Programmatic dependent launch (no-ops before sm_90, where the host never sets the attribute).
// pdl_wait: returns once every earlier kernel in the stream has completed and its memory is visible.
// pdl_launch_dependents: lets the next kernel in the stream be scheduled now (its blocks then sit in their own
// pdl_wait, or run their independent prologue). Every kernel calls it first — the 4-bit attention output projection
// with trigger = false and pdl_trigger() after its wait (sa_epilogue::trigger_after_wait) — and the next grid can only
// start once all blocks of this one are resident, which bounds how far launches run ahead.
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
#if SA_TRACE
    if (threadIdx.x == 0 && threadIdx.y == 0 && g_sa_trace) {
        const sa_trace_block b = sa_trace_this_block();
        uint32_t sm;
        asm volatile("mov.u32 %0, %%smid;" : "=r"(sm));
        if (b.slot < g_sa_trace_capacity)
            g_sa_trace[b.slot] = {b.start, sa_trace_now(), sm,
                                  (gridDim.x * gridDim.y * gridDim.z) | (blockDim.x * blockDim.y / 32) << 20};
    }
#endif
}
__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
// Every kernel's first call. `trigger` false: only the timeline's start record (SA_TRACE builds); the kernel calls
// pdl_trigger() itself later (the 4-bit o projection, after its wait).
__device__ __forceinline__ void pdl_launch_dependents(bool trigger = true) {
#if SA_TRACE
    if (threadIdx.x == 0 && threadIdx.y == 0 && g_sa_trace)
        sa_trace_this_block() = {sa_trace_now(), atomicAdd(g_sa_trace_count, 1u)};
#endif
    if (trigger) pdl_trigger();
}

// Thread-block clusters (sm_90; no-ops before, where the host never launches clusters). A block may touch another
// block's shared memory only after a barrier phase both took part in (so that block has started), and only until a
// later phase it has not yet left (so it has not exited). The prefill GEMM's K split (linear_quant_prefill.cu).
__device__ __forceinline__ void cluster_arrive() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("barrier.cluster.arrive.aligned;" ::: "memory");
#endif
}
__device__ __forceinline__ void cluster_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("barrier.cluster.wait.aligned;" ::: "memory");
#endif
}
__device__ __forceinline__ void cluster_sync_all() {
    cluster_arrive();
    cluster_wait();
}
// Asks L2 to fetch [p, p + bytes) (16-byte aligned, bytes a multiple of 16); sm_90 bulk prefetch, no-op before.
__device__ __forceinline__ void prefetch_l2(const void *p, uint32_t bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p), "r"(bytes) : "memory");
#endif
}

// Asks L1 for the 128-byte line holding p (no registers held, no wait).
__device__ __forceinline__ void prefetch_l1(const void *p) { asm volatile("prefetch.global.L1 [%0];" ::"l"(p)); }

// ---- asynchronous global -> shared copies (sm_80+), cached in L2 only (.cg) ----
__device__ __forceinline__ uint32_t smem_u32(const void *p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }
// 16 bytes.
__device__ __forceinline__ void cp_async16(uint32_t dst, const void *src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(dst), "l"(src) : "memory");
}
// 16 bytes of which src_bytes are read and the rest zero-filled (ragged edges: src_bytes = 0 writes zeros).
__device__ __forceinline__ void cp_async16(uint32_t dst, const void *src, int src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(src), "r"(src_bytes) : "memory");
}
// 16 bytes with a 256-byte L2 prefetch hint (the NF4 code ring: the register path's prefetch size).
__device__ __forceinline__ void cp_async16_l2_256(uint32_t dst, const void *src) {
    asm volatile("cp.async.cg.shared.global.L2::256B [%0], [%1], 16;" ::"r"(dst), "l"(src) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

// mbarriers in shared memory (shared-window addresses): init by one thread before a block barrier; arrive (release)
// counts one thread; wait (acquire) spins until the phase of the given parity has completed.
__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
    asm volatile("mbarrier.init.shared.b64 [%0], %1;" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
    asm volatile("{\n\t.reg .b64 state;\n\tmbarrier.arrive.shared.b64 state, [%0];\n\t}" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("{\n\t.reg .pred done;\n\tWAIT_%=:\n\t"
                 "mbarrier.try_wait.parity.shared.b64 done, [%0], %1;\n\t@!done bra WAIT_%=;\n\t}" ::"r"(bar),
                 "r"(parity)
                 : "memory");
#else
    asm volatile("{\n\t.reg .pred done;\n\tWAIT_%=:\n\t"
                 "mbarrier.test_wait.parity.shared.b64 done, [%0], %1;\n\t@!done bra WAIT_%=;\n\t}" ::"r"(bar),
                 "r"(parity)
                 : "memory");
#endif
}

// Four 8x8 b16 matrices from shared memory (lane l gives row l & 7 of matrix l >> 3): MMA fragments; .trans
// transposes each matrix (a B operand stored with k along the rows).
__device__ __forceinline__ void ldmatrix_x4(uint32_t addr, uint32_t &r0, uint32_t &r1, uint32_t &r2, uint32_t &r3) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t addr, uint32_t &r0, uint32_t &r1, uint32_t &r2, uint32_t &r3) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(addr));
}

// c += A(16x16, row) * B(16x8, col), bf16 inputs, fp32 accumulators: the tensor-core step of every linear kernel.
__device__ __forceinline__ void mma_bf16_16816(float c[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                               uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// Two bf16 packed in a 32-bit word (low half = lower address) -> two floats.
__device__ __forceinline__ float bf16_lo(uint32_t w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float bf16_hi(uint32_t w) { return __uint_as_float(w & 0xffff0000u); }
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
    return (uint32_t)sa_f32_to_bf16(lo) | ((uint32_t)sa_f32_to_bf16(hi) << 16);
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
