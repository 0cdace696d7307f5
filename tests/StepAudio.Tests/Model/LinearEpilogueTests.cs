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
}
