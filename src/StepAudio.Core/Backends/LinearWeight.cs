namespace StepAudio.Backends;

/// <summary>How a linear layer's weight is stored on the device.</summary>
public enum WeightFormat
{
    /// <summary>bf16 [N out, K in], row-major, as PyTorch stores it.</summary>
    Bf16,
    /// <summary>bitsandbytes NF4 (4-bit NormalFloat, blockwise absmax), repacked at load for the kernels.</summary>
    Nf4,
    /// <summary>int4 weights with bf16 group scales (compressed-tensors pack-quantized / AutoAWQ), repacked at load.</summary>
    W4A16,
}

/// <summary>One linear layer's weight on a device: y[M, N] = x[M, K] · Wᵀ. Data holds the (packed) weight; the
/// quantized formats add their per-block scales in Scales (and anything else in Extra).</summary>
public sealed record LinearWeight(WeightFormat Format, int N, int K, DeviceBuffer Data, DeviceBuffer? Scales = null, DeviceBuffer? Extra = null)
{
    /// <summary>Format-specific flags passed to the kernels (W4A16: SA_W4A16_FP16_SCALES).</summary>
    public int Flags { get; init; }
    public long Bytes => Data.Bytes + (Scales?.Bytes ?? 0) + (Extra?.Bytes ?? 0);
}
