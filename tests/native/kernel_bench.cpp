// kernel_bench.cpp — micro-benchmark of the CUDA kernels (not a test): each linear at the Step1 shapes, decode
// attention and the sampler. Every timing replays a CUDA graph of 10 launches (as the decode step will run),
// rotating over enough weight copies that L2 (50 MB) cannot hold them; the median of 60 replays is reported.
// Bandwidth counts the bytes of W + x + y once; the reference is the measured device-to-device copy rate.
#include <cuda_runtime.h>
#include <dlfcn.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "stepaudio_native.h"

namespace {

void ok(cudaError_t e, const char *what) {
    if (e != cudaSuccess) {
        std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorName(e));
        std::exit(1);
    }
}
void sa_ok(sa_status s, const char *what) {
    if (s != SA_OK) {
        std::fprintf(stderr, "%s: %s\n", what, sa_last_error());
        std::exit(1);
    }
}

constexpr int kLaunchesPerGraph = 10, kSamples = 60;

// Sorted ms of `samples` runs of work() on `stream`, each bracketed by events, after `warmup` runs that are not kept;
// before() runs (untimed) ahead of every run.
std::vector<double> timed_ms(cudaStream_t stream, int warmup, int samples, const std::function<void()> &work,
                             const std::function<void()> &before = [] {}) {
    cudaEvent_t a, b;
    ok(cudaEventCreate(&a), "event");
    ok(cudaEventCreate(&b), "event");
    std::vector<double> ms;
    for (int i = 0; i < warmup + samples; ++i) {
        before();
        ok(cudaEventRecord(a, stream), "event record");
        work();
        ok(cudaEventRecord(b, stream), "event record");
        ok(cudaEventSynchronize(b), "sync");
        float t = 0;
        ok(cudaEventElapsedTime(&t, a, b), "elapsed time");
        if (i >= warmup) ms.push_back(t);
    }
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    std::sort(ms.begin(), ms.end());
    return ms;
}

// Median µs of one launch of `launch(i)` (i = launch index, for rotation), timed as graph replays.
double time_graph(cudaStream_t stream, const std::function<void(int)> &launch) {
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    ok(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), "begin capture");
    for (int i = 0; i < kLaunchesPerGraph; ++i) launch(i);
    ok(cudaStreamEndCapture(stream, &graph), "end capture");
    ok(cudaGraphInstantiate(&exec, graph, 0), "instantiate");
    const auto ms = timed_ms(stream, 3, kSamples, [&] { ok(cudaGraphLaunch(exec, stream), "graph launch"); });
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    return 1000.0 * ms[ms.size() / 2] / kLaunchesPerGraph;
}

double copy_bandwidth_gbs(cudaStream_t stream) {
    const size_t bytes = size_t(1) << 30;
    void *src, *dst;
    ok(cudaMalloc(&src, bytes), "malloc");
    ok(cudaMalloc(&dst, bytes), "malloc");
    cudaMemset(src, 1, bytes);
    // Timed eagerly (a memcpy node inside a graph may go to a copy engine, which is slower than the SMs).
    const auto samples = timed_ms(stream, 2, 10, [&] { cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream); });
    const double us = 1000.0 * samples[samples.size() / 2];
    cudaFree(src);
    cudaFree(dst);
    return 2.0 * bytes / (us * 1e3);
}

// Weight format of the layers' linears in the decode step (lm_head stays bf16, as in the quantized checkpoints).
// w4a16: symmetric (no zero codes), bf16 scales; w4a16-awq: zero codes and fp16 scales, as AWQ / GPTQ checkpoints.
enum class Weights { bf16, w4a16, w4a16_awq, nf4 };
const char *weights_name(Weights w) {
    return w == Weights::bf16 ? "bf16" : w == Weights::w4a16 ? "w4a16" : w == Weights::w4a16_awq ? "w4a16-awq" : "nf4";
}

// One N x K linear of a layer in the chosen format; constant-pattern contents (the speed does not depend on them).
// NF4: double quant, the bitsandbytes default.
struct DecodeLinear {
    Weights format;
    int n, k;
    void *w = nullptr, *scales = nullptr;  // bf16 W | W4A16 codes + scales | NF4 codes + absmax codes
    uint8_t *zeros = nullptr;              // W4A16 zero codes (w4a16-awq)
    float *tables = nullptr;               // NF4 quant map, nested map, nested (scale, offset) pairs
    DecodeLinear(Weights f, int n_, int k_) : format(f), n(n_), k(k_) {
        const size_t elems = (size_t)n * k;
        if (format == Weights::bf16) {
            ok(cudaMalloc(&w, elems * 2), "malloc");
            cudaMemset(w, 0x3c, elems * 2);  // bf16 0x3c3c ~ 0.0115
        } else if (format == Weights::w4a16 || format == Weights::w4a16_awq) {
            const size_t groups = elems / SA_W4A16_GROUP;
            ok(cudaMalloc(&w, elems / 2), "malloc");
            cudaMemset(w, 0x9a, elems / 2);  // codes 9 and 10: weights 1 and 2 scales (zero code 8)
            ok(cudaMalloc(&scales, groups * 2), "malloc");
            cudaMemset(scales, format == Weights::w4a16 ? 0x3c : 0x20, groups * 2);  // bf16 0.0115 | fp16 0.0081
            if (format == Weights::w4a16_awq) {
                ok(cudaMalloc(&zeros, groups), "malloc");
                cudaMemset(zeros, 8, groups);
            }
        } else {
            const size_t blocks = elems / 64, pairs = (blocks + 255) / 256;
            ok(cudaMalloc(&w, elems / 2), "malloc");
            cudaMemset(w, 0x9a, elems / 2);
            ok(cudaMalloc(&scales, blocks), "malloc");
            cudaMemset(scales, 0x90, blocks);
            std::vector<float> t(16 + 256 + 2 * pairs);
            for (int i = 0; i < 16; ++i) t[i] = (i - 7.5f) / 7.5f;
            for (int i = 0; i < 256; ++i) t[16 + i] = (i - 127.5f) / 128.0f;
            for (size_t p = 0; p < pairs; ++p) t[272 + 2 * p] = 0.02f, t[273 + 2 * p] = 0.01f;
            ok(cudaMalloc(&tables, t.size() * 4), "malloc");
            cudaMemcpy(tables, t.data(), t.size() * 4, cudaMemcpyHostToDevice);
        }
    }
    DecodeLinear(const DecodeLinear &) = delete;
    DecodeLinear &operator=(const DecodeLinear &) = delete;
    ~DecodeLinear() { cudaFree(w), cudaFree(scales), cudaFree(zeros), cudaFree(tables); }
    // epilogue: SA_EPILOGUE_*; fold: a folded RMSNorm or nullptr.
    // m: rows (tokens) of x and y.
    void run(const uint16_t *x, uint16_t *y, cudaStream_t stream, const char *what, int epilogue = SA_EPILOGUE_STORE,
             const sa_norm_fold *fold = nullptr, int m = 1) const {
        if (format == Weights::bf16) sa_ok(sa_cuda_linear_bf16(x, (const uint16_t *)w, y, m, n, k, epilogue, fold, stream), what);
        else if (format == Weights::w4a16 || format == Weights::w4a16_awq)
            sa_ok(sa_cuda_linear_w4a16(x, (const uint32_t *)w, (const uint16_t *)scales, zeros,
                                       zeros ? SA_W4A16_FP16_SCALES : 0, y, m, n, k, epilogue, fold, stream), what);
        else sa_ok(sa_cuda_linear_nf4(x, (const uint8_t *)w, scales, tables, 1, y, m, n, k, epilogue, fold, stream), what);
    }
};

