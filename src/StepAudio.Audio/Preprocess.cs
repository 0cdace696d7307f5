using System.Buffers;
using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace StepAudio.Audio;

/// <summary>Where trim_silence cut: librosa's non-silent span [S, E) and the padded window the tokenizer keeps.</summary>
public sealed record TrimResult(int S, int E, int NumFrames, int Start, int OutLength, float[] Samples);

/// <summary>The reference's waveform preprocessing (tts.py preprocess_prompt_wav, tokenizer.py preprocess_wav,
/// utils.py trim_silence), in float32 like the reference.</summary>
public static class Preprocess
{
    public const float PeakTarget = 0.6f;
    public const float EnergyNormFloor = 0.01f, EnergyNormScale = 0.999f;
    // librosa.effects.trim(top_db=20, frame_length=512, hop_length=128), then keep 0.05 s left, 0.22 s right, hop 240.
    public const double TrimTopDb = 20;
    public const int TrimFrameLength = 512, TrimHop = 128;
    public const double KeepLeftSeconds = 0.05, KeepRightSeconds = 0.22;
    public const int TrimOutputHop = 240;

    /// <summary>Mean over channels.</summary>
    public static float[] MonoMix(AudioClip clip)
    {
        int n = clip.Frames, c = clip.Channels;
        var mono = new float[n];
        if (c == 1) { clip.Channel(0).CopyTo(mono); return mono; }
        for (int i = 0; i < n; i++)
        {
            double s = 0;
            for (int ch = 0; ch < c; ch++) s += clip.Samples[ch * n + i];
            mono[i] = (float)(s / c);
        }
        return mono;
    }

    /// <summary>MonoMix then PeakNormalize, with the same result, in fewer passes over the samples: a mono clip is
    /// measured where it lies and written once, already scaled. Returns the mono samples and the original peak.</summary>
    public static (float[] Mono, float Peak) MonoPeakNormalized(AudioClip clip)
    {
        if (clip.Channels > 1)
        {
            var mixed = MonoMix(clip);
            return (mixed, PeakNormalize(mixed));
        }
        var src = clip.Channel(0);
        float peak = Peak(src);
        var mono = GC.AllocateUninitializedArray<float>(src.Length); // every element is written below
        if (peak > PeakTarget) DivideThenMultiply(src, mono, peak, PeakTarget);
        else src.CopyTo(mono);
        return (mono, peak);
    }

    /// <summary>EnergyNormalize into a new array, leaving x as it is (one pass instead of copy + normalise).</summary>
    public static float[] EnergyNormalized(ReadOnlySpan<float> x)
    {
        var y = GC.AllocateUninitializedArray<float>(x.Length); // every element is written below
        DivideThenMultiply(x, y, Math.Max(Peak(x), EnergyNormFloor), EnergyNormScale);
        return y;
    }

    public static float Peak(ReadOnlySpan<float> x) => x.IsEmpty ? 0f : Math.Abs(TensorPrimitives.MaxMagnitude(x));

    /// <summary>"Volume normalise": if the peak exceeds 0.6, x = x / peak · 0.6 (in place). Returns the original peak.</summary>
    public static float PeakNormalize(Span<float> x)
    {
        float peak = Peak(x);
        if (peak > PeakTarget)
            DivideThenMultiply(x, peak, PeakTarget);
        return peak;
    }

    /// <summary>x[i] = x[i] / d · m in float, rounding after each operation as the reference does (vectorised).</summary>
    static void DivideThenMultiply(Span<float> x, float d, float m) => DivideThenMultiply(x, x, d, m);

