namespace StepAudio.Audio;

/// <summary>Decoded audio exactly as torchaudio.load returns it: float32, channel-major [Channels, Frames].</summary>
public sealed class AudioClip
{
    public AudioClip(float[] samples, int channels, int sampleRate, string source = "")
    {
        if (channels < 1) throw new ArgumentOutOfRangeException(nameof(channels), channels, "need at least one channel");
        if (sampleRate < 1) throw new ArgumentOutOfRangeException(nameof(sampleRate), sampleRate, "sample rate must be positive");
        if (samples.Length % channels != 0)
            throw new ArgumentException($"{samples.Length} samples do not divide into {channels} channels", nameof(samples));
        Samples = samples; Channels = channels; SampleRate = sampleRate; Source = source;
    }

    /// <summary>Channel-major: channel c is Samples[c*Frames .. (c+1)*Frames).</summary>
    public float[] Samples { get; }
    public int Channels { get; }
    public int SampleRate { get; }
    /// <summary>Where the clip came from (file name), for error messages.</summary>
    public string Source { get; }
    public int Frames => Samples.Length / Channels;
    public double DurationSeconds => (double)Frames / SampleRate;
    public ReadOnlySpan<float> Channel(int c) => Samples.AsSpan(c * Frames, Frames);
}

/// <summary>Input that is not usable audio: unreadable, empty, too short/long, not audio. Names the file.</summary>
public sealed class AudioFormatException(string source, string reason, Exception? inner = null)
    : Exception($"{(string.IsNullOrEmpty(source) ? "audio" : source)}: {reason}", inner)
{
    public string SourceName { get; } = source;
    public string Reason { get; } = reason;
}
