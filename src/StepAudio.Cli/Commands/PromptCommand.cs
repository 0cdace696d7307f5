using System.CommandLine;
using StepAudio.Text;

namespace StepAudio.Cli.Commands;

/// <summary>
/// `stepaudio prompt`: the LLM prompt ids tts.py builds for a clone or an edit request (printed space-separated), and
/// `stepaudio tokenize`: text → ids (or pieces), ids → text, with a release tokenizer folder.
/// </summary>
public static class PromptCommand
{
    public static Command Create()
    {
        var request = new PromptRequestOptions(tokenizerRequired: true);
        var command = new Command("prompt", "Print the LLM prompt ids of a clone or edit request, id for id as the reference tts.py builds them.");
        request.AddTo(command);
        command.SetAction(r =>
        {
            Console.WriteLine(string.Join(' ', request.BuildIds(r, defaultTokenizerFolder: null)!));
            return 0;
        });
        return command;
    }

    public static Command CreateTokenize()
    {
        var tokenizer = new Option<string>("--tokenizer") { Description = "Folder with tokenizer.model and tokenizer_config.json", Required = true };
        var pieces = new Option<bool>("--pieces") { Description = "print the pieces instead of the ids" };
        var decode = new Option<bool>("--decode") { Description = "the argument is ids (comma/space separated): print their text" };
        var input = new Argument<string>("text") { Description = "text to encode (no BOS/EOS added), or ids with --decode" };
        var command = new Command("tokenize", "Encode text with the Step1 tokenizer (or decode ids).");
        command.Options.Add(tokenizer);
        command.Options.Add(pieces);
        command.Options.Add(decode);
        command.Arguments.Add(input);
        command.SetAction(r =>
        {
            var tok = StepTokenizer.Load(r.GetValue(tokenizer)!);
            string value = r.GetValue(input)!;
            if (r.GetValue(decode)) Console.WriteLine(tok.Decode(ParseInts(value, "ids")));
            else if (r.GetValue(pieces)) Console.WriteLine(string.Join(' ', tok.EncodeToPieces(value)));
            else Console.WriteLine(string.Join(' ', tok.Encode(value)));
            return 0;
        });
        return command;
    }

    internal static string AudioString(string? tokens, string? vq02, string? vq06)
    {
        if (tokens != null)
        {
            AudioTokens.ParseTokenString(tokens); // validates the syntax
            return tokens;
        }
        if (vq02 == null || vq06 == null) throw new ArgumentException("give the audio as --vq02 and --vq06 codes or as --audio-tokens");
        return AudioTokens.ToTokenString(ParseInts(vq02, "--vq02"), ParseInts(vq06, "--vq06"));
    }

    internal static int[] ParseInts(string s, string what) =>
        s.Split([',', ' ', '\n', '\t'], StringSplitOptions.RemoveEmptyEntries)
         .Select(x => int.TryParse(x, out int v) ? v : throw new ArgumentException($"{what}: '{x}' is not an integer")).ToArray();

    internal static float[] ReadFloats(FileInfo file)
    {
        if (!file.Exists) throw new FileNotFoundException($"prompt samples file not found: {file.FullName}");
        var bytes = File.ReadAllBytes(file.FullName);
        if (bytes.Length % 4 != 0) throw new ArgumentException($"{file.FullName}: {bytes.Length} bytes is not a whole number of float32 samples");
        var floats = new float[bytes.Length / 4];
        for (int i = 0; i < floats.Length; i++) floats[i] = System.Buffers.Binary.BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan(i * 4));
        return floats;
    }
}

