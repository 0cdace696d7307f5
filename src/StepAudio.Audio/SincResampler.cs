using System.Collections.Concurrent;
using System.Numerics.Tensors;

namespace StepAudio.Audio;

/// <summary>torchaudio.functional.resample (method "sinc_interp_hann", lowpass_filter_width 6, rolloff 0.99):
/// a polyphase windowed-sinc filter. For each of the (reduced) new_freq output phases i the kernel is
/// k_i[j] = sinc(π·t)·cos²(π·t/12)·base/orig with t = clamp((j − width)/orig − i/new, ±6)·base, base = 0.99·min(orig,new),
/// width = ceil(6·orig/base); output j·new+i is the dot product of k_i with the input zero-padded by width on the left,
/// starting at j·orig; the output length is ceil(new·len/orig). Any pair of rates works (the reference's tokenizer
/// rejects sources below 16 kHz; here they are simply upsampled).</summary>
public static class SincResampler
{
    public const int LowpassFilterWidth = 6;
    public const double Rolloff = 0.99;

    sealed record Kernel(int Orig, int New, int Width, float[][] Phases);
    static readonly ConcurrentDictionary<(int, int), Kernel> Kernels = new();

    public static float[] Resample(ReadOnlySpan<float> input, int origRate, int newRate)
    {
        if (origRate <= 0 || newRate <= 0) throw new ArgumentOutOfRangeException(nameof(origRate), "sample rates must be positive");
        if (origRate == newRate) return input.ToArray();
        var k = Kernels.GetOrAdd((origRate, newRate), key => Build(key.Item1, key.Item2));
        int orig = k.Orig, nw = k.New, width = k.Width, taps = 2 * width + orig;
        long len = input.Length;
        int outLen = (int)((nw * len + orig - 1) / orig);
        // Zero-padded copy: width before, width + orig after (as torch pads before its strided conv1d).
        var padded = new float[input.Length + 2 * width + orig];
        input.CopyTo(padded.AsSpan(width));
        var output = new float[outLen];
        int blocks = (outLen + nw - 1) / nw;
        for (int j = 0; j < blocks; j++)
        {
            var window = padded.AsSpan(j * orig, taps);
            int baseIdx = j * nw;
            int phases = Math.Min(nw, outLen - baseIdx);
            for (int i = 0; i < phases; i++) output[baseIdx + i] = TensorPrimitives.Dot(window, k.Phases[i]);
        }
        return output;
    }

    static Kernel Build(int origRate, int newRate)
    {
        int g = Gcd(origRate, newRate);
        int orig = origRate / g, nw = newRate / g;
        double baseFreq = Math.Min(orig, nw) * Rolloff;
        int width = (int)Math.Ceiling(LowpassFilterWidth * orig / baseFreq);
        double scale = baseFreq / orig;
        var phases = new float[nw][];
        for (int i = 0; i < nw; i++)
        {
            var row = phases[i] = new float[2 * width + orig];
            for (int j = 0; j < row.Length; j++)
            {
                double t = (-(double)i / nw + (double)(j - width) / orig) * baseFreq;
                t = Math.Clamp(t, -LowpassFilterWidth, LowpassFilterWidth);
                double c = Math.Cos(t * Math.PI / LowpassFilterWidth / 2);
                double window = c * c;
                t *= Math.PI;
                double sinc = t == 0 ? 1.0 : Math.Sin(t) / t;
                row[j] = (float)(sinc * window * scale);
            }
        }
        return new Kernel(orig, nw, width, phases);
    }

    static int Gcd(int a, int b) { while (b != 0) (a, b) = (b, a % b); return a; }
}
