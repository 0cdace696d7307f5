using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using StepAudio.Checkpoints;
using StepAudio.Model;

namespace StepAudio.Quant;

/// <summary>`quantize --format w4a16`: writes compressed-tensors "pack-quantized" W4A16 (int4, symmetric, group 128,
/// bf16 scales) by ROUND-TO-NEAREST: s = bf16(max|w| / 7.5) per group, q = clamp(round(w / s), −8, 7), stored q + 8.
/// This is not AWQ or GPTQ calibration (no activation statistics). lm_head, embeddings and norms stay bf16
/// (ignore: ["lm_head"]), as llm-compressor writes them.</summary>
public sealed class W4A16Quantizer : ICheckpointQuantizer
{
    public string Format => "w4a16";
    public string Description =>
        "compressed-tensors pack-quantized W4A16 (int4 symmetric, group 128, bf16 scales) by round-to-nearest (RTN, NOT AWQ/GPTQ calibration); lm_head stays bf16";

    const int G = W4A16Weight.GroupSize;

    /// <summary>RTN symmetric group quantization of bf16 W[N, K]: (weight_packed I32 [N, K/8] as bytes, weight_scale
    /// BF16 [N, K/G] as bytes), in the compressed-tensors layout (element 8j+i at bits 4i, code q + 8).</summary>
    public static (byte[] Packed, byte[] Scales) Quantize(ReadOnlySpan<ushort> w, int n, int k)
    {
        if (k % G != 0) throw new ArgumentException($"in-features {k} is not a multiple of the group size {G}");
        var packed = new int[(long)n * k / 8];
        var scales = new ushort[(long)n * (k / G)];
        var wArr = w.ToArray();
        Parallel.For(0, n, r =>
        {
            Span<float> x = stackalloc float[G];
            for (int g = 0; g < k / G; g++)
            {
                float amax = 0;
                for (int i = 0; i < G; i++)
                {
                    x[i] = BitConverter.Int32BitsToSingle(wArr[(long)r * k + g * G + i] << 16);
                    amax = Math.Max(amax, Math.Abs(x[i]));
                }
                ushort sBits = Bf16(Math.Max(amax / 7.5f, 1.1920929e-07f /* fp32 eps, as compressed-tensors clamps */));
                float s = BitConverter.Int32BitsToSingle(sBits << 16);
                scales[(long)r * (k / G) + g] = sBits;
                for (int j = 0; j < G / 8; j++)
                {
                    uint word = 0;
                    for (int e = 0; e < 8; e++)
                    {
                        int q = (int)Math.Clamp(MathF.Round(x[8 * j + e] / s, MidpointRounding.ToEven), -8, 7);
                        word |= (uint)(q + 8) << (4 * e);
                    }
                    packed[(long)r * (k / 8) + g * G / 8 + j] = (int)word;
                }
            }
        });
        return (MemoryMarshal.AsBytes(packed.AsSpan()).ToArray(), MemoryMarshal.AsBytes(scales.AsSpan()).ToArray());
    }

    /// <summary>fp32 → bf16 bits, round to nearest even (torch's .to(bfloat16)).</summary>
    static ushort Bf16(float f)
    {
        uint u = BitConverter.SingleToUInt32Bits(f);
        u += 0x7fffu + ((u >> 16) & 1u);
        return (ushort)(u >> 16);
    }

    public void Write(CheckpointFolder source, string outputFolder, IProgress<string>? progress)
    {
        var problems = Step1Layout.Problems(source);
        if (problems.Count > 0) throw new CheckpointException("not a valid base checkpoint: " + problems[0], source.Folder);
        string tmp = outputFolder.TrimEnd('/') + ".partial";
        if (Directory.Exists(tmp)) Directory.Delete(tmp, true);
        Directory.CreateDirectory(tmp);
        var linears = Step1Layout.BaseTensors(source.Config)
            .Where(t => t.Name.Contains(".self_attn.") || t.Name.Contains(".mlp."))
            .ToDictionary(t => t.Name, t => t.Shape);
        var weightMap = new SortedDictionary<string, string>(StringComparer.Ordinal);
        long totalBytes = 0;
        int shardCount = source.Files.Count;
        for (int s = 0; s < shardCount; s++)
        {
            string shardName = $"model-{s + 1:00000}-of-{shardCount:00000}.safetensors";
            var tensors = new List<(string, TensorDType, long[], byte[])>();
            foreach (var info in source.Files[s].Tensors.Values.OrderBy(t => t.Offset))
            {
                if (linears.TryGetValue(info.Name, out var shape))
                {
                    progress?.Report($"{shardName}: {info.Name}");
                    string module = info.Name[..^".weight".Length];
                    int n = (int)shape[0], k = (int)shape[1];
                    var (packed, scales) = Quantize(MemoryMarshal.Cast<byte, ushort>(source.Bytes(info)), n, k);
                    var shapeBytes = MemoryMarshal.AsBytes(new long[] { n, k }.AsSpan()).ToArray();
                    tensors.Add((module + ".weight_packed", TensorDType.I32, [n, k / 8], packed));
                    tensors.Add((module + ".weight_scale", TensorDType.BF16, [n, k / G], scales));
                    tensors.Add((module + ".weight_shape", TensorDType.I64, [2], shapeBytes));
                }
                else tensors.Add((info.Name, info.DType, info.Shape, source.Bytes(info).ToArray()));
            }
            foreach (var t in tensors) { weightMap[t.Item1] = shardName; totalBytes += t.Item4.LongLength; }
            SafetensorsFile.Write(Path.Combine(tmp, shardName), tensors, new Dictionary<string, string> { ["format"] = "pt" });
        }
        var index = new JsonObject
        {
            ["metadata"] = new JsonObject { ["total_size"] = totalBytes },
            ["weight_map"] = new JsonObject(weightMap.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)JsonValue.Create(kv.Value)))),
        };
        File.WriteAllText(Path.Combine(tmp, CheckpointFolder.IndexFileName), index.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(source.Folder, "config.json")))!.AsObject();
        config["quantization_config"] = QuantizationConfig();
        File.WriteAllText(Path.Combine(tmp, "config.json"), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        Directory.Move(tmp, outputFolder);
    }

    /// <summary>The quantization_config block of llm-compressor's W4A16 preset (quant-kernels.md §2.1).</summary>
    static JsonObject QuantizationConfig() => new()
    {
        ["quant_method"] = "compressed-tensors",
        ["format"] = "pack-quantized",
        ["quantization_status"] = "compressed",
        ["ignore"] = new JsonArray("lm_head"),
        ["kv_cache_scheme"] = null,
        ["config_groups"] = new JsonObject
        {
            ["group_0"] = new JsonObject
            {
                ["targets"] = new JsonArray("Linear"),
                ["input_activations"] = null,
                ["output_activations"] = null,
                ["weights"] = new JsonObject
                {
                    ["num_bits"] = 4, ["type"] = "int", ["symmetric"] = true, ["strategy"] = "group",
                    ["group_size"] = G, ["dynamic"] = false, ["observer"] = "minmax", ["actorder"] = null,
                    ["block_structure"] = null,
                },
            },
        },
    };
}
