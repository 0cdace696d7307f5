using System.Diagnostics;
using System.Runtime.InteropServices;
using StepAudio.Backends;
using StepAudio.Checkpoints;
using StepAudio.Native;

namespace StepAudio.Model;

/// <summary>Sizes chosen when a model is loaded.</summary>
public sealed record ModelOptions
{
    /// <summary>KV-cache capacity in tokens (prompt + generated). 32 KiB per token for the full Step1.</summary>
    public int MaxContext { get; init; } = 8192;
    /// <summary>Most tokens one forward call processes; longer prompts are prefilled in chunks of this size.</summary>
    public int MaxTokensPerForward { get; init; } = 512;
    /// <summary>How many trailing positions of one forward call get logits (1 for generation; more for tests).</summary>
    public int MaxLogitRows { get; init; } = 1;
    /// <summary>Quantize a base (bf16) checkpoint's transformer linears at load (Nf4: bitsandbytes NF4, blocksize 64,
    /// double quant — the existing server's "bnb" variant). Bf16 keeps them as they are; quantized checkpoints ignore it.</summary>
    public WeightFormat QuantizeAtLoad { get; init; } = WeightFormat.Bf16;
    /// <summary>Quantize lm_head to W4A16 at load (round-to-nearest, symmetric, group 128). Off by default: every
    /// released variant keeps lm_head bf16; this trades a small logit error for ~0.34 GB less read per token.</summary>
    public bool QuantizeLmHead { get; init; }
    /// <summary>Compute logits only for these vocabulary ids, as (first id, count) runs in increasing order, each
    /// starting at an even id; every other logit is −∞, so it is never sampled, and lm_head reads only these rows.
    /// Null (the default): every id, as the reference. Needs <see cref="MaxLogitRows"/> = 1 and must include EOS.
    /// StepAudio.Text's <c>AudioTokens.NonTextIds</c> gives the control and audio ids of the release vocabulary.</summary>
    public IReadOnlyList<(int Start, int Count)>? LogitIds { get; init; }
}

/// <summary>The Step1 LLM on one compute backend: weights (QKV and gate/up fused at load), the KV cache, the
/// activation buffers and the small device-side state (token history, its length, the sampler's step counter)
/// that lets a decode step run without host involvement. Spec §1.3:
///   h = x + o_proj(Attn(RMSNorm1(x)));  out = h + down(silu(gate(n)) * up(n)), n = RMSNorm2(h);
///   logits = lm_head(RMSNorm(out)).</summary>
public sealed unsafe class Step1Model : IDisposable
{
    public Step1Config Config { get; }
    public IComputeBackend Backend { get; }
    public ModelOptions Options { get; }
    public TimeSpan LoadTime { get; }
    public long WeightBytes { get; }
    /// <summary>Weight bytes one decode step reads: every weight once, except the embedding table (one row) and
    /// lm_head (only the rows of <see cref="ModelOptions.LogitIds"/>, when given).</summary>
    public long WeightBytesPerToken { get; }

    sealed record Layer(DeviceBuffer InputNorm, LinearWeight Qkv, LinearWeight O, DeviceBuffer PostNorm, LinearWeight GateUp, LinearWeight Down);

    readonly List<DeviceBuffer> _owned = [];
    readonly ILinearLoader _linearLoader;
    readonly DeviceBuffer _embed, _finalNorm, _slopes;
    readonly LinearWeight _lmHead;
    // lm_head as launched: the whole weight, or its rows for ModelOptions.LogitIds (Start: the first id of each part).
    readonly (int Start, LinearWeight Weight)[] _lmHeadParts;
    readonly Layer[] _layers;
    readonly DeviceBuffer _kCache, _vCache;
    readonly DeviceBuffer _x, _norm, _sumSq, _qkv, _att, _tmp, _gateUp, _act, _logits;
    // Device-side generation state: history [MaxContext + 1] ids, then three scalars.
    readonly DeviceBuffer _history, _state;

    public nint History => _history.Pointer;
    public nint HistoryLength => _state.At(0);      // int32: tokens in the sequence so far
    public nint PrefillLength => _state.At(4);      // int32: sequence length seen by a prefill chunk
    public nint NextId => _state.At(8);             // int32: the last sampled id (input of the next decode step)
    public nint SampleStep => _state.At(16);        // uint64: the sampler's draw counter
    public nint Logits => _logits.Pointer;
    /// <summary>Decode steps' ids on their way to the host: the one being read and the one launched ahead of it
    /// (see Generator). Made once here, as its pinned memory, stream and events are slow to create.</summary>
    public IReadbackQueue Readback { get; }

