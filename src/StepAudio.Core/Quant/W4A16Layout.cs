using System.Runtime.InteropServices;

namespace StepAudio.Quant;

/// <summary>One linear weight W[N out, K in] in the W4A16 kernel layout (stepaudio_native.h, W4A16 section), on the
/// host: every checkpoint format is repacked into this at load, losslessly.
///   QWeight [N, K/8]: word j of row n holds the codes c (0..15) of k = 8j..8j+7, element e at nibble NibbleOf[e];
///   Scales  [N, K/128]: bf16 bits, or fp16 bits when Fp16Scales (AutoAWQ); Zeros [N, K/128] zero codes, or null
///   for symmetric weights (z = 8). w = (c − z) · s.</summary>
public sealed record W4A16Weight(int N, int K, uint[] QWeight, ushort[] Scales, byte[]? Zeros, bool Fp16Scales)
{
    public const int GroupSize = 128;
    /// <summary>Nibble position of element e of a word: the 0,2,4,6,1,3,5,7 interleave, so (q >> 4i) &amp; 0x000f000f
    /// holds elements 2i and 2i+1 in the two halves of a packed pair (the lop3 int4 → bf16 conversion).</summary>
    public static ReadOnlySpan<int> NibbleOf => [0, 4, 1, 5, 2, 6, 3, 7];
    /// <summary>AutoAWQ GEMM order: nibble i of a word holds output column 8j + AwqOrder[i].</summary>
    public static ReadOnlySpan<int> AwqOrder => [0, 2, 4, 6, 1, 3, 5, 7];

    public int Groups => K / GroupSize;
    public int Flags => Fp16Scales ? 1 : 0; // SA_W4A16_FP16_SCALES

    /// <summary>Code of element (n, k).</summary>
    public int Code(int n, int k) => (int)(QWeight[(long)n * (K / 8) + k / 8] >> (4 * NibbleOf[k % 8])) & 15;

    /// <summary>Packs 8 codes (k = 8j..8j+7) into one kernel-layout word.</summary>
    public static uint PackKernelWord(ReadOnlySpan<byte> codes)
    {
        uint w = 0;
        for (int e = 0; e < 8; e++) w |= (uint)(codes[e] & 15) << (4 * NibbleOf[e]);
        return w;
    }

    /// <summary>A word packed sequentially (element e at bits 4e, compressed-tensors / GPTQ) → kernel layout. The
    /// kernel holds the even elements 0,2,4,6 in nibbles 0..3 and the odd ones in nibbles 4..7 (NibbleOf), so each half
    /// is its four nibbles compacted: two shift-or-mask steps instead of eight nibble moves (a full model repacks
    /// 0.4 G words at load).</summary>
    public static uint SequentialToKernel(uint word)
    {
        static uint Compact(uint x)  // nibbles at bits 0, 8, 16, 24 → bits 0, 4, 8, 12
        {
            x = (x | x >> 4) & 0x00FF00FFu;
            return (x | x >> 8) & 0x0000FFFFu;
        }
        return Compact(word & 0x0F0F0F0Fu) | Compact(word >> 4 & 0x0F0F0F0Fu) << 16;
    }

    /// <summary>compressed-tensors pack-quantized: packed I32 [N, K/8] (sequential nibbles, code = q + 8), scales
    /// [N, K/G] (bf16 or fp16 bits), zero codes [N, K/G] (already unpacked, zp + 8) or null when symmetric.</summary>
    public static W4A16Weight FromCompressedTensors(int n, int k, ReadOnlySpan<int> packed, ushort[] scales, byte[]? zeros, bool fp16Scales)
    {
        CheckShape(n, k);
        var q = new uint[(long)n * k / 8];
        MemoryMarshal.Cast<int, uint>(packed).CopyTo(q);
        const int chunk = 1 << 16;  // words per work item, on every core
        Parallel.For(0, (q.Length + chunk - 1) / chunk, c =>
        {
            var words = q.AsSpan(c * chunk, Math.Min(chunk, q.Length - c * chunk));
            for (int i = 0; i < words.Length; i++) words[i] = SequentialToKernel(words[i]);
        });
        return new W4A16Weight(n, k, q, scales, zeros, fp16Scales);
    }

