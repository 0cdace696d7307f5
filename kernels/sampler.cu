// sampler.cu — one sampling step on the GPU, the same rule as sa_cpu_sample_bf16 (spec §3.5).
//
// One block of 1024 threads.
//  1. repetition ban (RepetitionAwareLogitsProcessor) from the device-side history;
//  2. greedy: first index of the maximum, read once from global memory; or
//  3. sampling: scores = logit / T (IEEE division), keep every id whose score >= the k-th largest score (ties kept),
//     weights exp(s - max), inverse CDF over the kept ids in id order with sa_uniform_draw(seed, *step) — the CPU's
//     draw. Division by T is monotone, so the k-th largest score is (k-th largest logit) / T, and "score >= k-th
//     score" is "logit >= v_min", the smallest bf16 value with the same quotient (found by stepping down from the
//     k-th logit; almost always itself);
//  4. thread 0 writes *out_id, appends it to history and bumps *history_len and *step. If every logit is -inf or
//     NaN (the CPU reference returns an error), *out_id = -1 and history, length and step are left unchanged.
// Only the order of the fp32 sums differs from the CPU, which can move a draw that falls within rounding of a
// bucket boundary to the neighbouring id.
//
// Sampling paths. The logits are first copied into shared memory (16-byte loads, 150 KB for Step1's vocabulary;
// padded to a multiple of 8 with -inf, the banned id written as -inf) and their maximum taken on the way.
//  fast (v6; top-k with 0 < k < vocab, staged): two more passes over the staged logits, no atomics on the common
//    path. (a) a histogram of the kWindow bf16 values just below the maximum (bin d = key(max) - key(logit); the
//    logits further down only cost a compare) gives the exact k-th largest logit; (b) each warp walks its own
//    contiguous range of ids and appends the kept ones, with their weights, to its own list (ballot + popc, so the
//    lists are in id order); (c) one warp picks: a prefix sum over the 32 list sums finds the list, a scan in it
//    the id.
//  fallback (v5): when the k-th logit lies outside the window (k large or many ties far down), a list overflows
//    (more than kListCap kept ids in one warp's range), k = 0 / k >= vocab (no top-k), or the vocabulary does not
//    fit in shared memory: the k-th logit by a 2-pass radix select on 16-bit keys (unless the window found it), then
//    per-thread sums over contiguous id ranges and a block-wide prefix sum find the crossing thread.
#include <cfloat>
#include <climits>

#include "cuda_common.cuh"

namespace {

constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;
constexpr int kMaxStagedVocab = 96 * 1024;  // 192 KB of bf16 logits in dynamic shared memory
// Build-time knobs for sweeps (tests/gpu/topk-run.sh VARIANTS); the defaults are the measured choice.
#ifndef SA_SAMPLER_WINDOW
#define SA_SAMPLER_WINDOW 256
#endif
#ifndef SA_SAMPLER_STAGE_BATCH
#define SA_SAMPLER_STAGE_BATCH 5
#endif
constexpr int kWindow = SA_SAMPLER_WINDOW;  // fast path: bf16 values (key steps) below the maximum that are ranked
static_assert(kWindow % 32 == 0, "window: whole bins per lane");
constexpr int kListCap = 64;                // fast path: kept ids per warp (2048 in all)
constexpr uint16_t kNegInfBf16 = 0xff80u;
constexpr uint32_t kNegInfKey = 0x007fu;    // order_key16(-inf): NaNs map outside [kNegInfKey, order_key16(+inf)]
constexpr unsigned kFull = 0xffffffffu;

// Order-preserving map of a bf16-representable float to a 16-bit key (larger value -> larger key).
__device__ __forceinline__ uint32_t order_key16(float v) {
    const uint32_t b = __float_as_uint(v) >> 16;
    return (b & 0x8000u) ? (~b & 0xffffu) : (b | 0x8000u);
}
__device__ __forceinline__ float key16_to_float(uint32_t key) {
    const uint32_t b = (key & 0x8000u) ? (key & 0x7fffu) : (~key & 0xffffu);
    return __uint_as_float(b << 16);
}

// The 8 logits of one 16-byte vector, in id order.
__device__ __forceinline__ void unpack8(const uint4 q, float v[8]) {
    v[0] = bf16_lo(q.x), v[1] = bf16_hi(q.x), v[2] = bf16_lo(q.y), v[3] = bf16_hi(q.y);
    v[4] = bf16_lo(q.z), v[5] = bf16_hi(q.z), v[6] = bf16_lo(q.w), v[7] = bf16_hi(q.w);
}

// Inclusive prefix sum over the lanes of a warp.
template <class T>
__device__ __forceinline__ T warp_inclusive_scan(T v, int lane) {
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        const T up = __shfl_up_sync(kFull, v, o);
        if (lane >= o) v += up;
    }
    return v;
}

