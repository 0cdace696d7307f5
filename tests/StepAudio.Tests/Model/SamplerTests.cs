using StepAudio.Backends;

namespace StepAudio.Tests.Model;

/// <summary>The sampling rule (spec §3.5) on hand-made logits, through the CPU backend's Sample (the reference the
/// GPU sampler is checked against).</summary>
public unsafe class SamplerTests
{
    static ushort Bf16(float f) => (ushort)(BitConverter.SingleToInt32Bits(f) >> 16); // exact for the values used here

    /// <summary>Runs one step; returns the chosen id and checks the history/len/step bookkeeping.</summary>
    static int SampleOnce(float[] logits, int[] history, SamplingParams p, ulong step = 0)
    {
        using var backend = new CpuBackend();
        var raw = logits.Select(Bf16).ToArray();
        var hist = new int[history.Length + 1];
        history.CopyTo(hist, 0);
        int len = history.Length, outId = -1;
        ulong s = step;
        fixed (ushort* l = raw)
        fixed (int* h = hist)
            backend.Sample((nint)l, raw.Length, (nint)h, (nint)(&len), p, (nint)(&s), (nint)(&outId));
        Assert.Equal(history.Length + 1, len);
        Assert.Equal(step + 1, s);
        Assert.Equal(outId, hist[history.Length]);
        return outId;
    }

    static readonly SamplingParams Greedy = new(0f, 1, 10, 1);

    [Fact]
    public void GreedyTakesTheFirstMaximum()
    {
        Assert.Equal(2, SampleOnce([0.5f, 1f, 3f, 3f, -2f], [7], Greedy));
    }

    [Fact]
    public void RepetitionRuleBansALastIdSeenTwiceInTheWindow()
    {
        float[] logits = [0f, 0f, 0f, 5f, 4f, 0f];
        // id 3 occurs twice in the last 10 (count/10 = 0.2 > 0.1): banned, the next best (4) wins.
        int[] twice = [1, 1, 1, 3, 1, 1, 1, 1, 1, 3];
        Assert.Equal(4, SampleOnce(logits, twice, Greedy));
        // Once only (0.1 is not > 0.1): allowed.
        int[] once = [1, 1, 1, 2, 1, 1, 1, 1, 1, 3];
        Assert.Equal(3, SampleOnce(logits, once, Greedy));
        // Fewer than 10 ids of history: the processor is a no-op even with repeats.
        Assert.Equal(3, SampleOnce(logits, [3, 3, 3], Greedy));
        // Only the *last* id is considered: 3 repeated earlier but the last id is 5.
        Assert.Equal(3, SampleOnce(logits, [3, 3, 3, 3, 3, 3, 3, 3, 3, 5], Greedy));
    }

    [Fact]
    public void TopKKeepsOnlyTheKLargest()
    {
        // Logits 0..9 at ids 0..9; top-k 3 keeps ids 7, 8, 9. Over many draws nothing else may appear, and all
        // three appear with roughly their softmax shares at temperature 1 (e^0 : e^1 : e^2 / sum).
        var logits = Enumerable.Range(0, 10).Select(i => (float)i).ToArray();
        var p = new SamplingParams(1f, 3, 0, 123);
        var counts = new int[10];
        for (ulong step = 0; step < 3000; step++) counts[SampleOnce(logits, [1], p, step)]++;
        Assert.Equal(0, counts.Take(7).Sum());
        double z = Math.Exp(0) + Math.Exp(1) + Math.Exp(2);
        Assert.InRange(counts[9] / 3000.0, Math.Exp(2) / z - 0.04, Math.Exp(2) / z + 0.04);
        Assert.InRange(counts[7] / 3000.0, 1 / z - 0.04, 1 / z + 0.04);
    }

    [Fact]
    public void TopKKeepsTiesWithTheKthValue()
    {
        // HF's TopKLogitsWarper removes scores strictly below the k-th largest: ids 1, 2 and 3 tie at the 2nd value.
        float[] logits = [0f, 1f, 1f, 1f, 2f];
        var seen = new HashSet<int>();
        for (ulong step = 0; step < 400; step++) seen.Add(SampleOnce(logits, [0], new SamplingParams(1f, 2, 0, 9), step));
        Assert.Equal([1, 2, 3, 4], seen.Order());
    }

    [Fact]
    public void LowTemperatureSharpensTheDistribution()
    {
        float[] logits = [0f, 1f];
        int hot = 0, cold = 0;
        for (ulong step = 0; step < 2000; step++)
        {
            hot += SampleOnce(logits, [0], new SamplingParams(1f, 0, 0, 5), step);
            cold += SampleOnce(logits, [0], new SamplingParams(0.25f, 0, 0, 5), step);
        }
        Assert.InRange(hot / 2000.0, 0.731 - 0.04, 0.731 + 0.04);   // sigmoid(1)
        Assert.InRange(cold / 2000.0, 0.982 - 0.02, 0.982 + 0.02);  // sigmoid(4)
    }
}