    // Prepared decode steps, most recently used first (a few sampling settings: greedy, the server's, a benchmark's;
    // each with up to one step per attention size).
    readonly List<(SamplingParams Sampling, int AttentionContext, IReplayableStep Step)> _decodeSteps = [];
    const int MaxPreparedSteps = 12;
    /// <summary>Attention sizes below the whole cache that decode steps are prepared for, smallest first: a sequence
    /// runs with the step of the smallest size that holds it. The GPU attention launches as many key splits as its
    /// size can use (a graph cannot change its grid), so a short sequence in a step sized for the whole cache pays
    /// for idle blocks and for the kernel that merges the splits; up to 64 keys one split does it all and that
    /// kernel is not launched (kernels/attention.cu; kernels/NOTES.md, sessions 12–13: 2.2% (W4A16) and 3.5% (NF4)
    /// off the step at 64 keys on the H200). A 512 size (8 splits instead of 33) was measured too and dropped: 0.7%
    /// faster at 300 keys on the H100, 0.7–1.5% slower on the H200.</summary>
    public static readonly IReadOnlyList<int> DecodeGraphSizes = [64];

    /// <summary>The decode step for a sequence of <paramref name="sequenceLength"/> tokens (the token at
    /// <see cref="NextId"/> included) — forward that token, then sample — prepared (on the GPU: captured as a graph
    /// of ~200 launches) once per sampling setting and attention size (<see cref="DecodeGraphSizes"/> or the whole
    /// cache) and kept across generations (the last <see cref="MaxPreparedSteps"/>): preparing it costs more than a
    /// decoded token, and a server sends the same settings request after request. The step it returns must run only
    /// up to that length: past its size it makes NaN logits (attention.cu), which the sampler turns into a failed
    /// draw rather than a wrong token.</summary>
    public IReplayableStep DecodeStep(in SamplingParams sampling, int sequenceLength)
    {
        if (sequenceLength < 1 || sequenceLength > Options.MaxContext)
            throw new ArgumentOutOfRangeException(nameof(sequenceLength), $"a decode step runs at sequence length 1..{Options.MaxContext} (the KV cache), got {sequenceLength}");
        var settings = sampling;
        int attentionContext = DecodeAttentionContext(sequenceLength);
        int i = _decodeSteps.FindIndex(e => e.Sampling == settings && e.AttentionContext == attentionContext);
        if (i >= 0)
        {
            var hit = _decodeSteps[i];
            _decodeSteps.RemoveAt(i);
            _decodeSteps.Insert(0, hit);
            return hit.Step;
        }
        if (_decodeSteps.Count == MaxPreparedSteps)
        {
            _decodeSteps[^1].Step.Dispose();
            _decodeSteps.RemoveAt(_decodeSteps.Count - 1);
        }
        var backend = Backend;
        var step = backend.Prepare(() =>
        {
            Forward(NextId, 1, HistoryLength, attentionContext: attentionContext);
            backend.Sample(Logits, Config.VocabSize, History, HistoryLength, settings, SampleStep, NextId);
        });
        _decodeSteps.Insert(0, (settings, attentionContext, step));
        return step;
    }

    /// <summary>The attention size of the decode step for a sequence of this many tokens: the smallest of
    /// <see cref="DecodeGraphSizes"/> that holds it, or the whole cache.</summary>
    public int DecodeAttentionContext(int sequenceLength) =>
        DecodeGraphSizes.FirstOrDefault(size => size >= sequenceLength && size < Options.MaxContext, Options.MaxContext);

