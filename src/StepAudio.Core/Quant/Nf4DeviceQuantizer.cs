using StepAudio.Backends;
using StepAudio.Checkpoints;

namespace StepAudio.Quant;

/// <summary>NF4 quantization at load on the GPU (the <c>bnb</c> variant made from a base bf16 folder, as the existing
/// server does): the bytes <see cref="Nf4Quantizer"/> gives (blocksize 64, double quant; the GPU tests compare them),
/// written straight into the device arrays of <see cref="Nf4KernelLayout"/>. On the CPU this quantization was most of
/// the <c>bnb</c> load (~9.5 s for a full model on the 16-core GPU machine); here the kernels take milliseconds and
/// the load is the bf16 upload. The one step left on the host is each tensor's double-quant offset, a mean that the
/// reference sums in index order (<see cref="Nf4Quantizer.NestedOffset"/>), so both give the same fp32 value.</summary>
public static class Nf4DeviceQuantizer
{
    /// <summary>One bf16 [N, K] weight in host memory (a mapped checkpoint tensor), named for error messages.</summary>
    public readonly record struct Source(string Module, nint Bf16, int N, int K)
    {
        public static Source Of(CheckpointFolder checkpoint, string module)
        {
            var info = Nf4Quantizer.WeightToQuantize(checkpoint, module);
            return new Source(module, checkpoint.Pointer(info), (int)info.Shape[0], (int)info.Shape[1]);
        }

        public long Values => (long)N * K;
        public long Blocks => Values / Nf4Quantizer.BlockSize;
        /// <summary>Double-quant groups of 256 blocks (the last one may be partial).</summary>
        public long NestedGroups => (Blocks + Nf4Quantizer.NestedBlockSize - 1) / Nf4Quantizer.NestedBlockSize;
    }

    /// <summary>Quantizes the parts and fuses them along N (same K), as <see cref="Nf4KernelLayout.Repack"/> does with
    /// CPU-quantized tensors, with the same checks. Every buffer of the result passes through <paramref name="own"/>.</summary>
    public static unsafe LinearWeight Quantize(CudaBackend backend, IReadOnlyList<Source> parts, string purpose, Func<DeviceBuffer, DeviceBuffer> own)
    {
        if (parts.Count == 0) throw new ArgumentException("no modules to quantize");
        int k = parts[0].K;
        for (int p = 0; p < parts.Count; p++)
        {
            var s = parts[p];
            if (s.N <= 0 || s.K <= 0) throw new CheckpointException($"{s.Module}: weight is [{s.N}, {s.K}]");
            Nf4KernelLayout.CheckRows(s.Module, k, s.K);
            Nf4KernelLayout.CheckNestedGroups(s.Module, s.Blocks, last: p == parts.Count - 1);
        }
        long total = parts.Sum(s => s.Values), largest = parts.Max(s => s.Values);
        long largestBlocks = parts.Max(s => s.Blocks), largestGroups = parts.Max(s => s.NestedGroups);

        var qweight = own(backend.Allocate(total / 2, $"{purpose} NF4 packed weight"));
        var absmaxCodes = own(backend.Allocate(total / Nf4Quantizer.BlockSize, $"{purpose} NF4 absmax"));
        using var staging = backend.Allocate(largest * 2, $"{purpose}: bf16 weight being quantized to NF4");
        using var absmax = backend.Allocate(largestBlocks * 4, $"{purpose}: NF4 absmax before double quant");
        using var nested = backend.Allocate(largestGroups * 4, $"{purpose}: NF4 nested absmax");
        // The layout's tables: the code tables (quant_map, 16, then the double-quant map, 256), then one (nested absmax,
        // offset) pair per group of every part. The head is uploaded first because the quantize kernels read the
        // code tables from it; the pairs follow once each part is done.
        long pairs = parts.Sum(s => s.NestedGroups);
        var tablesBuffer = own(backend.Allocate((Nf4KernelLayout.TableHeader + 2 * pairs) * 4, $"{purpose} NF4 tables"));
        float[] header = [.. Nf4Format.CodeTable, .. Nf4Quantizer.DynamicMap];
        fixed (float* h = header) backend.Upload(tablesBuffer.Pointer, (nint)h, header.Length * 4L);
        var pairValues = new float[2 * pairs];

        long at = 0;    // values quantized so far: the part's place in the fused arrays
        long next = 0;  // floats of pairValues written so far
        foreach (var s in parts)
        {
            long blocks = s.Blocks;
            int groups = (int)s.NestedGroups;
            backend.Upload(staging.Pointer, s.Bf16, s.Values * 2);
            backend.Nf4Quantize(staging.Pointer, s.Values, tablesBuffer.Pointer, qweight.At(at / 2), absmax.Pointer);
            var hostAbsmax = new float[blocks];
            fixed (float* a = hostAbsmax) backend.Download(absmax.Pointer, (nint)a, blocks * 4);
            float offset = Nf4Quantizer.NestedOffset(hostAbsmax);
            backend.Nf4QuantizeNested(absmax.Pointer, blocks, offset, tablesBuffer.At(16 * 4), absmaxCodes.At(at / Nf4Quantizer.BlockSize), nested.Pointer);
            var hostNested = new float[groups];
            fixed (float* g = hostNested) backend.Download(nested.Pointer, (nint)g, groups * 4L);
            foreach (float g in hostNested)
            {
                pairValues[next++] = g;
                pairValues[next++] = offset;
            }
            at += s.Values;
        }
        fixed (float* t = pairValues) backend.Upload(tablesBuffer.At(Nf4KernelLayout.TableHeader * 4L), (nint)t, pairValues.Length * 4L);
        return new LinearWeight(WeightFormat.Nf4, parts.Sum(s => s.N), k, qweight, absmaxCodes, tablesBuffer);
    }
}
