// w4a16_bench.cu — W4A16 kernel checks and micro-benchmark on the GPU machine (not a test). Built by CMake in a CUDA
// build (target w4a16_bench), or by hand against any version of the kernel file:
//   nvcc -O3 -std=c++17 -arch=sm_90a -Inative/include -Inative/src tests/native/w4a16_bench.cu kernels/linear_w4a16.cu \
//        native/src/cpu_w4a16.cpp native/src/api.cpp -lcublas -Xcompiler -fopenmp -o w4a16_bench
// 1. runs tests/native/gpu_checks_w4a16.inc (GPU vs CPU reference);
// 2. measures D2D copy bandwidth, the W4A16 linear at Step1 shapes for M = 1, 4, 8, 16 (bandwidth counted in packed
//    bytes: codes + scales + zeros) against cuBLAS bf16, with enough weight copies rotated to defeat the 50 MB L2;
// 3. times the decode GEMV stack of the full Step1 model (32 x qkv, o, gate_up, down + lm_head) as one CUDA graph,
//    W4A16 vs cuBLAS bf16, lm_head bf16 (default) or W4A16 (option) — weights only, no attention / norms.
// Environment (for before/after runs of several kernel builds in one device call): W4A16_BENCH_NO_CHECKS=1 skips 1,
// W4A16_BENCH_NO_CUBLAS=1 skips the cuBLAS timings, W4A16_BENCH_M=1,4 times only those token counts,
// W4A16_BENCH_SHAPES=N:K,N:K times these shapes instead of Step1's (device-run.sh's single-launch cost model).
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "sa_numeric.h"
#include "stepaudio_native.h"
#include "quant_bench_common.cuh"

#include "gpu_checks_w4a16.inc"

struct W4 { uint32_t *q; uint16_t *s; size_t bytes; };
static W4 make_w4(int n, int k, uint32_t seed) {
    W4 w;
    size_t qb = (size_t)n * k / 2, sb = (size_t)n * (k / 128) * 2;
    cudaMalloc(&w.q, qb); cudaMalloc(&w.s, sb + 4);
    fill(w.q, qb, seed);
    fill(w.s, sb, seed + 1, 0x007f007fu, 0x3c003c00u);  // bf16 scales around 2^-7
    w.bytes = qb + sb;
    return w;
}

// µs per launch: one CUDA graph of `launches` back-to-back launches (rotating weight copies), median of 20 replays.
static float graph_us(cudaStream_t s, int launches, const std::function<void(int)> &launch) {
    cudaGraph_t g; cudaGraphExec_t ge;
    cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal);
    for (int i = 0; i < launches; ++i) launch(i);
    cudaStreamEndCapture(s, &g);
    cudaGraphInstantiate(&ge, g, 0);
    cudaEvent_t a, b; cudaEventCreate(&a); cudaEventCreate(&b);
    std::vector<float> times;
    for (int r = 0; r < 23; ++r) {
        cudaEventRecord(a, s); cudaGraphLaunch(ge, s); cudaEventRecord(b, s); cudaEventSynchronize(b);
        float ms; cudaEventElapsedTime(&ms, a, b);
        if (r >= 3) times.push_back(ms);
    }
    std::sort(times.begin(), times.end());
    cudaEventDestroy(a); cudaEventDestroy(b); cudaGraphExecDestroy(ge); cudaGraphDestroy(g);
    return times[times.size() / 2] * 1e3f / launches;
}

static float time_ms(cudaStream_t s, int iters, const std::function<void()> &body) {
    cudaEvent_t a, b; cudaEventCreate(&a); cudaEventCreate(&b);
    for (int i = 0; i < 3; ++i) body();
    cudaEventRecord(a, s);
    for (int i = 0; i < iters; ++i) body();
    cudaEventRecord(b, s); cudaEventSynchronize(b);
    float ms; cudaEventElapsedTime(&ms, a, b);
    return ms / iters;
}

static bool env_set(const char *name) {
    const char *v = std::getenv(name);
    return v && v[0] && v[0] != '0';
}

// W4A16_BENCH_M: a comma-separated list of token counts for the shape sweep, of 1, 4, 8, 12, 16 (default all).
static bool m_wanted(int m) {
    const char *v = std::getenv("W4A16_BENCH_M");
    if (!v || !v[0]) return true;
    const std::string list = std::string(",") + v + ",";
    return list.find("," + std::to_string(m) + ",") != std::string::npos;
}

