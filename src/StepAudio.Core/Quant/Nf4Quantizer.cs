using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using System.Text.Json;
using System.Text.Json.Nodes;
using StepAudio.Checkpoints;
using StepAudio.Model;

namespace StepAudio.Quant;

/// <summary>Round-to-nearest NF4 quantization (what bitsandbytes does at load; no calibration): absmax = max |x| per
/// 64-block, code = the nearest NF4 table entry to x / absmax (lowest index on a tie). Double quant: offset =
/// mean(absmax), and (absmax − offset) quantized per 256 absmax values against the signed dynamic map.</summary>
public sealed class Nf4Quantizer : ICheckpointQuantizer
{
    public const int BlockSize = 64;
    public const int NestedBlockSize = 256;

    public string Format => "nf4";
    public string Description => "bitsandbytes NF4 as saved by HF transformers (blocksize 64, double quant; RTN, no calibration)";

    /// <summary>The signed 8-bit "dynamic tree" map of 8-bit optimizers (Dettmers et al. 2021): for each decimal
    /// exponent e = 0..6, the 2^e midpoints of 2^e equal steps over [0.1, 1], scaled by 10^(e−6), both signs; plus 0
    /// and 1; sorted. Stored in every double-quant checkpoint, so readers never rebuild it.</summary>
    public static float[] DynamicMap { get; } = BuildDynamicMap();

    static float[] BuildDynamicMap()
    {
        var values = new List<float> { 0f, 1f };
        for (int e = 0; e < 7; e++)
        {
            int steps = 1 << e;
            double scale = Math.Pow(10, e - 6);
            for (int i = 0; i < steps; i++)
            {
                double lo = 0.1 + 0.9 * i / steps, hi = 0.1 + 0.9 * (i + 1) / steps;
                values.Add((float)(scale * (lo + hi) / 2));
                values.Add((float)(-scale * (lo + hi) / 2));
            }
        }
        values.Sort();
        return [.. values];
    }

    /// <summary>A sorted code table and the midpoints between its neighbours, for <see cref="Nearest"/>.</summary>
    internal sealed class SortedCodes
    {
        public float[] Table { get; }
        public float[] Midpoints { get; }
        /// <summary>For a 16-entry table: the 15 midpoints as two vectors (the last lane +∞, never below v).</summary>
        public (Vector256<float> Lo, Vector256<float> Hi)? Midpoints16 { get; }
        public SortedCodes(float[] table)
        {
            for (int i = 1; i < table.Length; i++)
                if (!(table[i - 1] <= table[i])) throw new ArgumentException("code table must be sorted ascending");
            Table = table;
            Midpoints = new float[table.Length - 1];
            for (int i = 0; i < Midpoints.Length; i++) Midpoints[i] = (table[i] + table[i + 1]) / 2;
            if (table.Length == 16)
                Midpoints16 = (Vector256.Create(Midpoints.AsSpan(0, 8)), Vector256.Create([.. Midpoints.AsSpan(8, 7), float.PositiveInfinity]));
        }
    }

    static readonly SortedCodes Nf4Codes = new(Nf4Format.CodeTable);
    static readonly SortedCodes DynamicCodes = new(DynamicMap);