// ---- the step timeline (`kernel_bench trace [formats]`; needs a library built with -DSA_TRACE=1) ----
// Each block's thread 0 records when it started and when its pdl_wait returned (kernels/cuda_common.cuh). No block of
// launch i + 1 starts before all of launch i's have, so in start order a launch's blocks are contiguous and a launch
// ends where the next grid's shape begins. The first block of launch i + 1 to be released marks when launch i was
// complete, so c(i) = release(i + 1) − release(i) is what launch i adds to the step's critical path.
struct TraceRecord {
    unsigned long long start, released;
    uint32_t sm, shape;
};
using TraceAttach = int32_t (*)(void *, unsigned *, unsigned);
bool g_trace = false;

// head: the launches before the layers (the folded step: embed and layer 0's input norm; the unfused: embed).
void print_timeline(std::vector<TraceRecord> recs, int layers, int per_layer_guess, int head) {
    std::sort(recs.begin(), recs.end(), [](const TraceRecord &a, const TraceRecord &b) { return a.start < b.start; });
    struct Launch {
        uint32_t shape;
        int blocks = 0;
        unsigned long long first_start = ~0ull, last_start = 0, release = ~0ull, last_release = 0;
    };
    std::vector<Launch> ls;
    for (const auto &r : recs) {
        if (ls.empty() || ls.back().shape != r.shape) ls.push_back({r.shape});
        Launch &l = ls.back();
        ++l.blocks;
        l.first_start = std::min(l.first_start, r.start);
        l.last_start = std::max(l.last_start, r.start);
        l.release = std::min(l.release, r.released);
        l.last_release = std::max(l.last_release, r.released);
    }
    const size_t n = ls.size();
    std::printf("timeline: %zu records, %zu launches, release of the first to the last %.1f us\n", recs.size(), n,
                n ? (ls.back().release - ls.front().release) / 1e3 : 0.0);
    auto c = [&](size_t i) { return i + 1 < n ? (ls[i + 1].release - ls[i].release) / 1e3 : 0.0; };
    auto shape = [](uint32_t s) { return std::to_string(s & 0xfffff) + "x" + std::to_string(s >> 20) + "w"; };
    // Per position in the layer: the launches after the first `head`, if they repeat. The launches per layer: what
    // the count says (4 outside the layers: `head` before; lm_head, the sampler and, unfused, the final norm after),
    // else the guess.
    const int per = n > 4 && (n - 4) % layers == 0 ? (int)(n - 4) / layers : per_layer_guess;
    if ((int)n >= head + per * layers) {
        std::printf("%-4s %-12s %10s %10s %10s %12s %12s\n", "pos", "grid", "c mean us", "c min", "c max",
                    "early us", "late-start us");
        double total = 0;
        for (int j = 0; j < per; ++j) {
            double sum = 0, lo = 1e30, hi = 0, early = 0, late = 0;
            for (int l = 0; l < layers; ++l) {
                const size_t i = head + (size_t)l * per + j;
                const double v = c(i);
                sum += v, lo = std::min(lo, v), hi = std::max(hi, v);
                early += (double)(ls[i].release - std::min(ls[i].release, ls[i].first_start)) / 1e3;  // resident before release
                late += (double)(ls[i].last_start - std::min(ls[i].last_start, ls[i].release)) / 1e3;  // blocks starting after
            }
            total += sum;
            std::printf("%-4d %-12s %10.2f %10.2f %10.2f %12.2f %12.2f\n", j, shape(ls[head + j].shape).c_str(),
                        sum / layers, lo, hi, early / layers, late / layers);
        }
        std::printf("layers: %.1f us of the step; before: ", total / 1e0);
        for (int i = 0; i < head; ++i) std::printf("%s %.2f us  ", shape(ls[i].shape).c_str(), c(i));
        std::printf("\nafter: ");
        for (size_t i = head + (size_t)per * layers; i < n; ++i) std::printf("%s %.2f us  ", shape(ls[i].shape).c_str(), c(i));
        std::printf("(the last launch's own time is not seen)\n");
    } else {
        for (size_t i = 0; i < n; ++i) std::printf("  %3zu %-12s %5d blocks c %.2f us\n", i, shape(ls[i].shape).c_str(), ls[i].blocks, c(i));
    }
}

// The Step1 decode step exactly as Step1Model.Forward + Generator issue it (embed, 32 layers, final norm, lm_head,
// greedy sampler), captured once as a CUDA graph and replayed; weights are constant patterns (the speed does not
// depend on their values). Fusion::add_norm: the residual add and the next RMSNorm as one kernel; Fusion::none: the
// separate add + rmsnorm of an earlier version; Fusion::epilogues: the residual adds in the o / down epilogues and
// SwiGLU in the gate_up epilogue, the RMSNorms as their own kernels (7 launches per layer); Fusion::folded: also
// the RMSNorms folded into the linears around them (sa_norm_fold; 5 launches per layer, only layer 0's input norm a
// kernel) — the model's decode path. weights: the format of the layers' qkv / o / gate_up / down (lm_head
// is bf16). The context is *seq_len, fixed during the replays. Returns ms/token (median of 40 replays, one graph
// launch each).
// StepShape::tokens > 1: a prompt's prefill as Step1Model.PrefillHistory runs it — `tokens` new tokens, attention
// sized for exactly `context` keys (the prompt), lm_head on the last row, then the sampler (the prompt's first token).
// Up to 16 tokens through the same folded layers at M = tokens (Fusion::folded); 17-64 tokens through the model's
// unfused path (Fusion::add_norm: the residual add fused with the next RMSNorm, a separate SwiGLU, the linears over
// 16-row slices or on the prefill GEMM). StepShape::eager: also time the same launches issued one by one on the
// stream (the model's prefill is not a graph), so graph vs eager shows the launch gaps.
enum class Fusion { none, add_norm, epilogues, folded };
const char *fusion_name(Fusion f) {
    return f == Fusion::none ? "unfused" : f == Fusion::add_norm ? "add+norm" : f == Fusion::epilogues ? "epilog" : "folded";
}

