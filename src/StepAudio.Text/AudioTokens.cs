using System.Text;

namespace StepAudio.Text;

/// <summary>
/// The mapping between audio-tokenizer codes, the LLM's <c>&lt;audio_N&gt;</c> tokens and the vocoder's token pairs
/// (stepaudio-spec.md §2.2, §3.5, §4.4, §5.3). Terms:
/// <list type="bullet">
/// <item>vq02 code ∈ [0,1024) (linguistic, 16.67 Hz), vq06 code ∈ [0,4096) (semantic, 25 Hz).</item>
/// <item>mixed code: the 2:3 interleave per 120 ms group, <c>[a0, a1, 1024+b0, 1024+b1, 1024+b2]</c>; vq02 codes stay,
/// vq06 codes get +1024. <c>&lt;audio_N&gt;</c> has N = mixed code, and LLM id = 65536 + N.</item>
/// <item>vocoder pair: <see cref="Reshape"/> turns 5 mixed codes into 3 time steps of (vq02 or 1024 pad, vq06 + 1025).</item>
/// </list>
/// </summary>
public static class AudioTokens
{
    /// <summary>LLM id of <c>&lt;audio_0&gt;</c> in the Step1 vocabulary.</summary>
    public const int IdBase = 65536;
    public const int Vq02CodebookSize = 1024;
    public const int Vq06CodebookSize = 4096;
    /// <summary>Offset of vq06 codes inside the mixed code space.</summary>
    public const int Vq06Offset = 1024;
    /// <summary>Number of <c>&lt;audio_N&gt;</c> tokens in the vocabulary (only the first 5120 are ever produced).</summary>
    public const int TokenCount = 9216;
    /// <summary>Control tokens at the start of the vocabulary (<c>&lt;unk&gt;</c> 0, <c>&lt;s&gt;</c> 1, <c>&lt;/s&gt;</c> 2,
    /// <c>&lt;|EOT|&gt;</c> 3, <c>&lt;|BOT|&gt;</c> 4, …): the byte pieces start at 68 (<c>&lt;0x0A&gt;</c> = 78, spec §2.1).</summary>
    public const int ControlTokenCount = 68;

    /// <summary>The ids that are not text pieces, as (first id, count) runs: the control tokens (EOS among them) and
    /// the audio tokens — everything an audio generation can use. For the model option that computes logits only for
    /// these (StepAudio.Model.ModelOptions.LogitIds).</summary>
    public static (int Start, int Count)[] NonTextIds(int vocabSize)
    {
        if (vocabSize <= IdBase)
            throw new ArgumentException($"vocab_size {vocabSize} has no audio ids (they start at {IdBase}): not the Step-Audio vocabulary");
        return [(0, ControlTokenCount), (IdBase, vocabSize - IdBase)];
    }

    /// <summary>Interleaves vq02/vq06 codes 2:3 into mixed codes, as tokenizer.py (<c>merge_vq0206_to_token_str</c>,
    /// <c>wav2token</c>): groups = min(len(vq02)/2, len(vq06)/3), the tails are dropped.</summary>
    public static int[] Interleave(IReadOnlyList<int> vq02, IReadOnlyList<int> vq06)
    {
        ArgumentNullException.ThrowIfNull(vq02);
        ArgumentNullException.ThrowIfNull(vq06);
        int groups = Math.Min(vq02.Count / 2, vq06.Count / 3);
        var mixed = new int[groups * 5];
        for (int g = 0; g < groups; g++)
        {
            mixed[g * 5] = CheckCode(vq02[g * 2], Vq02CodebookSize, "vq02", g * 2);
            mixed[g * 5 + 1] = CheckCode(vq02[g * 2 + 1], Vq02CodebookSize, "vq02", g * 2 + 1);
            for (int k = 0; k < 3; k++)
                mixed[g * 5 + 2 + k] = Vq06Offset + CheckCode(vq06[g * 3 + k], Vq06CodebookSize, "vq06", g * 3 + k);
        }
        return mixed;
    }

    static int CheckCode(int code, int size, string name, int index) =>
        (uint)code < (uint)size ? code : throw new ArgumentOutOfRangeException(name, code, $"{name}[{index}] = {code} is outside [0, {size})");