// The smallest bf16 value whose quotient by T ties the quotient of the k-th largest logit (its key): every logit
// >= it is kept. Neighbouring bf16 values can round to the same quotient.
__device__ float lowest_tied_value(uint32_t kth_key, float temperature) {
    const float kth_score = __fdiv_rn(key16_to_float(kth_key), temperature);
    uint32_t key = kth_key;
    for (int guard = 0; guard < 64 && key > 0; ++guard) {
        if (!(__fdiv_rn(key16_to_float(key - 1), temperature) >= kth_score)) break;
        --key;
    }
    return key16_to_float(key);
}

struct SamplerShared {
    int banned, kth_bin, rank, chosen, last_nonzero, list_overflow;
    float v_min;
    unsigned histogram[kWindow > 256 ? kWindow : 256];  // window bins, or the radix passes' 256
    float warp_f[kWarps];
    int warp_i[kWarps];
    float inclusive[kThreads];
    int list_id[kWarps][kListCap];     // fast path: kept ids of each warp's range, in id order
    float list_w[kWarps][kListCap];    // and their weights exp(score - max)
};

__device__ __forceinline__ float block_max(float v, SamplerShared &sh, int lane, int warp) {
    v = warp_max(v);
    if (lane == 0) sh.warp_f[warp] = v;
    __syncthreads();
    v = sh.warp_f[0];
    for (int w = 1; w < kWarps; ++w) v = fmaxf(v, sh.warp_f[w]);
    __syncthreads();  // warp_f is reused
    return v;
}

// The repetition ban (RepetitionAwareLogitsProcessor): the last id, if it occurs more than 10% of the last `window`
// ids, else -1. Lanes read the window in parallel; called by one whole warp.
__device__ int repetition_ban(const int32_t *history, int hist_len, int window, int vocab, int lane) {
    if (window <= 0 || hist_len < window) return -1;
    const int last = history[hist_len - 1];
    int count = 0;
    for (int i = hist_len - window + lane; i < hist_len; i += 32) count += history[i] == last;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) count += __shfl_xor_sync(kFull, count, o);
    return (__fdiv_rn((float)count, (float)window) > 0.1f && last >= 0 && last < vocab) ? last : -1;
}

// Logits in 16-byte vectors when the vocabulary is a whole number of them and the pointer is aligned.
__device__ __forceinline__ bool vector_staging(const uint16_t *logits, int vocab) {
    return (vocab & 7) == 0 && (reinterpret_cast<uintptr_t>(logits) & 15) == 0;
}

// Copies the logits into shared memory (padded to a multiple of 8 with -inf) and returns this thread's maximum of
// them (fmaxf: NaN never wins). Loads go out kStageBatch at a time, so a thread waits ~2 L2 round trips, not 9.
// Thread t stages vectors t, t + kThreads, ... (elements, on the unaligned path).
__device__ float stage_logits(const uint16_t *__restrict__ logits, int vocab, uint16_t *staged, int tid) {
    constexpr int kStageBatch = SA_SAMPLER_STAGE_BATCH;
    const int n_vec = (vocab + 7) >> 3;
    float m = -INFINITY;
    if (vector_staging(logits, vocab)) {
        for (int i0 = tid; i0 < n_vec; i0 += kStageBatch * kThreads) {
            uint4 q[kStageBatch];
#pragma unroll
            for (int b = 0; b < kStageBatch; ++b)
                if (i0 + b * kThreads < n_vec) q[b] = reinterpret_cast<const uint4 *>(logits)[i0 + b * kThreads];
#pragma unroll
            for (int b = 0; b < kStageBatch; ++b) {
                if (i0 + b * kThreads >= n_vec) break;
                reinterpret_cast<uint4 *>(staged)[i0 + b * kThreads] = q[b];
                float v[8];
                unpack8(q[b], v);
#pragma unroll
                for (int j = 0; j < 8; ++j) m = fmaxf(m, v[j]);
            }
        }
    } else {
        for (int i = tid; i < 8 * n_vec; i += kThreads) {
            const uint16_t b = i < vocab ? logits[i] : kNegInfBf16;
            staged[i] = b;
            m = fmaxf(m, sa_bf16_to_f32(b));
        }
    }
    return m;
}

