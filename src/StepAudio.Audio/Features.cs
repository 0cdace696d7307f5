using System.Buffers;
using System.Collections.Concurrent;
using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace StepAudio.Audio;

/// <summary>Whisper log-mel (openai-whisper log_mel_spectrogram, n_mels 128): the vq06 tokenizer's input.</summary>
public static class WhisperLogMel
{
    public const int SampleRate = 16000, NFft = 400, Hop = 160, NMels = 128;
    public const double PowerFloor = 1e-10, DynamicRangeLog10 = 8.0;
    /// <summary>vq06 feeds ≤ 30 s chunks and drops chunks shorter than this.</summary>
    public const int ChunkSamples = 480000, MinChunkSamples = 480;

    static readonly Lazy<MelFilterBank> Filters = new(() => MelFilterBank.Slaney(SampleRate, NFft, NMels, 0, SampleRate / 2.0));

    /// <summary>STFT (periodic Hann 400, hop 160, centre reflect-pad 200), |X|², last frame dropped, Slaney mel,
    /// log10(max(·,1e-10)), max(·, max−8), (·+4)/4. Returns [128, len/160] (mel-major, as whisper).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static FeatureMatrix Compute(ReadOnlySpan<float> audio16k)
    {
        if (audio16k.Length <= NFft / 2)
            throw new ArgumentException($"whisper log-mel needs more than {NFft / 2} samples, got {audio16k.Length}", nameof(audio16k));
        int frames = audio16k.Length / Hop; // 1 + len/hop frames, the last one dropped
        // padded signal and double log-mel are scratch: pooled, so 30 s does not fault in fresh pages every call
        var paddedBuf = ArrayPool<float>.Shared.Rent(audio16k.Length + NFft);
        var logD = ArrayPool<double>.Shared.Rent(NMels * frames);
        try
        {
            var padded = paddedBuf.AsSpan(0, audio16k.Length + NFft);
            Dsp.ReflectPad(audio16k, NFft / 2, padded);
            var window = Window.Value;
            var fft = new RealFft(NFft);
            var bank = Filters.Value;
            int lanes = RealFft.Lanes;
            var power = new Vector<double>[fft.Bins];
            var mel = new Vector<double>[NMels];
            var floorV = new Vector<double>(PowerFloor);
            double max = double.NegativeInfinity;
            for (int t0 = 0; t0 < frames; t0 += lanes) // Lanes frames per transform
            {
                int used = Math.Min(lanes, frames - t0);
                var x = fft.Input;
                SimdLanes.SetFrames(x, padded, t0, Hop, used, NFft, window); // windowed on the way in
                fft.Power(power, power.Length);
                bank.Apply(power, mel);
                for (int m = 0; m < NMels; m++)
                {
                    var v = Vector.Log(Vector.Max(mel[m], floorV)) * InvLn10;
                    for (int l = 0; l < used; l++)
                    {
                        logD[m * frames + t0 + l] = v[l];
                        if (v[l] > max) max = v[l];
                    }
                }
            }
            double floor = max - DynamicRangeLog10;
            var log = GC.AllocateUninitializedArray<float>(NMels * frames); // every element is written
            for (int i = 0; i < log.Length; i++) log[i] = (float)((Math.Max(logD[i], floor) + 4.0) / 4.0);
            return new FeatureMatrix(NMels, frames, log);
        }
        finally { ArrayPool<float>.Shared.Return(paddedBuf); ArrayPool<double>.Shared.Return(logD); }
    }

    const double InvLn10 = 0.43429448190325182765; // log10(x) = ln(x)/ln(10)
    static readonly Lazy<double[]> Window = new(() => Dsp.HannPeriodic(NFft));

    /// <summary>What get_vq06_code feeds the tokenizer: one log-mel per ≤ 30 s chunk (chunks under 480 samples dropped).</summary>
    public static List<FeatureMatrix> ComputeChunks(ReadOnlySpan<float> audio16k)
    {
        var list = new List<FeatureMatrix>();
        for (int s = 0; s < audio16k.Length; s += ChunkSamples)
        {
            var chunk = audio16k.Slice(s, Math.Min(ChunkSamples, audio16k.Length - s));
            if (chunk.Length >= MinChunkSamples) list.Add(Compute(chunk));
        }
        return list;
    }
}

