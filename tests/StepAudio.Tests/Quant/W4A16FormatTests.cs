using System.Runtime.InteropServices;
using StepAudio.Native;
using StepAudio.Quant;

namespace StepAudio.Tests.Quant;

/// <summary>Dequantization exactness of every W4A16 source format, on crafted and random data, through the repack
/// into the kernel layout and the native CPU reference. Expected values are computed here directly from the
/// published format descriptions (quant-kernels.md §2.3–2.6), independently of the repacking code.</summary>
public class W4A16FormatTests
{
    static readonly int[] AwqOrder = [0, 2, 4, 6, 1, 3, 5, 7];

    static float Bf16(ushort b) => BitConverter.Int32BitsToSingle(b << 16);
    static ushort ToBf16(float f) => (ushort)((BitConverter.SingleToUInt32Bits(f) + 0x7fffu + ((BitConverter.SingleToUInt32Bits(f) >> 16) & 1u)) >> 16);

    /// <summary>The native CPU reference dequantization of a kernel-layout weight.</summary>
    internal static unsafe float[] Dequant(W4A16Weight w)
    {
        var output = new float[(long)w.N * w.K];
        fixed (uint* q = w.QWeight) fixed (ushort* s = w.Scales) fixed (byte* z = w.Zeros) fixed (float* o = output)
            NativeException.Check(NativeMethods.CpuW4A16Dequant((nint)q, (nint)s, (nint)z, w.Flags, w.N, w.K, (nint)o));
        return output;
    }

    /// <summary>compressed-tensors packing written from §2.3: element 8j+i at bits 4i of word j, code q + 8.</summary>
    static int[] PackSequential(int[,] codes)
    {
        int n = codes.GetLength(0), k = codes.GetLength(1);
        var packed = new int[n * k / 8];
        for (int r = 0; r < n; r++)
            for (int c = 0; c < k; c++) packed[r * (k / 8) + c / 8] |= codes[r, c] << (4 * (c % 8));
        return packed;
    }

    [Fact]
    public void CraftedCompressedTensorsSymmetricIsExact()
    {
        const int n = 3, k = 256;
        var codes = new int[n, k];
        for (int r = 0; r < n; r++) for (int c = 0; c < k; c++) codes[r, c] = (r * 7 + c * 3 + c / 8) % 16; // every code, every nibble slot
        var scales = new ushort[] { ToBf16(0.5f), ToBf16(-0.125f), ToBf16(3.0f), ToBf16(1e-3f), ToBf16(2.0f), ToBf16(0.75f) };
        var w = W4A16Weight.FromCompressedTensors(n, k, PackSequential(codes), scales, null, fp16Scales: false);
        var d = Dequant(w);
        for (int r = 0; r < n; r++)
            for (int c = 0; c < k; c++)
                Assert.Equal((codes[r, c] - 8) * Bf16(scales[r * 2 + c / 128]), d[r * k + c]);
        // Word 0x76543210 (sequential) holds codes 0..7 for k = 0..7.
        Assert.Equal(new[] { 0, 1, 2, 3, 4, 5, 6, 7 }, Enumerable.Range(0, 8).Select(e => (int)(W4A16Weight.SequentialToKernel(0x76543210u) >> (4 * W4A16Weight.NibbleOf[e])) & 15));
    }

    [Fact]
    public void ConcatStacksPartsAndGivesSymmetricPartsZeroCode8()
    {
        // Fused QKV / gate+up: the stacked weight dequantizes to the parts' rows one after the other, and a symmetric
        // part fused with an asymmetric one gets explicit zero codes 8 (its values unchanged).
        var rng = new Random(17);
        int k = 256;
        W4A16Weight Part(int n, bool zeros)
        {
            var codes = new int[n, k];
            for (int r = 0; r < n; r++) for (int c = 0; c < k; c++) codes[r, c] = rng.Next(16);
            var scales = Enumerable.Range(0, n * 2).Select(_ => ToBf16((float)rng.NextDouble() + 0.01f)).ToArray();
            byte[]? z = zeros ? Enumerable.Range(0, n * 2).Select(_ => (byte)rng.Next(16)).ToArray() : null;
            return W4A16Weight.FromCompressedTensors(n, k, PackSequential(codes), scales, z, fp16Scales: false);
        }
        var sym = Part(24, zeros: false);
        var asym = Part(40, zeros: true);
        var fused = W4A16Weight.Concat([sym, asym]);
        Assert.Equal(64, fused.N);
        Assert.Equal([.. Dequant(sym), .. Dequant(asym)], Dequant(fused));
        Assert.All(fused.Zeros!.Take(24 * 2), z => Assert.Equal((byte)8, z));
        Assert.Equal(asym.Zeros!, fused.Zeros!.Skip(24 * 2));
        Assert.Equal([.. sym.QWeight, .. asym.QWeight], fused.QWeight);
    }

