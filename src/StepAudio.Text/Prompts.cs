using System.Security.Cryptography;
using System.Text;

namespace StepAudio.Text;

/// <summary>The reference's prompt strings, byte for byte (config/prompts.py; stepaudio-spec.md §3.1).</summary>
public static class PromptTemplates
{
    /// <summary>Clone system prompt; note the trailing spaces after "speaker prompt text:" and "speaker audio tokens:"
    /// and the final newline. Placeholders: {0} speaker, {1} prompt text, {2} prompt audio tokens.</summary>
    public const string CloneSystem =
        "Generate audio with the following timbre, prosody and speaking style\n\n[speaker_start]\nspeaker name: {0}\n" +
        "speaker prompt text: \n{1}\nspeaker audio tokens: \n{2}\n[speaker_end]\n";

    public const string EditSystem =
        "As a highly skilled audio editing and tuning specialist, you excel in interpreting user instructions and applying " +
        "precise adjustments to meet their needs. Your expertise spans a wide range of enhancement capabilities, including " +
        "but not limited to:\n# Emotional Enhancement\n# Speaking Style Transfer\n# Non-linguistic Adjustments\n# Audio " +
        "Tuning & Editing\nNote: You will receive instructions in natural language and are expected to accurately " +
        "interpret and execute the most suitable audio edits and enhancements.\n";

    /// <summary>Chat-turn ids tts.py writes directly: &lt;s&gt;, &lt;|BOT|&gt;, &lt;|EOT|&gt;.</summary>
    public const int Bos = 1, Bot = 4, Eot = 3;

    /// <summary>Python's <c>str.strip()</c> (its whitespace set, which differs slightly from .NET's).</summary>
    public static string PyStrip(string s)
    {
        int start = 0, end = s.Length;
        while (start < end && IsPySpace(s[start])) start++;
        while (end > start && IsPySpace(s[end - 1])) end--;
        return s[start..end];
    }

    static bool IsPySpace(char c) => c is (>= '\t' and <= '\r') or (>= '\x1c' and <= ' ') or '\x85' or '\xa0' or '\u1680'
        or (>= '\u2000' and <= '\u200a') or '\u2028' or '\u2029' or '\u202f' or '\u205f' or '\u3000';
}

/// <summary>The clone speaker id of tts.py <c>generate_clone_voice_id</c> (stepaudio-spec.md §3.2).</summary>
public static class SpeakerId
{
    /// <summary>
    /// <c>"clone_" + sha256(utf8(promptText) ‖ samples)[:16 hex]</c>, where samples are the raw float32 values of the
    /// prompt file as torchaudio loads them (before mono mixing and peak normalisation), flattened channel-major
    /// (all of channel 0, then channel 1, …); when there are more than 2000 values only the first 1000 and last 1000
    /// are hashed. Bytes are little-endian float32.
    /// </summary>
    public static string Compute(string promptText, ReadOnlySpan<float> samplesChannelMajor)
    {
        ArgumentNullException.ThrowIfNull(promptText);
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        sha.AppendData(Encoding.UTF8.GetBytes(promptText));
        if (samplesChannelMajor.Length > 2000)
        {
            AppendFloats(sha, samplesChannelMajor[..1000]);
            AppendFloats(sha, samplesChannelMajor[^1000..]);
        }
        else
            AppendFloats(sha, samplesChannelMajor);
        return "clone_" + Convert.ToHexStringLower(sha.GetHashAndReset())[..16];
    }

    static void AppendFloats(IncrementalHash sha, ReadOnlySpan<float> values)
    {
        var bytes = new byte[values.Length * 4];
        for (int i = 0; i < values.Length; i++)
            System.Buffers.Binary.BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(i * 4), values[i]);
        sha.AppendData(bytes);
    }
}

