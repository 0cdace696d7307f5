// api.cpp — library identity, the last-error slot, and small definitions shared by every backend.
#include <cmath>
#include <string>

#include "errors.h"
#include "sa_numeric.h"
#include "stepaudio_native.h"

namespace {
thread_local std::string g_last_error;
}

namespace sa {
void set_last_error(const std::string &message) { g_last_error = message; }
sa_status fail(sa_status status, const std::string &message) {
    g_last_error = message;
    return status;
}
}  // namespace sa

SA_API const char *sa_last_error(void) { return g_last_error.c_str(); }
SA_API int32_t sa_abi_version(void) { return SA_ABI_VERSION; }

SA_API sa_status sa_alibi_slopes(int32_t n_heads, float *out) {
    if (n_heads <= 0 || out == nullptr) return sa::fail(SA_E_INVALID_ARGUMENT, "sa_alibi_slopes: bad arguments");
    // build_alibi_cache: n = largest power of two <= n_heads; slopes 2^(-8/n · (h+1)) for the first n heads,
    // then the odd powers of 2^(-4/n) ... i.e. 2^(-(2j+1)·4/n)... for the remaining heads (spec §1.3).
    int n = 1;
    while (n * 2 <= n_heads) n *= 2;
    for (int h = 0; h < n; ++h) out[h] = std::pow(2.0f, -8.0f * (float)(h + 1) / (float)n);
    for (int j = 0; j < n_heads - n; ++j) out[n + j] = std::pow(2.0f, -4.0f * (float)(2 * j + 1) / (float)n);
    return SA_OK;
}

SA_API float sa_uniform(uint64_t seed, uint64_t step) { return sa_uniform_draw(seed, step); }
