// layer_stream_bench.cu — how fast could a persistent W4A16 decode layer go? A measurement behind the megakernel
// plan (kernels/NOTES_QUANT.md, "The persistent decode layer"), not a part of the product and not a test of it.
//
// The hypothesis it tests: every phase of a decode layer is its own kernel (under PDL), each one's weights start
// streaming only when its blocks are resident, so DRAM idles at every dependency (~20 of the ~31 µs of a W4A16 layer
// on the H200 are not bytes). Here one cooperative kernel runs L Step1-shaped layers at M = 1:
//     RMSNorm → qkv → attention (stand-in) → o (+ residual) → RMSNorm → gate_up + SwiGLU → down (+ residual)
// with one block per SM. Its producer warp streams the block's weight chunks — in the order the block will use
// them, across phases and layers — into a ring of shared-memory slots with cp.async.bulk (TMA). The producer never
// waits on data, only for a free slot, so weight traffic does not stop at a phase boundary. 8, 16 or 24 consumer
// warps wait for each phase's inputs (a per-layer, per-phase arrival counter in global memory), then multiply the chunks on
// tensor cores (mma.m16n8k16, fp32 accumulators, the x vector as the B operand's first column).
//
// The weight format is this bench's own (symmetric int4, group 128, bf16 scales, as compressed-tensors W4A16), cut
// into 8448-byte chunks — 16 rows × 1024 k of codes in mma A-fragment order, then the chunk's 8 × 16 scales — so
// each chunk is one bulk copy and one ring slot. The attention stand-in attends each head over T cached keys of its
// KV group (no ALiBi, no append: a latency chain of the same shape — q from qkv, K and V from global — not Step1's
// attention). The result is checked against a CPU reference of exactly this math (2 layers) before timing.
//
// Modes (each timed): full; no phase waits (the counters ignored: wrong numbers, the cost of the dependencies); stream
// only (consumers release chunks unread); plain loads (no ring: every warp reads whole chunks with 16-byte loads, no
// math). Plus a one-launch GEMV over the chunk layout per linear (LSB_NO_GEMV=1 skips it). Build knobs: LSB_SETS
// (consumer warps / 8), LSB_PRODUCERS (producer warps), LSB_CP_ASYNC (0 TMA, 1 cp.async, 2 register loads + stores),
// LSB_TEST_WAIT, LSB_LANE0_POLL. Results and what they mean: kernels/NOTES_QUANT.md, "The persistent decode layer,
// measured before building it" (session 8): dependencies are cheap, the consume rate is the cap, a ring streams slower
// than plain loads.
//
// Usage: layer_stream_bench [slots=24] [context=64]    (tests/gpu/stream-run.sh builds and runs it on the GPU machine)
//        layer_stream_bench profile                   (one launch of stream only, plain loads, full: for ncu)
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#define CK(x)                                                                                       \
    do {                                                                                            \
        cudaError_t e_ = (x);                                                                       \
        if (e_ != cudaSuccess) {                                                                    \
            std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
            std::exit(1);                                                                           \
        }                                                                                           \
    } while (0)

namespace {

// ---- Step1 shapes ----
constexpr int kHidden = 3072, kInter = 8192, kHeads = 48, kGroups = 4, kHeadDim = 64;
constexpr int kQkvN = (kHeads + 2 * kGroups) * kHeadDim;  // 3584
constexpr float kEps = 1e-5f;

// ---- the chunk: 16 rows × 1024 k ----
constexpr int kTileRows = 16, kChunkK = 1024, kGroupK = 128;
constexpr int kChunkCodeBytes = kTileRows * kChunkK / 2;                           // 8192
constexpr int kChunkBytes = kChunkCodeBytes + kTileRows * (kChunkK / kGroupK) * 2;  // + 256 B of scales = 8448

// A chunk's 8 groups go to 8 warps; kSets such sets of 8 warps take a tile's chunks in turn (more chunks in flight
// per SM: the multiply after a chunk arrives is a chain of 8 MMAs).
#ifndef LSB_SETS
#define LSB_SETS 2
#endif
constexpr int kGroupsPerChunk = kChunkK / kGroupK, kSets = LSB_SETS;
#ifndef LSB_PRODUCERS  // producer warps; warp i issues the chunks with stream number % LSB_PRODUCERS == i
#define LSB_PRODUCERS 1
#endif
constexpr int kProducerWarps = LSB_PRODUCERS;
constexpr int kConsumerWarps = kGroupsPerChunk * kSets, kConsumers = kConsumerWarps * 32;
constexpr int kThreads = kConsumers + 32 * kProducerWarps;

enum Linear { kQkv, kO, kGateUp, kDown, kLinears };
// Rows (n) and inputs (k) of each linear; gate_up's tiles interleave 8 gate rows and 8 up rows.
__host__ __device__ constexpr int rows_of(int l) { return l == kQkv ? kQkvN : l == kGateUp ? 2 * kInter : kHidden; }
__host__ __device__ constexpr int inputs_of(int l) { return l == kDown ? kInter : kHidden; }
__host__ __device__ constexpr int tiles_of(int l) { return rows_of(l) / kTileRows; }
__host__ __device__ constexpr int chunks_of(int l) { return inputs_of(l) / kChunkK; }
__host__ __device__ constexpr size_t linear_bytes(int l) { return (size_t)tiles_of(l) * chunks_of(l) * kChunkBytes; }
// Phases per layer, in order; the arrival counter of (layer, phase) is counters[layer * kPhases + phase].
enum Phase { kPhQkv, kPhAttn, kPhO, kPhGateUp, kPhDown, kPhases };

enum Mode { kFull = 0, kNoWaits = 1, kStreamOnly = 2, kPlainLoads = 3 };
// Where the middle layer's timeline is sampled (block 0, which also runs a head of attention, and the last block).
enum TracePoint { kTrStart, kTrQkvIn, kTrQkvOut, kTrAttnIn, kTrAttnOut, kTrOIn, kTrOOut, kTrGuIn, kTrGuOut, kTrDownIn,
                  kTrDownOut, kTracePoints };
constexpr const char *kTraceNames[kTracePoints] = {"start",    "qkv in",  "qkv out",  "attn in",  "attn out", "o in",
                                                   "o out",    "gu in",   "gu out",   "down in",  "down out"};

struct Params {
    const uint8_t *w[kLinears];  // [layers][tiles][chunks][kChunkBytes] per linear
    const __nv_bfloat16 *norm1, *norm2;  // [layers][hidden]
    const __nv_bfloat16 *kcache, *vcache;  // [layers][groups][context][head_dim]
    __nv_bfloat16 *h;      // [hidden] the residual stream, updated in place
    __nv_bfloat16 *qkv;    // [layers][qkv_n] (kept per layer for the check)
    __nv_bfloat16 *attn;   // [layers][hidden]
    __nv_bfloat16 *act;    // [layers][inter]
    unsigned *counters;    // [layers][phases], zero before the launch
    unsigned long long *trace;  // [2][kTracePoints]: block 0's and the last block's clock in the middle layer
    int layers, context, slots, mode;
    int variant;  // TMA: bulk copies per chunk (1 or 4); plain loads: 16-byte loads per lane in flight (2, 4, 8, 17)
};

__device__ __forceinline__ uint64_t now_ns() {
    uint64_t t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}
constexpr uint64_t kTimeoutNs = 2000000000ull;  // a wait this long is a bug: report it and stop the kernel
__device__ __noinline__ void fail_timeout(const char *what, int block, int a, int b) {
    printf("layer_stream_bench: block %d timed out waiting for %s (%d, %d)\n", block, what, a, b);
    __trap();
}

// ---- mbarrier / bulk copy (sm_90) ----
__device__ __forceinline__ uint32_t smem_addr(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void mbar_init(uint64_t *bar, unsigned count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_addr(bar)), "r"(count) : "memory");
}
__device__ __forceinline__ bool mbar_try_wait(uint64_t *bar, unsigned parity) {
    uint32_t done;
    asm volatile(
#if LSB_TEST_WAIT  // a non-blocking test: an A/B knob (try_wait may suspend the thread for a while)
        "{\n .reg .pred p;\n mbarrier.test_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}\n"
#else
        "{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}\n"
#endif
        : "=r"(done)
        : "r"(smem_addr(bar)), "r"(parity)
        : "memory");
    return done != 0;
}
__device__ __forceinline__ void mbar_wait(uint64_t *bar, unsigned parity, const char *what, int a, int b) {
    if (mbar_try_wait(bar, parity)) return;
    const uint64_t t0 = now_ns();
    while (!mbar_try_wait(bar, parity))
        if (now_ns() - t0 > kTimeoutNs) fail_timeout(what, blockIdx.x, a, b);
}
__device__ __forceinline__ void mbar_arrive(uint64_t *bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(smem_addr(bar)) : "memory");
}
__device__ __forceinline__ void mbar_arrive_expect_tx(uint64_t *bar, unsigned bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_addr(bar)), "r"(bytes) : "memory");
}
__device__ __forceinline__ void bulk_copy(void *dst, const void *src, unsigned bytes, uint64_t *bar) {
    asm volatile(
        "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(smem_addr(dst)),
        "l"(src), "r"(bytes), "r"(smem_addr(bar))
        : "memory");
}

