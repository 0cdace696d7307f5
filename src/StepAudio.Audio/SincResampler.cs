using System.Buffers;
using System.Collections.Concurrent;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

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

    /// <summary>Phase i's non-zero taps (the Hann window is 0 beyond ±6 zero crossings, so most of the 2·width + orig
    /// taps of a phase are zero when orig is large): Coef[i][t] multiplies input Tap[i][t] + j·orig − width of output
    /// block j; Offset[i][t] is where that sample sits in the decimated layout (see Resample).</summary>
    sealed record Kernel(int Orig, int New, int Width, float[][] Coef, int[][] Tap);
    static readonly ConcurrentDictionary<(int, int), Kernel> Kernels = new();

    public static float[] Resample(ReadOnlySpan<float> input, int origRate, int newRate)
    {
        if (origRate <= 0 || newRate <= 0) throw new ArgumentOutOfRangeException(nameof(origRate), "sample rates must be positive");
        if (origRate == newRate) return input.ToArray();
        var k = Kernels.GetOrAdd((origRate, newRate), key => Build(key.Item1, key.Item2));
        int orig = k.Orig, nw = k.New, width = k.Width, taps = 2 * width + orig;
        long len = input.Length;
        int outLen = (int)((nw * len + orig - 1) / orig);
        int blocks = (outLen + nw - 1) / nw; // output j·nw + i, i < nw
        // Decimated copy of the zero-padded input (width zeros before, as torch pads before its strided conv1d),
        // made one chunk of blocks at a time so that it is still in cache when the dot products read it: for the
        // chunk from block j0, stream r holds padded[(j0 + u)·orig + r] at r·S + u, so the sample tap t of block
        // j0 + j needs, padded[(j0 + j)·orig + t], is at (t mod orig)·S + t/orig + j — consecutive blocks read
        // consecutive floats and the dot products of a vector's worth of blocks run side by side, one per lane.
        // With several phases the chunk is smaller, so that all phases' outputs stay in cache while they interleave.
        int chunk = Math.Min(nw == 1 ? 8192 : Math.Max(Group, 16384 / nw / Group * Group), (blocks + Group - 1) / Group * Group);
        int S = chunk + taps / orig + Group + 1;
        var dec = ArrayPool<float>.Shared.Rent(orig * S); // scratch: every element is written per chunk
        try
        {
            var output = GC.AllocateUninitializedArray<float>(outLen); // every element is written below
            var acc = new float[chunk + Group];
            var off = new int[nw][];
            for (int i = 0; i < nw; i++)
            {
                var tap = k.Tap[i];
                off[i] = new int[tap.Length];
                for (int t = 0; t < tap.Length; t++) off[i][t] = tap[t] % orig * S + tap[t] / orig;
            }
            for (int j0 = 0; j0 < blocks; j0 += chunk)
            {
                int nb = Math.Min(chunk, blocks - j0);
                Decimate(input, width, orig, S, j0, dec);
                for (int i = 0; i < nw; i++)
                {
                    DotBlocks(dec, k.Coef[i], off[i], acc, nb);
                    int end = Math.Min(nb, (outLen - i + nw - 1) / nw - j0); // blocks whose phase i is in range
                    if (nw == 1) acc.AsSpan(0, end).CopyTo(output.AsSpan(j0));
                    else for (int j = 0; j < end; j++) output[(j0 + j) * nw + i] = acc[j];
                }
            }
            return output;
        }
        finally { ArrayPool<float>.Shared.Return(dec); }
    }

    /// <summary>dec[r·S + u] = padded[(j0 + u)·orig + r] for u &lt; S, padded being the input with width zeros in front
    /// and zeros after.</summary>
    static void Decimate(ReadOnlySpan<float> input, int width, int orig, int S, int j0, float[] dec)
    {
        int len = input.Length;
        ref float src = ref MemoryMarshal.GetReference(input);
        ref float d = ref MemoryMarshal.GetArrayDataReference(dec);
        for (int u = 0; u < S; u++)
        {
            long b = (long)(j0 + u) * orig - width;
            if (b >= 0 && b + orig <= len)
                for (int r = 0; r < orig; r++) Unsafe.Add(ref d, r * S + u) = Unsafe.Add(ref src, (int)b + r);
            else
                for (int r = 0; r < orig; r++) { long x = b + r; dec[r * S + u] = x >= 0 && x < len ? input[(int)x] : 0f; }
        }
    }

    /// <summary>Blocks per step of DotBlocks: four vectors (of 16 floats where AVX-512 runs, else Vector&lt;float&gt;).</summary>
    static readonly int Group = 4 * (Vector512.IsHardwareAccelerated ? Vector512<float>.Count : Vector<float>.Count);

    /// <summary>acc[j] = Σ_t coef[t]·dec[off[t] + j] for j &lt; blocks (rounded up to whole groups, which acc must hold),
    /// four vectors of blocks at a time so that four independent sums hide the multiply-add latency. Every lane sums
    /// the same taps in the same order whatever the vector width, so the result does not depend on it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void DotBlocks(float[] dec, float[] coef, int[] off, float[] acc, int blocks)
    {
        if (Vector512.IsHardwareAccelerated) DotBlocks512(dec, coef, off, acc, blocks);
        else DotBlocksVector(dec, coef, off, acc, blocks);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void DotBlocksVector(float[] dec, float[] coef, int[] off, float[] acc, int blocks)
    {
        int vl = Vector<float>.Count, nt = coef.Length;
        ref float d = ref MemoryMarshal.GetArrayDataReference(dec);
        ref float a = ref MemoryMarshal.GetArrayDataReference(acc);
        for (int j = 0; j < blocks; j += 4 * vl)
        {
            Vector<float> s0 = default, s1 = default, s2 = default, s3 = default;
            for (int t = 0; t < nt; t++)
            {
                var c = new Vector<float>(coef[t]);
                ref float p = ref Unsafe.Add(ref d, off[t] + j);
                s0 = Vector.FusedMultiplyAdd(c, Vector.LoadUnsafe(ref p), s0);
                s1 = Vector.FusedMultiplyAdd(c, Vector.LoadUnsafe(ref p, (nuint)vl), s1);
                s2 = Vector.FusedMultiplyAdd(c, Vector.LoadUnsafe(ref p, (nuint)(2 * vl)), s2);
                s3 = Vector.FusedMultiplyAdd(c, Vector.LoadUnsafe(ref p, (nuint)(3 * vl)), s3);
            }
            s0.StoreUnsafe(ref a, (nuint)j); s1.StoreUnsafe(ref a, (nuint)(j + vl));
            s2.StoreUnsafe(ref a, (nuint)(j + 2 * vl)); s3.StoreUnsafe(ref a, (nuint)(j + 3 * vl));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void DotBlocks512(float[] dec, float[] coef, int[] off, float[] acc, int blocks)
    {
        const int vl = 16;
        int nt = coef.Length;
        ref float d = ref MemoryMarshal.GetArrayDataReference(dec);
        ref float a = ref MemoryMarshal.GetArrayDataReference(acc);
        for (int j = 0; j < blocks; j += 4 * vl)
        {
            Vector512<float> s0 = default, s1 = default, s2 = default, s3 = default;
            for (int t = 0; t < nt; t++)
            {
                var c = Vector512.Create(coef[t]);
                ref float p = ref Unsafe.Add(ref d, off[t] + j);
                s0 = Vector512.FusedMultiplyAdd(c, Vector512.LoadUnsafe(ref p), s0);
                s1 = Vector512.FusedMultiplyAdd(c, Vector512.LoadUnsafe(ref p, vl), s1);
                s2 = Vector512.FusedMultiplyAdd(c, Vector512.LoadUnsafe(ref p, 2 * vl), s2);
                s3 = Vector512.FusedMultiplyAdd(c, Vector512.LoadUnsafe(ref p, 3 * vl), s3);
            }
            s0.StoreUnsafe(ref a, (nuint)j); s1.StoreUnsafe(ref a, (nuint)(j + vl));
            s2.StoreUnsafe(ref a, (nuint)(j + 2 * vl)); s3.StoreUnsafe(ref a, (nuint)(j + 3 * vl));
        }
    }

    static Kernel Build(int origRate, int newRate)
    {
        int g = Gcd(origRate, newRate);
        int orig = origRate / g, nw = newRate / g;
        double baseFreq = Math.Min(orig, nw) * Rolloff;
        int width = (int)Math.Ceiling(LowpassFilterWidth * orig / baseFreq);
        double scale = baseFreq / orig;
        var coef = new float[nw][]; var taps = new int[nw][];
        var row = new float[2 * width + orig];
        for (int i = 0; i < nw; i++)
        {
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
            int first = 0, last = row.Length - 1;
            while (first < last && row[first] == 0) first++;
            while (last > first && row[last] == 0) last--;
            coef[i] = row[first..(last + 1)];
            taps[i] = Enumerable.Range(first, last - first + 1).ToArray();
        }
        return new Kernel(orig, nw, width, coef, taps);
    }

    static int Gcd(int a, int b) { while (b != 0) (a, b) = (b, a % b); return a; }
}
