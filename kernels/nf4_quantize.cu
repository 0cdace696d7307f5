// nf4_quantize.cu — NF4 quantization at load on the GPU (the `bnb` variant quantizes a base bf16 folder as the
// existing server does): the same bytes as the C# quantizer (src/StepAudio.Core/Quant/Nf4Quantizer.cs), which is
// the reference and is checked against bitsandbytes' published format. On the CPU that quantization was most of the
// `bnb` load (~9.5 s for 3.1 G values on the 16-core GPU machine); here it is a few milliseconds, and the load is
// the bf16 upload.
//
// One warp per block of values, any block size the caller asks for (64 for the weights, 256 for double quant):
//  absmax = max |v| over the block, NaN when the block holds a NaN (the reference's MathF.Max propagates it);
//  code   = the index of the table entry nearest to v / (absmax, or 1 when absmax is 0), scanning the table in
//           order and keeping the first strictly smaller distance: the lowest index on a tie, and 0 for a NaN or
//           infinite quotient (every distance is then NaN or infinite). The table (16 or 256 ascending entries)
//           sits in shared memory; every lane reads the same entry at once (a broadcast).
// The division and the distance use IEEE single-precision operations (__fdiv_rn, __fsub_rn): the library is built
// with --use_fast_math, which would otherwise approximate the division and change codes near a midpoint. Its flush of
// subnormals to zero applies even to those (div.rn.ftz), so CMakeLists.txt compiles this file with -ftz=false: a
// block of subnormal weights then gets the reference's absmax and codes instead of zeros.
// Nothing here is on the decode path, so no PDL and no tuning: a plain launch, checked.
#include "cuda_common.cuh"
#include "nf4_common.h"

namespace {

constexpr int kWarps = 8;  // blocks of values per thread block

// Nearest table entry to q by the in-order strict scan (see the file comment).
__device__ __forceinline__ int nearest_code(float q, const float *table, int entries) {
    int best = 0;
    float best_dist = fabsf(__fsub_rn(q, table[0]));
    for (int i = 1; i < entries; ++i) {
        const float d = fabsf(__fsub_rn(q, table[i]));
        if (d < best_dist) best = i, best_dist = d;
    }
    return best;
}

__device__ __forceinline__ float load_value(const uint16_t *src, int64_t i, float) { return sa_bf16_to_f32(src[i]); }
__device__ __forceinline__ float load_value(const float *src, int64_t i, float offset) { return __fsub_rn(src[i], offset); }

// Block b of `count` values (the last may be ragged): absmax[b] and the codes. In: bf16 weights (offset unused), or
// fp32 absmax values centred by `offset` (double quant). Packed: two codes per byte, element 2i in the high nibble
// (the bnb weight layout); else one code per byte (the double-quant absmax codes).
template <typename In, bool kPacked>
__global__ void __launch_bounds__(kWarps * 32) quantize_blocks(const In *__restrict__ src, int64_t count, float offset,
                                                               int block_size, const float *__restrict__ table,
                                                               int entries, uint8_t *__restrict__ codes,
                                                               float *__restrict__ absmax) {
    __shared__ float t[256];
    for (int i = threadIdx.x; i < entries; i += blockDim.x) t[i] = table[i];
    __syncthreads();
    const int lane = threadIdx.x & 31;
    const int64_t blocks = (count + block_size - 1) / block_size;
    const int64_t b = (int64_t)blockIdx.x * kWarps + (threadIdx.x >> 5);
    if (b >= blocks) return;
    const int64_t first = b * block_size;
    const int len = (int)min((int64_t)block_size, count - first);

    float m = 0.0f;
    bool nan = false;
    for (int j = lane; j < len; j += 32) {
        const float v = load_value(src, first + j, offset);
        nan |= isnan(v);
        m = fmaxf(m, fabsf(v));
    }
    for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
    if (__any_sync(0xffffffffu, nan)) m = __int_as_float(0x7fc00000);  // NaN, as the reference's absmax
    if (lane == 0) absmax[b] = m;
    const float divisor = m == 0.0f ? 1.0f : m;

    if (kPacked) {  // lane j handles the pair (2j, 2j + 1) of each 64-value stride; block_size is even
        for (int j = 2 * lane; j < len; j += 64) {
            const int hi = nearest_code(__fdiv_rn(load_value(src, first + j, offset), divisor), t, entries);
            const int lo = j + 1 < len ? nearest_code(__fdiv_rn(load_value(src, first + j + 1, offset), divisor), t, entries) : 0;
            codes[(first + j) / 2] = (uint8_t)(hi << 4 | lo);
        }
    } else {
        for (int j = lane; j < len; j += 32)
            codes[first + j] = (uint8_t)nearest_code(__fdiv_rn(load_value(src, first + j, offset), divisor), t, entries);
    }
}

template <typename In, bool kPacked>
sa_status launch_quantize(const char *name, const In *src, int64_t count, float offset, int block_size,
                          const float *table, int entries, uint8_t *codes, float *absmax, void *stream) {
    const int64_t blocks = (count + block_size - 1) / block_size;
    const int64_t grid = (blocks + kWarps - 1) / kWarps;
    if (grid > INT32_MAX) return sa_cuda::invalid(std::string(name) + ": too many blocks");
    quantize_blocks<In, kPacked><<<(unsigned)grid, kWarps * 32, 0, sa_cuda::as_stream(stream)>>>(
        src, count, offset, block_size, table, entries, codes, absmax);
    SA_CHECK_LAUNCH(name);
    return SA_OK;
}

}  // namespace

SA_API sa_status sa_cuda_nf4_quantize(const uint16_t *w, int64_t count, const float *quant_map, uint8_t *packed,
                                      float *absmax, void *stream) {
    SA_GUARD_BEGIN
    if (!w || !quant_map || !packed || !absmax || count <= 0)
        return sa_cuda::invalid("sa_cuda_nf4_quantize: null pointer or count <= 0");
    return launch_quantize<uint16_t, true>("sa_cuda_nf4_quantize", w, count, 0.0f, SA_NF4_BLOCK, quant_map, 16, packed,
                                           absmax, stream);
    SA_GUARD_END
}

SA_API sa_status sa_cuda_nf4_quantize_nested(const float *absmax, int64_t blocks, float offset, const float *nested_map,
                                             uint8_t *codes, float *nested_absmax, void *stream) {
    SA_GUARD_BEGIN
    if (!absmax || !nested_map || !codes || !nested_absmax || blocks <= 0)
        return sa_cuda::invalid("sa_cuda_nf4_quantize_nested: null pointer or blocks <= 0");
    return launch_quantize<float, false>("sa_cuda_nf4_quantize_nested", absmax, blocks, offset, SA_NF4_NESTED_BLOCK,
                                         nested_map, 256, codes, nested_absmax, stream);
    SA_GUARD_END
}
