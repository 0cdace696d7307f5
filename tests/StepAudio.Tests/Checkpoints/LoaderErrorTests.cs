using System.Text;
using StepAudio.Backends;
using StepAudio.Checkpoints;
using StepAudio.Model;

namespace StepAudio.Tests.Checkpoints;

/// <summary>Every loader error path on crafted bad files: the error is a CheckpointException naming the file and,
/// where one is involved, the tensor or the config key — never a crash.</summary>
public class LoaderErrorTests
{
    static void WriteRaw(string path, string headerJson, int dataBytes, long? headerLengthOverride = null)
    {
        var header = Encoding.UTF8.GetBytes(headerJson);
        using var f = File.Create(path);
        f.Write(BitConverter.GetBytes(headerLengthOverride ?? header.Length));
        f.Write(header);
        f.Write(new byte[dataBytes].Select((_, i) => (byte)(i * 7 + 1)).ToArray());
    }

    static CheckpointException OpenFails(string path)
    {
        var e = Assert.Throws<CheckpointException>(() => { using var _ = new SafetensorsFile(path); });
        Assert.Equal(Path.GetFullPath(path), e.FilePath);
        Assert.Contains(Path.GetFileName(path), e.Message);
        return e;
    }

    [Fact]
    public void ReadsAWellFormedFile()
    {
        using var dir = new TempDir();
        var data = Enumerable.Range(0, 24).Select(i => (byte)(i + 3)).ToArray();
        SafetensorsFile.Write(dir.File("ok.safetensors"), [("a", TensorDType.BF16, [2, 3], data[..12]), ("b", TensorDType.F32, [3], data[12..])]);
        using var f = new SafetensorsFile(dir.File("ok.safetensors"));
        Assert.Equal(data[..12], f.Bytes(f.Get("a")).ToArray());
        Assert.Equal(data[12..], f.Bytes(f.Get("b")).ToArray());
        Assert.Equal([2L, 3L], f.Get("a").Shape);
    }

    [Fact]
    public void TooShortFile()
    {
        using var dir = new TempDir();
        File.WriteAllBytes(dir.File("short.safetensors"), [1, 2, 3]);
        Assert.Contains("too short", OpenFails(dir.File("short.safetensors")).Message);
    }

    [Fact]
    public void HeaderLengthPastTheEnd()
    {
        using var dir = new TempDir();
        WriteRaw(dir.File("len.safetensors"), "{}", 0, headerLengthOverride: 1 << 20);
        Assert.Contains("header length", OpenFails(dir.File("len.safetensors")).Message);
    }

    [Fact]
    public void HeaderIsNotJson()
    {
        using var dir = new TempDir();
        WriteRaw(dir.File("json.safetensors"), "{\"a\": [1,", 0);
        Assert.Contains("not valid JSON", OpenFails(dir.File("json.safetensors")).Message);
    }

