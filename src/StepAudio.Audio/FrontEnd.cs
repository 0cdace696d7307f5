using System.Diagnostics;

namespace StepAudio.Audio;

/// <summary>Everything the host front end makes of one prompt (see the spec §0, §4.1–4.3, §5.2).</summary>
public sealed record FrontEndResult(
    AudioClip Clip,
    float SourcePeak,
    float[] Mono,            // mono, peak ≤ 0.6, at the source rate
    float[] Audio16k,        // resampled, untrimmed (speaker encoder input)
    float[] Audio24k,        // resampled, untrimmed (vocoder prompt mel input)
    TrimResult Trim,         // energy-normalised 16 kHz, trimmed (tokenizer input)
    List<FeatureMatrix> WhisperMel,   // vq06 input, one per ≤ 30 s chunk, [128, T]
    FeatureMatrix ParaformerFeatures, // vq02 input, [T, 560] (CMVN applied when given)
    FeatureMatrix SpeakerFbank,       // CAM++ input, [T, 80]
    FeatureMatrix VocoderMel,         // speech_feat, [T, 80]
    IReadOnlyList<string> Notes);

/// <summary>Wall time per front-end stage, accumulated over calls (for the CLI benchmark's breakdown).</summary>
public sealed class FrontEndTimings
{
    public static readonly string[] Stages = ["mono+peak", "resample 16k", "resample 24k", "norm+trim", "whisper mel", "paraformer", "speaker fbank", "vocoder mel"];
    public double[] Milliseconds { get; } = new double[Stages.Length];
    /// <summary>The fastest single time of each stage (on a loaded machine the minimum is the steadier figure).</summary>
    public double[] MinMilliseconds { get; } = Enumerable.Repeat(double.PositiveInfinity, Stages.Length).ToArray();
    long _last = Stopwatch.GetTimestamp();
    internal void Start() => _last = Stopwatch.GetTimestamp();
    internal void Lap(int stage)
    {
        long now = Stopwatch.GetTimestamp();
        double ms = Stopwatch.GetElapsedTime(_last, now).TotalMilliseconds;
        Milliseconds[stage] += ms;
        MinMilliseconds[stage] = Math.Min(MinMilliseconds[stage], ms);
        _last = now;
    }
}

/// <summary>The reference's host-side preprocessing and features for a prompt, in one call.</summary>
public static class FrontEnd
{
    public const int TokenizerRate = 16000, VocoderRate = 24000;

    public static FrontEndResult Run(AudioClip clip, Cmvn? cmvn = null, FrontEndTimings? timings = null)
    {
        timings?.Start();
        var notes = new List<string>();
        var (mono, peak) = Preprocess.MonoPeakNormalized(clip);
        if (clip.Channels > 1) notes.Add($"mixed {clip.Channels} channels to mono");
        if (peak > Preprocess.PeakTarget) notes.Add($"peak {peak:0.###} scaled to {Preprocess.PeakTarget}");
        if (clip.SampleRate < TokenizerRate)
            notes.Add($"source rate {clip.SampleRate} Hz is below 16 kHz: upsampled (the reference tokenizer rejects such input)");
        timings?.Lap(0);
        var a16 = SincResampler.Resample(mono, clip.SampleRate, TokenizerRate);
        timings?.Lap(1);
        var a24 = SincResampler.Resample(mono, clip.SampleRate, VocoderRate);
        timings?.Lap(2);
        var norm = Preprocess.EnergyNormalized(a16); // a16 itself stays unnormalised for the speaker encoder
        var trim = Preprocess.TrimSilence(norm, TokenizerRate);
        if (trim.E <= trim.S) notes.Add("no non-silent audio found");
        timings?.Lap(3);
        var whisper = WhisperLogMel.ComputeChunks(trim.Samples);
        timings?.Lap(4);
        var (para, _) = ParaformerFrontEnd.Compute(trim.Samples, cmvn);
        if (cmvn is null) notes.Add("Paraformer features without CMVN (no am.mvn given)");
        timings?.Lap(5);
        var spk = KaldiFbank.SpeakerFeatures(a16);
        timings?.Lap(6);
        var voc = VocoderMel.Compute(a24);
        timings?.Lap(7);
        return new FrontEndResult(clip, peak, mono, a16, a24, trim, whisper, para, spk, voc, notes);
    }
}
