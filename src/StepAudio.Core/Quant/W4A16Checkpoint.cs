using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.RegularExpressions;
using StepAudio.Checkpoints;
using StepAudio.Model;

namespace StepAudio.Quant;

/// <summary>Reads int4 checkpoints in the two formats users have (shared/docs/quant-kernels.md §2):
///  * compressed-tensors "pack-quantized" (llm-compressor W4A16 / W4A16_ASYM): P.weight_packed I32 [N, K/8] packed
///    along K, element 8j+i at bits 4i, code q+8; P.weight_scale [N, K/G]; P.weight_shape [2]; asymmetric schemes add
///    P.weight_zero_point, I32 [ceil(N/8), K/G] packed along N (≥ 0.10) or I8 [N, K/G] signed (older);
///  * AutoAWQ GEMM (quant_method "awq", version "gemm"): P.qweight I32 [K, N/8] packed along N in the order
///    0,2,4,6,1,3,5,7, P.qzeros I32 [K/G, N/8], P.scales F16 [K/G, N]; w = (q − z)·s with unsigned q, z.
/// Group size 128 and 4 bits only; act-order (g_idx) and other variants are refused with an error naming them.
/// Embeddings, norms (AWQ rescales them) and lm_head come from the same folder as bf16.</summary>
public sealed class W4A16Checkpoint
{
    enum Kind { CompressedTensors, AutoAwq }

    sealed record Scheme(bool Symmetric);
    sealed record Group(string Name, string[] Targets, Scheme Scheme);

    readonly Kind _kind;
    readonly List<Group> _groups = [];
    string[] _ignore = [];
    readonly string _configPath;

    public string FormatName => _kind == Kind.AutoAwq ? "AutoAWQ GEMM" : "compressed-tensors pack-quantized";

    public W4A16Checkpoint(CheckpointFolder checkpoint)
    {
        _configPath = Path.Combine(checkpoint.Folder, "config.json");
        if (checkpoint.Config.QuantizationConfig is not { ValueKind: JsonValueKind.Object } q)
            throw Bad("no quantization_config object: not a W4A16 checkpoint");
        string method = Str(q, "quant_method") ?? "";
        if (method == "awq") { _kind = Kind.AutoAwq; ReadAutoAwq(q); }
        else if (method == "compressed-tensors") { _kind = Kind.CompressedTensors; ReadCompressedTensors(q); }
        else throw Bad($"quantization_config.quant_method '{method}' is not compressed-tensors or awq");
    }

    CheckpointException Bad(string message) => new(message, _configPath);

    static string? Str(JsonElement e, string key) =>
        e.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    void ReadAutoAwq(JsonElement q)
    {
        string version = (Str(q, "version") ?? "gemm").ToLowerInvariant();
        if (version != "gemm")
            throw Bad($"AutoAWQ version '{version}' is unsupported (only \"gemm\"; \"gemv\" and \"gemv_fast\" use other layouts)");
        if (!q.TryGetProperty("bits", out var b) || !b.TryGetInt32(out int bits) || bits != 4)
            throw Bad($"AutoAWQ bits {(q.TryGetProperty("bits", out var bb) ? bb.GetRawText() : "missing")} is unsupported (only 4)");
        if (!q.TryGetProperty("group_size", out var g) || !g.TryGetInt32(out int gs) || gs != W4A16Weight.GroupSize)
            throw Bad($"AutoAWQ group_size {(q.TryGetProperty("group_size", out var gg) ? gg.GetRawText() : "missing")} is unsupported (only {W4A16Weight.GroupSize})");
        if (q.TryGetProperty("zero_point", out var z) && z.ValueKind == JsonValueKind.False)
            throw Bad("AutoAWQ zero_point false is unsupported (only the zero-point GEMM format)");
        if (q.TryGetProperty("modules_to_not_convert", out var m) && m.ValueKind == JsonValueKind.Array)
            _ignore = m.EnumerateArray().Select(x => x.GetString() ?? "").ToArray();
    }

