// attention.cu — KV-cache append plus causal sqrt-ALiBi GQA attention (spec §1.3), decode and prefill.
//
// The sequence length lives in device memory (*seq_len, so a captured graph replays for every position); the host
// never reads it. Hence nothing launched here depends on it: grids are sized from the shape and max_ctx only,
// and blocks whose key range turns out empty on the device return at once (the combine kernel skips them).
//
//  1. attention_kernel: one block = one KV group x a few new tokens x one split of the key range. Its queries are
//     all (token, head) pairs of that group (12 heads in Step1), so every K/V byte is read once per block.
//     Keys stream through shared memory in tiles of 32 with an online (flash) softmax; scores, softmax and the
//     accumulators are fp32. Decode (1 token) launches up to 64 splits of the sequence (flash-decoding) so that
//     4 groups still fill the GPU at long context; each block covers a contiguous share of whole tiles, and fetches
//     the next tile into registers while it computes on the current one. How many splits are used is decided on
//     the device from *seq_len: each split gets at least min_split_tiles tiles (STEPAUDIO_ATTN_MIN_TILES, default
//     1 = 32 keys), the blocks beyond the used count return at once, and when one split covers all keys (short
//     context) that block normalises and writes the bf16 output itself.
//     Head slices: at short context the blocks of splits beyond the used count share the working splits' heads
//     instead of returning (up to SA_ATTN_HEAD_SLICES = 3 blocks per split, 4 of Step1's 12 heads each): the per-tile
//     math is what a working split costs there (kernels/NOTES.md, session 5).
//     Per tile, a warp scores 3 queries at once (independent FMA chains, batched shuffles), and each thread's
//     accumulators share one output column d, so one V element feeds all of them.
//     The blocks of split 0 also append the new tokens' k, v rows to the caches at pos0 = *seq_len - n_new;
//     every block takes keys at positions >= pos0 from qkv itself, so no second kernel or ordering is needed.
//  2. attention_decode_mma_kernel (session 7) takes decode instead — one new token, head_dim 64, at most 16 heads per
//     group (Step1) — on tensor cores: the group's heads are the 16 rows of one MMA tile (its own comment below).
//     Same splits, partials and combine; the per-tile math is 48 MMAs per warp instead of 32-deep FMA chains.
//  2b. attention_prefill_mma_kernel (session 17) takes a prefill of >= 32 new tokens at head_dim 64 with an even number
//     of <= 16 heads per group (Step1's prompts): 8 tokens x one group per block, each warp one 16-row MMA tile of two
//     heads, all the block's keys in 32-key tiles, no splits (its own comment below).
//  3. attention_combine_kernel merges the splits' (max, sum, unnormalised output) by exp(m_s - M) weights. It is
//     launched whenever more than one split may be used (the graph is fixed) and returns at once when only one was.
//
// Split partials go to a workspace the caller owns (at most SA_ATTENTION_WORKSPACE_BYTES; the functions must not
// allocate, the decode graph is captured): one per stream. It used to be one module-level buffer, which two models
// decoding on two streams at once overwrote for each other (found by the C# suite, whose test classes run at once).
// A *seq_len outside [n_new, max_ctx] cannot be reported from inside a graph: the cache is left untouched and
// the output is filled with NaN so the failure is loud downstream.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <mutex>

#include "cuda_common.cuh"

namespace {

constexpr int kThreads = 128;             // 4 warps
constexpr int kKeyTile = 32;              // keys per tile: one per lane in the score phase
constexpr int kMaxQueries = 64;           // (token, head) queries per block
constexpr int kMaxQueryElems = 4096;      // queries x head_dim per block: 32 fp32 accumulators per thread
constexpr int kMaxSplits = 128;         // the combine kernel handles up to 128 (four per lane)
constexpr int kTargetBlocks = 2 * 132;    // two blocks per H100 SM: 64 splits per group for Step1 (see NOTES.md)
constexpr int kDefaultMinSplitTiles = 1;  // one tile per split until the splits run out (measured best, NOTES.md)
#ifndef SA_ATTN_HEAD_SLICES  // at most this many blocks share a split's heads at short context (1: off; the A/B knob)
#define SA_ATTN_HEAD_SLICES 3
#endif
constexpr int kQueryBatch = 3;            // queries a warp scores together; Step1 decode: 12 = 4 warps x 3
constexpr int64_t kWorkspaceFloats = SA_ATTENTION_WORKSPACE_BYTES / 4;
constexpr uint16_t kBf16NaN = 0x7fc0;

struct AttnArgs {
    const uint16_t *qkv;
    uint16_t *k_cache;
    uint16_t *v_cache;
    const int32_t *seq_len;
    const float *slopes;
    uint16_t *out;
    float *partial_out;  // [splits][n_new][n_heads][D], then partial_ml [splits][n_new][n_heads][2]
    int n_heads, n_kv, n_new, max_ctx;
    int tokens_per_block, n_splits, min_split_tiles;
    int head_slices;  // at most this many blocks share a split's heads at short context (attention_kernel)
    float scale;
};

__device__ __forceinline__ bool seq_len_valid(int len, int n_new, int max_ctx) {
    return len - n_new >= 0 && len <= max_ctx;
}

// Keys [begin, end) of one split: the causal range [0, causal_end) of a block's last token, cut into at most
// n_splits shares of whole tiles, each at least min_tiles long. The combine kernel recomputes it to skip the
// splits that saw no key (and to exit when there was only one).
struct KeyRange {
    int begin, end, active_splits;
};
__device__ __forceinline__ KeyRange split_keys(int causal_end, int n_splits, int min_tiles, int split) {
    const int tiles = (causal_end + kKeyTile - 1) / kKeyTile;
    const int tiles_per_split = max((tiles + n_splits - 1) / n_splits, min_tiles);
    KeyRange r;
    r.begin = split * tiles_per_split * kKeyTile;
    r.end = min(causal_end, r.begin + tiles_per_split * kKeyTile);
    r.active_splits = (tiles + tiles_per_split - 1) / tiles_per_split;
    return r;
}

// Key / value row j (add group·D for the group's slice): old keys from the caches, this call's new ones (j >= pos0)
// from qkv, whose rows are the new tokens in order (their cache copies may not be written yet).
struct KvRow {
    const uint16_t *k, *v;
};
__device__ __forceinline__ KvRow kv_row(const AttnArgs &a, int j, int pos0, int qkv_row, int q_width, int kv_width) {
    const uint16_t *k = j < pos0 ? a.k_cache + (int64_t)j * kv_width : a.qkv + (int64_t)(j - pos0) * qkv_row + q_width;
    return {k, j < pos0 ? a.v_cache + (int64_t)j * kv_width : k + kv_width};
}

// kR = accumulators per thread (queries x D / 128, rounded up to 8 or 32).
template <int D, int kR>
__global__ void __launch_bounds__(kThreads) attention_kernel(AttnArgs a) {
    pdl_launch_dependents();
    pdl_wait();  // qkv, the caches and *seq_len come from earlier kernels
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int heads_per_group = a.n_heads / a.n_kv;
    const int group = blockIdx.y;
    const int t0 = blockIdx.x * a.tokens_per_block;
    const int n_tok = min(a.tokens_per_block, a.n_new - t0);
    const int len = *a.seq_len, pos0 = len - a.n_new;
    const int qkv_row = (a.n_heads + 2 * a.n_kv) * D, kv_width = a.n_kv * D, out_row = a.n_heads * D;

    if (!seq_len_valid(len, a.n_new, a.max_ctx)) {
        if (blockIdx.z == 0)
            for (int e = tid; e < n_tok * heads_per_group * D; e += kThreads) {
                const int q = e / D, d = e % D;
                const int tok = t0 + q / heads_per_group, h = group * heads_per_group + q % heads_per_group;
                a.out[(int64_t)tok * out_row + h * D + d] = kBf16NaN;
            }
        return;
    }
    // Head slices: at short context most of the n_splits blocks of a (token block, group) have no keys, and what a
    // working split costs is its per-tile math, not its loads. So the idle blocks take a share of the heads: with
    // `active` splits in use and S slices (S divides hpg, active · S <= the blocks launched per (token block, group),
    // gridDim.z >= n_splits; the largest S <= head_slices), block
    // z works on split z % active for heads [(z / active) · hpg / S, ...) and scores the same keys as its split's
    // other slices. No extra blocks are launched: at long context S = 1 and nothing changes.
    const int causal_end = pos0 + t0 + n_tok;
    const int active = split_keys(causal_end, a.n_splits, a.min_split_tiles, 0).active_splits;
    int slices = a.head_slices;
    while (slices > 1 && (heads_per_group % slices != 0 || active * slices > (int)gridDim.z)) --slices;
    const int z = blockIdx.z, split = z % active, slice = z / active;
    if (slice >= slices) return;  // nothing to do; the combine kernel skips splits >= active
    const KeyRange keys = split_keys(causal_end, a.n_splits, a.min_split_tiles, split);
    const int heads = heads_per_group / slices;  // heads of this block
    const int h_first = group * heads_per_group + slice * heads;
    const int n_q = n_tok * heads;  // query q = token (t0 + q / heads), head h_first + q % heads

    // Append this block's new tokens (their k, v slices of this group) to the caches; split 0 does it. Every
    // block reads keys at positions >= pos0 straight from qkv, so no block waits for these writes.
    if (z == 0) {
        const int chunks = n_tok * (D / 8);
        for (int e = tid; e < 2 * chunks; e += kThreads) {
            const int is_v = e >= chunks, ti = (e % chunks) / (D / 8), c = e % (D / 8), tok = t0 + ti;
            const uint4 val = reinterpret_cast<const uint4 *>(a.qkv + (int64_t)tok * qkv_row + a.n_heads * D +
                                                              is_v * kv_width + group * D)[c];
            uint16_t *cache = is_v ? a.v_cache : a.k_cache;
            reinterpret_cast<uint4 *>(cache + (int64_t)(pos0 + tok) * kv_width + group * D)[c] = val;
        }
    }

    if (keys.begin >= keys.end) return;  // nothing to do; the combine kernel skips this split
    const int key_begin = keys.begin, key_end = keys.end;

    __shared__ __align__(16) uint32_t q_s[kMaxQueries][D / 2];  // bf16 pairs
    __shared__ uint32_t k_s[kKeyTile][D / 2 + 1];  // +1 word: lanes reading different keys hit different banks
    __shared__ __align__(16) uint16_t v_s[kKeyTile][D];
    __shared__ __align__(16) float p_s[kMaxQueries][kKeyTile];
    __shared__ float m_s[kMaxQueries], l_s[kMaxQueries], alpha_s[kMaxQueries], slope_s[kMaxQueries];
    __shared__ int pos_s[kMaxQueries];  // absolute position of the query's token

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
                const KvRow src = kv_row(a, j, pos0, qkv_row, a.n_heads * D, kv_width);
                k_next[i] = reinterpret_cast<const uint4 *>(src.k + group * D)[c];
                v_next[i] = reinterpret_cast<const uint4 *>(src.v + group * D)[c];
            }
        }
    };
    fetch(key_begin);  // first, so the first tile is in flight while the queries load

    for (int e = tid; e < n_q * (D / 8); e += kThreads) {
        const int q = e / (D / 8), c = e % (D / 8);
        const int tok = t0 + q / heads, h = h_first + q % heads;
        reinterpret_cast<uint4 *>(&q_s[q][0])[c] =
            reinterpret_cast<const uint4 *>(a.qkv + (int64_t)tok * qkv_row + h * D)[c];
    }
    for (int q = tid; q < n_q; q += kThreads) {
        m_s[q] = -INFINITY;
        l_s[q] = 0.0f;
        slope_s[q] = a.slopes[h_first + q % heads];
        pos_s[q] = pos0 + t0 + q / heads;
    }
    // Thread tid owns output elements e = tid + 128 r, i.e. column d = tid % D of queries q_first + kQueryStride r.
    constexpr int kQueryStride = kThreads / D;
    const int d = tid % D, q_first = tid / D;
    float acc[kR];
