using StepAudio.Backends;
using StepAudio.Checkpoints;
using StepAudio.Model;

namespace StepAudio.Quant;

/// <summary>Block linears of a W4A16 checkpoint (compressed-tensors pack-quantized or AutoAWQ GEMM), repacked into the
/// W4A16 kernel layout and fused along N. Data = codes, Scales = group scales, Extra = zero codes (asymmetric only).</summary>
public sealed class W4A16LinearLoader : ILinearLoader
{
    public List<string> Problems(CheckpointFolder checkpoint)
    {
        try { return new W4A16Checkpoint(checkpoint).Problems(checkpoint); }
        catch (CheckpointException e) { return [e.Message]; }
    }

    public LinearWeight Load(CheckpointFolder checkpoint, IComputeBackend backend, string purpose, string[] modules, Func<DeviceBuffer, DeviceBuffer> own)
    {
        var reader = new W4A16Checkpoint(checkpoint);
        var shapes = Step1Layout.BaseTensors(checkpoint.Config).ToDictionary(t => t.Name, t => t.Shape);
        var parts = modules.Select(m =>
        {
            var shape = shapes.TryGetValue(m + ".weight", out var s) ? s : throw new CheckpointException($"'{m}' is not a Step1 linear module", checkpoint.Folder);
            return reader.Load(checkpoint, m, (int)shape[0], (int)shape[1]);
        }).ToList();
        W4A16Weight w;
        try { w = W4A16Weight.Concat(parts); }
        catch (ArgumentException e) { throw new CheckpointException($"{purpose}: {e.Message}", checkpoint.Folder); }
        return Upload(w, backend, purpose, own);
    }

    /// <summary>Puts a kernel-layout weight on the device.</summary>
    public static unsafe LinearWeight Upload(W4A16Weight w, IComputeBackend backend, string purpose, Func<DeviceBuffer, DeviceBuffer> own)
    {
        DeviceBuffer Put<T>(T[] host, string what) where T : unmanaged
        {
            var buffer = own(backend.Allocate((long)host.Length * sizeof(T), $"{purpose} {what}"));
            fixed (T* p = host) backend.Upload(buffer.Pointer, (nint)p, (long)host.Length * sizeof(T));
            return buffer;
        }
        var data = Put(w.QWeight, "int4 codes");
        var scales = Put(w.Scales, "scales");
        var zeros = w.Zeros is { } z ? Put(z, "zero codes") : null;
        return new LinearWeight(WeightFormat.W4A16, w.N, w.K, data, scales, zeros) { Flags = w.Flags };
    }
}
