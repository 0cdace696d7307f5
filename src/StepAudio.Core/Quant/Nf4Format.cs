using System.Runtime.InteropServices;
using System.Text.Json;
using StepAudio.Checkpoints;

namespace StepAudio.Quant;

/// <summary>Where NF4 tensors are read from: a checkpoint folder or a single safetensors file.</summary>
public interface ITensorSource
{
    TensorInfo? Find(string name);
    ReadOnlySpan<byte> Bytes(TensorInfo info);
    string Where { get; }
}

public sealed class CheckpointTensorSource(CheckpointFolder checkpoint) : ITensorSource
{
    public TensorInfo? Find(string name) => checkpoint.Contains(name) ? checkpoint.Info(name) : null;
    public ReadOnlySpan<byte> Bytes(TensorInfo info) => checkpoint.Bytes(info);
    public string Where => checkpoint.Folder;
}

public sealed class FileTensorSource(SafetensorsFile file) : ITensorSource
{
    public TensorInfo? Find(string name) => file.Tensors.TryGetValue(name, out var t) ? t : null;
    public ReadOnlySpan<byte> Bytes(TensorInfo info) => file.Bytes(info);
    public string Where => file.FilePath;
}

/// <summary>The per-tensor JSON of bitsandbytes (the U8 tensor 'P.weight.quant_state.bitsandbytes__nf4').</summary>
public sealed record Nf4QuantState(int BlockSize, string DType, int N, int K, bool DoubleQuant, int NestedBlockSize, float NestedOffset)
{
    public long Elements => (long)N * K;
    public long Blocks => (Elements + BlockSize - 1) / BlockSize;
    public long PackedBytes => (Elements + 1) / 2;
    public long NestedBlocks => DoubleQuant ? (Blocks + NestedBlockSize - 1) / NestedBlockSize : 0;

    public string ToJson()
    {
        // Key order of bitsandbytes' QuantState.as_dict (quant-kernels.md §1.3).
        var w = new System.Text.StringBuilder();
        w.Append($"{{\"quant_type\": \"nf4\", \"blocksize\": {BlockSize}, \"dtype\": \"{DType}\", \"shape\": [{N}, {K}]");
        if (DoubleQuant)
            w.Append($", \"nested_blocksize\": {NestedBlockSize}, \"nested_dtype\": \"float32\", \"nested_offset\": {((double)NestedOffset).ToString("R", System.Globalization.CultureInfo.InvariantCulture)}");
        return w.Append('}').ToString();
    }
}

/// <summary>One bitsandbytes NF4 weight exactly as saved: packed nibbles over the flattened row-major [N, K] weight
/// (element 2i in the high nibble), absmax per block (fp32, or u8 codes with double quant), the 16-entry code table,
/// and with double quant the nested scales and the 256-entry nested map.</summary>
public sealed class Nf4Tensor
{
    public required Nf4QuantState State { get; init; }
    public required byte[] Packed { get; init; }
    public required float[] QuantMap { get; init; }
    public float[]? Absmax { get; init; }          // without double quant
    public byte[]? AbsmaxCodes { get; init; }      // with double quant
    public float[]? NestedAbsmax { get; init; }
    public float[]? NestedQuantMap { get; init; }

    /// <summary>absmax of block b in fp32: nested_map[code] * nested_absmax[b / nested_blocksize] + offset, each
    /// operation rounded to fp32 (bitsandbytes' dequantize_4bit).</summary>
    public float BlockAbsmax(long b)
    {
        if (!State.DoubleQuant) return Absmax![b];
        float product = NestedQuantMap![AbsmaxCodes![b]] * NestedAbsmax![b / State.NestedBlockSize];
        return product + State.NestedOffset;
    }

    /// <summary>The published formula: every weight in fp32 before the cast, flat [N*K] (ragged last block and odd
    /// N*K included).</summary>
    public float[] DequantizeF32()
    {
        long n = State.Elements;
        var w = new float[n];
        for (long i = 0; i < n; i++)
        {
            byte b = Packed[i >> 1];
            int q = (i & 1) == 0 ? b >> 4 : b & 15;
            w[i] = QuantMap[q] * BlockAbsmax(i / State.BlockSize);
        }
        return w;
    }

