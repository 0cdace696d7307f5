// sampler.cu — one sampling step on the GPU, the same rule as sa_cpu_sample_bf16 (spec §3.5).
//
// One block of 1024 threads. Passes whose order does not matter (argmax, radix histogram, max) read the logits
// coalesced (id = tid + 1024 j). The inverse CDF needs id order, so for it thread t owns the contiguous range
// [t*chunk, (t+1)*chunk) and a block-wide prefix sum over the 1024 per-thread sums finds the crossing thread.
//  1. repetition ban (RepetitionAwareLogitsProcessor) from the device-side history;
//  2. greedy: first index of the maximum; or
//  3. top-k: an exact 2-pass radix select of the k-th largest logit on 16-bit bf16 keys. Division by the
//     temperature is monotone, so the CPU's k-th largest score is (k-th largest logit) / T, and
//     "score >= k-th score" is "logit >= v_min", the smallest bf16 value with the same quotient (found by stepping
//     down from the k-th logit; almost always itself). Scores of kept ids use the IEEE division the CPU uses.
//     Softmax weights exp(s - max), inverse CDF with sa_uniform_draw(seed, *step) — the CPU's draw.
//  4. thread 0 writes *out_id, appends it to history and bumps *history_len and *step. If every logit is -inf or
//     NaN (the CPU reference returns an error), *out_id = -1 and history, length and step are left unchanged.
// Only the order of the fp32 sums differs from the CPU, which can move a draw that falls within rounding of a
// bucket boundary to the neighbouring id.
// v5: the top-k path first copies the logits into shared memory (coalesced, 150 KB for Step1's vocabulary) and every
// later pass reads them there: the inverse-CDF passes read contiguous per-thread ranges, which from global memory
// touched 32 cache lines per warp load (most of the 72 µs); a vocabulary above kMaxStagedVocab stays in global memory.
#include <climits>

#include "cuda_common.cuh"