// Ablation (`kernel_bench ablate`): parts of the folded step left out, to see what each adds to the critical path.
enum Skip : unsigned { kSkipNone = 0, kSkipAttention = 1, kSkipQkv = 2, kSkipO = 4, kSkipGateUp = 8, kSkipDown = 16,
                       kSkipLmHead = 32, kSkipSampler = 64 };

// A comma-separated list of integers in min..65536 from the environment variable `name`, or `defaults` when it is
// unset or empty. A value that does not parse ends the program with a message naming the variable (exit 2).
std::vector<int> env_int_list(const char *name, std::vector<int> defaults, int min) {
    const char *env = std::getenv(name);
    if (!env || !env[0]) return defaults;
    std::vector<int> values;
    for (const char *c = env; *c;) {
        char *end;
        const long v = std::strtol(c, &end, 10);
        if (end == c || v < min || v > 65536) {
            std::fprintf(stderr, "%s: \"%s\" is not a comma-separated list of integers %d..65536\n", name, env, min);
            std::exit(2);
        }
        values.push_back((int)v);
        c = *end == ',' ? end + 1 : end;
    }
    return values;
}

// The attention sizes of the model's decode graphs below the whole cache (Step1Model.DecodeGraphSizes): a sequence
// decodes with the graph of the smallest size that holds it, whose attention launches only the splits that size
// needs. STEPAUDIO_BENCH_GRAPH_SIZES="64,512" sets others, "0" none (one graph for the whole cache, as before
// session 12).
std::vector<int> decode_graph_sizes() {
    std::vector<int> sizes;
    for (int v : env_int_list("STEPAUDIO_BENCH_GRAPH_SIZES", {64}, 0))
        if (v > 0) sizes.push_back(v);
    return sizes;
}

// The decode contexts to time: STEPAUDIO_BENCH_CONTEXTS="64,300,2100" or the defaults.
std::vector<int> bench_contexts(std::vector<int> defaults) {
    return env_int_list("STEPAUDIO_BENCH_CONTEXTS", std::move(defaults), 1);
}

// StepShape::sequences (`kernel_bench batch`): the `tokens` rows are that many independent sequences decoded in
// lockstep, each one new token at `context` keys in a KV cache of its own — what batched decoding for a server would
// run. The linears take all rows at once (M = sequences, the folded path: at most 16); attention, which the library
// runs for one sequence per launch, is launched per sequence on forked streams (one graph branch each), and so is
// the sampler; lm_head computes every row. A batched attention kernel (one launch for all sequences) does not exist
// yet, so these figures bound batched decoding from below.
struct StepShape {
    int tokens = 1;
    bool eager = false;
    bool sequences = false;
};

