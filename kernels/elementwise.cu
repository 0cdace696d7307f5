// elementwise.cu — embedding gather, RMSNorm, SwiGLU and the residual add.
//
// Design: these are bandwidth-trivial next to the linears (a few KB per token), so they are written for exactness
// first. Every rounding point is the CPU reference's (cpu_reference.cpp): the same bf16 casts, and the IEEE
// intrinsics (__fdiv_rn, __fsqrt_rn, __fmul_rn) because the library is compiled with --use_fast_math, which would
// otherwise turn / and sqrtf into approximations. The only unavoidable differences are the order of the RMSNorm
// sum of squares and __expf in SiLU, which can flip a bf16 rounding by one ulp on rare elements.
// 16-byte vector paths are used when the row length is a multiple of 8 and the pointers are 16-byte aligned.
// Every kernel is launched with programmatic dependent launch (cuda_common.cuh): it lets its successor launch, then
// waits for its predecessor before touching memory.
// add_rmsnorm fuses the residual add with the following RMSNorm (x += y; out = rmsnorm(x)): one launch instead of
// two in every half-layer of the decode step, with the rounding points of sa_cpu_add_bf16 then sa_cpu_rmsnorm_bf16.
#include "linear_epilogue.cuh"  // the rounding helpers shared with the fused linears

namespace {

constexpr int kThreads = 256;

inline int grid_for(int64_t items) {
    int64_t blocks = (items + kThreads - 1) / kThreads;
    return (int)(blocks < 1 ? 1 : (blocks > 8192 ? 8192 : blocks));
}

// ---- embedding: out[i] = table[ids[i]] ----
// Ids are validated by the caller (the C# tokenizer/model); an out-of-range id leaves its output row unwritten
// rather than reading outside the table.
template <bool kVec>
__global__ void embed_kernel(const uint16_t *__restrict__ table, int64_t vocab, int dim, const int32_t *__restrict__ ids,
                             uint16_t *__restrict__ out) {
    pdl_launch_dependents();
    pdl_wait();
    const int row = blockIdx.x;
    const int32_t id = ids[row];
    if (id < 0 || id >= vocab) return;
    const uint16_t *src = table + (int64_t)id * dim;
    uint16_t *dst = out + (int64_t)row * dim;
    if (kVec) {
        for (int i = threadIdx.x; i < dim / 8; i += blockDim.x)
            reinterpret_cast<uint4 *>(dst)[i] = reinterpret_cast<const uint4 *>(src)[i];
    } else {
        for (int i = threadIdx.x; i < dim; i += blockDim.x) dst[i] = src[i];
    }
}

// ---- RMSNorm: one block per row ----
// 1 / sqrt(mean(x^2) + eps) of the row from each thread's partial sum of squares (block of kThreads threads).
__device__ float block_inv_rms(float sum_sq, int dim, float eps) {
    __shared__ float warp_sums[kThreads / 32];
    __shared__ float inv_shared;
    sum_sq = warp_sum(sum_sq);
    if ((threadIdx.x & 31) == 0) warp_sums[threadIdx.x >> 5] = sum_sq;
    __syncthreads();
    if (threadIdx.x == 0) {
        float total = 0.0f;
        for (int i = 0; i < kThreads / 32; ++i) total += warp_sums[i];
        inv_shared = rms_inverse(total, dim, eps);
    }
    __syncthreads();
    return inv_shared;
}

// The second pass of both RMSNorm kernels: orow = bf16(bf16(x * inv) * w) (the CPU reference's rounding points).
template <bool kVec>
__device__ __forceinline__ void write_normed_row(const uint16_t *xr, const uint16_t *__restrict__ w,
                                                 uint16_t *__restrict__ orow, int dim, float inv) {
    if (kVec) {
        for (int c = threadIdx.x; c < dim / 8; c += blockDim.x)
            reinterpret_cast<uint4 *>(orow)[c] =
                rms_scale8(reinterpret_cast<const uint4 *>(xr)[c], reinterpret_cast<const uint4 *>(w)[c], inv);
    } else {
        for (int i = threadIdx.x; i < dim; i += blockDim.x)
            orow[i] = sa_f32_to_bf16(rms_scale(sa_bf16_to_f32(xr[i]), inv, sa_bf16_to_f32(w[i])));
    }
}

template <bool kVec>
__global__ void rmsnorm_kernel(const uint16_t *__restrict__ x, const uint16_t *__restrict__ w, uint16_t *__restrict__ out,
                               int dim, float eps) {
    pdl_launch_dependents();
    pdl_wait();
    const uint16_t *xr = x + (int64_t)blockIdx.x * dim;
    uint16_t *orow = out + (int64_t)blockIdx.x * dim;
    float sum_sq = 0.0f;
    if (kVec) {
        for (int c = threadIdx.x; c < dim / 8; c += blockDim.x) sum_sq = sum_sq8(reinterpret_cast<const uint4 *>(xr)[c], sum_sq);
    } else {
        for (int i = threadIdx.x; i < dim; i += blockDim.x) {
            float v = sa_bf16_to_f32(xr[i]);
            sum_sq = fmaf(v, v, sum_sq);
        }
    }
    write_normed_row<kVec>(xr, w, orow, dim, block_inv_rms(sum_sq, dim, eps));
}

// ---- SwiGLU: out = bf16(bf16(silu(gate)) * up) ----
template <bool kVec>
__global__ void swiglu_kernel(const uint16_t *__restrict__ gate_up, uint16_t *__restrict__ out, int m, int f) {
    pdl_launch_dependents();
    pdl_wait();
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    if (kVec) {
        const int64_t groups = (int64_t)m * (f / 8);
        for (int64_t v = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; v < groups; v += stride) {
            const int64_t r = v / (f / 8), i = (v % (f / 8)) * 8;
            const uint4 g = *reinterpret_cast<const uint4 *>(gate_up + r * 2 * f + i);
            const uint4 u = *reinterpret_cast<const uint4 *>(gate_up + r * 2 * f + f + i);
            uint4 o;
            o.x = pack_bf16x2(swiglu_one(bf16_lo(g.x), bf16_lo(u.x)), swiglu_one(bf16_hi(g.x), bf16_hi(u.x)));
            o.y = pack_bf16x2(swiglu_one(bf16_lo(g.y), bf16_lo(u.y)), swiglu_one(bf16_hi(g.y), bf16_hi(u.y)));
            o.z = pack_bf16x2(swiglu_one(bf16_lo(g.z), bf16_lo(u.z)), swiglu_one(bf16_hi(g.z), bf16_hi(u.z)));
            o.w = pack_bf16x2(swiglu_one(bf16_lo(g.w), bf16_lo(u.w)), swiglu_one(bf16_hi(g.w), bf16_hi(u.w)));
            *reinterpret_cast<uint4 *>(out + r * f + i) = o;
        }
    } else {
        const int64_t total = (int64_t)m * f;
        for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += stride) {
            const int64_t r = e / f, i = e % f;
            out[e] = sa_f32_to_bf16(
                swiglu_one(sa_bf16_to_f32(gate_up[r * 2 * f + i]), sa_bf16_to_f32(gate_up[r * 2 * f + f + i])));
        }
    }
}