    Step1Model(Step1Config config, IComputeBackend backend, ModelOptions options, CheckpointFolder checkpoint, IProgress<string>? progress)
    {
        Config = config;
        Backend = backend;
        Options = options;
        var clock = Stopwatch.StartNew();
        var c = config;
        _linearLoader = LinearLoaders.For(checkpoint, options);
        if (options.MaxContext < 2 || options.MaxTokensPerForward < 1 || options.MaxLogitRows < 1 || options.MaxLogitRows > options.MaxTokensPerForward)
            throw new ArgumentException($"invalid model options {options}");
        if (options.LogitIds is { } logitIds) CheckLogitIds(logitIds, config, options);

        _embed = Upload(checkpoint, Step1Layout.Embed);
        _layers = new Layer[c.NumHiddenLayers];
        for (int i = 0; i < c.NumHiddenLayers; i++)
        {
            progress?.Report($"layer {i + 1}/{c.NumHiddenLayers}");
            _layers[i] = new Layer(
                Upload(checkpoint, Step1Layout.InputNorm(i)),
                LoadLinear(checkpoint, $"layer {i} fused qkv", Step1Layout.QModule(i), Step1Layout.KModule(i), Step1Layout.VModule(i)),
                LoadLinear(checkpoint, Step1Layout.OModule(i), Step1Layout.OModule(i)),
                Upload(checkpoint, Step1Layout.PostAttentionNorm(i)),
                LoadLinear(checkpoint, $"layer {i} fused gate+up", Step1Layout.GateModule(i), Step1Layout.UpModule(i)),
                LoadLinear(checkpoint, Step1Layout.DownModule(i), Step1Layout.DownModule(i)));
        }
        _finalNorm = Upload(checkpoint, Step1Layout.FinalNorm);
        _lmHead = options.QuantizeLmHead ? QuantizedLmHead(checkpoint, c)
                : c.TieWordEmbeddings ? new LinearWeight(WeightFormat.Bf16, c.VocabSize, c.HiddenSize, _embed)
                : new Bf16LinearLoader().Load(checkpoint, backend, Step1Layout.LmHead, [Step1Layout.LmHeadModule], Own);
        _lmHeadParts = options.LogitIds is { } ids ? ids.Select(r => (r.Start, _lmHead.Rows(r.Start, r.Count))).ToArray() : [(0, _lmHead)];
        WeightBytes = _owned.Sum(b => b.Bytes);
        // lm_head's own buffers (not the tied embedding) are counted in WeightBytes whole; per token, its parts are read.
        long lmHeadOwned = ReferenceEquals(_lmHead.Data, _embed) ? 0 : _lmHead.Bytes;
        WeightBytesPerToken = WeightBytes - _embed.Bytes + 2L * c.HiddenSize - lmHeadOwned + _lmHeadParts.Sum(p => p.Weight.Bytes);

        var slopes = new float[c.NumAttentionHeads];
        fixed (float* p = slopes) NativeException.Check(NativeMethods.AlibiSlopes(c.NumAttentionHeads, p));
        _slopes = Own(backend.Allocate(slopes.Length * 4L, "ALiBi slopes"));
        fixed (float* p = slopes) backend.Upload(_slopes.Pointer, (nint)p, slopes.Length * 4L);

        long kvBytes = (long)c.NumHiddenLayers * options.MaxContext * c.KvDim * 2;
        _kCache = Own(backend.Allocate(kvBytes, $"K cache ({options.MaxContext} tokens)"));
        _vCache = Own(backend.Allocate(kvBytes, $"V cache ({options.MaxContext} tokens)"));
        int t = options.MaxTokensPerForward;
        _x = Own(backend.Allocate((long)t * c.HiddenSize * 2, "hidden state"));
        _norm = Own(backend.Allocate((long)t * c.HiddenSize * 2, "normed hidden state"));
        // A folded norm's sums of squares: [tokens, hidden/16] floats, decode (≤ 16 tokens) only.
        _sumSq = Own(backend.Allocate((long)LinearEpilogues.MaxTokens * Math.Max(1, c.HiddenSize / 16) * 4, "folded RMSNorm sums"));
        _qkv = Own(backend.Allocate((long)t * c.QkvDim * 2, "qkv activations"));
        _att = Own(backend.Allocate((long)t * c.HiddenSize * 2, "attention output"));
        _tmp = Own(backend.Allocate((long)t * c.HiddenSize * 2, "projection output"));
        _gateUp = Own(backend.Allocate((long)t * c.IntermediateSize * 2 * 2, "gate/up activations"));
        _act = Own(backend.Allocate((long)t * c.IntermediateSize * 2, "SwiGLU output"));
        _logits = Own(backend.Allocate((long)options.MaxLogitRows * c.VocabSize * 2, "logits"));
        if (options.LogitIds != null)  // the ids lm_head skips stay −∞ (bf16 0xFF80) for good
        {
            var minusInfinity = new ushort[(long)options.MaxLogitRows * c.VocabSize];
            Array.Fill(minusInfinity, (ushort)0xFF80);
            fixed (ushort* p = minusInfinity) backend.Upload(_logits.Pointer, (nint)p, minusInfinity.Length * 2L);
        }
        _history = Own(backend.Allocate((options.MaxContext + 1) * 4L, "token history"));
        _state = Own(backend.Allocate(32, "generation state"));
        backend.Synchronize();
        Readback = backend.CreateReadbackQueue(2);
        LoadTime = clock.Elapsed;
    }

