/* stepaudio_native.h — the flat C ABI of libstepaudio_native.
 *
 * Conventions (same as ONNX Runtime / TorchSharp shims):
 *  - every entry point returns sa_status; on failure sa_last_error() returns a thread-local message;
 *  - no C++ exception ever crosses this boundary;
 *  - bf16 values are passed as uint16_t bit patterns (the upper half of an IEEE fp32);
 *  - matrices are row-major; linear weights are [N out, K in] exactly as PyTorch stores them;
 *  - sa_cpu_* take host pointers and are the plain reference implementation (the oracle for GPU kernels);
 *  - sa_cuda_* take device pointers and a CUstream (void*), launch asynchronously and check the launch. On sm_90+
 *    the bf16-path kernels use programmatic dependent launch (each may start before its predecessor in the stream
 *    has finished, and waits for it before touching activations); STEPAUDIO_NO_PDL=1 in the environment turns it off.
 */
#ifndef STEPAUDIO_NATIVE_H
#define STEPAUDIO_NATIVE_H

#include <stdint.h>

#ifdef __cplusplus
#define SA_EXTERN extern "C"
#else
#define SA_EXTERN
#endif
#define SA_API SA_EXTERN __attribute__((visibility("default")))

#define SA_ABI_VERSION 5

typedef int32_t sa_status;
enum {
    SA_OK = 0,
    SA_E_INVALID_ARGUMENT = 1, /* a null pointer, a negative size, an unsupported shape */
    SA_E_NO_CUDA = 2,          /* the library was built without CUDA */
    SA_E_CUDA = 3,             /* a CUDA runtime/launch error; the message names it */
    SA_E_OUT_OF_MEMORY = 4,
    SA_E_INTERNAL = 5
};

/* Shape of one attention call. The KV cache of one layer is two arrays [max_ctx, n_kv_heads*head_dim]. */
typedef struct sa_attn_shape {
    int32_t n_heads;    /* query heads (48 in Step1) */
    int32_t n_kv_heads; /* KV groups (4); query head h uses group h / (n_heads/n_kv_heads) */
    int32_t head_dim;   /* 64 */
    int32_t n_new;      /* tokens in this call (prompt length for prefill, 1 for decode) */
    int32_t max_ctx;    /* capacity of the cache, in tokens */
} sa_attn_shape;

/* Generation settings of one sampling step (spec §3.5). temperature <= 0 or top_k == 1 means greedy. */
typedef struct sa_sample_params {
    float temperature;      /* 0.7 in the reference */
    int32_t top_k;          /* 50 (HF default); 0 disables */
    int32_t repetition_window; /* 10: RepetitionAwareLogitsProcessor window; 0 disables */
    uint64_t seed;          /* the uniform draw of step s is sa_uniform(seed, s) */
} sa_sample_params;

/* Linear epilogues: the decode step's elementwise work after a linear folded into the linear's final store (one
 * launch fewer each; measured in BENCHMARKS.md). Semantics are exactly the CPU reference ops composed:
 *  SA_EPILOGUE_STORE   y = bf16(x·W^T);
 *  SA_EPILOGUE_ADD     y += x·W^T in place: sa_cpu_add_bf16(y, bf16(x·W^T)) — the residual add (o, down);
 *  SA_EPILOGUE_SWIGLU  W holds gate rows [0, n/2) then up rows [n/2, n) (the fused gate+up; n % 16 == 0) and
 *                      y [m, n/2] = sa_cpu_swiglu_bf16(bf16(x·W^T)).
 * Epilogues other than STORE are for decode (m <= SA_EPILOGUE_MAX_M) and y must not alias x. */
enum { SA_EPILOGUE_STORE = 0, SA_EPILOGUE_ADD = 1, SA_EPILOGUE_SWIGLU = 2 };
#define SA_EPILOGUE_MAX_M 16