// The producer: LSB_CP_ASYNC=0, one lane issues each chunk as one bulk copy (TMA); 1, the whole warp issues it as
// 16-byte cp.async copies and each lane's completion arrives on the chunk's barrier (cp.async.mbarrier.arrive.noinc);
// 2, the whole warp loads it into registers (ld.global.cs, 16 B per load, as the plain-load mode) and stores it into
// the slot once the slot is free, then each lane arrives.
#ifndef LSB_CP_ASYNC
#define LSB_CP_ASYNC 0
#endif
constexpr unsigned kFullArrivals = LSB_CP_ASYNC ? 32 : 1;
__device__ __forceinline__ void cp_async16(void *dst, const void *src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(smem_addr(dst)), "l"(src) : "memory");
}
__device__ __forceinline__ void cp_async_arrive(uint64_t *bar) {
    asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];" ::"r"(smem_addr(bar)) : "memory");
}

// LSB_LANE0_POLL=1: one lane per consumer warp spins on a chunk's barrier, the others test it once after it (measured
// slower than every lane spinning, the default 0: kernels/NOTES_QUANT.md, session 8).
#ifndef LSB_LANE0_POLL
#define LSB_LANE0_POLL 0
#endif

// The consumer threads' own barrier (the producer warp never joins it).
__device__ __forceinline__ void consumers_sync() { asm volatile("bar.sync 1, %0;" ::"n"(kConsumers) : "memory"); }

__device__ __forceinline__ unsigned load_acquire(const unsigned *p) {
    unsigned v;
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}
// Thread 0 of the consumers waits until every block has arrived at (layer, phase); then all consumers go on.
__device__ void wait_phase(const Params &p, int layer, int phase) {
    if (threadIdx.x == 0 && p.mode == kFull) {
        const unsigned *c = p.counters + layer * kPhases + phase;
        if (load_acquire(c) < gridDim.x) {
            const uint64_t t0 = now_ns();
            while (load_acquire(c) < gridDim.x)
                if (now_ns() - t0 > kTimeoutNs) fail_timeout("a phase", blockIdx.x, layer, phase);
        }
    }
    consumers_sync();
}
// This block's outputs of (layer, phase) are written: count it in.
__device__ void arrive_phase(const Params &p, int layer, int phase) {
    consumers_sync();
    if (threadIdx.x == 0) {
        __threadfence();
        atomicAdd(p.counters + layer * kPhases + phase, 1u);
    }
}

