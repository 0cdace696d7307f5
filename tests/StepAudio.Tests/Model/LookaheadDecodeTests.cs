using System.Text.Json.Nodes;
using StepAudio.Backends;
using StepAudio.Checkpoints;
using StepAudio.Generation;
using StepAudio.Model;

namespace StepAudio.Tests.Model;

/// <summary>The Generator launches each decode step before the host has read the previous token. Its tokens, stop
/// reasons and callbacks must equal those of the plain loop (run a step, read its id, decide, repeat), and it must
/// never run a step past max length or the KV cache. Sampled decoding on the tiny checkpoint, on the CPU backend
/// (where steps are synchronous) and on CUDA (where they really overlap; skipped visibly without a GPU).</summary>
public class LookaheadDecodeTests
{
    const int MaxContext = 256;

    static IComputeBackend CreateBackend(string name)
    {
        if (name == "cpu") return new CpuBackend();
        if (!CudaBackendLoader.IsUsable(out string reason)) Assert.Skip($"no usable CUDA GPU: {reason}");
        return CudaBackendLoader.Create();
    }

    static Step1Model Load(IComputeBackend backend, string folder, int maxContext = MaxContext)
    {
        using var checkpoint = CheckpointFolder.Open(folder);
        return Step1Model.Load(checkpoint, backend, new ModelOptions { MaxContext = maxContext, MaxTokensPerForward = 64, MaxLogitRows = 1 });
    }

    static readonly int[] Prompt = TinyOracle.Load().Prompt;
    static readonly GenerationOptions Sampled = new() { Seed = 1234, Temperature = 1.5f, TopK = 0 };

    /// <summary>The decode loop as it was before the lookahead: one step, one synchronous read, then the checks.</summary>
    static unsafe (int[] Tokens, StopReason Stop) PlainLoop(Step1Model model, int[] prompt, GenerationOptions options)
    {
        var backend = model.Backend;
        var sampling = options.ToSampling();
        int maxLength = Math.Min(options.MaxLength, model.Options.MaxContext);
        fixed (int* p = prompt) backend.Upload(model.History, (nint)p, prompt.Length * 4L);
        model.WriteInt(model.HistoryLength, prompt.Length);
        model.WriteULong(model.SampleStep, 0);
        model.PrefillHistory(prompt.Length);
        void Sample() => backend.Sample(model.Logits, model.Config.VocabSize, model.History, model.HistoryLength, sampling, model.SampleStep, model.NextId);
        Sample();
        int token = model.ReadInt(model.NextId), length = prompt.Length + 1;
        var tokens = new List<int>();
        while (true)
        {
            Assert.True(token >= 0, "sampling failed in the reference loop");
            if (token == model.Config.EosTokenId && !options.IgnoreEos) return (tokens.ToArray(), StopReason.EndOfSequence);
            tokens.Add(token);
            if (length >= maxLength) return (tokens.ToArray(), StopReason.MaxLength);
            if (options.MaxNewTokens is int cap && tokens.Count >= cap) return (tokens.ToArray(), StopReason.MaxNewTokens);
            model.Forward(model.NextId, 1, model.HistoryLength);
            Sample();
            token = model.ReadInt(model.NextId);
            length++;
        }
    }

    /// <summary>Generates with the Generator and checks it against the plain loop on the same model: same tokens, same
    /// stop reason, one callback per token in order; returns the result and the device-side sequence length after it.</summary>
    static (GenerationResult Result, int DeviceLength) GenerateAndCompare(Step1Model model, GenerationOptions options, int[]? prompt = null)
    {
        prompt ??= Prompt;
        var callbacks = new List<int>();
        var result = new Generator(model).Generate(prompt, options, callbacks.Add);
        int deviceLength = model.ReadInt(model.HistoryLength);
        var (tokens, stop) = PlainLoop(model, prompt, options);
        Assert.Equal(tokens, result.Tokens);
        Assert.Equal(stop, result.Stop);
        Assert.Equal(result.Tokens, callbacks);
        return (result, deviceLength);
    }

    [Theory]
    [InlineData("cpu")]
    [InlineData("cuda")]
    public void MaxNewTokensStopRunsNoStepBeyondTheCap(string backendName)
    {
        using var backend = CreateBackend(backendName);
        using var model = Load(backend, RepoPaths.TinyModel);
        foreach (int cap in new[] { 1, 2, 17 })
        {
            var (result, deviceLength) = GenerateAndCompare(model, Sampled with { IgnoreEos = true, MaxNewTokens = cap });
            Assert.Equal(StopReason.MaxNewTokens, result.Stop);
            Assert.Equal(cap, result.Tokens.Length);
            // The prefill's draw and cap - 1 steps: nothing was launched ahead past the cap.
            Assert.Equal(Prompt.Length + cap, deviceLength);
        }
    }

