using StepAudio.Text;
using static StepAudio.Tests.Text.TextFixtures;

namespace StepAudio.Tests.Text;

/// <summary>Audio-token mapping (2:3 interleave, ids, generated → codes, _reshape) and the clone speaker id vs the
/// oracle (Python transcription of tokenizer.py / tts.py / cosyvoice.py and hashlib), exact.</summary>
public class AudioTokenTests
{
    static System.Text.Json.JsonElement Mapping => Expected("tiny").GetProperty("mapping");

    [Fact]
    public void InterleaveMatchesWav2Token()
    {
        int n = 0;
        foreach (var c in Mapping.GetProperty("wav2token").EnumerateArray())
        {
            var vq02 = Ints(c.GetProperty("vq02"));
            var vq06 = Ints(c.GetProperty("vq06"));
            Assert.Equal(Ints(c.GetProperty("ids")), AudioTokens.CodesToIds(AudioTokens.Interleave(vq02, vq06)));
            Assert.Equal(c.GetProperty("str").GetString(), AudioTokens.ToTokenString(vq02, vq06));
            n++;
        }
        Assert.Equal(5, n);
    }

    [Fact]
    public void GeneratedIdsBecomeReshapedVocoderCodes()
    {
        int n = 0;
        foreach (var c in Mapping.GetProperty("reshape").EnumerateArray())
        {
            var codes = AudioTokens.GeneratedToCodes(Ints(c.GetProperty("generated")));
            Assert.Equal(Ints(c.GetProperty("codes")), codes);
            var expected = c.GetProperty("reshaped").EnumerateArray().Select(Ints).ToArray();
            var actual = AudioTokens.Reshape(codes);
            Assert.Equal(expected.Length, actual.GetLength(0));
            for (int t = 0; t < expected.Length; t++)
                Assert.Equal(expected[t], new[] { actual[t, 0], actual[t, 1] });
            n++;
        }
        Assert.Equal(11, n); // every remainder mod 5, twice
    }

    [Fact]
    public void SpeakerIdsMatchHashlib()
    {
        foreach (var c in Mapping.GetProperty("speaker_ids").EnumerateArray())
        {
            var samples = LcgSamples(c.GetProperty("n").GetInt32(), c.GetProperty("seed").GetInt32());
            Assert.Equal(c.GetProperty("id").GetString(), SpeakerId.Compute(c.GetProperty("text").GetString()!, samples));
        }
    }

    /// <summary>The release numbering: &lt;audio_N&gt; = 65536 + N, vq06 at +1024, on fresh random codes.</summary>
    [Fact]
    public void RealNumberingOnRandomCodes()
    {
        var rng = new Random();
        int groups = rng.Next(5, 40);
        var vq02 = Enumerable.Range(0, groups * 2 + rng.Next(2)).Select(_ => rng.Next(1024)).ToArray();
        var vq06 = Enumerable.Range(0, groups * 3 + rng.Next(3)).Select(_ => rng.Next(4096)).ToArray();
        var ids = AudioTokens.CodesToIds(AudioTokens.Interleave(vq02, vq06));
        Assert.Equal(groups * 5, ids.Length);
        for (int g = 0; g < groups; g++)
        {
            Assert.Equal(65536 + vq02[2 * g], ids[5 * g]);
            Assert.Equal(65536 + vq02[2 * g + 1], ids[5 * g + 1]);
            for (int k = 0; k < 3; k++) Assert.Equal(65536 + 1024 + vq06[3 * g + k], ids[5 * g + 2 + k]);
        }
        // generated ids + EOS -> codes -> vocoder pairs: vq02 column keeps codes, vq06 column is code + 1025
        var codes = AudioTokens.GeneratedToCodes([.. ids, 3]);
        var pairs = AudioTokens.Reshape(codes);
        Assert.Equal(groups * 3, pairs.GetLength(0));
        Assert.Equal(vq02[0], pairs[0, 0]);
        Assert.Equal(1024, pairs[2, 0]);
        Assert.Equal(vq06[2] + 1025, pairs[2, 1]);
        Assert.Equal(AudioTokens.Interleave(vq02, vq06), AudioTokens.ParseTokenString(AudioTokens.ToTokenString(vq02, vq06)));
        Assert.Equal(AudioTokens.Interleave(vq02, vq06), AudioTokens.IdsToCodes(ids));
    }

    [Fact]
    public void OutOfRangeCodesAreRejected()
    {
        Assert.Contains("vq02[1] = 1024", Assert.Throws<ArgumentOutOfRangeException>(() => AudioTokens.Interleave([1, 1024], [1, 2, 3])).Message);
        Assert.Contains("vq06[0] = -1", Assert.Throws<ArgumentOutOfRangeException>(() => AudioTokens.Interleave([1, 2], [-1, 2, 3])).Message);
        Assert.Throws<FormatException>(() => AudioTokens.ParseTokenString("<audio_1><audio_x>"));
        Assert.Empty(AudioTokens.GeneratedToCodes([]));
    }
}
