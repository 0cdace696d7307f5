using System.Text.Json;

namespace StepAudio.Tests.Model;

/// <summary>The reference outputs written by tests/oracle/step1_oracle.py for models/tiny-step1.</summary>
public sealed class TinyOracle
{
    public required int[] Prompt { get; init; }
    public required int[] GreedyTokens { get; init; }
    public required double[] GreedyMargins { get; init; }
    public required float[] Logits { get; init; } // [Prompt.Length, vocab]

    /// <summary>The fixture folder's expected.json and logits file (step1-tiny by default; the quantized
    /// fixtures use the same layout).</summary>
    public static TinyOracle Load(string fixtureFolder = "step1-tiny")
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(RepoPaths.Fixture(fixtureFolder, "expected.json")));
        var r = doc.RootElement;
        string logitsFile = r.TryGetProperty("logits_file", out var lf) ? lf.GetString()! : "logits.f32";
        var bytes = File.ReadAllBytes(RepoPaths.Fixture(fixtureFolder, logitsFile));
        var logits = new float[bytes.Length / 4];
        Buffer.BlockCopy(bytes, 0, logits, 0, bytes.Length);
        return new TinyOracle
        {
            Prompt = r.GetProperty("prompt").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
            GreedyTokens = r.GetProperty("greedy_tokens").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
            GreedyMargins = r.GetProperty("greedy_margins").EnumerateArray().Select(e => e.GetDouble()).ToArray(),
            Logits = logits,
        };
    }

    /// <summary>‖a − b‖ / ‖b‖ in double precision.</summary>
    public static double RelativeError(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        double num = 0, den = 0;
        for (int i = 0; i < a.Length; i++)
        {
            if (float.IsNaN(a[i])) return double.PositiveInfinity;
            double d = a[i] - b[i];
            num += d * d;
            den += (double)b[i] * b[i];
        }
        return Math.Sqrt(num / den);
    }

    /// <summary>Greedy tokens are compared up to the first step whose top-2 margin in the oracle is under two bf16
    /// ulps at the logits' magnitude (|logit| in [4, 8) ⇒ ulp 1/32): there a one-ulp rounding difference may
    /// legitimately pick the other token, and every later token depends on that choice.</summary>
    public int ComparableGreedySteps(double minMargin = 0.06)
    {
        int n = 0;
        while (n < GreedyMargins.Length && GreedyMargins[n] >= minMargin) n++;
        return n;
    }
}
