using System.Text.Json;

namespace StepAudio.Checkpoints;

/// <summary>The Step1 model configuration read from a checkpoint's config.json (spec §1.1).</summary>
public sealed record Step1Config
{
    public required int HiddenSize { get; init; }
    public required int IntermediateSize { get; init; }
    public required int NumAttentionHeads { get; init; }
    /// <summary>KV heads ("num_attention_groups"); query head h uses group h / (heads / groups).</summary>
    public required int NumAttentionGroups { get; init; }
    public required int NumHiddenLayers { get; init; }
    public required int VocabSize { get; init; }
    public required float RmsNormEps { get; init; }
    public int MaxSeqLen { get; init; } = 32768;
    public int BosTokenId { get; init; } = 1;
    public int EosTokenId { get; init; } = 3;
    public int PadTokenId { get; init; } = 0;
    /// <summary>Absent in the released config: the checkpoint carries its own lm_head.weight, so absent = untied
    /// (spec §1.1; defaulting to tied would silently use the embedding matrix).</summary>
    public bool TieWordEmbeddings { get; init; }
    public string TorchDtype { get; init; } = "bfloat16";
    /// <summary>The raw quantization_config block, when present (bitsandbytes or compressed-tensors variants).</summary>
    public JsonElement? QuantizationConfig { get; init; }
    /// <summary>Keys this parser does not know; reported by `inspect`, not fatal (HF configs carry many extras).</summary>
    public IReadOnlyList<string> UnknownKeys { get; init; } = [];

    public int HeadDim => HiddenSize / NumAttentionHeads;
    public int KvDim => NumAttentionGroups * HeadDim;
    public int QkvDim => HiddenSize + 2 * KvDim;

    static readonly HashSet<string> KnownKeys =
    [
        "hidden_size", "intermediate_size", "num_attention_heads", "num_attention_groups", "num_hidden_layers",
        "vocab_size", "rms_norm_eps", "max_seq_len", "bos_token_id", "eos_token_id", "pad_token_id",
        "tie_word_embeddings", "torch_dtype", "dtype", "quantization_config", "head_dim",
        // carried by HF configs, irrelevant to inference here
        "architectures", "model_type", "auto_map", "transformers_version", "use_cache", "_name_or_path",
        "max_position_embeddings", "initializer_range", "hidden_act",
    ];

    public static Step1Config Load(string configPath)
    {
        if (!File.Exists(configPath)) throw new CheckpointException("config.json not found", configPath);
        JsonDocument doc;
        try { doc = JsonDocument.Parse(File.ReadAllBytes(configPath)); }
        catch (JsonException e) { throw new CheckpointException($"not valid JSON: {e.Message}", configPath, inner: e); }
        using (doc) return Parse(doc.RootElement, configPath);
    }

    public static Step1Config Parse(JsonElement root, string configPath)
    {
        if (root.ValueKind != JsonValueKind.Object) throw new CheckpointException("config is not a JSON object", configPath);
        if (root.TryGetProperty("model_type", out var mt) && mt.ValueKind == JsonValueKind.String && mt.GetString() != "step1")
            throw new CheckpointException($"model_type is '{mt.GetString()}', expected 'step1' (Step-Audio-EditX's LLM)", configPath);

        int Int(string key, int? fallback = null)
        {
            if (!root.TryGetProperty(key, out var v))
                return fallback ?? throw new CheckpointException($"missing required key '{key}'", configPath);
            if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out int i) || i < 0)
                throw new CheckpointException($"key '{key}' must be a non-negative integer, got {v.GetRawText()}", configPath);
            return i;
        }
        float Float(string key)
        {
            if (!root.TryGetProperty(key, out var v))
                throw new CheckpointException($"missing required key '{key}'", configPath);
            if (v.ValueKind != JsonValueKind.Number)
                throw new CheckpointException($"key '{key}' must be a number, got {v.GetRawText()}", configPath);
            return (float)v.GetDouble();
        }

        bool tie = false;
        if (root.TryGetProperty("tie_word_embeddings", out var tw))
        {
            if (tw.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
                throw new CheckpointException($"key 'tie_word_embeddings' must be true or false, got {tw.GetRawText()}", configPath);
            tie = tw.GetBoolean();
        }
        string dtype = root.TryGetProperty("torch_dtype", out var td) && td.ValueKind == JsonValueKind.String ? td.GetString()!
                     : root.TryGetProperty("dtype", out var d2) && d2.ValueKind == JsonValueKind.String ? d2.GetString()! : "bfloat16";

        var config = new Step1Config
        {
            HiddenSize = Int("hidden_size"),
            IntermediateSize = Int("intermediate_size"),
            NumAttentionHeads = Int("num_attention_heads"),
            NumAttentionGroups = Int("num_attention_groups"),
            NumHiddenLayers = Int("num_hidden_layers"),
            VocabSize = Int("vocab_size"),
            RmsNormEps = Float("rms_norm_eps"),
            MaxSeqLen = Int("max_seq_len", 32768),
            BosTokenId = Int("bos_token_id", 1),
            EosTokenId = Int("eos_token_id", 3),
            PadTokenId = Int("pad_token_id", 0),
            TieWordEmbeddings = tie,
            TorchDtype = dtype,
            QuantizationConfig = root.TryGetProperty("quantization_config", out var q) ? q.Clone() : null,
            UnknownKeys = root.EnumerateObject().Select(p => p.Name).Where(k => !KnownKeys.Contains(k)).ToList(),
        };
        config.Validate(configPath, root);
        return config;
    }

    void Validate(string configPath, JsonElement root)
    {
        foreach (var (key, value) in new[] { ("hidden_size", HiddenSize), ("intermediate_size", IntermediateSize),
                     ("num_attention_heads", NumAttentionHeads), ("num_attention_groups", NumAttentionGroups),
                     ("num_hidden_layers", NumHiddenLayers), ("vocab_size", VocabSize) })
            if (value <= 0) throw new CheckpointException($"key '{key}' must be positive, got {value}", configPath);
        if (HiddenSize % NumAttentionHeads != 0)
            throw new CheckpointException($"hidden_size {HiddenSize} is not a multiple of num_attention_heads {NumAttentionHeads}", configPath);
        if (NumAttentionHeads % NumAttentionGroups != 0)
            throw new CheckpointException($"num_attention_heads {NumAttentionHeads} is not a multiple of num_attention_groups {NumAttentionGroups}", configPath);
        if (root.TryGetProperty("head_dim", out var hd) && (!hd.TryGetInt32(out int h) || h != HeadDim))
            throw new CheckpointException($"key 'head_dim' is {hd.GetRawText()} but hidden_size / num_attention_heads = {HeadDim}", configPath);
        if (!(RmsNormEps > 0)) throw new CheckpointException($"key 'rms_norm_eps' must be positive, got {RmsNormEps}", configPath);
        if (EosTokenId >= VocabSize) throw new CheckpointException($"key 'eos_token_id' {EosTokenId} is outside vocab_size {VocabSize}", configPath);
    }
}
