// cuda_present.cu — the CUDA build's counterpart of native/src/cuda_absent.cpp: this library has the kernels.
#include "cuda_common.cuh"

SA_API int32_t sa_has_cuda(void) { return 1; }