// Writes the banned id as -inf into the staged logits; the thread that staged it takes its maximum again. Returns
// this thread's maximum.
__device__ float ban_staged(const uint16_t *logits, int vocab, int banned, uint16_t *staged, int tid, float m) {
    const bool vectors = vector_staging(logits, vocab);
    const int unit = vectors ? 8 : 1;  // elements per staging unit
    if (banned < 0 || (banned / unit) % kThreads != tid) return m;
    staged[banned] = kNegInfBf16;
    m = -INFINITY;
    for (int u = tid; u < (vocab + unit - 1) / unit; u += kThreads)
        for (int j = 0; j < unit; ++j) m = fmaxf(m, sa_bf16_to_f32(staged[u * unit + j]));
    return m;
}

// Fast path (a): the key of the k-th largest staged logit, from a histogram of the kWindow keys just below the
// maximum's; -1 when fewer than k logits lie in the window. Every thread gets the answer.
__device__ int window_kth_key(const uint16_t *staged, int vocab, float v_max, int k, SamplerShared &sh, int tid,
                              int lane, int warp) {
    const uint32_t key_max = order_key16(v_max);
    const int bins = min(kWindow, (int)(key_max - kNegInfKey) + 1);  // never below -inf's key
    const float v_low = key16_to_float(key_max - (uint32_t)bins + 1u);
    for (int i = tid; i < kWindow; i += kThreads) sh.histogram[i] = 0;
    __syncthreads();
    // Equal neighbours are counted as one run, so even all-equal logits cost one atomic per thread, not per logit.
    uint32_t run_bin = 0, run_count = 0;
    auto count = [&](float v) {
        if (v >= v_low) {  // false for NaN
            const uint32_t bin = key_max - order_key16(v);
            if (bin >= (uint32_t)bins) return;  // -0.0 when the window ends at +0.0 (equal floats, keys apart)
            if (bin != run_bin) {
                if (run_count) atomicAdd(&sh.histogram[run_bin], run_count);
                run_bin = bin, run_count = 0;
            }
            ++run_count;
        }
    };
    const int n_vec = (vocab + 7) >> 3;
    for (int i = tid; i < n_vec; i += kThreads) {
        float v[8];
        unpack8(reinterpret_cast<const uint4 *>(staged)[i], v);
#pragma unroll
        for (int j = 0; j < 8; ++j) count(v[j]);
    }
    if (run_count) atomicAdd(&sh.histogram[run_bin], run_count);
    __syncthreads();
    if (warp == 0) {
        // Lane l owns bins kPerLane*l .. kPerLane*(l+1)-1 (largest logits first); a prefix sum over lanes and a
        // ballot find the lane holding the k-th, which walks its bins.
        constexpr int kPerLane = kWindow / 32;
        unsigned counts[kPerLane], lane_total = 0;
#pragma unroll
        for (int i = 0; i < kPerLane; ++i) lane_total += counts[i] = sh.histogram[kPerLane * lane + i];
        const unsigned inclusive = warp_inclusive_scan(lane_total, lane);
        const unsigned ballot = __ballot_sync(kFull, inclusive >= (unsigned)k);
        if (ballot == 0) {
            if (lane == 0) sh.kth_bin = -1;
        } else if (lane == __ffs(ballot) - 1) {
            unsigned above = inclusive - lane_total;
            int bin = kPerLane * lane + kPerLane - 1;
            for (int i = 0; i < kPerLane; ++i) {
                if (above + counts[i] >= (unsigned)k) {
                    bin = kPerLane * lane + i;
                    break;
                }
                above += counts[i];
            }
            sh.kth_bin = bin;
        }
    }
    __syncthreads();
    const int bin = sh.kth_bin;
    __syncthreads();  // kth_bin may be rewritten by the fallback
    return bin < 0 ? -1 : (int)(key_max - (uint32_t)bin);
}

