// cuda_absent.cpp — compiled only in a CPU-only build: every CUDA entry point says plainly that this library has
// no CUDA kernels, so the C# side can tell the user to rebuild with nvcc instead of failing obscurely.
#include "errors.h"
#include "stepaudio_native.h"

static sa_status no_cuda(const char *fn) {
    return sa::fail(SA_E_NO_CUDA, std::string(fn) +
                                      ": libstepaudio_native was built without CUDA (no CUDA compiler was found by CMake)");
}

SA_API int32_t sa_has_cuda(void) { return 0; }
SA_API sa_status sa_cuda_embed_bf16(const uint16_t *, int64_t, int32_t, const int32_t *, int32_t, uint16_t *, void *) {
    return no_cuda("sa_cuda_embed_bf16");
}
SA_API sa_status sa_cuda_rmsnorm_bf16(const uint16_t *, const uint16_t *, uint16_t *, int32_t, int32_t, float, void *) {
    return no_cuda("sa_cuda_rmsnorm_bf16");
}
SA_API sa_status sa_cuda_linear_bf16(const uint16_t *, const uint16_t *, uint16_t *, int32_t, int32_t, int32_t,
                                     int32_t, const sa_norm_fold *, void *) {
    return no_cuda("sa_cuda_linear_bf16");
}
SA_API sa_status sa_cuda_swiglu_bf16(const uint16_t *, uint16_t *, int32_t, int32_t, void *) {
    return no_cuda("sa_cuda_swiglu_bf16");
}
SA_API sa_status sa_cuda_add_bf16(uint16_t *, const uint16_t *, int64_t, void *) { return no_cuda("sa_cuda_add_bf16"); }
SA_API sa_status sa_cuda_add_rmsnorm_bf16(uint16_t *, const uint16_t *, const uint16_t *, uint16_t *, int32_t, int32_t, float,
                                          void *) {
    return no_cuda("sa_cuda_add_rmsnorm_bf16");
}
SA_API sa_status sa_cuda_attention_bf16(const sa_attn_shape *, const uint16_t *, uint16_t *, uint16_t *, const int32_t *,
                                        const float *, uint16_t *, float *, int64_t, void *) {
    return no_cuda("sa_cuda_attention_bf16");
}
SA_API sa_status sa_cuda_sample_bf16(const uint16_t *, int32_t, int32_t *, int32_t *, const sa_sample_params *,
                                     uint64_t *, int32_t *, void *) {
    return no_cuda("sa_cuda_sample_bf16");
}
SA_API sa_status sa_cuda_linear_w4a16(const uint16_t *, const uint32_t *, const uint16_t *, const uint8_t *, int32_t,
                                      uint16_t *, int32_t, int32_t, int32_t, int32_t, const sa_norm_fold *, void *) {
    return no_cuda("sa_cuda_linear_w4a16");
}
SA_API sa_status sa_cuda_linear_nf4(const uint16_t *, const uint8_t *, const void *, const float *, int32_t, uint16_t *,
                                    int32_t, int32_t, int32_t, int32_t, const sa_norm_fold *, void *) {
    return no_cuda("sa_cuda_linear_nf4");
}
SA_API sa_status sa_cuda_nf4_quantize(const uint16_t *, int64_t, const float *, uint8_t *, float *, void *) {
    return no_cuda("sa_cuda_nf4_quantize");
}
SA_API sa_status sa_cuda_nf4_quantize_nested(const float *, int64_t, float, const float *, uint8_t *, float *, void *) {
    return no_cuda("sa_cuda_nf4_quantize_nested");
}
