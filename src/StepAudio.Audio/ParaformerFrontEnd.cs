using System.Globalization;

namespace StepAudio.Audio;

/// <summary>Global CMVN from a Kaldi nnet text file (FunASR am.mvn): x = (x + AddShift) · Rescale.</summary>
public sealed class Cmvn
{
    public Cmvn(float[] shift, float[] scale)
    {
        if (shift.Length != scale.Length) throw new ArgumentException($"CMVN shift has {shift.Length} values, scale {scale.Length}");
        Shift = shift; Scale = scale;
    }

    public float[] Shift { get; }
    public float[] Scale { get; }
    public int Dim => Shift.Length;

    /// <summary>Reads the vectors after &lt;AddShift&gt; and &lt;Rescale&gt; (each "[ v1 v2 … ]", usually after
    /// "&lt;LearnRateCoef&gt; 0").</summary>
    public static Cmvn Load(string path, int expectedDim = ParaformerFrontEnd.LfrDim)
    {
        string text;
        try { text = File.ReadAllText(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new AudioFormatException(path, $"cannot read the CMVN file ({e.Message})", e);
        }
        var shift = Vector(text, "<AddShift>", path);
        var scale = Vector(text, "<Rescale>", path);
        if (shift.Length != expectedDim || scale.Length != expectedDim)
            throw new AudioFormatException(path, $"CMVN has {shift.Length} shift / {scale.Length} scale values, expected {expectedDim}");
        return new Cmvn(shift, scale);
    }

    static float[] Vector(string text, string tag, string path)
    {
        int at = text.IndexOf(tag, StringComparison.Ordinal);
        if (at < 0) throw new AudioFormatException(path, $"no {tag} section (not a Kaldi am.mvn file?)");
        int open = text.IndexOf('[', at), close = open < 0 ? -1 : text.IndexOf(']', open);
        if (open < 0 || close < 0) throw new AudioFormatException(path, $"{tag} has no [ … ] vector");
        var parts = text[(open + 1)..close].Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
        var v = new float[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!float.TryParse(parts[i], NumberStyles.Float, CultureInfo.InvariantCulture, out v[i]))
                throw new AudioFormatException(path, $"{tag} value {i} is not a number: '{parts[i]}'");
        return v;
    }
}

/// <summary>The vq02 (Paraformer streaming) front end exactly as the reference runs it: infer_encoder's 240 ms
/// chunks (3840 samples, n = len/3840 + 1, the last one final) through FunASR WavFrontendOnline — kaldi fbank
/// (Hamming, ×32768, snip_edges) on the carried samples + chunk, LFR (m 7, n 6; the first chunk left-pads 3 copies of
/// frame 0; only full windows until the final chunk, which pads with the last frame; unconsumed frames carried as the
/// splice cache), then CMVN. Dither is off by default (the reference's dither 1.0 is unseeded noise).</summary>
public sealed class ParaformerFrontEnd
{
    public const int ChunkSamples = 4 * 960, LfrM = 7, LfrN = 6, MelBins = 80, LfrDim = LfrM * MelBins;
    /// <summary>A final chunk shorter than this that yields no features is skipped, as the reference does.</summary>
    public const int MinFinalChunk = 480;

    readonly KaldiFbank _fbank;
    readonly Cmvn? _cmvn;
    float[] _inputCache = [];
    List<float[]>? _splice; // rows of 80

    public ParaformerFrontEnd(Cmvn? cmvn, KaldiFbankOptions? fbank = null)
    {
        if (cmvn is not null && cmvn.Dim != LfrDim) throw new ArgumentException($"CMVN must have {LfrDim} dims, has {cmvn.Dim}");
        _fbank = new KaldiFbank(fbank ?? KaldiFbankOptions.Paraformer);
        _cmvn = cmvn;
    }