    [Theory]
    [InlineData("cpu")]
    [InlineData("cuda")]
    public void MaxLengthStopRunsNoStepBeyondMaxLengthOrTheKvCache(string backendName)
    {
        using var backend = CreateBackend(backendName);
        // Max length binding: the option, below the cache.
        using (var model = Load(backend, RepoPaths.TinyModel))
        {
            var (result, deviceLength) = GenerateAndCompare(model, Sampled with { IgnoreEos = true, MaxLength = Prompt.Length + 30 });
            Assert.Equal(StopReason.MaxLength, result.Stop);
            Assert.Equal(30, result.Tokens.Length);
            Assert.Equal(Prompt.Length + 30, deviceLength);
        }
        // The KV cache binding: a cache just longer than the prompt, max length left at its default (8192). A step
        // beyond it would write past the cache and the history (the device length would exceed the cache).
        foreach (int room in new[] { 1, 2, 9 })
        {
            using var model = Load(backend, RepoPaths.TinyModel, maxContext: Prompt.Length + room);
            var (result, deviceLength) = GenerateAndCompare(model, Sampled with { IgnoreEos = true });
            Assert.Equal(StopReason.MaxLength, result.Stop);
            Assert.Equal(room, result.Tokens.Length);
            Assert.Equal(Prompt.Length + room, deviceLength);
        }
    }

    [Theory]
    [InlineData("cpu", 0)]
    [InlineData("cpu", 5)]
    [InlineData("cuda", 0)]
    [InlineData("cuda", 5)]
    public void EndOfSequenceStopGivesTheSameTokensAndLeavesTheModelConsistent(string backendName, int eosFrom)
    {
        using var backend = CreateBackend(backendName);
        // The tiny model's draws rarely hit its EOS id (3) by chance, so the checkpoint is copied with eos_token_id
        // set to a token this seed draws: the first, or the first new one from the sixth on.
        int[] free;
        using (var model = Load(backend, RepoPaths.TinyModel))
            free = new Generator(model).Generate(Prompt, Sampled with { IgnoreEos = true, MaxNewTokens = 60 }).Tokens;
        int at = Enumerable.Range(eosFrom, free.Length - eosFrom).First(i => Array.IndexOf(free, free[i]) == i);
        using var dir = new TempDir();
        foreach (var file in Directory.GetFiles(RepoPaths.TinyModel))
            File.Copy(file, dir.File(Path.GetFileName(file)));
        var config = JsonNode.Parse(File.ReadAllText(dir.File("config.json")))!;
        config["eos_token_id"] = free[at];
        File.WriteAllText(dir.File("config.json"), config.ToJsonString());

        using var eosModel = Load(backend, dir.Path);
        var options = Sampled with { MaxNewTokens = 60 };
        var (first, deviceLength) = GenerateAndCompare(eosModel, options);
        Assert.Equal(StopReason.EndOfSequence, first.Stop);
        Assert.Equal(free.Take(at), first.Tokens);
        // The prefill's draw, the steps up to the EOS, and at most the one launched ahead of it.
        Assert.InRange(deviceLength, Prompt.Length + at + 1, Prompt.Length + at + 2);
        // The model is idle and reusable: the same request again gives the same result.
        Assert.Equal(first.Tokens, new Generator(eosModel).Generate(Prompt, options).Tokens);
    }

    [Theory]
    [InlineData("cpu")]
    [InlineData("cuda")]
    public void AGenerationAcrossDecodeStepSizesSwitchesStepsAndKeepsThePlainLoopsTokens(string backendName)
    {
        // Sequences decode with the step of the smallest attention size that holds them (Step1Model.DecodeGraphSizes:
        // 64, then the whole cache). Generations from 12 below a size to 18 past it must give the plain loop's
        // tokens (that loop runs the whole cache's size throughout); a step run past its size would make NaN logits and
        // fail the draw. The tiny model's attention splits the keys the same way under every size, so even sampled
        // draws match.
        using var backend = CreateBackend(backendName);
        using var model = Load(backend, RepoPaths.TinyModel, maxContext: 552);
        foreach (int size in Step1Model.DecodeGraphSizes)
        {
            var prompt = Enumerable.Range(0, size - 12).Select(i => Prompt[i % Prompt.Length]).ToArray();
            var (result, deviceLength) = GenerateAndCompare(model, Sampled with { IgnoreEos = true, MaxNewTokens = 30 }, prompt);
            Assert.Equal(StopReason.MaxNewTokens, result.Stop);
            Assert.Equal(30, result.Tokens.Length);
            Assert.Equal(size + 18, deviceLength);
        }
    }

    [Theory]
    [InlineData("cpu")]
    [InlineData("cuda")]
    public void AnAbortedGenerationLeavesNoReadBehind(string backendName)
    {
        // A callback that throws ends Generate with a step (and its read) in flight; the model's readback queue is
        // reused, so a read left in it would become the next call's first token.
        using var backend = CreateBackend(backendName);
        using var model = Load(backend, RepoPaths.TinyModel);
        var options = Sampled with { IgnoreEos = true, MaxNewTokens = 12 };
        var seen = new List<int>();
        var e = Assert.Throws<InvalidOperationException>(() => new Generator(model).Generate(Prompt, options, t =>
        {
            seen.Add(t);
            if (seen.Count == 3) throw new InvalidOperationException("listener gave up");
        }));
        Assert.Equal("listener gave up", e.Message);
        var (result, deviceLength) = GenerateAndCompare(model, options);
        Assert.Equal(seen, result.Tokens.Take(3));
        Assert.Equal(Prompt.Length + 12, deviceLength);
    }
}