double decode_step_ms(cudaStream_t stream, Fusion fusion, int context, Weights weights = Weights::bf16,
                      unsigned skip = kSkipNone, StepShape step_shape = {}) {
    const bool fused = fusion == Fusion::add_norm;
    const int T = step_shape.tokens;
    const bool batch = step_shape.sequences;
    const int S = batch ? T : 1;  // sequences, each with its own cache, length, history, sampler state and logits
    const bool prefill_shape = fusion == Fusion::folded ? T <= 16 : fusion == Fusion::add_norm ? T <= 64 && !batch : T == 1;
    if (T < 1 || (!batch && T > context) || !prefill_shape || (batch && step_shape.eager)) {
        std::fprintf(stderr, "decode_step_ms: %d tokens at context %d (1..16 tokens folded, 1..64 add+norm, else 1; "
                     "1..16 sequences folded, graph only)\n", T, context);
        std::exit(2);
    }
    // The cache holds 4096 tokens (the figures of every session), more only for a longer context.
    const int H = 48, G = 4, D = 64, hidden = 3072, inter = 8192, vocab = 74752, layers = 32;
    const int max_ctx = std::max(4096, context + 128);
    const int qkv_n = (H + 2 * G) * D, kvw = G * D;
    const float eps = 1e-5f;
    struct Layer {
        uint16_t *in_norm, *post_norm, *kc, *vc;
        std::unique_ptr<DecodeLinear> qkv, o, gate_up, down;
    };
    auto alloc = [](size_t elems, int byte) {
        uint16_t *p;
        ok(cudaMalloc(&p, elems * 2), "malloc");
        cudaMemset(p, byte, elems * 2);
        return p;
    };
    std::vector<Layer> ls(layers);
    for (auto &l : ls) {
        l.in_norm = alloc(hidden, 0x3f);  // bf16 0x3f3f ~ 0.75
        l.post_norm = alloc(hidden, 0x3f);
        l.qkv = std::make_unique<DecodeLinear>(weights, qkv_n, hidden);
        l.o = std::make_unique<DecodeLinear>(weights, hidden, H * D);
        l.gate_up = std::make_unique<DecodeLinear>(weights, 2 * inter, hidden);
        l.down = std::make_unique<DecodeLinear>(weights, hidden, inter);
        l.kc = alloc((size_t)S * max_ctx * kvw, 0x3c);  // bf16 0x3c3c ~ 0.0115; sequence s at s · max_ctx rows
        l.vc = alloc((size_t)S * max_ctx * kvw, 0x3c);
    }
    uint16_t *lm = alloc((size_t)vocab * hidden, 0x3c), *final_norm = alloc(hidden, 0x3f);
    uint16_t *x = alloc(T * hidden, 0), *norm = alloc(T * hidden, 0), *qkv = alloc(T * qkv_n, 0), *att = alloc(T * H * D, 0),
             *tmp = alloc(T * hidden, 0), *gu = alloc(T * 2 * inter, 0), *act = alloc(T * inter, 0), *logits = alloc((size_t)S * vocab, 0);
    float *slopes, *sumsq, *attn_ws;
    ok(cudaMalloc(&sumsq, T * hidden / 16 * 4), "malloc");
    ok(cudaMalloc(&attn_ws, (size_t)S * SA_ATTENTION_WORKSPACE_BYTES), "malloc");
    int32_t *history, *len, *next;
    uint64_t *step;
    ok(cudaMalloc(&slopes, H * 4), "malloc");
    ok(cudaMalloc(&history, (size_t)S * (max_ctx + 1) * 4), "malloc");
    ok(cudaMalloc(&len, S * 4), "malloc");
    ok(cudaMalloc(&next, S * 4), "malloc");
    ok(cudaMalloc(&step, S * 8), "malloc");
    std::vector<float> hs(H);
    sa_alibi_slopes(H, hs.data());
    cudaMemcpy(slopes, hs.data(), H * 4, cudaMemcpyHostToDevice);
    cudaMemset(history, 0, (size_t)S * (max_ctx + 1) * 4);
    cudaMemset(next, 0, S * 4);
    cudaMemset(step, 0, S * 8);
    // Batched sequences: one forked stream per sequence for its attention and sampler launches (graph branches).
    std::vector<cudaStream_t> branch(batch ? S : 0);
    std::vector<cudaEvent_t> branch_done(branch.size());
    cudaEvent_t fork_point;
    ok(cudaEventCreateWithFlags(&fork_point, cudaEventDisableTiming), "event");
    for (size_t s = 0; s < branch.size(); ++s) {
        ok(cudaStreamCreateWithFlags(&branch[s], cudaStreamNonBlocking), "stream");
        ok(cudaEventCreateWithFlags(&branch_done[s], cudaEventDisableTiming), "event");
    }
    // Runs launch(s, stream) for every sequence s: on `stream` itself for one sequence, else each on its own branch,
    // forked from and joined back into `stream`.
    auto per_sequence = [&](const std::function<void(int, cudaStream_t)> &launch) {
        if (!batch) return launch(0, stream);
        ok(cudaEventRecord(fork_point, stream), "fork");
        for (int s = 0; s < S; ++s) {
            ok(cudaStreamWaitEvent(branch[s], fork_point, 0), "fork wait");
            launch(s, branch[s]);
            ok(cudaEventRecord(branch_done[s], branch[s]), "join");
            ok(cudaStreamWaitEvent(stream, branch_done[s], 0), "join wait");
        }
    };
    const sa_sample_params greedy{0.0f, 1, 10, 1};
    // The attention size of the model's graph for this context (decode_graph_sizes); a prefill's is its length.
    int graph_ctx = max_ctx;
    for (int size : decode_graph_sizes())
        if (size >= context && size < graph_ctx) graph_ctx = size;
    if ((T > 1 && !batch) || step_shape.eager) graph_ctx = context;
    const sa_attn_shape shape{H, G, D, batch ? 1 : T, graph_ctx};
    const size_t last = batch ? 0 : T - 1;  // lm_head's first row (a prefill: its last token's; batched: every row)
    const int logit_rows = batch ? S : 1;
    auto attention = [&](const Layer &L) {
        per_sequence([&](int s, cudaStream_t st) {
            const size_t cache = (size_t)s * max_ctx * kvw;
            sa_ok(sa_cuda_attention_bf16(&shape, qkv + (size_t)s * qkv_n, L.kc + cache, L.vc + cache, len + s, slopes,
                                         att + (size_t)s * H * D, attn_ws + (size_t)s * (SA_ATTENTION_WORKSPACE_BYTES / 4),
                                         SA_ATTENTION_WORKSPACE_BYTES, st), "attention");
        });
    };
    auto sample = [&] {
        per_sequence([&](int s, cudaStream_t st) {
            sa_ok(sa_cuda_sample_bf16(logits + (size_t)s * vocab, vocab, history + (size_t)s * (max_ctx + 1), len + s,
                                      &greedy, step + s, next + s, st), "sample");
        });
    };
    // As in Generator, *seq_len is the history length, which includes the token being decoded.
    auto run_step = [&] {
        sa_ok(sa_cuda_embed_bf16(lm, vocab, hidden, T > 1 && !batch ? history : next, T, x, stream), "embed");
        for (int l = 0; l < layers; ++l) {
            const Layer &L = ls[l];
            if (fusion == Fusion::folded) {
                const uint16_t *next_norm = l + 1 < layers ? ls[l + 1].in_norm : final_norm;
                const sa_norm_fold consume{nullptr, nullptr, nullptr, sumsq, eps};
                const sa_norm_fold produce_post{L.post_norm, norm, sumsq, nullptr, 0.0f};
                const sa_norm_fold produce_next{next_norm, norm, sumsq, nullptr, 0.0f};
                if (l == 0) sa_ok(sa_cuda_rmsnorm_bf16(x, L.in_norm, norm, T, hidden, eps, stream), "rmsnorm");
                if (!(skip & kSkipQkv)) L.qkv->run(norm, qkv, stream, "qkv", SA_EPILOGUE_STORE, l == 0 ? nullptr : &consume, T);
                if (!(skip & kSkipAttention)) attention(L);
                if (!(skip & kSkipO)) L.o->run(att, x, stream, "o", SA_EPILOGUE_ADD, &produce_post, T);
                if (!(skip & kSkipGateUp)) L.gate_up->run(norm, act, stream, "gate_up", SA_EPILOGUE_SWIGLU, &consume, T);
                if (!(skip & kSkipDown)) L.down->run(act, x, stream, "down", SA_EPILOGUE_ADD, &produce_next, T);
                continue;
            }
            if (fusion == Fusion::epilogues) {
                sa_ok(sa_cuda_rmsnorm_bf16(x, L.in_norm, norm, 1, hidden, eps, stream), "rmsnorm");
                L.qkv->run(norm, qkv, stream, "qkv");
                attention(L);
                L.o->run(att, x, stream, "o", SA_EPILOGUE_ADD);
                sa_ok(sa_cuda_rmsnorm_bf16(x, L.post_norm, norm, 1, hidden, eps, stream), "rmsnorm");
                L.gate_up->run(norm, act, stream, "gate_up", SA_EPILOGUE_SWIGLU);
                L.down->run(act, x, stream, "down", SA_EPILOGUE_ADD);
                continue;
            }
            auto norm_into = [&](const uint16_t *w) {  // over all T rows (unfused paths: T > 1 only with add+norm)
                if (l == 0 && w == L.in_norm) sa_ok(sa_cuda_rmsnorm_bf16(x, w, norm, T, hidden, eps, stream), "rmsnorm");
                else if (fused) sa_ok(sa_cuda_add_rmsnorm_bf16(x, tmp, w, norm, T, hidden, eps, stream), "add_rmsnorm");
                else {
                    sa_ok(sa_cuda_add_bf16(x, tmp, hidden, stream), "add");
                    sa_ok(sa_cuda_rmsnorm_bf16(x, w, norm, 1, hidden, eps, stream), "rmsnorm");
                }
            };
            norm_into(L.in_norm);
            L.qkv->run(norm, qkv, stream, "qkv", SA_EPILOGUE_STORE, nullptr, T);
            if (!(skip & kSkipAttention)) attention(L);
            L.o->run(att, tmp, stream, "o", SA_EPILOGUE_STORE, nullptr, T);
            norm_into(L.post_norm);
            L.gate_up->run(norm, gu, stream, "gate_up", SA_EPILOGUE_STORE, nullptr, T);
            sa_ok(sa_cuda_swiglu_bf16(gu, act, T, inter, stream), "swiglu");
            L.down->run(act, tmp, stream, "down", SA_EPILOGUE_STORE, nullptr, T);
        }
        const sa_norm_fold consume_final{nullptr, nullptr, nullptr, sumsq + last * (hidden / 16), eps};
        if (fusion == Fusion::folded) {
            if (!(skip & kSkipLmHead))
                sa_ok(sa_cuda_linear_bf16(norm + last * hidden, lm, logits, logit_rows, vocab, hidden, SA_EPILOGUE_STORE, &consume_final, stream), "lm_head");
            if (!(skip & kSkipSampler)) sample();
            return;
        }
        if (fusion == Fusion::epilogues) sa_ok(sa_cuda_rmsnorm_bf16(x, final_norm, norm, 1, hidden, eps, stream), "rmsnorm");
        else if (fused) sa_ok(sa_cuda_add_rmsnorm_bf16(x, tmp, final_norm, norm, T, hidden, eps, stream), "add_rmsnorm");
        else {
            sa_ok(sa_cuda_add_bf16(x, tmp, hidden, stream), "add");
            sa_ok(sa_cuda_rmsnorm_bf16(x, final_norm, norm, 1, hidden, eps, stream), "rmsnorm");
        }
        if (!(skip & kSkipLmHead))
            sa_ok(sa_cuda_linear_bf16(norm + last * hidden, lm, logits, 1, vocab, hidden, SA_EPILOGUE_STORE, nullptr, stream), "lm_head");
        if (!(skip & kSkipSampler)) sample();
    };
    // The sampler appends one id per step, so *len grows by one per replay: reset it before each timed replay to
    // keep the attention context fixed.
    const std::vector<int32_t> lengths(S, context);
    auto set_len = [&] { ok(cudaMemcpyAsync(len, lengths.data(), S * 4, cudaMemcpyHostToDevice, stream), "len"); };
    set_len();
    run_step();  // eager once: lazy module loads, scratch address
    ok(cudaStreamSynchronize(stream), "eager step");
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    ok(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), "begin capture");
    run_step();
    ok(cudaStreamEndCapture(stream, &graph), "end capture");
    ok(cudaGraphInstantiate(&exec, graph, 0), "instantiate");
    size_t nodes = 0;
    cudaGraphGetNodes(graph, nullptr, &nodes);
    const auto ms = timed_ms(stream, 5, 40, [&] { ok(cudaGraphLaunch(exec, stream), "graph launch"); }, set_len);
    const auto eager_ms = step_shape.eager ? timed_ms(stream, 3, 20, run_step, set_len) : std::vector<double>{};
    if (g_trace) {  // one more replay with the timeline attached
        auto attach = reinterpret_cast<TraceAttach>(dlsym(RTLD_DEFAULT, "sa_debug_trace_attach"));
        if (!attach) {
            std::printf("trace: libstepaudio_native was built without -DSA_TRACE=1\n");
        } else {
            const unsigned capacity = 1u << 18;
            TraceRecord *records;
            unsigned *count;
            ok(cudaMalloc(&records, (size_t)capacity * sizeof(TraceRecord)), "malloc");
            ok(cudaMalloc(&count, 4), "malloc");
            ok(cudaMemset(count, 0, 4), "memset");
            attach(records, count, capacity);
            set_len();
            ok(cudaGraphLaunch(exec, stream), "graph launch");
            ok(cudaStreamSynchronize(stream), "traced replay");
            attach(nullptr, nullptr, 0);
            unsigned got = 0;
            cudaMemcpy(&got, count, 4, cudaMemcpyDeviceToHost);
            std::vector<TraceRecord> h(std::min(got, capacity));
            cudaMemcpy(h.data(), records, h.size() * sizeof(TraceRecord), cudaMemcpyDeviceToHost);
            cudaFree(records), cudaFree(count);
            print_timeline(h, layers, skip & kSkipAttention ? 4 : 6, fusion == Fusion::folded ? 2 : 1);  // guess: folded
        }
    }
    // The model replays the step back to back, one graph per token with an event recorded between them (the
    // readback, CudaBackend.StreamReadback), where the replay above starts on an idle GPU: what does the boundary
    // between two graphs cost? Only where the sequence may grow by kBackToBack tokens within this graph's size.
    constexpr int kBackToBack = 16;
    double back_to_back_ms = 0;
    if (context + kBackToBack <= graph_ctx && !skip) {
        cudaEvent_t between;
        ok(cudaEventCreateWithFlags(&between, cudaEventDisableTiming), "event");
        const auto runs = timed_ms(stream, 1, 7, [&] {
            for (int i = 0; i < kBackToBack; ++i) {
                ok(cudaGraphLaunch(exec, stream), "graph launch");
                ok(cudaEventRecord(between, stream), "event record");
            }
        }, set_len);
        cudaEventDestroy(between);
        back_to_back_ms = runs[runs.size() / 2] / kBackToBack;
    }
    int32_t id = -2;
    cudaMemcpy(&id, next, 4, cudaMemcpyDeviceToHost);
    if (batch)
        std::printf("batch step %-5s %2d sequences, context %4d: %6.3f ms/step = %7.1f tok/s in all, %6.1f per sequence "
                    "(min %.3f, %zu graph nodes, last id %d)%s\n",
                    weights_name(weights), S, context, ms[ms.size() / 2], S * 1000.0 / ms[ms.size() / 2],
                    1000.0 / ms[ms.size() / 2], ms.front(), nodes, id, skip ? (" skip mask " + std::to_string(skip)).c_str() : "");
    else if (T > 1 || step_shape.eager)
        std::printf("step %-5s %2d tokens, context %4d (attention %4d): graph %6.3f ms, eager %6.3f ms (%zu launches, last id %d)%s%s\n",
                    weights_name(weights), T, context, graph_ctx, ms[ms.size() / 2],
                    eager_ms.empty() ? 0.0 : eager_ms[eager_ms.size() / 2], nodes, id,
                    skip ? (" skip mask " + std::to_string(skip)).c_str() : "",
                    fusion == Fusion::folded ? "" : (std::string(" ") + fusion_name(fusion)).c_str());
    else
        std::printf("decode step %-5s %-7s context %4d: %6.3f ms/token = %6.1f tok/s (min %.3f, %zu graph nodes, last id %d)%s\n",
                    weights_name(weights), fusion_name(fusion), context, ms[ms.size() / 2], 1000.0 / ms[ms.size() / 2], ms.front(), nodes, id,
                    skip ? (" skip mask " + std::to_string(skip)).c_str() : "");
    if (back_to_back_ms > 0)
        std::printf("  back to back (%d replays, an event between them): %6.3f ms/token, %+5.1f us per step vs one replay\n",
                    kBackToBack, back_to_back_ms, 1000.0 * (back_to_back_ms - ms[ms.size() / 2]));
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    for (auto &l : ls)
        for (uint16_t *p : {l.in_norm, l.post_norm, l.kc, l.vc}) cudaFree(p);
    for (uint16_t *p : {lm, final_norm, x, norm, qkv, att, tmp, gu, act, logits}) cudaFree(p);
    cudaFree(slopes), cudaFree(sumsq), cudaFree(attn_ws), cudaFree(history), cudaFree(len), cudaFree(next), cudaFree(step);
    for (size_t s = 0; s < branch.size(); ++s) cudaStreamDestroy(branch[s]), cudaEventDestroy(branch_done[s]);
    cudaEventDestroy(fork_point);
    return ms[ms.size() / 2];
}

