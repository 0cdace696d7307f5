using System.Runtime.InteropServices;
using System.Text.Json;
using StepAudio.Backends;
using StepAudio.Checkpoints;
using StepAudio.Generation;
using StepAudio.Model;
using StepAudio.Native;
using StepAudio.Quant;
using StepAudio.Tests.Model;

namespace StepAudio.Tests.Quant;

/// <summary>bitsandbytes NF4: the reader against tensors written by tests/oracle/nf4_oracle.py (an independent
/// torch implementation of the published format), the repacked kernel layout against the formula bit for bit, the
/// tiny NF4 model against the oracle's logits, our writer's round trip and the errors for corrupt tensors.</summary>
public class Nf4Tests
{
    static string Fixture(params string[] parts) => RepoPaths.Fixture(["nf4-tiny", .. parts]);
    static string FixtureModel => Fixture("model");
    // The oracle dequantizes with the same formula and forwards in float64; only fp32 accumulation order differs.
    const double LogitsRelTolerance = 5e-3;

    [Fact]
    public void DequantMatchesTheOracleBitForBitOnAwkwardTensors()
    {
        using var file = new SafetensorsFile(Fixture("ragged.safetensors"));
        var source = new FileTensorSource(file);
        var cases = file.Tensors.Keys.Where(k => k.EndsWith(".expected_f32")).Select(k => k[..^".expected_f32".Length]).ToList();
        Assert.Equal(6, cases.Count);
        foreach (string name in cases)
        {
            var t = Nf4Format.Read(source, name);
            var expected = MemoryMarshal.Cast<byte, float>(file.Bytes(file.Get(name + ".expected_f32"))).ToArray();
            var actual = t.DequantizeF32();
            Assert.Equal(expected.Length, actual.Length);
            Assert.True(expected.Any(v => v != 0), $"{name}: fixture is all zeros");
            for (int i = 0; i < expected.Length; i++)
                Assert.True(BitConverter.SingleToInt32Bits(expected[i]) == BitConverter.SingleToInt32Bits(actual[i]),
                    $"{name}[{i}]: {actual[i]:R} != oracle {expected[i]:R}");
        }
    }

    static unsafe float[] KernelDequant(Nf4KernelLayout l)
    {
        var w = new float[(long)l.N * l.K];
        fixed (byte* q = l.QWeight) fixed (byte* a = l.Absmax) fixed (float* t = l.Tables) fixed (float* o = w)
            NativeException.Check(NativeMethods.CpuNf4Dequantize((nint)q, (nint)a, (nint)t, l.DoubleQuant ? 1 : 0, l.N, l.K, (nint)o, 0));
        return w;
    }

    static void AssertBitEqual(float[] expected, float[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
            if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(actual[i]))
                Assert.Fail($"{what}[{i}]: kernel layout gives {actual[i]:R}, the formula {expected[i]:R}");
    }

