using System.Text;
using StepAudio.Text;
using static StepAudio.Tests.Text.TextFixtures;

namespace StepAudio.Tests.Text;

/// <summary>Tokenizer ids, pieces and decoded text vs the oracle (HF tokenizers pipeline of transformers 4.53.3), exact.</summary>
public class TokenizerTests
{
    public static TheoryData<string> Sets => ["tiny", "real"];

    [Theory]
    [MemberData(nameof(Sets))]
    public void EncodesTheCorpusExactly(string set)
    {
        var tok = TokenizerFor(set);
        var cases = Expected(set).GetProperty("corpus").EnumerateArray().ToList();
        Assert.True(cases.Count > 40);
        foreach (var c in cases)
        {
            string text = c.GetProperty("text").GetString()!;
            Assert.True(Ints(c.GetProperty("ids")).SequenceEqual(tok.Encode(text)),
                $"ids of {Show(text)}: expected [{string.Join(",", Ints(c.GetProperty("ids")))}] got [{string.Join(",", tok.Encode(text))}]");
            Assert.Equal(Strings(c.GetProperty("pieces")), tok.EncodeToPieces(text));
        }
    }

    [Theory]
    [MemberData(nameof(Sets))]
    public void DecodesTheCorpusExactly(string set)
    {
        var tok = TokenizerFor(set);
        foreach (var c in Expected(set).GetProperty("corpus").EnumerateArray())
        {
            var ids = Ints(c.GetProperty("ids"));
            Assert.Equal(c.GetProperty("decoded").GetString(), tok.Decode(ids));
            Assert.Equal(c.GetProperty("decoded_skip_special").GetString(), tok.Decode(ids, skipSpecialTokens: true));
        }
    }

    [Theory]
    [MemberData(nameof(Sets))]
    public void AudioTokensMapToTheirIds(string set)
    {
        var tok = TokenizerFor(set);
        int baseId = Expected(set).GetProperty("audio_base").GetInt32();
        Assert.Equal(baseId, tok.AudioTokenBase);
        var rng = new Random();
        var codes = Enumerable.Range(0, 50).Select(_ => rng.Next(AudioTokens.TokenCount)).ToArray();
        Assert.Equal(codes.Select(c => baseId + c), tok.Encode(AudioTokens.ToTokenString(codes)));
        Assert.Equal(AudioTokens.ToTokenString(codes), tok.Decode(codes.Select(c => baseId + c)));
    }

    [Fact]
    public void RealTokenizerMatchesThePublishedTestVector()
    {
        var tok = TokenizerFor("real");
        // [MLXS] tests/checkpoint: encode("<s><|BOT|> assistant\n<audio_1><|EOT|>") == [1, 4, 15886, 78, 65537, 3]
        Assert.Equal([1, 4, 15886, 78, 65537, 3], tok.Encode("<s><|BOT|> assistant\n<audio_1><|EOT|>"));
        Assert.Equal(65536, tok.AudioTokenBase);
        Assert.Equal(74752, tok.VocabSize);
    }

    [Fact]
    public void TinyModelMirrorsTheReleaseLayout()
    {
        var tok = TinyTokenizer;
        Assert.Equal(0, tok.UnkId);
        Assert.Equal(1, tok.BosId);
        Assert.Equal(["<s>", "</s>", "<|EOT|>", "<|BOT|>"], new[] { 1, 2, 3, 4 }.Select(tok.IdToPiece));
        Assert.Equal(68 + 0x0A, tok.PieceToId("<0x0A>"));
        Assert.True(tok.IsSpecial(3) && tok.IsSpecial(4) && !tok.IsSpecial(tok.AudioTokenBase));
        Assert.False(tok.Legacy);
    }

    /// <summary>Fresh random text (no added-token syntax, not starting with a space) survives encode → decode.</summary>
    [Fact]
    public void RandomTextRoundTrips()
    {
        var tok = TinyTokenizer;
        var rng = new Random();
        string alphabet = "abcdefghijklmnopqrstuvwxyz ABCXYZ0123456789,.!?[]()-_\n\t你好世界今天天气真不错我们去公园散步吧笑哈。，！？😀🎉𠀀龘éß";
        var runes = alphabet.EnumerateRunes().ToArray();
        for (int trial = 0; trial < 300; trial++)
        {
            var sb = new StringBuilder();
            int n = rng.Next(1, 40);
            for (int i = 0; i < n; i++) sb.Append(runes[rng.Next(runes.Length)].ToString());
            string text = sb.ToString().TrimStart(' ');
            if (text.Length == 0) continue;
            var ids = tok.Encode(text);
            Assert.Equal(text, tok.Decode(ids));
        }
    }

    [Fact]
    public void BadFoldersAndFilesGiveClearErrors()
    {
        var missing = Assert.Throws<TokenizerFormatException>(() => StepTokenizer.Load("/nonexistent/tokenizer/dir"));
        Assert.Contains("/nonexistent/tokenizer/dir", missing.Message);

        string dir = Directory.CreateTempSubdirectory("steptok").FullName;
        try
        {
            File.WriteAllBytes(Path.Combine(dir, "tokenizer.model"), [0x0a, 0x05, 0x0a, 0x03, 0x61]); // truncated piece
            var bad = Assert.Throws<TokenizerFormatException>(() => StepTokenizer.Load(dir));
            Assert.Contains("tokenizer.model", bad.Message);

            File.Copy(Path.Combine(TinyTokenizerDir, "tokenizer.model"), Path.Combine(dir, "tokenizer.model"), overwrite: true);
            File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), "{\"tokenizer_class\": \"GPT2Tokenizer\"}");
            var cls = Assert.Throws<TokenizerFormatException>(() => StepTokenizer.Load(dir));
            Assert.Contains("GPT2Tokenizer", cls.Message);

            File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), "{ not json");
            Assert.Contains("tokenizer_config.json", Assert.Throws<TokenizerFormatException>(() => StepTokenizer.Load(dir)).Message);
        }
        finally { Directory.Delete(dir, recursive: true); }

        var oob = Assert.Throws<ArgumentOutOfRangeException>(() => TinyTokenizer.Decode([1_000_000]));
        Assert.Contains("1000000", oob.Message);
    }

    static string Show(string s) => System.Text.Json.JsonSerializer.Serialize(s);
}
