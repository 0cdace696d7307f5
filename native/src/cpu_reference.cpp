// cpu_reference.cpp — the plain, obviously-correct Step1 kernels. They define what "right" means for every GPU
// kernel (tests compare against them) and run the CPU backend. Loops are written for clarity; fp32 accumulation,
// bf16 storage at the same points as the PyTorch reference (spec §1.3).
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "cpu_linear.h"
#include "errors.h"
#include "sa_numeric.h"
#include "stepaudio_native.h"

using sa::fail;

static inline float silu(float x) { return x / (1.0f + std::exp(-x)); }

SA_API sa_status sa_cpu_embed_bf16(const uint16_t *table, int64_t vocab, int32_t dim, const int32_t *ids, int32_t n,
                                   uint16_t *out) {
    if (!table || !ids || !out || vocab <= 0 || dim <= 0 || n < 0)
        return fail(SA_E_INVALID_ARGUMENT, "sa_cpu_embed_bf16: bad arguments");
    for (int32_t i = 0; i < n; ++i) {
        if (ids[i] < 0 || ids[i] >= vocab)
            return fail(SA_E_INVALID_ARGUMENT, "token id " + std::to_string(ids[i]) + " is outside the vocabulary [0, " +
                                                   std::to_string(vocab) + ")");
        std::copy_n(table + (int64_t)ids[i] * dim, dim, out + (int64_t)i * dim);
    }
    return SA_OK;
}

SA_API sa_status sa_cpu_rmsnorm_bf16(const uint16_t *x, const uint16_t *w, uint16_t *out, int32_t rows, int32_t dim,
                                     float eps) {
    if (!x || !w || !out || rows < 0 || dim <= 0) return fail(SA_E_INVALID_ARGUMENT, "sa_cpu_rmsnorm_bf16: bad arguments");
    for (int32_t r = 0; r < rows; ++r) {
        const uint16_t *xr = x + (int64_t)r * dim;
        float sum_sq = 0.0f;
        for (int32_t i = 0; i < dim; ++i) {
            float v = sa_bf16_to_f32(xr[i]);
            sum_sq += v * v;
        }
        float inv = 1.0f / std::sqrt(sum_sq / (float)dim + eps);
        for (int32_t i = 0; i < dim; ++i) {
            float normed = sa_round_bf16(sa_bf16_to_f32(xr[i]) * inv);  // x * rsqrt(var+eps) cast back to bf16
            out[(int64_t)r * dim + i] = sa_f32_to_bf16(normed * sa_bf16_to_f32(w[i]));
        }
    }
    return SA_OK;
}

SA_API sa_status sa_cpu_linear_bf16(const uint16_t *x, const uint16_t *w, uint16_t *y, int32_t m, int32_t n, int32_t k) {
    if (!x || !w || !y || m < 0 || n <= 0 || k <= 0) return fail(SA_E_INVALID_ARGUMENT, "sa_cpu_linear_bf16: bad arguments");
    sa::linear_from_rows(x, y, m, n, k, [&](int32_t j, float *row) {
        const uint16_t *wr = w + (int64_t)j * k;
        for (int32_t i = 0; i < k; ++i) row[i] = sa_bf16_to_f32(wr[i]);
    });
    return SA_OK;
}

SA_API sa_status sa_cpu_swiglu_bf16(const uint16_t *gate_up, uint16_t *out, int32_t m, int32_t f) {
    if (!gate_up || !out || m < 0 || f <= 0) return fail(SA_E_INVALID_ARGUMENT, "sa_cpu_swiglu_bf16: bad arguments");
    for (int32_t r = 0; r < m; ++r)
        for (int32_t i = 0; i < f; ++i) {
            float g = sa_bf16_to_f32(gate_up[(int64_t)r * 2 * f + i]);
            float u = sa_bf16_to_f32(gate_up[(int64_t)r * 2 * f + f + i]);
            out[(int64_t)r * f + i] = sa_f32_to_bf16(sa_round_bf16(silu(g)) * u);
        }
    return SA_OK;
}

SA_API sa_status sa_cpu_add_bf16(uint16_t *x, const uint16_t *y, int64_t n) {
    if (!x || !y || n < 0) return fail(SA_E_INVALID_ARGUMENT, "sa_cpu_add_bf16: bad arguments");
    for (int64_t i = 0; i < n; ++i) x[i] = sa_f32_to_bf16(sa_bf16_to_f32(x[i]) + sa_bf16_to_f32(y[i]));
    return SA_OK;
}

