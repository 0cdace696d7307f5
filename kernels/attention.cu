// attention.cu — KV-cache append plus causal sqrt-ALiBi GQA attention (spec §1.3), decode and prefill.
//
// The sequence length lives in device memory (*seq_len, so a captured graph replays for every position); the host
// never reads it. Hence nothing launched here depends on it: grids are sized from the shape and max_ctx only,
// and blocks whose key range turns out empty on the device return at once (the combine kernel skips them).
//
//  1. attention_kernel: one block = one KV group x a few new tokens x one split of the key range. Its queries are
//     all (token, head) pairs of that group (12 heads in Step1), so every K/V byte is read once per block.
//     Keys stream through shared memory in tiles of 32 with an online (flash) softmax; scores, softmax and the
//     accumulators are fp32. Decode (1 token) uses up to 128 splits of the sequence (flash-decoding) so that
//     4 groups still fill the GPU; each block covers a contiguous share of whole tiles, and fetches the next tile
//     into registers while it computes on the current one.
//     The blocks of split 0 also append the new tokens' k, v rows to the caches at pos0 = *seq_len - n_new;
//     every block takes keys at positions >= pos0 from qkv itself, so no second kernel or ordering is needed.
//  2. attention_combine_kernel merges the splits' (max, sum, unnormalised output) by exp(m_s - M) weights.
// With one split (long prefill) the attention kernel normalises and writes bf16 itself.
//
// Split partials go to one module-level scratch buffer (8 MB; the API has no workspace argument and the functions
// must not allocate). So calls must be serialised — one stream, as the decode graph is — never concurrent.
// A *seq_len outside [n_new, max_ctx] cannot be reported from inside a graph: the cache is left untouched and
// the output is filled with NaN so the failure is loud downstream.
#include <algorithm>
#include <cmath>
#include <mutex>

#include "cuda_common.cuh"

