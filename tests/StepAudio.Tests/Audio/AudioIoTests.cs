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

    /// <summary>A real MP3 (tests/fixtures/audio/s48k_stereo.mp3, LAME 3.100 at 128 kbit/s from the committed
    /// s48k_stereo_i24ext.wav; s48k_stereo.mp3.md says how it was made). The reference reads MP3 with torchaudio
    /// through FFmpeg, which is not available here, so this is not a bit-for-bit comparison: it checks the format,
    /// the length (within one 1152-sample MP3 frame of the source), the decoder delay (measured: 529 samples, found
    /// again here by cross-correlation) and the SNR against the source after that shift (measured ≈ 26 dB per
    /// channel; bound 20 dB, well above what a wrong channel order, rate or sample scaling would give).</summary>
    [Fact]
    public void Mp3FixtureDecodesToTheSourceWav()
    {
        const int Mp3Frame = 1152, MeasuredDelay = 529;
        const double MinSnrDb = 20;
        var mp3 = AudioReader.Read(Path.Combine(AudioFixtures.Dir, "s48k_stereo.mp3"));
        var wav = AudioReader.Read(Path.Combine(AudioFixtures.Dir, "s48k_stereo_i24ext.wav"));
        Assert.Equal((48000, 2), (mp3.SampleRate, mp3.Channels));
        Assert.InRange(mp3.Frames, wav.Frames - Mp3Frame, wav.Frames + Mp3Frame);
        for (int c = 0; c < 2; c++)
        {
            var src = wav.Channel(c); var dec = mp3.Channel(c);
            int bestLag = -1; double best = double.NegativeInfinity;
            for (int lag = 0; lag <= 2 * Mp3Frame; lag++)
            {
                double dot = 0;
                for (int i = 0; i + lag < dec.Length && i < src.Length; i++) dot += (double)src[i] * dec[i + lag];
                if (dot > best) { best = dot; bestLag = lag; }
            }
            Assert.Equal(MeasuredDelay, bestLag);
            double signal = 0, noise = 0;
            for (int i = 0; i + bestLag < dec.Length && i < src.Length; i++)
            {
                double d = src[i] - dec[i + bestLag];
                signal += (double)src[i] * src[i]; noise += d * d;
            }
            double snr = 10 * Math.Log10(signal / noise);
            Assert.True(snr >= MinSnrDb, $"channel {c}: SNR {snr:0.0} dB < {MinSnrDb} dB after a {bestLag}-sample shift");
        }
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
    /// <summary>The features transform Lanes frames at once, one per SIMD lane: every lane gets its own random
    /// sequence and must match its own direct DFT (complex sizes 200 = 8·5·5, 256 = 8·8·4, 960 = 8·8·3·5, 105 = 3·5·7).</summary>
    [Theory]
    [InlineData(400)]
    [InlineData(512)]
    [InlineData(1920)]
    [InlineData(210)]
    public void EveryLaneOfABatchMatchesItsDirectDft(int n)
    {
        var rng = new Random();
        int lanes = RealFft.Lanes;
        var fft = new RealFft(n);
        var x = new double[lanes, n];
        for (int i = 0; i < n; i++)
        {
            var v = new double[lanes];
            for (int l = 0; l < lanes; l++) v[l] = x[l, i] = rng.NextDouble() * 2 - 1;
            fft.Input[i] = new System.Numerics.Vector<double>(v);
        }
        fft.Transform();
        for (int l = 0; l < lanes; l++)
        {
            double scale = 0, err = 0;
            for (int k = 0; k <= n / 2; k++)
            {
                double sr = 0, si = 0;
                for (int t = 0; t < n; t++) { double a = -2 * Math.PI * ((long)k * t % n) / n; sr += x[l, t] * Math.Cos(a); si += x[l, t] * Math.Sin(a); }
                err = Math.Max(err, Math.Max(Math.Abs(sr - fft.Re[k][l]), Math.Abs(si - fft.Im[k][l])));
                scale = Math.Max(scale, Math.Sqrt(sr * sr + si * si));
            }
            Assert.True(err <= 1e-12 * n * scale, $"n={n} lane {l}: error {err:E2} (scale {scale:E2})");
        }
    }

    /// <summary>Power (bins k and h−k computed together) is bit for bit Re² + Im² of Transform, for all bins and for
    /// a leading subset (the vocoder's 641 of 961).</summary>
    [Theory]
    [InlineData(400, 201)]
    [InlineData(512, 257)]
    [InlineData(1920, 961)]
    [InlineData(1920, 641)]
    [InlineData(30, 16)] // odd half size
    [InlineData(30, 5)]
    public void PowerIsTransformSquared(int n, int bins)
    {
        var rng = new Random();
        var fft = new RealFft(n);
        for (int i = 0; i < n; i++)
        {
            var v = new double[RealFft.Lanes];
            for (int l = 0; l < v.Length; l++) v[l] = rng.NextDouble() * 2 - 1;
            fft.Input[i] = new System.Numerics.Vector<double>(v);
        }
        var power = new System.Numerics.Vector<double>[bins];
        fft.Power(power, bins);
        fft.Transform();
        for (int k = 0; k < bins; k++)
            Assert.Equal(fft.Re[k] * fft.Re[k] + fft.Im[k] * fft.Im[k], power[k]);
    }

    [Theory]
    [InlineData(400)]
    [InlineData(512)]
    [InlineData(1920)]
    [InlineData(14)]
    [InlineData(32)]  // 16 = 8·2: radix 8 then 2
    [InlineData(128)] // 64 = 8·8: radix 8 only
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

/// <summary>The front end's fused preprocessing passes give bit for bit what the separate steps give.</summary>
public class FusedPreprocessTests
{
    [Theory]
    [InlineData(1, 0.9)] // scaled down to 0.6
    [InlineData(1, 0.4)] // left as it is
    [InlineData(2, 0.9)]
    public void MonoPeakNormalizedEqualsMixThenNormalize(int channels, double amplitude)
    {
        var rng = new Random();
        var samples = new float[channels * 4099];
        for (int i = 0; i < samples.Length; i++) samples[i] = (float)((rng.NextDouble() * 2 - 1) * amplitude);
        var clip = new AudioClip(samples, channels, 48000);
        var want = Preprocess.MonoMix(clip);
        float wantPeak = Preprocess.PeakNormalize(want);
        var (got, peak) = Preprocess.MonoPeakNormalized(clip);
        Assert.Equal(wantPeak, peak);
        Assert.Equal(want, got);
    }

    [Theory]
    [InlineData(0.9)]
    [InlineData(0.003)] // below the 0.01 floor
    public void EnergyNormalizedEqualsInPlace(double amplitude)
    {
        var rng = new Random();
        var x = new float[3001];
        for (int i = 0; i < x.Length; i++) x[i] = (float)((rng.NextDouble() * 2 - 1) * amplitude);
        var before = (float[])x.Clone();
        var got = Preprocess.EnergyNormalized(x);
        Assert.Equal(before, x); // input untouched
        Preprocess.EnergyNormalize(x);
        Assert.Equal(x, got);
    }
}