    /// <summary>Whole utterance, chunked like infer_encoder(is_final=True). Returns [frames, 560] and per-chunk counts.</summary>
    public static (FeatureMatrix Features, List<int> ChunkFrames) Compute(ReadOnlySpan<float> audio16k, Cmvn? cmvn,
        KaldiFbankOptions? fbank = null)
    {
        var fe = new ParaformerFrontEnd(cmvn, fbank);
        int n = audio16k.Length / ChunkSamples + 1;
        var rows = new List<float[]>();
        var counts = new List<int>();
        for (int i = 0; i < n; i++)
        {
            bool final = i == n - 1;
            int a = Math.Min(i * ChunkSamples, audio16k.Length), b = Math.Min(a + ChunkSamples, audio16k.Length);
            var chunk = audio16k[a..b];
            if (final && chunk.Length == 0) break;
            var outRows = fe.AcceptChunk(chunk, final);
            if (outRows is null) { if (final) break; counts.Add(0); continue; }
            rows.AddRange(outRows);
            counts.Add(outRows.Count);
        }
        var data = GC.AllocateUninitializedArray<float>(rows.Count * LfrDim);
        for (int r = 0; r < rows.Count; r++) rows[r].CopyTo(data, r * LfrDim);
        return (new FeatureMatrix(rows.Count, LfrDim, data), counts);
    }

    /// <summary>One streaming step. Returns the LFR+CMVN rows, or null when this chunk produced none.</summary>
    public List<float[]>? AcceptChunk(ReadOnlySpan<float> chunk, bool isFinal)
    {
        var buf = new float[_inputCache.Length + chunk.Length];
        _inputCache.CopyTo(buf, 0);
        chunk.CopyTo(buf.AsSpan(_inputCache.Length));
        int frames = _fbank.FrameCount(buf.Length);
        _inputCache = buf[(frames * _fbank.Options.FrameShift)..];
        List<float[]>? lfr = null;
        if (frames > 0)
        {
            var fb = _fbank.Compute(buf);
            var newRows = new List<float[]>(fb.Rows);
            for (int t = 0; t < fb.Rows; t++) newRows.Add(fb.Row(t).ToArray());
            _splice ??= [newRows[0], newRows[0], newRows[0]]; // (m−1)/2 copies of the first frame
            var all = new List<float[]>(_splice);
            all.AddRange(newRows);
            if (all.Count >= LfrM) lfr = ApplyLfr(all, isFinal, out _splice);
            else _splice = all;
        }
        else if (isFinal && _splice is { Count: > 0 })
        {
            lfr = ApplyLfr(_splice, true, out _splice);
            if (lfr.Count == 0) lfr = null; // torch.vstack([]) fails there; the reference skips the short tail
        }
        else if (isFinal && chunk.Length >= MinFinalChunk)
            throw new InvalidOperationException("Paraformer front end: a final chunk without any frames");
        if (lfr is null || lfr.Count == 0) return null;
        if (_cmvn is not null)
            foreach (var row in lfr)
                for (int d = 0; d < LfrDim; d++) row[d] = (row[d] + _cmvn.Shift[d]) * _cmvn.Scale[d];
        return lfr;
    }

    /// <summary>FunASR apply_lfr: T_lfr = ceil((T − 3)/6) windows of 7 frames every 6; an incomplete window ends
    /// the output (non-final) or is padded with the last frame (final). Carry = rows from the next window start.</summary>
    static List<float[]> ApplyLfr(List<float[]> rows, bool isFinal, out List<float[]> carry)
    {
        int T = rows.Count;
        int tLfr = (int)Math.Ceiling((T - (LfrM - 1) / 2) / (double)LfrN);
        int spliceIdx = tLfr;
        var output = new List<float[]>();
        for (int i = 0; i < tLfr; i++)
        {
            if (LfrM <= T - i * LfrN || isFinal)
            {
                var frame = new float[LfrDim];
                for (int j = 0; j < LfrM; j++)
                    rows[Math.Min(i * LfrN + j, T - 1)].CopyTo(frame, j * MelBins);
                output.Add(frame);
            }
            else { spliceIdx = i; break; }
        }
        spliceIdx = Math.Min(T - 1, spliceIdx * LfrN);
        carry = rows.GetRange(spliceIdx, T - spliceIdx);
        return output;
    }
}
