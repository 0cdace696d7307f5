using System.IO.MemoryMappedFiles;
using System.Text.Json;

namespace StepAudio.Checkpoints;

/// <summary>Element types of the safetensors format.</summary>
public enum TensorDType { Bool, U8, I8, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64, F8_E4M3, F8_E5M2 }

public static class TensorDTypes
{
    public static int SizeOf(TensorDType t) => t switch
    {
        TensorDType.Bool or TensorDType.U8 or TensorDType.I8 or TensorDType.F8_E4M3 or TensorDType.F8_E5M2 => 1,
        TensorDType.I16 or TensorDType.U16 or TensorDType.F16 or TensorDType.BF16 => 2,
        TensorDType.I32 or TensorDType.U32 or TensorDType.F32 => 4,
        _ => 8,
    };

    public static bool TryParse(string s, out TensorDType t) =>
        Enum.TryParse(s == "BOOL" ? "Bool" : s, ignoreCase: false, out t) && Enum.IsDefined(t);
}

/// <summary>One tensor's entry in a safetensors header. Offset is absolute within the file.</summary>
public sealed record TensorInfo(string Name, TensorDType DType, long[] Shape, long Offset, long ByteLength, string FilePath)
{
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);
    public string ShapeText => "[" + string.Join(", ", Shape) + "]";
}

/// <summary>A memory-mapped .safetensors file: an 8-byte little-endian header length, a UTF-8 JSON header
/// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}, then the raw row-major bytes
/// (offsets relative to the end of the header). Every header entry is validated before any byte is read.</summary>
public sealed unsafe class SafetensorsFile : IDisposable
{
    /// <summary>Headers larger than this are refused (the format's own reference implementation uses 100 MB).</summary>
    public const long MaxHeaderBytes = 100L * 1024 * 1024;

    readonly MemoryMappedFile? _map;
    readonly MemoryMappedViewAccessor? _view;
    readonly byte* _base;
    readonly long _length;

    public string FilePath { get; }
    public IReadOnlyDictionary<string, TensorInfo> Tensors { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }

