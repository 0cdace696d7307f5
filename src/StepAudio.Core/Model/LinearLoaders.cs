using StepAudio.Backends;
using StepAudio.Checkpoints;

namespace StepAudio.Model;

/// <summary>Reads one checkpoint format's linear layers and puts them on a device in the layout its kernels use.
/// One implementation per released variant (base bf16, bitsandbytes NF4, compressed-tensors W4A16).</summary>
public interface ILinearLoader
{
    /// <summary>Everything that stops this checkpoint from loading (missing tensors, wrong dtypes or shapes, an
    /// unsupported quantization setting), each naming the file and tensor; empty when it can be loaded.</summary>
    List<string> Problems(CheckpointFolder checkpoint);

    /// <summary>Loads the given modules (e.g. "model.layers.0.self_attn.q_proj"), fused along the output dimension
    /// in the order given. Every device buffer is passed through <paramref name="own"/> so the model frees it.</summary>
    LinearWeight Load(CheckpointFolder checkpoint, IComputeBackend backend, string purpose, string[] modules, Func<DeviceBuffer, DeviceBuffer> own);
}

/// <summary>Picks the loader for a checkpoint's variant.</summary>
public static class LinearLoaders
{
    public static ILinearLoader For(CheckpointFolder checkpoint, ModelOptions? options = null) => checkpoint.Variant switch
    {
        ModelVariant.Base when options?.QuantizeAtLoad == WeightFormat.Nf4 => new StepAudio.Quant.Nf4LinearLoader(quantizeAtLoad: true),
        ModelVariant.Base when options is { QuantizeAtLoad: not WeightFormat.Bf16 } =>
            throw new CheckpointException($"quantizing at load to {options.QuantizeAtLoad} is not supported by this build", checkpoint.Folder),
        ModelVariant.Base => new Bf16LinearLoader(),
        ModelVariant.CompressedTensorsW4A16 => new StepAudio.Quant.W4A16LinearLoader(),
        ModelVariant.BitsAndBytesNf4 => new StepAudio.Quant.Nf4LinearLoader(quantizeAtLoad: false),
        _ => throw new CheckpointException(
            $"this build loads base (bf16) checkpoints only; the folder holds a {checkpoint.Variant} checkpoint", checkpoint.Folder),
    };
}

/// <summary>Base checkpoints: bf16 [out, in] tensors, copied as they are (concatenated when fused).</summary>
public sealed class Bf16LinearLoader : ILinearLoader
{
    public List<string> Problems(CheckpointFolder checkpoint) => Step1Layout.Problems(checkpoint);

    public LinearWeight Load(CheckpointFolder checkpoint, IComputeBackend backend, string purpose, string[] modules, Func<DeviceBuffer, DeviceBuffer> own)
    {
        var infos = modules.Select(m => checkpoint.Info(m.EndsWith(".weight") ? m : m + ".weight")).ToArray();
        int k = (int)infos[0].Shape[1];
        var buffer = own(backend.Allocate(infos.Sum(i => i.ByteLength), purpose));
        long offset = 0;
        foreach (var info in infos)
        {
            if (info.Shape[1] != k)
                throw new CheckpointException($"cannot fuse: in-features {info.Shape[1]} differ from {k}", info.FilePath, info.Name);
            backend.Upload(buffer.At(offset), checkpoint.Pointer(info), info.ByteLength);
            offset += info.ByteLength;
        }
        return new LinearWeight(WeightFormat.Bf16, (int)infos.Sum(i => i.Shape[0]), k, buffer);
    }
}
