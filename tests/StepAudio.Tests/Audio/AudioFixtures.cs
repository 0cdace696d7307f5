using System.Security.Cryptography;
using System.Text.Json;
using StepAudio.Audio;

namespace StepAudio.Tests.Audio;

/// <summary>Access to tests/fixtures/audio (written by tests/oracle/audio_oracle.py) and to the speech prompts in
/// the shared folder beside the repository root (never copied into the repo).</summary>
public static class AudioFixtures
{
    public static readonly string RepoRoot = FindRoot();
    public static readonly string Dir = Path.Combine(RepoRoot, "tests", "fixtures", "audio");
    public static readonly string SharedExamples = Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared", "audio", "examples"));
    static readonly Lazy<JsonElement> ManifestLazy = new(() =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(Dir, "manifest.json"))).RootElement);

    public static JsonElement Manifest => ManifestLazy.Value;
    public static IEnumerable<JsonElement> Signals => Manifest.GetProperty("signals").EnumerateArray();
    public static IEnumerable<JsonElement> Real => Manifest.GetProperty("real").EnumerateArray();
    public static TheoryData<string> SignalNames()
    {
        var d = new TheoryData<string>();
        foreach (var s in Signals) d.Add(s.GetProperty("name").GetString()!);
        return d;
    }
    public static TheoryData<string> RealNames()
    {
        var d = new TheoryData<string>();
        foreach (var s in Real) d.Add(s.GetProperty("name").GetString()!);
        return d;
    }
    public static JsonElement Signal(string name) => Signals.Concat(Real).First(s => s.GetProperty("name").GetString() == name);

    static string FindRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "StepAudioEditX.sln"))) return d.FullName;
        throw new DirectoryNotFoundException("repository root (StepAudioEditX.sln) not found above " + AppContext.BaseDirectory);
    }

    public static string WavPath(JsonElement s) => Path.Combine(Dir, s.GetProperty("wav").GetString()!);

    /// <summary>A float32 array and its shape from a manifest entry {"file", "shape"}.</summary>
    public static (float[] Data, int[] Shape) Bin(JsonElement s, string key)
    {
        var e = s.GetProperty(key);
        var bytes = File.ReadAllBytes(Path.Combine(Dir, e.GetProperty("file").GetString()!));
        var data = new float[bytes.Length / 4];
        Buffer.BlockCopy(bytes, 0, data, 0, bytes.Length);
        var shape = e.GetProperty("shape").EnumerateArray().Select(x => x.GetInt32()).ToArray();
        return (data, shape);
    }

    public static string Sha256(ReadOnlySpan<float> x)
    {
        var bytes = new byte[x.Length * 4];
        Buffer.BlockCopy(x.ToArray(), 0, bytes, 0, bytes.Length);
        return Convert.ToHexStringLower(SHA256.HashData(bytes));
    }

    public static Cmvn Cmvn() => StepAudio.Audio.Cmvn.Load(Path.Combine(Dir, "am.mvn"));

    public static double MaxAbs(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        Assert.Equal(a.Length, b.Length);
        double m = 0;
        for (int i = 0; i < a.Length; i++) m = Math.Max(m, Math.Abs((double)a[i] - b[i]));
        return m;
    }

    /// <summary>The oracle's exact 16 kHz tokenizer input: its resampled audio, energy-normalised and trimmed here
    /// (these two steps are bit-exact, checked against the oracle's hash).</summary>
    public static float[] OracleTrimmed(JsonElement s)
    {
        var (res16, _) = Bin(s, "res16");
        Preprocess.EnergyNormalize(res16);
        var t = Preprocess.TrimSilence(res16);
        Assert.Equal(s.GetProperty("trimmed_sha256").GetString(), Sha256(t.Samples));
        return t.Samples;
    }
}