__device__ __forceinline__ float bf(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float bf_lo(uint32_t w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float bf_hi(uint32_t w) { return __uint_as_float(w & 0xffff0000u); }
__device__ __forceinline__ float round_bf(float v) { return __bfloat162float(__float2bfloat16(v)); }

__device__ __forceinline__ void mma16816(float c[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                         uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}
// Nibbles j (bits 4j..4j+3) and 4 + j (bits 16 + 4j..) of w as bf16x2 values q - 8: the exponent trick
// (0x4300 | q is the bf16 128 + q), then - 136.
__device__ __forceinline__ uint32_t dequant_pair(uint32_t w, int j) {
    const uint32_t v = ((w >> (4 * j)) & 0x000f000fu) | 0x43004300u;
    __nv_bfloat162 r = __hsub2(*reinterpret_cast<const __nv_bfloat162 *>(&v), __floats2bfloat162_rn(136.f, 136.f));
    return *reinterpret_cast<uint32_t *>(&r);
}

struct Smem {
    uint64_t full[32], empty[32];
    float red[2][kConsumerWarps][kTileRows];     // the per-warp row sums of a tile (double-buffered by tile parity)
    float norm_part[kConsumerWarps];
    float att_m[kConsumerWarps], att_l[kConsumerWarps], att_o[kConsumerWarps][kHeadDim];
    alignas(16) __nv_bfloat16 x[kInter];        // the phase's input vector
    alignas(128) uint8_t ring[1];               // slots × kChunkBytes follow
};

// The consumers' multiply of one linear's tiles owned by this block (tile b, b + G, ...). The epilogue runs on threads
// 0..15 with (tile, y = row threadIdx.x's sum, the warps' row sums, the residual value of that row when `residual`).
template <class Epilogue>
__device__ void consume_linear(const Params &p, Smem &s, int lin, uint32_t &seq, int &tile_count, Epilogue epilogue,
                               const __nv_bfloat16 *residual = nullptr) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, cc = lane % 4;
    const int set = warp / kGroupsPerChunk, grp = warp % kGroupsPerChunk;
    const int tiles = tiles_of(lin), chunks = chunks_of(lin);
    const uint32_t *x32 = reinterpret_cast<const uint32_t *>(s.x);
    for (int t = blockIdx.x; t < tiles; t += gridDim.x) {
        float acc0 = 0.f, acc1 = 0.f;  // rows g and g + 8 (column 0: lanes with cc == 0)
        // the residual row the epilogue adds to, requested now: its L2 round trip overlaps the multiply
        const float res = residual && threadIdx.x < kTileRows ? bf(__ldcg(residual + t * kTileRows + threadIdx.x)) : 0.f;
        for (int c = set; c < chunks; c += kSets) {
            // chunk number seq + c of this block's stream sits in slot (seq + c) % slots, ring round (seq + c) / slots
            const uint32_t q = seq + c, slot = q % p.slots;
            // Every lane waits (with LSB_LANE0_POLL, lane 0 spins and the others' test then returns at once); each
            // lane's own completed wait is what makes the chunk's bytes visible to it.
            if (!LSB_LANE0_POLL || lane == 0) mbar_wait(&s.full[slot], (q / p.slots) & 1, "a weight chunk", lin, t);
            if (LSB_LANE0_POLL) {
                __syncwarp();
                mbar_wait(&s.full[slot], (q / p.slots) & 1, "a weight chunk", lin, t);
            }
            if (p.mode != kStreamOnly) {
                const uint8_t *chunk = s.ring + (size_t)slot * kChunkBytes;
                const uint4 w0 = reinterpret_cast<const uint4 *>(chunk)[(grp * 2 + 0) * 32 + lane];
                const uint4 w1 = reinterpret_cast<const uint4 *>(chunk)[(grp * 2 + 1) * 32 + lane];
                const __nv_bfloat16 *scale = reinterpret_cast<const __nv_bfloat16 *>(chunk + kChunkCodeBytes) + grp * 16;
                const float s0 = bf(scale[g]), s1 = bf(scale[g + 8]);
                const uint32_t words[8] = {w0.x, w0.y, w0.z, w0.w, w1.x, w1.y, w1.z, w1.w};
                const int kbase = c * kChunkK + grp * kGroupK;
                float ca[4] = {0.f, 0.f, 0.f, 0.f}, cb[4] = {0.f, 0.f, 0.f, 0.f};  // two chains of 4 MMAs
#pragma unroll
                for (int st = 0; st < 8; ++st) {
                    const int k = kbase + st * 16 + 2 * cc;
                    const uint32_t b0 = g == 0 ? x32[k / 2] : 0u, b1 = g == 0 ? x32[k / 2 + 4] : 0u;
                    const uint32_t w = words[st];
                    mma16816(st % 2 ? cb : ca, dequant_pair(w, 0), dequant_pair(w, 1), dequant_pair(w, 2),
                             dequant_pair(w, 3), b0, b1);
                }
                acc0 += s0 * (ca[0] + cb[0]);
                acc1 += s1 * (ca[2] + cb[2]);
            }
            __syncwarp();
            if (lane == 0) mbar_arrive(&s.empty[slot]);
        }
        seq += chunks;
        float(*red)[kTileRows] = s.red[tile_count & 1];
        if (cc == 0) red[warp][g] = acc0, red[warp][g + 8] = acc1;
        consumers_sync();
        if (threadIdx.x < kTileRows) {
            float y = 0.f;
#pragma unroll
            for (int w = 0; w < kConsumerWarps; ++w) y += red[w][threadIdx.x];
            epilogue(t, y, red, res);
        }
        ++tile_count;
    }
}

// Data written by other blocks in this launch (h, qkv, attn, act) is read with ld.global.cg (L2, never a stale L1
// line); the phase counters' acquire orders it.
// RMSNorm of the residual stream into s.x (bf16), as the model's input norms.
__device__ void norm_into_x(const Params &p, Smem &s, const __nv_bfloat16 *weight) {
    constexpr int per = kHidden / kConsumers;  // 12 with 8 consumer warps, 6 with 16, 4 with 24
    float v[per], ss = 0.f;
#pragma unroll
    for (int i = 0; i < per; ++i) v[i] = bf(__ldcg(p.h + threadIdx.x * per + i)), ss += v[i] * v[i];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    if (threadIdx.x % 32 == 0) s.norm_part[threadIdx.x / 32] = ss;
    consumers_sync();
    float total = 0.f;
#pragma unroll
    for (int w = 0; w < kConsumerWarps; ++w) total += s.norm_part[w];
    const float rstd = rsqrtf(total / kHidden + kEps);
#pragma unroll
    for (int i = 0; i < per; ++i) {
        const int j = threadIdx.x * per + i;
        s.x[j] = __float2bfloat16(round_bf(v[i] * rstd) * bf(weight[j]));
    }
    consumers_sync();
}
__device__ void copy_into_x(Smem &s, const __nv_bfloat16 *src, int n) {
    for (int i = threadIdx.x * 8; i < n; i += kConsumers * 8)
        *reinterpret_cast<uint4 *>(s.x + i) = __ldcg(reinterpret_cast<const uint4 *>(src + i));
    consumers_sync();
}

// The attention stand-in for one head: softmax(q·K / 8) V over the `context` cached keys of its group; consumer warp
// w takes keys w, w + kConsumerWarps, ..., and the warps are merged in shared memory.
__device__ void attend_head(const Params &p, Smem &s, int layer, int head) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, T = p.context, grp = head / (kHeads / kGroups);
    const uint32_t q2 = __ldcg(reinterpret_cast<const unsigned *>(p.qkv + (size_t)layer * kQkvN + head * kHeadDim) + lane);
    const float q0 = bf_lo(q2) * 0.125f, q1 = bf_hi(q2) * 0.125f;
    const size_t base = ((size_t)layer * kGroups + grp) * T * kHeadDim;
    const uint32_t *K = reinterpret_cast<const uint32_t *>(p.kcache + base);
    const uint32_t *V = reinterpret_cast<const uint32_t *>(p.vcache + base);
    float m = -INFINITY, l = 0.f, o0 = 0.f, o1 = 0.f;
    for (int j0 = warp; j0 < T; j0 += 8 * kConsumerWarps) {
        uint32_t k[8], v[8];
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            const int j = j0 + i * kConsumerWarps;
            k[i] = j < T ? K[(size_t)j * 32 + lane] : 0u;
            v[i] = j < T ? V[(size_t)j * 32 + lane] : 0u;
        }
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            if (j0 + i * kConsumerWarps >= T) break;
            float sc = q0 * bf_lo(k[i]) + q1 * bf_hi(k[i]);
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) sc += __shfl_xor_sync(0xffffffffu, sc, o);
            const float mn = fmaxf(m, sc), a = __expf(m - mn), e = __expf(sc - mn);
            l = l * a + e;
            o0 = o0 * a + e * bf_lo(v[i]);
            o1 = o1 * a + e * bf_hi(v[i]);
            m = mn;
        }
    }
    if (lane == 0) s.att_m[warp] = m, s.att_l[warp] = l;
    s.att_o[warp][2 * lane] = o0;
    s.att_o[warp][2 * lane + 1] = o1;
    consumers_sync();
    if (threadIdx.x < kHeadDim) {
        float mx = -INFINITY;
        for (int w = 0; w < kConsumerWarps; ++w) mx = fmaxf(mx, s.att_m[w]);
        float L = 0.f, O = 0.f;
        for (int w = 0; w < kConsumerWarps; ++w)
            if (s.att_l[w] > 0.f) {
                const float a = __expf(s.att_m[w] - mx);
                L += s.att_l[w] * a;
                O += s.att_o[w][threadIdx.x] * a;
            }
        p.attn[(size_t)layer * kHidden + head * kHeadDim + threadIdx.x] = __float2bfloat16(O / L);
    }
    consumers_sync();
}

