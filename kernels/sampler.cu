// sampler.cu — one sampling step on the GPU, the same rule as sa_cpu_sample_bf16 (spec §3.5).
//
// One block of 1024 threads; thread t owns the contiguous id range [t*chunk, (t+1)*chunk), so "in id order" is
// thread order and the inverse CDF needs only a block-wide prefix sum over the 1024 per-thread sums. The logits
// (150 KB in Step1) are re-read from L1/L2 on every pass instead of being staged, which keeps the kernel simple.
//  1. repetition ban (RepetitionAwareLogitsProcessor) from the device-side history;
//  2. greedy: first index of the maximum; or
//  3. scores / temperature (IEEE division as on the CPU), top-k by an exact 4-pass radix select of the k-th
//     largest value (ties with it are kept), softmax weights exp(s - max), inverse CDF with sa_uniform_draw(seed,
//     *step) — the CPU's draw.
//  4. thread 0 writes *out_id, appends it to history and bumps *history_len and *step. If every logit is -inf or
//     NaN (the CPU reference returns an error), *out_id = -1 and history, length and step are left unchanged.
// Only the order of the fp32 sums differs from the CPU, which can move a draw that falls within rounding of a
// bucket boundary to the neighbouring id.
#include <climits>

#include "cuda_common.cuh"

