// linear_quant_prefill.h — the internal launchers of the 4-bit prefill GEMM (kernels/linear_quant_prefill.cu) that
// sa_cuda_linear_w4a16 / sa_cuda_linear_nf4 dispatch to for M > 16 (use_prefill). Not part of the C ABI.
#pragma once
#include <cuda_runtime.h>
#include <stdint.h>

#include "stepaudio_native.h"

namespace sa_prefill {

// Whether the entry functions run an m x n x k product on the prefill GEMM rather than on the decode kernel over
// 16-token slices. Measured on the H100 (kernels/NOTES_QUANT.md, "Prefill GEMM"): from 33 tokens the GEMM wins on
// every Step1 linear; at 17–32 tokens (two decode launches) it wins for weights of 16M elements or more (gate_up,
// down) and loses for smaller ones (qkv, o: by up to 20% at 17 tokens).
inline bool use_prefill(int m, int n, int k) { return m > 32 || (m > 16 && (long long)n * k >= (16ll << 20)); }

// One launch's shape: a block computes `rows` weight rows (128 or 256) x `tokens` tokens (64 or 128) over
// 1/`splits` of K; the `splits` blocks of one tile form a thread-block cluster (1, 2, 4 or 8; > 1 needs sm_90) and
// reduce in shared memory. A zero field means "as choose() says".
struct Config {
    int rows = 0;
    int tokens = 0;
    int splits = 0;
    int engine = 0;  // 0: as choose_engine() says; 1: quant_prefill (mma.sync); 2: quant_prefill_wg (wgmma, sm_90a)
};

// Whether the wgmma kernel can run here (an sm_90a build of the library on an sm_90 GPU), and which engine the
// entry functions use for m tokens (STEPAUDIO_PREFILL_WGMMA=0 / 1 forces one).
bool wgmma_available();
int choose_engine(int m);
// The wgmma kernel's tile rows (128 or 256) and K split (a cluster of 1, 2, 4 or 8 blocks) for an m x n x k product.
struct WgShape {
    int rows, splits;
};
WgShape choose_wg(int m, int n, int k, int group);

// The launch shape the entry functions use for an m x n x k product with scale groups of `group` k's.
Config choose(int m, int n, int k, int group);

// y[m, n] = bf16(x[m, k] · Wᵀ) for W in the W4A16 kernel layout (stepaudio_native.h); arguments as
// sa_cuda_linear_w4a16 (already validated by it), any m >= 1.
sa_status linear_w4a16(const uint16_t *x, const uint32_t *qweight, const uint16_t *scales, const uint8_t *zeros,
                       bool fp16_scales, uint16_t *y, int m, int n, int k, cudaStream_t stream, Config config = {});

// The same for W in the NF4 kernel layout; arguments as sa_cuda_linear_nf4 (already validated by it).
sa_status linear_nf4(const uint16_t *x, const uint8_t *qweight, const void *absmax, const float *tables,
                     bool double_quant, uint16_t *y, int m, int n, int k, cudaStream_t stream, Config config = {});

}  // namespace sa_prefill