    /// <summary>The tensors bitsandbytes writes for module P (names relative to "P.weight"), in its order.</summary>
    public IEnumerable<(string Suffix, TensorDType DType, long[] Shape, byte[] Data)> SavedTensors()
    {
        yield return ("", TensorDType.U8, [Packed.LongLength, 1], Packed);
        if (State.DoubleQuant)
        {
            yield return (".absmax", TensorDType.U8, [AbsmaxCodes!.LongLength], AbsmaxCodes);
            yield return (".quant_map", TensorDType.F32, [16], Nf4Format.Bytes(QuantMap));
            yield return (".nested_absmax", TensorDType.F32, [NestedAbsmax!.LongLength], Nf4Format.Bytes(NestedAbsmax));
            yield return (".nested_quant_map", TensorDType.F32, [256], Nf4Format.Bytes(NestedQuantMap!));
        }
        else
        {
            yield return (".absmax", TensorDType.F32, [Absmax!.LongLength], Nf4Format.Bytes(Absmax));
            yield return (".quant_map", TensorDType.F32, [16], Nf4Format.Bytes(QuantMap));
        }
        byte[] json = System.Text.Encoding.UTF8.GetBytes(State.ToJson());
        yield return (Nf4Format.QuantStateSuffix, TensorDType.U8, [json.LongLength], json);
    }
}

/// <summary>Reads bitsandbytes NF4 tensors as HF transformers saves them (shared/docs/quant-kernels.md §1) and checks
/// every size, dtype and JSON field; a corrupt tensor gets a <see cref="CheckpointException"/> naming file and tensor.</summary>
public static class Nf4Format
{
    public const string QuantStateSuffix = ".quant_state.bitsandbytes__nf4";

    /// <summary>The NF4 code table (quant-kernels.md §1.5).</summary>
    public static readonly float[] CodeTable =
    [
        -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
        -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
        0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
        0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f,
    ];