    void ReadCompressedTensors(JsonElement q)
    {
        string format = Str(q, "format") ?? "";
        if (format != "pack-quantized")
            throw Bad($"compressed-tensors format '{format}' is unsupported (only \"pack-quantized\")");
        string status = Str(q, "quantization_status") ?? "compressed";
        if (status != "compressed") throw Bad($"quantization_status '{status}' is unsupported (only \"compressed\" checkpoints)");
        if (q.TryGetProperty("ignore", out var ig) && ig.ValueKind == JsonValueKind.Array)
            _ignore = ig.EnumerateArray().Select(x => x.GetString() ?? "").ToArray();
        if (!q.TryGetProperty("config_groups", out var groups) || groups.ValueKind != JsonValueKind.Object)
            throw Bad("quantization_config has no config_groups object");
        foreach (var gp in groups.EnumerateObject())
        {
            var g = gp.Value;
            string where = $"config_groups.{gp.Name}";
            if (g.TryGetProperty("input_activations", out var ia) && ia.ValueKind != JsonValueKind.Null)
                throw Bad($"{where}: input_activations quantization is unsupported (W4A16 only: 16-bit activations)");
            if (!g.TryGetProperty("weights", out var w) || w.ValueKind != JsonValueKind.Object)
                throw Bad($"{where} has no weights scheme");
            int bits = w.TryGetProperty("num_bits", out var nb) && nb.TryGetInt32(out int v) ? v : -1;
            if (bits != 4) throw Bad($"{where}.weights.num_bits {bits} is unsupported (only 4)");
            if ((Str(w, "type") ?? "int") != "int") throw Bad($"{where}.weights.type '{Str(w, "type")}' is unsupported (only int)");
            string strategy = Str(w, "strategy") ?? "";
            if (strategy != "group") throw Bad($"{where}.weights.strategy '{strategy}' is unsupported (only group, group_size {W4A16Weight.GroupSize})");
            int gs = w.TryGetProperty("group_size", out var gsz) && gsz.TryGetInt32(out int gv) ? gv : -1;
            if (gs != W4A16Weight.GroupSize) throw Bad($"{where}.weights.group_size {gs} is unsupported (only {W4A16Weight.GroupSize})");
            if (w.TryGetProperty("actorder", out var ao) && ao.ValueKind is not (JsonValueKind.Null or JsonValueKind.False))
                throw Bad($"{where}.weights.actorder {ao.GetRawText()} is unsupported (act-order / g_idx checkpoints)");
            if (w.TryGetProperty("dynamic", out var dy) && dy.ValueKind == JsonValueKind.True)
                throw Bad($"{where}.weights.dynamic true is unsupported");
            bool symmetric = !w.TryGetProperty("symmetric", out var sy) || sy.ValueKind != JsonValueKind.False;
            var targets = g.TryGetProperty("targets", out var t) && t.ValueKind == JsonValueKind.Array
                ? t.EnumerateArray().Select(x => x.GetString() ?? "").ToArray() : [];
            _groups.Add(new Group(gp.Name, targets, new Scheme(symmetric)));
        }
    }

    static bool Matches(string pattern, string module) =>
        pattern == "Linear" || pattern == module ||
        (pattern.StartsWith("re:", StringComparison.Ordinal) && Regex.IsMatch(module, pattern[3..]));

    /// <summary>The scheme of a transformer-block linear; throws when it is ignored or matched by no group.</summary>
    Scheme SchemeOf(string module)
    {
        // compressed-tensors ignore: exact names or "re:" patterns; AutoAWQ modules_to_not_convert: substrings.
        bool ignored = _kind == Kind.AutoAwq ? _ignore.Any(p => p.Length > 0 && module.Contains(p, StringComparison.Ordinal))
                                             : _ignore.Any(p => p != "Linear" && Matches(p, module));
        if (ignored)
            throw Bad($"module '{module}' is excluded from quantization (ignore / modules_to_not_convert): mixed bf16 and int4 block linears are unsupported");
        if (_kind == Kind.AutoAwq) return new Scheme(Symmetric: false);
        var group = _groups.FirstOrDefault(g => g.Targets.Any(t => Matches(t, module)))
            ?? throw Bad($"module '{module}' matches no config_groups target");
        return group.Scheme;
    }

