// cuda_present.cu — the CUDA build's counterpart of native/src/cuda_absent.cpp: this library has the kernels.
#include "cuda_common.cuh"

SA_API int32_t sa_has_cuda(void) { return 1; }

#if SA_TRACE
#include <mutex>
#include <vector>
// The step-timeline tool (cuda_common.cuh): every kernel file registers its attach function at load time.
namespace {
std::vector<void (*)(void *, unsigned *, unsigned)> &trace_units() {
    static std::vector<void (*)(void *, unsigned *, unsigned)> units;
    return units;
}
}  // namespace
void sa_trace_register(void (*attach)(void *, unsigned *, unsigned)) { trace_units().push_back(attach); }
// records: device buffer of `capacity` sa_trace_record; count: device counter (zero it before a traced run);
// records = NULL detaches. Found by kernel_bench with dlsym (only a -DSA_TRACE=1 build has it).
SA_API int32_t sa_debug_trace_attach(void *records, unsigned *count, unsigned capacity) {
    for (auto attach : trace_units()) attach(records, count, capacity);
    return (int32_t)trace_units().size();
}
#endif