namespace {

constexpr int kThreads = 128;             // 4 warps
constexpr int kKeyTile = 32;              // keys per tile: one per lane in the score phase
constexpr int kMaxQueries = 64;           // (token, head) queries per block
constexpr int kMaxQueryElems = 4096;      // queries x head_dim per block: 32 fp32 accumulators per thread
constexpr int kMaxSplits = 128;         // the combine kernel handles up to 128 (four per lane)
constexpr int kTargetBlocks = 4 * 132;    // enough blocks for four per SM on an H100 (short blocks, latency-bound)
constexpr int64_t kScratchFloats = 1 << 21;
constexpr uint16_t kBf16NaN = 0x7fc0;

__device__ float g_attention_scratch[kScratchFloats];

struct AttnArgs {
    const uint16_t *qkv;
    uint16_t *k_cache;
    uint16_t *v_cache;
    const int32_t *seq_len;
    const float *slopes;
    uint16_t *out;
    float *partial_out;  // [splits][n_new][n_heads][D], then partial_ml [splits][n_new][n_heads][2]
    int n_heads, n_kv, n_new, max_ctx;
    int tokens_per_block, n_splits;
    float scale;
};

__device__ __forceinline__ bool seq_len_valid(int len, int n_new, int max_ctx) {
    return len - n_new >= 0 && len <= max_ctx;
}

// Keys [begin, end) of one split: the causal range [0, causal_end) of a block's last token, cut into n_splits
// shares of whole tiles. The combine kernel recomputes it to skip the splits that saw no key.
struct KeyRange {
    int begin, end, active_splits;
};
__device__ __forceinline__ KeyRange split_keys(int causal_end, int n_splits, int split) {
    const int tiles = (causal_end + kKeyTile - 1) / kKeyTile;
    const int tiles_per_split = (tiles + n_splits - 1) / n_splits;
    KeyRange r;
    r.begin = split * tiles_per_split * kKeyTile;
    r.end = min(causal_end, r.begin + tiles_per_split * kKeyTile);
    r.active_splits = (tiles + tiles_per_split - 1) / tiles_per_split;
    return r;
}

// kR = accumulators per thread (queries x D / 128, rounded up to 8 or 32).
template <int D, int kR>
__global__ void __launch_bounds__(kThreads) attention_kernel(AttnArgs a) {
    pdl_launch_dependents();
    pdl_wait();  // qkv, the caches and *seq_len come from earlier kernels
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int heads_per_group = a.n_heads / a.n_kv;
    const int group = blockIdx.y, split = blockIdx.z;
    const int t0 = blockIdx.x * a.tokens_per_block;
    const int n_tok = min(a.tokens_per_block, a.n_new - t0);
    const int n_q = n_tok * heads_per_group;  // query q = token (t0 + q / hpg), head group*hpg + q % hpg
    const int len = *a.seq_len, pos0 = len - a.n_new;
    const int qkv_row = (a.n_heads + 2 * a.n_kv) * D, kv_width = a.n_kv * D, out_row = a.n_heads * D;

    if (!seq_len_valid(len, a.n_new, a.max_ctx)) {
        if (split == 0)
            for (int e = tid; e < n_q * D; e += kThreads) {
                const int q = e / D, d = e % D;
                const int tok = t0 + q / heads_per_group, h = group * heads_per_group + q % heads_per_group;
                a.out[(int64_t)tok * out_row + h * D + d] = kBf16NaN;
            }
        return;
    }

    // Append this block's new tokens (their k, v slices of this group) to the caches; split 0 does it. Every
    // block reads keys at positions >= pos0 straight from qkv, so no block waits for these writes.
    if (split == 0) {
        const int chunks = n_tok * (D / 8);
        for (int e = tid; e < 2 * chunks; e += kThreads) {
            const int is_v = e >= chunks, ti = (e % chunks) / (D / 8), c = e % (D / 8), tok = t0 + ti;
            const uint4 val = reinterpret_cast<const uint4 *>(a.qkv + (int64_t)tok * qkv_row + a.n_heads * D +
                                                              is_v * kv_width + group * D)[c];
            uint16_t *cache = is_v ? a.v_cache : a.k_cache;
            reinterpret_cast<uint4 *>(cache + (int64_t)(pos0 + tok) * kv_width + group * D)[c] = val;
        }
    }

    const KeyRange keys = split_keys(pos0 + t0 + n_tok, a.n_splits, split);
    if (keys.begin >= keys.end) return;  // nothing to do; the combine kernel skips this split
    const int key_begin = keys.begin, key_end = keys.end;

    __shared__ uint32_t q_s[kMaxQueries][D / 2];      // bf16 pairs
    __shared__ uint32_t k_s[kKeyTile][D / 2 + 1];     // +1 word: lanes reading different keys hit different banks
    __shared__ __align__(16) uint16_t v_s[kKeyTile][D];
    __shared__ float p_s[kMaxQueries][kKeyTile];
    __shared__ float m_s[kMaxQueries], l_s[kMaxQueries], alpha_s[kMaxQueries];

    for (int e = tid; e < n_q * (D / 2); e += kThreads) {
        const int q = e / (D / 2), c = e % (D / 2);
        const int tok = t0 + q / heads_per_group, h = group * heads_per_group + q % heads_per_group;
        q_s[q][c] = reinterpret_cast<const uint32_t *>(a.qkv + (int64_t)tok * qkv_row + h * D)[c];
    }
    for (int q = tid; q < n_q; q += kThreads) {
        m_s[q] = -INFINITY;
        l_s[q] = 0.0f;
    }
    float acc[kR];
#pragma unroll
    for (int r = 0; r < kR; ++r) acc[r] = 0.0f;
    __syncthreads();

    // K/V tiles are fetched into registers one tile ahead, so the next tile's loads overlap this tile's math.
    constexpr int kChunks = kKeyTile * (D / 8);  // 16-byte chunks per K (or V) tile; a multiple of kThreads
    constexpr int kPerThread = kChunks / kThreads;
    uint4 k_next[kPerThread], v_next[kPerThread];
    auto fetch = [&](int j0) {
#pragma unroll
        for (int i = 0; i < kPerThread; ++i) {
            const int e = tid + i * kThreads, r = e / (D / 8), c = e % (D / 8), j = j0 + r;
            // Rows past key_end are zero so that a zero probability never meets a garbage (NaN) value.
            k_next[i] = v_next[i] = make_uint4(0, 0, 0, 0);
            if (j < key_end) {
                // Old keys from the cache, this call's new keys from qkv (the cache copy may not be written yet).
                const uint16_t *k_src = j < pos0 ? a.k_cache + (int64_t)j * kv_width
                                                 : a.qkv + (int64_t)(j - pos0) * qkv_row + a.n_heads * D;
                const uint16_t *v_src = j < pos0 ? a.v_cache + (int64_t)j * kv_width : k_src + kv_width;
                k_next[i] = reinterpret_cast<const uint4 *>(k_src + group * D)[c];
                v_next[i] = reinterpret_cast<const uint4 *>(v_src + group * D)[c];
            }
        }
    };
    if (key_begin < key_end) fetch(key_begin);

    for (int j0 = key_begin; j0 < key_end; j0 += kKeyTile) {
#pragma unroll
        for (int i = 0; i < kPerThread; ++i) {
            const int e = tid + i * kThreads, r = e / (D / 8), c = e % (D / 8);
            k_s[r][4 * c + 0] = k_next[i].x;
            k_s[r][4 * c + 1] = k_next[i].y;
            k_s[r][4 * c + 2] = k_next[i].z;
            k_s[r][4 * c + 3] = k_next[i].w;
            *reinterpret_cast<uint4 *>(&v_s[r][8 * c]) = v_next[i];
        }
        __syncthreads();
        if (j0 + kKeyTile < key_end) fetch(j0 + kKeyTile);

        // Scores and the online-softmax update: lane = key, warp w takes queries w, w+4, ...
        {
            const int j = j0 + lane;
            uint32_t k_row[D / 2];
#pragma unroll
            for (int c = 0; c < D / 2; ++c) k_row[c] = k_s[lane][c];
            for (int q = warp; q < n_q; q += kThreads / 32) {
                const int p = pos0 + t0 + q / heads_per_group;  // absolute position of the query token
                const int h = group * heads_per_group + q % heads_per_group;
                float dot = 0.0f;
#pragma unroll
                for (int c = 0; c < D / 2; ++c) {
                    const uint32_t qw = q_s[q][c];
                    dot = fmaf(bf16_lo(qw), bf16_lo(k_row[c]), dot);
                    dot = fmaf(bf16_hi(qw), bf16_hi(k_row[c]), dot);
                }
                const float score = (j < key_end && j <= p)
                                        ? dot * a.scale - a.slopes[h] * sqrtf((float)(p - j))
                                        : -INFINITY;
                const float m_old = m_s[q];
                const float m_new = fmaxf(m_old, warp_max(score));
                const float m_use = m_new == -INFINITY ? 0.0f : m_new;  // all masked so far: keep exp() finite
                const float prob = __expf(score - m_use);
                const float prob_sum = warp_sum(prob);
                p_s[q][lane] = prob;
                if (lane == 0) {
                    const float alpha = __expf(m_old - m_use);
                    alpha_s[q] = alpha;
                    l_s[q] = l_s[q] * alpha + prob_sum;
                    m_s[q] = m_new;
                }
            }
        }
        __syncthreads();

        // acc[q][d] = acc[q][d] * alpha_q + sum_j p[q][j] v[j][d]; thread owns elements tid + 128 r.
#pragma unroll
        for (int r = 0; r < kR; ++r) {
            const int e = tid + kThreads * r;
            if (e < n_q * D) {
                const int q = e / D, d = e % D;
                float s = acc[r] * alpha_s[q];
#pragma unroll 8
                for (int jj = 0; jj < kKeyTile; ++jj) s = fmaf(p_s[q][jj], sa_bf16_to_f32(v_s[jj][d]), s);
                acc[r] = s;
            }
        }
        __syncthreads();
    }

    if (a.n_splits == 1) {
#pragma unroll
        for (int r = 0; r < kR; ++r) {
            const int e = tid + kThreads * r;
            if (e < n_q * D) {
                const int q = e / D, d = e % D;
                const int tok = t0 + q / heads_per_group, h = group * heads_per_group + q % heads_per_group;
                a.out[(int64_t)tok * out_row + h * D + d] = sa_f32_to_bf16(__fdiv_rn(acc[r], l_s[q]));
            }
        }
    } else {
        const int64_t split_base = (int64_t)split * a.n_new * a.n_heads;
        float *partial_ml = a.partial_out + (int64_t)a.n_splits * a.n_new * a.n_heads * D;
#pragma unroll
        for (int r = 0; r < kR; ++r) {
            const int e = tid + kThreads * r;
            if (e < n_q * D) {
                const int q = e / D, d = e % D;
                const int tok = t0 + q / heads_per_group, h = group * heads_per_group + q % heads_per_group;
                a.partial_out[(split_base + (int64_t)tok * a.n_heads + h) * D + d] = acc[r];
            }
        }
        for (int q = tid; q < n_q; q += kThreads) {
            const int tok = t0 + q / heads_per_group, h = group * heads_per_group + q % heads_per_group;
            partial_ml[(split_base + (int64_t)tok * a.n_heads + h) * 2 + 0] = m_s[q];
            partial_ml[(split_base + (int64_t)tok * a.n_heads + h) * 2 + 1] = l_s[q];
        }
    }
}

// One block per (token, head), one thread per output element. Warp 0 turns the splits' (max, sum) pairs into
// weights exp(m_s - M) in shared memory; then every thread sums its element over the splits with independent
// loads (unrolled, so they are in flight together rather than one L2 round trip per split).
__global__ void attention_combine_kernel(AttnArgs a, int head_dim) {
    pdl_launch_dependents();
    pdl_wait();
    __shared__ float weight_s[kMaxSplits];
    __shared__ float sum_s;
    const int tok = blockIdx.x / a.n_heads, h = blockIdx.x % a.n_heads, d = threadIdx.x;
    uint16_t *dst = a.out + (int64_t)tok * a.n_heads * head_dim + h * head_dim + d;
    if (!seq_len_valid(*a.seq_len, a.n_new, a.max_ctx)) {
        *dst = kBf16NaN;
        return;
    }
    const float *partial_ml = a.partial_out + (int64_t)a.n_splits * a.n_new * a.n_heads * head_dim;
    const int64_t stride = (int64_t)a.n_new * a.n_heads;  // between splits, in (token, head) rows
    const int64_t row = (int64_t)tok * a.n_heads + h;
    const int t0 = tok / a.tokens_per_block * a.tokens_per_block;
    const int pos0 = *a.seq_len - a.n_new;
    const int n_active =
        split_keys(pos0 + t0 + min(a.tokens_per_block, a.n_new - t0), a.n_splits, 0).active_splits;
    if (threadIdx.x < 32) {
        const int lane = threadIdx.x;
        constexpr int kPerLane = kMaxSplits / 32;
        float m[kPerLane], l[kPerLane];
#pragma unroll
        for (int i = 0; i < kPerLane; ++i) {
            const int s = lane + 32 * i;
            m[i] = s < n_active ? partial_ml[(s * stride + row) * 2] : -INFINITY;
            l[i] = s < n_active ? partial_ml[(s * stride + row) * 2 + 1] : 0.0f;
        }
        float m_max = m[0];
#pragma unroll
        for (int i = 1; i < kPerLane; ++i) m_max = fmaxf(m_max, m[i]);
        m_max = warp_max(m_max);
        float sum = 0.0f;
#pragma unroll
        for (int i = 0; i < kPerLane; ++i) {
            const float weight = m[i] == -INFINITY ? 0.0f : __expf(m[i] - m_max);  // -inf: split saw no key
            weight_s[lane + 32 * i] = weight;
            sum = fmaf(weight, l[i], sum);
        }
        sum = warp_sum(sum);
        if (lane == 0) sum_s = sum;
    }
    __syncthreads();
    float o = 0.0f;
#pragma unroll 16
    for (int s = 0; s < n_active; ++s) o = fmaf(weight_s[s], a.partial_out[(s * stride + row) * head_dim + d], o);
    *dst = sa_f32_to_bf16(__fdiv_rn(o, sum_s));
}

float *scratch_pointer() {
    static float *ptr = nullptr;
    static std::once_flag once;
    static cudaError_t err = cudaSuccess;
    std::call_once(once, [] { err = cudaGetSymbolAddress(reinterpret_cast<void **>(&ptr), g_attention_scratch); });
    return err == cudaSuccess ? ptr : nullptr;
}

template <int D>
sa_status launch_attention(const AttnArgs &a, dim3 grid, int accumulators, cudaStream_t stream) {
    if (accumulators <= 8) return sa_cuda::launch_pdl("attention_kernel<8>", &attention_kernel<D, 8>, grid, dim3(kThreads), 0, stream, a);
    return sa_cuda::launch_pdl("attention_kernel<32>", &attention_kernel<D, 32>, grid, dim3(kThreads), 0, stream, a);
}

}  // namespace

