// kernel_tests.cpp — every CUDA kernel against the CPU reference (native/src/cpu_reference.cpp) on fresh random
// inputs, at the real Step1 shapes and ragged ones. Prints one line per check and, last,
// "native: N passed, N failed, N skipped". In a CPU-only build, or without a GPU, every check is skipped visibly.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "stepaudio_native.h"
#include "sa_numeric.h"

#ifdef SA_HAVE_CUDA
#include <cuda_runtime.h>
#endif

namespace {

struct Check {
    std::string name;
    std::function<std::string()> run;  // returns "" on success, else the failure message
};

std::vector<Check> &registry() {
    static std::vector<Check> checks;
    return checks;
}

}  // namespace

#ifdef SA_HAVE_CUDA
#include "gpu_checks.inc"
#include "gpu_checks_w4a16.inc"
#include "gpu_checks_nf4.inc"
#include "gpu_checks_epilogue.inc"
#include "gpu_checks_quant_prefill.inc"
#endif

// native_kernel_tests [substring]: every check, or only those whose name contains the substring.
int main(int argc, char **argv) {
    const std::string only = argc > 1 ? argv[1] : "";
    int passed = 0, failed = 0, skipped = 0;
    std::string skip_reason;
    if (!sa_has_cuda()) skip_reason = "library built without CUDA";
#ifdef SA_HAVE_CUDA
    int devices = 0;
    if (skip_reason.empty() && (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0)) skip_reason = "no CUDA GPU";
    if (skip_reason.empty()) register_gpu_checks();
    if (skip_reason.empty()) register_gpu_checks_w4a16();
    if (skip_reason.empty()) register_nf4_gpu_checks();
    if (skip_reason.empty()) register_gpu_checks_epilogue();
    if (skip_reason.empty()) register_gpu_checks_quant_prefill();
#endif
    if (!skip_reason.empty()) {
        std::printf("[SKIP] all GPU kernel checks: %s\n", skip_reason.c_str());
        std::printf("native: 0 passed, 0 failed, 1 skipped\n");
        return 0;
    }
    for (auto &c : registry()) {
        if (c.name.find(only) == std::string::npos) continue;
        std::string err;
        try {
            err = c.run();
        } catch (const std::exception &e) {
            err = std::string("exception: ") + e.what();
        }
        if (err.empty()) {
            ++passed;
            std::printf("[PASS] %s\n", c.name.c_str());
        } else if (err.rfind("SKIP:", 0) == 0) {
            ++skipped;
            std::printf("[SKIP] %s: %s\n", c.name.c_str(), err.c_str() + 5);
        } else {
            ++failed;
            std::printf("[FAIL] %s: %s\n", c.name.c_str(), err.c_str());
        }
        std::fflush(stdout);
    }
    std::printf("native: %d passed, %d failed, %d skipped\n", passed, failed, skipped);
    return failed == 0 ? 0 : 1;
}
