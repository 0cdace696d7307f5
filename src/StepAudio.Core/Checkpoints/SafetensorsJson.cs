using System.Text.Json.Serialization;

namespace StepAudio.Checkpoints;

// Source-generated JSON metadata, so writing headers works in trimmed self-contained builds.
[JsonSerializable(typeof(Dictionary<string, object>))]
[JsonSerializable(typeof(Dictionary<string, string>))]
[JsonSerializable(typeof(IReadOnlyDictionary<string, string>))]
[JsonSerializable(typeof(long[]))]
[JsonSerializable(typeof(string))]
internal partial class SafetensorsJson : JsonSerializerContext;