namespace {

constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;
constexpr int kMaxStagedVocab = 96 * 1024;  // 192 KB of bf16 logits in dynamic shared memory

// Order-preserving map of a bf16-representable float to a 16-bit key (larger value -> larger key).
__device__ __forceinline__ uint32_t order_key16(float v) {
    const uint32_t b = __float_as_uint(v) >> 16;
    return (b & 0x8000u) ? (~b & 0xffffu) : (b | 0x8000u);
}
__device__ __forceinline__ float key16_to_float(uint32_t key) {
    const uint32_t b = (key & 0x8000u) ? (key & 0x7fffu) : (~key & 0xffffu);
    return __uint_as_float(b << 16);
}

__global__ void __launch_bounds__(kThreads)
    sample_kernel(const uint16_t *__restrict__ logits, int vocab, int32_t *history, int32_t *history_len,
                  sa_sample_params params, uint64_t *step, int32_t *out_id, int staged) {
    extern __shared__ __align__(16) uint16_t staged_logits[];  // [vocab] when staged
    pdl_launch_dependents();
    pdl_wait();  // logits, history and the counters come from earlier kernels
    __shared__ int banned_s, kth_bin_s, rank_s, chosen_s, last_nonzero_s;
    __shared__ float v_min_s;
    __shared__ unsigned histogram[256];
    __shared__ float warp_f[kWarps];
    __shared__ int warp_i[kWarps];
    __shared__ float inclusive[kThreads];

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int hist_len = *history_len;
    const uint64_t draw_step = *step;

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
    const uint16_t *src = logits;  // the greedy path reads the logits once, straight from global memory
    if (!greedy && staged) {
        if ((vocab & 7) == 0 && (reinterpret_cast<uintptr_t>(logits) & 15) == 0) {
            for (int i = tid; i < vocab / 8; i += kThreads)
                reinterpret_cast<uint4 *>(staged_logits)[i] = reinterpret_cast<const uint4 *>(logits)[i];
        } else {
            for (int i = tid; i < vocab; i += kThreads) staged_logits[i] = logits[i];
        }
        __syncthreads();
        src = staged_logits;
    }
    auto logit = [&](int i) { return i == banned ? -INFINITY : sa_bf16_to_f32(src[i]); };

    int chosen;
    if (greedy) {
        float best = -INFINITY;
        int best_i = INT_MAX;
        for (int i = tid; i < vocab; i += kThreads) {
            const float v = logit(i);
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
        const float temperature = params.temperature;
        // ---- top-k: v_min, the smallest logit whose score ties the k-th largest (-inf keeps everything) ----
        float v_min = -INFINITY;
        if (params.top_k > 0 && params.top_k < vocab) {
            uint32_t prefix = 0, mask = 0;
            if (tid == 0) rank_s = params.top_k;
            for (int shift = 8; shift >= 0; shift -= 8) {
                if (tid < 256) histogram[tid] = 0;
                __syncthreads();
                // All lanes run the same trip count so the warp can aggregate equal bins: most keys share their
                // high bits, and 1024 threads incrementing one counter would serialise.
                for (int base = 0; base < vocab; base += kThreads) {
                    const int i = base + tid;
                    const uint32_t key = i < vocab ? order_key16(logit(i)) : 0u;
                    const bool counted = i < vocab && (key & mask) == prefix;
                    const uint32_t bin = counted ? (key >> shift) & 255u : 256u;
                    const uint32_t peers = __match_any_sync(0xffffffffu, bin);
                    if (counted && lane == __ffs(peers) - 1) atomicAdd(&histogram[bin], (unsigned)__popc(peers));
                }
                __syncthreads();
                if (warp == 0) {
                    // The bin holding the rank-th largest key: lane l owns bins 255-8l down to 248-8l; a prefix
                    // sum over lanes (from the top bin down) and a ballot find the lane, which walks its 8 bins.
                    unsigned count[8], lane_total = 0;
#pragma unroll
                    for (int i = 0; i < 8; ++i) lane_total += count[i] = histogram[255 - 8 * lane - i];
                    unsigned inclusive_count = lane_total;
#pragma unroll
                    for (int o = 1; o < 32; o <<= 1) {
                        const unsigned up = __shfl_up_sync(0xffffffffu, inclusive_count, o);
                        if (lane >= o) inclusive_count += up;
                    }
                    const unsigned rank = (unsigned)rank_s;
                    const unsigned ballot = __ballot_sync(0xffffffffu, inclusive_count >= rank);
                    if (lane == (ballot ? __ffs(ballot) - 1 : 31)) {
                        unsigned above = inclusive_count - lane_total;
                        int bin = 248 - 8 * lane;
                        for (int i = 0; i < 8; ++i) {
                            if (above + count[i] >= rank) {
                                bin = 255 - 8 * lane - i;
                                break;
                            }
                            above += count[i];
                        }
                        kth_bin_s = bin;
                        rank_s = (int)(rank - above);
                    }
                }
                __syncthreads();
                prefix |= (uint32_t)kth_bin_s << shift;
                mask |= 255u << shift;
                __syncthreads();  // kth_bin_s is rewritten by the next pass
            }
            if (tid == 0) {
                const float kth_score = __fdiv_rn(key16_to_float(prefix), temperature);
                uint32_t key = prefix;
                for (int guard = 0; guard < 64 && key > 0; ++guard) {  // quotient ties of neighbouring bf16 values
                    if (!(__fdiv_rn(key16_to_float(key - 1), temperature) >= kth_score)) break;
                    --key;
                }
                v_min_s = key16_to_float(key);
            }
            __syncthreads();
            v_min = v_min_s;
        }

        // ---- the largest kept score: the largest logit / T (monotone) ----
        float v_max = -INFINITY;
        for (int i = tid; i < vocab; i += kThreads) v_max = fmaxf(v_max, logit(i));
        v_max = warp_max(v_max);
        if (lane == 0) warp_f[warp] = v_max;
        __syncthreads();
        v_max = warp_f[0];
        for (int w = 1; w < kWarps; ++w) v_max = fmaxf(v_max, warp_f[w]);
        __syncthreads();  // warp_f is reused below
        const float mx = __fdiv_rn(v_max, temperature);

        auto weight = [&](int i) {
            const float v = logit(i);
            return (v == -INFINITY || v < v_min) ? 0.0f : __expf(__fdiv_rn(v, temperature) - mx);
        };

        // ---- per-thread sums over contiguous id ranges and their block-wide inclusive prefix sum ----
        const int chunk = (vocab + kThreads - 1) / kThreads;
        const int i_begin = min(vocab, tid * chunk), i_end = min(vocab, i_begin + chunk);
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
    // Stage the logits in shared memory for the top-k path when they fit (the opt-in above 48 KB is a host call, once).
    static const cudaError_t opt_in = cudaFuncSetAttribute(sample_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                           kMaxStagedVocab * 2);
    if (opt_in != cudaSuccess) (void)cudaGetLastError();
    const bool greedy = params->temperature <= 0.0f || params->top_k == 1;
    const int staged = !greedy && opt_in == cudaSuccess && vocab <= kMaxStagedVocab;
    return sa_cuda::launch_pdl("sample_kernel", &sample_kernel, dim3(1), dim3(kThreads), staged ? (size_t)vocab * 2 : 0,
                               sa_cuda::as_stream(stream), logits, vocab, history, history_len, *params, step, out_id,
                               staged);
    SA_GUARD_END
}
