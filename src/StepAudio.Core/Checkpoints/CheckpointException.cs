namespace StepAudio.Checkpoints;

/// <summary>A checkpoint folder, file or tensor that cannot be used. The message always names the file and, where
/// one is involved, the tensor or config key.</summary>
public sealed class CheckpointException : Exception
{
    public string? FilePath { get; }
    public string? TensorName { get; }

    public CheckpointException(string message, string? filePath = null, string? tensorName = null, Exception? inner = null)
        : base(Compose(message, filePath, tensorName), inner)
    {
        FilePath = filePath;
        TensorName = tensorName;
    }

    static string Compose(string message, string? filePath, string? tensorName)
    {
        string where = (filePath, tensorName) switch
        {
            (not null, not null) => $"{filePath}: tensor '{tensorName}': ",
            (not null, null) => $"{filePath}: ",
            (null, not null) => $"tensor '{tensorName}': ",
            _ => "",
        };
        return where + message;
    }
}