// µs per launch of the small decode kernels (M = 1, Step1 sizes), graph of 10 launches.
void small_kernels(cudaStream_t stream) {
    const int hidden = 3072, inter = 8192;
    uint16_t *x, *y, *w, *out, *gu;
    ok(cudaMalloc(&x, hidden * 2), "malloc");
    ok(cudaMalloc(&y, hidden * 2), "malloc");
    ok(cudaMalloc(&w, hidden * 2), "malloc");
    ok(cudaMalloc(&out, inter * 2), "malloc");
    ok(cudaMalloc(&gu, 2 * inter * 2), "malloc");
    cudaMemset(x, 0x3c, hidden * 2), cudaMemset(y, 0x3c, hidden * 2), cudaMemset(w, 0x3f, hidden * 2);
    cudaMemset(gu, 0x3c, 2 * inter * 2);
    ok(cudaStreamSynchronize(stream), "sync");
    const double rms = time_graph(stream, [&](int) { sa_ok(sa_cuda_rmsnorm_bf16(x, w, out, 1, hidden, 1e-5f, stream), "rmsnorm"); });
    const double add = time_graph(stream, [&](int) { sa_ok(sa_cuda_add_bf16(x, y, hidden, stream), "add"); });
    const double fused = time_graph(stream, [&](int) {
        sa_ok(sa_cuda_add_rmsnorm_bf16(x, y, w, out, 1, hidden, 1e-5f, stream), "add_rmsnorm");
    });
    const double swiglu = time_graph(stream, [&](int) { sa_ok(sa_cuda_swiglu_bf16(gu, out, 1, inter, stream), "swiglu"); });
    std::printf("small kernels, M=1, us per launch: rmsnorm %.2f, add %.2f, add_rmsnorm %.2f, swiglu %.2f\n", rms, add,
                fused, swiglu);
    cudaFree(x), cudaFree(y), cudaFree(w), cudaFree(out), cudaFree(gu);
}

