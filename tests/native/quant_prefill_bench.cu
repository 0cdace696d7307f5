// quant_prefill_bench.cu — checks and benchmark of the 4-bit prefill GEMM (kernels/linear_quant_prefill.cu; not a
// test). Built from the kernel sources (not against the library: it calls the internal sa_prefill launchers to force
// launch shapes), by CMake (target quant_prefill_bench) or by hand:
//   nvcc -O3 -std=c++17 -arch=sm_90a --use_fast_math -Inative/include -Inative/src -Ikernels \
//        tests/native/quant_prefill_bench.cu kernels/linear_quant_prefill.cu kernels/linear_w4a16.cu \
//        kernels/linear_nf4.cu native/src/cpu_w4a16.cpp native/src/cpu_nf4.cpp native/src/api.cpp \
//        -lcublas -Xcompiler -fopenmp -o quant_prefill_bench
// quant_prefill_bench [checks|bench|entry|all]:
// 1. checks: tests/native/gpu_checks_quant_prefill.inc with SA_PREFILL_INTERNAL (every launch shape forced too);
// 2. bench: the Step1 prefill linears (qkv 3584x3072, o 3072x3072, gate_up 16384x3072, down 3072x8192) at M = 17,
//    32, 48, 64, 128, 256, 512, 1000 for W4A16 (bf16 scales, no zeros) and NF4 (double quant): the old path (the decode kernel over
//    16-token slices, as the entry points ran M > 16 before), the new entry point (its chosen launch shape: "wg rows/128/splits" where it runs the wgmma kernel), every
//    forced (rows, tokens, splits) shape (the best one is printed, to check the choice; all of them go to the sweep
//    log, argv[2] or stderr), and cuBLAS bf16 (cublasGemmEx,
//    fp32 accumulation) on the same M x K activations. Each timing is one CUDA graph of launches over rotating
//    weight copies (>= 160 MB of packed weights, beyond the 50 MB L2) on a created stream (PDL as the model runs
//    it), median of 10 replays, µs per launch; TFLOP/s counts 2·M·N·K.
// 3. entry: as bench, the entry point and cuBLAS only (no old path, no forced shapes): a quick A/B of two builds.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "sa_numeric.h"
#include "stepaudio_native.h"
#include "quant_bench_common.cuh"

#define SA_PREFILL_INTERNAL 1
#include "gpu_checks_quant_prefill.inc"
#include "linear_quant_prefill.h"
#include "nf4_common.h"

// One weight copy of either format (device), with its packed size.
struct Weight {
    void *q = nullptr, *s = nullptr;
    float *t = nullptr;
    double bytes = 0;
};
static Weight make_w4(int n, int k, uint32_t seed) {
    Weight w;
    const size_t qb = (size_t)n * k / 2, sb = (size_t)n * (k / SA_W4A16_GROUP) * 2;
    cudaMalloc(&w.q, qb);
    cudaMalloc(&w.s, sb + 4);
    fill(w.q, qb, seed);
    fill(w.s, sb, seed + 1, 0x007f007fu, 0x3c003c00u);  // bf16 scales around 2^-7
    w.bytes = (double)qb + sb;
    return w;
}
static Weight make_nf4(int n, int k, uint32_t seed) {
    Weight w;
    const int64_t blocks = (int64_t)n * k / SA_NF4_BLOCK, groups = (blocks + 255) / 256;
    const size_t qb = (size_t)n * k / 2;
    std::mt19937 rng(seed);
    std::vector<float> t(SA_NF4_TABLE_HEADER + 2 * groups);
    for (size_t i = 0; i < t.size(); ++i) t[i] = (float)((rng() % 1000) / 1000.0 - 0.5);
    cudaMalloc(&w.q, qb);
    cudaMalloc(&w.s, (blocks + 3) / 4 * 4);
    cudaMalloc(&w.t, t.size() * 4);
    fill(w.q, qb, seed);
    fill(w.s, (blocks + 3) / 4 * 4, seed + 1);
    cudaMemcpy(w.t, t.data(), t.size() * 4, cudaMemcpyHostToDevice);
    w.bytes = (double)qb + blocks + 8.0 * groups;
    return w;
}
static void free_weight(Weight &w) {
    cudaFree(w.q), cudaFree(w.s), cudaFree(w.t);
}