/// <summary>The zero-shot clone prompt of tts.py <c>_encode_audio_edit_clone_prompt</c> (stepaudio-spec.md §3.3).</summary>
public static class ClonePrompt
{
    /// <summary>
    /// Prompt ids, id for id as tts.py builds them:
    /// <c>[1] + [4] + enc("system\n" + sys) + [3] + [4] + enc("human\n") + enc("\n" + target)[len(enc("\n")):] + [3]
    /// + [4] + enc("assistant\n")</c>, sys = the clone template with the speaker id, the prompt text (not stripped) and
    /// the prompt audio tokens. The "\n" prefix makes the target text tokenised as if it followed a newline (no dummy ▁).
    /// Dialect tags ([Sichuanese], …) and pinyin are simply part of <paramref name="targetText"/>.
    /// </summary>
    public static int[] Build(StepTokenizer tokenizer, string targetText, string promptText, string speakerId, string promptAudioTokens)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(targetText);
        ArgumentNullException.ThrowIfNull(promptText);
        ArgumentNullException.ThrowIfNull(speakerId);
        ArgumentNullException.ThrowIfNull(promptAudioTokens);
        string system = string.Format(PromptTemplates.CloneSystem, speakerId, promptText, promptAudioTokens);
        int newlineLength = tokenizer.Encode("\n").Length;
        var target = tokenizer.Encode("\n" + targetText);
        var ids = new List<int> { PromptTemplates.Bos, PromptTemplates.Bot };
        ids.AddRange(tokenizer.Encode("system\n" + system));
        ids.Add(PromptTemplates.Eot);
        ids.Add(PromptTemplates.Bot);
        ids.AddRange(tokenizer.Encode("human\n"));
        ids.AddRange(target.Skip(newlineLength));
        ids.Add(PromptTemplates.Eot);
        ids.Add(PromptTemplates.Bot);
        ids.AddRange(tokenizer.Encode("assistant\n"));
        return ids.ToArray();
    }

    /// <summary>Clone prompt from the prompt audio's codes and raw samples (speaker id computed as the reference does).</summary>
    public static int[] Build(StepTokenizer tokenizer, string targetText, string promptText, ReadOnlySpan<float> promptSamplesChannelMajor,
        IReadOnlyList<int> vq02, IReadOnlyList<int> vq06) =>
        Build(tokenizer, targetText, promptText, SpeakerId.Compute(promptText, promptSamplesChannelMajor), AudioTokens.ToTokenString(vq02, vq06));
}

/// <summary>The edit types of the reference (config/edit_config.py).</summary>
public enum EditType { Emotion, Style, Speed, Denoise, Vad, Paralinguistic }

/// <summary>The audio edit prompt of tts.py <c>_build_audio_edit_instruction</c> + <c>_encode_audio_edit_prompt</c>
/// (stepaudio-spec.md §3.4).</summary>
public static class EditPrompt
{
    /// <summary>Allowed edit_info values per edit type (config/edit_config.py; speed also takes "remove", which tts.py
    /// handles like emotion's). Denoise, vad and paralinguistic take none.</summary>
    public static readonly IReadOnlyDictionary<EditType, IReadOnlyList<string>> AllowedInfo = new Dictionary<EditType, IReadOnlyList<string>>
    {
        [EditType.Emotion] = ["happy", "angry", "sad", "humour", "confusion", "disgusted", "empathy", "embarrass", "fear",
            "surprised", "excited", "depressed", "coldness", "admiration", "remove"],
        [EditType.Style] = ["serious", "arrogant", "child", "older", "girl", "pure", "sister", "sweet", "ethereal", "whisper",
            "gentle", "recite", "generous", "act_coy", "warm", "shy", "comfort", "authority", "chat", "radio", "soulful",
            "story", "vivid", "program", "news", "advertising", "roar", "murmur", "shout", "deeply", "loudly", "remove",
            "exaggerated"],
        [EditType.Speed] = ["faster", "slower", "more faster", "more slower", "remove"],
        [EditType.Denoise] = [],
        [EditType.Vad] = [],
        [EditType.Paralinguistic] = [],
    };

    /// <summary>The tags the model knows for paralinguistic edits (README); they go inside the new text.</summary>
    public static readonly IReadOnlyList<string> ParalinguisticTags =
        ["[Breathing]", "[Laughter]", "[Surprise-oh]", "[Confirmation-en]", "[Uhm]", "[Surprise-ah]", "[Surprise-wa]",
         "[Sigh]", "[Question-ei]", "[Dissatisfaction-hnn]"];

    /// <summary>Parses an edit type name (emotion, style, speed, denoise, vad, paralinguistic); anything else is an
    /// error listing the allowed names.</summary>
    public static EditType ParseEditType(string name) => name switch
    {
        "emotion" => EditType.Emotion,
        "style" => EditType.Style,
        "speed" => EditType.Speed,
        "denoise" => EditType.Denoise,
        "vad" => EditType.Vad,
        "paralinguistic" => EditType.Paralinguistic,
        _ => throw new ArgumentException($"unsupported edit type '{name}'; allowed: emotion, style, speed, denoise, vad, paralinguistic", nameof(name)),
    };

    /// <summary>The reference's name of an edit type.</summary>
    public static string Name(EditType type) => type.ToString().ToLowerInvariant();

