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

    /// <summary>Rows [start, start + count) of this weight (output features), as views into its buffers: lm_head for
    /// some vocabulary ids only. Bf16 and W4A16 store their rows one after another (W4A16: codes, scales and zero
    /// codes each row-major); NF4's double-quant groups span rows, so it cannot be cut.</summary>
    public LinearWeight Rows(int start, int count)
    {
        if (start < 0 || count < 1 || start > N - count)
            throw new ArgumentOutOfRangeException(nameof(start), $"rows [{start}, {(long)start + count}) are not inside a weight of {N} rows");
        DeviceBuffer View(DeviceBuffer b, long rowBytes) =>
            new DeviceBufferView(b, start * rowBytes, count * rowBytes, $"{b.Purpose} rows {start}..{start + count - 1}");
        int groups = K / StepAudio.Quant.W4A16Weight.GroupSize;
        return Format switch
        {
            WeightFormat.Bf16 => this with { N = count, Data = View(Data, 2L * K) },
            WeightFormat.W4A16 => this with
            {
                N = count,
                Data = View(Data, K / 2),
                Scales = View(Scales!, 2L * groups),
                Extra = Extra is null ? null : View(Extra, groups),
            },
            _ => throw new NotSupportedException($"{Format} weights cannot be cut into rows (their scale groups span rows)"),
        };
    }
}
