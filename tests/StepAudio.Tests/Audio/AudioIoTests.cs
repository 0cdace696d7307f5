using System.Text;
using StepAudio.Audio;

namespace StepAudio.Tests.Audio;

/// <summary>WAV writing round trips and every bad-input case of the reader (typed AudioFormatException naming the file).</summary>
public class AudioIoTests
{
    static readonly Random Rng = new();

    static byte[] Wav(int rate, int channels, int bits, int tag, byte[] data)
    {
        var ms = new MemoryStream();
        var w = new BinaryWriter(ms);
        int block = channels * bits / 8;
        w.Write(Encoding.ASCII.GetBytes("RIFF")); w.Write(36 + data.Length); w.Write(Encoding.ASCII.GetBytes("WAVE"));
        w.Write(Encoding.ASCII.GetBytes("fmt ")); w.Write(16); w.Write((short)tag); w.Write((short)channels);
        w.Write(rate); w.Write(rate * block); w.Write((short)block); w.Write((short)bits);
        w.Write(Encoding.ASCII.GetBytes("data")); w.Write(data.Length); w.Write(data);
        return ms.ToArray();
    }

    [Fact]
    public void Pcm16WriteReadWriteIsBitExact()
    {
        // random int16 values (full range, both extremes) → float → WAV → float: identical, and the bytes too
        var ints = new short[24000 / 5];
        for (int i = 0; i < ints.Length; i++) ints[i] = (short)Rng.Next(short.MinValue, short.MaxValue + 1);
        ints[0] = short.MinValue; ints[1] = short.MaxValue;
        var x = ints.Select(v => v / 32768f).ToArray();
        var ms = new MemoryStream();
        AudioWriter.WriteWav(ms, x, 24000, WavSampleFormat.Pcm16);
        var clip = AudioReader.Read(ms.ToArray(), "mem.wav");
        Assert.Equal((24000, 1), (clip.SampleRate, clip.Channels));
        Assert.Equal(x, clip.Samples);
        var ms2 = new MemoryStream();
        AudioWriter.WriteWav(ms2, clip.Samples, 24000, WavSampleFormat.Pcm16);
        Assert.Equal(ms.ToArray(), ms2.ToArray());
    }

    [Fact]
    public void Float32RoundTripIsExactAndPcm16RoundsHalfEvenAndClips()
    {
        var x = new float[4800];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(Rng.NextDouble() * 2.4 - 1.2);
        var ms = new MemoryStream();
        AudioWriter.WriteWav(ms, x, 24000, WavSampleFormat.Float32);
        Assert.Equal(x, AudioReader.Read(ms.ToArray(), "mem.wav").Samples);

        var ms16 = new MemoryStream();
        AudioWriter.WriteWav(ms16, x, 24000, WavSampleFormat.Pcm16);
        var back = AudioReader.Read(ms16.ToArray(), "mem.wav").Samples;
        for (int i = 0; i < x.Length; i++)
        {
            double want = Math.Clamp(Math.Round(x[i] * 32768.0, MidpointRounding.ToEven), -32768, 32767) / 32768.0;
            Assert.Equal(want, back[i]);
        }
    }

    [Fact]
    public void FixtureInt16FileWrittenAgainKeepsItsSamples()
    {
        var clip = AudioReader.Read(Path.Combine(AudioFixtures.Dir, "s16k_tone_noise_i16.wav"));
        var ms = new MemoryStream();
        AudioWriter.WriteWav(ms, clip.Channel(0), clip.SampleRate, WavSampleFormat.Pcm16);
        Assert.Equal(clip.Samples, AudioReader.Read(ms.ToArray(), "again.wav").Samples);
    }

    [Fact]
    public void EightBitAndStereoPcmScaleLikeTorchaudio()
    {
        var clip = AudioReader.Read(Wav(8000, 2, 8, 1, [0, 255, 128, 64]), "u8.wav", new AudioReadOptions { MinSeconds = 0 });
        Assert.Equal(new[] { -1f, 0f, 127 / 128f, -0.5f }, clip.Samples); // channel-major: L = [0,128], R = [255,64]
    }

    static AudioFormatException Bad(byte[] bytes, AudioReadOptions? o = null) =>
        Assert.Throws<AudioFormatException>(() => AudioReader.Read(bytes, "bad.wav", o));

