using System.Diagnostics;
using StepAudio.Backends;
using StepAudio.Model;

namespace StepAudio.Generation;

/// <summary>Generation settings. Defaults are the reference's (spec §3.5): sampled, temperature 0.7, top-k 50
/// (HF default), the RepetitionAwareLogitsProcessor window of 10, EOS 3, max_length 8192 counting the prompt.</summary>
public sealed record GenerationOptions
{
    public float Temperature { get; init; } = 0.7f;
    public int TopK { get; init; } = 50;
    public int RepetitionWindow { get; init; } = 10;
    public bool Greedy { get; init; }
    public ulong Seed { get; init; } = 0x5EED;
    /// <summary>Total length (prompt + generated) at which generation stops, as HF's max_length.</summary>
    public int MaxLength { get; init; } = 8192;
    /// <summary>Optional cap on new tokens (benchmarks use 50).</summary>
    public int? MaxNewTokens { get; init; }
    /// <summary>Keep going past EOS (benchmarks on random weights, so every run decodes the same count).</summary>
    public bool IgnoreEos { get; init; }

    internal SamplingParams ToSampling() =>
        new(Greedy ? 0f : Temperature, Greedy ? 1 : TopK, RepetitionWindow, Seed);
}

public enum StopReason { EndOfSequence, MaxLength, MaxNewTokens }

/// <summary>Generated ids (EOS not included) and timings.</summary>
public sealed record GenerationResult(int[] Tokens, StopReason Stop, TimeSpan PrefillTime, TimeSpan DecodeTime, int PromptLength)
{
    /// <summary>Decode speed over the tokens produced after the first (the first comes out of the prefill).</summary>
    public double DecodeTokensPerSecond => Tokens.Length > 1 && DecodeTime.TotalSeconds > 0 ? (Tokens.Length - 1) / DecodeTime.TotalSeconds : 0;
}

/// <summary>Prefill then token-by-token decode. The decode step (embed the last id → 32 layers → lm_head → sample,
/// which appends to the device-side history) is prepared once and replayed; the host reads back only the chosen id.</summary>
public sealed class Generator(Step1Model model)
{
    public unsafe GenerationResult Generate(IReadOnlyList<int> prompt, GenerationOptions options, Action<int>? onToken = null)
    {
        var config = model.Config;
        Validate(prompt, options);
        var backend = model.Backend;
        var sampling = options.ToSampling();
        int maxLength = Math.Min(options.MaxLength, model.Options.MaxContext);

        var clock = Stopwatch.StartNew();
        var ids = prompt.ToArray();
        fixed (int* p = ids) backend.Upload(model.History, (nint)p, ids.Length * 4L);
        model.WriteInt(model.HistoryLength, ids.Length);
        model.WriteULong(model.SampleStep, 0);
        int chunk = model.Options.MaxTokensPerForward;
        for (int start = 0; start < ids.Length; start += chunk)
        {
            int n = Math.Min(chunk, ids.Length - start);
            model.WriteInt(model.PrefillLength, start + n);
            model.Forward(model.History + start * 4, n, model.PrefillLength);
        }
        backend.Sample(model.Logits, config.VocabSize, model.History, model.HistoryLength, sampling, model.SampleStep, model.NextId);
        int token = model.ReadInt(model.NextId);
        var prefillTime = clock.Elapsed;

        var tokens = new List<int>();
        int length = ids.Length + 1;
        clock.Restart();
        using var step = backend.Prepare(() =>
        {
            model.Forward(model.NextId, 1, model.HistoryLength);
            backend.Sample(model.Logits, config.VocabSize, model.History, model.HistoryLength, sampling, model.SampleStep, model.NextId);
        });
        StopReason stop;
        while (true)
        {
            if (token < 0) throw new InvalidOperationException($"sampling failed after {tokens.Count} tokens: every logit was -inf or NaN");
            if (token == config.EosTokenId && !options.IgnoreEos) { stop = StopReason.EndOfSequence; break; }
            tokens.Add(token);
            onToken?.Invoke(token);
            if (length >= maxLength) { stop = StopReason.MaxLength; break; }
            if (options.MaxNewTokens is int cap && tokens.Count >= cap) { stop = StopReason.MaxNewTokens; break; }
            step.Run();
            token = model.ReadInt(model.NextId);
            length++;
        }
        return new GenerationResult(tokens.ToArray(), stop, prefillTime, clock.Elapsed, ids.Length);
    }

    void Validate(IReadOnlyList<int> prompt, GenerationOptions options)
    {
        var config = model.Config;
        if (prompt.Count == 0) throw new ArgumentException("the prompt is empty");
        for (int i = 0; i < prompt.Count; i++)
            if (prompt[i] < 0 || prompt[i] >= config.VocabSize)
                throw new ArgumentException($"prompt id {prompt[i]} at position {i} is outside the vocabulary [0, {config.VocabSize})");
        int limit = Math.Min(options.MaxLength, model.Options.MaxContext);
        if (prompt.Count >= limit)
            throw new ArgumentException($"the prompt has {prompt.Count} tokens; it must be shorter than max length {limit} " +
                                        $"(max_length {options.MaxLength}, KV cache {model.Options.MaxContext} tokens)");
        if (!options.Greedy && !(options.Temperature > 0)) throw new ArgumentException($"temperature must be > 0, got {options.Temperature}");
        if (options.TopK < 0) throw new ArgumentException($"top-k must be ≥ 0, got {options.TopK}");
        if (options.MaxNewTokens is < 1) throw new ArgumentException($"max new tokens must be ≥ 1, got {options.MaxNewTokens}");
    }
}