SA_API sa_status sa_cpu_add_rmsnorm_bf16(uint16_t *x, const uint16_t *y, const uint16_t *w, uint16_t *out, int32_t rows,
                                         int32_t dim, float eps) {
    if (!x || !y || !w || !out || rows < 0 || dim <= 0 || out == x || out == y)
        return fail(SA_E_INVALID_ARGUMENT, "sa_cpu_add_rmsnorm_bf16: bad arguments (null, negative size or out aliasing x/y)");
    const sa_status st = sa_cpu_add_bf16(x, y, (int64_t)rows * dim);
    if (st != SA_OK) return st;
    return sa_cpu_rmsnorm_bf16(x, w, out, rows, dim, eps);
}

SA_API sa_status sa_cpu_norm_fold_out(const uint16_t *h, const uint16_t *w, uint16_t *out, float *sumsq, int32_t rows,
                                      int32_t dim) {
    if (!h || !w || !out || !sumsq || rows < 0 || dim <= 0 || dim % 16 != 0 || out == h)
        return fail(SA_E_INVALID_ARGUMENT, "sa_cpu_norm_fold_out: bad arguments (null, dim not a multiple of 16, or out aliasing h)");
    for (int32_t r = 0; r < rows; ++r) {
        const uint16_t *hr = h + (int64_t)r * dim;
        for (int32_t j = 0; j < dim / 16; ++j) {
            float part = 0.0f;
            for (int32_t i = 16 * j; i < 16 * j + 16; ++i) {
                const float v = sa_bf16_to_f32(hr[i]);
                part += v * v;
                out[(int64_t)r * dim + i] = sa_f32_to_bf16(v * sa_bf16_to_f32(w[i]));
            }
            sumsq[(int64_t)r * (dim / 16) + j] = part;
        }
    }
    return SA_OK;
}

SA_API sa_status sa_cpu_norm_fold_in(uint16_t *y, const float *sumsq, int32_t rows, int32_t n, int32_t k, float eps) {
    if (!y || !sumsq || rows < 0 || n <= 0 || k <= 0 || k % 16 != 0)
        return fail(SA_E_INVALID_ARGUMENT, "sa_cpu_norm_fold_in: bad arguments (null, or k not a multiple of 16)");
    for (int32_t r = 0; r < rows; ++r) {
        float sum_sq = 0.0f;
        for (int32_t j = 0; j < k / 16; ++j) sum_sq += sumsq[(int64_t)r * (k / 16) + j];
        const float inv = 1.0f / std::sqrt(sum_sq / (float)k + eps);  // as sa_cpu_rmsnorm_bf16
        for (int32_t i = 0; i < n; ++i) {
            uint16_t &v = y[(int64_t)r * n + i];
            v = sa_f32_to_bf16(sa_bf16_to_f32(v) * inv);
        }
    }
    return SA_OK;
}

