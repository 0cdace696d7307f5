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

/// <summary>The reference's host-side preprocessing and features for a prompt, in one call.</summary>
public static class FrontEnd
{
    public const int TokenizerRate = 16000, VocoderRate = 24000;

    public static FrontEndResult Run(AudioClip clip, Cmvn? cmvn = null)
    {
        var notes = new List<string>();
        var mono = Preprocess.MonoMix(clip);
        float peak = Preprocess.PeakNormalize(mono);
        if (clip.Channels > 1) notes.Add($"mixed {clip.Channels} channels to mono");
        if (peak > Preprocess.PeakTarget) notes.Add($"peak {peak:0.###} scaled to {Preprocess.PeakTarget}");
        if (clip.SampleRate < TokenizerRate)
            notes.Add($"source rate {clip.SampleRate} Hz is below 16 kHz: upsampled (the reference tokenizer rejects such input)");
        var a16 = SincResampler.Resample(mono, clip.SampleRate, TokenizerRate);
        var a24 = SincResampler.Resample(mono, clip.SampleRate, VocoderRate);
        var norm = (float[])a16.Clone();
        Preprocess.EnergyNormalize(norm);
        var trim = Preprocess.TrimSilence(norm, TokenizerRate);
        if (trim.E <= trim.S) notes.Add("no non-silent audio found");
        var whisper = WhisperLogMel.ComputeChunks(trim.Samples);
        var (para, _) = ParaformerFrontEnd.Compute(trim.Samples, cmvn);
        if (cmvn is null) notes.Add("Paraformer features without CMVN (no am.mvn given)");
        var spk = KaldiFbank.SpeakerFeatures(a16);
        var voc = VocoderMel.Compute(a24);
        return new FrontEndResult(clip, peak, mono, a16, a24, trim, whisper, para, spk, voc, notes);
    }
}