// The plain-load mode: each consumer warp reads whole chunks of the block's stream (warp w: chunks w, w + 16, ...) in
// batches of Depth 16-byte loads per lane (Depth · 512 B in flight per warp), evict-first (ld.global.cs).
template <int Depth>
__device__ void plain_loads(const Params &p) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    constexpr int kVec = kChunkBytes / 16;  // 528 16-byte pieces per chunk
    uint32_t seq = 0, sink = 0;
    for (int layer = 0; layer < p.layers; ++layer)
        for (int lin = 0; lin < kLinears; ++lin) {
            const int tiles = tiles_of(lin), chunks = chunks_of(lin);
            const uint8_t *w = p.w[lin] + (size_t)layer * linear_bytes(lin);
            for (int t = blockIdx.x; t < tiles; t += gridDim.x)
                for (int c = 0; c < chunks; ++c, ++seq) {
                    if ((int)(seq % kConsumerWarps) != warp) continue;
                    const uint4 *src = reinterpret_cast<const uint4 *>(w + ((size_t)t * chunks + c) * kChunkBytes);
                    for (int i0 = lane; i0 < kVec; i0 += 32 * Depth) {
                        uint4 v[Depth];
#pragma unroll
                        for (int i = 0; i < Depth; ++i)
                            v[i] = i0 + 32 * i < kVec ? __ldcs(src + i0 + 32 * i) : make_uint4(0, 0, 0, 0);
#pragma unroll
                        for (int i = 0; i < Depth; ++i) sink ^= v[i].x ^ v[i].y ^ v[i].z ^ v[i].w;
                    }
                }
        }
    if (sink == 0x12345678u) p.counters[0] = sink;  // keeps the loads
}