    [Fact]
    public void UnknownDtypeNamesTheTensor()
    {
        using var dir = new TempDir();
        WriteRaw(dir.File("dt.safetensors"), "{\"w\":{\"dtype\":\"Q7\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2);
        var e = OpenFails(dir.File("dt.safetensors"));
        Assert.Equal("w", e.TensorName);
        Assert.Contains("Q7", e.Message);
    }

    [Fact]
    public void ShapeDisagreesWithByteRange()
    {
        using var dir = new TempDir();
        WriteRaw(dir.File("shape.safetensors"), "{\"w\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,10]}}", 10);
        var e = OpenFails(dir.File("shape.safetensors"));
        Assert.Equal("w", e.TensorName);
        Assert.Contains("needs 12 bytes", e.Message);
    }

    [Fact]
    public void TruncatedDataIsReportedAsTruncated()
    {
        using var dir = new TempDir();
        WriteRaw(dir.File("trunc.safetensors"), "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 9);
        var e = OpenFails(dir.File("trunc.safetensors"));
        Assert.Equal("w", e.TensorName);
        Assert.Contains("truncated", e.Message);
    }

    [Fact]
    public void OverlappingRanges()
    {
        using var dir = new TempDir();
        WriteRaw(dir.File("ov.safetensors"),
            "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]}}", 6);
        Assert.Contains("overlaps", OpenFails(dir.File("ov.safetensors")).Message);
    }

    static void CopyTiny(string to)
    {
        Directory.CreateDirectory(to);
        foreach (var f in Directory.GetFiles(RepoPaths.TinyModel)) File.Copy(f, Path.Combine(to, Path.GetFileName(f)));
    }

    [Fact]
    public void IndexNamesAMissingShard()
    {
        using var dir = new TempDir();
        CopyTiny(dir.Path);
        File.Delete(dir.File("model-00002-of-00002.safetensors"));
        var e = Assert.Throws<CheckpointException>(() => CheckpointFolder.Open(dir.Path));
        Assert.Contains("model-00002-of-00002.safetensors", e.Message);
        Assert.Contains("missing", e.Message);
        Assert.NotNull(e.TensorName);
    }

    [Fact]
    public void IndexListsATensorTheShardLacks()
    {
        using var dir = new TempDir();
        CopyTiny(dir.Path);
        string index = dir.File(CheckpointFolder.IndexFileName);
        File.WriteAllText(index, File.ReadAllText(index).Replace("\"weight_map\": {", "\"weight_map\": {\n    \"model.ghost.weight\": \"model-00001-of-00002.safetensors\","));
        var e = Assert.Throws<CheckpointException>(() => CheckpointFolder.Open(dir.Path));
        Assert.Equal("model.ghost.weight", e.TensorName);
    }

    [Theory]
    [InlineData("\"hidden_size\": 384,", "", "missing required key 'hidden_size'")]
    [InlineData("\"num_attention_groups\": 4", "\"num_attention_groups\": \"four\"", "'num_attention_groups' must be a non-negative integer")]
    [InlineData("\"num_attention_groups\": 4", "\"num_attention_groups\": 5", "not a multiple of num_attention_groups")]
    [InlineData("\"model_type\": \"step1\"", "\"model_type\": \"llama\"", "model_type is 'llama'")]
    public void BadConfigNamesTheKey(string find, string replace, string expected)
    {
        using var dir = new TempDir();
        CopyTiny(dir.Path);
        string config = dir.File("config.json");
        string text = File.ReadAllText(config);
        Assert.Contains(find, text);
        File.WriteAllText(config, text.Replace(find, replace));
        var e = Assert.Throws<CheckpointException>(() => CheckpointFolder.Open(dir.Path));
        Assert.Contains(expected, e.Message);
        Assert.Contains("config.json", e.Message);
    }

    [Fact]
    public void WrongShapeTensorIsNamedAndNothingIsAllocated()
    {
        using var dir = new TempDir();
        CopyTiny(dir.Path);
        // Rewrite shard 2 with one tensor transposed.
        string shard = dir.File("model-00002-of-00002.safetensors");
        List<(string, TensorDType, long[], byte[])> tensors;
        using (var f = new SafetensorsFile(shard))
            tensors = f.Tensors.Values.OrderBy(t => t.Offset).Select(t => (t.Name, t.DType,
                t.Name == "lm_head.weight" ? t.Shape.Reverse().ToArray() : t.Shape, f.Bytes(t).ToArray())).ToList();
        SafetensorsFile.Write(shard, tensors);
        using var checkpoint = CheckpointFolder.Open(dir.Path);
        var e = Assert.Throws<CheckpointException>(() => Step1Model.Load(checkpoint, new CpuBackend()));
        Assert.Contains("'lm_head.weight' has shape [384, 512], expected [512, 384]", e.Message);
    }

    [Fact]
    public void QuantizedFolderIsRecognisedAndRefusedClearly()
    {
        using var dir = new TempDir();
        CopyTiny(dir.Path);
        string config = dir.File("config.json");
        File.WriteAllText(config, File.ReadAllText(config).Replace("\"torch_dtype\"",
            "\"quantization_config\": {\"quant_method\": \"bitsandbytes\", \"load_in_4bit\": true},\n  \"torch_dtype\""));
        using var checkpoint = CheckpointFolder.Open(dir.Path);
        Assert.Equal(ModelVariant.BitsAndBytesNf4, checkpoint.Variant);
        var e = Assert.Throws<CheckpointException>(() => Step1Model.Load(checkpoint, new CpuBackend()));
        // NF4 checkpoints load now (tests/StepAudio.Tests/Quant/Nf4Tests.cs); bf16 tensors under a bnb config are refused.
        Assert.Contains("quant_state", e.Message);
    }

    [Fact]
    public void MissingFolderAndMissingConfig()
    {
        using var dir = new TempDir();
        Assert.Contains("not found", Assert.Throws<CheckpointException>(() => CheckpointFolder.Open(dir.File("nope"))).Message);
        Assert.Contains("config.json not found", Assert.Throws<CheckpointException>(() => CheckpointFolder.Open(dir.Path)).Message);
    }
}