SA_API sa_status sa_cuda_attention_bf16(const sa_attn_shape *shape, const uint16_t *qkv, uint16_t *k_cache,
                                        uint16_t *v_cache, const int32_t *seq_len, const float *slopes, uint16_t *out,
                                        void *stream) {
    SA_GUARD_BEGIN
    using namespace sa_cuda;
    if (!shape || !qkv || !k_cache || !v_cache || !seq_len || !slopes || !out)
        return invalid("sa_cuda_attention_bf16: null pointer");
    const int H = shape->n_heads, G = shape->n_kv_heads, D = shape->head_dim, T = shape->n_new;
    if (H <= 0 || G <= 0 || T < 0 || shape->max_ctx <= 0 || H % G != 0)
        return invalid("sa_cuda_attention_bf16: heads must be a positive multiple of KV groups, n_new >= 0, max_ctx > 0");
    if (D != 32 && D != 64 && D != 128)
        return invalid("sa_cuda_attention_bf16: head_dim " + std::to_string(D) + " is not supported (32, 64 or 128)");
    const int hpg = H / G;
    if (hpg > kMaxQueries || hpg * D > kMaxQueryElems)
        return invalid("sa_cuda_attention_bf16: " + std::to_string(hpg) + " heads per KV group of dim " +
                       std::to_string(D) + " exceed one block (at most 64 heads and heads*dim <= 4096)");
    if (!aligned16(qkv) || !aligned16(k_cache) || !aligned16(v_cache) || !aligned16(out))
        return invalid("sa_cuda_attention_bf16: qkv, the caches and out must be 16-byte aligned");
    if (T == 0) return SA_OK;
    float *scratch = scratch_pointer();
    if (!scratch) return sa::fail(SA_E_CUDA, "sa_cuda_attention_bf16: cannot resolve the attention scratch buffer");
    cudaStream_t s = as_stream(stream);

    AttnArgs a{};
    a.qkv = qkv;
    a.k_cache = k_cache;
    a.v_cache = v_cache;
    a.seq_len = seq_len;
    a.slopes = slopes;
    a.out = out;
    a.partial_out = scratch;
    a.n_heads = H;
    a.n_kv = G;
    a.n_new = T;
    a.max_ctx = shape->max_ctx;
    a.scale = 1.0f / std::sqrt((float)D);  // the CPU reference's scale, bit for bit
    a.tokens_per_block = std::min({T, kMaxQueries / hpg, kMaxQueryElems / (hpg * D)});
    const int token_blocks = (T + a.tokens_per_block - 1) / a.tokens_per_block;
    // Splits of the key range: enough blocks to fill the GPU, no more than the cache has tiles, and the partials
    // must fit the scratch buffer.
    const int64_t partial_per_split = (int64_t)T * H * (D + 2);
    int splits = (kTargetBlocks + token_blocks * G - 1) / (token_blocks * G);
    splits = std::min<int64_t>(splits, kMaxSplits);
    splits = std::min<int64_t>(splits, (shape->max_ctx + kKeyTile - 1) / kKeyTile);
    splits = (int)std::min<int64_t>(splits, kScratchFloats / partial_per_split);
    a.n_splits = std::max(splits, 1);

    const dim3 grid(token_blocks, G, a.n_splits);
    const int accumulators = (a.tokens_per_block * hpg * D + kThreads - 1) / kThreads;
    sa_status st = D == 32 ? launch_attention<32>(a, grid, accumulators, s)
                 : D == 64 ? launch_attention<64>(a, grid, accumulators, s)
                           : launch_attention<128>(a, grid, accumulators, s);
    if (st != SA_OK) return st;
    if (a.n_splits > 1) {
        st = launch_pdl("attention_combine_kernel", &attention_combine_kernel, dim3(T * H), dim3(D), 0, s, a, D);
        if (st != SA_OK) return st;
    }
    return SA_OK;
    SA_GUARD_END
}