SA_API sa_status sa_cpu_attention_bf16(const sa_attn_shape *s, const uint16_t *qkv, uint16_t *k_cache, uint16_t *v_cache,
                                       const int32_t *seq_len, const float *slopes, uint16_t *out) {
    if (!s || !qkv || !k_cache || !v_cache || !seq_len || !slopes || !out)
        return fail(SA_E_INVALID_ARGUMENT, "sa_cpu_attention_bf16: null pointer");
    const int H = s->n_heads, G = s->n_kv_heads, D = s->head_dim, T = s->n_new;
    if (H <= 0 || G <= 0 || D <= 0 || T < 0 || H % G != 0)
        return fail(SA_E_INVALID_ARGUMENT, "sa_cpu_attention_bf16: heads must be a positive multiple of KV groups");
    const int len = *seq_len, pos0 = len - T;
    if (pos0 < 0 || len > s->max_ctx)
        return fail(SA_E_INVALID_ARGUMENT, "attention: sequence length " + std::to_string(len) +
                                               " does not fit the KV cache of " + std::to_string(s->max_ctx) + " tokens");
    const int kv_width = G * D, row = (H + 2 * G) * D, heads_per_group = H / G;
    for (int t = 0; t < T; ++t) {
        std::copy_n(qkv + (int64_t)t * row + H * D, kv_width, k_cache + (int64_t)(pos0 + t) * kv_width);
        std::copy_n(qkv + (int64_t)t * row + H * D + kv_width, kv_width, v_cache + (int64_t)(pos0 + t) * kv_width);
    }
    const float scale = 1.0f / std::sqrt((float)D);
    std::vector<float> scores(len), acc(D);
    for (int t = 0; t < T; ++t) {
        const int p = pos0 + t;
        for (int h = 0; h < H; ++h) {
            const int g = h / heads_per_group;
            const uint16_t *q = qkv + (int64_t)t * row + h * D;
            float mx = -std::numeric_limits<float>::infinity();
            for (int j = 0; j <= p; ++j) {
                const uint16_t *kj = k_cache + (int64_t)j * kv_width + g * D;
                float dot = 0.0f;
                for (int d = 0; d < D; ++d) dot += sa_bf16_to_f32(q[d]) * sa_bf16_to_f32(kj[d]);
                scores[j] = dot * scale - slopes[h] * std::sqrt((float)(p - j));
                mx = std::max(mx, scores[j]);
            }
            float sum = 0.0f;
            for (int j = 0; j <= p; ++j) {
                scores[j] = std::exp(scores[j] - mx);
                sum += scores[j];
            }
            std::fill(acc.begin(), acc.end(), 0.0f);
            for (int j = 0; j <= p; ++j) {
                const uint16_t *vj = v_cache + (int64_t)j * kv_width + g * D;
                for (int d = 0; d < D; ++d) acc[d] += scores[j] * sa_bf16_to_f32(vj[d]);
            }
            for (int d = 0; d < D; ++d) out[(int64_t)t * H * D + h * D + d] = sa_f32_to_bf16(acc[d] / sum);
        }
    }
    return SA_OK;
}

SA_API sa_status sa_cpu_sample_bf16(const uint16_t *logits, int32_t vocab, const int32_t *history, int32_t history_len,
                                    const sa_sample_params *p, uint64_t step, int32_t *out_id) {
    if (!logits || vocab <= 0 || (!history && history_len > 0) || history_len < 0 || !p || !out_id)
        return fail(SA_E_INVALID_ARGUMENT, "sa_cpu_sample_bf16: bad arguments");
    const float neg_inf = -std::numeric_limits<float>::infinity();
    std::vector<float> s(vocab);
    for (int32_t i = 0; i < vocab; ++i) s[i] = sa_bf16_to_f32(logits[i]);
    // RepetitionAwareLogitsProcessor: ban the last id if it occurs more than 10% of the last `window` ids.
    const int32_t window = p->repetition_window;
    if (window > 0 && history_len >= window) {
        const int32_t last = history[history_len - 1];
        int32_t count = 0;
        for (int32_t i = history_len - window; i < history_len; ++i) count += history[i] == last;
        if ((float)count / (float)window > 0.1f && last >= 0 && last < vocab) s[last] = neg_inf;
    }
    const bool greedy = p->temperature <= 0.0f || p->top_k == 1;
    if (greedy) {
        int32_t best = 0;
        for (int32_t i = 1; i < vocab; ++i)
            if (s[i] > s[best]) best = i;
        *out_id = best;
        return SA_OK;
    }
    for (float &v : s) v /= p->temperature;
    // HF TopKLogitsWarper: drop every score below the k-th largest (ties with it are kept).
    if (p->top_k > 0 && p->top_k < vocab) {
        std::vector<float> sorted(s);
        std::nth_element(sorted.begin(), sorted.begin() + (p->top_k - 1), sorted.end(), std::greater<float>());
        const float kth = sorted[p->top_k - 1];
        for (float &v : s)
            if (v < kth) v = neg_inf;
    }
    float mx = neg_inf;
    for (float v : s) mx = std::max(mx, v);
    float total = 0.0f;
    for (float &v : s) {
        v = (v == neg_inf) ? 0.0f : std::exp(v - mx);
        total += v;
    }
    // Inverse CDF in id order with the counter-based draw.
    const float target = sa_uniform_draw(p->seed, step) * total;
    float acc = 0.0f;
    int32_t chosen = -1;
    for (int32_t i = 0; i < vocab; ++i) {
        if (s[i] == 0.0f) continue;
        acc += s[i];
        chosen = i;
        if (acc > target) break;
    }
    if (chosen < 0) return fail(SA_E_INVALID_ARGUMENT, "sampling: every logit is -inf or NaN");
    *out_id = chosen;
    return SA_OK;
}