    /// <summary>The index of the table entry nearest to v, the lowest on a tie (NaN: 0) — exactly what a linear scan
    /// of |v − table[i]| with a strict "less than" gives (0 for NaN and ±∞). Why it is exact and fast: the count of midpoints below v
    /// (a binary search) lands within one entry of the nearest (fp32 rounding of a midpoint can only move a value
    /// that sits on it), and |fl(v − t)| is unimodal over a sorted table, so the scan's answer lies in that window of
    /// three, where the same scan decides. About 3x faster than scanning all 16 NF4 entries (quantizing a full
    /// model at load is 3.1 G values). One limit, outside what quantizing produces (|x / absmax| ≤ 1): where |v| is so
    /// large that fp32 rounding of v − t makes neighbouring entries' distances equal (|v| ≳ 10^5 for the double-quant
    /// map), the scan keeps the lowest tied index and this the window's first.</summary>
    internal static int Nearest(float v, SortedCodes codes)
    {
        if (!float.IsFinite(v)) return 0;  // every distance is ∞ or NaN: the scan keeps index 0
        var mid = codes.Midpoints;
        int lo;
        if (codes.Midpoints16 is { } m16)  // NF4: count the 15 midpoints below v with two vector compares, no branches
        {
            var vv = Vector256.Create(v);
            lo = BitOperations.PopCount(Vector256.LessThan(m16.Lo, vv).ExtractMostSignificantBits()) +
                 BitOperations.PopCount(Vector256.LessThan(m16.Hi, vv).ExtractMostSignificantBits());
        }
        else
        {
            lo = 0;
            int hi = mid.Length;
            while (lo < hi)
            {
                int m = (lo + hi) >> 1;
                if (mid[m] < v) lo = m + 1; else hi = m;
            }
        }
        var table = codes.Table;
        int first = Math.Max(0, lo - 1), last = Math.Min(table.Length - 1, lo + 1);
        int best = first;
        float bestDist = MathF.Abs(v - table[first]);
        for (int i = first + 1; i <= last; i++)
        {
            float d = MathF.Abs(v - table[i]);
            if (d < bestDist) { best = i; bestDist = d; }
        }
        return best;
    }

    // NearestNf4x8's constants: the 15 NF4 midpoints, each broadcast, and the 16-entry table as two halves.
    static readonly Vector256<float>[] Nf4MidpointVectors = [.. Nf4Codes.Midpoints.Select(m => Vector256.Create(m))];
    static readonly Vector256<float> Nf4TableLo = Vector256.Create(Nf4Format.CodeTable.AsSpan(0, 8));
    static readonly Vector256<float> Nf4TableHi = Vector256.Create(Nf4Format.CodeTable.AsSpan(8, 8));

    /// <summary><see cref="Nearest"/> for the NF4 table on 8 values at once (AVX2), lane for lane the same answer: the
    /// count of midpoints below v, then the same strict-less scan over the window [count − 1, count + 1] (clamped;
    /// a clamped duplicate never wins a strict comparison), and 0 for NaN and ±∞. Quantizing at load (3.1 G values)
    /// spends its time here.</summary>
    internal static Vector256<int> NearestNf4x8(Vector256<float> v)
    {
        var count = Vector256<int>.Zero;
        foreach (var m in Nf4MidpointVectors) count -= Vector256.LessThan(m, v).AsInt32();  // a true lane is −1
        var last = Vector256.Create(15);
        var c0 = Vector256.Max(count - Vector256<int>.One, Vector256<int>.Zero);
        var c1 = Vector256.Min(c0 + Vector256<int>.One, last);
        var c2 = Vector256.Min(count + Vector256<int>.One, last);
        var best = c0;
        var bestDist = Vector256.Abs(v - Nf4Entry(c0));
        var d1 = Vector256.Abs(v - Nf4Entry(c1));
        var take = Vector256.LessThan(d1, bestDist);
        best = Vector256.ConditionalSelect(take.AsInt32(), c1, best);
        bestDist = Vector256.ConditionalSelect(take, d1, bestDist);
        var d2 = Vector256.Abs(v - Nf4Entry(c2));
        best = Vector256.ConditionalSelect(Vector256.LessThan(d2, bestDist).AsInt32(), c2, best);
        var finite = Vector256.Equals(v - v, Vector256<float>.Zero);  // NaN and ±∞ give NaN
        return best & finite.AsInt32();
    }

    /// <summary>NF4 table entries at 8 indices (0..15): one permute per half, then a blend on index &gt; 7.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<float> Nf4Entry(Vector256<int> index) =>
        Avx.BlendVariable(Avx2.PermuteVar8x32(Nf4TableLo, index), Avx2.PermuteVar8x32(Nf4TableHi, index),
                          Vector256.GreaterThan(index, Vector256.Create(7)).AsSingle());

