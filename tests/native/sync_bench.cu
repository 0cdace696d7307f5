// sync_bench.cu — what a dependency between two phases of the decode step costs on this GPU (not a test): the
// numbers behind the persistent-decode-layer plan (kernels/NOTES.md). Three ways to make 264 blocks (two per H100 SM,
// as the decode GEMVs run) wait for each other, with no other work:
//  1. a chain of kernels in a CUDA graph, plain launches;
//  2. the same chain with programmatic dependent launch (each kernel: launch_dependents, then griddepcontrol.wait),
//     as the decode step runs today;
//  3. one cooperative kernel calling cooperative_groups' grid.sync() in a loop (a persistent kernel's barrier);
//  4. one cooperative kernel with a hand-made barrier (one atomic per block on a global counter, spin on a flag).
// Prints µs per dependency (median of 9 timings).
#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace cg = cooperative_groups;

#define CK(x)                                                                                 \
    do {                                                                                      \
        cudaError_t e_ = (x);                                                                 \
        if (e_ != cudaSuccess) {                                                              \
            std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
            std::exit(1);                                                                     \
        }                                                                                     \
    } while (0)

__global__ void link_kernel(int *sink, int pdl) {
#if __CUDA_ARCH__ >= 900
    if (pdl) {
        asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
        asm volatile("griddepcontrol.wait;" ::: "memory");
    }
#endif
    if (threadIdx.x == 0 && blockIdx.x == 0) atomicAdd(sink, 1);
}

__global__ void grid_sync_kernel(int iterations, int *sink) {
    cg::grid_group grid = cg::this_grid();
    for (int i = 0; i < iterations; ++i) grid.sync();
    if (threadIdx.x == 0 && blockIdx.x == 0) atomicAdd(sink, 1);
}

// Sense-reversing barrier: the last block to arrive resets the counter and flips the flag.
__global__ void atomic_barrier_kernel(int iterations, unsigned *count, volatile unsigned *flag, int *sink) {
    unsigned sense = 0;
    for (int i = 0; i < iterations; ++i) {
        __syncthreads();
        if (threadIdx.x == 0) {
            sense ^= 1u;
            __threadfence();
            if (atomicAdd(count, 1u) == gridDim.x - 1) {
                *count = 0;
                __threadfence();
                *flag = sense;
            } else {
                while (*flag != sense) {
                }
            }
            __threadfence();
        }
        __syncthreads();
    }
    if (threadIdx.x == 0 && blockIdx.x == 0) atomicAdd(sink, 1);
}

// The work of f() is issued on stream s; the events must be recorded there too (s does not sync with the legacy stream).
template <class F>
float median_ms(cudaStream_t s, F &&f) {
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    std::vector<float> t;
    for (int r = 0; r < 11; ++r) {
        CK(cudaEventRecord(a, s));
        f();
        CK(cudaEventRecord(b, s));
        CK(cudaEventSynchronize(b));
        float ms;
        CK(cudaEventElapsedTime(&ms, a, b));
        if (r >= 2) t.push_back(ms);
    }
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

int main() {
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    const int blocks = 2 * prop.multiProcessorCount, threads = 256, links = 400, iterations = 2000;
    int *sink;
    unsigned *count, *flag;
    CK(cudaMalloc(&sink, 4));
    CK(cudaMalloc(&count, 4));
    CK(cudaMalloc(&flag, 4));
    CK(cudaMemset(count, 0, 4));
    CK(cudaMemset(flag, 0, 4));
    cudaStream_t s;
    CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    std::printf("%s, %d SMs; %d blocks x %d threads\n", prop.name, prop.multiProcessorCount, blocks, threads);

    for (int pdl = 0; pdl < 2; ++pdl) {
        cudaGraph_t g;
        cudaGraphExec_t ge;
        CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
        for (int i = 0; i < links; ++i) {
            cudaLaunchConfig_t cfg = {};
            cudaLaunchAttribute attr[1];
            attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
            attr[0].val.programmaticStreamSerializationAllowed = pdl;
            cfg.gridDim = dim3(blocks);
            cfg.blockDim = dim3(threads);
            cfg.stream = s;
            cfg.attrs = attr;
            cfg.numAttrs = 1;
            CK(cudaLaunchKernelEx(&cfg, link_kernel, sink, pdl));
        }
        CK(cudaStreamEndCapture(s, &g));
        CK(cudaGraphInstantiate(&ge, g, 0));
        const float ms = median_ms(s, [&] { CK(cudaGraphLaunch(ge, s)); });
        std::printf("kernel chain in a graph, %-13s %6.2f us per link\n", pdl ? "PDL:" : "plain:", ms * 1e3f / links);
        CK(cudaGraphExecDestroy(ge));
        CK(cudaGraphDestroy(g));
    }
    int per_sm = 0;
    CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, grid_sync_kernel, threads, 0));
    if (per_sm * prop.multiProcessorCount < blocks) {
        std::printf("cooperative launch of %d blocks does not fit (%d per SM)\n", blocks, per_sm);
        return 0;
    }
    int it = iterations;
    void *args1[] = {&it, &sink};
    const float ms1 = median_ms(s, [&] {
        CK(cudaLaunchCooperativeKernel((void *)grid_sync_kernel, dim3(blocks), dim3(threads), args1, 0, s));
    });
    std::printf("cooperative grid.sync():        %6.2f us per barrier\n", ms1 * 1e3f / iterations);
    void *args2[] = {&it, &count, &flag, &sink};
    const float ms2 = median_ms(s, [&] {
        CK(cudaLaunchCooperativeKernel((void *)atomic_barrier_kernel, dim3(blocks), dim3(threads), args2, 0, s));
    });
    std::printf("cooperative atomic barrier:     %6.2f us per barrier\n", ms2 * 1e3f / iterations);
    CK(cudaGetLastError());
    return 0;
}