__global__ void __launch_bounds__(kThreads, 1) layer_stream_kernel(Params p) {
    extern __shared__ __align__(128) uint8_t smem_raw[];
    Smem &s = *reinterpret_cast<Smem *>(smem_raw);
    if (threadIdx.x == 0) {
        for (int i = 0; i < p.slots; ++i) mbar_init(&s.full[i], kFullArrivals), mbar_init(&s.empty[i], kGroupsPerChunk);
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    __syncthreads();

    if (threadIdx.x >= kConsumers) {  // the producer warp: one lane issues every chunk of this block, in use order
        const int lane = threadIdx.x % 32, pwarp = (threadIdx.x - kConsumers) / 32;
        if ((!LSB_CP_ASYNC && lane != 0) || p.mode == kPlainLoads) return;
        uint32_t seq = 0;
        const int pieces = p.variant;
        const unsigned piece = kChunkBytes / pieces;
        for (int layer = 0; layer < p.layers; ++layer)
            for (int lin = 0; lin < kLinears; ++lin) {
                const int tiles = tiles_of(lin), chunks = chunks_of(lin);
                const uint8_t *w = p.w[lin] + (size_t)layer * linear_bytes(lin);
                for (int t = blockIdx.x; t < tiles; t += gridDim.x)
                    for (int c = 0; c < chunks; ++c) {
                        const uint32_t slot = seq % p.slots, round = seq / p.slots;
                        if ((int)(seq++ % kProducerWarps) != pwarp) continue;
                        const uint8_t *src = w + ((size_t)t * chunks + c) * kChunkBytes;
                        uint8_t *dst = s.ring + (size_t)slot * kChunkBytes;
                        if (LSB_CP_ASYNC == 2) {  // loads first (they do not need the slot), then wait, store, arrive
                            constexpr int kVec = kChunkBytes / 16, kPer = (kVec + 31) / 32;
                            uint4 v[kPer];
#pragma unroll
                            for (int i = 0; i < kPer; ++i)
                                if (lane + 32 * i < kVec) v[i] = __ldcs(reinterpret_cast<const uint4 *>(src) + lane + 32 * i);
                            mbar_wait(&s.empty[slot], (round & 1) ^ 1, "a free slot", layer, lin);
#pragma unroll
                            for (int i = 0; i < kPer; ++i)
                                if (lane + 32 * i < kVec) reinterpret_cast<uint4 *>(dst)[lane + 32 * i] = v[i];
                            mbar_arrive(&s.full[slot]);
                            continue;
                        }
                        mbar_wait(&s.empty[slot], (round & 1) ^ 1, "a free slot", layer, lin);
                        if (LSB_CP_ASYNC) {
                            for (int i = lane; i < kChunkBytes / 16; i += 32) cp_async16(dst + 16 * i, src + 16 * i);
                            cp_async_arrive(&s.full[slot]);
                        } else {
                            mbar_arrive_expect_tx(&s.full[slot], kChunkBytes);
                            for (int i = 0; i < pieces; ++i)
                                bulk_copy(dst + i * piece, src + i * piece, piece, &s.full[slot]);
                        }
                    }
            }
        return;
    }

    if (p.mode == kPlainLoads) {  // the same bytes per block, read by plain 16-byte loads, no TMA, no math
        switch (p.variant) {        // loads in flight per lane (17 = a whole chunk)
        case 2: plain_loads<2>(p); break;
        case 4: plain_loads<4>(p); break;
        case 8: plain_loads<8>(p); break;
        default: plain_loads<17>(p); break;
        }
        return;
    }
    uint32_t seq = 0;
    int tile_count = 0;
    const int traced = blockIdx.x == 0 ? 0 : blockIdx.x == gridDim.x - 1 ? 1 : -1;
    for (int layer = 0; layer < p.layers; ++layer) {
        auto mark = [&](int point) {
            if (traced >= 0 && layer == p.layers / 2 && threadIdx.x == 0) p.trace[traced * kTracePoints + point] = now_ns();
        };
        mark(kTrStart);
        __nv_bfloat16 *qkv = p.qkv + (size_t)layer * kQkvN, *act = p.act + (size_t)layer * kInter;
        // qkv = W_qkv · rmsnorm(h)
        if (layer > 0) wait_phase(p, layer - 1, kPhDown);
        mark(kTrQkvIn);
        norm_into_x(p, s, p.norm1 + (size_t)layer * kHidden);
        consume_linear(p, s, kQkv, seq, tile_count,
                       [&](int t, float y, float(*)[kTileRows], float) { qkv[t * kTileRows + threadIdx.x] = __float2bfloat16(y); });
        arrive_phase(p, layer, kPhQkv);
        mark(kTrQkvOut);
        // attention: heads over the first 48 blocks; the others arrive at once (their producers stream on)
        if (blockIdx.x < kHeads) {
            wait_phase(p, layer, kPhQkv);
            mark(kTrAttnIn);
            if (p.mode != kStreamOnly)
                for (int head = blockIdx.x; head < kHeads; head += gridDim.x) attend_head(p, s, layer, head);
        }
        arrive_phase(p, layer, kPhAttn);
        mark(kTrAttnOut);
        // h += W_o · attn (and below h += W_down · act): tile t's rows plus the residual
        auto add_into_h = [&](int t, float y, float(*)[kTileRows], float res) {
            p.h[t * kTileRows + threadIdx.x] = __float2bfloat16(res + round_bf(y));
        };
        wait_phase(p, layer, kPhAttn);
        mark(kTrOIn);
        copy_into_x(s, p.attn + (size_t)layer * kHidden, kHidden);
        consume_linear(p, s, kO, seq, tile_count, add_into_h, p.h);
        arrive_phase(p, layer, kPhO);
        mark(kTrOOut);
        // act = silu(gate) * up, tile t holding gate rows 8t..8t+7 then up rows 8t..8t+7
        wait_phase(p, layer, kPhO);
        mark(kTrGuIn);
        norm_into_x(p, s, p.norm2 + (size_t)layer * kHidden);
        consume_linear(p, s, kGateUp, seq, tile_count, [&](int t, float y, float(*red)[kTileRows], float) {
            if (threadIdx.x < 8) {
                float up = 0.f;
#pragma unroll
                for (int w = 0; w < kConsumerWarps; ++w) up += red[w][threadIdx.x + 8];
                const float gate = round_bf(y);
                act[t * 8 + threadIdx.x] = __float2bfloat16(gate / (1.f + __expf(-gate)) * round_bf(up));
            }
        });
        arrive_phase(p, layer, kPhGateUp);
        mark(kTrGuOut);
        // h += W_down · act
        wait_phase(p, layer, kPhGateUp);
        mark(kTrDownIn);
        copy_into_x(s, act, kInter);
        consume_linear(p, s, kDown, seq, tile_count, add_into_h, p.h);
        arrive_phase(p, layer, kPhDown);
        mark(kTrDownOut);
    }
}

// ---- a plain GEMV over the chunk layout (one launch per linear, as today's kernels) ----
// y = W · x at M = 1: block = one 16-row tile, warp w = group w of every chunk; a lane's codes for all the tile's
// chunks are requested at once (2 × 16 B per chunk: each warp instruction reads 512 contiguous bytes), then
// multiplied as in consume_linear. The question it answers: does the chunk layout stream faster than the row-major
// W4A16 layout of the product's kernels (whose warp instructions read 8 rows × 64 B)?
template <int Chunks>
__global__ void __launch_bounds__(256) chunk_gemv_kernel(const uint8_t *w, const __nv_bfloat16 *x, __nv_bfloat16 *y,
                                                          int tiles) {
    __shared__ float red[8][kTileRows];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, cc = lane % 4;
    const uint32_t *x32 = reinterpret_cast<const uint32_t *>(x);
    for (int t = blockIdx.x; t < tiles; t += gridDim.x) {
        const uint8_t *tile = w + (size_t)t * Chunks * kChunkBytes;
        uint4 code[Chunks][2];
        uint32_t sc[Chunks];
#pragma unroll
        for (int c = 0; c < Chunks; ++c) {
            const uint4 *chunk = reinterpret_cast<const uint4 *>(tile + (size_t)c * kChunkBytes);
            code[c][0] = __ldcs(chunk + (warp * 2 + 0) * 32 + lane);
            code[c][1] = __ldcs(chunk + (warp * 2 + 1) * 32 + lane);
            const uint16_t *scale = reinterpret_cast<const uint16_t *>(tile + (size_t)c * kChunkBytes + kChunkCodeBytes) + warp * 16;
            sc[c] = (uint32_t)__ldcs(scale + g) | (uint32_t)__ldcs(scale + g + 8) << 16;
        }
        float acc0 = 0.f, acc1 = 0.f;
#pragma unroll
        for (int c = 0; c < Chunks; ++c) {
            const uint32_t words[8] = {code[c][0].x, code[c][0].y, code[c][0].z, code[c][0].w,
                                       code[c][1].x, code[c][1].y, code[c][1].z, code[c][1].w};
            const int kbase = c * kChunkK + warp * kGroupK;
            float ca[4] = {0.f, 0.f, 0.f, 0.f}, cb[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
            for (int st = 0; st < 8; ++st) {
                const int k = kbase + st * 16 + 2 * cc;
                const uint32_t b0 = g == 0 ? __ldg(x32 + k / 2) : 0u, b1 = g == 0 ? __ldg(x32 + k / 2 + 4) : 0u;
                const uint32_t wd = words[st];
                mma16816(st % 2 ? cb : ca, dequant_pair(wd, 0), dequant_pair(wd, 1), dequant_pair(wd, 2),
                         dequant_pair(wd, 3), b0, b1);
            }
            acc0 += bf_lo(sc[c]) * (ca[0] + cb[0]);
            acc1 += bf_hi(sc[c]) * (ca[2] + cb[2]);
        }
        if (cc == 0) red[warp][g] = acc0, red[warp][g + 8] = acc1;
        __syncthreads();
        if (threadIdx.x < kTileRows) {
            float v = 0.f;
#pragma unroll
            for (int i = 0; i < 8; ++i) v += red[i][threadIdx.x];
            y[t * kTileRows + threadIdx.x] = __float2bfloat16(v);
        }
        __syncthreads();
    }
}

// ---- deterministic random fills on the GPU ----
__device__ __host__ inline uint32_t hash32(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return (uint32_t)x;
}
// Codes: random nibbles; scales: bf16 in [0.002, 0.006).
__global__ void fill_weights(uint8_t *w, size_t bytes, uint64_t seed) {
    for (size_t i = (blockIdx.x * (size_t)blockDim.x + threadIdx.x) * 4; i < bytes; i += (size_t)gridDim.x * blockDim.x * 4) {
        const size_t in_chunk = i % kChunkBytes;
        uint32_t v = hash32(seed ^ (i * 0x9e3779b97f4a7c15ull));
        if (in_chunk >= kChunkCodeBytes) {
            const __nv_bfloat16 a = __float2bfloat16(0.002f + 0.004f * (v & 0xffff) / 65536.f);
            const __nv_bfloat16 b = __float2bfloat16(0.002f + 0.004f * (v >> 16) / 65536.f);
            v = (uint32_t)__bfloat16_as_ushort(a) | (uint32_t)__bfloat16_as_ushort(b) << 16;
        }
        *reinterpret_cast<uint32_t *>(w + i) = v;
    }
}
__global__ void fill_bf16(__nv_bfloat16 *p, size_t n, uint64_t seed, float lo, float hi) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        p[i] = __float2bfloat16(lo + (hi - lo) * (hash32(seed ^ (i * 0x9e3779b97f4a7c15ull)) >> 8) / 16777216.f);
}

// ---- host side ----
float host_bf(uint16_t v) {
    uint32_t u = (uint32_t)v << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
float host_round_bf(float f) {  // round to nearest even, as __float2bfloat16 (finite inputs)
    uint32_t u;
    std::memcpy(&u, &f, 4);
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    std::memcpy(&f, &u, 4);
    return f;
}

// The CPU reader of the chunk format, written from the layout comment above (not from the kernel's index math):
// weight (row, k) of a linear = (code - 8) · scale.
struct HostLinear {
    const uint8_t *bytes;  // one layer's
    int lin;
    float at(int row, int k) const {
        const int chunks = chunks_of(lin), t = row / kTileRows, r = row % kTileRows, c = k / kChunkK, kk = k % kChunkK;
        const uint8_t *chunk = bytes + ((size_t)t * chunks + c) * kChunkBytes;
        const int group = kk / kGroupK, kg = kk % kGroupK, step = kg / 16, ks = kg % 16;
        // mma A fragment: lane = 4 · (r mod 8) + (ks mod 8) / 2; element a[i], i = 4 · (ks / 8) + 2 · (r / 8) + ks mod 2,
        // sits in register i / 2, bits 16 · (i mod 2) + 4 · (i / 2) of that lane's word for this 16-k step.
        const int lane = 4 * (r % 8) + (ks % 8) / 2, i = 4 * (ks / 8) + 2 * (r / 8) + ks % 2;
        const int word_index = ((group * 2 + step / 4) * 32 + lane) * 4 + step % 4;
        uint32_t word;
        std::memcpy(&word, chunk + 4 * (size_t)word_index, 4);
        const int code = (word >> (16 * (i % 2) + 4 * (i / 2))) & 15;
        uint16_t sc;
        std::memcpy(&sc, chunk + kChunkCodeBytes + 2 * (group * kTileRows + r), 2);
        return (code - 8) * host_bf(sc);
    }
};

double rel_l2(const std::vector<float> &a, const std::vector<float> &b) {
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); ++i) num += (double)(a[i] - b[i]) * (a[i] - b[i]), den += (double)b[i] * b[i];
    return std::sqrt(num / std::max(den, 1e-30));
}
std::vector<float> download_bf16(const __nv_bfloat16 *p, size_t n) {
    std::vector<uint16_t> raw(n);
    CK(cudaMemcpy(raw.data(), p, n * 2, cudaMemcpyDeviceToHost));
    std::vector<float> f(n);
    for (size_t i = 0; i < n; ++i) f[i] = host_bf(raw[i]);
    return f;
}