// µs per launch: one CUDA graph of `launches` calls of launch(i), median of 10 replays after 2 warm-ups; < 0 when a
// launch failed.
static float graph_us(cudaStream_t s, int launches, const std::function<sa_status(int)> &launch) {
    cudaGraph_t g = nullptr;
    cudaGraphExec_t ge = nullptr;
    bool ok = cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal) == cudaSuccess;
    for (int i = 0; ok && i < launches; ++i) ok = launch(i) == SA_OK;
    ok = cudaStreamEndCapture(s, &g) == cudaSuccess && ok;
    if (!ok || cudaGraphInstantiate(&ge, g, 0) != cudaSuccess) {
        if (g) cudaGraphDestroy(g);
        (void)cudaGetLastError();
        return -1.0f;
    }
    cudaEvent_t a, b;
    cudaEventCreate(&a), cudaEventCreate(&b);
    std::vector<float> times;
    for (int r = 0; r < 12; ++r) {
        cudaEventRecord(a, s);
        cudaGraphLaunch(ge, s);
        cudaEventRecord(b, s);
        cudaEventSynchronize(b);
        float ms = 0;
        cudaEventElapsedTime(&ms, a, b);
        if (r >= 2) times.push_back(ms);
    }
    std::sort(times.begin(), times.end());
    cudaEventDestroy(a), cudaEventDestroy(b), cudaGraphExecDestroy(ge), cudaGraphDestroy(g);
    if (cudaGetLastError() != cudaSuccess) return -1.0f;
    return times[times.size() / 2] * 1e3f / launches;
}

static int run_checks() {
    register_gpu_checks_quant_prefill();
    int passed = 0, failed = 0;
    for (auto &c : registry()) {
        const std::string e = c.run();
        if (e.empty()) ++passed;
        else {
            ++failed;
            std::printf("[FAIL] %s: %s\n", c.name.c_str(), e.c_str());
        }
        std::fflush(stdout);
    }
    std::printf("checks: %d passed, %d failed\n", passed, failed);
    return failed;
}