#pragma unroll
    for (int r = 0; r < kR; ++r) acc[r] = 0.0f;
    __syncthreads();

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

        // Scores and the online-softmax update: lane = key; warp w takes queries [3w, 3w + 3), then + 12, ...
        // The batch's dot products (two partial sums each) and reductions are independent, so they overlap.
        {
            const int j = j0 + lane;
            uint32_t k_row[D / 2];
#pragma unroll
            for (int c = 0; c < D / 2; ++c) k_row[c] = k_s[lane][c];
            for (int qb = warp * kQueryBatch; qb < n_q; qb += (kThreads / 32) * kQueryBatch) {
                int qi[kQueryBatch];
                float dot_lo[kQueryBatch], dot_hi[kQueryBatch];
#pragma unroll
                for (int b = 0; b < kQueryBatch; ++b) {
                    qi[b] = min(qb + b, n_q - 1);  // past n_q: a duplicate, computed but never stored
                    dot_lo[b] = dot_hi[b] = 0.0f;
                }
#pragma unroll
                for (int c4 = 0; c4 < D / 8; ++c4) {
#pragma unroll
                    for (int b = 0; b < kQueryBatch; ++b) {
                        const uint4 qw = reinterpret_cast<const uint4 *>(&q_s[qi[b]][0])[c4];
                        const uint32_t w[4] = {qw.x, qw.y, qw.z, qw.w};
#pragma unroll
                        for (int i = 0; i < 4; ++i) {
                            dot_lo[b] = fmaf(bf16_lo(w[i]), bf16_lo(k_row[4 * c4 + i]), dot_lo[b]);
                            dot_hi[b] = fmaf(bf16_hi(w[i]), bf16_hi(k_row[4 * c4 + i]), dot_hi[b]);
                        }
                    }
                }
                float score[kQueryBatch], m_max[kQueryBatch];
#pragma unroll
                for (int b = 0; b < kQueryBatch; ++b) {
                    const int p = pos_s[qi[b]];
                    score[b] = (j < key_end && j <= p)
                                   ? (dot_lo[b] + dot_hi[b]) * a.scale - slope_s[qi[b]] * sqrtf((float)(p - j))
                                   : -INFINITY;
                    m_max[b] = score[b];
                }
#pragma unroll
                for (int o = 16; o > 0; o >>= 1)
#pragma unroll
                    for (int b = 0; b < kQueryBatch; ++b)
                        m_max[b] = fmaxf(m_max[b], __shfl_xor_sync(0xffffffffu, m_max[b], o));
                float m_old[kQueryBatch], m_new[kQueryBatch], m_use[kQueryBatch], prob[kQueryBatch], sum[kQueryBatch];
#pragma unroll
                for (int b = 0; b < kQueryBatch; ++b) {
                    m_old[b] = m_s[qi[b]];
                    m_new[b] = fmaxf(m_old[b], m_max[b]);
                    m_use[b] = m_new[b] == -INFINITY ? 0.0f : m_new[b];  // all masked so far: keep exp() finite
                    prob[b] = __expf(score[b] - m_use[b]);
                    sum[b] = prob[b];
                }
#pragma unroll
                for (int o = 16; o > 0; o >>= 1)
#pragma unroll
                    for (int b = 0; b < kQueryBatch; ++b) sum[b] += __shfl_xor_sync(0xffffffffu, sum[b], o);
#pragma unroll
                for (int b = 0; b < kQueryBatch; ++b) {
                    if (qb + b < n_q) {
                        const int q = qb + b;
                        p_s[q][lane] = prob[b];
                        if (lane == 0) {
                            const float alpha = __expf(m_old[b] - m_use[b]);
                            alpha_s[q] = alpha;
                            l_s[q] = l_s[q] * alpha + sum[b];
                            m_s[q] = m_new[b];
                        }
                    }
                }
            }
        }
        __syncthreads();

        // acc[q][d] = acc[q][d] * alpha_q + sum_j p[q][j] v[j][d]: four keys at a time, each V element (one per
        // key, this thread's column) feeding all of the thread's accumulators.