/* An RMSNorm folded into the two decode linears around it (one launch fewer per norm; BENCHMARKS.md). The norm
 * out = RMSNorm(h)·g is split: the linear that produces h (SA_EPILOGUE_ADD) also writes h·g and partial sums of h²,
 * and the linear that consumes the norm reads h·g as its x and scales its sums by 1/rms(h) before its epilogue:
 *  producer (weight != NULL; epilogue ADD; n % 16 == 0): after h = y += x·W^T (as SA_EPILOGUE_ADD),
 *      out[t, r] = bf16(h[t, r] · weight[r])                       out [m, n], aliasing neither x nor y
 *      sumsq_out[t · n/16 + j] = Σ_{r = 16j .. 16j+15} h[t, r]²     fp32, [m, n/16]
 *  consumer (sumsq_in != NULL; k % 16 == 0; x = the producer's out):
 *      inv[t] = 1 / sqrt(Σ_j sumsq_in[t · k/16 + j] / k + eps), and the epilogue is applied to bf16(bf16(x·W^T) · inv[t])
 *      instead of bf16(x·W^T).
 * So consumer(producer) = bf16(x·W^T) with x = bf16(h·g)·inv, where the separate RMSNorm rounds bf16(bf16(h·inv)·g):
 * the same values up to bf16 rounding. Sums of squares are fp32 in any order (sa_cpu_norm_fold_* sum in index order).
 * For decode only (m <= SA_EPILOGUE_MAX_M). A NULL sa_norm_fold pointer, or one with both weight and sumsq_in NULL,
 * is no fold. */
typedef struct sa_norm_fold {
    const uint16_t *weight; /* producer: the following RMSNorm's weight g [n] */
    uint16_t *out;          /* producer: bf16(h · g) [m, n] */
    float *sumsq_out;       /* producer: [m, n/16] */
    const float *sumsq_in;  /* consumer: the producer's sumsq_out, [m, k/16] */
    float eps;              /* consumer: the RMSNorm epsilon */
} sa_norm_fold;

SA_API const char *sa_last_error(void);
SA_API int32_t sa_abi_version(void);
/* 1 when the library was compiled with the CUDA kernels, 0 for a CPU-only build. */
SA_API int32_t sa_has_cuda(void);

/* ---- small shared definitions ---- */
/* sqrt-ALiBi slopes, spec §1.3 (the 32 + 16 table for 48 heads). */
SA_API sa_status sa_alibi_slopes(int32_t n_heads, float *out);
/* Counter-based uniform in [0,1) used by every sampler (CPU and GPU draw the same number). */
SA_API float sa_uniform(uint64_t seed, uint64_t step);

/* ---- CPU reference kernels (host pointers) ---- */
SA_API sa_status sa_cpu_embed_bf16(const uint16_t *table, int64_t vocab, int32_t dim, const int32_t *ids, int32_t n,
                                   uint16_t *out);
/* out = bf16(bf16(x * rsqrt(mean(x^2) + eps)) * w), rows of length dim (StepRMSNorm). */
SA_API sa_status sa_cpu_rmsnorm_bf16(const uint16_t *x, const uint16_t *w, uint16_t *out, int32_t rows, int32_t dim,
                                     float eps);
/* y[M,N] = bf16(x[M,K] · W[N,K]^T), fp32 accumulation. */
SA_API sa_status sa_cpu_linear_bf16(const uint16_t *x, const uint16_t *w, uint16_t *y, int32_t m, int32_t n, int32_t k);
/* gate_up [M, 2F] holds gate in columns [0,F) and up in [F,2F); out[M,F] = bf16(bf16(silu(gate)) * up). */
SA_API sa_status sa_cpu_swiglu_bf16(const uint16_t *gate_up, uint16_t *out, int32_t m, int32_t f);
/* x[i] = bf16(x[i] + y[i]) — the residual add. */
SA_API sa_status sa_cpu_add_bf16(uint16_t *x, const uint16_t *y, int64_t n);
/* The residual add followed by the next RMSNorm, x and y [rows, dim]: sa_cpu_add_bf16(x, y, rows*dim), then
 * sa_cpu_rmsnorm_bf16(x, w, out, rows, dim, eps). out must not alias x or y. */