    [Fact]
    public void SequentialToKernelMovesEveryNibbleToItsSlot()
    {
        // The shift-and-mask repack against the definition (element e's nibble to kernel nibble NibbleOf[e]) on random
        // words and the all-ones / alternating patterns.
        var rng = new Random(11);
        var words = new List<uint> { 0u, 0xFFFFFFFFu, 0xF0F0F0F0u, 0x0F0F0F0Fu, 0x12345678u };
        for (int i = 0; i < 100_000; i++) words.Add((uint)rng.NextInt64(0, 1L << 32));
        foreach (uint word in words)
        {
            uint expected = 0;
            for (int e = 0; e < 8; e++) expected |= ((word >> (4 * e)) & 15u) << (4 * W4A16Weight.NibbleOf[e]);
            Assert.Equal(expected, W4A16Weight.SequentialToKernel(word));
        }
    }

    [Fact]
    public void RandomCompressedTensorsAsymmetricIsExactForPackedAndUnpackedZeroPoints()
    {
        var rng = new Random(Environment.TickCount);
        const int n = 24, k = 384, groups = 3;
        var codes = new int[n, k];
        for (int r = 0; r < n; r++) for (int c = 0; c < k; c++) codes[r, c] = rng.Next(16);
        var scales = Enumerable.Range(0, n * groups).Select(_ => ToBf16((float)(rng.NextDouble() * 2 - 1))).ToArray();
        var zp = Enumerable.Range(0, n * groups).Select(_ => rng.Next(-8, 8)).ToArray(); // signed zero points
        using var dir = new TempDir();
        foreach (bool packedZp in new[] { true, false })
        {
            // Through a real checkpoint: write the module in compressed-tensors form and load it with the reader.
            string folder = TinyCheckpoints.CompressedTensorsModule(dir.File(packedZp ? "p" : "u"), n, k, PackSequential(codes), scales, zp, packedZp);
            using var ck = StepAudio.Checkpoints.CheckpointFolder.Open(folder);
            var w = new W4A16Checkpoint(ck).Load(ck, TinyCheckpoints.Module, n, k);
            var d = Dequant(w);
            for (int r = 0; r < n; r++)
                for (int c = 0; c < k; c++)
                {
                    int g = r * groups + c / 128;
                    Assert.Equal((codes[r, c] - 8 - zp[g]) * Bf16(scales[g]), d[r * k + c]); // (c − zc)·s, zc = zp + 8
                }
        }
    }

