using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using StepAudio.Checkpoints;

namespace StepAudio.Tests.Quant;

/// <summary>Small checkpoints built in tests: a one-module compressed-tensors folder, and edited copies of the
/// committed oracle fixtures (tests/fixtures/w4a16-tiny, autoawq-tiny).</summary>
static class TinyCheckpoints
{
    public const string Module = "model.layers.0.mlp.down_proj";

    static JsonObject Config(JsonNode quantization) => new()
    {
        ["model_type"] = "step1", ["hidden_size"] = 128, ["intermediate_size"] = 256, ["num_attention_heads"] = 2,
        ["num_attention_groups"] = 1, ["num_hidden_layers"] = 1, ["vocab_size"] = 16, ["rms_norm_eps"] = 1e-5,
        ["quantization_config"] = quantization,
    };

    /// <summary>One asymmetric compressed-tensors module; zero points packed along N (I32) or, as before
    /// compressed-tensors 0.10, unpacked signed I8.</summary>
    public static string CompressedTensorsModule(string folder, int n, int k, int[] packed, ushort[] scales, int[] zp, bool packedZp)
    {
        Directory.CreateDirectory(folder);
        int groups = k / 128;
        byte[] zpBytes;
        long[] zpShape;
        TensorDType zpType;
        if (packedZp)
        {
            var words = new int[(n + 7) / 8 * groups];
            for (int r = 0; r < n; r++)
                for (int g = 0; g < groups; g++) words[(r / 8) * groups + g] |= (zp[r * groups + g] + 8) << (4 * (r % 8));
            (zpBytes, zpShape, zpType) = (MemoryMarshal.AsBytes(words.AsSpan()).ToArray(), [(n + 7) / 8, groups], TensorDType.I32);
        }
        else (zpBytes, zpShape, zpType) = (zp.Select(v => (byte)(sbyte)v).ToArray(), [n, groups], TensorDType.I8);
        SafetensorsFile.Write(Path.Combine(folder, "model.safetensors"),
        [
            (Module + ".weight_packed", TensorDType.I32, [n, k / 8], MemoryMarshal.AsBytes(packed.AsSpan()).ToArray()),
            (Module + ".weight_scale", TensorDType.BF16, [n, groups], MemoryMarshal.AsBytes(scales.AsSpan()).ToArray()),
            (Module + ".weight_shape", TensorDType.I64, [2], MemoryMarshal.AsBytes(new long[] { n, k }.AsSpan()).ToArray()),
            (Module + ".weight_zero_point", zpType, zpShape, zpBytes),
        ]);
        var q = JsonNode.Parse("""
            {"quant_method": "compressed-tensors", "format": "pack-quantized", "quantization_status": "compressed",
             "ignore": ["lm_head"], "config_groups": {"group_0": {"targets": ["Linear"], "input_activations": null,
             "weights": {"num_bits": 4, "type": "int", "symmetric": false, "strategy": "group", "group_size": 128,
                         "dynamic": false, "actorder": null}}}}
            """)!;
        File.WriteAllText(Path.Combine(folder, "config.json"), Config(q).ToJsonString());
        return folder;
    }

    /// <summary>Copies a committed fixture checkpoint into dir, then lets the caller edit config and tensors.</summary>
    public static string EditedFixture(string dir, string fixture, Action<JsonObject>? editQuantization = null,
        Func<List<(string Name, TensorDType DType, long[] Shape, byte[] Data)>, List<(string, TensorDType, long[], byte[])>>? editTensors = null)
    {
        string src = RepoPaths.Fixture(fixture), dst = Path.Combine(dir, fixture);
        Directory.CreateDirectory(dst);
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(src, "config.json")))!.AsObject();
        editQuantization?.Invoke(config["quantization_config"]!.AsObject());
        File.WriteAllText(Path.Combine(dst, "config.json"), config.ToJsonString());
        List<(string, TensorDType, long[], byte[])> tensors;
        using (var f = new SafetensorsFile(Path.Combine(src, "model.safetensors")))
            tensors = f.Tensors.Values.OrderBy(t => t.Offset).Select(t => (t.Name, t.DType, t.Shape, f.Bytes(t).ToArray())).ToList();
        if (editTensors != null) tensors = editTensors(tensors);
        SafetensorsFile.Write(Path.Combine(dst, "model.safetensors"), tensors);
        return dst;
    }
}