SA_API sa_status sa_cpu_add_rmsnorm_bf16(uint16_t *x, const uint16_t *y, const uint16_t *w, uint16_t *out, int32_t rows,
                                         int32_t dim, float eps);
/* The reference halves of a folded RMSNorm (sa_norm_fold), h and out [rows, dim], dim % 16 == 0:
 * producer: out = bf16(h · w) and sumsq [rows, dim/16] (each the sum of 16 h² in index order, fp32);
 * consumer: y[t, :] = bf16(y[t, :] · inv[t]) for y [rows, n], inv[t] from sumsq [rows, k/16] as in sa_norm_fold. */
SA_API sa_status sa_cpu_norm_fold_out(const uint16_t *h, const uint16_t *w, uint16_t *out, float *sumsq, int32_t rows,
                                      int32_t dim);
SA_API sa_status sa_cpu_norm_fold_in(uint16_t *y, const float *sumsq, int32_t rows, int32_t n, int32_t k, float eps);
/* One attention layer call. qkv [n_new, (n_heads + 2 n_kv_heads) * head_dim] is the fused projection output
 * (q | k | v). *seq_len is the sequence length including the n_new tokens (a pointer so that a captured GPU graph
 * reads it from device memory each replay); the new tokens sit at positions pos0 = *seq_len − n_new onwards.
 * Their k, v rows are written into the caches at pos0 .. pos0+n_new-1. Then for each new token i (absolute position
 * p = pos0+i) and head h: out[i, h] = softmax_j( q·k_j / sqrt(d) − slope_h·sqrt(p − j) ) · v_j over j ≤ p,
 * scores and softmax in fp32, out rounded to bf16. out is [n_new, n_heads*head_dim]. */
SA_API sa_status sa_cpu_attention_bf16(const sa_attn_shape *shape, const uint16_t *qkv, uint16_t *k_cache,
                                       uint16_t *v_cache, const int32_t *seq_len, const float *slopes, uint16_t *out);
/* One sampling step over bf16 logits [vocab]. history holds the whole sequence so far (prompt + generated),
 * history_len entries. Writes the chosen id. step selects the uniform draw. */
SA_API sa_status sa_cpu_sample_bf16(const uint16_t *logits, int32_t vocab, const int32_t *history, int32_t history_len,
                                    const sa_sample_params *params, uint64_t step, int32_t *out_id);

/* ---- CUDA kernels (device pointers; stream is a CUstream / cudaStream_t). SA_E_NO_CUDA in a CPU build. ---- */
SA_API sa_status sa_cuda_embed_bf16(const uint16_t *table, int64_t vocab, int32_t dim, const int32_t *ids, int32_t n,
                                    uint16_t *out, void *stream);
SA_API sa_status sa_cuda_rmsnorm_bf16(const uint16_t *x, const uint16_t *w, uint16_t *out, int32_t rows, int32_t dim,
                                      float eps, void *stream);
/* y = bf16(x · W^T) with one of the SA_EPILOGUE_* epilogues and optionally a folded RMSNorm (NULL: none). */
SA_API sa_status sa_cuda_linear_bf16(const uint16_t *x, const uint16_t *w, uint16_t *y, int32_t m, int32_t n, int32_t k,
                                     int32_t epilogue, const sa_norm_fold *fold, void *stream);
SA_API sa_status sa_cuda_swiglu_bf16(const uint16_t *gate_up, uint16_t *out, int32_t m, int32_t f, void *stream);
SA_API sa_status sa_cuda_add_bf16(uint16_t *x, const uint16_t *y, int64_t n, void *stream);
/* sa_cpu_add_rmsnorm_bf16 in one kernel (one block per row). */
SA_API sa_status sa_cuda_add_rmsnorm_bf16(uint16_t *x, const uint16_t *y, const uint16_t *w, uint16_t *out, int32_t rows,
                                          int32_t dim, float eps, void *stream);
