using System.CommandLine;
using StepAudio.Backends;
using StepAudio.Checkpoints;
using StepAudio.Generation;
using StepAudio.Model;
using StepAudio.Text;

namespace StepAudio.Cli.Commands;

/// <summary>`stepaudio generate`: token ids in, token ids out, with timings.</summary>
public static class GenerateCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var device = CommonOptions.Device();
        var ids = new Option<string?>("--ids") { Description = "Prompt token ids, comma or space separated (default: a fixed demo prompt)" };
        var idsFile = new Option<FileInfo?>("--ids-file") { Description = "Read the prompt ids from a file (comma/space/newline separated)" };
        var maxNew = new Option<int?>("--max-new-tokens") { Description = "Stop after this many new tokens (default: only EOS or --max-length stop)" };
        var maxLength = new Option<int>("--max-length") { Description = "Stop when prompt + generated reaches this length (the reference's max_length)", DefaultValueFactory = _ => 8192 };
        var greedy = new Option<bool>("--greedy") { Description = "Greedy decoding (argmax after the repetition rule) instead of sampling" };
        var temperature = new Option<float>("--temperature") { Description = "Sampling temperature", DefaultValueFactory = _ => 0.7f };
        var topK = new Option<int>("--top-k") { Description = "Keep the k most likely tokens (0 = all)", DefaultValueFactory = _ => 50 };
        var seed = new Option<ulong>("--seed") { Description = "Seed of the sampler's random draws", DefaultValueFactory = _ => 0x5EEDUL };
        var ignoreEos = new Option<bool>("--ignore-eos") { Description = "Keep decoding past EOS (for timing on random weights)" };
        var maxContext = CommonOptions.MaxContext();
        var variant = CommonOptions.Variant();
        var noTextLogits = CommonOptions.NoTextLogits();
        var request = new PromptRequestOptions(tokenizerRequired: false);

        var command = new Command("generate",
            "Run the Step1 LLM on prompt token ids and print the generated ids with timings. With no --model, uses the " +
            "bundled tiny synthetic model (models/tiny-step1), so the command always demonstrates a real decode.")
        { model, device, ids, idsFile, maxNew, maxLength, greedy, temperature, topK, seed, ignoreEos, maxContext, variant, noTextLogits };
        request.AddTo(command);
        command.Description += " With --mode clone|edit the prompt is built from text and audio codes exactly as tts.py " +
                               "does, and the output is the generated audio codes (vq02 0..1023, vq06 1024..5119) ready for the vocoder.";

        command.SetAction(parse =>
        {
            string folder = CommonOptions.ResolveModelFolder(parse.GetValue(model));
            int[]? fromText = request.BuildIds(parse, defaultTokenizerFolder: folder);
            if (fromText != null && (parse.GetValue(ids) != null || parse.GetValue(idsFile) != null))
                throw new ArgumentException("give either --mode (a prompt built from text) or --ids/--ids-file, not both");
            int[] prompt = fromText ?? ParseIds(parse.GetValue(ids), parse.GetValue(idsFile));
            var options = new GenerationOptions
            {
                Greedy = parse.GetValue(greedy),
                Temperature = parse.GetValue(temperature),
                TopK = parse.GetValue(topK),
                Seed = parse.GetValue(seed),
                MaxLength = parse.GetValue(maxLength),
                MaxNewTokens = parse.GetValue(maxNew),
                IgnoreEos = parse.GetValue(ignoreEos),
            };
            using var backend = BackendFactory.Create(parse.GetValue(device)!);
            using var checkpoint = CheckpointFolder.Open(folder);
            Console.Error.WriteLine($"loading {checkpoint.Folder} ({checkpoint.Variant}, {checkpoint.TotalBytes / 1e9:F2} GB) on {backend.Name} ...");
            int context = Math.Min(parse.GetValue(maxContext), options.MaxLength);
            using var llm = Step1Model.Load(checkpoint, backend, new ModelOptions
                {
                    MaxContext = context, QuantizeAtLoad = CommonOptions.QuantizeAtLoad(parse.GetValue(variant)!),
                    LogitIds = CommonOptions.LogitIds(parse.GetValue(noTextLogits), checkpoint.Config),
                },
                CommonOptions.StatusLine());
            Console.Error.WriteLine((Console.IsErrorRedirected ? "" : "\r") + $"loaded in {llm.LoadTime.TotalSeconds:F2} s ({llm.WeightBytes / 1e9:F2} GB of weights)".PadRight(80));

            var result = new Generator(llm).Generate(prompt, options);
            if (fromText != null)
            {
                // The reference keeps output_ids[len(prompt):-1]: the final id (EOS, or the last token at max_length) is dropped.
                var output = result.Stop == StopReason.EndOfSequence ? [.. result.Tokens, checkpoint.Config.EosTokenId] : result.Tokens;
                Console.WriteLine(string.Join(' ', AudioTokens.GeneratedToCodes(output)));
            }
            else Console.WriteLine(string.Join(' ', result.Tokens));
            Console.Error.WriteLine(
                $"prompt {result.PromptLength} tokens, generated {result.Tokens.Length} ({result.Stop}); " +
                $"prefill {result.PrefillTime.TotalMilliseconds:F1} ms, decode {result.DecodeTime.TotalMilliseconds:F1} ms " +
                $"= {result.DecodeTokensPerSecond:F1} tok/s; total {(result.PrefillTime + result.DecodeTime).TotalMilliseconds:F1} ms");
            return 0;
        });
        return command;
    }

    /// <summary>The demo prompt: BOS, BOT, then a fixed run of ordinary ids (valid for any vocabulary ≥ 64).</summary>
    static readonly int[] DemoPrompt = [1, 4, 17, 23, 42, 8, 15, 33, 61, 5, 12, 29];

    static int[] ParseIds(string? text, FileInfo? file)
    {
        if (text != null && file != null) throw new ArgumentException("give either --ids or --ids-file, not both");
        if (file != null)
        {
            if (!file.Exists) throw new FileNotFoundException($"--ids-file {file.FullName} not found");
            text = File.ReadAllText(file.FullName);
        }
        if (text == null) return DemoPrompt;
        var parts = text.Split([',', ' ', '\n', '\r', '\t'], StringSplitOptions.RemoveEmptyEntries);
        return parts.Select((p, i) => int.TryParse(p, out int v) ? v
            : throw new ArgumentException($"prompt id #{i + 1} '{p}' is not an integer")).ToArray();
    }
}