// Step1's attention buffers for the attention benches: 32 layers' K/V caches of max_ctx tokens (rotated over, so L2
// does not hold them all), qkv and output rows for max_tokens new tokens, slopes, *seq_len and the split workspace.
struct AttentionBuffers {
    static constexpr int H = 48, G = 4, D = 64, layers = 32;
    std::vector<uint16_t *> kc = std::vector<uint16_t *>(layers), vc = std::vector<uint16_t *>(layers);
    uint16_t *qkv = nullptr, *out = nullptr;
    float *slopes = nullptr, *ws = nullptr;
    int32_t *len = nullptr;
    AttentionBuffers(int max_ctx, int max_tokens) {
        const size_t cache = (size_t)max_ctx * G * D, qkv_elems = (size_t)(H + 2 * G) * D * max_tokens;
        for (int l = 0; l < layers; ++l) {
            ok(cudaMalloc(&kc[l], cache * 2), "malloc k");
            ok(cudaMalloc(&vc[l], cache * 2), "malloc v");
            cudaMemset(kc[l], 0x3c, cache * 2);
            cudaMemset(vc[l], 0x3c, cache * 2);
        }
        ok(cudaMalloc(&qkv, qkv_elems * 2), "malloc");
        ok(cudaMalloc(&out, (size_t)H * D * 2 * max_tokens), "malloc");
        ok(cudaMalloc(&slopes, H * 4), "malloc");
        ok(cudaMalloc(&len, 4), "malloc");
        ok(cudaMalloc(&ws, SA_ATTENTION_WORKSPACE_BYTES), "malloc");
        cudaMemset(qkv, 0x3c, qkv_elems * 2);
        std::vector<float> hs(H);
        sa_alibi_slopes(H, hs.data());
        cudaMemcpy(slopes, hs.data(), H * 4, cudaMemcpyHostToDevice);
    }
    AttentionBuffers(const AttentionBuffers &) = delete;
    AttentionBuffers &operator=(const AttentionBuffers &) = delete;
    ~AttentionBuffers() {
        for (int l = 0; l < layers; ++l) cudaFree(kc[l]), cudaFree(vc[l]);
        cudaFree(ws), cudaFree(qkv), cudaFree(out), cudaFree(slopes), cudaFree(len);
    }
    void set_len(int n) { ok(cudaMemcpy(len, &n, 4, cudaMemcpyHostToDevice), "len"); }
    void run(const sa_attn_shape &shape, int layer, cudaStream_t stream) {
        sa_ok(sa_cuda_attention_bf16(&shape, qkv, kc[layer % layers], vc[layer % layers], len, slopes, out, ws,
                                     SA_ATTENTION_WORKSPACE_BYTES, stream), "attention");
    }
};

// Prefill attention alone, Step1 shape: T new tokens after ctx - T earlier ones, attention sized for ctx keys (as
// Step1Model.PrefillHistory sizes it); STEPAUDIO_ATTN_SMALL_PREFILL_TOKENS / _KEYS move the short-prefill shape's
// limits.
void prefill_attention_bench(cudaStream_t stream) {
    const std::pair<int, int> cases[] = {{2, 2}, {12, 12}, {16, 16}, {24, 24}, {32, 32}, {48, 48}, {64, 64},
                                         {96, 96}, {128, 128}, {16, 128}, {64, 128}, {200, 200}, {300, 300}, {512, 512},
                                         {1000, 1000}, {2000, 2000}, {64, 2048}};
    AttentionBuffers a(2048, 2048);
    for (const auto &c : cases) {
        const int T = c.first, ctx = c.second;
        a.set_len(ctx);
        const sa_attn_shape shape{a.H, a.G, a.D, T, ctx};
        const double us = time_graph(stream, [&](int i) { a.run(shape, i, stream); });
        std::printf("attention prefill n_new %4d keys %4d: %8.2f us\n", T, ctx, us);
    }
}

// Decode attention, Step1 shape, rotating over 32 layers' caches (STEPAUDIO_ATTN_MIN_TILES sets the keys per split).
void attention_bench(cudaStream_t stream) {
    const int max_ctx = 8192;
    AttentionBuffers a(max_ctx, 16);
    // Decode also at the sizes of the model's smaller decode graphs that hold the sequence (decode_graph_sizes).
    std::vector<int> graph_ctxs = {max_ctx};
    for (int size : decode_graph_sizes()) graph_ctxs.push_back(size);
    for (int seq : {64, 128, 256, 500, 1000, 4097, 8192}) {
        for (int n_new : {1, 4}) {
            for (int graph_ctx : graph_ctxs) {
                if (graph_ctx != max_ctx && (seq > graph_ctx || n_new != 1)) continue;
                a.set_len(seq);
                const sa_attn_shape shape{a.H, a.G, a.D, n_new, graph_ctx};
                a.run(shape, 0, stream);
                ok(cudaStreamSynchronize(stream), "sync");
                const double us = time_graph(stream, [&](int i) { a.run(shape, i, stream); });
                const double bytes = 2.0 * seq * a.G * a.D * 2;
                std::printf("attention decode seq_len %5d n_new %d max_ctx %4d: %8.2f us, KV %6.0f GB/s\n", seq, n_new,
                            graph_ctx, us, bytes / (us * 1e3));
            }
        }
    }
}

