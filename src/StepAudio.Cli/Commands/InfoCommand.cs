using System.CommandLine;
using StepAudio.Native;

namespace StepAudio.Cli.Commands;

/// <summary>`stepaudio info`: which native library was loaded and what it can do.</summary>
public static class InfoCommand
{
    public static Command Create()
    {
        var command = new Command("info", "Show the native library in use and whether it has CUDA kernels.");
        command.SetAction(_ =>
        {
            NativeLibraryInfo.EnsureLoaded();
            Console.WriteLine($"native library: ABI {NativeLibraryInfo.AbiVersion}, CUDA kernels: {(NativeLibraryInfo.HasCudaKernels ? "yes" : "no (CPU-only build)")}");
            return 0;
        });
        return command;
    }
}
