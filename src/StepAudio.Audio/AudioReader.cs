using NAudio.Wave;

namespace StepAudio.Audio;

/// <summary>Limits applied when reading a prompt.</summary>
public sealed record AudioReadOptions
{
    public double MinSeconds { get; init; } = 0.1;
    public double MaxSeconds { get; init; } = 60.0;
    public static AudioReadOptions Default { get; } = new();
}

/// <summary>Reads WAV (PCM 8/16/24/32-bit, float32/64, any channel count and rate; NAudio parses the RIFF chunks) and
/// MP3 (NLayer) into the float32 samples torchaudio.load gives: integer PCM divided by 2^(bits-1), 8-bit centred on
/// 128, floats as stored. (The clone speaker id hashes these values, so the scaling is exact, not approximate.)</summary>
public static class AudioReader
{
    static readonly Guid PcmSubFormat = new("00000001-0000-0010-8000-00aa00389b71");
    static readonly Guid FloatSubFormat = new("00000003-0000-0010-8000-00aa00389b71");

    public static AudioClip Read(string path, AudioReadOptions? options = null)
    {
        byte[] bytes;
        try { bytes = File.ReadAllBytes(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new AudioFormatException(path, $"cannot read the file ({e.Message})", e);
        }
        return Read(bytes, path, options);
    }

    public static AudioClip Read(byte[] bytes, string source, AudioReadOptions? options = null)
    {
        options ??= AudioReadOptions.Default;
        if (bytes.Length == 0) throw new AudioFormatException(source, "the file is empty");
        AudioClip clip;
        if (IsWav(bytes)) clip = ReadWav(bytes, source);
        else if (IsMp3(bytes)) clip = ReadMp3(bytes, source);
        else throw new AudioFormatException(source, "not a WAV (RIFF/WAVE) or MP3 file");
        Validate(clip, options);
        return clip;
    }

    static bool IsWav(byte[] b) => b.Length >= 12 && b[0] == 'R' && b[1] == 'I' && b[2] == 'F' && b[3] == 'F'
        && b[8] == 'W' && b[9] == 'A' && b[10] == 'V' && b[11] == 'E';

    static bool IsMp3(byte[] b) => (b.Length >= 3 && b[0] == 'I' && b[1] == 'D' && b[2] == '3')
        || (b.Length >= 2 && b[0] == 0xFF && (b[1] & 0xE0) == 0xE0);

    static void Validate(AudioClip clip, AudioReadOptions options)
    {
        if (clip.Frames == 0) throw new AudioFormatException(clip.Source, "contains no samples");
        if (clip.DurationSeconds < options.MinSeconds)
            throw new AudioFormatException(clip.Source,
                $"too short: {clip.DurationSeconds:0.###} s (minimum {options.MinSeconds:0.###} s)");
        if (clip.DurationSeconds > options.MaxSeconds)
            throw new AudioFormatException(clip.Source,
                $"too long: {clip.DurationSeconds:0.###} s (maximum {options.MaxSeconds:0.###} s; raise the limit to accept it)");
        foreach (float v in clip.Samples)
            if (!float.IsFinite(v)) throw new AudioFormatException(clip.Source, "contains NaN or infinite samples");
    }

    static AudioClip ReadWav(byte[] bytes, string source)
    {
        WaveFormat format;
        byte[] data;
        try
        {
            using var reader = new WaveFileReader(new MemoryStream(bytes, writable: false));
            format = reader.WaveFormat;
            long declared = reader.Length;
            data = new byte[declared];
            int got = 0, n;
            while (got < data.Length && (n = reader.Read(data, got, data.Length - got)) > 0) got += n;
            if (got < data.Length) Array.Resize(ref data, got); // truncated data chunk: keep what is there
        }
        catch (Exception e) when (e is not AudioFormatException)
        {
            throw new AudioFormatException(source, $"unreadable WAV ({e.Message})", e);
        }

        bool isFloat;
        switch (format.Encoding)
        {
            case WaveFormatEncoding.Pcm: isFloat = false; break;
            case WaveFormatEncoding.IeeeFloat: isFloat = true; break;
            case WaveFormatEncoding.Extensible:
                // NAudio does not always surface the extensible sub-format; read the GUID from the fmt chunk.
                var sub = ExtensibleSubFormat(bytes);
                if (sub == PcmSubFormat) isFloat = false;
                else if (sub == FloatSubFormat) isFloat = true;
                else throw new AudioFormatException(source, $"unsupported WAVE_FORMAT_EXTENSIBLE sub-format {sub} (need PCM or IEEE float)");
                break;
            default:
                throw new AudioFormatException(source, $"unsupported WAV encoding {format.Encoding} (need PCM or IEEE float)");
        }
        int bits = format.BitsPerSample, channels = format.Channels;
        if (channels < 1) throw new AudioFormatException(source, "WAV header declares 0 channels");
        if (format.SampleRate < 1) throw new AudioFormatException(source, "WAV header declares sample rate 0");
        if (isFloat ? bits is not (32 or 64) : bits is not (8 or 16 or 24 or 32))
            throw new AudioFormatException(source, $"unsupported WAV sample size: {bits}-bit {(isFloat ? "float" : "PCM")}");
        int bytesPerSample = bits / 8, block = bytesPerSample * channels;
        int frames = data.Length / block;
        var samples = new float[frames * channels];
        for (int f = 0; f < frames; f++)
            for (int c = 0; c < channels; c++)
                samples[c * frames + f] = Decode(data.AsSpan((f * channels + c) * bytesPerSample, bytesPerSample), bits, isFloat);
        return new AudioClip(samples, channels, format.SampleRate, source);
    }

    static Guid? ExtensibleSubFormat(byte[] b)
    {
        for (int i = 12; i + 8 <= b.Length;)
        {
            int size = BitConverter.ToInt32(b, i + 4);
            if (size < 0) return null;
            if (b[i] == 'f' && b[i + 1] == 'm' && b[i + 2] == 't' && b[i + 3] == ' ')
                return size >= 40 && i + 8 + 40 <= b.Length ? new Guid(b.AsSpan(i + 8 + 24, 16)) : null;
            i += 8 + size + (size & 1);
        }
        return null;
    }

    static float Decode(ReadOnlySpan<byte> b, int bits, bool isFloat)
    {
        if (isFloat) return bits == 32 ? BitConverter.ToSingle(b) : (float)BitConverter.ToDouble(b);
        return bits switch
        {
            8 => (b[0] - 128) / 128f,
            16 => BitConverter.ToInt16(b) / 32768f,
            // 24-bit: as int32 (shifted left 8) over 2^31, which is exact in float.
            24 => (float)((b[0] << 8 | b[1] << 16 | b[2] << 24) / 2147483648.0),
            _ => (float)(BitConverter.ToInt32(b) / 2147483648.0),
        };
    }

    static AudioClip ReadMp3(byte[] bytes, string source)
    {
        try
        {
            using var mpeg = new NLayer.MpegFile(new MemoryStream(bytes, writable: false));
            int channels = mpeg.Channels, rate = mpeg.SampleRate;
            var interleaved = new List<float>(1 << 16);
            var buffer = new float[8192 * Math.Max(channels, 1)];
            int n;
            while ((n = mpeg.ReadSamples(buffer, 0, buffer.Length)) > 0) interleaved.AddRange(buffer.AsSpan(0, n));
            if (channels < 1 || rate < 1) throw new AudioFormatException(source, "MP3 stream without a valid frame header");
            int frames = interleaved.Count / channels;
            var samples = new float[frames * channels];
            for (int f = 0; f < frames; f++)
                for (int c = 0; c < channels; c++) samples[c * frames + f] = interleaved[f * channels + c];
            return new AudioClip(samples, channels, rate, source);
        }
        catch (Exception e) when (e is not AudioFormatException)
        {
            throw new AudioFormatException(source, $"unreadable MP3 ({e.Message})", e);
        }
    }
}

/// <summary>Sample format of a written WAV file.</summary>
public enum WavSampleFormat { Pcm16, Float32 }

/// <summary>Writes mono WAV files (the vocoder's 24 kHz output).</summary>
public static class AudioWriter
{
    public const int VocoderSampleRate = 24000;