// Fast path (b, c): warp w appends the kept ids of its contiguous range of 16-byte vectors, with their weights, to
// its list (in id order: a 256-id step at a time, lane-major, placed by a shuffle prefix sum over the lanes); then warp 0 draws. Returns
// false, having drawn nothing, when some list overflowed.
__device__ bool draw_from_lists(const uint16_t *staged, int vocab, float v_min, float temperature, float mx,
                                float target_u, SamplerShared &sh, int lane, int warp) {
    const int n_vec = (vocab + 7) >> 3;
    const int per_warp = (n_vec + kWarps - 1) / kWarps;
    const int begin = warp * per_warp, end = min(n_vec, begin + per_warp);
    const float threshold = fmaxf(v_min, -FLT_MAX);  // -inf is never kept (its weight is 0)
    int n = 0;
    for (int base = begin; base < end; base += 32) {  // the same trip count on every lane
        const int i = base + lane;
        float v[8];
        unsigned mask = 0;
        if (i < end) {
            unpack8(reinterpret_cast<const uint4 *>(staged)[i], v);
#pragma unroll
            for (int j = 0; j < 8; ++j) mask |= (v[j] >= threshold ? 1u : 0u) << j;
        }
        if (!__any_sync(kFull, mask != 0)) continue;  // the common case: nothing kept in these 256 ids
        float w[8];
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            w[j] = (mask >> j & 1u) ? __expf(__fdiv_rn(v[j], temperature) - mx) : 0.0f;
            if (w[j] == 0.0f) mask &= ~(1u << j);  // an underflowed weight is skipped, as on the CPU
        }
        const int mine = __popc(mask);
        const int inclusive = warp_inclusive_scan(mine, lane);
        const int step_total = __shfl_sync(kFull, inclusive, 31);
        if (n + step_total <= kListCap) {
            int pos = n + inclusive - mine;
#pragma unroll
            for (int j = 0; j < 8; ++j)
                if (mask >> j & 1u) sh.list_id[warp][pos] = 8 * i + j, sh.list_w[warp][pos] = w[j], ++pos;
        }
        n += step_total;
    }
    float sum = 0.0f;
    for (int j = lane; j < min(n, kListCap); j += 32) sum += sh.list_w[warp][j];
    sum = warp_sum(sum);
    if (lane == 0) {
        sh.warp_f[warp] = sum, sh.warp_i[warp] = n;
        if (n > kListCap) sh.list_overflow = 1;
    }
    __syncthreads();
    if (sh.list_overflow) return false;
    if (warp == 0) {
        // The list whose running sum first exceeds u * total, then the id inside it.
        const float s = sh.warp_f[lane];
        const float inclusive = warp_inclusive_scan(s, lane);
        const float target = target_u * __shfl_sync(kFull, inclusive, 31);
        const unsigned cross = __ballot_sync(kFull, inclusive > target);
        int pick;
        if (cross == 0) {  // rounding left no crossing: the last kept id (the maximum is kept, so there is one)
            const int last = 31 - __clz(__ballot_sync(kFull, sh.warp_i[lane] > 0));
            pick = sh.list_id[last][sh.warp_i[last] - 1];
        } else {
            const int c = __ffs(cross) - 1, n_c = sh.warp_i[c];
            const float exclusive = __shfl_up_sync(kFull, inclusive, 1);
            float run = __shfl_sync(kFull, lane == 0 ? 0.0f : exclusive, c);
            pick = sh.list_id[c][n_c - 1];
            for (int base = 0; base < n_c; base += 32) {
                const int j = base + lane;
                const float r = run + warp_inclusive_scan(j < n_c ? sh.list_w[c][j] : 0.0f, lane);
                const unsigned hit = __ballot_sync(kFull, j < n_c && r > target);
                if (hit) {
                    pick = sh.list_id[c][base + __ffs(hit) - 1];
                    break;
                }
                run = __shfl_sync(kFull, r, 31);
            }
        }
        if (lane == 0) sh.chosen = pick;
    }
    __syncthreads();
    return true;
}