struct Model {
    int layers, context;
    uint8_t *w[kLinears];
    __nv_bfloat16 *norm1, *norm2, *kc, *vc, *h, *h0, *qkv, *attn, *act;
    unsigned *counters;
    unsigned long long *trace;
    Model(int layers_, int context_) : layers(layers_), context(context_) {
        for (int l = 0; l < kLinears; ++l) {
            CK(cudaMalloc(&w[l], linear_bytes(l) * layers));
            fill_weights<<<1024, 256>>>(w[l], linear_bytes(l) * layers, 0x1234 + l);
        }
        const size_t kv = (size_t)layers * kGroups * context * kHeadDim;
        auto alloc = [](__nv_bfloat16 **p, size_t n, uint64_t seed, float lo, float hi) {
            CK(cudaMalloc(p, n * 2));
            fill_bf16<<<256, 256>>>(*p, n, seed, lo, hi);
        };
        alloc(&norm1, (size_t)layers * kHidden, 11, 0.5f, 1.5f);
        alloc(&norm2, (size_t)layers * kHidden, 12, 0.5f, 1.5f);
        alloc(&kc, kv, 13, -2.f, 2.f);
        alloc(&vc, kv, 14, -1.f, 1.f);
        alloc(&h0, kHidden, 15, -1.f, 1.f);
        alloc(&h, kHidden, 15, -1.f, 1.f);
        alloc(&qkv, (size_t)layers * kQkvN, 16, 0.f, 0.f);
        alloc(&attn, (size_t)layers * kHidden, 17, 0.f, 0.f);
        alloc(&act, (size_t)layers * kInter, 18, 0.f, 0.f);
        CK(cudaMalloc(&counters, (size_t)layers * kPhases * 4));
        CK(cudaMalloc(&trace, 2 * kTracePoints * 8));
        CK(cudaGetLastError());
        CK(cudaDeviceSynchronize());
    }
    ~Model() {
        for (auto p : w) cudaFree(p);
        for (void *p : {(void *)norm1, (void *)norm2, (void *)kc, (void *)vc, (void *)h, (void *)h0, (void *)qkv,
                        (void *)attn, (void *)act, (void *)counters, (void *)trace})
            cudaFree(p);
    }
    size_t weight_bytes_per_layer() const {
        size_t b = 0;
        for (int l = 0; l < kLinears; ++l) b += linear_bytes(l);
        return b;
    }
    // Before each launch: h back to its start, the counters to zero.
    void reset(cudaStream_t st) {
        CK(cudaMemcpyAsync(h, h0, kHidden * 2, cudaMemcpyDeviceToDevice, st));
        CK(cudaMemsetAsync(counters, 0, (size_t)layers * kPhases * 4, st));
        CK(cudaMemsetAsync(trace, 0, 2 * kTracePoints * 8, st));
    }
    void launch(cudaStream_t st, int blocks, int slots, Mode mode, int variant = 1) {
        Params p{};
        for (int l = 0; l < kLinears; ++l) p.w[l] = w[l];
        p.norm1 = norm1, p.norm2 = norm2, p.kcache = kc, p.vcache = vc, p.h = h, p.qkv = qkv, p.attn = attn, p.act = act;
        p.counters = counters, p.trace = trace, p.layers = layers, p.context = context, p.slots = slots, p.mode = mode, p.variant = variant;
        void *args[] = {&p};
        CK(cudaLaunchCooperativeKernel((void *)layer_stream_kernel, dim3(blocks), dim3(kThreads), args,
                                       smem_bytes(slots), st));
        CK(cudaGetLastError());
    }
    static size_t smem_bytes(int slots) { return offsetof(Smem, ring) + (size_t)slots * kChunkBytes; }
};

