using System.CommandLine;
using System.Diagnostics;
using StepAudio.Audio;

namespace StepAudio.Cli.Commands;

/// <summary>`stepaudio audio-info FILE`: what the host front end makes of a prompt (for debugging a prompt), and
/// `--bench` to time the whole front end on one core.</summary>
public static class AudioInfoCommand
{
    public static Command Create()
    {
        var file = new Argument<string>("file") { Description = "WAV or MP3 prompt" };
        var mvn = new Option<string?>("--am-mvn") { Description = "Paraformer am.mvn (Kaldi CMVN) to apply to the vq02 features" };
        var maxSeconds = new Option<double>("--max-seconds") { Description = "longest accepted input", DefaultValueFactory = _ => 60.0 };
        var bench = new Option<int>("--bench") { Description = "run the whole front end N more times and report the median time", DefaultValueFactory = _ => 0 };
        var command = new Command("audio-info", "Show what the audio front end makes of a prompt: rate, duration, trimmed span, feature shapes.");
        command.Arguments.Add(file);
        command.Options.Add(mvn);
        command.Options.Add(maxSeconds);
        command.Options.Add(bench);
        command.SetAction(parse =>
        {
            string path = parse.GetValue(file)!;
            var clip = AudioReader.Read(path, new AudioReadOptions { MaxSeconds = parse.GetValue(maxSeconds) });
            string? mvnPath = parse.GetValue(mvn);
            var cmvn = mvnPath is null ? null : Cmvn.Load(mvnPath);
            var r = FrontEnd.Run(clip, cmvn);
            Console.WriteLine($"file:            {path}");
            Console.WriteLine($"format:          {clip.SampleRate} Hz, {clip.Channels} channel(s), {clip.Frames} frames, {clip.DurationSeconds:0.000} s");
            Console.WriteLine($"peak:            {r.SourcePeak:0.0000} (mono mix{(r.SourcePeak > Preprocess.PeakTarget ? ", scaled to 0.6" : "")})");
            Console.WriteLine($"16 kHz / 24 kHz: {r.Audio16k.Length} / {r.Audio24k.Length} samples");
            double s = r.Trim.S / 16000.0, e = r.Trim.E / 16000.0;
            Console.WriteLine($"non-silent span: {s:0.000}–{e:0.000} s (samples {r.Trim.S}–{r.Trim.E} at 16 kHz)");
            Console.WriteLine($"tokenizer input: {r.Trim.OutLength} samples ({r.Trim.OutLength / 16000.0:0.000} s) after trim_silence");
            Console.WriteLine($"whisper log-mel: {string.Join(" + ", r.WhisperMel)} (vq06 ≈ {r.WhisperMel.Sum(m => (m.Cols + 3) / 4)} tokens)");
            Console.WriteLine($"paraformer LFR:  {r.ParaformerFeatures} (vq02 tokens){(cmvn is null ? ", no CMVN" : ", CMVN applied")}");
            Console.WriteLine($"speaker fbank:   {r.SpeakerFbank}");
            Console.WriteLine($"vocoder mel:     {r.VocoderMel} (50 fps, untrimmed)");
            foreach (var note in r.Notes) Console.WriteLine($"note:            {note}");
            int runs = parse.GetValue(bench);
            if (runs > 0) Bench(clip, cmvn, runs);
            return 0;
        });
        return command;
    }

    /// <summary>Times FrontEnd.Run (everything after decoding) on one thread pinned to one core, and its stages.</summary>
    static void Bench(AudioClip clip, Cmvn? cmvn, int runs)
    {
        // One core: the front end is single-threaded code; pinning keeps the GC and the JIT from borrowing a second
        // core, so the figure is what one core delivers.
        string pinned = "not pinned";
        if (OperatingSystem.IsLinux() || OperatingSystem.IsWindows())
        {
            try { Process.GetCurrentProcess().ProcessorAffinity = 1; pinned = "pinned to core 0"; }
            catch (Exception e) when (e is System.ComponentModel.Win32Exception or PlatformNotSupportedException) { pinned = $"not pinned ({e.Message})"; }
        }
        FrontEnd.Run(clip, cmvn); // warm-up (JIT, filter banks, resampler kernels, FFT plans)
        var times = new double[runs];
        var stages = new FrontEndTimings();
        for (int i = 0; i < runs; i++)
        {
            var sw = Stopwatch.StartNew();
            FrontEnd.Run(clip, cmvn, stages);
            times[i] = sw.Elapsed.TotalMilliseconds;
        }
        Array.Sort(times);
        Console.WriteLine($"bench:           front end on {clip.DurationSeconds:0.0} s of {clip.SampleRate} Hz audio: median {times[runs / 2]:0.0} ms, min {times[0]:0.0} ms, max {times[^1]:0.0} ms over {runs} runs (one thread, {pinned})");
        for (int s = 0; s < FrontEndTimings.Stages.Length; s++)
            Console.WriteLine($"  {FrontEndTimings.Stages[s],-14} {stages.Milliseconds[s] / runs,7:0.00} ms (mean), {stages.MinMilliseconds[s],6:0.00} ms (min)");
    }
}