// Fallback: the key of the k-th largest logit by an exact 2-pass radix select on 16-bit keys.
template <class Logit>
__device__ uint32_t radix_kth_key(const Logit &logit, int vocab, int k, SamplerShared &sh, int tid, int lane,
                                  int warp) {
    uint32_t prefix = 0, mask = 0;
    if (tid == 0) sh.rank = k;
    for (int shift = 8; shift >= 0; shift -= 8) {
        if (tid < 256) sh.histogram[tid] = 0;
        __syncthreads();
        // All lanes run the same trip count so the warp can aggregate equal bins: most keys share their
        // high bits, and 1024 threads incrementing one counter would serialise.
        for (int base = 0; base < vocab; base += kThreads) {
            const int i = base + tid;
            const uint32_t key = i < vocab ? order_key16(logit(i)) : 0u;
            const bool counted = i < vocab && (key & mask) == prefix;
            const uint32_t bin = counted ? (key >> shift) & 255u : 256u;
            const uint32_t peers = __match_any_sync(kFull, bin);
            if (counted && lane == __ffs(peers) - 1) atomicAdd(&sh.histogram[bin], (unsigned)__popc(peers));
        }
        __syncthreads();
        if (warp == 0) {
            // The bin holding the rank-th largest key: lane l owns bins 255-8l down to 248-8l; a prefix
            // sum over lanes (from the top bin down) and a ballot find the lane, which walks its 8 bins.
            unsigned count[8], lane_total = 0;
#pragma unroll
            for (int i = 0; i < 8; ++i) lane_total += count[i] = sh.histogram[255 - 8 * lane - i];
            const unsigned inclusive_count = warp_inclusive_scan(lane_total, lane);
            const unsigned rank = (unsigned)sh.rank;
            const unsigned ballot = __ballot_sync(kFull, inclusive_count >= rank);
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
                sh.kth_bin = bin;
                sh.rank = (int)(rank - above);
            }
        }
        __syncthreads();
        prefix |= (uint32_t)sh.kth_bin << shift;
        mask |= 255u << shift;
        __syncthreads();  // kth_bin is rewritten by the next pass
    }
    return prefix;
}

// Fallback draw: per-thread sums over contiguous id ranges, their block-wide prefix sum, and the crossing thread
// re-walks its range. Weight 0 for -inf and for logits below v_min.
template <class Logit>
__device__ int draw_by_ranges(const Logit &logit, int vocab, float v_min, float temperature, float mx,
                              float target_u, SamplerShared &sh, int tid, int lane, int warp) {
    auto weight = [&](int i) {
        const float v = logit(i);
        return (v == -INFINITY || v < v_min) ? 0.0f : __expf(__fdiv_rn(v, temperature) - mx);
    };
    const int chunk = (vocab + kThreads - 1) / kThreads;
    const int i_begin = min(vocab, tid * chunk), i_end = min(vocab, i_begin + chunk);
    float local = 0.0f;
    int last_nonzero = -1;
    for (int i = i_begin; i < i_end; ++i) {
        const float wv = weight(i);
        if (wv != 0.0f) local += wv, last_nonzero = i;
    }
    if (last_nonzero >= 0) atomicMax(&sh.last_nonzero, last_nonzero);
    float scan = warp_inclusive_scan(local, lane);
    if (lane == 31) sh.warp_f[warp] = scan;
    __syncthreads();
    if (warp == 0) sh.warp_f[lane] = warp_inclusive_scan(sh.warp_f[lane], lane);  // inclusive over warps
    __syncthreads();
    if (warp > 0) scan += sh.warp_f[warp - 1];
    sh.inclusive[tid] = scan;
    __syncthreads();

    // The first id whose running sum exceeds u * total.
    const float target = target_u * sh.inclusive[kThreads - 1];
    const float before = tid == 0 ? 0.0f : sh.inclusive[tid - 1];
    if (sh.inclusive[tid] > target && before <= target) {
        float run = before;
        int pick = -1;
        for (int i = i_begin; i < i_end; ++i) {
            const float wv = weight(i);
            if (wv == 0.0f) continue;
            run += wv;
            pick = i;
            if (run > target) break;
        }
        sh.chosen = pick;
    }
    __syncthreads();
    return sh.chosen >= 0 ? sh.chosen : sh.last_nonzero;  // rounding left no crossing: the last live id
}