namespace {

constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;

// Order-preserving map of a float to uint32 (larger float -> larger key).
__device__ __forceinline__ uint32_t order_key(float v) {
    const uint32_t u = __float_as_uint(v);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
__device__ __forceinline__ float key_to_float(uint32_t key) {
    return __uint_as_float((key & 0x80000000u) ? (key & 0x7fffffffu) : ~key);
}

__global__ void __launch_bounds__(kThreads)
    sample_kernel(const uint16_t *__restrict__ logits, int vocab, int32_t *history, int32_t *history_len,
                  sa_sample_params params, uint64_t *step, int32_t *out_id) {
    __shared__ int banned_s, kth_bin_s, rank_s, chosen_s, last_nonzero_s;
    __shared__ unsigned histogram[256];
    __shared__ float warp_f[kWarps];
    __shared__ int warp_i[kWarps];
    __shared__ float inclusive[kThreads];

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int hist_len = *history_len;
    const uint64_t draw_step = *step;
    const int chunk = (vocab + kThreads - 1) / kThreads;
    const int i_begin = min(vocab, tid * chunk), i_end = min(vocab, i_begin + chunk);

    if (tid == 0) {
        banned_s = -1;
        const int window = params.repetition_window;
        if (window > 0 && hist_len >= window) {
            const int last = history[hist_len - 1];
            int count = 0;
            for (int i = hist_len - window; i < hist_len; ++i) count += history[i] == last;
            if (__fdiv_rn((float)count, (float)window) > 0.1f && last >= 0 && last < vocab) banned_s = last;
        }
        chosen_s = -1;
        last_nonzero_s = -1;
    }
    __syncthreads();
    const int banned = banned_s;
    const bool greedy = params.temperature <= 0.0f || params.top_k == 1;
    auto score = [&](int i) {
        const float v = i == banned ? -INFINITY : sa_bf16_to_f32(logits[i]);
        return greedy ? v : __fdiv_rn(v, params.temperature);
    };

    int chosen;
    if (greedy) {
        float best = -INFINITY;
        int best_i = INT_MAX;
        for (int i = i_begin; i < i_end; ++i) {
            const float v = score(i);
            if (v > best || (v == best && i < best_i)) best = v, best_i = i;  // NaN never wins
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            const float ov = __shfl_xor_sync(0xffffffffu, best, o);
            const int oi = __shfl_xor_sync(0xffffffffu, best_i, o);
            if (ov > best || (ov == best && oi < best_i)) best = ov, best_i = oi;
        }
        if (lane == 0) warp_f[warp] = best, warp_i[warp] = best_i;
        __syncthreads();
        if (tid == 0) {
            for (int w = 1; w < kWarps; ++w)
                if (warp_f[w] > best || (warp_f[w] == best && warp_i[w] < best_i)) best = warp_f[w], best_i = warp_i[w];
            chosen_s = best_i == INT_MAX ? 0 : best_i;  // all NaN: id 0, as the CPU loop would return
        }
        __syncthreads();
        chosen = chosen_s;
    } else {
        // ---- top-k threshold: the k-th largest score, counting duplicates (std::nth_element on the CPU) ----
        float kth = -INFINITY;
        const bool use_top_k = params.top_k > 0 && params.top_k < vocab;
        if (use_top_k) {
            uint32_t prefix = 0, mask = 0;
            if (tid == 0) rank_s = params.top_k;
            for (int shift = 24; shift >= 0; shift -= 8) {
                if (tid < 256) histogram[tid] = 0;
                __syncthreads();
                // Every lane runs `chunk` iterations so the warp can aggregate equal bins (the high bits of the
                // keys are nearly all equal, and 1024 threads hitting one counter would serialise).
                for (int it = 0; it < chunk; ++it) {
                    const int i = i_begin + it;
                    const uint32_t key = i < i_end ? order_key(score(i)) : 0u;
                    const bool counted = i < i_end && (key & mask) == prefix;
                    const uint32_t bin = counted ? (key >> shift) & 255u : 256u;
                    const uint32_t peers = __match_any_sync(0xffffffffu, bin);
                    if (counted && lane == __ffs(peers) - 1) atomicAdd(&histogram[bin], (unsigned)__popc(peers));
                }
                __syncthreads();
                if (tid == 0) {
                    int rank = rank_s, above = 0, bin = 0;
                    for (bin = 255; bin > 0; --bin) {
                        if (above + (int)histogram[bin] >= rank) break;
                        above += histogram[bin];
                    }
                    kth_bin_s = bin;
                    rank_s = rank - above;
                }
                __syncthreads();
                prefix |= (uint32_t)kth_bin_s << shift;
                mask |= 255u << shift;
                __syncthreads();  // kth_bin_s is rewritten by the next pass
            }
            kth = key_to_float(prefix);
        }
        auto kept_score = [&](int i) {
            const float v = score(i);
            return (use_top_k && v < kth) ? -INFINITY : v;
        };

        // ---- max of the kept scores ----
        float mx = -INFINITY;
        for (int i = i_begin; i < i_end; ++i) mx = fmaxf(mx, kept_score(i));
        mx = warp_max(mx);
        if (lane == 0) warp_f[warp] = mx;
        __syncthreads();
        mx = warp_f[0];
        for (int w = 1; w < kWarps; ++w) mx = fmaxf(mx, warp_f[w]);
        __syncthreads();  // warp_f is reused below

        auto weight = [&](int i) {
            const float v = kept_score(i);
            return v == -INFINITY ? 0.0f : __expf(v - mx);
        };

        // ---- per-thread sums (in id order) and their block-wide inclusive prefix sum ----
        float local = 0.0f;
        int last_nonzero = -1;
        for (int i = i_begin; i < i_end; ++i) {
            const float wv = weight(i);
            if (wv != 0.0f) local += wv, last_nonzero = i;
        }
        if (last_nonzero >= 0) atomicMax(&last_nonzero_s, last_nonzero);
        float scan = local;
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
            const float up = __shfl_up_sync(0xffffffffu, scan, o);
            if (lane >= o) scan += up;
        }
        if (lane == 31) warp_f[warp] = scan;
        __syncthreads();
        if (warp == 0) {
            float wsum = warp_f[lane];
#pragma unroll
            for (int o = 1; o < 32; o <<= 1) {
                const float up = __shfl_up_sync(0xffffffffu, wsum, o);
                if (lane >= o) wsum += up;
            }
            warp_f[lane] = wsum;  // inclusive over warps
        }
        __syncthreads();
        if (warp > 0) scan += warp_f[warp - 1];
        inclusive[tid] = scan;
        __syncthreads();

        // ---- inverse CDF: the first id whose running sum exceeds u * total ----
        const float total = inclusive[kThreads - 1];
        const float target = sa_uniform_draw(params.seed, draw_step) * total;
        const float before = tid == 0 ? 0.0f : inclusive[tid - 1];
        if (inclusive[tid] > target && before <= target) {
            float run = before;
            int pick = -1;
            for (int i = i_begin; i < i_end; ++i) {
                const float wv = weight(i);
                if (wv == 0.0f) continue;
                run += wv;
                pick = i;
                if (run > target) break;
            }
            chosen_s = pick;
        }
        __syncthreads();
        chosen = chosen_s >= 0 ? chosen_s : last_nonzero_s;  // rounding left no crossing: the last live id
    }

    if (tid == 0) {
        *out_id = chosen;
        if (chosen >= 0) {
            history[hist_len] = chosen;
            *history_len = hist_len + 1;
            *step = draw_step + 1;
        }
    }
}

}  // namespace

SA_API sa_status sa_cuda_sample_bf16(const uint16_t *logits, int32_t vocab, int32_t *history, int32_t *history_len,
                                     const sa_sample_params *params, uint64_t *step, int32_t *out_id, void *stream) {
    SA_GUARD_BEGIN
    if (!logits || vocab <= 0 || !history || !history_len || !params || !step || !out_id)
        return sa_cuda::invalid("sa_cuda_sample_bf16: null pointer or vocab <= 0");
    sample_kernel<<<1, kThreads, 0, sa_cuda::as_stream(stream)>>>(logits, vocab, history, history_len, *params, step,
                                                                   out_id);
    SA_CHECK_LAUNCH("sample_kernel");
    return SA_OK;
    SA_GUARD_END
}