/// <summary>Options of torchaudio.compliance.kaldi.fbank that the two users (speaker encoder, Paraformer) set.</summary>
public sealed record KaldiFbankOptions
{
    public int NumMelBins { get; init; } = 80;
    public int SampleRate { get; init; } = 16000;
    public int FrameLength { get; init; } = 400; // 25 ms
    public int FrameShift { get; init; } = 160;  // 10 ms
    public int PaddedLength { get; init; } = 512; // round_to_power_of_two
    public bool Hamming { get; init; } // false: povey (Hann^0.85)
    public double Preemphasis { get; init; } = 0.97;
    public double LowFreq { get; init; } = 20;
    public double HighFreq { get; init; } = 0; // ≤ 0: relative to Nyquist
    /// <summary>Samples are multiplied by this first (FunASR feeds ×32768).</summary>
    public float InputScale { get; init; } = 1f;
    /// <summary>Gaussian dither amplitude; 0 (default here) is deterministic. The reference's Paraformer uses 1.0 with
    /// unseeded noise, which no port can reproduce bit-wise.</summary>
    public double Dither { get; init; }
    public int DitherSeed { get; init; } = 1234;

    /// <summary>CAM++ speaker encoder: povey window, float input, no dither.</summary>
    public static KaldiFbankOptions Speaker { get; } = new();
    /// <summary>FunASR WavFrontendOnline: Hamming window, input ×32768, dither off by default.</summary>
    public static KaldiFbankOptions Paraformer { get; } = new() { Hamming = true, InputScale = 32768f };
}

/// <summary>torchaudio.compliance.kaldi.fbank with snip_edges, DC removal, pre-emphasis, power spectrum, log mel
/// floored at float32 epsilon.</summary>
public sealed class KaldiFbank
{
    public const double LogFloor = 1.1920928955078125e-07; // torch.finfo(torch.float32).eps

    readonly KaldiFbankOptions _o;
    readonly double[] _window;
    readonly MelFilterBank _bank;
    readonly RealFft _fft;
    readonly Vector<double>[] _power, _mel;
    readonly Random _rng;

    public KaldiFbank(KaldiFbankOptions options)
    {
        if (options.FrameLength < 1 || options.PaddedLength < options.FrameLength)
            throw new ArgumentException($"fbank frame length {options.FrameLength} must be positive and fit the FFT length {options.PaddedLength}", nameof(options));
        _o = options;
        (_window, _bank) = Tables.GetOrAdd(options, static o => (MakeWindow(o), MelFilterBank.Kaldi(o.NumMelBins, o.PaddedLength, o.SampleRate, o.LowFreq, o.HighFreq)));
        _fft = new RealFft(options.PaddedLength);
        _power = new Vector<double>[_fft.Bins];
        _mel = new Vector<double>[options.NumMelBins];
        _rng = new Random(options.DitherSeed);
    }

    /// <summary>Window and filter bank per options (read-only once made; the Paraformer front end makes a KaldiFbank
    /// per utterance).</summary>
    static readonly ConcurrentDictionary<KaldiFbankOptions, (double[] Window, MelFilterBank Bank)> Tables = new();

    static double[] MakeWindow(KaldiFbankOptions o)
    {
        int n = o.FrameLength;
        var w = new double[n];
        for (int i = 0; i < n; i++)
        {
            double c = Math.Cos(2 * Math.PI * i / (n - 1)); // symmetric (periodic=False) windows
            w[i] = o.Hamming ? 0.54 - 0.46 * c : Math.Pow(0.5 - 0.5 * c, 0.85);
        }
        return w;
    }

    public KaldiFbankOptions Options => _o;

    /// <summary>Frames with snip_edges: 1 + (len − 400)/160, or 0 when shorter than one window.</summary>
    public int FrameCount(int samples) => samples < _o.FrameLength ? 0 : 1 + (samples - _o.FrameLength) / _o.FrameShift;