#pragma unroll
        for (int r = 0; r < kR; ++r) {
            const int q = q_first + kQueryStride * r;
            if (q < n_q) acc[r] *= alpha_s[q];
        }
#pragma unroll
        for (int jj = 0; jj < kKeyTile; jj += 4) {
            float v[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) v[i] = sa_bf16_to_f32(v_s[jj + i][d]);
#pragma unroll
            for (int r = 0; r < kR; ++r) {
                const int q = q_first + kQueryStride * r;
                if (q < n_q) {
                    const float4 p = *reinterpret_cast<const float4 *>(&p_s[q][jj]);
                    acc[r] = fmaf(p.x, v[0], acc[r]);
                    acc[r] = fmaf(p.y, v[1], acc[r]);
                    acc[r] = fmaf(p.z, v[2], acc[r]);
                    acc[r] = fmaf(p.w, v[3], acc[r]);
                }
            }
        }
        __syncthreads();
    }

    if (keys.active_splits == 1) {  // the whole key range was this block's: normalise and write the output
#pragma unroll
        for (int r = 0; r < kR; ++r) {
            const int q = q_first + kQueryStride * r;
            if (q < n_q) {
                const int tok = t0 + q / heads, h = h_first + q % heads;
                a.out[(int64_t)tok * out_row + h * D + d] = sa_f32_to_bf16(__fdiv_rn(acc[r], l_s[q]));
            }
        }
    } else {
        const int64_t split_base = (int64_t)split * a.n_new * a.n_heads;
        float *partial_ml = a.partial_out + (int64_t)a.n_splits * a.n_new * a.n_heads * D;
#pragma unroll
        for (int r = 0; r < kR; ++r) {
            const int q = q_first + kQueryStride * r;
            if (q < n_q) {
                const int tok = t0 + q / heads, h = h_first + q % heads;
                a.partial_out[(split_base + (int64_t)tok * a.n_heads + h) * D + d] = acc[r];
            }
        }
        for (int q = tid; q < n_q; q += kThreads) {
            const int tok = t0 + q / heads, h = h_first + q % heads;
            partial_ml[(split_base + (int64_t)tok * a.n_heads + h) * 2 + 0] = m_s[q];
            partial_ml[(split_base + (int64_t)tok * a.n_heads + h) * 2 + 1] = l_s[q];
        }
    }
}

// ==== decode on tensor cores: attention_decode_mma_kernel (one new token, <= 16 heads per group, head_dim 64) ====
// Why (kernels/NOTES.md, session 7): at short context attention_kernel's time is its per-tile math — a warp scores
// 3 queries as 32-deep FMA chains, one key per lane, and the V sums are 32-deep chains again — latency that no other
// warp hides (ncu: 17% issue, "wait" the first stall). Here all heads of the group are the 16 rows of one MMA tile:
// a warp scores a 32-key tile in 16 MMAs (4 chains of 4) and multiplies it by V in 32 (8 chains of 4).
//  * A block is one split of the key range, as attention_kernel's (same split_keys, so the combine kernel is
//    shared), but its 4 warps take the split's tiles in turn, each with its own online softmax; the block merges
//    them in shared memory and writes the output itself when one split covered all keys, else its partial.
//    min_split_tiles defaults to 2 here, so up to 64 keys one split does it all and the combine kernel exits at once.
//  * Each warp copies its own K and V tiles into shared memory with cp.async (all 16 copies of a lane in flight at
//    once; rows padded to 36 words: the fragment loads are conflict-free), so no block barrier is needed until the
//    merge. The new token's k, v rows are appended to the caches last.
//  * Scores, softmax and the accumulators are fp32 as in attention_kernel. The probabilities enter the second MMA as
//    bf16 hi + lo parts (two MMAs), so P·V keeps ~16 bits of P instead of bf16's 8.
// 4 warps per block (1 or 2 were slower in the step, measured before the cp.async staging); splits of at least 2
// tiles (4: 64 keys the same, 1024 slower, 4000 faster) — kernels/NOTES.md, session 7.
constexpr int kMmaWarps = 4, kMmaThreads = 32 * kMmaWarps, kMmaMinSplitTiles = 2;
// Splits per group at most (host side, mma_max_splits): one working block per SM — SMs / (groups × token blocks),
// 33 for Step1 on 132 SMs — where attention_kernel aims at two. Measured in session 9 (kernels/NOTES.md): the bf16
// step 3.0–3.4% faster at 3000–6000 keys, 1.6% at 8000, the same up to 2100 keys (the splits are not capped there)
// and at 4200 (+0.3%). SA_ATTN_MMA_MAX_SPLITS overrides it (the A/B knob; session 8's 32 lost at 4096–4224 keys,
// where 5-tile splits leave 10 16-key units for 4 warps).
// Keys a warp takes at a time (SA_ATTN_MMA_WARP_KEYS, 16 or 32): with 32, a split of 2 tiles (64 keys; every split
// up to ~2000 keys) keeps only 2 of the 4 warps busy; with 16 all 4 are, for a little more per-unit work (the softmax
// rescale) and half the shared memory (18 KB). Measured in session 8 (kernels/NOTES.md): 16 is faster in every decode
// step (W4A16 at 64 keys 1.160 -> 1.124 ms, at 1024 1.226 -> 1.206; bf16 at 4000 2.365 -> 2.348), slower only alone
// at 8192 keys (9.89 -> 10.28 us).
#ifndef SA_ATTN_MMA_WARP_KEYS
#define SA_ATTN_MMA_WARP_KEYS 16
#endif
constexpr int kWarpKeys = SA_ATTN_MMA_WARP_KEYS;
static_assert(kWarpKeys == 16 || kWarpKeys == 32, "whole 16-key MMA steps, at most a split tile");
constexpr int kMmaRowWords = 64 / 2 + 4;  // a K or V row of the staged tile: 32 words of bf16 pairs + 4 of padding

