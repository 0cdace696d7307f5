using StepAudio.Backends;
using StepAudio.Checkpoints;
using StepAudio.Generation;
using StepAudio.Model;
using StepAudio.Text;

namespace StepAudio.Tests.Model;

/// <summary>ModelOptions.LogitIds (the CLI's --no-text-logits): lm_head runs only over some vocabulary ids, the other
/// logits stay −∞. Checked against the same model computing every logit: the kept ids must get the same logits, bit
/// for bit on the CPU, in the prefill and in the decode path, with the bf16 and the W4A16 lm_head.</summary>
public class LogitIdsTests
{
    // On the tiny model (vocab 512, EOS 3): the release's control ids, and the upper half standing in for audio ids.
    static readonly (int Start, int Count)[] Kept = [(0, AudioTokens.ControlTokenCount), (256, 256)];
    static bool IsKept(int id) => Kept.Any(r => id >= r.Start && id < r.Start + r.Count);

    static Step1Model LoadTiny(IComputeBackend backend, IReadOnlyList<(int, int)>? logitIds, bool quantizeLmHead = false)
    {
        using var checkpoint = CheckpointFolder.Open(RepoPaths.TinyModel);
        return Step1Model.Load(checkpoint, backend,
            new ModelOptions { MaxContext = 128, MaxTokensPerForward = 64, LogitIds = logitIds, QuantizeLmHead = quantizeLmHead });
    }

    /// <summary>The last prompt position's logits (the prefill path: more tokens than a decode call takes), then those
    /// of one more token through the decode path (one token: the epilogues and the folded final norm).</summary>
    static unsafe (float[] Prefill, float[] Decode) TwoLogitRows(Step1Model model, int[] prompt, int next)
    {
        int[] ids = [.. prompt, next];
        fixed (int* p = ids) model.Backend.Upload(model.History, (nint)p, ids.Length * 4L);
        model.PrefillHistory(prompt.Length);
        var prefill = model.ReadLogits();
        model.WriteInt(model.PrefillLength, ids.Length);
        model.Forward(model.History + prompt.Length * 4, 1, model.PrefillLength);
        return (prefill, model.ReadLogits());
    }