    /// <summary>AutoAWQ GEMM: qweight I32 [K, N/8] packed along N in AwqOrder (unsigned codes), qzeros I32 [K/G, N/8]
    /// the same way, scales F16 [K/G, N].</summary>
    public static W4A16Weight FromAutoAwq(int n, int k, int[] qweight, int[] qzeros, ushort[] scalesKn)
    {
        CheckShape(n, k);
        if (n % 8 != 0) throw new ArgumentException($"AutoAWQ packs N along words of 8: N={n} is not a multiple of 8");
        int nw = n / 8, kw = k / 8, groups = k / GroupSize;
        var q = new uint[(long)n * kw];
        Parallel.For(0, kw, j =>
        {
            Span<int> order = stackalloc int[8];
            AwqOrder.CopyTo(order);
            for (int e = 0; e < 8; e++)
            {
                int kk = 8 * j + e, shift = 4 * NibbleOf[e];
                for (int c = 0; c < nw; c++)
                {
                    uint word = (uint)qweight[(long)kk * nw + c];
                    for (int i = 0; i < 8; i++)
                        q[(long)(8 * c + order[i]) * kw + j] |= ((word >> (4 * i)) & 15u) << shift;
                }
            }
        });
        var zeros = new byte[(long)n * groups];
        var scales = new ushort[(long)n * groups];
        for (int g = 0; g < groups; g++)
            for (int c = 0; c < nw; c++)
            {
                uint word = (uint)qzeros[g * nw + c];
                for (int i = 0; i < 8; i++) zeros[(long)(8 * c + AwqOrder[i]) * groups + g] = (byte)((word >> (4 * i)) & 15u);
            }
        for (int g = 0; g < groups; g++)
            for (int col = 0; col < n; col++) scales[(long)col * groups + g] = scalesKn[(long)g * n + col];
        return new W4A16Weight(n, k, q, scales, zeros, Fp16Scales: true);
    }

    /// <summary>Weights sharing K stacked along N (fused QKV, gate+up). Symmetric parts get explicit zero code 8
    /// when another part is asymmetric.</summary>
    public static W4A16Weight Concat(IReadOnlyList<W4A16Weight> parts)
    {
        if (parts.Count == 1) return parts[0];
        int k = parts[0].K;
        bool fp16 = parts[0].Fp16Scales;
        foreach (var p in parts)
        {
            if (p.K != k) throw new ArgumentException($"cannot fuse W4A16 weights with in-features {p.K} and {k}");
            if (p.Fp16Scales != fp16) throw new ArgumentException("cannot fuse W4A16 weights with fp16 and bf16 scales");
        }
        bool anyZeros = parts.Any(p => p.Zeros != null);
        var q = new uint[parts.Sum(p => (long)p.QWeight.Length)];
        var s = new ushort[parts.Sum(p => (long)p.Scales.Length)];
        var z = anyZeros ? new byte[s.Length] : null;
        long qAt = 0, sAt = 0;
        foreach (var p in parts)
        {
            p.QWeight.CopyTo(q.AsSpan((int)qAt));
            p.Scales.CopyTo(s.AsSpan((int)sAt));
            if (z != null)
            {
                if (p.Zeros != null) p.Zeros.CopyTo(z.AsSpan((int)sAt));
                else z.AsSpan((int)sAt, p.Scales.Length).Fill(8);  // symmetric part: the zero code of a signed int4
            }
            qAt += p.QWeight.Length;
            sAt += p.Scales.Length;
        }
        return new W4A16Weight(parts.Sum(p => p.N), k, q, s, z, fp16);
    }

    static void CheckShape(int n, int k)
    {
        if (n <= 0 || k <= 0 || k % GroupSize != 0)
            throw new ArgumentException($"W4A16 needs N > 0 and K a multiple of {GroupSize}; got [{n}, {k}]");
    }
}
