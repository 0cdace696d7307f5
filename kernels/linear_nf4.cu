// linear_nf4.cu — y = x · Wᵀ with W a bitsandbytes NF4 weight in the kernel layout of stepaudio_native.h.
//
// Decode / skinny GEMM (M <= 16): one warp per output row streams the packed row once with 16-byte non-allocating
// loads (32 weights each, half a 64-block), looks both nibbles of a byte up at once in a 256-entry shared-memory
// pair table (quant_map[b>>4], quant_map[b&15]), decodes the double-quant absmax in-kernel
// (nested_map[code]·nested_absmax + offset, as two rounded fp32 operations like bitsandbytes) and applies it once per
// half block to the fp32 sum of quant_map[q]·x. So the kernel skips the per-weight bf16 rounding the reference
// (sa_cpu_linear_nf4) applies: results differ from it by fp32/bf16 rounding only (checked in tests/native).
// M > 16 (prefill) runs the same kernel over 16-row slices of x: correct, but it re-reads the weight per slice; a
// dequantize-to-shared-memory tensor-core GEMM is the planned replacement.
// Measured on H100 (tests/native/nf4_bench.cu): correct, but only 16-23% of copy bandwidth at M = 1 (86-128 registers,
// conflicting pair-table lookups); far below the 75% target. Not tuned yet.
#include <cuda_runtime.h>
#include <stdint.h>

#include <string>

#include "errors.h"
#include "nf4_common.h"
#include "stepaudio_native.h"

namespace {

constexpr int kWarps = 8;  // rows per 256-thread block
constexpr int kUnroll = 4; // 16-byte chunks in flight per lane

__device__ __forceinline__ uint4 load_stream(const uint4 *p) {
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}

__device__ __forceinline__ float bf16_lo(uint32_t w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float bf16_hi(uint32_t w) { return __uint_as_float(w & 0xffff0000u); }
__device__ __forceinline__ uint32_t word(const uint4 &v, int i) { return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w; }

template <int MT, bool DQ>
__global__ void __launch_bounds__(32 * kWarps) nf4_gemv(const uint16_t *__restrict__ x, const uint8_t *__restrict__ qweight,
                                                         const void *__restrict__ absmax, const float *__restrict__ tables,
                                                         uint16_t *__restrict__ y, int m, int n, int k) {
    __shared__ float2 pair[256];
    __shared__ float nested_map[256];
    for (int i = threadIdx.x; i < 256; i += blockDim.x) {
        pair[i] = make_float2(tables[i >> 4], tables[i & 15]);  // element 2j is the high nibble
        nested_map[i] = tables[16 + i];
    }
    __syncthreads();
    const int lane = threadIdx.x & 31;
    const int row = blockIdx.x * kWarps + (threadIdx.x >> 5);
    if (row >= n) return;

    const int chunks = k / 32;  // 16-byte chunks of this row
    const uint4 *wrow = reinterpret_cast<const uint4 *>(qweight + (int64_t)row * (k / 2));
    const int64_t block0 = (int64_t)row * (k / SA_NF4_BLOCK);
    float acc[MT];
#pragma unroll
    for (int i = 0; i < MT; ++i) acc[i] = 0.0f;

    for (int c0 = lane; c0 < chunks; c0 += 32 * kUnroll) {
        uint4 wv[kUnroll];
        float scale[kUnroll];
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {  // issue every load of this step before using any
            const int c = c0 + 32 * u;
            if (c < chunks) {
                wv[u] = load_stream(wrow + c);
                const int64_t b = block0 + c / 2;
                if (DQ) {
                    const uint8_t code = __ldg(static_cast<const uint8_t *>(absmax) + b);
                    const float2 g = __ldg(reinterpret_cast<const float2 *>(tables + SA_NF4_TABLE_HEADER) + b / SA_NF4_NESTED_BLOCK);
                    scale[u] = __fadd_rn(__fmul_rn(nested_map[code], g.x), g.y);
                } else {
                    scale[u] = __ldg(static_cast<const float *>(absmax) + b);
                }
            }
        }
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
            const int c = c0 + 32 * u;
            if (c >= chunks) break;
            float2 q[16];
#pragma unroll
            for (int j = 0; j < 16; ++j) q[j] = pair[(word(wv[u], j >> 2) >> (8 * (j & 3))) & 0xff];
#pragma unroll
            for (int r = 0; r < MT; ++r) {
                if (r >= m) break;
                const uint4 *xr = reinterpret_cast<const uint4 *>(x + (int64_t)r * k + (int64_t)c * 32);
                float part = 0.0f;
#pragma unroll
                for (int h = 0; h < 4; ++h) {
                    const uint4 xv = __ldg(xr + h);
#pragma unroll
                    for (int j = 0; j < 4; ++j) {
                        const uint32_t xw = word(xv, j);
                        part = fmaf(q[4 * h + j].x, bf16_lo(xw), part);
                        part = fmaf(q[4 * h + j].y, bf16_hi(xw), part);
                    }
                }
                acc[r] = fmaf(part, scale[u], acc[r]);
            }
        }
    }
#pragma unroll
    for (int r = 0; r < MT; ++r) {
        float v = acc[r];
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane == 0 && r < m) y[(int64_t)r * n + row] = sa_f32_to_bf16(v);
    }
}

