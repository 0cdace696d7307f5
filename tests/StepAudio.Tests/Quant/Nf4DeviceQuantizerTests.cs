using StepAudio.Backends;
using StepAudio.Checkpoints;
using StepAudio.Cuda;
using StepAudio.Model;
using StepAudio.Quant;
using StepAudio.Tests.Model;

namespace StepAudio.Tests.Quant;

/// <summary>NF4 quantization at load on the GPU (<see cref="Nf4DeviceQuantizer"/>) against the C# quantizer, the
/// reference that the oracle tests check against bitsandbytes' format: the same kernel-layout bytes (codes, absmax
/// codes, nested absmax and offsets) on fresh random weights with special values, at ragged, fused and real shapes;
/// and the tiny model quantized at load on the GPU against the oracle and the CPU backend. Skips, visibly, without a
/// usable GPU.</summary>
public class Nf4DeviceQuantizerTests
{
    static CudaBackend RequireGpu()
    {
        if (!CudaBackendLoader.IsUsable(out string reason)) Assert.Skip($"no usable CUDA GPU: {reason}");
        return CudaBackendLoader.Create();
    }

    static ushort Bits(float f) => (ushort)(BitConverter.SingleToInt32Bits(f) >> 16);

    /// <summary>Normal-ish bf16 weights, a different scale per row, then special values in the first blocks: a NaN,
    /// ±∞, a block of zeros, a block of subnormals (the kernel must not flush them), huge and tiny values.</summary>
    static ushort[] Weights(Random rng, int n, int k, bool specials)
    {
        var w = new ushort[(long)n * k];
        for (long i = 0; i < w.Length; i++)
        {
            double g = Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());
            w[i] = Bits((float)(g * (0.01 + (i / k % 7) * 0.3)));
        }
        if (!specials || w.Length < 6 * 64) return w;
        w[3] = Bits(float.NaN);
        w[64 + 5] = Bits(float.PositiveInfinity);
        w[2 * 64 + 1] = Bits(float.NegativeInfinity);
        Array.Fill(w, (ushort)0, 3 * 64, 64);
        for (int i = 0; i < 64; i++) w[4 * 64 + i] = (ushort)(rng.Next(1, 0x80) | (i % 2 << 15));  // ± subnormal bf16
        w[5 * 64] = Bits(3e38f);
        w[5 * 64 + 1] = Bits(1e-38f);
        return w;
    }

    static unsafe T[] Read<T>(CudaBackend gpu, DeviceBuffer buffer) where T : unmanaged
    {
        var host = new T[buffer.Bytes / sizeof(T)];
        fixed (T* p = host) gpu.Download(buffer.Pointer, (nint)p, buffer.Bytes);
        return host;
    }

    [Theory]
    [InlineData(64, new[] { 1 })]                 // one block, one partial nested group
    [InlineData(320, new[] { 130 })]              // 650 blocks: three nested groups, the last partial
    [InlineData(256, new[] { 128, 64, 37 })]      // fused like qkv: whole nested groups, then a ragged last part
    [InlineData(3072, new[] { 1024, 512, 512 })]  // Step1's K (q, k, v of a layer at a third of the rows)
    public unsafe void GpuQuantizationGivesTheReferenceBytes(int k, int[] rows)
    {
        using var gpu = RequireGpu();
        var rng = new Random(k * 7 + rows.Length);
        var weights = rows.Select((n, i) => Weights(rng, n, k, specials: i == 0)).ToArray();
        var expected = Nf4KernelLayout.Repack(rows.Select((n, i) => ($"part{i}", Nf4Quantizer.Quantize(weights[i], n, k))).ToList());

        var buffers = new List<DeviceBuffer>();
        var handles = weights.Select(w => System.Runtime.InteropServices.GCHandle.Alloc(w, System.Runtime.InteropServices.GCHandleType.Pinned)).ToArray();
        try
        {
            var sources = rows.Select((n, i) => new Nf4DeviceQuantizer.Source($"part{i}", handles[i].AddrOfPinnedObject(), n, k)).ToArray();
            var w = Nf4DeviceQuantizer.Quantize(gpu, sources, "test", b => { buffers.Add(b); return b; });
            Assert.Equal((WeightFormat.Nf4, expected.N, expected.K), (w.Format, w.N, w.K));
            Assert.True(Nf4KernelLayout.IsDoubleQuant(w));
            Assert.Equal(expected.QWeight, Read<byte>(gpu, w.Data));
            Assert.Equal(expected.Absmax, Read<byte>(gpu, w.Scales!));
            // Tables: bit for bit, except that any NaN equals any NaN (the NaN block's absmax, and with it every offset
            // and nested absmax of that part, may carry another payload).
            var tables = Read<float>(gpu, w.Extra!);
            Assert.Equal(expected.Tables.Length, tables.Length);
            for (int i = 0; i < tables.Length; i++)
                Assert.True(float.IsNaN(expected.Tables[i]) ? float.IsNaN(tables[i])
                                : BitConverter.SingleToInt32Bits(expected.Tables[i]) == BitConverter.SingleToInt32Bits(tables[i]),
                            $"tables[{i}]: {tables[i]:R}, expected {expected.Tables[i]:R}");
            // Not vacuous: the codes use the whole table (a single 64-block may miss one or two entries).
            Assert.True(expected.QWeight.SelectMany(b => new[] { b >> 4, b & 15 }).Distinct().Count() >= (expected.QWeight.Length > 512 ? 16 : 12));
        }
        finally
        {
            foreach (var h in handles) h.Free();
            foreach (var b in buffers) b.Dispose();
        }
    }

    [Fact]
    public void UnfusableModulesGetTheReferenceErrors()
    {
        using var gpu = RequireGpu();
        var ex = Assert.Throws<CheckpointException>(() => Nf4DeviceQuantizer.Quantize(gpu,
            [new("q", 1, 64, 256), new("k", 1, 4, 192)], "test", b => b));
        Assert.Contains("k: cannot fuse: in-features 192 differ from 256", ex.Message);
        ex = Assert.Throws<CheckpointException>(() => Nf4DeviceQuantizer.Quantize(gpu, [new("q", 1, 4, 100)], "test", b => b));
        Assert.Contains("in-features 100 is not a multiple of 64", ex.Message);
        ex = Assert.Throws<CheckpointException>(() => Nf4DeviceQuantizer.Quantize(gpu,
            [new("q", 1, 3, 64), new("k", 1, 4, 64)], "test", b => b));
        Assert.Contains("q: cannot fuse: 3 blocks is not a multiple of 256", ex.Message);
    }

    [Fact]
    public void TinyModelQuantizedAtLoadOnTheGpuMatchesTheOracleAndTheCpuLoad()
    {
        using var gpu = RequireGpu();
        var oracle = TinyOracle.Load("nf4-tiny");
        var options = new ModelOptions { QuantizeAtLoad = WeightFormat.Nf4, MaxContext = 256, MaxTokensPerForward = 64, MaxLogitRows = 64 };
        float[] Logits(IComputeBackend backend)
        {
            using var checkpoint = CheckpointFolder.Open(RepoPaths.TinyModel);
            using var model = Step1Model.Load(checkpoint, backend, options);
            return CpuOracleTests.PromptLogits(model, oracle.Prompt);
        }
        var onGpu = Logits(gpu);
        using var cpu = new CpuBackend();
        var onCpu = Logits(cpu);
        // The GPU kernels sum in another order than the CPU loops (CudaBackendTests' bound); the weights are the same bytes.
        double vsCpu = TinyOracle.RelativeError(onGpu, onCpu), vsOracle = TinyOracle.RelativeError(onGpu, oracle.Logits);
        Assert.True(vsCpu < 1e-2, $"GPU vs CPU load: relative error {vsCpu:E2}");
        Assert.True(vsOracle < 1e-2, $"GPU load vs the NF4 oracle: relative error {vsOracle:E2}");
    }
}
