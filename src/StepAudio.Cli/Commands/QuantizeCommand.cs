using System.CommandLine;
using StepAudio.Checkpoints;
using StepAudio.Quant;

namespace StepAudio.Cli.Commands;

/// <summary>`stepaudio quantize`: base (bf16) checkpoint folder in, quantized checkpoint folder out.</summary>
public static class QuantizeCommand
{
    public static Command Create()
    {
        var input = new Option<string>("--model", "-m") { Description = "Base (bf16) checkpoint folder", Required = true };
        var output = new Option<string>("--output", "-o") { Description = "Folder to write (must not exist yet)", Required = true };
        var format = new Option<string>("--format")
        {
            Description = "Output format: " + string.Join("; ", Quantizers.All.Select(q => $"{q.Format} = {q.Description}")),
            Required = true,
        };
        format.AcceptOnlyFromAmong(Quantizers.All.Select(q => q.Format).ToArray());
        var command = new Command("quantize", "Write a quantized checkpoint (the released on-disk formats) from a base bf16 one.") { input, output, format };
        command.SetAction(parse =>
        {
            var quantizer = Quantizers.All.First(q => q.Format == parse.GetValue(format));
            string outFolder = Path.GetFullPath(parse.GetValue(output)!);
            if (Directory.Exists(outFolder) || File.Exists(outFolder))
                throw new IOException($"{outFolder} already exists: choose a new folder (nothing was written)");
            using var source = CheckpointFolder.Open(parse.GetValue(input)!);
            if (source.Variant != ModelVariant.Base)
                throw new CheckpointException($"quantize takes a base (bf16) checkpoint; this one is {source.Variant}", source.Folder);
            quantizer.Write(source, outFolder, CommonOptions.StatusLine());
            Console.Error.WriteLine();
            Console.WriteLine($"wrote {outFolder} ({quantizer.Format})");
            return 0;
        });
        return command;
    }
}