// The CPU reference of the same math; returns false (after printing) if any output is off.
bool check(Model &m, cudaStream_t st, int blocks, int slots) {
    m.reset(st);
    m.launch(st, blocks, slots, kFull);
    CK(cudaStreamSynchronize(st));
    const int L = m.layers, T = m.context;
    std::vector<float> h = download_bf16(m.h0, kHidden), n1 = download_bf16(m.norm1, (size_t)L * kHidden),
                       n2 = download_bf16(m.norm2, (size_t)L * kHidden),
                       kc = download_bf16(m.kc, (size_t)L * kGroups * T * kHeadDim),
                       vc = download_bf16(m.vc, (size_t)L * kGroups * T * kHeadDim);
    std::vector<uint8_t> w[kLinears];
    for (int l = 0; l < kLinears; ++l) {
        w[l].resize(linear_bytes(l) * L);
        CK(cudaMemcpy(w[l].data(), m.w[l], w[l].size(), cudaMemcpyDeviceToHost));
    }
    auto matvec = [&](int lin, int layer, const std::vector<float> &x) {
        const HostLinear W{w[lin].data() + linear_bytes(lin) * layer, lin};
        std::vector<float> y(rows_of(lin));
#pragma omp parallel for
        for (int r = 0; r < rows_of(lin); ++r) {
            double acc = 0;
            for (int k = 0; k < inputs_of(lin); ++k) acc += (double)W.at(r, k) * x[k];
            y[r] = host_round_bf((float)acc);
        }
        return y;
    };
    auto rmsnorm = [&](const std::vector<float> &v, const float *weight) {
        double ss = 0;
        for (float f : v) ss += (double)f * f;
        const float rstd = 1.f / std::sqrt((float)(ss / kHidden) + kEps);
        std::vector<float> x(kHidden);
        for (int i = 0; i < kHidden; ++i) x[i] = host_round_bf(host_round_bf(v[i] * rstd) * weight[i]);
        return x;
    };
    bool ok = true;
    auto compare = [&](const char *what, int layer, const std::vector<float> &got, const std::vector<float> &want) {
        const double e = rel_l2(got, want);
        const bool pass = e <= 2e-2 && std::isfinite(e);
        std::printf("  check %-5s layer %d: relative L2 %.2e (bound 2e-2) %s\n", what, layer, e, pass ? "ok" : "FAIL");
        ok &= pass;
    };
    for (int layer = 0; layer < L; ++layer) {
        std::vector<float> qkv = matvec(kQkv, layer, rmsnorm(h, n1.data() + (size_t)layer * kHidden));
        std::vector<float> got = download_bf16(m.qkv + (size_t)layer * kQkvN, kQkvN);
        compare("qkv", layer, got, qkv);
        qkv = got;  // continue from the GPU's values, so each stage is checked on its own
        std::vector<float> att(kHidden);
        for (int head = 0; head < kHeads; ++head) {
            const int grp = head / (kHeads / kGroups);
            const float *K = kc.data() + ((size_t)layer * kGroups + grp) * T * kHeadDim;
            const float *V = vc.data() + ((size_t)layer * kGroups + grp) * T * kHeadDim;
            std::vector<double> sc(T);
            double mx = -1e300, sum = 0;
            for (int j = 0; j < T; ++j) {
                double d = 0;
                for (int e = 0; e < kHeadDim; ++e) d += (double)qkv[head * kHeadDim + e] * 0.125 * K[j * kHeadDim + e];
                sc[j] = d, mx = std::max(mx, d);
            }
            for (int j = 0; j < T; ++j) sc[j] = std::exp(sc[j] - mx), sum += sc[j];
            for (int e = 0; e < kHeadDim; ++e) {
                double o = 0;
                for (int j = 0; j < T; ++j) o += sc[j] * V[j * kHeadDim + e];
                att[head * kHeadDim + e] = host_round_bf((float)(o / sum));
            }
        }
        got = download_bf16(m.attn + (size_t)layer * kHidden, kHidden);
        compare("attn", layer, got, att);
        std::vector<float> o = matvec(kO, layer, got);
        for (int i = 0; i < kHidden; ++i) h[i] = host_round_bf(h[i] + o[i]);
        std::vector<float> gu = matvec(kGateUp, layer, rmsnorm(h, n2.data() + (size_t)layer * kHidden));
        std::vector<float> act(kInter);
        for (int t = 0; t < kInter / 8; ++t)
            for (int r = 0; r < 8; ++r) {
                const float gate = gu[t * 16 + r], up = gu[t * 16 + 8 + r];
                act[t * 8 + r] = host_round_bf(gate / (1.f + std::exp(-gate)) * up);
            }
        got = download_bf16(m.act + (size_t)layer * kInter, kInter);
        compare("act", layer, got, act);
        std::vector<float> d = matvec(kDown, layer, got);
        for (int i = 0; i < kHidden; ++i) h[i] = host_round_bf(h[i] + d[i]);
    }
    // h after the last layer; the CPU's own h, which followed the GPU's inputs stage by stage
    compare("h", L - 1, download_bf16(m.h, kHidden), h);
    return ok;
}

// The middle layer's timeline of the last launch, µs since its start, for block 0 and the last block.
void print_trace(const Model &m) {
    unsigned long long t[2][kTracePoints];
    CK(cudaMemcpy(t, m.trace, sizeof t, cudaMemcpyDeviceToHost));
    for (int b = 0; b < 2; ++b) {
        std::printf("    timeline, %s:", b ? "last block" : "block 0   ");
        for (int i = 1; i < kTracePoints; ++i)
            if (t[b][i]) std::printf(" %s %.2f", kTraceNames[i], (t[b][i] - t[b][kTrStart]) * 1e-3);
        std::printf(" (us)\n");
    }
}