    /// <summary>LLM ids of mixed codes (+65536): <c>wav2token</c>'s <c>vq0206_codes</c>.</summary>
    public static int[] CodesToIds(IEnumerable<int> mixedCodes) => mixedCodes.Select(c => IdBase + c).ToArray();

    /// <summary>Mixed codes of LLM ids (−65536): the prompt codes the reference hands the vocoder. Ids below 65536
    /// give negative codes, as in the reference (the flow embedding later clamps them to 0).</summary>
    public static int[] IdsToCodes(IEnumerable<int> ids) => ids.Select(id => id - IdBase).ToArray();

    /// <summary>The vocoder codes of a generation as tts.py takes them: <c>output_ids[len(prompt):-1] − 65536</c>. The
    /// last generated id is dropped unconditionally (it is EOS unless max_length cut the generation).</summary>
    public static int[] GeneratedToCodes(IReadOnlyList<int> generatedIds)
    {
        ArgumentNullException.ThrowIfNull(generatedIds);
        return IdsToCodes(generatedIds.Take(Math.Max(0, generatedIds.Count - 1)));
    }

    /// <summary>The prompt string of mixed codes: <c>"&lt;audio_12&gt;&lt;audio_1873&gt;…"</c>, no separators.</summary>
    public static string ToTokenString(IEnumerable<int> mixedCodes)
    {
        var sb = new StringBuilder();
        foreach (int c in mixedCodes)
        {
            if ((uint)c >= TokenCount) throw new ArgumentOutOfRangeException(nameof(mixedCodes), c, $"audio code {c} has no <audio_N> token (0..{TokenCount - 1})");
            sb.Append("<audio_").Append(c).Append('>');
        }
        return sb.ToString();
    }

    /// <summary>The prompt string of vq02/vq06 codes (interleaved first).</summary>
    public static string ToTokenString(IReadOnlyList<int> vq02, IReadOnlyList<int> vq06) => ToTokenString(Interleave(vq02, vq06));

    /// <summary>
    /// cosyvoice.py <c>_reshape</c>: pads mixed codes to a multiple of 5 with the tail of <c>[0,0,0,1024,1024,1024]</c>,
    /// then each group of 5 becomes 3 time steps: column 0 = <c>[m0, m1, 1024]</c> (1024 = vq02 pad), column 1 =
    /// <c>[m2, m3, m4] − 1024 + 1025</c>. Returns [T, 2] with T = 3·groups.
    /// </summary>
    public static int[,] Reshape(IReadOnlyList<int> mixedCodes)
    {
        ArgumentNullException.ThrowIfNull(mixedCodes);
        int[] padTail = [0, 0, 0, 1024, 1024, 1024];
        var m = mixedCodes.ToList();
        int rem = m.Count % 5;
        if (rem > 0) m.AddRange(padTail[(6 - (5 - rem))..]);
        int groups = m.Count / 5;
        var result = new int[groups * 3, 2];
        for (int g = 0; g < groups; g++)
        {
            result[g * 3, 0] = m[g * 5];
            result[g * 3 + 1, 0] = m[g * 5 + 1];
            result[g * 3 + 2, 0] = 1024;
            for (int k = 0; k < 3; k++) result[g * 3 + k, 1] = m[g * 5 + 2 + k] - 1024 + 1025;
        }
        return result;
    }

    /// <summary>Parses a <c>&lt;audio_N&gt;…</c> string back into mixed codes (the inverse of <see cref="ToTokenString(IEnumerable{int})"/>).</summary>
    public static int[] ParseTokenString(string tokens)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        var codes = new List<int>();
        int i = 0;
        while (i < tokens.Length)
        {
            int close = tokens.IndexOf('>', i);
            if (!tokens.AsSpan(i).StartsWith("<audio_") || close < 0 ||
                !int.TryParse(tokens.AsSpan(i + 7, close - i - 7), System.Globalization.NumberStyles.None, null, out int code))
                throw new FormatException($"not an <audio_N> token at offset {i}: '{tokens[i..Math.Min(tokens.Length, i + 20)]}'");
            codes.Add(code);
            i = close + 1;
        }
        return codes.ToArray();
    }
}
