using System.CommandLine;

namespace StepAudio.Cli.Commands;

/// <summary>Options shared by several commands, defined once.</summary>
public static class CommonOptions
{
    public static Option<string?> Model() => new("--model", "-m")
    {
        Description = "Checkpoint folder (config.json + safetensors). Default: the bundled tiny synthetic model",
    };

    public static Option<string> Device() => new("--device")
    {
        Description = "Compute backend: cuda, cpu, or auto (cuda when the native library has CUDA kernels and a GPU is present)",
        DefaultValueFactory = _ => "auto",
    };

    public static Option<int> MaxContext() => new("--max-context")
    {
        Description = "KV-cache capacity in tokens (32 KiB per token for the full model)",
        DefaultValueFactory = _ => 8192,
    };

    public static Option<string> Variant()
    {
        var option = new Option<string>("--variant")
        {
        Description = "For a base (bf16) folder: base = run bf16; bnb = quantize the linears to bitsandbytes NF4 at load " +
                      "(blocksize 64, double quant, as the existing server's bnb variant; on the GPU when the device is cuda, the same bytes as on the CPU). Quantized folders load as saved",
        DefaultValueFactory = _ => "base",
        };
        option.AcceptOnlyFromAmong("base", "bnb");
        return option;
    }

    public static Option<bool> NoTextLogits() => new("--no-text-logits")
    {
        Description = "Compute logits only for the control ids (0-67, EOS among them) and the audio ids (65536 and up): text " +
                      "ids get -inf and are never sampled, and lm_head reads 12% of its rows. Off by default: the reference " +
                      "samples from the whole vocabulary. Greedy decoding gives its ids whenever its choice is not a text id; " +
                      "sampling draws from its distribution renormalised over the non-text ids",
    };

    /// <summary>ModelOptions.LogitIds for --no-text-logits: null (every id) unless it is set.</summary>
    public static IReadOnlyList<(int Start, int Count)>? LogitIds(bool noTextLogits, StepAudio.Checkpoints.Step1Config config) =>
        noTextLogits ? StepAudio.Text.AudioTokens.NonTextIds(config.VocabSize) : null;

    /// <summary>The load-time quantization a --variant value asks for.</summary>
    public static StepAudio.Backends.WeightFormat QuantizeAtLoad(string variant) => variant switch
    {
        "base" => StepAudio.Backends.WeightFormat.Bf16,
        "bnb" => StepAudio.Backends.WeightFormat.Nf4,
        _ => throw new ArgumentException($"--variant '{variant}' is not one of: base, bnb"),
    };

    /// <summary>Progress on one rewritten stderr line when stderr is a terminal; when it is redirected (logs, CI),
    /// only every tenth report gets its own line, so a log stays readable.</summary>
    public static IProgress<string> StatusLine()
    {
        if (!Console.IsErrorRedirected) return new Progress<string>(s => Console.Error.Write($"\r  {s,-78}"));
        int count = 0;
        return new Progress<string>(s => { if (count++ % 10 == 0) Console.Error.WriteLine($"  {s}"); });
    }

    /// <summary>An explicit folder, else the tiny model bundled in the repository (models/tiny-step1).</summary>
    public static string ResolveModelFolder(string? folder)
    {
        if (!string.IsNullOrEmpty(folder)) return folder;
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, "models", "tiny-step1");
            if (File.Exists(Path.Combine(candidate, "config.json"))) return candidate;
        }
        throw new DirectoryNotFoundException("no --model given and the bundled models/tiny-step1 was not found above " + AppContext.BaseDirectory);
    }
}