    /// <summary>16-bit PCM uses round-half-even of x·32768 clipped to int16 (what torchaudio.save/FFmpeg do), so a
    /// 16-bit file read and written again is bit-identical. Float32 is stored as is.</summary>
    public static void WriteWav(Stream stream, ReadOnlySpan<float> mono, int sampleRate = VocoderSampleRate,
        WavSampleFormat format = WavSampleFormat.Pcm16)
    {
        var wf = format == WavSampleFormat.Pcm16 ? new WaveFormat(sampleRate, 16, 1) : WaveFormat.CreateIeeeFloatWaveFormat(sampleRate, 1);
        using var writer = new WaveFileWriter(new NonClosingStream(stream), wf);
        var bytes = new byte[mono.Length * (format == WavSampleFormat.Pcm16 ? 2 : 4)];
        for (int i = 0; i < mono.Length; i++)
        {
            if (format == WavSampleFormat.Pcm16)
            {
                double v = Math.Round(mono[i] * 32768.0, MidpointRounding.ToEven);
                BitConverter.TryWriteBytes(bytes.AsSpan(2 * i), (short)Math.Clamp(v, short.MinValue, short.MaxValue));
            }
            else BitConverter.TryWriteBytes(bytes.AsSpan(4 * i), mono[i]);
        }
        writer.Write(bytes, 0, bytes.Length);
    }

    public static void WriteWav(string path, ReadOnlySpan<float> mono, int sampleRate = VocoderSampleRate,
        WavSampleFormat format = WavSampleFormat.Pcm16)
    {
        using var fs = File.Create(path);
        WriteWav(fs, mono, sampleRate, format);
    }

    /// <summary>WaveFileWriter closes its stream on dispose; callers own theirs.</summary>
    sealed class NonClosingStream(Stream inner) : Stream
    {
        public override bool CanRead => inner.CanRead;
        public override bool CanSeek => inner.CanSeek;
        public override bool CanWrite => inner.CanWrite;
        public override long Length => inner.Length;
        public override long Position { get => inner.Position; set => inner.Position = value; }
        public override void Flush() => inner.Flush();
        public override int Read(byte[] buffer, int offset, int count) => inner.Read(buffer, offset, count);
        public override long Seek(long offset, SeekOrigin origin) => inner.Seek(offset, origin);
        public override void SetLength(long value) => inner.SetLength(value);
        public override void Write(byte[] buffer, int offset, int count) => inner.Write(buffer, offset, count);
        protected override void Dispose(bool disposing) => inner.Flush();
    }
}