    /// <summary>
    /// The instruction prefix, exact strings of tts.py <c>_build_audio_edit_instruction</c>. <paramref name="audioText"/>
    /// (the input audio's transcript; null counts as empty) is stripped; <paramref name="info"/> must be one of <see cref="AllowedInfo"/>
    /// for emotion/style/speed and absent otherwise; <paramref name="text"/> (the new text with tags) is required for
    /// paralinguistic and ignored otherwise.
    /// </summary>
    public static string BuildInstruction(EditType type, string? audioText, string? info = null, string? text = null)
    {
        ValidateInfo(type, info);
        string at = PromptTemplates.PyStrip(audioText ?? "");
        switch (type)
        {
            case EditType.Emotion or EditType.Speed:
                return info == "remove"
                    ? $"Remove any emotion in the following audio and the reference text is: {at}\n"
                    : $"Make the following audio more {info}. The text corresponding to the audio is: {at}\n";
            case EditType.Style:
                return info == "remove"
                    ? $"Remove any speaking styles in the following audio and the reference text is: {at}\n"
                    : $"Make the following audio more {info} style. The text corresponding to the audio is: {at}\n";
            case EditType.Denoise:
                return "Remove any noise from the given audio while preserving the voice content clearly. Ensure that the speech " +
                       "quality remains intact with minimal distortion, and eliminate all noise from the audio.\n";
            case EditType.Vad:
                return "Remove any silent portions from the given audio while preserving the voice content clearly. Ensure that the " +
                       "speech quality remains intact with minimal distortion, and eliminate all silence from the audio.\n";
            case EditType.Paralinguistic:
                if (text is null)
                    throw new ArgumentException("the paralinguistic edit needs the new text (with tags such as [Laughter])", nameof(text));
                return $"Add some non-verbal sounds to make the audio more natural, the new text is : {text}\n  The text corresponding to the audio is: {at}\n";
            default:
                throw new ArgumentOutOfRangeException(nameof(type), type, "unknown edit type");
        }
    }

    static void ValidateInfo(EditType type, string? info)
    {
        var allowed = AllowedInfo[type];
        if (allowed.Count == 0)
        {
            if (!string.IsNullOrEmpty(info))
                throw new ArgumentException($"edit type '{Name(type)}' takes no edit info (got '{info}')", nameof(info));
            return;
        }
        if (info is null || !allowed.Contains(info))
            throw new ArgumentException(
                $"edit info '{info}' is not allowed for edit type '{Name(type)}'; allowed: {string.Join(", ", allowed.Select(a => a.Contains(' ') ? $"\"{a}\"" : a))}",
                nameof(info));
    }

    /// <summary>
    /// Prompt ids from an instruction prefix and the input audio's token string, id for id as tts.py:
    /// <c>[1] + [4] + enc("system\n" + EDIT_SYS) + [3] + [4] + enc("human\n") + enc(prefix + "\n" + audio.strip() + "\n")
    /// + [3] + [4] + enc("assistant\n")</c>. The prefix is a separate encode, so its first word gets the dummy ▁.
    /// </summary>
    public static int[] Build(StepTokenizer tokenizer, string instructionPrefix, string audioTokens)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(instructionPrefix);
        ArgumentNullException.ThrowIfNull(audioTokens);
        var ids = new List<int> { PromptTemplates.Bos, PromptTemplates.Bot };
        ids.AddRange(tokenizer.Encode("system\n" + PromptTemplates.EditSystem));
        ids.Add(PromptTemplates.Eot);
        ids.Add(PromptTemplates.Bot);
        ids.AddRange(tokenizer.Encode("human\n"));
        ids.AddRange(tokenizer.Encode(instructionPrefix + "\n" + PromptTemplates.PyStrip(audioTokens) + "\n"));
        ids.Add(PromptTemplates.Eot);
        ids.Add(PromptTemplates.Bot);
        ids.AddRange(tokenizer.Encode("assistant\n"));
        return ids.ToArray();
    }

    /// <summary>Edit prompt ids from the edit request and the input audio's vq02/vq06 codes.</summary>
    public static int[] Build(StepTokenizer tokenizer, EditType type, string? info, string audioText, string? text,
        IReadOnlyList<int> vq02, IReadOnlyList<int> vq06) =>
        Build(tokenizer, BuildInstruction(type, audioText, info, text), AudioTokens.ToTokenString(vq02, vq06));

    /// <summary>
    /// Iterative editing (tts_infer.py / app.py): the next iteration edits the previous output, so its input audio is
    /// the previous output waveform tokenised again by the audio tokenizer (not the generated ids themselves), and its
    /// audio text is the previous target text: the new text for a paralinguistic edit, otherwise the unchanged audio
    /// text. Returns the audio text to pass with the next request.
    /// </summary>
    public static string NextIterationAudioText(EditType previousType, string previousAudioText, string? previousText) =>
        previousType == EditType.Paralinguistic
            ? previousText ?? throw new ArgumentException("a paralinguistic edit has a new text", nameof(previousText))
            : previousAudioText;
}