// ---- residual add: x = bf16(x + y) ----
template <bool kVec>
__global__ void add_kernel(uint16_t *__restrict__ x, const uint16_t *__restrict__ y, int64_t n) {
    pdl_launch_dependents();
    pdl_wait();
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    if (kVec) {
        for (int64_t v = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; v < n / 8; v += stride) {
            reinterpret_cast<uint4 *>(x)[v] =
                add_bf16x8(reinterpret_cast<const uint4 *>(x)[v], reinterpret_cast<const uint4 *>(y)[v]);
        }
    } else {
        for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
            x[i] = sa_f32_to_bf16(__fadd_rn(sa_bf16_to_f32(x[i]), sa_bf16_to_f32(y[i])));
    }
}

// ---- residual add + RMSNorm: x[r] = bf16(x[r] + y[r]); out[r] = rmsnorm(x[r]) * w; one block per row ----
// The second pass re-reads the row of x this block has just written (same thread, same elements).
template <bool kVec>
__global__ void add_rmsnorm_kernel(uint16_t *__restrict__ x, const uint16_t *__restrict__ y,
                                   const uint16_t *__restrict__ w, uint16_t *__restrict__ out, int dim, float eps) {
    pdl_launch_dependents();
    pdl_wait();
    uint16_t *xr = x + (int64_t)blockIdx.x * dim;
    const uint16_t *yr = y + (int64_t)blockIdx.x * dim;
    uint16_t *orow = out + (int64_t)blockIdx.x * dim;
    float sum_sq = 0.0f;
    if (kVec) {
        for (int c = threadIdx.x; c < dim / 8; c += blockDim.x) {
            const uint4 a = add_bf16x8(reinterpret_cast<const uint4 *>(xr)[c], reinterpret_cast<const uint4 *>(yr)[c]);
            reinterpret_cast<uint4 *>(xr)[c] = a;
            sum_sq = sum_sq8(a, sum_sq);
        }
    } else {
        for (int i = threadIdx.x; i < dim; i += blockDim.x) {
            const uint16_t s = sa_f32_to_bf16(__fadd_rn(sa_bf16_to_f32(xr[i]), sa_bf16_to_f32(yr[i])));
            xr[i] = s;
            const float v = sa_bf16_to_f32(s);
            sum_sq = fmaf(v, v, sum_sq);
        }
    }
    write_normed_row<kVec>(xr, w, orow, dim, block_inv_rms(sum_sq, dim, eps));
}

}  // namespace