__global__ void __launch_bounds__(kThreads)
    sample_kernel(const uint16_t *__restrict__ logits, int vocab, int32_t *history, int32_t *history_len,
                  sa_sample_params params, uint64_t *step, int32_t *out_id, int staged) {
    extern __shared__ __align__(16) uint16_t staged_logits[];  // [vocab rounded up to 8] when staged
    __shared__ SamplerShared sh;
    pdl_launch_dependents();
    pdl_wait();  // logits, history and the counters come from earlier kernels

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int hist_len = *history_len;
    const uint64_t draw_step = *step;
    const bool greedy = params.temperature <= 0.0f || params.top_k == 1;

    if (warp == 0) {
        const int ban = repetition_ban(history, hist_len, params.repetition_window, vocab, lane);
        if (lane == 0) sh.banned = ban, sh.chosen = -1, sh.last_nonzero = -1, sh.list_overflow = 0;
    }
    // The staging loads go out while warp 0 reads the history; the ban is applied after the barrier.
    float staged_max = -INFINITY;
    if (staged) staged_max = stage_logits(logits, vocab, staged_logits, tid);
    __syncthreads();
    const int banned = sh.banned;

    int chosen;
    if (greedy) {  // reads the logits once, straight from global memory
        float best = -INFINITY;
        int best_i = INT_MAX;
        for (int i = tid; i < vocab; i += kThreads) {
            const float v = i == banned ? -INFINITY : sa_bf16_to_f32(logits[i]);
            if (v > best || (v == best && i < best_i)) best = v, best_i = i;  // NaN never wins
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            const float ov = __shfl_xor_sync(kFull, best, o);
            const int oi = __shfl_xor_sync(kFull, best_i, o);
            if (ov > best || (ov == best && oi < best_i)) best = ov, best_i = oi;
        }
        if (lane == 0) sh.warp_f[warp] = best, sh.warp_i[warp] = best_i;
        __syncthreads();
        if (tid == 0) {
            for (int w = 1; w < kWarps; ++w)
                if (sh.warp_f[w] > best || (sh.warp_f[w] == best && sh.warp_i[w] < best_i))
                    best = sh.warp_f[w], best_i = sh.warp_i[w];
            sh.chosen = best_i == INT_MAX ? 0 : best_i;  // all NaN: id 0, as the CPU loop would return
        }
        __syncthreads();
        chosen = sh.chosen;
    } else {
        const float temperature = params.temperature;
        const uint16_t *src = staged ? staged_logits : logits;
        const int staged_banned = staged ? -1 : banned;  // staging already wrote the banned id as -inf
        auto logit = [&](int i) { return i == staged_banned ? -INFINITY : sa_bf16_to_f32(src[i]); };

        // The largest logit (fmaxf: NaN never wins), taken on the way into shared memory when staged.
        float v_max = staged_max;
        if (staged) {
            v_max = ban_staged(logits, vocab, banned, staged_logits, tid, v_max);
        } else {
            for (int i = tid; i < vocab; i += kThreads) v_max = fmaxf(v_max, logit(i));
        }
        v_max = block_max(v_max, sh, lane, warp);  // its barrier also publishes the banned id's -inf

        if (v_max == -INFINITY) {
            chosen = -1;  // every logit -inf or NaN
        } else {
            const float mx = __fdiv_rn(v_max, temperature);  // the largest kept score
            const float target_u = sa_uniform_draw(params.seed, draw_step);
            const bool top_k = params.top_k > 0 && params.top_k < vocab;
            int kth_key = -1;  // unknown
            bool drawn = false;
            if (top_k && staged) {
                kth_key = window_kth_key(staged_logits, vocab, v_max, params.top_k, sh, tid, lane, warp);
                if (kth_key >= 0) {
                    const float v_min = lowest_tied_value((uint32_t)kth_key, temperature);
                    drawn = draw_from_lists(staged_logits, vocab, v_min, temperature, mx, target_u, sh, lane, warp);
                }
            }
            if (drawn) {
                chosen = sh.chosen;
            } else {
                if (top_k && kth_key < 0)
                    kth_key = (int)radix_kth_key(logit, vocab, params.top_k, sh, tid, lane, warp);
                const float v_min = top_k ? lowest_tied_value((uint32_t)kth_key, temperature) : -INFINITY;
                chosen = draw_by_ranges(logit, vocab, v_min, temperature, mx, target_u, sh, tid, lane, warp);
            }
        }
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
    // Stage the logits in shared memory for the sampling paths when they fit (the opt-in above 48 KB is a host call,
    // once). The staged copy is padded to a whole number of 16-byte vectors.
    static const cudaError_t opt_in = cudaFuncSetAttribute(sample_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                           kMaxStagedVocab * 2);
    if (opt_in != cudaSuccess) (void)cudaGetLastError();
    const bool greedy = params->temperature <= 0.0f || params->top_k == 1;
    const int staged = !greedy && opt_in == cudaSuccess && vocab <= kMaxStagedVocab;
    const size_t staged_bytes = staged ? (size_t)(vocab + 7) / 8 * 16 : 0;
    return sa_cuda::launch_pdl("sample_kernel", &sample_kernel, dim3(1), dim3(kThreads), staged_bytes,
                               sa_cuda::as_stream(stream), logits, vocab, history, history_len, *params, step, out_id,
                               staged);
    SA_GUARD_END
}
