using System.Text.Json;

namespace StepAudio.Checkpoints;

/// <summary>Which released form of Step-Audio-EditX a folder holds (spec §6).</summary>
public enum ModelVariant { Base, BitsAndBytesNf4, CompressedTensorsW4A16, Unknown }

/// <summary>A Step-Audio-EditX LLM folder: config.json plus one or more safetensors shards (with
/// model.safetensors.index.json when sharded). Opening validates every shard header and the index; tensor bytes are
/// memory-mapped, not read.</summary>
public sealed class CheckpointFolder : IDisposable
{
    public const string IndexFileName = "model.safetensors.index.json";

    readonly List<SafetensorsFile> _files = [];
    readonly Dictionary<string, (SafetensorsFile File, TensorInfo Info)> _tensors = new(StringComparer.Ordinal);

    public string Folder { get; }
    public Step1Config Config { get; }
    public ModelVariant Variant { get; }
    public IReadOnlyList<SafetensorsFile> Files => _files;
    public IEnumerable<TensorInfo> Tensors => _tensors.Values.Select(v => v.Info);
    public long TotalBytes => _tensors.Values.Sum(v => v.Info.ByteLength);

    CheckpointFolder(string folder)
    {
        Folder = Path.GetFullPath(folder);
        if (!Directory.Exists(Folder)) throw new CheckpointException("checkpoint folder not found", Folder);
        Config = Step1Config.Load(Path.Combine(Folder, "config.json"));
        Variant = DetectVariant(Config, Path.Combine(Folder, "config.json"));
    }

    public static CheckpointFolder Open(string folder)
    {
        var checkpoint = new CheckpointFolder(folder);
        try
        {
            checkpoint.OpenShards();
            return checkpoint;
        }
        catch
        {
            checkpoint.Dispose();
            throw;
        }
    }

    static ModelVariant DetectVariant(Step1Config config, string configPath)
    {
        if (config.QuantizationConfig is not { } q) return ModelVariant.Base;
        string method = q.ValueKind == JsonValueKind.Object && q.TryGetProperty("quant_method", out var m) && m.ValueKind == JsonValueKind.String
            ? m.GetString()! : "";
        return method switch
        {
            "bitsandbytes" => ModelVariant.BitsAndBytesNf4,
            "compressed-tensors" or "awq" => ModelVariant.CompressedTensorsW4A16,
            _ => ModelVariant.Unknown,
        };
    }

    void OpenShards()
    {
        string indexPath = Path.Combine(Folder, IndexFileName);
        if (File.Exists(indexPath))
        {
            var weightMap = ReadIndex(indexPath);
            foreach (string shard in weightMap.Values.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal))
            {
                string shardPath = Path.Combine(Folder, shard);
                if (!File.Exists(shardPath))
                    throw new CheckpointException($"shard '{shard}' named by {IndexFileName} is missing", shardPath,
                        weightMap.First(kv => kv.Value == shard).Key);
                AddFile(new SafetensorsFile(shardPath));
            }
            foreach (var (name, shard) in weightMap)
            {
                if (!_tensors.TryGetValue(name, out var found))
                    throw new CheckpointException($"listed in {IndexFileName} but absent from the shard", Path.Combine(Folder, shard), name);
                if (Path.GetFileName(found.File.FilePath) != shard)
                    throw new CheckpointException($"{IndexFileName} places it in '{shard}' but it is in '{Path.GetFileName(found.File.FilePath)}'",
                        found.File.FilePath, name);
            }
        }
        else
        {
            var shards = Directory.GetFiles(Folder, "*.safetensors").Order(StringComparer.Ordinal).ToList();
            if (shards.Count == 0)
                throw new CheckpointException($"no *.safetensors file and no {IndexFileName}", Folder);
            foreach (string path in shards) AddFile(new SafetensorsFile(path));
        }
    }

    static Dictionary<string, string> ReadIndex(string indexPath)
    {
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(indexPath));
            if (!doc.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw new CheckpointException("missing 'weight_map' object", indexPath);
            var result = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var p in map.EnumerateObject())
            {
                string? shard = p.Value.ValueKind == JsonValueKind.String ? p.Value.GetString() : null;
                if (string.IsNullOrEmpty(shard) || shard.Contains('/') || shard.Contains('\\') || shard.Contains(".."))
                    throw new CheckpointException($"weight_map entry has an invalid shard name {p.Value.GetRawText()}", indexPath, p.Name);
                result[p.Name] = shard;
            }
            return result;
        }
        catch (JsonException e) { throw new CheckpointException($"not valid JSON: {e.Message}", indexPath, inner: e); }
    }

    void AddFile(SafetensorsFile file)
    {
        _files.Add(file);
        foreach (var info in file.Tensors.Values)
        {
            if (_tensors.TryGetValue(info.Name, out var other))
                throw new CheckpointException($"tensor also present in {other.File.FilePath}", file.FilePath, info.Name);
            _tensors[info.Name] = (file, info);
        }
    }

    public bool Contains(string name) => _tensors.ContainsKey(name);

    public TensorInfo Info(string name) =>
        _tensors.TryGetValue(name, out var t) ? t.Info : throw new CheckpointException("tensor not found in the checkpoint", Folder, name);

    /// <summary>The tensor after checking its dtype and shape; the error names file, tensor, expected and found.</summary>
    public TensorInfo Require(string name, TensorDType dtype, params long[] shape)
    {
        var info = Info(name);
        if (info.DType != dtype)
            throw new CheckpointException($"dtype is {info.DType}, expected {dtype}", info.FilePath, name);
        if (!info.Shape.SequenceEqual(shape))
            throw new CheckpointException($"shape is {info.ShapeText}, expected [{string.Join(", ", shape)}]", info.FilePath, name);
        return info;
    }

    public ReadOnlySpan<byte> Bytes(TensorInfo info) => _tensors[info.Name].File.Bytes(info);
    public nint Pointer(TensorInfo info) => _tensors[info.Name].File.Pointer(info);

    public void Dispose()
    {
        foreach (var f in _files) f.Dispose();
        _files.Clear();
    }
}