using sa_cuda::aligned16;
using sa_cuda::launch_pdl;
using sa_cuda::as_stream;
using sa_cuda::invalid;

SA_API sa_status sa_cuda_embed_bf16(const uint16_t *table, int64_t vocab, int32_t dim, const int32_t *ids, int32_t n,
                                    uint16_t *out, void *stream) {
    SA_GUARD_BEGIN
    if (!table || !ids || !out || vocab <= 0 || dim <= 0 || n < 0)
        return invalid("sa_cuda_embed_bf16: null pointer or non-positive vocab/dim/negative n");
    if (n == 0) return SA_OK;
    const bool vec = dim % 8 == 0 && aligned16(table) && aligned16(out);
    return launch_pdl("embed_kernel", vec ? &embed_kernel<true> : &embed_kernel<false>, dim3(n), dim3(kThreads), 0,
                      as_stream(stream), table, vocab, dim, ids, out);
    SA_GUARD_END
}

SA_API sa_status sa_cuda_rmsnorm_bf16(const uint16_t *x, const uint16_t *w, uint16_t *out, int32_t rows, int32_t dim,
                                      float eps, void *stream) {
    SA_GUARD_BEGIN
    if (!x || !w || !out || rows < 0 || dim <= 0)
        return invalid("sa_cuda_rmsnorm_bf16: null pointer, negative rows or non-positive dim");
    if (rows == 0) return SA_OK;
    const bool vec = dim % 8 == 0 && aligned16(x) && aligned16(w) && aligned16(out);
    return launch_pdl("rmsnorm_kernel", vec ? &rmsnorm_kernel<true> : &rmsnorm_kernel<false>, dim3(rows), dim3(kThreads),
                      0, as_stream(stream), x, w, out, dim, eps);
    SA_GUARD_END
}

SA_API sa_status sa_cuda_swiglu_bf16(const uint16_t *gate_up, uint16_t *out, int32_t m, int32_t f, void *stream) {
    SA_GUARD_BEGIN
    if (!gate_up || !out || m < 0 || f <= 0) return invalid("sa_cuda_swiglu_bf16: null pointer, negative m or f <= 0");
    if (m == 0) return SA_OK;
    const bool vec = f % 8 == 0 && aligned16(gate_up) && aligned16(out);
    return launch_pdl("swiglu_kernel", vec ? &swiglu_kernel<true> : &swiglu_kernel<false>,
                      dim3(grid_for(vec ? (int64_t)m * f / 8 : (int64_t)m * f)), dim3(kThreads), 0, as_stream(stream),
                      gate_up, out, m, f);
    SA_GUARD_END
}

SA_API sa_status sa_cuda_add_bf16(uint16_t *x, const uint16_t *y, int64_t n, void *stream) {
    SA_GUARD_BEGIN
    if (!x || !y || n < 0) return invalid("sa_cuda_add_bf16: null pointer or negative n");
    if (n == 0) return SA_OK;
    const bool vec = n % 8 == 0 && aligned16(x) && aligned16(y);
    return launch_pdl("add_kernel", vec ? &add_kernel<true> : &add_kernel<false>, dim3(grid_for(vec ? n / 8 : n)),
                      dim3(kThreads), 0, as_stream(stream), x, y, n);
    SA_GUARD_END
}

SA_API sa_status sa_cuda_add_rmsnorm_bf16(uint16_t *x, const uint16_t *y, const uint16_t *w, uint16_t *out, int32_t rows,
                                          int32_t dim, float eps, void *stream) {
    SA_GUARD_BEGIN
    if (!x || !y || !w || !out || rows < 0 || dim <= 0)
        return invalid("sa_cuda_add_rmsnorm_bf16: null pointer, negative rows or non-positive dim");
    if (out == x || out == y) return invalid("sa_cuda_add_rmsnorm_bf16: out must not alias x or y");
    if (rows == 0) return SA_OK;
    const bool vec = dim % 8 == 0 && aligned16(x) && aligned16(y) && aligned16(w) && aligned16(out);
    return launch_pdl("add_rmsnorm_kernel", vec ? &add_rmsnorm_kernel<true> : &add_rmsnorm_kernel<false>, dim3(rows),
                      dim3(kThreads), 0, as_stream(stream), x, y, w, out, dim, eps);
    SA_GUARD_END
}