    static ushort[] RandomBf16(Random rng, int n, int k)
    {
        var w = new ushort[n * k];
        for (int r = 0; r < n; r++)
        {
            float scale = (float)(rng.NextDouble() * 4 + 0.01);
            for (int i = 0; i < k; i++)
            {
                double g = Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());
                w[r * k + i] = (ushort)(BitConverter.SingleToInt32Bits((float)(g * scale)) >> 16);
            }
        }
        for (int i = 0; i < w.Length; i += 101) w[i] = 0;
        return w;
    }

    /// <summary>Inputs where a nearest-code search can go wrong: signed zeros, values outside [-1, 1], infinities, NaN,
    /// the table entries, every midpoint and the 4 fp32 values on each side of it, then random values in and around
    /// [-1, 1] and small ones of every decade.</summary>
    static List<float> NearestProbes(float[] table, Random rng)
    {
        var probes = new List<float> { 0f, -0f, 2f, -2f, float.PositiveInfinity, float.NegativeInfinity, float.NaN, 1e-30f, -1e-30f };
        probes.AddRange(table);
        foreach (float mid in new Nf4Quantizer.SortedCodes(table).Midpoints)
        {
            float up = mid, down = mid;
            probes.Add(mid);
            for (int i = 0; i < 4; i++) probes.Add(up = MathF.BitIncrement(up));
            for (int i = 0; i < 4; i++) probes.Add(down = MathF.BitDecrement(down));
        }
        for (int i = 0; i < 200_000; i++) probes.Add((float)(rng.NextDouble() * 2.2 - 1.1));
        for (int i = 0; i < 20_000; i++) probes.Add((float)((rng.NextDouble() - 0.5) * Math.Pow(10, -rng.Next(0, 8))));
        return probes;
    }

    [Fact]
    public void NearestCodeEqualsTheLinearScanEverywhere()
    {
        // The quantizer's binary-search Nearest must give the linear scan's index (lowest on a tie) for every input:
        // random values, every midpoint and the 4 fp32 values on each side of it, the table entries themselves,
        // signed zeros, values outside [-1, 1], infinities and NaN — for the NF4 table and the double-quant map.
        var rng = new Random(5);
        foreach (var table in new[] { Nf4Format.CodeTable, Nf4Quantizer.DynamicMap })
        {
            var codes = new Nf4Quantizer.SortedCodes(table);
            foreach (float v in NearestProbes(table, rng))
                Assert.True(Nf4Quantizer.NearestByScan(v, table) == Nf4Quantizer.Nearest(v, codes),
                    $"table of {table.Length}: v = {v:R} ({BitConverter.SingleToInt32Bits(v):X8}): scan {Nf4Quantizer.NearestByScan(v, table)}, fast {Nf4Quantizer.Nearest(v, codes)}");
        }
    }

    [Fact]
    public void VectorNearestEqualsTheScanEverywhere()
    {
        // NearestNf4x8 (AVX2, what quantize-at-load runs) against the linear scan, lane for lane, on the scalar test's
        // probes.
        if (!System.Runtime.Intrinsics.X86.Avx2.IsSupported) Assert.Skip("no AVX2 on this CPU: the scalar path is the only one");
        var table = Nf4Format.CodeTable;
        var probes = NearestProbes(table, new Random(9));
        while (probes.Count % 8 != 0) probes.Add(0.5f);
        var values = probes.ToArray();
        for (int i = 0; i < values.Length; i += 8)
        {
            var got = Nf4Quantizer.NearestNf4x8(System.Runtime.Intrinsics.Vector256.Create(values, i));
            for (int lane = 0; lane < 8; lane++)
            {
                float v = values[i + lane];
                Assert.True(Nf4Quantizer.NearestByScan(v, table) == got[lane],
                    $"v = {v:R} ({BitConverter.SingleToInt32Bits(v):X8}): scan {Nf4Quantizer.NearestByScan(v, table)}, AVX2 {got[lane]}");
            }
        }
    }

    [Theory]
    [InlineData(16, 256, 64, true)]
    [InlineData(7, 100, 64, true)]     // 700 values: a ragged last block takes the scalar path
    [InlineData(9, 128, 128, false)]
    [InlineData(5, 66, 66, true)]      // a block size that is not a multiple of 8: scalar only
    public void VectorQuantizeGivesTheScalarBytes(int n, int k, int blocksize, bool doubleQuant)
    {
        var rng = new Random(n * 31 + k);
        var w = RandomBf16(rng, n, k);
        // Special values in some blocks: a NaN (that block goes scalar), ±∞, a block of zeros, tiny and huge values.
        ushort Bits(float f) => (ushort)(BitConverter.SingleToInt32Bits(f) >> 16);
        w[3] = Bits(float.NaN);
        w[blocksize + 5] = Bits(float.PositiveInfinity);
        w[2 * blocksize + 1] = Bits(float.NegativeInfinity);
        if (w.Length >= 4 * blocksize) Array.Fill(w, (ushort)0, 3 * blocksize, blocksize);
        w[^2] = Bits(1e-38f);
        w[^1] = Bits(-3e38f);
        var scalar = Nf4Quantizer.Quantize(w, n, k, blocksize, doubleQuant, vectorized: false);
        var vector = Nf4Quantizer.Quantize(w, n, k, blocksize, doubleQuant, vectorized: true);
        Assert.Equal(scalar.Packed, vector.Packed);
        if (doubleQuant)
        {
            Assert.Equal(scalar.AbsmaxCodes, vector.AbsmaxCodes);
            Assert.Equal(scalar.NestedAbsmax!.Select(BitConverter.SingleToInt32Bits), vector.NestedAbsmax!.Select(BitConverter.SingleToInt32Bits));
            Assert.Equal(scalar.State, vector.State);
        }
        else Assert.Equal(scalar.Absmax!.Select(BitConverter.SingleToInt32Bits), vector.Absmax!.Select(BitConverter.SingleToInt32Bits));
    }

    [Theory]
    [InlineData(1, 64, true)]
    [InlineData(3, 192, false)]
    [InlineData(130, 320, true)]   // 650 blocks: three nested groups, the last one partial
    [InlineData(257, 64, true)]
    public void RepackedLayoutDequantizesToTheFormulaBitForBit(int n, int k, bool doubleQuant)
    {
        var rng = new Random(n * 1000 + k);
        var t = Nf4Quantizer.Quantize(RandomBf16(rng, n, k), n, k, doubleQuant: doubleQuant);
        // Crafted extremes: every nibble value in the first block, code 0 and 255 absmax where double quant is on.
        for (int i = 0; i < 32; i++) t.Packed[i] = (byte)((i % 16) << 4 | (15 - i % 16));
        if (doubleQuant) { t.AbsmaxCodes![0] = 0; t.AbsmaxCodes[^1] = 255; }
        var layout = Nf4KernelLayout.Repack([("m", t)]);
        AssertBitEqual(t.DequantizeF32(), KernelDequant(layout), $"{n}x{k}");
    }

    [Fact]
    public void FusedOracleModulesDequantizeToTheFormulaBitForBit()
    {
        using var checkpoint = CheckpointFolder.Open(FixtureModel);
        var source = new CheckpointTensorSource(checkpoint);
        var modules = new[] { Step1Layout.QModule(1), Step1Layout.KModule(1), Step1Layout.VModule(1) };
        var parts = modules.Select(m => (m, Nf4Format.Read(source, m))).ToList();
        var expected = parts.SelectMany(p => p.Item2.DequantizeF32()).ToArray();
        var layout = Nf4KernelLayout.Repack(parts);
        Assert.Equal(384 + 2 * 128, layout.N);
        AssertBitEqual(expected, KernelDequant(layout), "fused qkv");
    }

    [Fact]
    public unsafe void CpuLinearEqualsBf16LinearOnTheDequantizedWeight()
    {
        var rng = new Random(5);
        int m = 3, n = 70, k = 256;
        var layout = Nf4KernelLayout.Repack([("m", Nf4Quantizer.Quantize(RandomBf16(rng, n, k), n, k))]);
        var x = RandomBf16(rng, m, k);
        var wBf16 = new ushort[n * k];
        ushort[] yNf4 = new ushort[m * n], yRef = new ushort[m * n];
        fixed (byte* q = layout.QWeight) fixed (byte* a = layout.Absmax) fixed (float* t = layout.Tables)
        fixed (ushort* w = wBf16) fixed (ushort* xp = x) fixed (ushort* y1 = yNf4) fixed (ushort* y2 = yRef)
        {
            NativeException.Check(NativeMethods.CpuNf4Dequantize((nint)q, (nint)a, (nint)t, 1, n, k, 0, (nint)w));
            NativeException.Check(NativeMethods.CpuLinearNf4((nint)xp, (nint)q, (nint)a, (nint)t, 1, (nint)y1, m, n, k));
            NativeException.Check(NativeMethods.CpuLinear((nint)xp, (nint)w, (nint)y2, m, n, k));
        }
        Assert.Contains(yRef, v => v != 0);
        Assert.Equal(yRef, yNf4);
    }

    static float[] PromptLogits(Step1Model model, int[] prompt) => CpuOracleTests.PromptLogits(model, prompt);

    static (float[] Logits, int[] Greedy) Run(string folder, ModelOptions? extra = null)
    {
        var oracle = LoadOracle();
        using var backend = new CpuBackend();
        using var checkpoint = CheckpointFolder.Open(folder);
        var options = (extra ?? new ModelOptions()) with { MaxContext = 256, MaxTokensPerForward = 64, MaxLogitRows = 64 };
        using var model = Step1Model.Load(checkpoint, backend, options);
        Assert.Equal(WeightFormat.Nf4, checkpoint.Variant == ModelVariant.Base ? options.QuantizeAtLoad : WeightFormat.Nf4);
        var logits = PromptLogits(model, oracle.Prompt);
        var greedy = new Generator(model).Generate(oracle.Prompt,
            new GenerationOptions { Greedy = true, MaxNewTokens = oracle.GreedyTokens.Length, IgnoreEos = true }).Tokens;
        return (logits, greedy);
    }

    static TinyOracle LoadOracle() => TinyOracle.Load("nf4-tiny");

    [Fact]
    public void OracleNf4CheckpointMatchesTheOracleLogitsAndGreedyTokens()
    {
        var oracle = LoadOracle();
        using (var checkpoint = CheckpointFolder.Open(FixtureModel))
            Assert.Equal(ModelVariant.BitsAndBytesNf4, checkpoint.Variant);
        var (logits, greedy) = Run(FixtureModel);
        double err = TinyOracle.RelativeError(logits, oracle.Logits);
        Assert.True(err < LogitsRelTolerance, $"relative L2 error of the logits {err:E2} ≥ {LogitsRelTolerance:E0}");
        int comparable = oracle.ComparableGreedySteps();
        Assert.True(comparable >= 15, $"only {comparable} well-separated greedy steps");
        Assert.Equal(oracle.GreedyTokens.Take(comparable), greedy.Take(comparable));
        // And the NF4 model really differs from bf16 (the test would pass vacuously on unquantized weights).
        Assert.True(TinyOracle.RelativeError(logits, TinyOracle.Load().Logits) > 10 * err);
    }

    [Fact]
    public void QuantizeAtLoadGivesTheOracleCodesAndLogits()
    {
        // Same RTN rule as the oracle: identical 4-bit codes and first-level absmax; the double-quant offset (a mean)
        // may differ in the last ulp, so logits are compared with the tolerance.
        using var baseCkpt = CheckpointFolder.Open(RepoPaths.TinyModel);
        using var oracleCkpt = CheckpointFolder.Open(FixtureModel);
        var source = new CheckpointTensorSource(oracleCkpt);
        foreach (string module in Nf4Quantizer.QuantizedModules(baseCkpt.Config))
        {
            var ours = Nf4Quantizer.QuantizeModule(baseCkpt, module);
            var theirs = Nf4Format.Read(source, module);
            Assert.True(ours.Packed.AsSpan().SequenceEqual(theirs.Packed), $"{module}: 4-bit codes differ from the oracle's");
            Assert.Equal(theirs.State with { NestedOffset = 0 }, ours.State with { NestedOffset = 0 });
            Assert.InRange(ours.State.NestedOffset, theirs.State.NestedOffset * (1 - 1e-6f), theirs.State.NestedOffset * (1 + 1e-6f));
        }
        var oracle = LoadOracle();
        var (logits, _) = Run(RepoPaths.TinyModel, new ModelOptions { QuantizeAtLoad = WeightFormat.Nf4 });
        double err = TinyOracle.RelativeError(logits, oracle.Logits);
        Assert.True(err < LogitsRelTolerance, $"relative L2 error of the logits {err:E2} ≥ {LogitsRelTolerance:E0}");
    }

    [Fact]
    public void WriterOutputRoundTrips()
    {
        using var dir = new TempDir();
        string outFolder = dir.File("nf4");
        using (var baseCkpt = CheckpointFolder.Open(RepoPaths.TinyModel))
            new Nf4Quantizer().Write(baseCkpt, outFolder, null);
        using var written = CheckpointFolder.Open(outFolder);
        Assert.Equal(ModelVariant.BitsAndBytesNf4, written.Variant);
        Assert.Empty(new Nf4LinearLoader(quantizeAtLoad: false).Problems(written));
        // Saved tensors read back equal to what was quantized; the model loaded from them equals quantize-at-load.
        using var baseAgain = CheckpointFolder.Open(RepoPaths.TinyModel);
        var module = Step1Layout.DownModule(1);
        var saved = Nf4Format.Read(new CheckpointTensorSource(written), module);
        var fresh = Nf4Quantizer.QuantizeModule(baseAgain, module);
        Assert.Equal(fresh.State, saved.State);
        Assert.Equal(fresh.Packed, saved.Packed);
        Assert.Equal(fresh.AbsmaxCodes, saved.AbsmaxCodes);
        Assert.Equal(fresh.NestedAbsmax, saved.NestedAbsmax);
        var fromFile = Run(outFolder);
        var atLoad = Run(RepoPaths.TinyModel, new ModelOptions { QuantizeAtLoad = WeightFormat.Nf4 });
        Assert.Equal(atLoad.Logits, fromFile.Logits);
    }

    /// <summary>Copies the oracle checkpoint with one tensor changed (or removed) and returns the load error.</summary>
    static string CorruptAndLoad(string name, Func<TensorInfo, byte[], (TensorDType, long[], byte[])?> change)
    {
        using var dir = new TempDir();
        string folder = dir.File("bad");
        Directory.CreateDirectory(folder);
        File.Copy(Path.Combine(FixtureModel, "config.json"), Path.Combine(folder, "config.json"));
        using (var file = new SafetensorsFile(Path.Combine(FixtureModel, "model.safetensors")))
        {
            var tensors = new List<(string, TensorDType, long[], byte[])>();
            foreach (var info in file.Tensors.Values.OrderBy(t => t.Offset))
            {
                byte[] data = file.Bytes(info).ToArray();
                if (info.Name != name) { tensors.Add((info.Name, info.DType, info.Shape, data)); continue; }
                if (change(info, data) is { } c) tensors.Add((info.Name, c.Item1, c.Item2, c.Item3));
            }
            Assert.Contains(name, file.Tensors.Keys);
            SafetensorsFile.Write(Path.Combine(folder, "model.safetensors"), tensors);
        }
        using var checkpoint = CheckpointFolder.Open(folder);
        using var backend = new CpuBackend();
        var e = Assert.Throws<CheckpointException>(() => Step1Model.Load(checkpoint, backend, new ModelOptions { MaxContext = 64 }));
        return e.Message;
    }

    const string Q0 = "model.layers.0.self_attn.q_proj.weight";

    [Fact]
    public void CorruptTensorsGetClearErrors()
    {
        string m1 = CorruptAndLoad(Q0, (i, d) => (i.DType, [d.Length - 2, 1], d[..^2]));
        Assert.Contains(Q0, m1);
        Assert.Contains("bytes", m1);

        string m2 = CorruptAndLoad(Q0 + Nf4Format.QuantStateSuffix, (_, _) => null);
        Assert.Contains("quant_state", m2);

        string m3 = CorruptAndLoad(Q0 + Nf4Format.QuantStateSuffix, (i, d) => (i.DType, [d.Length - 3], d[..^3]));
        Assert.Contains("not valid JSON", m3);

        string m4 = CorruptAndLoad(Q0 + Nf4Format.QuantStateSuffix, (i, d) =>
        {
            byte[] fp4 = System.Text.Encoding.UTF8.GetBytes(System.Text.Encoding.UTF8.GetString(d).Replace("\"nf4\"", "\"fp4\""));
            return (i.DType, [fp4.Length], fp4);
        });
        Assert.Contains("fp4", m4);

        string m5 = CorruptAndLoad(Q0 + ".absmax", (i, d) => (TensorDType.F32, [d.Length / 4], d[..(d.Length / 4 * 4)]));
        Assert.Contains(Q0 + ".absmax", m5);

        string m6 = CorruptAndLoad(Q0 + ".nested_absmax", (_, _) => null);
        Assert.Contains(Q0 + ".nested_absmax", m6);
    }
}