    /// <summary>Loads a base (bf16) checkpoint onto the backend. Every tensor is checked (names, dtypes, shapes)
    /// before any device memory is allocated; on failure nothing stays allocated.</summary>
    public static Step1Model Load(CheckpointFolder checkpoint, IComputeBackend backend, ModelOptions? options = null, IProgress<string>? progress = null)
    {
        var problems = LinearLoaders.For(checkpoint, options).Problems(checkpoint);
        if (problems.Count > 0)
            throw new CheckpointException("cannot load the checkpoint:\n  " + string.Join("\n  ", problems.Take(20)) +
                                          (problems.Count > 20 ? $"\n  ... and {problems.Count - 20} more" : ""), checkpoint.Folder);
        options ??= new ModelOptions();
        if (options.MaxContext > checkpoint.Config.MaxSeqLen)
            options = options with { MaxContext = checkpoint.Config.MaxSeqLen };
        return new Step1Model(checkpoint.Config, backend, options, checkpoint, progress);
    }

    static void CheckLogitIds(IReadOnlyList<(int Start, int Count)> ids, Step1Config c, ModelOptions options)
    {
        string Fail(string what) => throw new ArgumentException($"ModelOptions.LogitIds: {what}");
        if (ids.Count == 0) Fail("the list is empty (null means every id)");
        if (options.MaxLogitRows != 1) Fail($"needs MaxLogitRows = 1 (it is {options.MaxLogitRows}): the logits of one row only");
        long next = 0;
        foreach (var (start, count) in ids)
        {
            string run = $"the run ({start}, {count})";
            if (count < 1 || start < 0 || (long)start + count > c.VocabSize) Fail($"{run} is not inside the vocabulary [0, {c.VocabSize})");
            if (start < next) Fail($"{run} overlaps or precedes the run before it (give them in increasing order)");
            // The GPU linears store bf16 pairs, so a part's first logit must sit 4-byte aligned.
            if (start % 2 != 0) Fail($"{run} starts at an odd id");
            next = (long)start + count;
        }
        if (!ids.Any(r => c.EosTokenId >= r.Start && c.EosTokenId < r.Start + r.Count))
            Fail($"EOS (id {c.EosTokenId}) is not among the ids, so generation could never end");
    }

    /// <summary>logits[logitRows, vocab] = lm_head(x): one linear per part of <see cref="ModelOptions.LogitIds"/>.</summary>
    void LmHead(nint x, int logitRows, NormFold fold = default)
    {
        foreach (var (start, weight) in _lmHeadParts)
            Backend.Linear(x, weight, _logits.At(start * 2L), logitRows, LinearEpilogue.Store, fold);
    }

    DeviceBuffer Own(DeviceBuffer b)
    {
        _owned.Add(b);
        return b;
    }

    DeviceBuffer Upload(CheckpointFolder checkpoint, string name) => UploadConcatenated(checkpoint, name, name);

    /// <summary>lm_head (or the tied embedding) RTN-quantized to W4A16 on the host, then uploaded in the kernel layout.</summary>
    LinearWeight QuantizedLmHead(CheckpointFolder checkpoint, Step1Config c)
    {
        var info = checkpoint.Info(c.TieWordEmbeddings ? Step1Layout.Embed : Step1Layout.LmHead);
        var bf16 = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ushort>(checkpoint.Bytes(info));
        var (packed, scales) = StepAudio.Quant.W4A16Quantizer.Quantize(bf16, c.VocabSize, c.HiddenSize);
        var weight = StepAudio.Quant.W4A16Weight.FromCompressedTensors(c.VocabSize, c.HiddenSize,
            System.Runtime.InteropServices.MemoryMarshal.Cast<byte, int>(packed), System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ushort>(scales).ToArray(),
            zeros: null, fp16Scales: false);
        return StepAudio.Quant.W4A16LinearLoader.Upload(weight, Backend, "lm_head (W4A16)", Own);
    }

    /// <summary>A transformer-block linear in the checkpoint's format; several modules are fused along the output
    /// dimension (QKV, gate+up). lm_head, embeddings and norms stay bf16 in every released variant.</summary>
    LinearWeight LoadLinear(CheckpointFolder checkpoint, string purpose, params string[] modules) =>
        _linearLoader.Load(checkpoint, Backend, purpose, modules, Own);