// The sampler at Step1's vocabulary: greedy and the server's setting (temperature 0.7, top-k 50, window 10), on two
// logit patterns: "pattern" (768 distinct values, ~97 ids tied at each; the k-th largest is one of ~97 tied at the
// top) and "gaussian" (sigma 2, ~a model's spread: the kept ids are a few dozen near the maximum).
void sampler_bench(cudaStream_t stream) {
    const int vocab = 74752;
    uint16_t *logits;
    int32_t *history, *hist_len, *out_id;
    uint64_t *step;
    ok(cudaMalloc(&logits, vocab * 2), "malloc");
    ok(cudaMalloc(&history, 4096 * 4), "malloc");
    ok(cudaMalloc(&hist_len, 4), "malloc");
    ok(cudaMalloc(&out_id, 4), "malloc");
    ok(cudaMalloc(&step, 8), "malloc");
    cudaMemset(history, 0, 4096 * 4);
    cudaMemset(step, 0, 8);
    for (const char *pattern : {"pattern", "gaussian"}) {
        std::vector<uint16_t> hl(vocab);
        uint64_t r = 0x9e3779b97f4a7c15ull;
        for (int i = 0; i < vocab; ++i) {
            if (pattern[0] == 'p') {
                hl[i] = (uint16_t)(0x3c00 + (i * 7919) % 0x300);
            } else {  // Irwin-Hall sum of 12 uniforms minus 6: ~normal(0, 1), times 2
                float z = -6.0f;
                for (int j = 0; j < 12; ++j) r = r * 6364136223846793005ull + 1442695040888963407ull, z += (float)(r >> 40) / 16777216.0f;
                const float v = 2.0f * z;
                uint32_t b;
                std::memcpy(&b, &v, 4);
                hl[i] = (uint16_t)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
            }
        }
        cudaMemcpy(logits, hl.data(), vocab * 2, cudaMemcpyHostToDevice);
        for (float temp : {0.0f, 0.7f}) {
            if (temp == 0.0f && pattern[0] == 'g') continue;  // greedy does not depend on the pattern
            sa_sample_params p{temp, 50, 10, 1234};
            const int start = 20;
            cudaMemcpy(hist_len, &start, 4, cudaMemcpyHostToDevice);
            const double us = time_graph(stream, [&](int) {
                sa_ok(sa_cuda_sample_bf16(logits, vocab, history, hist_len, &p, step, out_id, stream), "sample");
            });
            if (pattern[0] == 'p')
                std::printf("sampler vocab %d %s: %8.2f us\n", vocab, temp > 0 ? "temperature 0.7 top_k 50" : "greedy", us);
            else
                std::printf("sampler vocab %d temperature 0.7 top_k 50 (gaussian logits): %8.2f us\n", vocab, us);
        }
    }
    cudaFree(logits), cudaFree(history), cudaFree(hist_len), cudaFree(out_id), cudaFree(step);
}

}  // namespace

