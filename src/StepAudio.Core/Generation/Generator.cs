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
/// which appends to the device-side history) is prepared once per sampling setting and attention size (kept by the
/// model across calls, see <see cref="Step1Model.DecodeStep"/>) and replayed, one step ahead of the host; the host
/// reads back only the chosen ids.</summary>
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
        // The history is the prompt, then -1 up to max length: a slot that no sampler filled (a failed draw appends
        // nothing and sets NextId to -1) reads back as -1, the failure.
        var history = Enumerable.Repeat(-1, maxLength).ToArray();
        ids.CopyTo(history, 0);
        fixed (int* p = history) backend.Upload(model.History, (nint)p, history.Length * 4L);
        model.WriteInt(model.HistoryLength, ids.Length);
        model.WriteULong(model.SampleStep, 0);
        model.PrefillHistory(ids.Length);
        backend.Sample(model.Logits, config.VocabSize, model.History, model.HistoryLength, sampling, model.SampleStep, model.NextId);

        var tokens = new List<int>();
        int length = ids.Length + 1; // the sequence so far, the first token included
        // The host keeps one step ahead: the step after token t is launched before t is read back, so the GPU does
        // not idle for the host's round trip. A step run at sequence length L appends its id at history[L]; that
        // slot, unlike NextId, is not overwritten by the step launched after it, so it is what gets read. (After a
        // failed draw, which appends nothing, the next step does write that slot, but as its last act, a whole step
        // after the copy of the -1 left there.)
        var readback = model.Readback;
        int pending = 0;
        // The step in use and its attention size; looked up again (prepared once per setting and size, kept by the
        // model) only when the sequence outgrows that size, a few times per generation.
        IReplayableStep? step = null;
        int stepSize = 0;
        void Launch(int atLength)
        {
            if (step is null || atLength > stepSize)
            {
                step = model.DecodeStep(sampling, atLength);
                stepSize = model.DecodeAttentionContext(atLength);
            }
            step.Run();
            readback.Enqueue(model.History + (nint)atLength * 4);
            pending++;
        }
        // Why decoding stops after a sequence of `atLength` tokens holding `produced` new ones, EOS aside; null while it
        // goes on. The same test, made one token early, decides whether to launch a step ahead, so steps never go
        // past max length or the KV cache; only a step after an EOS is wasted.
        StopReason? Limit(int atLength, int produced) =>
            atLength >= maxLength ? StopReason.MaxLength
            : options.MaxNewTokens is int cap && produced >= cap ? StopReason.MaxNewTokens
            : null;

        StopReason stop;
        int token;
        TimeSpan prefillTime;
        try
        {
            // The first token is read like the others, through the queue, and the first decode step is launched
            // before it arrives (the step takes its input from NextId on the device): the GPU goes from the prefill
            // straight into decoding instead of waiting for a host round trip. The decode clock starts when the
            // first token is in hand, so a few microseconds of that first step count as prefill.
            readback.Enqueue(model.History + (nint)ids.Length * 4);
            pending++;
            if (Limit(length, 1) is null) Launch(length);
            token = readback.Dequeue();
            pending--;
            prefillTime = clock.Elapsed;
            clock.Restart();
            while (true)
            {
                if (token < 0) throw new InvalidOperationException($"sampling failed after {tokens.Count} tokens: every logit was -inf or NaN");
                if (token == config.EosTokenId && !options.IgnoreEos) { stop = StopReason.EndOfSequence; break; }
                tokens.Add(token);
                onToken?.Invoke(token);
                if (Limit(length, tokens.Count) is StopReason limit) { stop = limit; break; }
                // The step producing the next token is running (launched under this same test one token ago).
                length++;
                if (Limit(length, tokens.Count + 1) is null) Launch(length);
                token = readback.Dequeue();
                pending--;
            }
        }
        finally
        {
            // A step launched past EOS (or an error) may still be running: the model is idle when Generate returns,
            // and the decode time includes that wait. Its read is dropped, not left for the next call.
            backend.Synchronize();
            for (; pending > 0; pending--) readback.Dequeue();
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