    /// <summary>Concatenates tensors along dim 0 ([out, in] rows) into one device buffer: the fused QKV and gate+up.</summary>
    DeviceBuffer UploadConcatenated(CheckpointFolder checkpoint, string purpose, params string[] names)
    {
        var infos = names.Select(checkpoint.Info).ToArray();
        var buffer = Own(Backend.Allocate(infos.Sum(i => i.ByteLength), purpose));
        long offset = 0;
        foreach (var info in infos)
        {
            Backend.Upload(buffer.At(offset), checkpoint.Pointer(info), info.ByteLength);
            offset += info.ByteLength;
        }
        return buffer;
    }

    /// <summary>Runs the model over n tokens whose ids are at device address ids. *seqLen (device) is the sequence
    /// length including these tokens; their K/V rows go into the cache. Logits of the last logitRows tokens land in
    /// <see cref="Logits"/> ([logitRows, vocab] bf16). <paramref name="attentionContext"/>: the longest sequence this
    /// call is prepared for (default: the whole cache; see <see cref="DecodeGraphSizes"/>); a longer *seqLen
    /// yields NaN outputs.</summary>
    public void Forward(nint ids, int n, nint seqLen, int logitRows = 1, int? attentionContext = null)
    {
        var c = Config;
        if (n < 1 || n > Options.MaxTokensPerForward)
            throw new ArgumentOutOfRangeException(nameof(n), $"a forward call takes 1..{Options.MaxTokensPerForward} tokens, got {n}");
        if (logitRows < 1 || logitRows > Math.Min(n, Options.MaxLogitRows))
            throw new ArgumentOutOfRangeException(nameof(logitRows), $"logitRows must be 1..{Math.Min(n, Options.MaxLogitRows)}");
        var b = Backend;
        int h = c.HiddenSize, f = c.IntermediateSize;
        long layerKv = (long)Options.MaxContext * c.KvDim * 2;
        int context = attentionContext ?? Options.MaxContext;
        if (context < n || context > Options.MaxContext)
            throw new ArgumentOutOfRangeException(nameof(attentionContext), $"the attention context must be {n}..{Options.MaxContext} (the KV cache), got {context}");
        var shape = new AttentionShape(c.NumAttentionHeads, c.NumAttentionGroups, c.HeadDim, n, context);

        // Each residual add is fused with the RMSNorm that follows it: _tmp holds a projection output not yet added
        // into _x whenever residualPending is set.
        bool residualPending = false;
        void NormInto(DeviceBuffer weight)
        {
            if (residualPending) b.AddRmsNorm(_x.Pointer, _tmp.Pointer, weight.Pointer, _norm.Pointer, n, h, c.RmsNormEps);
            else b.RmsNorm(_x.Pointer, weight.Pointer, _norm.Pointer, n, h, c.RmsNormEps);
            residualPending = false;
        }

        b.Embed(_embed.Pointer, c.VocabSize, h, ids, n, _x.Pointer);
        if (n <= LinearEpilogues.MaxTokens && b.HasEpilogues(_layers[0].Qkv.Format))
        {
            bool folded = ForwardDecodeLayers(n, shape, seqLen, layerKv);
            long skipped = n - logitRows;  // lm_head reads the last logitRows rows
            if (folded)  // the last down linear wrote h·g_final and its sums of squares
                LmHead(_norm.At(skipped * h * 2), logitRows, NormFold.Consume(_sumSq.At(skipped * (h / 16) * 4), c.RmsNormEps));
            else
            {
                b.RmsNorm(_x.At(skipped * h * 2), _finalNorm.Pointer, _norm.Pointer, logitRows, h, c.RmsNormEps);
                LmHead(_norm.Pointer, logitRows);
            }
            return;
        }
        for (int i = 0; i < _layers.Length; i++)
        {
            var l = _layers[i];
            NormInto(l.InputNorm);
            b.Linear(_norm.Pointer, l.Qkv, _qkv.Pointer, n);
            b.Attention(shape, _qkv.Pointer, _kCache.At(i * layerKv), _vCache.At(i * layerKv), seqLen, _slopes.Pointer, _att.Pointer);
            b.Linear(_att.Pointer, l.O, _tmp.Pointer, n);
            residualPending = true;
            NormInto(l.PostNorm);
            b.Linear(_norm.Pointer, l.GateUp, _gateUp.Pointer, n);
            b.SwiGlu(_gateUp.Pointer, _act.Pointer, n, f);
            b.Linear(_act.Pointer, l.Down, _tmp.Pointer, n);
            residualPending = true;
        }
        // The final norm runs over all n rows (the residual add must anyway); lm_head takes the last logitRows.
        NormInto(_finalNorm);
        LmHead(_norm.At((long)(n - logitRows) * h * 2), logitRows);
    }