    /// <summary>Everything that stops loading: config problems, missing / mis-typed / mis-shaped tensors, unexpected
    /// tensors (g_idx, bias), non-bf16 embeddings / norms / lm_head.</summary>
    public List<string> Problems(CheckpointFolder checkpoint)
    {
        var problems = new List<string>();
        var c = checkpoint.Config;
        var known = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, shape) in Step1Layout.BaseTensors(c))
        {
            string module = name[..^".weight".Length];
            if (!IsBlockLinear(module))
            {
                known.Add(name);
                if (!checkpoint.Contains(name)) { problems.Add($"missing tensor '{name}'"); continue; }
                var info = checkpoint.Info(name);
                if (info.DType != TensorDType.BF16) problems.Add($"{info.FilePath}: tensor '{name}' is {info.DType}, expected BF16");
                if (!info.Shape.SequenceEqual(shape)) problems.Add($"{info.FilePath}: tensor '{name}' has shape {info.ShapeText}, expected [{string.Join(", ", shape)}]");
                continue;
            }
            foreach (var t in TensorNames(module, symmetric: true).Concat([module + ".weight_zero_point"])) known.Add(t);
            try { ReadModuleInfos(checkpoint, module, (int)shape[0], (int)shape[1]); }
            catch (CheckpointException e) { problems.Add(e.Message); }
        }
        foreach (var t in checkpoint.Tensors)
            if (!known.Contains(t.Name))
                problems.Add($"{t.FilePath}: unexpected tensor '{t.Name}' {t.DType}{t.ShapeText}" +
                             (t.Name.EndsWith("g_idx") ? " (act-order checkpoints are unsupported)" : ""));
        return problems;
    }

    static bool IsBlockLinear(string module) => module.Contains(".self_attn.") || module.Contains(".mlp.");

    IEnumerable<string> TensorNames(string module, bool symmetric) => _kind == Kind.AutoAwq
        ? [module + ".qweight", module + ".qzeros", module + ".scales"]
        : symmetric ? [module + ".weight_packed", module + ".weight_scale", module + ".weight_shape"]
                    : [module + ".weight_packed", module + ".weight_scale", module + ".weight_shape", module + ".weight_zero_point"];

    /// <summary>Checks one module's tensors (dtype, shape) against its expected [N, K]; returns them.</summary>
    TensorInfo[] ReadModuleInfos(CheckpointFolder ck, string module, int n, int k)
    {
        var scheme = SchemeOf(module);
        int groups = k / W4A16Weight.GroupSize;
        if (k % W4A16Weight.GroupSize != 0)
            throw Bad($"module '{module}' has K={k}, not a multiple of the group size {W4A16Weight.GroupSize}");
        if (_kind == Kind.AutoAwq)
        {
            if (n % 8 != 0) throw Bad($"module '{module}' has N={n}, not a multiple of 8 (AutoAWQ packing)");
            return [ck.Require(module + ".qweight", TensorDType.I32, k, n / 8),
                    ck.Require(module + ".qzeros", TensorDType.I32, groups, n / 8),
                    ck.Require(module + ".scales", TensorDType.F16, groups, n)];
        }
        var packed = ck.Require(module + ".weight_packed", TensorDType.I32, n, k / 8);
        var scale = ck.Info(module + ".weight_scale");
        if (scale.DType is not (TensorDType.BF16 or TensorDType.F16))
            throw new CheckpointException($"dtype is {scale.DType}; only BF16 or F16 scales are supported", scale.FilePath, scale.Name);
        ck.Require(scale.Name, scale.DType, n, groups);
        var shape = ck.Info(module + ".weight_shape");
        if (shape.DType is not (TensorDType.I64 or TensorDType.I32) || shape.ElementCount != 2)
            throw new CheckpointException($"expected 2 integers, found {shape.DType}{shape.ShapeText}", shape.FilePath, shape.Name);
        var b = ck.Bytes(shape);
        long s0 = shape.DType == TensorDType.I64 ? BitConverter.ToInt64(b) : BitConverter.ToInt32(b);
        long s1 = shape.DType == TensorDType.I64 ? BitConverter.ToInt64(b[8..]) : BitConverter.ToInt32(b[4..]);
        if (s0 != n || s1 != k)
            throw new CheckpointException($"holds [{s0}, {s1}] but the model config needs [{n}, {k}]", shape.FilePath, shape.Name);
        if (ck.Contains(module + ".weight_g_idx"))
            throw new CheckpointException("act-order (g_idx) checkpoints are unsupported", ck.Info(module + ".weight_g_idx").FilePath, module + ".weight_g_idx");
        if (scheme.Symmetric)
        {
            if (ck.Contains(module + ".weight_zero_point"))
                throw new CheckpointException("present, but the config's scheme for this module is symmetric", ck.Info(module + ".weight_zero_point").FilePath, module + ".weight_zero_point");
            return [packed, scale];
        }
        var zp = ck.Info(module + ".weight_zero_point");
        if (zp.DType == TensorDType.I32) ck.Require(zp.Name, TensorDType.I32, (n + 7) / 8, groups);
        else if (zp.DType == TensorDType.I8) ck.Require(zp.Name, TensorDType.I8, n, groups);
        else throw new CheckpointException($"dtype is {zp.DType}; expected I32 (packed along N) or I8 (unpacked, before compressed-tensors 0.10)", zp.FilePath, zp.Name);
        return [packed, scale, zp];
    }

    /// <summary>Reads one module and repacks it into the kernel layout (exact).</summary>
    public W4A16Weight Load(CheckpointFolder ck, string module, int n, int k)
    {
        var infos = ReadModuleInfos(ck, module, n, k);
        int groups = k / W4A16Weight.GroupSize;
        if (_kind == Kind.AutoAwq)
        {
            var scales = MemoryMarshal.Cast<byte, ushort>(ck.Bytes(infos[2])).ToArray();
            CheckScales(scales, fp16: true, infos[2]);
            return W4A16Weight.FromAutoAwq(n, k, MemoryMarshal.Cast<byte, int>(ck.Bytes(infos[0])).ToArray(),
                MemoryMarshal.Cast<byte, int>(ck.Bytes(infos[1])).ToArray(), scales);
        }
        bool fp16 = infos[1].DType == TensorDType.F16;
        var s = MemoryMarshal.Cast<byte, ushort>(ck.Bytes(infos[1])).ToArray();
        CheckScales(s, fp16, infos[1]);
        byte[]? zeros = infos.Length == 3 ? ReadZeroPoints(ck, infos[2], n, groups) : null;
        return W4A16Weight.FromCompressedTensors(n, k, MemoryMarshal.Cast<byte, int>(ck.Bytes(infos[0])), s, zeros, fp16);
    }

    /// <summary>compressed-tensors zero points → zero codes zp + 8 in [0, 15], [N, K/G].</summary>
    static byte[] ReadZeroPoints(CheckpointFolder ck, TensorInfo zp, int n, int groups)
    {
        var zeros = new byte[(long)n * groups];
        var raw = ck.Bytes(zp);
        if (zp.DType == TensorDType.I32)
        {
            var words = MemoryMarshal.Cast<byte, uint>(raw);
            for (int r = 0; r < n; r++)
                for (int g = 0; g < groups; g++)
                    zeros[(long)r * groups + g] = (byte)((words[(r / 8) * groups + g] >> (4 * (r % 8))) & 15u);
            return zeros;
        }
        for (long i = 0; i < zeros.Length; i++)
        {
            int z = (sbyte)raw[(int)i];
            if (z < -8 || z > 7)
                throw new CheckpointException($"zero point {z} at index {i} is outside the int4 range [-8, 7]", zp.FilePath, zp.Name);
            zeros[i] = (byte)(z + 8);
        }
        return zeros;
    }

    static void CheckScales(ushort[] bits, bool fp16, TensorInfo info)
    {
        for (int i = 0; i < bits.Length; i++)
        {
            bool finite = fp16 ? (bits[i] & 0x7c00) != 0x7c00 : (bits[i] & 0x7f80) != 0x7f80;
            if (!finite)
                throw new CheckpointException($"scale at index {i} is not finite (bits 0x{bits[i]:x4})", info.FilePath, info.Name);
        }
    }
}
