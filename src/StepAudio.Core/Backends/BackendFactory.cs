using StepAudio.Native;

namespace StepAudio.Backends;

/// <summary>Creates a compute backend by name: "cpu", "cuda", or "auto".</summary>
public static class BackendFactory
{
    public static IComputeBackend Create(string name)
    {
        switch (name.ToLowerInvariant())
        {
            case "cpu":
                return new CpuBackend();
            case "cuda":
                return CudaBackendLoader.Create();
            case "auto":
                return CudaBackendLoader.IsUsable(out _) ? CudaBackendLoader.Create() : new CpuBackend();
            default:
                throw new ArgumentException($"unknown device '{name}': use cuda, cpu or auto");
        }
    }
}