    /// <summary>The layers as decode runs them: the residual adds folded into the o and down linears and SwiGLU into
    /// gate_up (their epilogues); _x is the residual stream throughout. When the hidden size is a multiple of 16 the
    /// RMSNorms are folded too (<see cref="NormFold"/>): o and down also write the next norm's h·g into _norm and sums
    /// of squares into _sumSq, and qkv / gate_up / lm_head scale by 1/rms — 5 launches per layer, and only layer 0's
    /// input norm runs as a kernel. Returns whether the final norm was folded (then lm_head must consume it).</summary>
    bool ForwardDecodeLayers(int n, AttentionShape shape, nint seqLen, long layerKv)
    {
        var b = Backend;
        int h = Config.HiddenSize;
        float eps = Config.RmsNormEps;
        bool fold = h % 16 == 0;
        var consume = fold ? NormFold.Consume(_sumSq.Pointer, eps) : default;
        for (int i = 0; i < _layers.Length; i++)
        {
            var l = _layers[i];
            var nextNorm = i + 1 < _layers.Length ? _layers[i + 1].InputNorm : _finalNorm;
            if (i == 0 || !fold) b.RmsNorm(_x.Pointer, l.InputNorm.Pointer, _norm.Pointer, n, h, eps);
            b.Linear(_norm.Pointer, l.Qkv, _qkv.Pointer, n, LinearEpilogue.Store, i == 0 ? default : consume);
            b.Attention(shape, _qkv.Pointer, _kCache.At(i * layerKv), _vCache.At(i * layerKv), seqLen, _slopes.Pointer, _att.Pointer);
            b.Linear(_att.Pointer, l.O, _x.Pointer, n, LinearEpilogue.Add, fold ? NormFold.Produce(l.PostNorm.Pointer, _norm.Pointer, _sumSq.Pointer) : default);
            if (!fold) b.RmsNorm(_x.Pointer, l.PostNorm.Pointer, _norm.Pointer, n, h, eps);
            b.Linear(_norm.Pointer, l.GateUp, _act.Pointer, n, LinearEpilogue.SwiGlu, consume);
            b.Linear(_act.Pointer, l.Down, _x.Pointer, n, LinearEpilogue.Add, fold ? NormFold.Produce(nextNorm.Pointer, _norm.Pointer, _sumSq.Pointer) : default);
        }
        return fold;
    }

    /// <summary>Runs the model over the first <paramref name="length"/> ids of <see cref="History"/> (the prompt, already
    /// uploaded), in forward calls of at most <see cref="ModelOptions.MaxTokensPerForward"/> tokens, so the KV cache
    /// holds them all and <see cref="Logits"/> has the last one's logits.</summary>
    public void PrefillHistory(int length)
    {
        int chunk = Options.MaxTokensPerForward;
        for (int start = 0; start < length; start += chunk)
        {
            int n = Math.Min(chunk, length - start);
            WriteInt(PrefillLength, start + n);
            // The host knows this call's sequence length, so attention is sized for exactly that many keys: a short
            // prompt gets one split and no combine launch instead of a grid sized for the whole cache.
            Forward(History + start * 4, n, PrefillLength, attentionContext: start + n);
        }
    }

    /// <summary>Reads logits rows back to the host as fp32.</summary>
    public float[] ReadLogits(int rows = 1)
    {
        var raw = new ushort[rows * Config.VocabSize];
        fixed (ushort* p = raw) Backend.Download(_logits.Pointer, (nint)p, raw.Length * 2L);
        var result = new float[raw.Length];
        for (int i = 0; i < raw.Length; i++) result[i] = BitConverter.Int32BitsToSingle(raw[i] << 16);
        return result;
    }

    public void WriteInt(nint deviceAddress, int value) => Backend.Upload(deviceAddress, (nint)(&value), 4);
    public int ReadInt(nint deviceAddress)
    {
        int value;
        Backend.Download(deviceAddress, (nint)(&value), 4);
        return value;
    }
    public void WriteULong(nint deviceAddress, ulong value) => Backend.Upload(deviceAddress, (nint)(&value), 8);

    public void Dispose()
    {
        foreach (var (_, _, step) in _decodeSteps) step.Dispose();
        _decodeSteps.Clear();
        Readback.Dispose();
        foreach (var b in _owned) b.Dispose();
        _owned.Clear();
    }
}