    /// <summary>y[i] = x[i] / d · m (y may be x).</summary>
    static void DivideThenMultiply(ReadOnlySpan<float> x, Span<float> y, float d, float m)
    {
        if (y.Length < x.Length) throw new ArgumentException("output shorter than input", nameof(y));
        int i = 0, w = Vector<float>.Count;
        var dv = new Vector<float>(d); var mv = new Vector<float>(m);
        ref float xs = ref MemoryMarshal.GetReference(x); ref float ys = ref MemoryMarshal.GetReference(y);
        for (; i + w <= x.Length; i += w) ((Vector.LoadUnsafe(ref xs, (nuint)i) / dv) * mv).StoreUnsafe(ref ys, (nuint)i);
        for (; i < x.Length; i++) y[i] = x[i] / d * m;
    }

    /// <summary>x = x / max(peak, 0.01) · 0.999 (in place).</summary>
    public static void EnergyNormalize(Span<float> x)
    {
        float d = Math.Max(Peak(x), EnergyNormFloor);
        DivideThenMultiply(x, d, EnergyNormScale);
    }

    /// <summary>librosa.effects.trim span: frame RMS over zero-padded (centre) 512-sample frames every 128 samples,
    /// non-silent where 20·log10(max(rms,1e-5)) − 20·log10(max(max rms,1e-5)) &gt; −20.</summary>
    public static (int Start, int End) NonSilentSpan(ReadOnlySpan<float> y)
    {
        int n = y.Length, half = TrimFrameLength / 2;
        int frames = 1 + n / TrimHop;
        // prefix sums of y² (double) give each frame's mean square in O(1)
        var prefix = ArrayPool<double>.Shared.Rent(n + 1); // scratch, pooled; elements 0..n are written
        try
        {
            prefix[0] = 0;
            for (int i = 0; i < n; i++) prefix[i + 1] = prefix[i] + (double)y[i] * y[i];
            var ms = GC.AllocateUninitializedArray<double>(frames);
            double maxMs = 0;
            for (int f = 0; f < frames; f++)
            {
                int a = Math.Clamp(f * TrimHop - half, 0, n), b = Math.Clamp(f * TrimHop + half, 0, n);
                ms[f] = (prefix[b] - prefix[a]) / TrimFrameLength;
                maxMs = Math.Max(maxMs, ms[f]);
            }
            const double amin = 1e-10; // (1e-5)²
            double refDb = 10 * Math.Log10(Math.Max(amin, maxMs));
            int first = -1, last = -1;
            for (int f = 0; f < frames; f++)
            {
                if (10 * Math.Log10(Math.Max(amin, ms[f])) - refDb > -TrimTopDb)
                {
                    if (first < 0) first = f;
                    last = f;
                }
            }
            if (first < 0) return (0, 0);
            return (first * TrimHop, Math.Min(n, (last + 1) * TrimHop));
        }
        finally { ArrayPool<double>.Shared.Return(prefix); }
    }

    /// <summary>utils.trim_silence(audio, 16000): cut 0.05 s before the non-silent span (left-pad zeros if that is
    /// before the start) and keep ceil(span/240)·240 + 0.27 s samples (right-pad zeros).</summary>
    public static TrimResult TrimSilence(ReadOnlySpan<float> audio, int sampleRate = 16000)
    {
        var (s, e) = NonSilentSpan(audio);
        int numFrames = (int)Math.Ceiling((e - s) / (double)TrimOutputHop);
        int left = (int)(KeepLeftSeconds * sampleRate);
        int start = s - left;
        int outLen = (int)(numFrames * TrimOutputHop + (KeepLeftSeconds + KeepRightSeconds) * sampleRate);
        var output = GC.AllocateUninitializedArray<float>(outLen); // zeroed below outside the copied span
        // source index for output i is i + start (zeros outside the input)
        long from = Math.Max(0L, start), to = Math.Min((long)audio.Length, (long)start + outLen);
        if (to > from)
        {
            int at = (int)(from - start), count = (int)(to - from);
            output.AsSpan(0, at).Clear();
            audio[(int)from..(int)to].CopyTo(output.AsSpan(at));
            output.AsSpan(at + count).Clear();
        }
        else output.AsSpan().Clear();
        return new TrimResult(s, e, numFrames, start, outLen, output);
    }
}