// kernel_bench            every benchmark
// kernel_bench sampler    only the sampler
// kernel_bench trace [bf16|w4a16|nf4]...  the folded step's timeline per layer position (a -DSA_TRACE=1 build)
// kernel_bench prefill [bf16|w4a16|nf4]...  short prompts (STEPAUDIO_BENCH_PREFILL=1,2,4,8,12,16,24,32 tokens, ≤ 64)
//                         as the model prefills them (folded layers at M = tokens up to 16, the unfused add+norm
//                         path beyond), graph vs eager, parts left out
// kernel_bench batch [bf16|w4a16|nf4]...  1, 2, 4, 8 and 16 sequences decoded in lockstep (STEPAUDIO_BENCH_BATCH,
//                         STEPAUDIO_BENCH_CONTEXTS): the step's time and the tokens per second of all sequences
// kernel_bench attention  only decode attention and the fused decode step at contexts 64, 1024 and 4000
//                         (STEPAUDIO_BENCH_CONTEXTS=64,2100,4200 for others; the cache grows past 4096 if needed)
// kernel_bench decode [bf16|w4a16|w4a16-awq|nf4]...
//     only the decode steps (of the formats named, default all) and, with bf16, the small kernels; for sweeps
//     over STEPAUDIO_* settings (STEPAUDIO_NO_PDL=1, STEPAUDIO_NO_QUANT_PDL=1, STEPAUDIO_GEMV_PREFETCH_KB)
int main(int argc, char **argv) {
    const std::string mode = argc > 1 ? argv[1] : "";
    const bool decode_only = mode == "decode";
    auto wanted = [&](Weights w) {
        if (argc <= 2) return true;
        for (int i = 2; i < argc; ++i)
            if (std::string(argv[i]) == weights_name(w)) return true;
        return false;
    };
    cudaDeviceProp prop;
    ok(cudaGetDeviceProperties(&prop, 0), "device");
    cudaStream_t stream;
    ok(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "stream");
    auto set = [](const char *name) {
        const char *v = std::getenv(name);
        return v && v[0] && v[0] != '0';
    };
    const char *prefetch = std::getenv("STEPAUDIO_GEMV_PREFETCH_KB");
    std::string sizes;
    for (int size : decode_graph_sizes()) sizes += (sizes.empty() ? "" : ",") + std::to_string(size);
    std::printf("settings: PDL %s, W4A16/NF4 PDL %s, GEMV L2 prefetch %s KB, decode graph attention sizes below the cache: %s\n",
                set("STEPAUDIO_NO_PDL") ? "off" : "on", set("STEPAUDIO_NO_PDL") || set("STEPAUDIO_NO_QUANT_PDL") ? "off" : "on",
                prefetch ? prefetch : "default", sizes.empty() ? "none" : sizes.c_str());
    if (mode == "sampler") {
        sampler_bench(stream);
        return 0;
    }
    if (mode == "trace") {  // kernel_bench trace [formats]: the folded step at context 64 and its timeline; with
                            // STEPAUDIO_TRACE_TOKENS=12, a 12-token prefill's instead
        g_trace = true;
        const int tokens = env_int_list("STEPAUDIO_TRACE_TOKENS", {1}, 1)[0];
        for (Weights w : {Weights::bf16, Weights::w4a16, Weights::nf4})
            if (wanted(w))
                for (unsigned skip : {(unsigned)kSkipNone, (unsigned)kSkipAttention}) {
                    std::printf("== %s %s%s\n", weights_name(w), skip ? "without attention" : "",
                                tokens > 1 ? (" " + std::to_string(tokens) + " tokens").c_str() : "");
                    decode_step_ms(stream, tokens <= 16 ? Fusion::folded : Fusion::add_norm, tokens > 1 ? tokens : 64, w,
                                   skip, {tokens, false});
                }
        return 0;
    }
    if (mode == "ablate") {  // kernel_bench ablate [formats] [attention]: the folded step at context 64 with parts
                             // left out (with "attention": only everything / no attention / ffn only)
        bool attention_only = false;
        for (int i = 2; i < argc; ++i) attention_only |= std::string(argv[i]) == "attention";
        const std::pair<unsigned, const char *> parts[] = {
            {kSkipNone, "everything"}, {kSkipAttention, "no attention"}, {kSkipQkv, "no qkv"}, {kSkipO, "no o"},
            {kSkipGateUp, "no gate_up"}, {kSkipDown, "no down"}, {kSkipLmHead, "no lm_head"}, {kSkipSampler, "no sampler"},
            {kSkipQkv | kSkipO | kSkipGateUp | kSkipDown | kSkipLmHead, "no linears"},
            {kSkipAttention | kSkipSampler, "linears only"},
            {kSkipAttention | kSkipQkv | kSkipO | kSkipLmHead | kSkipSampler, "ffn only"}};
        for (Weights w : {Weights::bf16, Weights::w4a16, Weights::nf4})
            if (wanted(w))
                for (const auto &p : parts) {
                    if (attention_only && p.first != kSkipNone && p.first != kSkipAttention &&
                        std::string(p.second) != "ffn only")
                        continue;
                    std::printf("%-14s ", p.second);
                    decode_step_ms(stream, Fusion::folded, 64, w, p.first);
                }
        return 0;
    }
    if (mode == "prefill") {  // kernel_bench prefill [formats]: short prompts' forward, graph vs eager, with and
                              // without attention, and the decode step at context 64 eagerly for comparison
        for (Weights w : {Weights::bf16, Weights::w4a16, Weights::nf4})
            if (wanted(w)) {
                decode_step_ms(stream, Fusion::folded, 64, w, kSkipNone, {1, true});
                for (int t : env_int_list("STEPAUDIO_BENCH_PREFILL", {1, 2, 4, 8, 12, 16, 24, 32}, 1))
                    for (unsigned skip : {(unsigned)kSkipNone, (unsigned)kSkipAttention, (unsigned)(kSkipAttention | kSkipLmHead | kSkipSampler)})
                        decode_step_ms(stream, t <= 16 ? Fusion::folded : Fusion::add_norm, t, w, skip, {t, true});
            }
        return 0;
    }
    if (mode == "batch") {  // kernel_bench batch [formats]: sequences decoded in lockstep (StepShape::sequences),
                            // STEPAUDIO_BENCH_BATCH=1,2,4,8,16 of them at STEPAUDIO_BENCH_CONTEXTS=64 keys each; one
                            // sequence is the decode step, so its row checks the measurement against `decode`
        for (Weights w : {Weights::bf16, Weights::w4a16, Weights::nf4})
            if (wanted(w))
                for (int context : bench_contexts({64}))
                    for (int b : env_int_list("STEPAUDIO_BENCH_BATCH", {1, 2, 4, 8, 16}, 1))
                        decode_step_ms(stream, Fusion::folded, context, w, kSkipNone, {b, false, true});
        return 0;
    }
    if (mode == "prefill-attention") {  // kernel_bench prefill-attention: attention alone at prefill shapes
        prefill_attention_bench(stream);
        return 0;
    }
    if (mode == "attention") {
        const char *tiles = std::getenv("STEPAUDIO_ATTN_MIN_TILES");
        std::printf("attention min tiles per split: %s\n", tiles ? tiles : "default");
        attention_bench(stream);
        // The bf16 step at these contexts (STEPAUDIO_BENCH_CONTEXTS="64,2100,4200" to choose others).
        const auto contexts = bench_contexts({64, 1024, 4000});
        for (int context : contexts) decode_step_ms(stream, Fusion::folded, context);
        return 0;
    }
    if (wanted(Weights::bf16))
        for (int context : {64, 1024})
            for (Fusion f : {Fusion::none, Fusion::add_norm, Fusion::epilogues, Fusion::folded}) decode_step_ms(stream, f, context);
    const auto contexts = bench_contexts({64, 1024});
    for (Weights w : {Weights::w4a16, Weights::w4a16_awq, Weights::nf4})
        if (wanted(w))
            for (int context : contexts)
                for (Fusion f : {Fusion::epilogues, Fusion::folded}) decode_step_ms(stream, f, context, w);
    if (wanted(Weights::bf16)) small_kernels(stream);
    if (decode_only) return 0;
    const double copy_gbs = copy_bandwidth_gbs(stream);
    std::printf("device %s, %d SMs; D2D copy %.0f GB/s (read+write)\n", prop.name, prop.multiProcessorCount, copy_gbs);
    std::printf("%-8s %6s %6s %5s %10s %9s %8s %8s %9s\n", "linear", "N", "K", "M", "us", "GB/s", "%3.0TB/s",
                "%copy", "TFLOP/s");

    struct Shape {
        const char *name;
        int n, k;
    };
    const Shape shapes[] = {{"qkv", 3584, 3072}, {"o", 3072, 3072}, {"gate_up", 16384, 3072}, {"down", 3072, 8192},
                            {"lm_head", 74752, 3072}};
    for (const auto &s : shapes) {
        const size_t w_bytes = (size_t)s.n * s.k * 2;
        const int copies = (int)std::clamp<size_t>((size_t(256) << 20) / w_bytes + 1, 2, 16);
        std::vector<uint16_t *> ws(copies);
        for (auto &w : ws) {
            ok(cudaMalloc(&w, w_bytes), "malloc W");
            cudaMemset(w, 0x3c, w_bytes);  // bf16 0x3c3c ~ 0.0115
        }
        for (int m : {1, 4, 16, 512}) {
            uint16_t *x, *y;
            ok(cudaMalloc(&x, (size_t)m * s.k * 2), "malloc x");
            ok(cudaMalloc(&y, (size_t)m * s.n * 2), "malloc y");
            cudaMemset(x, 0x3c, (size_t)m * s.k * 2);
            sa_ok(sa_cuda_linear_bf16(x, ws[0], y, m, s.n, s.k, SA_EPILOGUE_STORE, nullptr, stream), "linear");  // lazy module load, eagerly
            ok(cudaStreamSynchronize(stream), "sync");
            const double us = time_graph(stream, [&](int i) {
                sa_ok(sa_cuda_linear_bf16(x, ws[i % copies], y, m, s.n, s.k, SA_EPILOGUE_STORE, nullptr, stream), "linear");
            });
            const double bytes = (double)w_bytes + 2.0 * m * s.k + 2.0 * m * s.n;
            const double gbs = bytes / (us * 1e3);
            std::printf("%-8s %6d %6d %5d %10.2f %9.0f %7.1f%% %7.1f%% %9.1f\n", s.name, s.n, s.k, m, us, gbs,
                        100.0 * gbs / 3000.0, 100.0 * gbs / copy_gbs, 2.0 * m * s.n * s.k / (us * 1e6));
            cudaFree(x);
            cudaFree(y);
        }
        for (auto &w : ws) cudaFree(w);
    }

    sampler_bench(stream);
    return 0;
}
