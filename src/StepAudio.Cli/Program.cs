using System.CommandLine;
using StepAudio.Cli;
using StepAudio.Cli.Commands;

// stepaudio — the command-line front end of the StepAudioEditX native backend.
// Each command lives in its own file under Commands/ and is registered here.
var root = new RootCommand(
    "StepAudioEditX native backend: runs the Step-Audio-EditX Step1 LLM (bf16, NF4, AWQ) on CUDA or the CPU reference.\n" +
    "Run 'stepaudio generate' with no arguments to decode with the bundled tiny synthetic model.");
root.Subcommands.Add(InfoCommand.Create());
root.Subcommands.Add(InspectCommand.Create());
root.Subcommands.Add(GenerateCommand.Create());
root.Subcommands.Add(BenchCommand.Create());
root.Subcommands.Add(QuantizeCommand.Create());
root.Subcommands.Add(PromptCommand.Create());
root.Subcommands.Add(PromptCommand.CreateTokenize());
root.Subcommands.Add(AudioInfoCommand.Create());
return CliRunner.Run(root, args);