    /// <summary>[frames, NumMelBins] log mel energies.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public FeatureMatrix Compute(ReadOnlySpan<float> wave)
    {
        int frames = FrameCount(wave.Length), bins = _o.NumMelBins, len = _o.FrameLength;
        var output = GC.AllocateUninitializedArray<float>(frames * bins); // every element is written below
        int lanes = RealFft.Lanes;
        var x = _fft.Input; // the frames, one per lane; all the per-frame arithmetic below runs on Lanes frames at once
        var frameD = new double[len];
        // float product, as torch scales the float32 waveform
        ReadOnlySpan<float> scaled = wave;
        if (_o.InputScale != 1f)
        {
            var copy = GC.AllocateUninitializedArray<float>(wave.Length);
            TensorPrimitives.Multiply(wave, _o.InputScale, copy);
            scaled = copy;
        }
        var floorV = new Vector<double>(LogFloor);
        for (int t0 = 0; t0 < frames; t0 += lanes)
        {
            int used = Math.Min(lanes, frames - t0);
            if (_o.Dither == 0) SimdLanes.SetFrames(x, scaled, t0, _o.FrameShift, used, len);
            else
                for (int l = 0; l < lanes; l++)
                {
                    if (l >= used) { SimdLanes.Clear(x, l); continue; }
                    var w = scaled.Slice((t0 + l) * _o.FrameShift, len);
                    for (int i = 0; i < len; i++) frameD[i] = w[i] + _o.Dither * Gaussian(); // frame by frame, as torch draws
                    SimdLanes.Set(x, l, frameD);
                }
            ref var xs = ref MemoryMarshal.GetArrayDataReference(x);
            ref double win = ref MemoryMarshal.GetArrayDataReference(_window);
            var mean = Vector<double>.Zero;
            for (int i = 0; i < len; i++) mean += Unsafe.Add(ref xs, i);
            mean /= len;
            // DC removal, pre-emphasis (first sample against itself: replicate padding) and window in one pass from
            // the end backwards; the same operations as three separate passes
            double pre = _o.Preemphasis;
            var next = Unsafe.Add(ref xs, len - 1) - mean;
            for (int i = len - 1; i > 0; i--)
            {
                var prev = Unsafe.Add(ref xs, i - 1) - mean;
                Unsafe.Add(ref xs, i) = (next - prev * pre) * Unsafe.Add(ref win, i);
                next = prev;
            }
            var x0 = Unsafe.Add(ref xs, 0) - mean;
            Unsafe.Add(ref xs, 0) = (x0 - x0 * pre) * win;
            Array.Clear(x, len, x.Length - len);
            _fft.Power(_power, _power.Length);
            _bank.Apply(_power, _mel);
            for (int m = 0; m < bins; m++)
            {
                var v = Vector.Log(Vector.Max(_mel[m], floorV));
                for (int l = 0; l < used; l++) output[(t0 + l) * bins + m] = (float)v[l];
            }
        }
        return new FeatureMatrix(frames, bins, output);
    }

    double Gaussian()
    {
        double u1 = 1.0 - _rng.NextDouble(), u2 = _rng.NextDouble();
        return Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
    }

    /// <summary>The CAM++ input: fbank (povey, float input, no dither) minus its per-utterance mean over time.</summary>
    public static FeatureMatrix SpeakerFeatures(ReadOnlySpan<float> audio16k)
    {
        var f = new KaldiFbank(KaldiFbankOptions.Speaker).Compute(audio16k);
        if (f.Rows == 0) throw new ArgumentException($"speaker fbank needs at least 400 samples at 16 kHz, got {audio16k.Length}", nameof(audio16k));
        var mean = new double[f.Cols];
        for (int t = 0; t < f.Rows; t++)
        {
            var row = f.Data.AsSpan(t * f.Cols, f.Cols);
            for (int m = 0; m < row.Length; m++) mean[m] += row[m];
        }
        for (int m = 0; m < f.Cols; m++) mean[m] /= f.Rows;
        for (int t = 0; t < f.Rows; t++)
        {
            var row = f.Data.AsSpan(t * f.Cols, f.Cols);
            for (int m = 0; m < row.Length; m++) row[m] = (float)(row[m] - mean[m]);
        }
        return f;
    }
}

/// <summary>The vocoder prompt mel (matcha mel_spectrogram as configured for CosyVoice-300M-25Hz): 24 kHz.</summary>
public static class VocoderMel
{
    public const int SampleRate = 24000, NFft = 1920, Hop = 480, NMels = 80;
    public const double FMin = 0, FMax = 8000, MagnitudeEps = 1e-9, LogFloor = 1e-5;
    const int Pad = (NFft - Hop) / 2; // 720