    /// <summary>Checks config.json's quantization_config for a bitsandbytes 4-bit NF4 checkpoint.</summary>
    public static List<string> ConfigProblems(CheckpointFolder checkpoint)
    {
        var problems = new List<string>();
        string path = Path.Combine(checkpoint.Folder, "config.json");
        if (checkpoint.Config.QuantizationConfig is not { ValueKind: JsonValueKind.Object } q)
        {
            problems.Add($"{path}: 'quantization_config' is missing or not an object");
            return problems;
        }
        string? Str(string key) => q.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
        bool? Bool(string key) => q.TryGetProperty(key, out var v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : null;
        if (Str("quant_method") != "bitsandbytes") problems.Add($"{path}: quantization_config.quant_method is '{Str("quant_method")}', expected 'bitsandbytes'");
        if (Bool("load_in_8bit") == true) problems.Add($"{path}: quantization_config.load_in_8bit is true: LLM.int8 checkpoints are not supported (NF4 only)");
        if (Bool("load_in_4bit") != true) problems.Add($"{path}: quantization_config.load_in_4bit is not true");
        string? type = Str("bnb_4bit_quant_type");
        if (type != null && type != "nf4") problems.Add($"{path}: quantization_config.bnb_4bit_quant_type is '{type}': only 'nf4' is supported");
        return problems;
    }

    /// <summary>Reads and validates the NF4 weight of module P ("P.weight" and its quant-state tensors), expecting
    /// [n, k] when given.</summary>
    public static Nf4Tensor Read(ITensorSource source, string module, int? n = null, int? k = null)
    {
        string w = module + ".weight";
        TensorInfo Need(string name) => source.Find(name) ?? throw new CheckpointException("missing tensor (bitsandbytes NF4 layout)", source.Where, name);
        var packedInfo = Need(w);
        var stateInfo = source.Find(w + QuantStateSuffix)
            ?? throw new CheckpointException($"missing '{w + QuantStateSuffix}': not a bitsandbytes NF4 weight (no quant_state)", packedInfo.FilePath, w);
        var state = ParseState(source.Bytes(stateInfo), stateInfo);
        if ((n.HasValue && state.N != n) || (k.HasValue && state.K != k))
            throw new CheckpointException($"quant_state shape is [{state.N}, {state.K}], expected [{n}, {k}]", stateInfo.FilePath, stateInfo.Name);
        // The packed bytes may be stored in another quant_storage dtype: only the byte count matters.
        if (packedInfo.ByteLength != state.PackedBytes)
            throw new CheckpointException($"packed weight has {packedInfo.ByteLength} bytes ({packedInfo.DType}{packedInfo.ShapeText}); " +
                                          $"shape [{state.N}, {state.K}] needs ceil({state.Elements}/2) = {state.PackedBytes}", packedInfo.FilePath, w);
        var quantMap = F32(source, Need(w + ".quant_map"), 16);
        if (state.DoubleQuant)
        {
            var codes = Need(w + ".absmax");
            if (codes.DType != TensorDType.U8 || codes.ElementCount != state.Blocks)
                throw new CheckpointException($"absmax is {codes.DType}{codes.ShapeText}; with double quant it must be U8 [{state.Blocks}]", codes.FilePath, codes.Name);
            return new Nf4Tensor
            {
                State = state,
                Packed = source.Bytes(packedInfo).ToArray(),
                QuantMap = quantMap,
                AbsmaxCodes = source.Bytes(codes).ToArray(),
                NestedAbsmax = F32(source, Need(w + ".nested_absmax"), state.NestedBlocks),
                NestedQuantMap = F32(source, Need(w + ".nested_quant_map"), 256),
            };
        }
        foreach (string extra in new[] { ".nested_absmax", ".nested_quant_map" })
            if (source.Find(w + extra) is { } stray)
                throw new CheckpointException("nested tensor present but the quant_state has no nested_* keys", stray.FilePath, stray.Name);
        return new Nf4Tensor { State = state, Packed = source.Bytes(packedInfo).ToArray(), QuantMap = quantMap, Absmax = F32(source, Need(w + ".absmax"), state.Blocks) };
    }

    /// <summary>The tensor names module P has in an NF4 checkpoint (with or without double quant).</summary>
    public static IEnumerable<string> TensorNames(string module, bool doubleQuant)
    {
        string w = module + ".weight";
        yield return w;
        yield return w + ".absmax";
        yield return w + ".quant_map";
        if (doubleQuant)
        {
            yield return w + ".nested_absmax";
            yield return w + ".nested_quant_map";
        }
        yield return w + QuantStateSuffix;
    }

    static float[] F32(ITensorSource source, TensorInfo info, long count)
    {
        if (info.DType != TensorDType.F32 || info.ElementCount != count)
            throw new CheckpointException($"is {info.DType}{info.ShapeText}, expected F32 with {count} elements", info.FilePath, info.Name);
        var values = MemoryMarshal.Cast<byte, float>(source.Bytes(info)).ToArray();
        foreach (float v in values)
            if (!float.IsFinite(v)) throw new CheckpointException($"holds a non-finite value ({v})", info.FilePath, info.Name);
        return values;
    }

    static Nf4QuantState ParseState(ReadOnlySpan<byte> bytes, TensorInfo info)
    {
        if (info.DType != TensorDType.U8)
            throw new CheckpointException($"quant_state is {info.DType}, expected U8 (UTF-8 JSON bytes)", info.FilePath, info.Name);
        JsonDocument doc;
        try { doc = JsonDocument.Parse(bytes.ToArray()); }
        catch (JsonException e) { throw new CheckpointException($"quant_state is not valid JSON: {e.Message}", info.FilePath, info.Name, e); }
        using (doc)
        {
            var r = doc.RootElement;
            if (r.ValueKind != JsonValueKind.Object) throw new CheckpointException("quant_state JSON is not an object", info.FilePath, info.Name);
            CheckpointException Bad(string what) => new($"quant_state {what} (JSON: {r.GetRawText()})", info.FilePath, info.Name);
            string? Str(string key) => r.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
            int Int(string key) => r.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int x) ? x
                : throw Bad($"has no integer '{key}'");

            string? type = Str("quant_type");
            if (type != "nf4") throw Bad(type == null ? "has no 'quant_type'" : $"quant_type is '{type}': only 'nf4' is supported");
            int blocksize = Int("blocksize");
            if (blocksize < 32 || blocksize > 4096 || (blocksize & (blocksize - 1)) != 0) throw Bad($"blocksize {blocksize} is not a power of two in [32, 4096]");
            string dtype = Str("dtype") ?? throw Bad("has no 'dtype'");
            if (dtype != "bfloat16") throw Bad($"dtype is '{dtype}': this build computes in bf16 and loads bfloat16 NF4 weights only");
            if (!r.TryGetProperty("shape", out var shape) || shape.ValueKind != JsonValueKind.Array || shape.GetArrayLength() != 2 ||
                shape.EnumerateArray().Any(d => d.ValueKind != JsonValueKind.Number || !d.TryGetInt32(out int x) || x <= 0))
                throw Bad("'shape' is not [out, in] with positive integers");
            int n = shape[0].GetInt32(), k = shape[1].GetInt32();
            bool nested = r.TryGetProperty("nested_offset", out var offsetEl);
            if (!nested)
            {
                if (r.TryGetProperty("nested_blocksize", out _)) throw Bad("has 'nested_blocksize' but no 'nested_offset'");
                return new Nf4QuantState(blocksize, dtype, n, k, false, 0, 0f);
            }
            if (offsetEl.ValueKind != JsonValueKind.Number) throw Bad("'nested_offset' is not a number");
            int nestedBlock = Int("nested_blocksize");
            if (nestedBlock <= 0) throw Bad($"nested_blocksize {nestedBlock} is not positive");
            string? nestedType = Str("nested_dtype");
            if (nestedType != "float32") throw Bad($"nested_dtype is '{nestedType}', expected 'float32'");
            float offset = (float)offsetEl.GetDouble();
            if (!float.IsFinite(offset)) throw Bad("'nested_offset' is not finite");
            return new Nf4QuantState(blocksize, dtype, n, k, true, nestedBlock, offset);
        }
    }

    internal static byte[] Bytes(float[] values) => MemoryMarshal.AsBytes(values.AsSpan()).ToArray();
}
