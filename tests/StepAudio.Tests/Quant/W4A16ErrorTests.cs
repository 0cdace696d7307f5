using StepAudio.Backends;
using StepAudio.Checkpoints;
using StepAudio.Model;

namespace StepAudio.Tests.Quant;

/// <summary>Bad or unsupported W4A16 checkpoints get a CheckpointException naming what is wrong (the config key
/// or the tensor), before any memory is allocated — never a crash or a silent fallback.</summary>
public class W4A16ErrorTests
{
    static string LoadFails(string folder)
    {
        using var ck = CheckpointFolder.Open(folder);
        using var backend = new CpuBackend();
        var e = Assert.Throws<CheckpointException>(() => { using var _ = Step1Model.Load(ck, backend, new ModelOptions { MaxContext = 64, MaxTokensPerForward = 8 }); });
        return e.Message;
    }

    [Theory]
    [InlineData("group_size", "64", "group_size 64 is unsupported")]
    [InlineData("num_bits", "8", "num_bits 8 is unsupported")]
    [InlineData("actorder", "\"group\"", "act-order")]
    [InlineData("strategy", "\"channel\"", "strategy 'channel' is unsupported")]
    public void UnsupportedCompressedTensorsSchemesAreNamed(string key, string value, string expected)
    {
        using var dir = new TempDir();
        string folder = TinyCheckpoints.EditedFixture(dir.Path, "w4a16-tiny", q =>
            q["config_groups"]!["group_1"]!["weights"]![key] = System.Text.Json.Nodes.JsonNode.Parse(value));
        Assert.Contains(expected, LoadFails(folder));
    }

    [Fact]
    public void UnsupportedAutoAwqVersionsAreNamed()
    {
        using var dir = new TempDir();
        Assert.Contains("version 'gemv' is unsupported", LoadFails(TinyCheckpoints.EditedFixture(dir.Path, "autoawq-tiny", q => q["version"] = "gemv")));
        using var dir2 = new TempDir();
        Assert.Contains("bits 3 is unsupported", LoadFails(TinyCheckpoints.EditedFixture(dir2.Path, "autoawq-tiny", q => q["bits"] = 3)));
    }

    [Fact]
    public void BadTensorsAreNamed()
    {
        const string packed = "model.layers.0.self_attn.q_proj.weight_packed";
        using var dir = new TempDir();
        // Wrong shape.
        string folder = TinyCheckpoints.EditedFixture(Path.Combine(dir.Path, "a"), "w4a16-tiny", editTensors: ts =>
            ts.Select(t => t.Name == packed ? (t.Name, t.DType, new long[] { t.Shape[1], t.Shape[0] }, t.Data) : t).ToList());
        var message = LoadFails(folder);
        Assert.Contains(packed, message);
        Assert.Contains("expected [384, 48]", message);
        // Wrong dtype of the zero points (an asymmetric mlp module).
        const string zp = "model.layers.0.mlp.up_proj.weight_zero_point";
        folder = TinyCheckpoints.EditedFixture(Path.Combine(dir.Path, "b"), "w4a16-tiny", editTensors: ts =>
            ts.Select(t => t.Name == zp ? (t.Name, TensorDType.F32, t.Shape, t.Data) : t).ToList());
        message = LoadFails(folder);
        Assert.Contains(zp, message);
        Assert.Contains("F32", message);
        // Missing scale, act-order g_idx present, non-finite scale.
        const string scale = "model.layers.1.mlp.down_proj.weight_scale";
        folder = TinyCheckpoints.EditedFixture(Path.Combine(dir.Path, "c"), "w4a16-tiny", editTensors: ts => ts.Where(t => t.Name != scale).ToList());
        Assert.Contains(scale, LoadFails(folder));
        folder = TinyCheckpoints.EditedFixture(Path.Combine(dir.Path, "d"), "w4a16-tiny", editTensors: ts =>
            [.. ts, ("model.layers.0.self_attn.o_proj.weight_g_idx", TensorDType.I32, [384], new byte[384 * 4])]);
        message = LoadFails(folder);
        Assert.Contains("weight_g_idx", message);
        Assert.Contains("act-order", message);
        folder = TinyCheckpoints.EditedFixture(Path.Combine(dir.Path, "e"), "w4a16-tiny", editTensors: ts =>
            ts.Select(t => t.Name == scale ? (t.Name, t.DType, t.Shape, t.Data.Select((b, i) => i == 1 ? (byte)0x7f : i == 0 ? (byte)0x80 : b).ToArray()) : t).ToList());
        message = LoadFails(folder);
        Assert.Contains(scale, message);
        Assert.Contains("not finite", message);
    }

    [Fact]
    public void MismatchedWeightShapeTensorIsNamed()
    {
        const string shape = "model.layers.0.mlp.down_proj.weight_shape";
        using var dir = new TempDir();
        string folder = TinyCheckpoints.EditedFixture(dir.Path, "w4a16-tiny", editTensors: ts =>
            ts.Select(t => t.Name == shape ? (t.Name, t.DType, t.Shape, BitConverter.GetBytes(384L).Concat(BitConverter.GetBytes(256L)).ToArray()) : t).ToList());
        var message = LoadFails(folder);
        Assert.Contains(shape, message);
        Assert.Contains("[384, 256]", message);
    }
}
