using StepAudio.Checkpoints;

namespace StepAudio.Model;

/// <summary>The tensor names and shapes of a Step1 checkpoint in the release layout (spec §1.2), in one place.</summary>
public static class Step1Layout
{
    public const string Embed = "model.embed_tokens.weight";
    public const string FinalNorm = "model.norm.weight";
    public const string LmHead = "lm_head.weight";

    public static string Layer(int i, string suffix) => $"model.layers.{i}.{suffix}";
    public static string InputNorm(int i) => Layer(i, "input_layernorm.weight");
    public static string PostAttentionNorm(int i) => Layer(i, "post_attention_layernorm.weight");
    public static string Q(int i) => QModule(i) + ".weight";
    public static string K(int i) => KModule(i) + ".weight";
    public static string V(int i) => VModule(i) + ".weight";
    public static string O(int i) => OModule(i) + ".weight";
    public static string Gate(int i) => GateModule(i) + ".weight";
    public static string Up(int i) => UpModule(i) + ".weight";
    public static string Down(int i) => DownModule(i) + ".weight";

    // Module names (without ".weight"): quantized formats store several tensors under one module.
    public const string LmHeadModule = "lm_head";
    public static string QModule(int i) => Layer(i, "self_attn.q_proj");
    public static string KModule(int i) => Layer(i, "self_attn.k_proj");
    public static string VModule(int i) => Layer(i, "self_attn.v_proj");
    public static string OModule(int i) => Layer(i, "self_attn.o_proj");
    public static string GateModule(int i) => Layer(i, "mlp.gate_proj");
    public static string UpModule(int i) => Layer(i, "mlp.up_proj");
    public static string DownModule(int i) => Layer(i, "mlp.down_proj");

    /// <summary>Every tensor a bf16 (base) checkpoint must hold, with its [out, in] shape.</summary>
    public static IEnumerable<(string Name, long[] Shape)> BaseTensors(Step1Config c)
    {
        yield return (Embed, [c.VocabSize, c.HiddenSize]);
        for (int i = 0; i < c.NumHiddenLayers; i++)
        {
            yield return (InputNorm(i), [c.HiddenSize]);
            yield return (Q(i), [c.HiddenSize, c.HiddenSize]);
            yield return (K(i), [c.KvDim, c.HiddenSize]);
            yield return (V(i), [c.KvDim, c.HiddenSize]);
            yield return (O(i), [c.HiddenSize, c.HiddenSize]);
            yield return (PostAttentionNorm(i), [c.HiddenSize]);
            yield return (Gate(i), [c.IntermediateSize, c.HiddenSize]);
            yield return (Up(i), [c.IntermediateSize, c.HiddenSize]);
            yield return (Down(i), [c.HiddenSize, c.IntermediateSize]);
        }
        yield return (FinalNorm, [c.HiddenSize]);
        if (!c.TieWordEmbeddings) yield return (LmHead, [c.VocabSize, c.HiddenSize]);
    }

    /// <summary>What is wrong with a base checkpoint's tensors (missing, wrong dtype or shape, unexpected); empty when
    /// it can be loaded.</summary>
    public static List<string> Problems(CheckpointFolder checkpoint)
    {
        var problems = new List<string>();
        var expected = BaseTensors(checkpoint.Config).ToList();
        var names = new HashSet<string>(expected.Select(e => e.Name), StringComparer.Ordinal);
        foreach (var (name, shape) in expected)
        {
            if (!checkpoint.Contains(name)) { problems.Add($"missing tensor '{name}'"); continue; }
            var info = checkpoint.Info(name);
            if (info.DType != TensorDType.BF16) problems.Add($"{info.FilePath}: tensor '{name}' is {info.DType}, expected BF16");
            if (!info.Shape.SequenceEqual(shape))
                problems.Add($"{info.FilePath}: tensor '{name}' has shape {info.ShapeText}, expected [{string.Join(", ", shape)}]");
        }
        foreach (var t in checkpoint.Tensors)
            if (!names.Contains(t.Name)) problems.Add($"{t.FilePath}: unexpected tensor '{t.Name}' {t.DType}{t.ShapeText}");
        return problems;
    }
}