// W4A16_BENCH_SHAPES="N:K,N:K,...": the shape sweep over these shapes instead of Step1's (K a multiple of 128).
static bool custom_shapes(std::vector<std::pair<int, int>> &shapes, std::vector<std::string> &names) {
    const char *v = std::getenv("W4A16_BENCH_SHAPES");
    if (!v || !v[0]) return true;
    shapes.clear(); names.clear();
    std::string list = v;
    for (size_t at = 0; at <= list.size();) {
        size_t end = list.find(',', at); if (end == std::string::npos) end = list.size();
        const std::string item = list.substr(at, end - at);
        int n = 0, k = 0;
        if (std::sscanf(item.c_str(), "%d:%d", &n, &k) != 2 || n <= 0 || k <= 0 || k % 128 != 0) {
            std::fprintf(stderr, "W4A16_BENCH_SHAPES: '%s' is not N:K with K a multiple of 128\n", item.c_str());
            return false;
        }
        shapes.push_back({n, k}); names.push_back("custom");
        at = end + 1;
    }
    return true;
}

int main() {
    int passed = 0, failed = 0;
    const bool no_cublas = env_set("W4A16_BENCH_NO_CUBLAS");
    const bool hot = env_set("W4A16_BENCH_HOT");
    if (!env_set("W4A16_BENCH_NO_CHECKS")) register_gpu_checks_w4a16();
    for (auto &c : registry()) {
        std::string e = c.run();
        if (e.empty()) ++passed; else { ++failed; std::printf("[FAIL] %s: %s\n", c.name.c_str(), e.c_str()); }
    }
    std::printf("checks: %d passed, %d failed\n", passed, failed);

    cudaStream_t st; cudaStreamCreate(&st);
    cublasHandle_t cb; cublasCreate(&cb); cublasSetStream(cb, st);
    // copy bandwidth
    size_t cb_bytes = 1ull << 30; void *ca, *cbuf; cudaMalloc(&ca, cb_bytes); cudaMalloc(&cbuf, cb_bytes);
    float copy_ms = time_ms(st, 10, [&] { cudaMemcpyAsync(cbuf, ca, cb_bytes, cudaMemcpyDeviceToDevice, st); });
    double copy_gbs = 2.0 * cb_bytes / copy_ms / 1e6;
    cudaFree(ca); cudaFree(cbuf);
    std::printf("D2D copy: %.0f GB/s (read + write)\n", copy_gbs);

    uint16_t *x, *y; cudaMalloc(&x, 64 * 16384 * 2); cudaMalloc(&y, 64 * 131072 * 2);
    fill(x, 64 * 16384 * 2, 99, 0x3f7f3f7fu, 0);
    std::vector<std::pair<int, int>> shapes = {{3584, 3072}, {3072, 3072}, {16384, 3072}, {3072, 8192}, {8192, 8192}, {74752, 3072}};
    std::vector<std::string> names = {"qkv", "o", "gate_up", "down", "8192sq", "lm_head"};
    if (!custom_shapes(shapes, names)) return 2;
    for (size_t si = 0; si < shapes.size(); ++si) {
        int n = shapes[si].first, k = shapes[si].second;
        // W4A16_BENCH_HOT=1: one copy launched 20 times, so shapes under 50 MB stream from L2 (what is DRAM, what is not).
        int copies = hot ? 1 : (int)std::max<size_t>(2, (size_t)400e6 / ((size_t)n * k / 2) + 1);
        std::vector<W4> ws; std::vector<uint16_t *> bf;
        for (int c = 0; c < copies; ++c) ws.push_back(make_w4(n, k, 1000 + c));
        int bcopies = (int)std::max<size_t>(2, (size_t)400e6 / ((size_t)n * k * 2) + 1);
        for (int c = 0; c < (no_cublas ? 0 : bcopies); ++c) { uint16_t *b; cudaMalloc(&b, (size_t)n * k * 2); fill(b, (size_t)n * k * 2, 7 + c, 0x3f7f3f7fu); bf.push_back(b); }
        for (int m : {1, 4, 8, 12, 16}) {
            if (!m_wanted(m)) continue;
            float w4_ms = 1e-3f * graph_us(st, hot ? 20 : copies, [&](int i) {
                W4 &w = ws[i % copies];
                sa_cuda_linear_w4a16(x, w.q, w.s, nullptr, 0, y, m, n, k, SA_EPILOGUE_STORE, nullptr, st);
            });
            float alpha = 1, beta = 0;
            float bf_ms = no_cublas ? 0.0f : 1e-3f * graph_us(st, bcopies, [&](int i) {
                cublasGemmEx(cb, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &alpha, bf[i], CUDA_R_16BF, k, x, CUDA_R_16BF, k, &beta, y,
                             CUDA_R_16BF, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
            });
            double gbs = ws[0].bytes / w4_ms / 1e6;
            std::printf("%-8s N=%5d K=%4d M=%2d  w4a16 %8.2f us %6.0f GB/s (%3.0f%% of copy) | cublas bf16 %8.2f us | speed-up %.2fx\n",
                        names[si].c_str(), n, k, m, w4_ms * 1e3, gbs, 100 * gbs / copy_gbs, bf_ms * 1e3, bf_ms / w4_ms);
        }
        for (auto &w : ws) { cudaFree(w.q); cudaFree(w.s); }
        for (auto b : bf) cudaFree(b);
    }
    if (cudaGetLastError() != cudaSuccess) std::printf("CUDA error in the shape sweep\n");

    // Decode GEMV stack of the full model, one graph.
    const int L = 32, H = 3072, F = 8192, V = 74752, QKV = 3584;
    const int dims[4][2] = {{QKV, H}, {H, H}, {2 * F, H}, {H, F}};
    std::vector<W4> lw; size_t w4_bytes = 0;
    for (int i = 0; i < 4 * L; ++i) { lw.push_back(make_w4(dims[i % 4][0], dims[i % 4][1], 5000 + i)); w4_bytes += lw.back().bytes; }
    W4 head4 = make_w4(V, H, 77);
    uint16_t *head; cudaMalloc(&head, (size_t)V * H * 2); fill(head, (size_t)V * H * 2, 78, 0x3f7f3f7fu);
    std::vector<uint16_t *> lb; size_t bf_bytes = 0;
    for (int i = 0; i < (no_cublas ? 0 : 4 * L); ++i) {
            uint16_t *b; size_t bytes = (size_t)dims[i % 4][0] * dims[i % 4][1] * 2;
            if (cudaMalloc(&b, bytes) != cudaSuccess) { std::printf("bf16 stack: out of memory\n"); return 1; }
            fill(b, bytes, 9000 + lb.size(), 0x3f7f3f7fu); lb.push_back(b); bf_bytes += bytes;
        }
    float alpha = 1, beta = 0;
    auto bf_linear = [&](const uint16_t *w, int n, int k) {
        cublasGemmEx(cb, CUBLAS_OP_T, CUBLAS_OP_N, n, 1, k, &alpha, w, CUDA_R_16BF, k, x, CUDA_R_16BF, k, &beta, y, CUDA_R_16BF, n,
                     CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    };
    auto graph_ms = [&](const std::function<void()> &body) {
        cudaGraph_t g; cudaGraphExec_t ge;
        cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal); body(); cudaStreamEndCapture(st, &g);
        cudaGraphInstantiate(&ge, g, 0);
        float ms = time_ms(st, 20, [&] { cudaGraphLaunch(ge, st); });
        cudaGraphExecDestroy(ge); cudaGraphDestroy(g);
        return ms;
    };
    float w4_stack = graph_ms([&] {
        for (size_t i = 0; i < lw.size(); ++i) sa_cuda_linear_w4a16(x, lw[i].q, lw[i].s, nullptr, 0, y, 1, dims[i % 4][0], dims[i % 4][1], SA_EPILOGUE_STORE, nullptr, st);
        bf_linear(head, V, H);
    });
    float w4_stack_q = graph_ms([&] {
        for (size_t i = 0; i < lw.size(); ++i) sa_cuda_linear_w4a16(x, lw[i].q, lw[i].s, nullptr, 0, y, 1, dims[i % 4][0], dims[i % 4][1], SA_EPILOGUE_STORE, nullptr, st);
        sa_cuda_linear_w4a16(x, head4.q, head4.s, nullptr, 0, y, 1, V, H, SA_EPILOGUE_STORE, nullptr, st);
    });
    float bf_stack = no_cublas ? 0.0f : graph_ms([&] {
        for (size_t i = 0; i < lb.size(); ++i) bf_linear(lb[i], dims[i % 4][0], dims[i % 4][1]);
        bf_linear(head, V, H);
    });
    std::printf("decode GEMV stack (32 layers + lm_head, CUDA graph, weights only):\n");
    std::printf("  w4a16 + bf16 lm_head : %.3f ms -> %.0f tok/s upper bound (%.2f GB, %.0f GB/s)\n", w4_stack, 1e3 / w4_stack,
                (w4_bytes + (size_t)V * H * 2) / 1e9, (w4_bytes + (size_t)V * H * 2) / w4_stack / 1e6);
    std::printf("  w4a16 + w4a16 lm_head: %.3f ms -> %.0f tok/s upper bound (%.2f GB, %.0f GB/s)\n", w4_stack_q, 1e3 / w4_stack_q,
                (w4_bytes + head4.bytes) / 1e9, (w4_bytes + head4.bytes) / w4_stack_q / 1e6);
    std::printf("  cublas bf16          : %.3f ms -> %.0f tok/s (%.2f GB, %.0f GB/s); w4a16 speed-up %.2fx (%.2fx with w4a16 lm_head)\n",
                bf_stack, 1e3 / bf_stack, (bf_bytes + (size_t)V * H * 2) / 1e9, (bf_bytes + (size_t)V * H * 2) / bf_stack / 1e6,
                bf_stack / w4_stack, bf_stack / w4_stack_q);
    cudaError_t e = cudaDeviceSynchronize();
    std::printf("final CUDA status: %s\n", cudaGetErrorString(e));
    return failed ? 1 : 0;
}
