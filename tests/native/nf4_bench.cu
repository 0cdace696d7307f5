// nf4_bench.cu — checks and micro-benchmark of sa_cuda_linear_nf4 (not a test): first the GPU-vs-CPU checks of
// gpu_checks_nf4.inc, then measured copy bandwidth, NF4 GEMV time (one CUDA graph of launches over rotating weight
// copies, median of 20 replays) and bandwidth counting packed bytes (nibbles + u8 absmax codes + nested pairs), and
// the 32-layer Step1 linear stack (fused QKV, O, fused gate+up, down) replayed as one CUDA graph. Weights rotate over
// enough copies that the 50 MB L2 never holds them. NF4_BENCH_M="1,16" limits the token counts (default 1, 4, 16);
// NF4_BENCH_SHAPES="16384x3072,3072x8192" the shapes (N x K; default all), NF4_BENCH_NO_CHECKS=1 skips the checks
// (both for profiling one kernel: tests/gpu/profile-run.sh).
// Built by CMake in a CUDA build (target nf4_bench), or by hand:
//   nvcc -O3 -std=c++17 -arch=sm_90a -Inative/include -Inative/src tests/native/nf4_bench.cu kernels/linear_nf4.cu \
//        native/src/cpu_nf4.cpp native/src/api.cpp -Xcompiler -fopenmp -o nf4_bench
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "nf4_common.h"
#include "stepaudio_native.h"
#include "quant_bench_common.cuh"

#include "gpu_checks_nf4.inc"

struct DevW { uint8_t *q, *a; float *t; int n, k; double bytes; };

// Random nibbles and absmax codes filled on the device (fast for GBs of copies), random tables from the host.
static DevW make(int n, int k, std::mt19937 &rng) {
    DevW w{nullptr, nullptr, nullptr, n, k, 0};
    int64_t blocks = (int64_t)n * k / 64, groups = (blocks + 255) / 256;
    size_t qbytes = (size_t)n * k / 2;
    std::vector<float> t(SA_NF4_TABLE_HEADER + 2 * groups);
    for (size_t i = 0; i < t.size(); ++i) t[i] = (float)((rng() % 1000) / 1000.0 - 0.5);
    cudaMalloc(&w.q, qbytes); cudaMalloc(&w.a, (blocks + 3) / 4 * 4); cudaMalloc(&w.t, t.size() * 4);
    fill(w.q, qbytes, (uint32_t)rng());
    fill(w.a, (blocks + 3) / 4 * 4, (uint32_t)rng());
    cudaMemcpy(w.t, t.data(), t.size() * 4, cudaMemcpyHostToDevice);
    w.bytes = (double)qbytes + blocks + 8.0 * groups;
    return w;
}

// NF4_BENCH_SHAPES: a comma-separated list of NxK shapes for the sweep (default all).
static bool shape_wanted(int n, int k) {
    const char *v = std::getenv("NF4_BENCH_SHAPES");
    if (!v || !v[0]) return true;
    const std::string list = std::string(",") + v + ",";
    return list.find("," + std::to_string(n) + "x" + std::to_string(k) + ",") != std::string::npos;
}

