using System.Text.Json;
using StepAudio.Text;
using static StepAudio.Tests.Text.TextFixtures;

namespace StepAudio.Tests.Text;

/// <summary>Clone and edit prompt ids vs the oracle's transcription of tts.py, exact, on the fixture tokenizers.</summary>
public class PromptTests
{
    public static TheoryData<string> Sets => ["tiny", "real"];

    [Theory]
    [MemberData(nameof(Sets))]
    public void ClonePromptsMatchTheReference(string set)
    {
        var tok = TokenizerFor(set);
        var p = Expected(set).GetProperty("prompts");
        var samples = LcgSamples(p.GetProperty("samples_count").GetInt32(), p.GetProperty("samples_seed").GetInt32());
        string promptText = p.GetProperty("prompt_text").GetString()!;
        var vq02 = Ints(p.GetProperty("vq02"));
        var vq06 = Ints(p.GetProperty("vq06"));
        Assert.Equal(p.GetProperty("speaker").GetString(), SpeakerId.Compute(promptText, samples));
        Assert.Equal(p.GetProperty("audio_str").GetString(), AudioTokens.ToTokenString(vq02, vq06));
        int count = 0;
        foreach (var c in p.GetProperty("clone").EnumerateArray())
        {
            string target = c.GetProperty("target_text").GetString()!;
            var ids = ClonePrompt.Build(tok, target, promptText, samples, vq02, vq06);
            AssertIds(Ints(c.GetProperty("ids")), ids, $"clone '{target}'");
            count++;
        }
        Assert.Equal(6, count);
    }

    [Theory]
    [MemberData(nameof(Sets))]
    public void EditPromptsMatchTheReference(string set)
    {
        var tok = TokenizerFor(set);
        var p = Expected(set).GetProperty("prompts");
        var vq02 = Ints(p.GetProperty("vq02"));
        var vq06 = Ints(p.GetProperty("vq06"));
        string audioText = p.GetProperty("edit_audio_text").GetString()!;
        var seen = new HashSet<EditType>();
        foreach (var e in p.GetProperty("edit").EnumerateArray())
        {
            var type = EditPrompt.ParseEditType(e.GetProperty("edit_type").GetString()!);
            string? info = e.GetProperty("edit_info").ValueKind == JsonValueKind.Null ? null : e.GetProperty("edit_info").GetString();
            string? text = e.GetProperty("text").ValueKind == JsonValueKind.Null ? null : e.GetProperty("text").GetString();
            string instruction = e.GetProperty("instruction").GetString()!;
            if (info != null && EditPrompt.AllowedInfo[type].Count > 0 && !EditPrompt.AllowedInfo[type].Contains(info))
            {
                // tts.py formats any edit_info; this front end rejects values outside edit_config.py (e.g. emotion act_coy),
                // while the prompt from the reference's instruction still matches id for id.
                Assert.Throws<ArgumentException>(() => EditPrompt.BuildInstruction(type, audioText, info, text));
                AssertIds(Ints(e.GetProperty("ids")), EditPrompt.Build(tok, instruction, AudioTokens.ToTokenString(vq02, vq06)), $"edit {type}/{info}");
                continue;
            }
            Assert.Equal(instruction, EditPrompt.BuildInstruction(type, audioText, info, text));
            AssertIds(Ints(e.GetProperty("ids")), EditPrompt.Build(tok, type, info, audioText, text, vq02, vq06), $"edit {type}/{info}");
            seen.Add(type);
        }
        Assert.Equal(Enum.GetValues<EditType>().Length, seen.Count);
    }

    [Fact]
    public void TemplatesAreByteExact()
    {
        // The trailing spaces and final newline of config/prompts.py (stepaudio-spec.md §3.1).
        Assert.Contains("speaker prompt text: \n{1}\nspeaker audio tokens: \n{2}\n[speaker_end]\n", PromptTemplates.CloneSystem);
        Assert.EndsWith("audio edits and enhancements.\n", PromptTemplates.EditSystem);
        Assert.Contains("the new text is : x\n  The text corresponding",
            EditPrompt.BuildInstruction(EditType.Paralinguistic, "y", null, "x"));
    }

    [Fact]
    public void UnknownEditTypesAndInfosListTheAllowedOnes()
    {
        var type = Assert.Throws<ArgumentException>(() => EditPrompt.ParseEditType("pitch"));
        Assert.Contains("pitch", type.Message);
        Assert.Contains("emotion, style, speed, denoise, vad, paralinguistic", type.Message);

        var info = Assert.Throws<ArgumentException>(() => EditPrompt.BuildInstruction(EditType.Emotion, "t", "joyful"));
        Assert.Contains("joyful", info.Message);
        Assert.Contains("happy", info.Message);
        Assert.Contains("admiration", info.Message);

        var speed = Assert.Throws<ArgumentException>(() => EditPrompt.BuildInstruction(EditType.Speed, "t", "fast"));
        Assert.Contains("\"more faster\"", speed.Message);
        Assert.Throws<ArgumentException>(() => EditPrompt.BuildInstruction(EditType.Style, "t", null));
        Assert.Throws<ArgumentException>(() => EditPrompt.BuildInstruction(EditType.Denoise, "t", "happy"));
        Assert.Throws<ArgumentException>(() => EditPrompt.BuildInstruction(EditType.Paralinguistic, "t", null, null));
    }

    [Fact]
    public void IterationCarriesTheTargetTextForward()
    {
        Assert.Equal("new [Laughter] text", EditPrompt.NextIterationAudioText(EditType.Paralinguistic, "old", "new [Laughter] text"));
        Assert.Equal("old", EditPrompt.NextIterationAudioText(EditType.Emotion, "old", null));
    }

    [Fact]
    public void PyStripUsesPythonWhitespace()
    {
        Assert.Equal("a b", PromptTemplates.PyStrip("\x1c\u3000 a b\t\n\x85"));
        Assert.Equal("\u200ba", PromptTemplates.PyStrip(" \u200ba ")); // zero-width space is not whitespace in Python
    }

    static void AssertIds(int[] expected, int[] actual, string what)
    {
        if (expected.SequenceEqual(actual)) return;
        int i = 0;
        while (i < Math.Min(expected.Length, actual.Length) && expected[i] == actual[i]) i++;
        Assert.Fail($"{what}: first difference at index {i} (expected length {expected.Length}, got {actual.Length}): " +
                    $"expected [{string.Join(",", expected.Skip(Math.Max(0, i - 3)).Take(8))}] got [{string.Join(",", actual.Skip(Math.Max(0, i - 3)).Take(8))}]");
    }
}