    static void AssertKeptEqualRestMinusInfinity(float[] full, float[] subset, string what, double tolerance)
    {
        var kept = Enumerable.Range(0, full.Length).Where(IsKept).ToArray();
        for (int id = 0; id < full.Length; id++)
            if (!IsKept(id)) Assert.True(float.IsNegativeInfinity(subset[id]), $"{what}: id {id} is skipped but its logit is {subset[id]}");
        float[] a = kept.Select(i => subset[i]).ToArray(), b = kept.Select(i => full[i]).ToArray();
        Assert.True(b.Any(v => v != 0 && float.IsFinite(v)), $"{what}: the full model's kept logits are all zero or not finite");
        if (tolerance == 0) Assert.Equal(b, a);
        else
        {
            double err = TinyOracle.RelativeError(a, b);
            Assert.True(err <= tolerance, $"{what}: kept logits differ from the full model's by {err:E2} (relative L2) > {tolerance:E0}");
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void KeptIdsGetTheFullModelsLogitsAndTheRestMinusInfinity(bool quantizeLmHead)
    {
        var prompt = TinyOracle.Load().Prompt;
        Assert.True(prompt.Length > LinearEpilogues.MaxTokens, "the prompt must take the prefill path");
        using var cpu = new CpuBackend();
        using var full = LoadTiny(cpu, null, quantizeLmHead);
        using var subset = LoadTiny(cpu, Kept, quantizeLmHead);
        var (fullPrefill, fullDecode) = TwoLogitRows(full, prompt, next: 300);
        var (subsetPrefill, subsetDecode) = TwoLogitRows(subset, prompt, next: 300);
        AssertKeptEqualRestMinusInfinity(fullPrefill, subsetPrefill, "prefill", tolerance: 0);
        AssertKeptEqualRestMinusInfinity(fullDecode, subsetDecode, "decode", tolerance: 0);
        // lm_head reads only the kept rows: (512 − 324) rows of 384 bf16 weights less per token (bf16 lm_head).
        long skippedRows = 512 - Kept.Sum(r => r.Count);
        if (!quantizeLmHead) Assert.Equal(full.WeightBytesPerToken - skippedRows * 384 * 2, subset.WeightBytesPerToken);
        else Assert.True(subset.WeightBytesPerToken < full.WeightBytesPerToken);
        Assert.Equal(full.WeightBytes, subset.WeightBytes);  // the same weights stay on the device
    }

    /// <summary>End to end: each greedily generated id is the best kept id of the full model's logits at that
    /// position (teacher-forced), after the repetition rule — the sampler sees exactly the masked logits.</summary>
    [Fact]
    public unsafe void GreedyGenerationPicksTheBestKeptId()
    {
        var prompt = TinyOracle.Load().Prompt;
        using var cpu = new CpuBackend();
        using var subset = LoadTiny(cpu, Kept);
        var result = new Generator(subset).Generate(prompt, new GenerationOptions { Greedy = true, IgnoreEos = true, MaxNewTokens = 24 });
        Assert.Equal(24, result.Tokens.Length);
        Assert.All(result.Tokens, id => Assert.True(IsKept(id), $"generated id {id} is not a kept id"));

        using var full = LoadTiny(cpu, null);
        int[] sequence = [.. prompt, .. result.Tokens];
        fixed (int* p = sequence) cpu.Upload(full.History, (nint)p, sequence.Length * 4L);
        full.PrefillHistory(prompt.Length);
        int differsFromFullArgmax = 0;
        for (int i = 0; i < result.Tokens.Length; i++)
        {
            int length = prompt.Length + i;
            if (i > 0)
            {
                full.WriteInt(full.PrefillLength, length);
                full.Forward(full.History + (length - 1) * 4, 1, full.PrefillLength);
            }
            var logits = full.ReadLogits();
            // The repetition rule (spec §3.5): the last id is banned when it occurs twice or more in the last 10.
            var window = sequence.Skip(Math.Max(0, length - 10)).Take(Math.Min(10, length)).ToArray();
            if (window.Length == 10 && window.Count(id => id == window[^1]) >= 2) logits[window[^1]] = float.NegativeInfinity;
            int best = -1, bestAll = 0;
            for (int id = 0; id < logits.Length; id++)
            {
                if (logits[id] > logits[bestAll]) bestAll = id;
                if (IsKept(id) && (best < 0 || logits[id] > logits[best])) best = id;
            }
            Assert.True(best == result.Tokens[i], $"token {i}: generated {result.Tokens[i]}, the best kept id of the full logits is {best}");
            differsFromFullArgmax += bestAll != best ? 1 : 0;
        }
        TestContext.Current.TestOutputHelper?.WriteLine($"{differsFromFullArgmax} of {result.Tokens.Length} steps chose another id than the full vocabulary's argmax");
    }

    [Theory]
    [InlineData(new int[0], "the list is empty")]
    [InlineData(new[] { 0, 68, 600, 4 }, "not inside the vocabulary [0, 512)")]
    [InlineData(new[] { 0, 68, 60, 10 }, "overlaps or precedes")]
    [InlineData(new[] { 0, 68, 257, 4 }, "starts at an odd id")]
    [InlineData(new[] { 4, 64 }, "EOS (id 3) is not among the ids")]
    [InlineData(new[] { 0, 0 }, "not inside the vocabulary")]
    public void BadLogitIdsAreNamed(int[] flat, string expected)
    {
        var runs = Enumerable.Range(0, flat.Length / 2).Select(i => (flat[2 * i], flat[2 * i + 1])).ToArray();
        using var cpu = new CpuBackend();
        var e = Assert.Throws<ArgumentException>(() => LoadTiny(cpu, runs));
        Assert.Contains("ModelOptions.LogitIds", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void LogitIdsNeedOneLogitRow()
    {
        using var cpu = new CpuBackend();
        using var checkpoint = CheckpointFolder.Open(RepoPaths.TinyModel);
        var e = Assert.Throws<ArgumentException>(() => Step1Model.Load(checkpoint, cpu,
            new ModelOptions { MaxContext = 128, MaxTokensPerForward = 64, MaxLogitRows = 2, LogitIds = Kept }));
        Assert.Contains("needs MaxLogitRows = 1", e.Message);
    }

    [Fact]
    public void NonTextIdsOfTheReleaseVocabulary()
    {
        Assert.Equal([(0, 68), (65536, 9216)], AudioTokens.NonTextIds(74752));
        var e = Assert.Throws<ArgumentException>(() => AudioTokens.NonTextIds(512));
        Assert.Contains("vocab_size 512 has no audio ids", e.Message);
    }

    [Fact]
    public void RowsOfAWeightAreViewsOfItsBuffers()
    {
        using var cpu = new CpuBackend();
        using var data = cpu.Allocate(10 * 256 * 2, "test weight");
        var w = new LinearWeight(WeightFormat.Bf16, 10, 256, data);
        var rows = w.Rows(4, 3);
        Assert.Equal((3, 256, data.At(4 * 512), 3L * 512), (rows.N, rows.K, rows.Data.Pointer, rows.Data.Bytes));
        Assert.Throws<ArgumentOutOfRangeException>(() => w.Rows(8, 3));
        Assert.Throws<ArgumentOutOfRangeException>(() => w.Rows(-1, 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => w.Rows(0, 0));
        using var scales = cpu.Allocate(10 * 4 * 2, "test scales");
        using var zeros = cpu.Allocate(10 * 4, "test zeros");
        var q = new LinearWeight(WeightFormat.W4A16, 10, 512, data, scales, zeros).Rows(2, 5);
        Assert.Equal((data.At(2 * 256), scales.At(2 * 8), zeros.At(2 * 4)), (q.Data.Pointer, q.Scales!.Pointer, q.Extra!.Pointer));
        Assert.Throws<NotSupportedException>(() => (w with { Format = WeightFormat.Nf4 }).Rows(0, 1));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void OnTheGpuKeptIdsGetTheFullModelsLogits(bool quantizeLmHead)
    {
        if (!CudaBackendLoader.IsUsable(out string reason)) Assert.Skip($"no usable CUDA GPU: {reason}");
        var prompt = TinyOracle.Load().Prompt;
        using var gpu = CudaBackendLoader.Create();
        using var full = LoadTiny(gpu, null, quantizeLmHead);
        using var subset = LoadTiny(gpu, Kept, quantizeLmHead);
        var (fullPrefill, fullDecode) = TwoLogitRows(full, prompt, next: 300);
        var (subsetPrefill, subsetDecode) = TwoLogitRows(subset, prompt, next: 300);
        // The same kernels over fewer rows; the bound only allows for a different row grouping in the GEMV.
        AssertKeptEqualRestMinusInfinity(fullPrefill, subsetPrefill, "GPU prefill", tolerance: 1e-3);
        AssertKeptEqualRestMinusInfinity(fullDecode, subsetDecode, "GPU decode", tolerance: 1e-3);
    }
}