template <int MT>
void launch(const uint16_t *x, const uint8_t *qw, const void *absmax, const float *tables, bool dq, uint16_t *y, int m,
            int n, int k, cudaStream_t s) {
    dim3 grid((n + kWarps - 1) / kWarps), block(32 * kWarps);
    if (dq)
        nf4_gemv<MT, true><<<grid, block, 0, s>>>(x, qw, absmax, tables, y, m, n, k);
    else
        nf4_gemv<MT, false><<<grid, block, 0, s>>>(x, qw, absmax, tables, y, m, n, k);
}

}  // namespace

SA_API sa_status sa_cuda_linear_nf4(const uint16_t *x, const uint8_t *qweight, const void *absmax, const float *tables,
                                    int32_t double_quant, uint16_t *y, int32_t m, int32_t n, int32_t k, void *stream) {
    if (!x || !qweight || !absmax || !tables || !y || m < 0 || n <= 0 || k <= 0)
        return sa::fail(SA_E_INVALID_ARGUMENT, "sa_cuda_linear_nf4: null pointer or bad size");
    if (k % SA_NF4_BLOCK != 0)
        return sa::fail(SA_E_INVALID_ARGUMENT, "sa_cuda_linear_nf4: K = " + std::to_string(k) + " is not a multiple of 64");
    if ((reinterpret_cast<uintptr_t>(x) | reinterpret_cast<uintptr_t>(qweight)) & 15u)
        return sa::fail(SA_E_INVALID_ARGUMENT, "sa_cuda_linear_nf4: x and qweight must be 16-byte aligned");
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    const bool dq = double_quant != 0;
    for (int r0 = 0; r0 < m; r0 += 16) {  // M > 16: 16-row slices (see the file comment)
        const int mm = m - r0 < 16 ? m - r0 : 16;
        const uint16_t *xs = x + (int64_t)r0 * k;
        uint16_t *ys = y + (int64_t)r0 * n;
        if (mm == 1) launch<1>(xs, qweight, absmax, tables, dq, ys, mm, n, k, s);
        else if (mm == 2) launch<2>(xs, qweight, absmax, tables, dq, ys, mm, n, k, s);
        else if (mm <= 4) launch<4>(xs, qweight, absmax, tables, dq, ys, mm, n, k, s);
        else if (mm <= 8) launch<8>(xs, qweight, absmax, tables, dq, ys, mm, n, k, s);
        else launch<16>(xs, qweight, absmax, tables, dq, ys, mm, n, k, s);
        cudaError_t err = cudaGetLastError();
        if (err != cudaSuccess)
            return sa::fail(SA_E_CUDA, std::string("nf4_gemv: launch failed with ") + cudaGetErrorName(err) + " (" +
                                           cudaGetErrorString(err) + ")");
    }
    return SA_OK;
}
