using System.Runtime.InteropServices;
using StepAudio.Backends;
using StepAudio.Checkpoints;
using StepAudio.Model;

namespace StepAudio.Quant;

/// <summary>An NF4 weight in the kernel layout of stepaudio_native.h ("bitsandbytes NF4 weights"): the bnb nibbles
/// unchanged ([N, K/2] once K is whole 64-blocks), absmax per 64-block (u8 codes with double quant, else fp32), and
/// the tables (quant_map, nested map, one (nested_absmax, offset) pair per 256 blocks). Nothing is re-rounded, so
/// dequantized values equal bitsandbytes' formula bit for bit. Several modules fuse along N.</summary>
public sealed class Nf4KernelLayout
{
    public const int TableHeader = 16 + 256;

    public required int N { get; init; }
    public required int K { get; init; }
    public required bool DoubleQuant { get; init; }
    public required byte[] QWeight { get; init; }
    public required byte[] Absmax { get; init; }   // u8 codes, or fp32 bytes without double quant
    public required float[] Tables { get; init; }

    /// <summary>Fuses modules (same K) along N. Fails, naming the module, on what the kernel layout cannot hold
    /// exactly: K not a multiple of 64, a blocksize other than 64 or nested blocksize other than 256, a nested group
    /// straddling two fused modules, or differing code tables.</summary>
    public static Nf4KernelLayout Repack(IReadOnlyList<(string Module, Nf4Tensor Tensor)> parts)
    {
        var first = parts[0].Tensor;
        int k = first.State.K;
        bool dq = first.State.DoubleQuant;
        var tables = new List<float>(TableHeader);
        tables.AddRange(first.QuantMap);
        tables.AddRange(dq ? first.NestedQuantMap! : new float[256]);
        var qweight = new List<byte[]>();
        var absmax = new List<byte[]>();
        for (int p = 0; p < parts.Count; p++)
        {
            var (module, t) = parts[p];
            var s = t.State;
            string Where(string what) => $"{module}: {what}";
            if (s.BlockSize != Nf4Quantizer.BlockSize)
                throw new CheckpointException(Where($"blocksize {s.BlockSize}: this build's NF4 kernels take blocksize 64 (the transformers default)"));
            CheckRows(module, k, s.K);
            if (s.DoubleQuant != dq) throw new CheckpointException(Where("cannot fuse modules with and without double quant"));
            if (!t.QuantMap.AsSpan().SequenceEqual(first.QuantMap)) throw new CheckpointException(Where("cannot fuse: its quant_map differs"));
            if (dq)
            {
                if (s.NestedBlockSize != Nf4Quantizer.NestedBlockSize)
                    throw new CheckpointException(Where($"nested_blocksize {s.NestedBlockSize}: the NF4 kernels take 256 (the bitsandbytes default)"));
                if (!t.NestedQuantMap!.AsSpan().SequenceEqual(first.NestedQuantMap)) throw new CheckpointException(Where("cannot fuse: its nested_quant_map differs"));
                CheckNestedGroups(module, s.Blocks, last: p == parts.Count - 1);
                for (long g = 0; g < s.NestedBlocks; g++)
                {
                    tables.Add(t.NestedAbsmax![g]);
                    tables.Add(s.NestedOffset);
                }
                absmax.Add(t.AbsmaxCodes!);
            }
            else absmax.Add(Nf4Format.Bytes(t.Absmax!));
            qweight.Add(t.Packed);
        }
        return new Nf4KernelLayout
        {
            N = parts.Sum(p => p.Tensor.State.N), K = k, DoubleQuant = dq,
            QWeight = Join(qweight), Absmax = Join(absmax), Tables = [.. tables],
        };
    }

    /// <summary>What a fused part's shape must meet (both quantizers check it): the fused K, whole 64-blocks per row.</summary>
    internal static void CheckRows(string module, int fusedK, int k)
    {
        if (k != fusedK) throw new CheckpointException($"{module}: cannot fuse: in-features {k} differ from {fusedK}");
        if (k % Nf4Quantizer.BlockSize != 0)
            throw new CheckpointException($"{module}: in-features {k} is not a multiple of 64: NF4 blocks would straddle rows");
    }

    /// <summary>With double quant, every part but the last must hold whole nested groups of 256 blocks.</summary>
    internal static void CheckNestedGroups(string module, long blocks, bool last)
    {
        if (!last && blocks % Nf4Quantizer.NestedBlockSize != 0)
            throw new CheckpointException($"{module}: cannot fuse: {blocks} blocks is not a multiple of 256, so a nested group would span two modules");
    }