/* sa_cpu_attention_bf16 on the GPU. workspace: device memory for the key-range splits' partial sums, 16-byte
 * aligned, owned by the caller and used by one stream at a time (concurrent calls need their own). A call never
 * uses more than SA_ATTENTION_WORKSPACE_BYTES; a smaller one (or NULL, 0) means fewer splits — slower at long
 * context, the same results within rounding. */
#define SA_ATTENTION_WORKSPACE_BYTES (8 << 20)
SA_API sa_status sa_cuda_attention_bf16(const sa_attn_shape *shape, const uint16_t *qkv, uint16_t *k_cache,
                                        uint16_t *v_cache, const int32_t *seq_len, const float *slopes, uint16_t *out,
                                        float *workspace, int64_t workspace_bytes, void *stream);
/* GPU sampler, same rule as the CPU one. history, history_len and step live in device memory so that the decode
 * step can be captured once as a graph: the kernel writes *out_id, appends it (history[*history_len] = id,
 * ++*history_len) and increments *step. history must have room for one more id. */
SA_API sa_status sa_cuda_sample_bf16(const uint16_t *logits, int32_t vocab, int32_t *history, int32_t *history_len,
                                     const sa_sample_params *params, uint64_t *step, int32_t *out_id, void *stream);

/* ---- W4A16: int4 weights with 16-bit group scales (compressed-tensors pack-quantized, AutoAWQ GEMM) ----
 * Every checkpoint format is repacked at load into ONE kernel layout for W[N out, K in], group size 128
 * (K % 128 == 0; any N):
 *   qweight uint32 [N, K/8]: word j of row n holds the 4-bit codes c (0..15) of k = 8j..8j+7; the code of
 *           k = 8j+e sits at nibble position SA_W4A16_NIBBLE_OF[e] = {0,4,1,5,2,6,3,7}[e] (bits 4p..4p+3), i.e.
 *           nibbles hold elements 0,2,4,6,1,3,5,7: (q >> 4i) & 0x000f000f yields elements (2i, 2i+1) as the two
 *           halves of a packed pair, ready for the lop3 / magic-number int4 -> bf16 conversion;
 *   scales  uint16 [N, K/128]: bf16 bits, or fp16 bits when flags has SA_W4A16_FP16_SCALES (AutoAWQ keeps fp16);
 *   zeros   uint8  [N, K/128]: zero codes z (0..15), or NULL for symmetric weights (z = 8).
 *   w[n,k] = (c - z) * s, exact in fp32. */
#define SA_W4A16_GROUP 128
#define SA_W4A16_FP16_SCALES 1
/* out[N,K] = the dequantized weight in fp32 (exact). */
SA_API sa_status sa_cpu_w4a16_dequant(const uint32_t *qweight, const uint16_t *scales, const uint8_t *zeros,
                                      int32_t flags, int32_t n, int32_t k, float *out);
/* y[M,N] = bf16(x[M,K] · W^T), fp32 accumulation over the exact dequantized weight. */
SA_API sa_status sa_cpu_linear_w4a16(const uint16_t *x, const uint32_t *qweight, const uint16_t *scales,
                                     const uint8_t *zeros, int32_t flags, uint16_t *y, int32_t m, int32_t n, int32_t k);
/* Same on the GPU (any M; M <= 16 is the decode kernel, larger M the prefill GEMM of kernels/linear_quant_prefill.cu,
 * except M <= 32 of a weight under 16M elements: the decode kernel over 16-token slices). x, y 16-byte aligned.
 * epilogue: SA_EPILOGUE_* (add / SwiGLU for M <= 16); fold: a folded RMSNorm or NULL (M <= 16). */
SA_API sa_status sa_cuda_linear_w4a16(const uint16_t *x, const uint32_t *qweight, const uint16_t *scales,
                                      const uint8_t *zeros, int32_t flags, uint16_t *y, int32_t m, int32_t n, int32_t k,
                                      int32_t epilogue, const sa_norm_fold *fold, void *stream);