    /// <summary>The plain linear scan <see cref="Nearest"/> must agree with (kept as the tests' reference).</summary>
    internal static int NearestByScan(float v, float[] table)
    {
        int best = 0;
        float bestDist = MathF.Abs(v - table[0]);
        for (int i = 1; i < table.Length; i++)
        {
            float d = MathF.Abs(v - table[i]);
            if (d < bestDist) { best = i; bestDist = d; }
        }
        return best;
    }

    /// <summary>Per-block absmax and codes of flat fp32 values (the last block may be ragged): the double-quant step.</summary>
    static (float[] Absmax, byte[] Codes) Blockwise(float[] values, int blocksize, SortedCodes table)
    {
        int blocks = (values.Length + blocksize - 1) / blocksize;
        var absmax = new float[blocks];
        var codes = new byte[values.Length];
        // Blocks are independent: quantize them on every core (a full model's linears are 3.1 G values), a run of
        // blocks per work item.
        ForEachChunk(blocks, (start, end) =>
        {
            for (int b = start; b < end; b++)
            {
                var block = values.AsSpan(b * blocksize, Math.Min(blocksize, values.Length - b * blocksize));
                float m = 0;
                foreach (float v in block) m = MathF.Max(m, MathF.Abs(v));
                absmax[b] = m;
                float divisor = m == 0 ? 1 : m;
                for (int j = 0; j < block.Length; j++) codes[b * blocksize + j] = (byte)Nearest(block[j] / divisor, table);
            }
        }, chunk: 1024);
        return (absmax, codes);
    }

    /// <summary>Quantizes one bf16 [n, k] weight (raw bf16 bits, row-major).</summary>
    public static Nf4Tensor Quantize(ReadOnlySpan<ushort> bf16, int n, int k, int blocksize = BlockSize, bool doubleQuant = true) =>
        Quantize(bf16, n, k, blocksize, doubleQuant, vectorized: Avx2.IsSupported);

    /// <summary><paramref name="vectorized"/>: full blocks of a multiple of 8 values without NaN go through AVX2
    /// (<see cref="QuantizeBlockX8"/>, ~10x faster); the rest, and everything without AVX2, through the scalar path.
    /// Both give the same bytes (the tests compare them).</summary>
    internal static Nf4Tensor Quantize(ReadOnlySpan<ushort> bf16, int n, int k, int blocksize, bool doubleQuant, bool vectorized)
    {
        if (bf16.Length != (long)n * k) throw new ArgumentException($"weight has {bf16.Length} values, expected {n}x{k}");
        if (blocksize <= 0 || blocksize % 2 != 0 || blocksize > 4096)
            throw new ArgumentException($"NF4 block size must be even and at most 4096, got {blocksize}");
        // One pass per block on every core — widen, absmax, nearest code, pack two nibbles per byte (element 2j high) —
        // with nothing materialised per weight but the packed output: quantizing a full model at load is 3.1 G values.
        var source = bf16.ToArray();
        int total = source.Length, blocks = (total + blocksize - 1) / blocksize;
        var absmax = new float[blocks];
        var packed = new byte[(total + 1) / 2];
        vectorized &= Avx2.IsSupported && blocksize % 8 == 0;
        ForEachChunk(blocks, (start, end) =>
        {
            Span<float> v = stackalloc float[blocksize];
            for (int b = start; b < end; b++)
            {
                int off = b * blocksize, len = Math.Min(blocksize, total - off);
                if (vectorized && len == blocksize && QuantizeBlockX8(source.AsSpan(off, len), v, packed.AsSpan(off / 2, len / 2), out absmax[b]))
                    continue;
                float m = 0;
                for (int j = 0; j < len; j++)
                {
                    v[j] = BitConverter.Int32BitsToSingle(source[off + j] << 16);
                    m = MathF.Max(m, MathF.Abs(v[j]));
                }
                absmax[b] = m;
                float divisor = m == 0 ? 1 : m;
                for (int j = 0; j < len; j += 2)
                {
                    int hi = Nearest(v[j] / divisor, Nf4Codes), lo = j + 1 < len ? Nearest(v[j + 1] / divisor, Nf4Codes) : 0;
                    packed[(off + j) / 2] = (byte)(hi << 4 | lo);
                }
            }
        }, chunk: 1024);
        if (!doubleQuant)
            return new Nf4Tensor
            {
                State = new Nf4QuantState(blocksize, "bfloat16", n, k, false, 0, 0f),
                Packed = packed, QuantMap = (float[])Nf4Format.CodeTable.Clone(), Absmax = absmax,
            };
        float offset = NestedOffset(absmax);
        var centred = new float[absmax.Length];
        for (int i = 0; i < centred.Length; i++) centred[i] = absmax[i] - offset;
        var (nestedAbsmax, nestedCodes) = Blockwise(centred, NestedBlockSize, DynamicCodes);
        return new Nf4Tensor
        {
            State = new Nf4QuantState(blocksize, "bfloat16", n, k, true, NestedBlockSize, offset),
            Packed = packed, QuantMap = (float[])Nf4Format.CodeTable.Clone(), AbsmaxCodes = nestedCodes,
            NestedAbsmax = nestedAbsmax, NestedQuantMap = (float[])DynamicMap.Clone(),
        };
    }

