using System.Runtime.InteropServices;
using StepAudio.Backends;

namespace StepAudio.Tests.Model;

/// <summary>The linear epilogues (SA_EPILOGUE_*) on the CPU backend: the same bits as the separate operations they
/// replace, and clear refusals. (The CUDA kernels are checked against these CPU operations in tests/native.)</summary>
public unsafe class LinearEpilogueTests
{
    static DeviceBuffer Bf16(IComputeBackend b, int count, Random rng, float scale, string purpose)
    {
        var buffer = b.Allocate(count * 2L, purpose);
        var span = new Span<ushort>((void*)buffer.Pointer, count);
        for (int i = 0; i < count; i++) span[i] = (ushort)(BitConverter.SingleToInt32Bits((float)(rng.NextDouble() * 2 - 1) * scale) >> 16);
        return buffer;
    }

    static ushort[] Read(DeviceBuffer b, int count) => new ReadOnlySpan<ushort>((void*)b.Pointer, count).ToArray();

    [Theory]
    [InlineData(1, 64, 96)]
    [InlineData(5, 208, 384)]
    [InlineData(16, 32, 40)]
    public void EpiloguesGiveTheBitsOfTheSeparateOperations(int m, int n, int k)
    {
        var rng = new Random(m * 1000 + n);
        using var b = new CpuBackend();
        using var x = Bf16(b, m * k, rng, 1f, "x");
        using var w = Bf16(b, n * k, rng, 0.05f, "w");
        var weight = new LinearWeight(WeightFormat.Bf16, n, k, w);
        using var product = b.Allocate(m * n * 2L, "product");
        b.Linear(x.Pointer, weight, product.Pointer, m);

        // Add: y += x·Wᵀ, against Add(y, product).
        using var y = Bf16(b, m * n, rng, 0.5f, "residual");
        using var expected = b.Allocate(m * n * 2L, "expected");
        Buffer.MemoryCopy((void*)y.Pointer, (void*)expected.Pointer, m * n * 2L, m * n * 2L);
        b.Add(expected.Pointer, product.Pointer, (long)m * n);
        b.Linear(x.Pointer, weight, y.Pointer, m, LinearEpilogue.Add);
        Assert.Equal(Read(expected, m * n), Read(y, m * n));
        Assert.NotEqual(Read(product, m * n), Read(y, m * n));  // the residual really was added

        // SwiGlu: y[m, n/2] from the fused gate+up product.
        using var act = b.Allocate(m * n, "act");
        using var expectedAct = b.Allocate(m * n, "expected act");
        b.SwiGlu(product.Pointer, expectedAct.Pointer, m, n / 2);
        b.Linear(x.Pointer, weight, act.Pointer, m, LinearEpilogue.SwiGlu);
        Assert.Equal(Read(expectedAct, m * n / 2), Read(act, m * n / 2));
    }

    [Fact]
    public void EpiloguesRefusePrefillSizesAndAliasing()
    {
        var rng = new Random(3);
        using var b = new CpuBackend();
        using var x = Bf16(b, 17 * 32, rng, 1f, "x");
        using var w = Bf16(b, 32 * 32, rng, 0.05f, "w");
        using var y = b.Allocate(17 * 32 * 2L, "y");
        var weight = new LinearWeight(WeightFormat.Bf16, 32, 32, w);
        var tooMany = Assert.Throws<ArgumentOutOfRangeException>(() => b.Linear(x.Pointer, weight, y.Pointer, 17, LinearEpilogue.Add));
        Assert.Contains("at most 16 tokens", tooMany.Message);
        var alias = Assert.Throws<ArgumentException>(() => b.Linear(x.Pointer, weight, x.Pointer, 1, LinearEpilogue.SwiGlu));
        Assert.Contains("must not alias", alias.Message);
    }

    static float F(ushort bits) => BitConverter.Int32BitsToSingle(bits << 16);
    static float RelL2(ushort[] got, ushort[] want)
    {
        double num = 0, den = 0;
        for (int i = 0; i < got.Length; i++) { double d = F(got[i]) - F(want[i]); num += d * d; den += (double)F(want[i]) * F(want[i]); }
        return (float)Math.Sqrt(num / den);
    }