__device__ __forceinline__ uint32_t cvt_bf16x2(float lo, float hi) {  // round to nearest even, lo in the low half
    uint32_t r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

// ---- what both tensor-core kernels share: the online softmax of a 16-row tile and P as MMA A fragments ----
// sc holds a warp's scores for NT column tiles of 8 keys (c0, c1: row g; c2, c3: row g + 8), already scaled, biased
// and masked; mx_a / mx_b are this thread's maxima of rows g / g + 8. Reduces them over the quad, updates the running
// max m and this thread's share of the row sum l, turns sc into probabilities and rescales the output o by
// exp(m_old - m_new); rows with no visible key yet (-inf) keep exp() finite.
template <int NT, int NO>
__device__ __forceinline__ void online_softmax(float (&sc)[NT][4], float mx_a, float mx_b, float &m_a, float &m_b,
                                               float &l_a, float &l_b, float (&o)[NO][4]) {
#pragma unroll
    for (int off = 1; off <= 2; off <<= 1) {
        mx_a = fmaxf(mx_a, __shfl_xor_sync(0xffffffffu, mx_a, off));
        mx_b = fmaxf(mx_b, __shfl_xor_sync(0xffffffffu, mx_b, off));
    }
    const float mn_a = fmaxf(m_a, mx_a), mn_b = fmaxf(m_b, mx_b);
    const float mu_a = mn_a == -INFINITY ? 0.0f : mn_a, mu_b = mn_b == -INFINITY ? 0.0f : mn_b;
    const float alpha_a = __expf(m_a - mu_a), alpha_b = __expf(m_b - mu_b);
    m_a = mn_a;
    m_b = mn_b;
    float sum_a = 0.0f, sum_b = 0.0f;
#pragma unroll
    for (int n = 0; n < NT; ++n)
#pragma unroll
        for (int c = 0; c < 4; ++c) {
            const float p = __expf(sc[n][c] - (c < 2 ? mu_a : mu_b));
            sc[n][c] = p;
            if (c < 2) sum_a += p;
            else sum_b += p;
        }
    l_a = l_a * alpha_a + sum_a;
    l_b = l_b * alpha_b + sum_b;
#pragma unroll
    for (int n = 0; n < NO; ++n) {
        o[n][0] *= alpha_a;
        o[n][1] *= alpha_a;
        o[n][2] *= alpha_b;
        o[n][3] *= alpha_b;
    }
}
// The probabilities of 16 keys (score tiles 2kk, 2kk + 1) as the A fragment of the P·V MMA, in bf16 hi and lo parts
// (two MMAs keep ~16 bits of P): a0 = row g, keys 2t (+1); a1 = row g + 8; a2, a3 = the same, keys + 8.
template <int NT>
__device__ __forceinline__ void p_fragments(const float (&sc)[NT][4], int kk, uint32_t (&hi)[4], uint32_t (&lo)[4]) {
#pragma unroll
    for (int f = 0; f < 4; ++f) {
        const float *p = &sc[2 * kk + (f >> 1)][(f & 1) * 2];
        hi[f] = cvt_bf16x2(p[0], p[1]);
        lo[f] = cvt_bf16x2(p[0] - bf16_lo(hi[f]), p[1] - bf16_hi(hi[f]));
    }
}

template <int D>
__global__ void __launch_bounds__(kMmaThreads) attention_decode_mma_kernel(AttnArgs a) {
    static_assert(D == 64, "one 16x64 query tile: 4 k-steps of the score MMA, 8 column tiles of the output");
    pdl_launch_dependents();
    pdl_wait();  // qkv, the caches and *seq_len come from earlier kernels
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
    const int hpg = a.n_heads / a.n_kv, group = blockIdx.y, z = blockIdx.z;
    const int len = *a.seq_len, pos0 = len - 1;  // one new token, at position pos0
    const int kv_width = a.n_kv * D;
    if (!seq_len_valid(len, 1, a.max_ctx)) {
        if (z == 0)
            for (int e = tid; e < hpg * D; e += kMmaThreads) a.out[group * hpg * D + e] = kBf16NaN;
        return;
    }
    const KeyRange keys = split_keys(len, a.n_splits, a.min_split_tiles, z);
    if (keys.begin >= keys.end) return;  // nothing to do; the combine kernel skips this split

    // The query tile: rows g and g + 8 are heads group·hpg + g, + g + 8 (rows >= hpg are zero and never stored).
    const int head_g = group * hpg + g, head_g8 = head_g + 8;
    const bool row_g = g < hpg, row_g8 = g + 8 < hpg;
    uint32_t qa[D / 16][4];
    const uint32_t *q_g = reinterpret_cast<const uint32_t *>(a.qkv + head_g * D);
    const uint32_t *q_g8 = reinterpret_cast<const uint32_t *>(a.qkv + head_g8 * D);
#pragma unroll
    for (int ks = 0; ks < D / 16; ++ks) {  // A fragment: rows g / g + 8, k = 16ks + 2t (+1), and + 8
        qa[ks][0] = row_g ? q_g[8 * ks + t] : 0u;
        qa[ks][1] = row_g8 ? q_g8[8 * ks + t] : 0u;
        qa[ks][2] = row_g ? q_g[8 * ks + 4 + t] : 0u;
        qa[ks][3] = row_g8 ? q_g8[8 * ks + 4 + t] : 0u;
    }
    const float slope_g = row_g ? a.slopes[head_g] : 0.0f, slope_g8 = row_g8 ? a.slopes[head_g8] : 0.0f;

    // Shared memory: per warp a K and a V tile [kWarpKeys keys][kMmaRowWords]; reused by the merge at the end.
    constexpr int kTileWords = kWarpKeys * kMmaRowWords;
    static_assert(kMmaWarps * 2 * kTileWords >= kMmaWarps * 16 * (D + 2), "the merge reuses the tiles' memory");
    __shared__ __align__(16) uint32_t smem[kMmaWarps * 2 * kTileWords];
    uint32_t *k_w = smem + warp * 2 * kTileWords, *v_w = k_w + kTileWords;
    const uint16_t *v_h = reinterpret_cast<const uint16_t *>(v_w);

    float m_g = -INFINITY, m_g8 = -INFINITY, l_g = 0.0f, l_g8 = 0.0f;  // l: this thread's share of the row sums
    float o[D / 8][4];  // output column tiles n: c0, c1 = row g, columns 8n + 2t (+1); c2, c3 = row g + 8
#pragma unroll
    for (int n = 0; n < D / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;

    const int n_units = (keys.end - keys.begin + kWarpKeys - 1) / kWarpKeys;
    for (int i = warp; i < n_units; i += kMmaWarps) {
        const int j0 = keys.begin + i * kWarpKeys;
        // Stage kWarpKeys keys x 8 chunks of 16 B of K and of V by asynchronous copies straight into shared memory,
        // all of a lane's in flight at once (register loads split into dependent round trips: the first form of this
        // kernel was slower in the step than alone). Rows past the split read a valid row with 0 source bytes:
        // zero-filled, so a zero probability never meets a NaN.
#pragma unroll
        for (int e = 0; e < kWarpKeys * (D / 8) / 32; ++e) {
            const int c = lane + 32 * e, r = c / (D / 8), cc = c % (D / 8), j = min(j0 + r, keys.end - 1);
            const int bytes = j0 + r < keys.end ? 16 : 0;
            const KvRow src = kv_row(a, j, pos0, 0, a.n_heads * D, kv_width);  // qkv_row 0: the one new row is qkv's first
            cp_async16(smem_u32(k_w + r * kMmaRowWords + 4 * cc), src.k + group * D + 8 * cc, bytes);
            cp_async16(smem_u32(v_w + r * kMmaRowWords + 4 * cc), src.v + group * D + 8 * cc, bytes);
        }
        cp_async_commit();
        cp_async_wait<0>();
        __syncwarp();

        // Scores S[row][key] for the unit's column tiles of 8 keys: B[k = dim][n = key] is K row (8n + g).
        float sc[kWarpKeys / 8][4];
#pragma unroll
        for (int n = 0; n < kWarpKeys / 8; ++n) {
            sc[n][0] = sc[n][1] = sc[n][2] = sc[n][3] = 0.0f;
            const uint32_t *k_row = k_w + (8 * n + g) * kMmaRowWords;
#pragma unroll
            for (int ks = 0; ks < D / 16; ++ks)
                mma_bf16_16816(sc[n], qa[ks][0], qa[ks][1], qa[ks][2], qa[ks][3], k_row[8 * ks + t], k_row[8 * ks + 4 + t]);
        }
        // Scale, sqrt-ALiBi, mask, and the unit's row maxima (a row's keys sit in the 4 lanes of a quad).
        float mx_g = -INFINITY, mx_g8 = -INFINITY;
#pragma unroll
        for (int n = 0; n < kWarpKeys / 8; ++n)
#pragma unroll
            for (int c = 0; c < 4; ++c) {
                const int j = j0 + 8 * n + 2 * t + (c & 1);
                const float slope = c < 2 ? slope_g : slope_g8;
                const float s = j < keys.end && j <= pos0 ? sc[n][c] * a.scale - slope * sqrtf((float)(pos0 - j)) : -INFINITY;
                sc[n][c] = s;
                if (c < 2) mx_g = fmaxf(mx_g, s);
                else mx_g8 = fmaxf(mx_g8, s);
            }
        online_softmax(sc, mx_g, mx_g8, m_g, m_g8, l_g, l_g8, o);
        // O += P·V over the tile's two 16-key steps: the score tiles 2kk, 2kk + 1 are the A fragment (as bf16 hi and
        // lo parts); B[k = key][n = column] pairs two keys of one V column.
#pragma unroll
        for (int kk = 0; kk < kWarpKeys / 16; ++kk) {
            uint32_t hi[4], lo[4];
            p_fragments(sc, kk, hi, lo);
            const int key = 16 * kk + 2 * t;
#pragma unroll
            for (int n = 0; n < D / 8; ++n) {
                const int col = 8 * n + g;
                const uint32_t b0 = v_h[key * 2 * kMmaRowWords + col] | (uint32_t)v_h[(key + 1) * 2 * kMmaRowWords + col] << 16;
                const uint32_t b1 = v_h[(key + 8) * 2 * kMmaRowWords + col] | (uint32_t)v_h[(key + 9) * 2 * kMmaRowWords + col] << 16;
                mma_bf16_16816(o[n], hi[0], hi[1], hi[2], hi[3], b0, b1);
                mma_bf16_16816(o[n], lo[0], lo[1], lo[2], lo[3], b0, b1);
            }
        }
        __syncwarp();  // the next tile overwrites this warp's K and V
    }
#pragma unroll
    for (int off = 1; off <= 2; off <<= 1) {
        l_g += __shfl_xor_sync(0xffffffffu, l_g, off);
        l_g8 += __shfl_xor_sync(0xffffffffu, l_g8, off);
    }

    // Merge the warps: (max, sum) and the unnormalised outputs [warp][row][column] in the tiles' memory.
    __syncthreads();
    float *o_s = reinterpret_cast<float *>(smem);  // [kMmaWarps][16][D]
    float *ml_s = o_s + kMmaWarps * 16 * D;          // [kMmaWarps][16][2]
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
        float *at = o_s + (warp * 16 + g) * D + 8 * n + 2 * t;
        at[0] = o[n][0];
        at[1] = o[n][1];
        at[8 * D] = o[n][2];
        at[8 * D + 1] = o[n][3];
    }
    if (t == 0) {
        ml_s[(warp * 16 + g) * 2] = m_g;
        ml_s[(warp * 16 + g) * 2 + 1] = l_g;
        ml_s[(warp * 16 + g + 8) * 2] = m_g8;
        ml_s[(warp * 16 + g + 8) * 2 + 1] = l_g8;
    }
    __syncthreads();
    float *partial_ml = a.partial_out + (int64_t)a.n_splits * a.n_heads * D;
    for (int e = tid; e < hpg * D; e += kMmaThreads) {
        const int row = e / D, d = e % D, h = group * hpg + row;
        float mx = -INFINITY;
#pragma unroll
        for (int w = 0; w < kMmaWarps; ++w) mx = fmaxf(mx, ml_s[(w * 16 + row) * 2]);
        float sum = 0.0f, acc = 0.0f;
#pragma unroll
        for (int w = 0; w < kMmaWarps; ++w) {
            const float m = ml_s[(w * 16 + row) * 2];
            const float weight = m == -INFINITY ? 0.0f : __expf(m - mx);  // -inf: the warp saw no key
            sum = fmaf(weight, ml_s[(w * 16 + row) * 2 + 1], sum);
            acc = fmaf(weight, o_s[(w * 16 + row) * D + d], acc);
        }
        if (keys.active_splits == 1) {
            a.out[h * D + d] = sa_f32_to_bf16(__fdiv_rn(acc, sum));
        } else {
            a.partial_out[((int64_t)z * a.n_heads + h) * D + d] = acc;
            if (d == 0) {
                partial_ml[((int64_t)z * a.n_heads + h) * 2] = mx;
                partial_ml[((int64_t)z * a.n_heads + h) * 2 + 1] = sum;
            }
        }
    }
    // Append the new k, v rows of this group (16-byte chunks) last: no block of this call reads them from the cache
    // (the new key comes from qkv), and done first it put a load-store round trip before split 0's work.
    if (z == 0 && tid < 2 * (D / 8)) {
        const int is_v = tid >= D / 8, c = tid % (D / 8);
        const uint4 val = reinterpret_cast<const uint4 *>(a.qkv + a.n_heads * D + is_v * kv_width + group * D)[c];
        reinterpret_cast<uint4 *>((is_v ? a.v_cache : a.k_cache) + (int64_t)pos0 * kv_width + group * D)[c] = val;
    }
}

// ==== prefill on tensor cores: attention_prefill_mma_kernel (a long prompt, head_dim 64, an even number of heads
// per group, at most 16) ====
// Why: attention_kernel scores a long prompt with 32-deep FMA chains, 5 tokens x 12 heads per block, every block
// streaming its whole causal key range that way: 220 µs per layer at 512 new tokens (kernels/NOTES.md, session 16),
// ~7 ms of a 512-token prefill. Here the queries are MMA rows, as in attention_decode_mma_kernel:
//  * A block is (8 new tokens, one KV group). Warp w owns one 16-row query tile: row g is (token t0 + g, head 2w of
//    the group), row g + 8 is (the same token, head 2w + 1), so the causal limit is per quad (lane >> 2), and the
//    two heads' sqrt-ALiBi slopes per half. hpg / 2 warps (6 for Step1), no splits and no combine kernel: the
//    prompt's token blocks fill the GPU (4 groups x T / 8 blocks: 252 at 1000 tokens).
//  * The block's keys [0, causal end of its last token) stream through shared memory in 32-key tiles of K and V,
//    three stages of cp.async deep, one block barrier per tile; every warp multiplies every tile (its two heads):
//    scores in 16 MMAs, P·V in 32 (P as bf16 hi + lo parts, as the decode kernel: ~16 bits of P). B fragments come
//    from ldmatrix (V transposed by it), rows padded to 36 words so the 8 rows of each matrix hit 8 bank groups.
//  * Scores, the online softmax and the accumulators are fp32, with the decode kernel's arithmetic: score · scale −
//    slope · sqrt(position − key), exp through __expf, the output acc / l rounded once to bf16.
//  * Blocks are numbered last token block first: late tokens have the most keys, so the long blocks start first.
//  * The block appends its tokens' k, v rows to the caches at the end; no block reads new keys from the caches
//    (kv_row takes keys >= pos0 from qkv).
constexpr int kPfTokens = 8;   // new tokens per block: the 8 row pairs of an MMA tile
constexpr int kPfKeys = 32;    // keys per staged tile
constexpr int kPfStages = 3;   // tiles in flight
constexpr int kPfMaxWarps = 8;  // 16 heads per group
constexpr int kPfTileWords = kPfKeys * kMmaRowWords;


template <int D>
__global__ void __launch_bounds__(kPfMaxWarps * 32) attention_prefill_mma_kernel(AttnArgs a) {
    static_assert(D == 64, "one 16x64 query tile per warp: 4 k-steps of the score MMA, 8 column tiles of the output");
    pdl_launch_dependents();
    pdl_wait();  // qkv, the caches and *seq_len come from earlier kernels
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
    const int hpg = a.n_heads / a.n_kv, group = blockIdx.y, threads = blockDim.x;
    const int t0 = (gridDim.x - 1 - blockIdx.x) * kPfTokens, n_tok = min(kPfTokens, a.n_new - t0);
    const int len = *a.seq_len, pos0 = len - a.n_new;
    const int qkv_row = (a.n_heads + 2 * a.n_kv) * D, kv_width = a.n_kv * D, out_row = a.n_heads * D;
    if (!seq_len_valid(len, a.n_new, a.max_ctx)) {
        for (int e = tid; e < n_tok * hpg * D; e += threads) {
            const int q = e / D, d = e % D, tok = t0 + q / hpg, h = group * hpg + q % hpg;
            a.out[(int64_t)tok * out_row + h * D + d] = kBf16NaN;
        }
        return;
    }
    const int causal_end = pos0 + t0 + n_tok;  // keys [0, causal_end) for the block's last token
    const int n_tiles = (causal_end + kPfKeys - 1) / kPfKeys;

    __shared__ __align__(16) uint32_t kv_s[kPfStages][2][kPfTileWords];  // [stage][K, V][key][36 words]
    // Stage tile i: 32 keys x 8 chunks of 16 B of K and of V; keys past causal_end read a valid row with 0 source
    // bytes (zero-filled: a zero probability never meets a NaN).
    auto stage = [&](int i) {
        if (i < n_tiles) {
            const int j0 = i * kPfKeys;
            uint32_t *k_t = kv_s[i % kPfStages][0], *v_t = kv_s[i % kPfStages][1];
            for (int c = tid; c < kPfKeys * (D / 8); c += threads) {
                const int r = c / (D / 8), cc = c % (D / 8), j = min(j0 + r, causal_end - 1);
                const int bytes = j0 + r < causal_end ? 16 : 0;
                const KvRow src = kv_row(a, j, pos0, qkv_row, a.n_heads * D, kv_width);
                cp_async16(smem_u32(k_t + r * kMmaRowWords + 4 * cc), src.k + group * D + 8 * cc, bytes);
                cp_async16(smem_u32(v_t + r * kMmaRowWords + 4 * cc), src.v + group * D + 8 * cc, bytes);
            }
        }
        cp_async_commit();  // an empty group past the last tile keeps the wait count uniform
    };
    for (int i = 0; i < kPfStages - 1; ++i) stage(i);

    // The query tile: rows g / g + 8 = heads 2w / 2w + 1 of the group for token t0 + g (rows g >= n_tok: zero).
    const int tok = t0 + g, head_a = group * hpg + 2 * warp, head_b = head_a + 1;
    const bool row_ok = g < n_tok;
    const int qpos = pos0 + tok;  // the token's absolute position: keys j <= qpos are visible
    uint32_t qa[D / 16][4];
    {
        const uint32_t *q_a = reinterpret_cast<const uint32_t *>(a.qkv + (int64_t)tok * qkv_row + head_a * D);
        const uint32_t *q_b = reinterpret_cast<const uint32_t *>(a.qkv + (int64_t)tok * qkv_row + head_b * D);
#pragma unroll
        for (int ks = 0; ks < D / 16; ++ks) {  // A fragment: rows g / g + 8, k = 16ks + 2t (+1), and + 8
            qa[ks][0] = row_ok ? q_a[8 * ks + t] : 0u;
            qa[ks][1] = row_ok ? q_b[8 * ks + t] : 0u;
            qa[ks][2] = row_ok ? q_a[8 * ks + 4 + t] : 0u;
            qa[ks][3] = row_ok ? q_b[8 * ks + 4 + t] : 0u;
        }
    }
    const float slope_a = a.slopes[head_a], slope_b = a.slopes[head_b];

    float m_a = -INFINITY, m_b = -INFINITY, l_a = 0.0f, l_b = 0.0f;  // l: this thread's share of the row sums
    float o[D / 8][4];  // output column tiles n: c0, c1 = row g, columns 8n + 2t (+1); c2, c3 = row g + 8
#pragma unroll
    for (int n = 0; n < D / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;

    // ldmatrix row addresses of this lane (matrix lane / 8, its row lane % 8): for K (scores, B[k = dim][n = key])
    // matrices = dims 0-7 / 8-15 of k-step ks and ks + 1 for the keys of one 8-key column tile; for V (P·V,
    // B[k = key][n = column], transposed) = keys 0-7 / 8-15 of a 16-key step for two 8-column tiles.
    const int mi = lane >> 3, mr = lane & 7;
    const uint32_t k_lane = (uint32_t)((mr * kMmaRowWords + (mi & 1) * 4 + (mi >> 1) * 8) * 4);
    const uint32_t v_lane = (uint32_t)((((mi & 1) * 8 + mr) * kMmaRowWords + (mi >> 1) * 4) * 4);

    for (int i = 0; i < n_tiles; ++i) {
        cp_async_wait<kPfStages - 2>();
        __syncthreads();  // tile i is in for every thread, and every warp is done with tile i - 1's stage
        stage(i + kPfStages - 1);
        const uint32_t k_t = smem_u32(kv_s[i % kPfStages][0]), v_t = smem_u32(kv_s[i % kPfStages][1]);
        const int j0 = i * kPfKeys;

        // Scores S[row][key] for 4 column tiles of 8 keys.
        float sc[kPfKeys / 8][4];
#pragma unroll
        for (int n = 0; n < kPfKeys / 8; ++n) {
            sc[n][0] = sc[n][1] = sc[n][2] = sc[n][3] = 0.0f;
#pragma unroll
            for (int ks = 0; ks < D / 16; ks += 2) {
                uint32_t b[4];  // b0, b1 of k-step ks, then of ks + 1
                ldmatrix_x4(k_t + k_lane + (uint32_t)((8 * n * kMmaRowWords + 8 * ks) * 4), b[0], b[1], b[2], b[3]);
                mma_bf16_16816(sc[n], qa[ks][0], qa[ks][1], qa[ks][2], qa[ks][3], b[0], b[1]);
                mma_bf16_16816(sc[n], qa[ks + 1][0], qa[ks + 1][1], qa[ks + 1][2], qa[ks + 1][3], b[2], b[3]);
            }
        }
        // Scale, sqrt-ALiBi, the causal mask, and the tile's row maxima (a row's keys sit in the 4 lanes of a quad).
        float mx_a = -INFINITY, mx_b = -INFINITY;
#pragma unroll
        for (int n = 0; n < kPfKeys / 8; ++n)
#pragma unroll
            for (int c = 0; c < 4; ++c) {
                const int j = j0 + 8 * n + 2 * t + (c & 1);
                const float slope = c < 2 ? slope_a : slope_b;
                const float s = row_ok && j <= qpos ? sc[n][c] * a.scale - slope * sqrtf((float)(qpos - j)) : -INFINITY;
                sc[n][c] = s;
                if (c < 2) mx_a = fmaxf(mx_a, s);
                else mx_b = fmaxf(mx_b, s);
            }
        online_softmax(sc, mx_a, mx_b, m_a, m_b, l_a, l_b, o);
        // O += P·V over the tile's two 16-key steps: the score tiles 2kk, 2kk + 1 are the A fragment (bf16 hi + lo).
#pragma unroll
        for (int kk = 0; kk < kPfKeys / 16; ++kk) {
            uint32_t hi[4], lo[4];
            p_fragments(sc, kk, hi, lo);
#pragma unroll
            for (int n = 0; n < D / 8; n += 2) {
                uint32_t b[4];  // b0, b1 of column tile n, then of n + 1
                ldmatrix_x4_trans(v_t + v_lane + (uint32_t)((16 * kk * kMmaRowWords + 4 * n) * 4), b[0], b[1], b[2], b[3]);
                mma_bf16_16816(o[n], hi[0], hi[1], hi[2], hi[3], b[0], b[1]);
                mma_bf16_16816(o[n], lo[0], lo[1], lo[2], lo[3], b[0], b[1]);
                mma_bf16_16816(o[n + 1], hi[0], hi[1], hi[2], hi[3], b[2], b[3]);
                mma_bf16_16816(o[n + 1], lo[0], lo[1], lo[2], lo[3], b[2], b[3]);
            }
        }
    }
    cp_async_wait<0>();  // no copy may still be landing when the block exits

#pragma unroll
    for (int off = 1; off <= 2; off <<= 1) {
        l_a += __shfl_xor_sync(0xffffffffu, l_a, off);
        l_b += __shfl_xor_sync(0xffffffffu, l_b, off);
    }
    if (row_ok) {
        uint16_t *out_a = a.out + (int64_t)tok * out_row + head_a * D, *out_b = a.out + (int64_t)tok * out_row + head_b * D;
#pragma unroll
        for (int n = 0; n < D / 8; ++n) {
            const int col = 8 * n + 2 * t;
            *reinterpret_cast<uint32_t *>(out_a + col) = (uint32_t)sa_f32_to_bf16(__fdiv_rn(o[n][0], l_a)) |
                                                         (uint32_t)sa_f32_to_bf16(__fdiv_rn(o[n][1], l_a)) << 16;
            *reinterpret_cast<uint32_t *>(out_b + col) = (uint32_t)sa_f32_to_bf16(__fdiv_rn(o[n][2], l_b)) |
                                                         (uint32_t)sa_f32_to_bf16(__fdiv_rn(o[n][3], l_b)) << 16;
        }
    }
    // Append the block's new k, v rows of this group (16-byte chunks) to the caches.
    for (int e = tid; e < 2 * n_tok * (D / 8); e += threads) {
        const int is_v = e >= n_tok * (D / 8), ti = (e % (n_tok * (D / 8))) / (D / 8), c = e % (D / 8);
        const uint4 val = reinterpret_cast<const uint4 *>(a.qkv + (int64_t)(t0 + ti) * qkv_row + a.n_heads * D +
                                                          is_v * kv_width + group * D)[c];
        reinterpret_cast<uint4 *>((is_v ? a.v_cache : a.k_cache) + (int64_t)(pos0 + t0 + ti) * kv_width + group * D)[c] = val;
    }
}

// A plain (coherent: written by the previous kernel) load that stays where it is written: the merge below requests
// the first splits' values together with *seq_len, and the compiler must not sink them past the branches on it.
__device__ __forceinline__ float ld_early(const float *p) {
    float v;
    asm volatile("ld.global.f32 %0, [%1];" : "=f"(v) : "l"(p));
    return v;
}

// One block per (token, head), one thread per output element. Warp 0 turns the splits' (max, sum) pairs into
// weights exp(m_s - M) in shared memory; then every thread sums its element over the splits.
// The loads go out early, right after the wait and together with *seq_len, as far as they are cheap: lane s of warp
// 0 requests split s's (max, sum) for the first 32 splits, and every thread its element of the first
// kEarlyPartials splits. So up to kEarlyPartials active splits (decode up to 128 keys) the merge costs one L2 round
// trip, up to 32 (1024 keys) two, beyond that three (*seq_len, then the pairs, then the partials). Early values of
// splits that turn out inactive are never used (their scratch may hold an earlier call's). Every path does the same
// arithmetic in the same order. Measured (kernels/NOTES.md): 32 early partials per thread cost more at 64 keys than
// they save, 4 do not.
#ifndef SA_ATTN_EARLY_PARTIALS  // 0 turns the early loads of the partials off (the A/B knob of NOTES.md)
#define SA_ATTN_EARLY_PARTIALS 4
#endif
#ifndef SA_ATTN_EARLY_PAIRS  // 0 or 32: the early (max, sum) loads of warp 0
#define SA_ATTN_EARLY_PAIRS 32
#endif
constexpr int kEarlyPartials = SA_ATTN_EARLY_PARTIALS, kEarlyPairs = SA_ATTN_EARLY_PAIRS;
static_assert(kEarlyPartials >= 0 && kEarlyPartials <= kEarlyPairs && (kEarlyPairs == 0 || kEarlyPairs == 32),
              "warp 0 holds one split's (max, sum) per lane, and the early partials need their pairs");
__global__ void attention_combine_kernel(AttnArgs a, int head_dim) {
    pdl_launch_dependents();
    pdl_wait();
    __shared__ float weight_s[kMaxSplits];
    __shared__ float sum_s;
    const int tok = blockIdx.x / a.n_heads, h = blockIdx.x % a.n_heads, d = threadIdx.x, lane = threadIdx.x % 32;
    uint16_t *dst = a.out + (int64_t)tok * a.n_heads * head_dim + h * head_dim + d;
    const float *partial_ml = a.partial_out + (int64_t)a.n_splits * a.n_new * a.n_heads * head_dim;
    const int64_t stride = (int64_t)a.n_new * a.n_heads;  // between splits, in (token, head) rows
    const int64_t row = (int64_t)tok * a.n_heads + h;
    float m_early = -INFINITY, l_early = 0.0f, o_early[kEarlyPartials + 1];  // +1: no zero-sized array
    if (kEarlyPairs > 0 && threadIdx.x < 32) {
        const int64_t at = (min(lane, a.n_splits - 1) * stride + row) * 2;  // inside the scratch layout
        m_early = ld_early(partial_ml + at);
        l_early = ld_early(partial_ml + at + 1);
    }
#pragma unroll
    for (int s = 0; s < kEarlyPartials; ++s)
        o_early[s] = ld_early(a.partial_out + (min(s, a.n_splits - 1) * stride + row) * head_dim + d);
    const int len = *a.seq_len;
    if (!seq_len_valid(len, a.n_new, a.max_ctx)) {
        *dst = kBf16NaN;
        return;
    }
    const int t0 = tok / a.tokens_per_block * a.tokens_per_block;
    const int pos0 = len - a.n_new;
    const int n_active = split_keys(pos0 + t0 + min(a.tokens_per_block, a.n_new - t0), a.n_splits,
                                    a.min_split_tiles, 0).active_splits;
    if (n_active == 1) return;  // that split's block wrote the output itself
    if (threadIdx.x < 32) {
        constexpr int kPerLane = kMaxSplits / 32;
        float m[kPerLane], l[kPerLane];
        const bool early = n_active <= kEarlyPairs;  // block-uniform
#pragma unroll
        for (int i = 0; i < kPerLane; ++i) {
            const int s = lane + 32 * i;
            m[i] = s >= n_active ? -INFINITY : early ? m_early : partial_ml[(s * stride + row) * 2];
            l[i] = s >= n_active ? 0.0f : early ? l_early : partial_ml[(s * stride + row) * 2 + 1];
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
    if (n_active <= kEarlyPartials) {
#pragma unroll
        for (int s = 0; s < kEarlyPartials; ++s) o = s < n_active ? fmaf(weight_s[s], o_early[s], o) : o;
    } else {
#pragma unroll 16
        for (int s = 0; s < n_active; ++s) o = fmaf(weight_s[s], a.partial_out[(s * stride + row) * head_dim + d], o);
    }
    *dst = sa_f32_to_bf16(__fdiv_rn(o, sum_s));
}

// A benchmark knob: the integer in environment variable `name` (at least `min`), or `fallback` when it is unset.
int env_knob(const char *name, int fallback, int min) {
    const char *env = std::getenv(name);
    return env && env[0] ? std::max(std::atoi(env), min) : fallback;
}

// Tiles per split at least (STEPAUDIO_ATTN_MIN_TILES, a benchmark knob; default `fallback`: kDefaultMinSplitTiles
// for attention_kernel, kMmaMinSplitTiles for attention_decode_mma_kernel).
int min_split_tiles(int fallback) {
    static const int env_tiles = env_knob("STEPAUDIO_ATTN_MIN_TILES", 0, 1);
    return env_tiles > 0 ? env_tiles : fallback;
}

// Splits per group at most on the tensor-core path: one working block per SM (attention_decode_mma_kernel's comment).
int mma_max_splits(int blocks_per_split) {
#ifdef SA_ATTN_MMA_MAX_SPLITS
    return SA_ATTN_MMA_MAX_SPLITS;
#else
    return std::max(1, sa_cuda::device_traits().sms / blocks_per_split);
#endif
}

// A short prompt's prefill (at most kSmallPrefillTokens new tokens, every key within kSmallPrefillKeys): one token per
// block and the group's heads sliced over SA_ATTN_PREFILL_SLICES blocks, instead of up to 5 tokens x 12 heads = 60
// queries in each of a dozen blocks, whose score loop then runs 5 query batches per warp back to back. The keys are
// a few tiles that every block reads from L2, so the extra reads cost little and the chain gets short (the seed
// form's 12-token prompt). Measured (H100, session 15, kernel_bench prefill, graph): the 12-token prefill 2.18 -> 1.72
// ms (W4A16) and 2.39 -> 1.89 ms (NF4); attention's share of it from ~20 to ~5 µs per layer (kernels/NOTES.md).
// 0: the old shape (the A/B knob; tests/gpu/prefill-split-run.sh).
#ifndef SA_ATTN_SMALL_PREFILL
#define SA_ATTN_SMALL_PREFILL 1
#endif
#ifndef SA_ATTN_PREFILL_SLICES
#define SA_ATTN_PREFILL_SLICES 3
#endif
// The shape's limits; STEPAUDIO_ATTN_SMALL_PREFILL_TOKENS / _KEYS move them. Measured (H100, session 16, kernel_bench
// prefill-attention, attention alone, µs, old shape -> this one): 24 tokens 14.96 -> 5.44, 32: 15.08 -> 5.65,
// 48: 18.48 -> 10.29, 64: 20.31 -> 13.58, 96: 21.80 -> 20.78, 128: 32.01 -> 30.94; beyond 128 keys it loses
// (200: 59.1 -> 62.2, 512: 220 -> 301). So up to 128 new tokens, every key within 128. At head_dim 64 with an even
// number of heads per group the tensor-core prefill takes every prefill from 32 tokens on first (below), so there
// this shape covers 2-31 tokens.
constexpr int kSmallPrefillTokens = 128, kSmallPrefillKeys = 128;

// Decode (one new token) of up to 16 heads per group of dim 64 runs on tensor cores (attention_decode_mma_kernel);
// 0 sends it to attention_kernel like everything else (the A/B knob).
#ifndef SA_ATTN_MMA
#define SA_ATTN_MMA 1
#endif

// A prefill of at least kMmaPrefillTokens new tokens, head_dim 64, an even number of at most 16 heads per group runs
// on tensor cores (attention_prefill_mma_kernel), ahead of the short-prefill shape. 0 sends it to the shapes below
// (the A/B knob; STEPAUDIO_ATTN_MMA_PREFILL=0 does the same at run time). Measured (H100, session 17, kernel_bench
// prefill-attention, attention alone, µs, the other shape -> tensor cores): 32 tokens 5.67 -> 4.23, 64: 13.66 -> 5.19,
// 128: 31.11 -> 7.34, 512: 220.45 -> 26.23, 1000: 634.98 -> 69.93, 2000: 2110 -> 203; 64 new after 1984 earlier:
// 194.5 -> 65.6 (kernels/NOTES.md). Below 32 tokens its few blocks (4 per 8 tokens) would each stream a long
// history alone, where attention_kernel splits the keys; the short shape stays there (~5 µs).
#ifndef SA_ATTN_MMA_PREFILL
#define SA_ATTN_MMA_PREFILL 1
#endif
constexpr int kMmaPrefillTokens = 32;

template <int D>
sa_status launch_attention(const AttnArgs &a, dim3 grid, int accumulators, cudaStream_t stream) {
    if (accumulators <= 8) return sa_cuda::launch_pdl("attention_kernel<8>", &attention_kernel<D, 8>, grid, dim3(kThreads), 0, stream, a);
    return sa_cuda::launch_pdl("attention_kernel<32>", &attention_kernel<D, 32>, grid, dim3(kThreads), 0, stream, a);
}

}  // namespace

SA_API sa_status sa_cuda_attention_bf16(const sa_attn_shape *shape, const uint16_t *qkv, uint16_t *k_cache,
                                        uint16_t *v_cache, const int32_t *seq_len, const float *slopes, uint16_t *out,
                                        float *workspace, int64_t workspace_bytes, void *stream) {
    SA_GUARD_BEGIN
    using namespace sa_cuda;
    if (!shape || !qkv || !k_cache || !v_cache || !seq_len || !slopes || !out)
        return invalid("sa_cuda_attention_bf16: null pointer");
    if (workspace_bytes < 0 || (workspace_bytes > 0 && !workspace) || (workspace && !aligned16(workspace)))
        return invalid("sa_cuda_attention_bf16: the workspace must be 16-byte aligned, workspace_bytes >= 0 (" +
                       std::to_string(workspace_bytes) + ") and non-NULL when workspace_bytes > 0");
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
    cudaStream_t s = as_stream(stream);

    AttnArgs a{};
    a.qkv = qkv;
    a.k_cache = k_cache;
    a.v_cache = v_cache;
    a.seq_len = seq_len;
    a.slopes = slopes;
    a.out = out;
    a.partial_out = workspace;
    a.n_heads = H;
    a.n_kv = G;
    a.n_new = T;
    a.max_ctx = shape->max_ctx;
    a.scale = 1.0f / std::sqrt((float)D);  // the CPU reference's scale, bit for bit
    const bool mma = SA_ATTN_MMA && T == 1 && D == 64 && hpg <= 16;
    static const int small_tokens = env_knob("STEPAUDIO_ATTN_SMALL_PREFILL_TOKENS", kSmallPrefillTokens, 0);
    static const int small_keys = env_knob("STEPAUDIO_ATTN_SMALL_PREFILL_KEYS", kSmallPrefillKeys, 0);
    static const int mma_prefill_on = env_knob("STEPAUDIO_ATTN_MMA_PREFILL", SA_ATTN_MMA_PREFILL, 0);
    const bool mma_prefill =
        mma_prefill_on && T >= kMmaPrefillTokens && D == 64 && hpg % 2 == 0 && hpg <= 2 * kPfMaxWarps;
    if (mma_prefill)
        return launch_pdl("attention_prefill_mma_kernel", &attention_prefill_mma_kernel<64>,
                          dim3((T + kPfTokens - 1) / kPfTokens, G), dim3(32 * (hpg / 2)), 0, s, a);
    const bool small_prefill = SA_ATTN_SMALL_PREFILL && !mma && T > 1 && T <= small_tokens && shape->max_ctx <= small_keys;
    a.tokens_per_block = small_prefill ? 1 : std::min({T, kMaxQueries / hpg, kMaxQueryElems / (hpg * D)});
    const int token_blocks = (T + a.tokens_per_block - 1) / a.tokens_per_block;
    // Splits of the key range: enough blocks to fill the GPU at long context, no more than a full cache can give
    // min_split_tiles tiles each, and the partials must fit the workspace (none: one split). The device uses only as
    // many as *seq_len needs.
    a.min_split_tiles = min_split_tiles(mma ? kMmaMinSplitTiles : kDefaultMinSplitTiles);
    const int64_t partial_per_split = (int64_t)T * H * (D + 2);
    const int64_t cache_tiles = (shape->max_ctx + kKeyTile - 1) / kKeyTile;
    int splits = (kTargetBlocks + token_blocks * G - 1) / (token_blocks * G);
    splits = std::min<int64_t>(splits, mma ? mma_max_splits(token_blocks * G) : kMaxSplits);
    splits = std::min<int64_t>(splits, (cache_tiles + a.min_split_tiles - 1) / a.min_split_tiles);
    splits = (int)std::min<int64_t>(splits, std::min(workspace_bytes / 4, kWorkspaceFloats) / partial_per_split);
    a.n_splits = std::max(splits, 1);

    a.head_slices = small_prefill ? SA_ATTN_PREFILL_SLICES : SA_ATTN_HEAD_SLICES;
    // Blocks per (token block, group): one per split, or more where the heads are sliced beyond the splits.
    const dim3 grid(token_blocks, G, small_prefill ? std::max(a.n_splits, a.head_slices) : a.n_splits);
    const int accumulators = (a.tokens_per_block * hpg * D + kThreads - 1) / kThreads;
    sa_status st = mma ? launch_pdl("attention_decode_mma_kernel", &attention_decode_mma_kernel<64>, grid, dim3(kMmaThreads), 0, s, a)
                 : D == 32 ? launch_attention<32>(a, grid, accumulators, s)
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