    /// <summary>The double-quant offset: the mean of a tensor's absmax, summed in index order in double. The GPU
    /// quantizer (<see cref="Nf4DeviceQuantizer"/>) calls this too, so both give the same fp32 offset.</summary>
    internal static float NestedOffset(ReadOnlySpan<float> absmax)
    {
        double sum = 0;
        foreach (float a in absmax) sum += a;
        return (float)(sum / absmax.Length);
    }

    /// <summary>One block (a multiple of 8 values) in AVX2: widen and absmax, then x / absmax and the nearest code 8
    /// at a time, packed two per byte (element 2j in the high nibble). Returns false, writing nothing, for a block
    /// holding a NaN, which the scalar path handles (its MathF.Max propagates NaN into absmax; a vector max does not
    /// promise to).</summary>
    static bool QuantizeBlockX8(ReadOnlySpan<ushort> block, Span<float> values, Span<byte> packed, out float absmax)
    {
        var max = Vector256<float>.Zero;
        var nan = Vector256<float>.Zero;
        for (int j = 0; j < block.Length; j += 8)
        {
            var widened = Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32(Vector128.Create(block.Slice(j, 8))), 16).AsSingle();
            widened.CopyTo(values.Slice(j, 8));
            nan |= ~Vector256.Equals(widened, widened);
            max = Vector256.Max(max, Vector256.Abs(widened));
        }
        absmax = 0;
        if (nan != Vector256<float>.Zero) return false;
        for (int i = 0; i < 8; i++) absmax = MathF.Max(absmax, max.GetElement(i));  // NaN-free: any order is exact
        var divisor = Vector256.Create(absmax == 0 ? 1 : absmax);
        Span<int> codes = stackalloc int[8];
        for (int j = 0; j < block.Length; j += 8)
        {
            NearestNf4x8(Vector256.Create(values.Slice(j, 8)) / divisor).CopyTo(codes);
            for (int i = 0; i < 8; i += 2) packed[(j + i) / 2] = (byte)(codes[i] << 4 | codes[i + 1]);
        }
        return true;
    }

    static void ForEachChunk(int length, Action<int, int> body, int chunk = 1 << 16) =>
        Parallel.For(0, (length + chunk - 1) / chunk, c => body(c * chunk, Math.Min(length, (c + 1) * chunk)));

    /// <summary>A base checkpoint's linear module's weight (P.weight), checked to be what NF4 quantization takes.</summary>
    internal static TensorInfo WeightToQuantize(CheckpointFolder checkpoint, string module)
    {
        var info = checkpoint.Info(module + ".weight");
        if (info.DType != TensorDType.BF16 || info.Shape.Length != 2)
            throw new CheckpointException($"is {info.DType}{info.ShapeText}; NF4 quantization takes a bf16 [out, in] weight", info.FilePath, info.Name);
        return info;
    }

    /// <summary>Quantizes a base checkpoint's linear module (P.weight, bf16 [n, k]).</summary>
    public static Nf4Tensor QuantizeModule(CheckpointFolder checkpoint, string module)
    {
        var info = WeightToQuantize(checkpoint, module);
        var bits = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ushort>(checkpoint.Bytes(info));
        return Quantize(bits, (int)info.Shape[0], (int)info.Shape[1]);
    }

    /// <summary>The transformer-block linears that are quantized; embeddings, norms and lm_head stay bf16 (as HF does).</summary>
    public static HashSet<string> QuantizedModules(Step1Config c)
    {
        var set = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < c.NumHiddenLayers; i++)
            foreach (var m in new[] { Step1Layout.QModule(i), Step1Layout.KModule(i), Step1Layout.VModule(i), Step1Layout.OModule(i),
                                      Step1Layout.GateModule(i), Step1Layout.UpModule(i), Step1Layout.DownModule(i) })
                set.Add(m);
        return set;
    }

    public void Write(CheckpointFolder source, string outputFolder, IProgress<string>? progress)
    {
        var problems = Step1Layout.Problems(source);
        if (problems.Count > 0) throw new CheckpointException("cannot quantize:\n  " + string.Join("\n  ", problems.Take(10)), source.Folder);
        string tmp = outputFolder + ".partial";
        if (Directory.Exists(tmp)) Directory.Delete(tmp, true);
        Directory.CreateDirectory(tmp);
        var quantized = QuantizedModules(source.Config);
        var tensors = new List<(string, TensorDType, long[], byte[])>();
        int done = 0;
        foreach (var (name, _) in Step1Layout.BaseTensors(source.Config))
        {
            string module = name.EndsWith(".weight") ? name[..^".weight".Length] : name;
            if (quantized.Contains(module))
            {
                progress?.Report($"quantizing {module} ({++done}/{quantized.Count})");
                foreach (var (suffix, dtype, shape, data) in QuantizeModule(source, module).SavedTensors())
                    tensors.Add((name + suffix, dtype, shape, data));
            }
            else
            {
                var info = source.Info(name);
                tensors.Add((name, info.DType, info.Shape, source.Bytes(info).ToArray()));
            }
        }
        SafetensorsFile.Write(Path.Combine(tmp, "model.safetensors"), tensors, new Dictionary<string, string> { ["format"] = "pt" });

        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(source.Folder, "config.json")))!.AsObject();
        config["quantization_config"] = new JsonObject
        {
            ["quant_method"] = "bitsandbytes", ["load_in_4bit"] = true, ["load_in_8bit"] = false,
            ["bnb_4bit_quant_type"] = "nf4", ["bnb_4bit_use_double_quant"] = true, ["bnb_4bit_compute_dtype"] = "bfloat16",
            ["bnb_4bit_quant_storage"] = "uint8", ["llm_int8_skip_modules"] = null, ["llm_int8_threshold"] = 6.0,
            ["llm_int8_has_fp16_weight"] = false, ["llm_int8_enable_fp32_cpu_offload"] = false,
            ["_load_in_4bit"] = true, ["_load_in_8bit"] = false,
        };
        File.WriteAllText(Path.Combine(tmp, "config.json"), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        foreach (string extra in Directory.GetFiles(source.Folder))
        {
            string fileName = Path.GetFileName(extra);
            if (fileName.StartsWith("tokenizer", StringComparison.Ordinal))
                File.Copy(extra, Path.Combine(tmp, fileName));
        }
        Directory.Move(tmp, outputFolder);
    }
}