    /// <summary>The arrays end to end, by block copies (a full model's packed codes are 1.5 GB: no per-byte
    /// enumeration).</summary>
    static byte[] Join(List<byte[]> arrays)
    {
        if (arrays.Count == 1) return arrays[0];
        var all = new byte[arrays.Sum(a => (long)a.Length)];
        long at = 0;
        foreach (var a in arrays)
        {
            a.CopyTo(all, at);
            at += a.Length;
        }
        return all;
    }

    /// <summary>Uploads to a backend: Data = qweight, Scales = absmax, Extra = tables.</summary>
    public unsafe LinearWeight Upload(IComputeBackend backend, string purpose, Func<DeviceBuffer, DeviceBuffer> own)
    {
        DeviceBuffer Put(byte[] bytes, string what)
        {
            var buffer = own(backend.Allocate(bytes.Length, $"{purpose} NF4 {what}"));
            fixed (byte* p = bytes) backend.Upload(buffer.Pointer, (nint)p, bytes.Length);
            return buffer;
        }
        return new LinearWeight(WeightFormat.Nf4, N, K, Put(QWeight, "packed weight"), Put(Absmax, "absmax"), Put(Nf4Format.Bytes(Tables), "tables"));
    }

    /// <summary>Whether an uploaded NF4 weight holds u8 absmax codes (double quant) or fp32 absmax.</summary>
    public static bool IsDoubleQuant(LinearWeight w)
    {
        long blocks = (long)w.N * w.K / Nf4Quantizer.BlockSize;
        return w.Scales!.Bytes == blocks ? true
            : w.Scales.Bytes == 4 * blocks ? false
            : throw new ArgumentException($"NF4 weight {w.N}x{w.K}: absmax buffer of {w.Scales.Bytes} bytes fits neither u8 nor fp32 per 64-block");
    }
}

/// <summary>Loads transformer linears as NF4: from a bitsandbytes checkpoint (quantize = false), or from a base bf16
/// checkpoint quantized at load exactly as the existing server does (blocksize 64, double quant; quantize = true).</summary>
public sealed class Nf4LinearLoader(bool quantizeAtLoad) : ILinearLoader
{
    public List<string> Problems(CheckpointFolder checkpoint)
    {
        if (quantizeAtLoad) return Step1Layout.Problems(checkpoint);
        var problems = Nf4Format.ConfigProblems(checkpoint);
        var c = checkpoint.Config;
        var quantized = Nf4Quantizer.QuantizedModules(c);
        var source = new CheckpointTensorSource(checkpoint);
        var expectedNames = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, shape) in Step1Layout.BaseTensors(c))
        {
            string module = name.EndsWith(".weight") ? name[..^".weight".Length] : name;
            if (!quantized.Contains(module))
            {
                expectedNames.Add(name);
                if (!checkpoint.Contains(name)) { problems.Add($"missing tensor '{name}'"); continue; }
                var info = checkpoint.Info(name);
                if (info.DType != TensorDType.BF16 || !info.Shape.SequenceEqual(shape))
                    problems.Add($"{info.FilePath}: tensor '{name}' is {info.DType}{info.ShapeText}, expected BF16 [{string.Join(", ", shape)}]");
                continue;
            }
            try
            {
                var t = Nf4Format.Read(source, module, (int)shape[0], (int)shape[1]);
                expectedNames.UnionWith(Nf4Format.TensorNames(module, t.State.DoubleQuant));
            }
            catch (CheckpointException e)
            {
                problems.Add(e.Message);
                expectedNames.UnionWith(Nf4Format.TensorNames(module, true));
            }
        }
        foreach (var t in checkpoint.Tensors)
            if (!expectedNames.Contains(t.Name)) problems.Add($"{t.FilePath}: unexpected tensor '{t.Name}' {t.DType}{t.ShapeText}");
        return problems;
    }

    public LinearWeight Load(CheckpointFolder checkpoint, IComputeBackend backend, string purpose, string[] modules, Func<DeviceBuffer, DeviceBuffer> own)
    {
        if (quantizeAtLoad && backend is CudaBackend cuda)  // the same bytes in milliseconds instead of ~9 s of CPU per model
            return Nf4DeviceQuantizer.Quantize(cuda, modules.Select(m => Nf4DeviceQuantizer.Source.Of(checkpoint, m)).ToArray(), purpose, own);
        var source = new CheckpointTensorSource(checkpoint);
        var parts = modules.Select(m => (m, quantizeAtLoad ? Nf4Quantizer.QuantizeModule(checkpoint, m) : Nf4Format.Read(source, m))).ToList();
        return Nf4KernelLayout.Repack(parts).Upload(backend, purpose, own);
    }
}
