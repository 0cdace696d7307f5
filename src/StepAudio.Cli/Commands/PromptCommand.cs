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
        var tokenizer = new Option<string>("--tokenizer") { Description = "Folder with tokenizer.model and tokenizer_config.json (the model folder)", Required = true };
        var mode = new Option<string>("--mode") { Description = "clone or edit", Required = true };
        mode.AcceptOnlyFromAmong("clone", "edit");
        var targetText = new Option<string>("--target-text") { Description = "clone: the text to speak (dialect tags such as [Sichuanese] go in front)" };
        var promptText = new Option<string>("--prompt-text") { Description = "clone: transcript of the prompt audio" };
        var speaker = new Option<string>("--speaker") { Description = "clone: speaker id (clone_<16 hex>); or give --prompt-samples" };
        var samples = new Option<FileInfo>("--prompt-samples") { Description = "clone: raw little-endian float32 samples of the prompt file, channel-major, to compute the speaker id as tts.py does" };
        var vq02 = new Option<string>("--vq02") { Description = "vq02 codes of the (prompt or input) audio, comma/space separated" };
        var vq06 = new Option<string>("--vq06") { Description = "vq06 codes of the (prompt or input) audio, comma/space separated" };
        var audioTokens = new Option<string>("--audio-tokens") { Description = "instead of --vq02/--vq06: the audio as a \"<audio_N>...\" string" };
        var editType = new Option<string>("--edit-type") { Description = "edit: emotion, style, speed, denoise, vad or paralinguistic" };
        var editInfo = new Option<string>("--edit-info") { Description = "edit: e.g. happy (emotion), whisper (style), faster (speed), remove" };
        var audioText = new Option<string>("--audio-text") { Description = "edit: transcript of the input audio" };
        var text = new Option<string>("--text") { Description = "edit (paralinguistic): the new text with tags such as [Laughter]" };

        var command = new Command("prompt", "Print the LLM prompt ids of a clone or edit request, id for id as the reference tts.py builds them.");
        foreach (var o in new Option[] { tokenizer, mode, targetText, promptText, speaker, samples, vq02, vq06, audioTokens, editType, editInfo, audioText, text })
            command.Options.Add(o);
        command.SetAction(r =>
        {
            var tok = StepTokenizer.Load(r.GetValue(tokenizer)!);
            string audio = AudioString(r.GetValue(audioTokens), r.GetValue(vq02), r.GetValue(vq06));
            int[] ids;
            if (r.GetValue(mode) == "clone")
            {
                string prompt = r.GetValue(promptText) ?? throw new ArgumentException("clone needs --prompt-text");
                string target = r.GetValue(targetText) ?? throw new ArgumentException("clone needs --target-text");
                string spk = r.GetValue(speaker) ?? (r.GetValue(samples) is { } f ? SpeakerId.Compute(prompt, ReadFloats(f))
                    : throw new ArgumentException("clone needs --speaker or --prompt-samples"));
                ids = ClonePrompt.Build(tok, target, prompt, spk, audio);
            }
            else
            {
                var type = EditPrompt.ParseEditType(r.GetValue(editType) ?? throw new ArgumentException("edit needs --edit-type"));
                string instruction = EditPrompt.BuildInstruction(type, r.GetValue(audioText), r.GetValue(editInfo), r.GetValue(text));
                ids = EditPrompt.Build(tok, instruction, audio);
            }
            Console.WriteLine(string.Join(' ', ids));
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

    static string AudioString(string? tokens, string? vq02, string? vq06)
    {
        if (tokens != null)
        {
            AudioTokens.ParseTokenString(tokens); // validates the syntax
            return tokens;
        }
        if (vq02 == null || vq06 == null) throw new ArgumentException("give the audio as --vq02 and --vq06 codes or as --audio-tokens");
        return AudioTokens.ToTokenString(ParseInts(vq02, "--vq02"), ParseInts(vq06, "--vq06"));
    }

    static int[] ParseInts(string s, string what) =>
        s.Split([',', ' ', '\n', '\t'], StringSplitOptions.RemoveEmptyEntries)
         .Select(x => int.TryParse(x, out int v) ? v : throw new ArgumentException($"{what}: '{x}' is not an integer")).ToArray();

    static float[] ReadFloats(FileInfo file)
    {
        if (!file.Exists) throw new FileNotFoundException($"prompt samples file not found: {file.FullName}");
        var bytes = File.ReadAllBytes(file.FullName);
        if (bytes.Length % 4 != 0) throw new ArgumentException($"{file.FullName}: {bytes.Length} bytes is not a whole number of float32 samples");
        var floats = new float[bytes.Length / 4];
        for (int i = 0; i < floats.Length; i++) floats[i] = System.Buffers.Binary.BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan(i * 4));
        return floats;
    }
}