    [Fact]
    public void BadInputsGetClearErrors()
    {
        Assert.Contains("empty", Bad([]).Message);
        var text = Bad(Encoding.UTF8.GetBytes("hello, this is not audio at all"));
        Assert.Contains("not a WAV", text.Message);
        Assert.StartsWith("bad.wav:", text.Message);
        Assert.Contains("unreadable WAV", Bad(Encoding.ASCII.GetBytes("RIFF\x10\0\0\0WAVEjunk")).Message);
        Assert.Contains("no samples", Bad(Wav(16000, 1, 16, 1, [])).Message);
        Assert.Contains("too short", Bad(Wav(16000, 1, 16, 1, new byte[2 * 1599])).Message); // 0.0999 s
        Assert.Contains("too long", Bad(Wav(16000, 1, 16, 1, new byte[2 * 16001]), new AudioReadOptions { MaxSeconds = 1 }).Message);
        Assert.Contains("unsupported WAV encoding", Bad(Wav(16000, 1, 8, 6, new byte[4000])).Message); // A-law
        Assert.Contains("sample size", Bad(Wav(16000, 1, 12, 1, new byte[4000])).Message);
        var nan = new byte[4 * 2000];
        BitConverter.TryWriteBytes(nan.AsSpan(400), float.NaN);
        Assert.Contains("NaN", Bad(Wav(16000, 1, 32, 3, nan)).Message);
        Assert.Contains("MP3", Bad([.. Encoding.ASCII.GetBytes("ID3"), 3, 0, 0, 0, 0, 0, 0, .. new byte[64]]).Message);
        var missing = Assert.Throws<AudioFormatException>(() => AudioReader.Read("/nonexistent/dir/prompt.wav"));
        Assert.Contains("/nonexistent/dir/prompt.wav", missing.Message);
    }

    [Fact]
    public void ExactlyTheMinimumDurationIsAccepted()
    {
        var clip = AudioReader.Read(Wav(16000, 1, 16, 1, new byte[2 * 1600]), "min.wav");
        Assert.Equal(0.1, clip.DurationSeconds, 12);
    }

    [Fact]
    public void CmvnFileErrorsNameTheFile()
    {
        string path = Path.Combine(Path.GetTempPath(), $"bad-{Guid.NewGuid():N}.mvn");
        File.WriteAllText(path, "<Nnet>\n<AddShift> 3 3\n<LearnRateCoef> 0 [ 1 2 3 ]\n<Rescale> 3 3\n<LearnRateCoef> 0 [ 1 x 3 ]\n</Nnet>\n");
        try
        {
            var e = Assert.Throws<AudioFormatException>(() => Cmvn.Load(path));
            Assert.Contains(path, e.Message);
            Assert.Contains("not a number", e.Message);
        }
        finally { File.Delete(path); }
        var good = AudioFixtures.Cmvn();
        Assert.Equal(560, good.Dim);
        Assert.All(good.Scale, v => Assert.InRange(v, 1 / 6.0f, 0.5f)); // the oracle drew 1/U(2,6)
    }
}

/// <summary>The mixed-radix FFT against a direct DFT on fresh random input.</summary>
public class FftTests
{
    [Theory]
    [InlineData(400)]
    [InlineData(512)]
    [InlineData(1920)]
    [InlineData(14)]
    [InlineData(98)] // 2·7·7: the generic prime butterfly
    public void RealFftMatchesDirectDft(int n)
    {
        var rng = new Random();
        var x = new double[n];
        for (int i = 0; i < n; i++) x[i] = rng.NextDouble() * 2 - 1;
        var fft = new RealFft(n);
        var re = new double[fft.Bins]; var im = new double[fft.Bins];
        fft.Forward(x, re, im);
        double scale = 0, err = 0;
        for (int k = 0; k <= n / 2; k++)
        {
            double sr = 0, si = 0;
            for (int t = 0; t < n; t++) { double a = -2 * Math.PI * ((long)k * t % n) / n; sr += x[t] * Math.Cos(a); si += x[t] * Math.Sin(a); }
            err = Math.Max(err, Math.Max(Math.Abs(sr - re[k]), Math.Abs(si - im[k])));
            scale = Math.Max(scale, Math.Sqrt(sr * sr + si * si));
        }
        Assert.True(err <= 1e-12 * n * scale, $"n={n}: error {err:E2} (scale {scale:E2})");
    }
}
