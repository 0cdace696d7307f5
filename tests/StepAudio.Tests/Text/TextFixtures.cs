using System.Text.Json;
using StepAudio.Text;

namespace StepAudio.Tests.Text;

/// <summary>
/// The committed oracle output (tests/oracle/tokenizer_oracle.py): expected_tiny.json for the tiny fixture tokenizer
/// in tests/fixtures/text/tiny, expected_real.json for the release's tokenizer.model (not committed; tests on it run
/// when STEPAUDIO_STEP1_TOKENIZER_DIR names a folder with it and its tokenizer_config.json).
/// </summary>
public static class TextFixtures
{
    public static readonly string Dir = FindFixtureDir();
    public static string TinyTokenizerDir => Path.Combine(Dir, "tiny");

    static readonly Lazy<StepTokenizer> Tiny = new(() => StepTokenizer.Load(TinyTokenizerDir));
    static readonly Lazy<StepTokenizer?> Real = new(() =>
        Environment.GetEnvironmentVariable("STEPAUDIO_STEP1_TOKENIZER_DIR") is { Length: > 0 } d ? StepTokenizer.Load(d) : null);

    public static StepTokenizer TinyTokenizer => Tiny.Value;

    /// <summary>The tokenizer a fixture set belongs to; skips the test visibly when the real one is not available.</summary>
    public static StepTokenizer TokenizerFor(string set)
    {
        if (set == "tiny") return Tiny.Value;
        return Real.Value ?? throw SkipException("the release tokenizer.model is not committed; set STEPAUDIO_STEP1_TOKENIZER_DIR to a folder with it to run this");
    }

    static Exception SkipException(string reason)
    {
        Assert.Skip(reason);
        return new InvalidOperationException("unreachable");
    }

    static readonly Dictionary<string, JsonDocument> Docs = new();

    public static JsonElement Expected(string set)
    {
        lock (Docs)
        {
            if (!Docs.TryGetValue(set, out var doc))
                Docs[set] = doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(Dir, $"expected_{set}.json")));
            return doc.RootElement;
        }
    }

    public static int[] Ints(JsonElement e) => e.EnumerateArray().Select(x => x.GetInt32()).ToArray();
    public static string[] Strings(JsonElement e) => e.EnumerateArray().Select(x => x.GetString()!).ToArray();

    /// <summary>The oracle's lcg_samples: exactly representable float32 values (k / 2^23) − 1.</summary>
    public static float[] LcgSamples(int n, long seed)
    {
        var result = new float[n];
        long x = seed;
        for (int i = 0; i < n; i++)
        {
            x = (x * 1103515245 + 12345) % (1L << 31);
            result[i] = (float)((x >> 7) / (double)(1 << 23) - 1.0);
        }
        return result;
    }

    static string FindFixtureDir()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, "tests", "fixtures", "text");
            if (Directory.Exists(candidate)) return candidate;
        }
        throw new DirectoryNotFoundException($"tests/fixtures/text not found above {AppContext.BaseDirectory}");
    }
}
