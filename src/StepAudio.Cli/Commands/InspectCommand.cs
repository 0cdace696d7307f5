using System.CommandLine;
using StepAudio.Checkpoints;
using StepAudio.Model;

namespace StepAudio.Cli.Commands;

/// <summary>`stepaudio inspect`: what a checkpoint folder holds and what is wrong with it.</summary>
public static class InspectCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var tensors = new Option<bool>("--tensors") { Description = "List every tensor with dtype, shape and size" };
        var command = new Command("inspect", "Show a checkpoint folder's variant, config, shards and tensors, and the problems found. Exit code 2 when it cannot be loaded.")
        { model, tensors };
        command.SetAction(parse =>
        {
            using var checkpoint = CheckpointFolder.Open(CommonOptions.ResolveModelFolder(parse.GetValue(model)));
            var c = checkpoint.Config;
            Console.WriteLine($"folder:   {checkpoint.Folder}");
            Console.WriteLine($"variant:  {checkpoint.Variant}");
            Console.WriteLine($"config:   {c.NumHiddenLayers} layers, hidden {c.HiddenSize}, {c.NumAttentionHeads} heads over {c.NumAttentionGroups} KV groups " +
                              $"(head_dim {c.HeadDim}), FFN {c.IntermediateSize}, vocab {c.VocabSize}, eps {c.RmsNormEps}, EOS {c.EosTokenId}, " +
                              $"lm_head {(c.TieWordEmbeddings ? "tied to the embedding" : "separate")}");
            if (c.UnknownKeys.Count > 0) Console.WriteLine($"note:     config keys not used here: {string.Join(", ", c.UnknownKeys)}");
            Console.WriteLine($"shards:   {string.Join(", ", checkpoint.Files.Select(f => Path.GetFileName(f.FilePath)))}");
            Console.WriteLine($"tensors:  {checkpoint.Tensors.Count()} ({checkpoint.TotalBytes / 1e9:F3} GB); by dtype: " +
                              string.Join(", ", checkpoint.Tensors.GroupBy(t => t.DType).Select(g => $"{g.Key} {g.Count()}")));
            if (parse.GetValue(tensors))
                foreach (var t in checkpoint.Tensors.OrderBy(t => t.Name, StringComparer.Ordinal))
                    Console.WriteLine($"  {t.Name,-52} {t.DType,-5} {t.ShapeText,-16} {t.ByteLength,12:N0} B  {Path.GetFileName(t.FilePath)}");
            var problems = checkpoint.Variant == ModelVariant.Base
                ? Step1Layout.Problems(checkpoint)
                : [$"{checkpoint.Variant} checkpoints are recognised but not loadable by this build yet"];
            if (problems.Count == 0) { Console.WriteLine("problems: none — loadable"); return 0; }
            Console.WriteLine($"problems: {problems.Count}");
            foreach (var p in problems) Console.WriteLine($"  - {p}");
            return 2;
        });
        return command;
    }
}
