namespace StepAudio.Tests;

/// <summary>Locates the repository (and the ../shared folder beside it) from the test executable, so tests run the
/// same from `dotnet build` output and from a self-contained publish inside the repo on the GPU machine.</summary>
public static class RepoPaths
{
    public static string Root { get; } = FindRoot();

    static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "StepAudioEditX.sln"))) return dir.FullName;
        throw new InvalidOperationException($"repository root (StepAudioEditX.sln) not found above {AppContext.BaseDirectory}");
    }

    public static string TinyModel => Path.Combine(Root, "models", "tiny-step1");
    public static string Fixture(params string[] parts) => Path.Combine([Root, "tests", "fixtures", .. parts]);
    public static string? Shared => Path.GetFullPath(Path.Combine(Root, "..", "shared")) is var s && Directory.Exists(s) ? s : null;
}

/// <summary>Scratch folder deleted after the test.</summary>
public sealed class TempDir : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("stepaudio-test-").FullName;
    public string File(string name) => System.IO.Path.Combine(Path, name);
    public void Dispose() { try { Directory.Delete(Path, true); } catch (IOException) { } }
}