    static readonly Lazy<MelFilterBank> Filters = new(() => MelFilterBank.Slaney(SampleRate, NFft, NMels, FMin, FMax));

    /// <summary>Reflect-pad 720, STFT (periodic Hann 1920, hop 480, no centring), sqrt(|X|²+1e-9), Slaney mel 80 bins
    /// 0–8 kHz, ln(max(·,1e-5)). Returns [frames, 80], 50 frames per second.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static FeatureMatrix Compute(ReadOnlySpan<float> audio24k)
    {
        if (audio24k.Length <= Pad)
            throw new ArgumentException($"vocoder mel needs more than {Pad} samples at 24 kHz, got {audio24k.Length}", nameof(audio24k));
        int paddedLength = audio24k.Length + 2 * Pad;
        var paddedBuf = ArrayPool<float>.Shared.Rent(paddedLength); // scratch, pooled
        try
        {
            var padded = paddedBuf.AsSpan(0, paddedLength);
            Dsp.ReflectPad(audio24k, Pad, padded);
            int frames = (paddedLength - NFft) / Hop + 1;
            var window = Window.Value;
            var fft = new RealFft(NFft);
            var bank = Filters.Value;
            int lanes = RealFft.Lanes;
            var mag = new Vector<double>[fft.Bins]; var mel = new Vector<double>[NMels];
            int usedBins = bank.UsedBins; // the bank stops at 8 kHz: the bins above are never read
            var eps = new Vector<double>(MagnitudeEps); var floorV = new Vector<double>(LogFloor);
            var output = GC.AllocateUninitializedArray<float>(frames * NMels); // every element is written below
            for (int t0 = 0; t0 < frames; t0 += lanes) // Lanes frames per transform
            {
                int used = Math.Min(lanes, frames - t0);
                var x = fft.Input;
                SimdLanes.SetFrames(x, padded, t0, Hop, used, NFft, window); // windowed on the way in
                fft.Power(mag, usedBins);
                for (int k = 0; k < usedBins; k++) mag[k] = Vector.SquareRoot(mag[k] + eps);
                bank.Apply(mag, mel);
                for (int m = 0; m < NMels; m++)
                {
                    var v = Vector.Log(Vector.Max(mel[m], floorV));
                    for (int l = 0; l < used; l++) output[(t0 + l) * NMels + m] = (float)v[l];
                }
            }
            return new FeatureMatrix(frames, NMels, output);
        }
        finally { ArrayPool<float>.Shared.Return(paddedBuf); }
    }

    static readonly Lazy<double[]> Window = new(() => Dsp.HannPeriodic(NFft));
}

/// <summary>Small shared DSP helpers.</summary>
public static class Dsp
{
    /// <summary>torch.hann_window(n) (periodic): 0.5 − 0.5·cos(2πi/n).</summary>
    public static double[] HannPeriodic(int n)
    {
        var w = new double[n];
        for (int i = 0; i < n; i++) w[i] = 0.5 - 0.5 * Math.Cos(2 * Math.PI * i / n);
        return w;
    }

    /// <summary>Reflect padding (edge sample not repeated), as torch's mode="reflect"; needs pad &lt; length.</summary>
    public static float[] ReflectPad(ReadOnlySpan<float> x, int pad)
    {
        var y = GC.AllocateUninitializedArray<float>(x.Length + 2 * pad); // every element is written below
        ReflectPad(x, pad, y);
        return y;
    }

    /// <summary>ReflectPad into y[0 .. x.Length + 2·pad) (a pooled buffer may be longer).</summary>
    public static void ReflectPad(ReadOnlySpan<float> x, int pad, Span<float> y)
    {
        if (pad >= x.Length) throw new ArgumentException($"reflect padding of {pad} needs more than {pad} samples, got {x.Length}");
        if (y.Length < x.Length + 2 * pad) throw new ArgumentException($"padded buffer holds {y.Length} samples, needs {x.Length + 2 * pad}", nameof(y));
        x.CopyTo(y[pad..]);
        for (int i = 1; i <= pad; i++)
        {
            y[pad - i] = x[i];
            y[pad + x.Length - 1 + i] = x[x.Length - 1 - i];
        }
    }
}