int main() {
    int passed = 0, failed = 0;
    const char *no_checks = std::getenv("NF4_BENCH_NO_CHECKS");
    if (!(no_checks && no_checks[0] && no_checks[0] != '0')) register_nf4_gpu_checks();
    for (auto &c : registry()) {
        std::string e = c.run();
        if (e.empty()) ++passed; else { ++failed; std::printf("[FAIL] %s: %s\n", c.name.c_str(), e.c_str()); }
    }
    std::printf("checks: %d passed, %d failed\n", passed, failed);
    std::vector<int> bench_ms = {1, 4, 16};
    if (const char *list = std::getenv("NF4_BENCH_M")) {
        bench_ms.clear();
        for (const char *p = list; *p;) {
            const int v = std::atoi(p);
            if (v >= 1 && v <= 16) bench_ms.push_back(v);
            while (*p && *p != ',') ++p;
            if (*p == ',') ++p;
        }
    }
    std::mt19937 rng(1);
    cudaStream_t s;
    CK(cudaStreamCreate(&s));
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0); cudaEventCreate(&e1);
    float ms;
    // Copy bandwidth: 1 GiB device to device, read + write bytes counted.
    size_t big = 1ull << 30;
    void *src, *dst;
    CK(cudaMalloc(&src, big)); CK(cudaMalloc(&dst, big));
    cudaMemcpyAsync(dst, src, big, cudaMemcpyDeviceToDevice, s);
    cudaEventRecord(e0, s);
    for (int i = 0; i < 10; ++i) cudaMemcpyAsync(dst, src, big, cudaMemcpyDeviceToDevice, s);
    cudaEventRecord(e1, s); cudaEventSynchronize(e1); cudaEventElapsedTime(&ms, e0, e1);
    double copy_bw = 2.0 * big * 10 / (ms * 1e-3);
    std::printf("copy bandwidth (read+write): %.0f GB/s\n", copy_bw / 1e9);
    cudaFree(src); cudaFree(dst);

    uint16_t *x, *y;
    CK(cudaMalloc(&x, 16 * 16384 * 2)); CK(cudaMalloc(&y, 16 * 65536 * 2));
    cudaMemset(x, 0x3c, 16 * 16384 * 2);
    const int shapes[][2] = {{3584, 3072}, {3072, 3072}, {16384, 3072}, {3072, 8192}, {8192, 8192}, {16384, 8192}, {8192, 3072}};
    for (auto &sh : shapes) {
        int n = sh[0], k = sh[1];
        if (!shape_wanted(n, k)) continue;
        int copies = (int)std::max<int64_t>(2, (512ll << 20) / ((int64_t)n * k / 2));
        std::vector<DevW> ws;
        for (int c = 0; c < copies; ++c) ws.push_back(make(n, k, rng));
        for (int mrows : bench_ms) {
            cudaGraph_t g; cudaGraphExec_t ge;
            CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
            for (auto &w : ws) sa_cuda_linear_nf4(x, w.q, w.a, w.t, 1, y, mrows, n, k, SA_EPILOGUE_STORE, nullptr, s);
            CK(cudaStreamEndCapture(s, &g));
            CK(cudaGraphInstantiate(&ge, g, 0));
            std::vector<float> times;
            for (int r = 0; r < 23; ++r) {
                cudaEventRecord(e0, s); cudaGraphLaunch(ge, s); cudaEventRecord(e1, s); cudaEventSynchronize(e1);
                cudaEventElapsedTime(&ms, e0, e1);
                if (r >= 3) times.push_back(ms);
            }
            cudaGraphExecDestroy(ge); cudaGraphDestroy(g);
            std::sort(times.begin(), times.end());
            ms = times[times.size() / 2];
            const int iters = copies;
            double us = ms * 1e3 / iters, bw = ws[0].bytes / (us * 1e-6);
            std::printf("nf4 gemv M=%2d N=%5d K=%5d: %7.2f us, %6.0f GB/s packed = %5.1f%% of copy\n", mrows, n, k, us, bw / 1e9, 100 * bw / copy_bw);
        }
        for (auto &w : ws) { cudaFree(w.q); cudaFree(w.a); cudaFree(w.t); }
    }
    CK(cudaGetLastError());

    // Full-size Step1 linear stack at M = 1: 32 x (QKV 3584x3072, O 3072x3072, gate+up 16384x3072, down 3072x8192).
    std::vector<DevW> layers;
    double total = 0;
    for (int l = 0; l < 32; ++l)
        for (auto &sh : {std::pair{3584, 3072}, std::pair{3072, 3072}, std::pair{16384, 3072}, std::pair{3072, 8192}}) {
            layers.push_back(make(sh.first, sh.second, rng));
            total += layers.back().bytes;
        }
    cudaGraph_t graph; cudaGraphExec_t exec;
    CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    for (auto &w : layers) sa_cuda_linear_nf4(x, w.q, w.a, w.t, 1, y, 1, w.n, w.k, SA_EPILOGUE_STORE, nullptr, s);
    CK(cudaStreamEndCapture(s, &graph));
    CK(cudaGraphInstantiate(&exec, graph, 0));
    cudaGraphLaunch(exec, s);
    cudaEventRecord(e0, s);
    for (int i = 0; i < 50; ++i) cudaGraphLaunch(exec, s);
    cudaEventRecord(e1, s); cudaEventSynchronize(e1); cudaEventElapsedTime(&ms, e0, e1);
    double per = ms / 50;
    std::printf("32-layer NF4 linear stack (graph, M=1): %.3f ms for %.3f GB packed = %.0f GB/s (%.1f%% of copy)\n", per, total / 1e9,
                total / (per * 1e-3) / 1e9, 100 * total / (per * 1e-3) / copy_bw);
    double lm = 74752.0 * 3072 * 2;
    std::printf("estimate with the bf16 lm_head (%.2f GB) at 84%% of copy: %.3f ms/token -> %.0f tok/s upper bound on linears\n",
                lm / 1e9, per + lm / (0.84 * copy_bw) * 1e3, 1e3 / (per + lm / (0.84 * copy_bw) * 1e3));
    CK(cudaGetLastError());
    return failed ? 1 : 0;
}
