using StepAudio.Checkpoints;

namespace StepAudio.Quant;

/// <summary>Writes a quantized checkpoint folder from a base (bf16) one, in a released on-disk format, so users can
/// make a variant without Python and benchmarks can make full-size quantized checkpoints.</summary>
public interface ICheckpointQuantizer
{
    /// <summary>The name given to `stepaudio quantize --format`.</summary>
    string Format { get; }
    /// <summary>One line for --help: the on-disk format and the method (say plainly when it is RTN, not calibration).</summary>
    string Description { get; }
    /// <summary>Writes config.json (with quantization_config) and safetensors into outputFolder, atomically: a
    /// temporary folder renamed into place when complete.</summary>
    void Write(CheckpointFolder source, string outputFolder, IProgress<string>? progress);
}

/// <summary>The quantizers of this build, by format name.</summary>
public static class Quantizers
{
    public static IReadOnlyList<ICheckpointQuantizer> All { get; } = [new Nf4Quantizer(), new W4A16Quantizer()];
}