/// <summary>The options that describe a clone or edit request (text, mode, audio codes), shared by `prompt` and
/// `generate`, and the one place that turns them into prompt ids.</summary>
public sealed class PromptRequestOptions
{
    readonly Option<string> _tokenizer;
    readonly Option<string> _mode = new("--mode") { Description = "clone or edit: build the prompt from text and audio codes as tts.py does" };
    readonly Option<string> _targetText = new("--target-text") { Description = "clone: the text to speak (dialect tags such as [Sichuanese] go in front)" };
    readonly Option<string> _promptText = new("--prompt-text") { Description = "clone: transcript of the prompt audio" };
    readonly Option<string> _speaker = new("--speaker") { Description = "clone: speaker id (clone_<16 hex>); or give --prompt-samples" };
    readonly Option<FileInfo> _samples = new("--prompt-samples") { Description = "clone: raw little-endian float32 samples of the prompt file, channel-major, to compute the speaker id as tts.py does" };
    readonly Option<string> _vq02 = new("--vq02") { Description = "vq02 codes of the (prompt or input) audio, comma/space separated" };
    readonly Option<string> _vq06 = new("--vq06") { Description = "vq06 codes of the (prompt or input) audio, comma/space separated" };
    readonly Option<string> _audioTokens = new("--audio-tokens") { Description = "instead of --vq02/--vq06: the audio as a \"<audio_N>...\" string" };
    readonly Option<string> _editType = new("--edit-type") { Description = "edit: emotion, style, speed, denoise, vad or paralinguistic" };
    readonly Option<string> _editInfo = new("--edit-info") { Description = "edit: e.g. happy (emotion), whisper (style), faster (speed), remove" };
    readonly Option<string> _audioText = new("--audio-text") { Description = "edit: transcript of the input audio" };
    readonly Option<string> _text = new("--text") { Description = "edit (paralinguistic): the new text with tags such as [Laughter]" };

    public PromptRequestOptions(bool tokenizerRequired)
    {
        _tokenizer = new Option<string>("--tokenizer")
        {
            Description = tokenizerRequired ? "Folder with tokenizer.model and tokenizer_config.json (the model folder)"
                                            : "Folder with tokenizer.model and tokenizer_config.json (default: the model folder)",
            Required = tokenizerRequired,
        };
        _mode.AcceptOnlyFromAmong("clone", "edit");
        _mode.Required = tokenizerRequired;
    }

    public void AddTo(Command command)
    {
        foreach (var o in new Option[] { _tokenizer, _mode, _targetText, _promptText, _speaker, _samples, _vq02, _vq06, _audioTokens, _editType, _editInfo, _audioText, _text })
            command.Options.Add(o);
    }

    /// <summary>The prompt ids, or null when no --mode was given.</summary>
    public int[]? BuildIds(ParseResult r, string? defaultTokenizerFolder)
    {
        string? mode = r.GetValue(_mode);
        if (mode == null) return null;
        string folder = r.GetValue(_tokenizer) ?? defaultTokenizerFolder ?? throw new ArgumentException("--mode needs --tokenizer");
        var tok = StepTokenizer.Load(folder);
        string audio = PromptCommand.AudioString(r.GetValue(_audioTokens), r.GetValue(_vq02), r.GetValue(_vq06));
        if (mode == "clone")
        {
            string prompt = r.GetValue(_promptText) ?? throw new ArgumentException("clone needs --prompt-text");
            string target = r.GetValue(_targetText) ?? throw new ArgumentException("clone needs --target-text");
            string spk = r.GetValue(_speaker) ?? (r.GetValue(_samples) is { } f ? SpeakerId.Compute(prompt, PromptCommand.ReadFloats(f))
                : throw new ArgumentException("clone needs --speaker or --prompt-samples"));
            return ClonePrompt.Build(tok, target, prompt, spk, audio);
        }
        var type = EditPrompt.ParseEditType(r.GetValue(_editType) ?? throw new ArgumentException("edit needs --edit-type"));
        string instruction = EditPrompt.BuildInstruction(type, r.GetValue(_audioText), r.GetValue(_editInfo), r.GetValue(_text));
        return EditPrompt.Build(tok, instruction, audio);
    }
}