    public SafetensorsFile(string path)
    {
        FilePath = Path.GetFullPath(path);
        if (!File.Exists(FilePath)) throw new CheckpointException("file not found", FilePath);
        _length = new FileInfo(FilePath).Length;
        if (_length < 8) throw new CheckpointException($"too short to be a safetensors file ({_length} bytes)", FilePath);

        long headerLength;
        byte[] header;
        using (var stream = File.OpenRead(FilePath))
        {
            Span<byte> lengthBytes = stackalloc byte[8];
            stream.ReadExactly(lengthBytes);
            headerLength = BitConverter.ToInt64(lengthBytes);
            if (headerLength <= 0 || headerLength > MaxHeaderBytes || 8 + headerLength > _length)
                throw new CheckpointException(
                    $"corrupt header length {headerLength} (file is {_length} bytes; truncated or not a safetensors file)", FilePath);
            header = new byte[headerLength];
            stream.ReadExactly(header);
        }
        long dataStart = 8 + headerLength;
        (Tensors, Metadata) = ParseHeader(header, dataStart, _length - dataStart);

        if (_length > 0)
        {
            _map = MemoryMappedFile.CreateFromFile(FilePath, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
            _view = _map.CreateViewAccessor(0, _length, MemoryMappedFileAccess.Read);
            _view.SafeMemoryMappedViewHandle.AcquirePointer(ref _base);
        }
    }

    (Dictionary<string, TensorInfo>, Dictionary<string, string>) ParseHeader(byte[] header, long dataStart, long dataLength)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(header); }
        catch (JsonException e) { throw new CheckpointException($"header is not valid JSON: {e.Message}", FilePath, inner: e); }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new CheckpointException("header JSON is not an object", FilePath);
            var tensors = new Dictionary<string, TensorInfo>(StringComparer.Ordinal);
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            var ranges = new List<(long Begin, long End, string Name)>();
            foreach (var property in doc.RootElement.EnumerateObject())
            {
                if (property.Name == "__metadata__")
                {
                    if (property.Value.ValueKind != JsonValueKind.Object)
                        throw new CheckpointException("__metadata__ is not an object", FilePath);
                    foreach (var m in property.Value.EnumerateObject())
                        metadata[m.Name] = m.Value.ValueKind == JsonValueKind.String ? m.Value.GetString()! : m.Value.GetRawText();
                    continue;
                }
                var info = ParseEntry(property.Name, property.Value, dataStart, dataLength);
                tensors[property.Name] = info;
                if (info.ByteLength > 0) ranges.Add((info.Offset, info.Offset + info.ByteLength, info.Name));
            }
            ranges.Sort((a, b) => a.Begin.CompareTo(b.Begin));
            for (int i = 1; i < ranges.Count; i++)
                if (ranges[i].Begin < ranges[i - 1].End)
                    throw new CheckpointException($"byte range overlaps tensor '{ranges[i - 1].Name}'", FilePath, ranges[i].Name);
            return (tensors, metadata);
        }
    }

    TensorInfo ParseEntry(string name, JsonElement e, long dataStart, long dataLength)
    {
        if (e.ValueKind != JsonValueKind.Object) throw new CheckpointException("header entry is not an object", FilePath, name);
        if (!e.TryGetProperty("dtype", out var dt) || dt.ValueKind != JsonValueKind.String)
            throw new CheckpointException("missing 'dtype'", FilePath, name);
        if (!TensorDTypes.TryParse(dt.GetString()!, out var dtype))
            throw new CheckpointException($"unknown dtype '{dt.GetString()}'", FilePath, name);
        if (!e.TryGetProperty("shape", out var sh) || sh.ValueKind != JsonValueKind.Array)
            throw new CheckpointException("missing 'shape'", FilePath, name);
        var shape = new long[sh.GetArrayLength()];
        int i = 0;
        foreach (var d in sh.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out long v) || v < 0)
                throw new CheckpointException($"invalid shape {sh.GetRawText()}", FilePath, name);
            shape[i++] = v;
        }
        if (!e.TryGetProperty("data_offsets", out var off) || off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2)
            throw new CheckpointException("missing or malformed 'data_offsets'", FilePath, name);
        long begin, end;
        try { begin = off[0].GetInt64(); end = off[1].GetInt64(); }
        catch (Exception ex) when (ex is FormatException or InvalidOperationException)
        { throw new CheckpointException($"invalid data_offsets {off.GetRawText()}", FilePath, name, ex); }
        if (begin < 0 || end < begin)
            throw new CheckpointException($"invalid data_offsets [{begin}, {end}]", FilePath, name);
        if (end > dataLength)
            throw new CheckpointException(
                $"data_offsets [{begin}, {end}] run past the end of the file's data ({dataLength} bytes): the file is truncated or corrupt", FilePath, name);
        long elements = 1;
        foreach (long d in shape) elements = checked(elements * d);
        long expected = checked(elements * TensorDTypes.SizeOf(dtype));
        if (expected != end - begin)
            throw new CheckpointException(
                $"shape [{string.Join(", ", shape)}] of {dtype} needs {expected} bytes but data_offsets give {end - begin}", FilePath, name);
        return new TensorInfo(name, dtype, shape, dataStart + begin, end - begin, FilePath);
    }

    public TensorInfo Get(string name) =>
        Tensors.TryGetValue(name, out var t) ? t : throw new CheckpointException("tensor not found", FilePath, name);

    /// <summary>The tensor's bytes, straight from the mapping (no copy). Valid while this object lives.</summary>
    public ReadOnlySpan<byte> Bytes(TensorInfo t)
    {
        ObjectDisposedException.ThrowIf(_view == null && _length > 0, this);
        if (t.FilePath != FilePath) throw new ArgumentException($"tensor '{t.Name}' belongs to {t.FilePath}");
        if (t.ByteLength > int.MaxValue)
            throw new CheckpointException("tensor larger than 2 GiB cannot be viewed as one span", FilePath, t.Name);
        return new ReadOnlySpan<byte>(_base + t.Offset, (int)t.ByteLength);
    }

    /// <summary>Pointer to the tensor's first byte, for bulk copies of very large tensors.</summary>
    public nint Pointer(TensorInfo t) => (nint)(_base + t.Offset);

    public void Dispose()
    {
        if (_view != null)
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
        }
        _map?.Dispose();
    }

    /// <summary>Writes a safetensors file (used by tests and the quantize command). Tensors are written in the given
    /// order; the file appears only when complete (written to a temporary name, then renamed).</summary>
    public static void Write(string path, IEnumerable<(string Name, TensorDType DType, long[] Shape, byte[] Data)> tensors,
        IReadOnlyDictionary<string, string>? metadata = null)
    {
        var list = tensors.ToList();
        // The header is written with Utf8JsonWriter: no reflection, so it works in trimmed builds.
        var headerStream = new MemoryStream();
        using (var w = new Utf8JsonWriter(headerStream))
        {
            w.WriteStartObject();
            if (metadata != null)
            {
                w.WriteStartObject("__metadata__");
                foreach (var (key, value) in metadata) w.WriteString(key, value);
                w.WriteEndObject();
            }
            long offset = 0;
            foreach (var (name, dtype, shape, data) in list)
            {
                w.WriteStartObject(name);
                w.WriteString("dtype", dtype == TensorDType.Bool ? "BOOL" : dtype.ToString());
                w.WriteStartArray("shape");
                foreach (long d in shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                w.WriteNumberValue(offset + data.LongLength);
                w.WriteEndArray();
                w.WriteEndObject();
                offset += data.LongLength;
            }
            w.WriteEndObject();
        }
        byte[] json = headerStream.ToArray();
        int pad = (8 - json.Length % 8) % 8; // align data to 8 bytes, padding with spaces as the reference writer does
        string tmp = path + ".partial";
        using (var f = File.Create(tmp))
        {
            f.Write(BitConverter.GetBytes((long)(json.Length + pad)));
            f.Write(json);
            for (int i = 0; i < pad; i++) f.WriteByte((byte)' ');
            foreach (var t in list) f.Write(t.Data);
        }
        File.Move(tmp, path, overwrite: true);
    }
}