// sweep_log: one line per (format, shape, M) with every forced launch shape's time.
static int run_bench(FILE *sweep_log, bool entry_only) {
    cudaStream_t st;
    CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    cublasHandle_t cb;
    if (cublasCreate(&cb) != CUBLAS_STATUS_SUCCESS) return std::printf("cublasCreate failed\n"), 1;
    cublasSetStream(cb, st);
    {  // copy bandwidth, for reference
        const size_t bytes = 1ull << 30;
        void *a, *b;
        CK(cudaMalloc(&a, bytes));
        CK(cudaMalloc(&b, bytes));
        const float us = graph_us(st, 4, [&](int) -> sa_status {
            return cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, st) == cudaSuccess ? SA_OK : SA_E_CUDA;
        });
        std::printf("D2D copy: %.0f GB/s (read + write)\n", 2.0 * bytes / us / 1e3);
        cudaFree(a), cudaFree(b);
    }
    const int max_m = 1000, max_k = 8192, max_n = 16384;
    uint16_t *x, *y;
    CK(cudaMalloc(&x, (size_t)max_m * max_k * 2));
    CK(cudaMalloc(&y, (size_t)max_m * max_n * 2));
    fill(x, (size_t)max_m * max_k * 2, 99, 0x3f7f3f7fu, 0);  // bf16 in (-1, 1), random signs not needed for timing
    struct Shape { const char *name; int n, k; };
    const Shape shapes[] = {{"qkv", 3584, 3072}, {"o", 3072, 3072}, {"gate_up", 16384, 3072}, {"down", 3072, 8192}};
    const int ms[] = {17, 32, 48, 64, 128, 256, 512, 1000};
    std::printf("%-4s %-7s %5s | %9s | %9s %7s %-12s | %-20s | %9s %7s | %7s %7s\n", "fmt", "shape", "M", "old us",
                "new us", "TFLOP/s", "rows/tok/spl", "best forced", "cublas us", "TFLOP/s", "new/old", "cub/new");
    for (const Shape &sh : shapes) {
        const int n = sh.n, k = sh.k;
        // cuBLAS bf16 weights: enough copies to defeat L2.
        const size_t bf_bytes = (size_t)n * k * 2;
        const int bcopies = (int)std::min<size_t>(8, std::max<size_t>(2, (size_t)160e6 / bf_bytes + 1));
        std::vector<uint16_t *> bf;
        for (int c = 0; c < bcopies; ++c) {
            uint16_t *b;
            CK(cudaMalloc(&b, bf_bytes));
            fill(b, bf_bytes, 7 + c, 0x3f7f3f7fu);
            bf.push_back(b);
        }
        std::vector<float> cublas_us;
        for (int m : ms) {
            const float alpha = 1, beta = 0;
            cublas_us.push_back(graph_us(st, bcopies, [&](int i) -> sa_status {
                return cublasGemmEx(cb, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &alpha, bf[i], CUDA_R_16BF, k, x, CUDA_R_16BF, k,
                                    &beta, y, CUDA_R_16BF, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS
                           ? SA_OK
                           : SA_E_CUDA;
            }));
        }
        for (auto b : bf) cudaFree(b);
        for (int fmt = 0; fmt < 2; ++fmt) {
            const bool nf4 = fmt == 1;
            const int group = nf4 ? SA_NF4_BLOCK : SA_W4A16_GROUP;
            std::vector<Weight> ws;
            ws.push_back(nf4 ? make_nf4(n, k, 1000) : make_w4(n, k, 1000));
            const int copies = (int)std::min<double>(24, std::max<double>(2, 160e6 / ws[0].bytes + 1));
            for (int c = 1; c < copies; ++c) ws.push_back(nf4 ? make_nf4(n, k, 1000 + c) : make_w4(n, k, 1000 + c));
            auto entry = [&](const Weight &w, const uint16_t *xp, uint16_t *yp, int m) {
                return nf4 ? sa_cuda_linear_nf4(xp, (const uint8_t *)w.q, w.s, w.t, 1, yp, m, n, k, SA_EPILOGUE_STORE, nullptr, st)
                           : sa_cuda_linear_w4a16(xp, (const uint32_t *)w.q, (const uint16_t *)w.s, nullptr, 0, yp, m, n, k, SA_EPILOGUE_STORE, nullptr, st);
            };
            for (size_t mi = 0; mi < sizeof(ms) / sizeof(ms[0]); ++mi) {
                const int m = ms[mi];
                const float old_us = entry_only ? NAN : graph_us(st, copies, [&](int i) -> sa_status {
                    for (int m0 = 0; m0 < m; m0 += 16) {  // the decode kernel per 16-token slice (the old path)
                        const sa_status s = entry(ws[i], x + (size_t)m0 * k, y + (size_t)m0 * n, std::min(16, m - m0));
                        if (s != SA_OK) return s;
                    }
                    return SA_OK;
                });
                const float new_us = graph_us(st, copies, [&](int i) { return entry(ws[i], x, y, m); });
                const sa_prefill::Config chosen = sa_prefill::choose(m, n, k, group);
                float best_us = 1e30f;
                sa_prefill::Config best;
                std::string sweep;
                if (!entry_only)  // every forced launch shape
                    for (int rows : {128, 256})
                        for (int tokens : {64, 128})
                            for (int splits : {1, 2, 4, 8}) {
                                sa_prefill::Config c;
                                c.rows = rows, c.tokens = tokens, c.splits = splits;
                                const float us = graph_us(st, copies, [&](int i) {
                                    const Weight &w = ws[i];
                                    return nf4 ? sa_prefill::linear_nf4(x, (const uint8_t *)w.q, w.s, w.t, true, y, m, n, k, st, c)
                                               : sa_prefill::linear_w4a16(x, (const uint32_t *)w.q, (const uint16_t *)w.s,
                                                                          nullptr, false, y, m, n, k, st, c);
                                });
                                char item[48];
                                std::snprintf(item, sizeof item, " %d/%d/%d:%.1f", rows, tokens, splits, us);
                                sweep += item;
                                if (us > 0 && us < best_us) best_us = us, best = c;
                            }
                std::fprintf(sweep_log, "%s %s M=%d old=%.2f new=%.2f cublas=%.2f sweep(rows/tokens/splits:us)%s\n",
                             nf4 ? "nf4" : "w4", sh.name, m, old_us, new_us, cublas_us[mi], sweep.c_str());
                std::fflush(sweep_log);
                const double flop = 2.0 * m * n * k;
                const float cub = cublas_us[mi];
                char chosen_s[32], best_s[48];
                if (sa_prefill::choose_engine(m) == 2) {  // the entry point runs the wgmma kernel: its tile and split
                    const sa_prefill::WgShape wg = sa_prefill::choose_wg(m, n, k, group);
                    std::snprintf(chosen_s, sizeof chosen_s, "wg %d/128/%d", wg.rows, wg.splits);
                } else {
                    std::snprintf(chosen_s, sizeof chosen_s, "%d/%d/%d", chosen.rows, chosen.tokens, chosen.splits);
                }
                if (entry_only)
                    std::snprintf(best_s, sizeof best_s, "-");
                else
                    std::snprintf(best_s, sizeof best_s, "%.2f %d/%d/%d", best_us, best.rows, best.tokens, best.splits);
                std::printf("%-4s %-7s %5d | %9.2f | %9.2f %7.1f %-12s | %-20s | %9.2f %7.1f | %6.2fx %6.2fx\n",
                            nf4 ? "nf4" : "w4", sh.name, m, old_us, new_us, flop / new_us / 1e6, chosen_s, best_s, cub,
                            flop / cub / 1e6, old_us / new_us, cub / new_us);
                std::fflush(stdout);
            }
            for (auto &w : ws) free_weight(w);
        }
    }
    const cudaError_t e = cudaDeviceSynchronize();
    std::printf("final CUDA status: %s\n", cudaGetErrorString(e));
    cublasDestroy(cb);
    return e == cudaSuccess ? 0 : 1;
}

int main(int argc, char **argv) {
    // quant_prefill_bench [checks|bench|entry|all] [sweep log file]
    const std::string what = argc > 1 ? argv[1] : "all";
    FILE *sweep_log = argc > 2 ? std::fopen(argv[2], "w") : stderr;
    if (!sweep_log) return std::printf("cannot write %s\n", argv[2]), 1;
    int failed = 0;
    if (what == "checks" || what == "all") failed += run_checks();
    if (what == "bench" || what == "entry" || what == "all") failed += run_bench(sweep_log, what == "entry");
    if (what != "checks" && what != "bench" && what != "entry" && what != "all")
        return std::printf("unknown mode '%s': checks, bench, entry or all\n", what.c_str()), 2;
    return failed ? 1 : 0;
}