    /// <summary>A folded RMSNorm (NormFold): the producer's h·g and sums of squares are exactly their definition, and
    /// producer → consumer gives the separate RmsNorm → Linear up to bf16 rounding (relative L2 ≤ 1e-2 — the rounding
    /// points differ: bf16(h·g)·inv against bf16(bf16(h·inv)·g); measured ~2e-3).</summary>
    [Theory]
    [InlineData(1, 64, 96, 80)]
    [InlineData(3, 208, 48, 160)]
    [InlineData(16, 32, 40, 64)]
    public void FoldedNormMatchesTheSeparateRmsNorm(int m, int hidden, int k, int n2)
    {
        var rng = new Random(m * 7919 + hidden);
        using var b = new CpuBackend();
        const float eps = 1e-5f;
        using var x = Bf16(b, m * k, rng, 1f, "x");
        using var wo = Bf16(b, hidden * k, rng, 0.05f, "w_o");
        using var g = Bf16(b, hidden, rng, 1f, "norm weight");
        using var w2 = Bf16(b, n2 * hidden, rng, 0.05f, "w_2");
        var o = new LinearWeight(WeightFormat.Bf16, hidden, k, wo);
        var second = new LinearWeight(WeightFormat.Bf16, n2, hidden, w2);
        using var h = Bf16(b, m * hidden, rng, 2f, "residual");
        using var hRef = b.Allocate(m * hidden * 2L, "residual, separate ops");
        Buffer.MemoryCopy((void*)h.Pointer, (void*)hRef.Pointer, m * hidden * 2L, m * hidden * 2L);

        // Producer, against Linear + Add and the definitions of h·g and the sums.
        using var folded = b.Allocate(m * hidden * 2L, "h·g");
        using var sums = b.Allocate(m * hidden / 16 * 4L, "sums of squares");
        b.Linear(x.Pointer, o, h.Pointer, m, LinearEpilogue.Add, NormFold.Produce(g.Pointer, folded.Pointer, sums.Pointer));
        b.Linear(x.Pointer, o, hRef.Pointer, m, LinearEpilogue.Add);
        var hBits = Read(h, m * hidden);
        Assert.Equal(Read(hRef, m * hidden), hBits);
        var gBits = Read(g, hidden);
        var foldedBits = Read(folded, m * hidden);
        var sumSpan = new ReadOnlySpan<float>((void*)sums.Pointer, m * hidden / 16);
        for (int t = 0; t < m; t++)
            for (int j = 0; j < hidden / 16; j++)
            {
                float part = 0;
                for (int r = 16 * j; r < 16 * j + 16; r++)
                {
                    float v = F(hBits[t * hidden + r]);
                    part += v * v;
                    float prod = v * F(gBits[r]);
                    Assert.Equal(RoundBf16(prod), foldedBits[t * hidden + r]);
                }
                Assert.Equal(part, sumSpan[t * hidden / 16 + j]);
            }

        // Consumer (Store and SwiGlu), against RmsNorm then Linear (then SwiGlu).
        using var normed = b.Allocate(m * hidden * 2L, "normed");
        b.RmsNorm(hRef.Pointer, g.Pointer, normed.Pointer, m, hidden, eps);
        using var want = b.Allocate(m * n2 * 2L, "want");
        using var got = b.Allocate(m * n2 * 2L, "got");
        b.Linear(normed.Pointer, second, want.Pointer, m);
        b.Linear(folded.Pointer, second, got.Pointer, m, LinearEpilogue.Store, NormFold.Consume(sums.Pointer, eps));
        Assert.InRange(RelL2(Read(got, m * n2), Read(want, m * n2)), 1e-5f, 1e-2f);  // > 0: the fold really rounds differently
        using var wantAct = b.Allocate(m * n2, "want act");
        using var gotAct = b.Allocate(m * n2, "got act");
        b.SwiGlu(want.Pointer, wantAct.Pointer, m, n2 / 2);
        b.Linear(folded.Pointer, second, gotAct.Pointer, m, LinearEpilogue.SwiGlu, NormFold.Consume(sums.Pointer, eps));
        Assert.InRange(RelL2(Read(gotAct, m * n2 / 2), Read(wantAct, m * n2 / 2)), 0f, 2e-2f);
    }

    // Round-to-nearest-even fp32 → bf16 bits (finite values).
    static ushort RoundBf16(float f)
    {
        uint u = (uint)BitConverter.SingleToInt32Bits(f);
        return (ushort)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
    }

    [Fact]
    public void FoldedNormRefusesAProducerWithoutTheAddEpilogue()
    {
        var rng = new Random(5);
        using var b = new CpuBackend();
        using var x = Bf16(b, 32, rng, 1f, "x");
        using var w = Bf16(b, 32 * 32, rng, 0.05f, "w");
        using var y = b.Allocate(64, "y");
        using var outBuf = b.Allocate(64, "out");
        using var sums = b.Allocate(8, "sums");
        var weight = new LinearWeight(WeightFormat.Bf16, 32, 32, w);
        var e = Assert.Throws<ArgumentException>(() => b.Linear(x.Pointer, weight, y.Pointer, 1, LinearEpilogue.Store,
            NormFold.Produce(w.Pointer, outBuf.Pointer, sums.Pointer)));
        Assert.Contains("Add epilogue", e.Message);
    }
}