// Median ms of 10 timed runs of timed() (after 2 warm-ups) on stream st; untimed() runs before each, outside the events.
template <class Untimed, class Timed>
float median_ms(cudaStream_t st, Untimed untimed, Timed timed) {
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    std::vector<float> t;
    for (int r = 0; r < 12; ++r) {
        untimed();
        CK(cudaEventRecord(a, st));
        timed();
        CK(cudaEventRecord(b, st));
        CK(cudaEventSynchronize(b));
        float ms;
        CK(cudaEventElapsedTime(&ms, a, b));
        if (r >= 2) t.push_back(ms);
    }
    CK(cudaEventDestroy(a));
    CK(cudaEventDestroy(b));
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

// The chunk-layout GEMV alone: checked against the CPU reader on layer 0, then timed in a graph of 32 launches over
// the 32 layers' copies (1.6 GB in all, so no launch finds its weights in L2), µs per launch.
bool gemv_bench(Model &m, cudaStream_t st, int lin, int blocks_per_sm, int sms) {
    const int n = rows_of(lin), k = inputs_of(lin), tiles = tiles_of(lin);
    __nv_bfloat16 *x, *y;
    CK(cudaMalloc(&x, k * 2));
    CK(cudaMalloc(&y, (size_t)n * 2 * m.layers));
    fill_bf16<<<64, 256>>>(x, k, 99 + lin, -1.f, 1.f);
    const int grid = blocks_per_sm > 0 ? std::min(tiles, blocks_per_sm * sms) : tiles;
    auto launch = [&](int layer) {
        const uint8_t *w = m.w[lin] + linear_bytes(lin) * layer;
        __nv_bfloat16 *yl = y + (size_t)n * layer;
        if (chunks_of(lin) == 3) chunk_gemv_kernel<3><<<grid, 256, 0, st>>>(w, x, yl, tiles);
        else chunk_gemv_kernel<8><<<grid, 256, 0, st>>>(w, x, yl, tiles);
    };
    launch(0);
    CK(cudaGetLastError());
    CK(cudaStreamSynchronize(st));
    // check
    std::vector<uint8_t> wh(linear_bytes(lin));
    CK(cudaMemcpy(wh.data(), m.w[lin], wh.size(), cudaMemcpyDeviceToHost));
    const std::vector<float> xh = download_bf16(x, k), got = download_bf16(y, n);
    const HostLinear W{wh.data(), lin};
    std::vector<float> want(n);
#pragma omp parallel for
    for (int r = 0; r < n; ++r) {
        double acc = 0;
        for (int i = 0; i < k; ++i) acc += (double)W.at(r, i) * xh[i];
        want[r] = (float)acc;
    }
    for (float &v : want) v = host_round_bf(v);  // the kernel stores bf16
    const double e = rel_l2(got, want);
    // timing: a graph of one launch per layer
    cudaGraph_t g;
    cudaGraphExec_t ge;
    CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal));
    for (int l = 0; l < m.layers; ++l) launch(l);
    CK(cudaStreamEndCapture(st, &g));
    CK(cudaGraphInstantiateWithFlags(&ge, g, 0));
    const double us = median_ms(st, [] {}, [&] { CK(cudaGraphLaunch(ge, st)); }) * 1e3 / m.layers;
    std::printf("  chunk-layout GEMV %-8s %5d x %4d, grid %4d: %6.2f us per launch, %5.0f GB/s; check relative L2 %.1e %s\n",
                lin == kQkv ? "qkv" : lin == kO ? "o" : lin == kGateUp ? "gate_up" : "down", n, k, grid, us,
                linear_bytes(lin) / (us * 1e-6) / 1e9, e, e < 1e-3 ? "ok" : "FAIL");
    CK(cudaGraphExecDestroy(ge));
    CK(cudaGraphDestroy(g));
    cudaFree(x);
    cudaFree(y);
    return e < 1e-3;
}

float time_ms(Model &m, cudaStream_t st, int blocks, int slots, Mode mode, int variant) {
    return median_ms(st, [&] { m.reset(st); }, [&] { m.launch(st, blocks, slots, mode, variant); });
}

}  // namespace

int main(int argc, char **argv) {
    // "profile": one launch each of stream only, plain loads (4 per lane) and full, nothing else (for ncu).
    const bool profile = argc > 1 && std::strcmp(argv[1], "profile") == 0;
    const int slots_arg = argc > 1 && !profile ? std::atoi(argv[1]) : 24, context = argc > 2 ? std::atoi(argv[2]) : 64;
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    if (prop.major < 9) {
        std::printf("layer_stream_bench needs sm_90 (cp.async.bulk); %s is sm_%d%d: skipped\n", prop.name, prop.major,
                    prop.minor);
        return 0;
    }
    if (slots_arg < 2 || slots_arg > 32 || context < 1) {
        std::fprintf(stderr, "usage: layer_stream_bench [slots 2..32] [context >= 1]\n");
        return 2;
    }
    const size_t smem = Model::smem_bytes(slots_arg);
    CK(cudaFuncSetAttribute(layer_stream_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    int per_sm = 0;
    CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, layer_stream_kernel, kThreads, smem));
    if (per_sm < 1) {
        std::fprintf(stderr, "%d slots (%zu B of shared memory) do not fit on an SM\n", slots_arg, smem);
        return 1;
    }
    const int blocks = prop.multiProcessorCount;
    cudaStream_t st;
    CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    std::printf("%s, %d SMs; one block of %d threads per SM (%d consumer warps), %d ring slots of %d B (%zu B shared memory)\n",
                prop.name, blocks, kThreads, kConsumerWarps, slots_arg, kChunkBytes, smem);

    if (profile) {
        Model m(32, context);
        for (Mode mode : {kStreamOnly, kPlainLoads, kFull}) {
            m.reset(st);
            m.launch(st, blocks, slots_arg, mode, mode == kPlainLoads ? 4 : 1);
        }
        CK(cudaStreamSynchronize(st));
        std::printf("profile: stream only, plain loads, full: one launch each\n");
        return 0;
    }
    {  // correctness first: 2 layers at a ragged context, every stage against the CPU
        Model small(2, 37);
        std::printf("check (2 layers, context 37):\n");
        if (!check(small, st, blocks, slots_arg)) {
            std::printf("layer_stream_bench: CHECK FAILED\n");
            return 1;
        }
    }
    const int layers = 32;
    Model m(layers, context);
    const double bytes = (double)m.weight_bytes_per_layer();
    std::printf("timing: %d layers, context %d, %.1f MB of weights per layer (median of 10 launches)\n", layers, context,
                bytes / 1e6);
    for (int slots : {slots_arg, 8})
        for (int pieces : {1, 4}) {
            if (slots > slots_arg) continue;
            for (Mode mode : {kFull, kNoWaits, kStreamOnly}) {
                const float ms = time_ms(m, st, blocks, slots, mode, pieces);
                const double us_layer = ms * 1e3 / layers;
                std::printf("  slots %2d, %d copies per chunk  %-28s %8.3f ms  %6.2f us/layer  %6.0f GB/s\n", slots, pieces,
                            mode == kFull ? "full (dependencies kept)" : mode == kNoWaits ? "no phase waits (wrong math)"
                                                                                         : "stream only (no math)",
                            ms, us_layer, bytes / (us_layer * 1e-6) / 1e9);
                if (mode == kFull && slots == slots_arg && pieces == 1) print_trace(m);
            }
        }
    bool gemv_ok = true;
    if (!std::getenv("LSB_NO_GEMV"))  // the chunk-layout GEMV alone (LSB_NO_GEMV=1 skips it)
        for (int lin = 0; lin < kLinears; ++lin)
            for (int per_sm : {0, 2}) gemv_ok &= gemv_bench(m, st, lin, per_sm, blocks);
    for (int depth : {2, 4, 8, 17}) {
        const float ms = time_ms(m, st, blocks, slots_arg, kPlainLoads, depth);
        const double us_layer = ms * 1e3 / layers;
        std::printf("  plain 16-byte loads, %2d per lane in flight (%3d KB per SM)  %8.3f ms  %6.2f us/layer  %6.0f GB/s\n",
                    depth, depth * 512 * kConsumerWarps / 1024, ms, us_layer, bytes / (us_layer * 1e-6) / 1e9);
    }
    CK(cudaStreamDestroy(st));
    if (!gemv_ok) std::printf("layer_stream_bench: a chunk-layout GEMV CHECK FAILED\n");
    return gemv_ok ? 0 : 1;
}