    [Fact]
    public void RandomAutoAwqGemmIsExactAndUsesTheInterleavedOrder()
    {
        var rng = new Random(Environment.TickCount);
        const int n = 40, k = 256, groups = 2;
        var q = new int[k, n];
        for (int i = 0; i < k; i++) for (int c = 0; c < n; c++) q[i, c] = rng.Next(16);
        var z = new int[groups, n];
        for (int g = 0; g < groups; g++) for (int c = 0; c < n; c++) z[g, c] = rng.Next(16);
        var scales = Enumerable.Range(0, groups * n).Select(_ => (ushort)BitConverter.HalfToUInt16Bits((Half)(rng.NextDouble() * 0.1 + 1e-4))).ToArray();
        // §2.6: nibble i of word [row, j] holds column 8j + AwqOrder[i].
        int[] Pack(int[,] v)
        {
            int rows = v.GetLength(0);
            var p = new int[rows * n / 8];
            for (int r = 0; r < rows; r++)
                for (int j = 0; j < n / 8; j++)
                    for (int i = 0; i < 8; i++) p[r * n / 8 + j] |= v[r, 8 * j + AwqOrder[i]] << (4 * i);
            return p;
        }
        var w = W4A16Weight.FromAutoAwq(n, k, Pack(q), Pack(z), scales);
        var d = Dequant(w);
        for (int c = 0; c < n; c++)
            for (int i = 0; i < k; i++)
            {
                float s = (float)BitConverter.UInt16BitsToHalf(scales[(i / 128) * n + c]);
                Assert.Equal((q[i, c] - z[i / 128, c]) * s, d[c * k + i]);
            }
        // The order matters: reading the same words sequentially would give other values.
        var crafted = new int[k * n / 8];
        crafted[0] = 0x76543210; // k = 0, columns 0..7: nibble i = i goes to column AwqOrder[i]
        var wc = W4A16Weight.FromAutoAwq(n, k, crafted, new int[groups * n / 8], Enumerable.Repeat((ushort)0x3c00, groups * n).ToArray());
        for (int i = 0; i < 8; i++) Assert.Equal(i, wc.Code(AwqOrder[i], 0));
    }

    [Fact]
    public unsafe void CpuLinearMatchesADoublePrecisionProductAtARaggedShape()
    {
        var rng = new Random(Environment.TickCount);
        const int m = 5, n = 77, k = 384;
        var codes = new int[n, k];
        for (int r = 0; r < n; r++) for (int c = 0; c < k; c++) codes[r, c] = rng.Next(16);
        var scales = Enumerable.Range(0, n * 3).Select(_ => ToBf16((float)(rng.NextDouble() * 0.02))).ToArray();
        var zeros = Enumerable.Range(0, n * 3).Select(_ => (byte)rng.Next(16)).ToArray();
        var w = W4A16Weight.FromCompressedTensors(n, k, PackSequential(codes), scales, zeros, false);
        var x = Enumerable.Range(0, m * k).Select(_ => ToBf16((float)(rng.NextDouble() * 2 - 1))).ToArray();
        var y = new ushort[m * n];
        fixed (ushort* px = x, ps = w.Scales, py = y) fixed (uint* pq = w.QWeight) fixed (byte* pz = w.Zeros)
            NativeException.Check(NativeMethods.CpuLinearW4A16((nint)px, (nint)pq, (nint)ps, (nint)pz, 0, (nint)py, m, n, k));
        for (int r = 0; r < m; r++)
            for (int c = 0; c < n; c++)
            {
                double expected = 0, mag = 0;
                for (int i = 0; i < k; i++)
                {
                    double t = Bf16(x[r * k + i]) * (double)((codes[c, i] - zeros[c * 3 + i / 128]) * Bf16(scales[c * 3 + i / 128]));
                    expected += t; mag += Math.Abs(t);
                }
                // bf16 output rounding (2^-8 relative) plus fp32 accumulation error (k·2^-24 of Σ|terms|).
                Assert.True(Math.Abs(Bf16(y[r * n + c]) - expected) <= Math.Abs(expected) * 0.004 + mag * 1e-5,
                    $"y[{r},{c}] = {Bf16(y[r * n + c])}, expected {expected}");
            }
    }

    [Fact]
    public unsafe void NativeReferenceRejectsBadShapes()
    {
        var q = new uint[16]; var s = new ushort[2]; var o = new float[128 * 2];
        fixed (uint* pq = q) fixed (ushort* ps = s) fixed (float* po = o)
        {
            nint a = (nint)pq, b = (nint)ps, c = (nint)po;
            var e = Assert.Throws<NativeException>(() => NativeException.Check(NativeMethods.CpuW4A16Dequant(a, b, 0, 0, 2, 100, c)));
            Assert.Contains("multiple of 128", e.Message);
            Assert.Throws<NativeException>(() => NativeException.Check(NativeMethods.CpuW4A16Dequant(0, b, 0, 0, 1, 128, c)));
        }
    }
}
