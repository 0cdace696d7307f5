using System.CommandLine;
using StepAudio.Native;

namespace StepAudio.Cli;

/// <summary>Runs the parsed command and turns the project's typed exceptions into one clear line and exit code 1,
/// instead of a stack trace. STEPAUDIO_DEBUG=1 shows the trace.</summary>
public static class CliRunner
{
    public static int Run(RootCommand root, string[] args)
    {
        try
        {
            return root.Parse(args).Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
        }
        catch (Exception e) when (Environment.GetEnvironmentVariable("STEPAUDIO_DEBUG") != "1")
        {
            Console.Error.WriteLine($"error: {Describe(e)}");
            return 1;
        }
    }

    static string Describe(Exception e) => e switch
    {
        DllNotFoundException => e.Message,
        NativeException ne => $"{ne.Message} [{ne.Status}]",
        _ => e.Message,
    };
}