/* ---- bitsandbytes NF4 weights (shared/docs/quant-kernels.md §1), in the kernel layout made at load ----
 * A linear weight W [N, K] (K a multiple of 64) is held as three arrays:
 *  qweight [N*K/2] bytes: the bnb nibbles unchanged, row-major over [N, K], element 2i in the HIGH nibble;
 *  absmax  [N*K/64] per 64-block: uint8 codes when double_quant != 0, else fp32 values;
 *  tables  fp32: quant_map[16], nested_map[256] (zeros without double quant), then for each nested group of 256
 *          blocks (block b belongs to group b/256) the pair (nested_absmax, nested_offset).
 * Dequantization is bitsandbytes' formula in fp32, then one rounding to bf16:
 *  absmax_f32[b] = nested_map[code[b]] * nested_absmax[b/256] + nested_offset   (a product, then a sum: no FMA)
 *  w[n,k] = bf16(quant_map[nibble(n*K+k)] * absmax_f32[(n*K+k)/64]). */
/* Writes the dequantized weight: w_f32 (fp32 before the cast) and/or w_bf16 [N*K]; either may be NULL. */
SA_API sa_status sa_cpu_nf4_dequantize(const uint8_t *qweight, const void *absmax, const float *tables, int32_t double_quant,
                                       int32_t n, int32_t k, float *w_f32, uint16_t *w_bf16);
/* y[M,N] = bf16(x[M,K] · W^T) with W dequantized as above, fp32 accumulation (same sums as sa_cpu_linear_bf16). */
SA_API sa_status sa_cpu_linear_nf4(const uint16_t *x, const uint8_t *qweight, const void *absmax, const float *tables,
                                   int32_t double_quant, uint16_t *y, int32_t m, int32_t n, int32_t k);
/* CUDA: the same product. M <= 16 streams the packed weight once (decode GEMV / skinny GEMM); larger M runs the
 * tensor-core prefill GEMM of kernels/linear_quant_prefill.cu (M <= 32 of a weight under 16M elements: the decode
 * kernel over 16-token slices). epilogue: SA_EPILOGUE_* (add / SwiGLU for M <= 16); fold: a folded RMSNorm or
 * NULL (M <= 16). */
SA_API sa_status sa_cuda_linear_nf4(const uint16_t *x, const uint8_t *qweight, const void *absmax, const float *tables,
                                    int32_t double_quant, uint16_t *y, int32_t m, int32_t n, int32_t k, int32_t epilogue,
                                    const sa_norm_fold *fold, void *stream);

/* NF4 quantization at load (round to nearest, no calibration: what bitsandbytes does when a base checkpoint is
 * loaded in 4 bits), on the GPU; the same bytes as the C# reference (StepAudio.Quant.Nf4Quantizer). Blocks of
 * values, the last one ragged: absmax = max |v| of the block (NaN if it holds a NaN); code = the index of the table
 * entry nearest to v / absmax (v / 1 when absmax is 0), the lowest index on a tie, 0 for a NaN or infinite quotient.
 *  sa_cuda_nf4_quantize: `count` bf16 weights w in 64-blocks against quant_map[16] (ascending) ->
 *      packed [ceil(count/2)] (element 2i in the high nibble) and absmax fp32 [ceil(count/64)];
 *  sa_cuda_nf4_quantize_nested (double quant): v = absmax[i] - offset (offset = the mean of absmax, which the
 *      caller computes in index order in double and rounds to fp32) in 256-blocks against nested_map[256]
 *      (ascending) -> codes [blocks] and nested_absmax fp32 [ceil(blocks/256)].
 * Device pointers (the tables too); asynchronous on `stream`. */
SA_API sa_status sa_cuda_nf4_quantize(const uint16_t *w, int64_t count, const float *quant_map, uint8_t *packed,
                                      float *absmax, void *stream);
SA_API sa_status sa_cuda_nf4_quantize_nested(const float *absmax, int64_t blocks, float offset, const float *nested_map,
                                             uint8_t *codes, float *nested_absmax, void *stream);

#endif
