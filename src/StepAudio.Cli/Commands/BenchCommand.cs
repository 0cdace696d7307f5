using System.CommandLine;
using System.Diagnostics;
using StepAudio.Backends;
using StepAudio.Checkpoints;
using StepAudio.Generation;
using StepAudio.Model;

namespace StepAudio.Cli.Commands;

/// <summary>`stepaudio bench`: load time and memory, prefill times, decode speed at several context lengths with
/// effective bandwidth, and the seed report's form (greedy, 50 new tokens from a short prompt, wall time).</summary>
public static class BenchCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var device = CommonOptions.Device();
        var variant = CommonOptions.Variant();
        var quantizeLmHead = new Option<bool>("--quantize-lm-head")
        {
            Description = "Also RTN-quantize lm_head to W4A16 at load (off by default; every released variant keeps it bf16), and report its logit error against the bf16 lm_head",
        };
        var noTextLogits = CommonOptions.NoTextLogits();
        var contexts = new Option<string>("--contexts") { Description = "Prompt lengths after which --decode-tokens tokens are decoded and timed (attention sees the prompt plus half of them on average)", DefaultValueFactory = _ => "64,1024,4096" };
        var decodeTokens = new Option<int>("--decode-tokens") { Description = "Tokens decoded per measurement", DefaultValueFactory = _ => 128 };
        var prefills = new Option<string>("--prefill-lengths") { Description = "Prompt lengths at which to time the prefill forward (median of 5, with the host's enqueue time); 12 is the seed form's prompt", DefaultValueFactory = _ => "12,32,1000" };
        var copyBandwidth = new Option<double>("--copy-gbps") { Description = "Measured device copy bandwidth (GB/s) to report % of", DefaultValueFactory = _ => 3000 };
        var command = new Command("bench", "Benchmark the Step1 LLM on a checkpoint (use a full-size one for real figures): load, prefill, greedy decode tok/s with effective bandwidth per context, sampled decode (temperature 0.7, top-k 50) at the first context, the 50-token seed form.")
        { model, device, contexts, decodeTokens, prefills, copyBandwidth, variant, quantizeLmHead, noTextLogits };

        command.SetAction(parse =>
        {
            var ctxs = ParseList(parse.GetValue(contexts)!);
            var pre = ParseList(parse.GetValue(prefills)!);
            int n = parse.GetValue(decodeTokens);
            double copyGbps = parse.GetValue(copyBandwidth);
            using var backend = BackendFactory.Create(parse.GetValue(device)!);
            using var checkpoint = CheckpointFolder.Open(CommonOptions.ResolveModelFolder(parse.GetValue(model)));
            var c = checkpoint.Config;
            int maxCtx = Math.Max(ctxs.Max() + n + 1, pre.Max() + 64);
            long freeBefore = (backend as CudaBackend)?.Context.MemoryInfo().Free ?? 0;
            var wall = Stopwatch.StartNew();
            var logitIds = CommonOptions.LogitIds(parse.GetValue(noTextLogits), c);
            using var llm = Step1Model.Load(checkpoint, backend, new ModelOptions
            {
                MaxContext = maxCtx, MaxTokensPerForward = 1024, QuantizeAtLoad = CommonOptions.QuantizeAtLoad(parse.GetValue(variant)!),
                QuantizeLmHead = parse.GetValue(quantizeLmHead), LogitIds = logitIds,
            });
            double loadSeconds = wall.Elapsed.TotalSeconds;
            long used = backend is CudaBackend cb ? freeBefore - cb.Context.MemoryInfo().Free : 0;
            Console.WriteLine($"backend: {backend.Name}");
            Console.WriteLine($"model:   {checkpoint.Folder} ({c.NumHiddenLayers} layers, hidden {c.HiddenSize}, vocab {c.VocabSize})");
            Console.WriteLine($"load:    {loadSeconds:F2} s, weights {llm.WeightBytes / 1e9:F2} GB" +
                              (used > 0 ? $", GPU memory in use {used / 1e9:F2} GB (weights + {maxCtx}-token KV cache + activations)" : ""));
            if (logitIds != null)
                Console.WriteLine($"logits:  {logitIds.Sum(r => r.Count)} of {c.VocabSize} ids (--no-text-logits: {string.Join(", ", logitIds.Select(r => $"{r.Start}..{r.Start + r.Count - 1}"))})");

            var generator = new Generator(llm);
            var rng = new Random(1234);
            int[] Prompt(int length) => [1, 4, .. Enumerable.Range(0, length - 2).Select(_ => rng.Next(5, c.VocabSize))];
            var greedy = new GenerationOptions { Greedy = true, IgnoreEos = true, MaxLength = maxCtx };

            // Warm-up: module load and the decode graphs (the model keeps one per sampling setting and attention size,
            // as a server reuses them): short sequences, then long ones where the cache holds them.
            var warmSampled = new GenerationOptions { IgnoreEos = true, MaxLength = maxCtx, MaxNewTokens = 8 };
            foreach (int warmLength in new[] { 16 }.Concat(Step1Model.DecodeGraphSizes.Select(size => size + 1)).Where(l => l + 9 <= maxCtx))
            {
                generator.Generate(Prompt(warmLength), greedy with { MaxNewTokens = 8 });
                generator.Generate(Prompt(warmLength), warmSampled);
            }
            foreach (int length in pre)
            {
                // The forward alone (no sampling), median of 5. "Host enqueue" is how long the launches took to issue:
                // prefill runs without a graph, so when it is close to the total the host, not the GPU, sets the pace.
                var runs = Enumerable.Range(0, 5).Select(_ => TimePrefill(llm, Prompt(length))).ToArray();
                double total = runs.Select(r => r.Total).Order().ElementAt(2), enqueue = runs.Select(r => r.Enqueue).Order().ElementAt(2);
                Console.WriteLine($"prefill: {length,5} tokens  {total,8:F2} ms  ({length / total * 1000,9:F0} tok/s)  host enqueue {enqueue:F2} ms  (forward only, median of 5)");
            }
            long weightBytesPerToken = llm.WeightBytesPerToken;
            foreach (int ctx in ctxs)
            {
                var r = generator.Generate(Prompt(ctx), greedy with { MaxNewTokens = n });
                double msPerToken = r.DecodeTime.TotalMilliseconds / (r.Tokens.Length - 1);
                long kvBytes = (long)(ctx + n / 2) * c.NumHiddenLayers * c.KvDim * 2 * 2; // K and V, average context
                double gbps = (weightBytesPerToken + kvBytes) / (msPerToken * 1e6);
                Console.WriteLine($"decode:  context {ctx,5}  {r.DecodeTokensPerSecond,8:F1} tok/s  {msPerToken,7:F3} ms/token  " +
                                  $"{gbps,7:F0} GB/s effective ({100 * gbps / copyGbps:F0}% of {copyGbps:F0} GB/s copy)");
            }
            if (ctxs.Count > 0)
            {
                // The server samples (temperature 0.7, top-k 50, the repetition rule): the GPU sampler's top-k pass is
                // the difference from the greedy figure above.
                var sampled = new GenerationOptions { IgnoreEos = true, MaxLength = maxCtx, MaxNewTokens = n };
                var r = generator.Generate(Prompt(ctxs[0]), sampled);
                Console.WriteLine($"decode:  context {ctxs[0],5}  {r.DecodeTokensPerSecond,8:F1} tok/s  " +
                                  $"{r.DecodeTime.TotalMilliseconds / (r.Tokens.Length - 1),7:F3} ms/token  sampled (temperature 0.7, top-k 50)");
            }
            var seedPrompt = Prompt(12);
            var timings = new List<double>();
            var prefillTimings = new List<double>();
            for (int i = 0; i < 5; i++)
            {
                var sw = Stopwatch.StartNew();
                var r = generator.Generate(seedPrompt, greedy with { MaxNewTokens = 50 });
                timings.Add(sw.Elapsed.TotalMilliseconds);
                prefillTimings.Add(r.PrefillTime.TotalMilliseconds);
            }
            timings.Sort();
            prefillTimings.Sort();
            Console.WriteLine($"seed-form: greedy, 50 new tokens from a 12-token prompt: {timings[2]:F1} ms wall (median of 5, incl. prefill; " +
                              $"the prefill and first token alone: {prefillTimings[2]:F2} ms)");
            if (parse.GetValue(quantizeLmHead))
            {
                // The logit error of the 4-bit lm_head, against the same model with its bf16 lm_head.
                var prompt = Prompt(32);
                var quantized = LastLogits(llm, prompt);
                llm.Dispose();
                using var reference = Step1Model.Load(checkpoint, backend, new ModelOptions { MaxContext = 64, MaxTokensPerForward = 64,
                    QuantizeAtLoad = CommonOptions.QuantizeAtLoad(parse.GetValue(variant)!), LogitIds = logitIds });
                var exact = LastLogits(reference, prompt);
                double num = 0, den = 0;
                for (int i = 0; i < exact.Length; i++)
                {
                    if (float.IsNegativeInfinity(exact[i])) continue;  // an id --no-text-logits skips
                    num += Math.Pow(quantized[i] - exact[i], 2);
                    den += (double)exact[i] * exact[i];
                }
                bool sameTop = Array.IndexOf(exact, exact.Max()) == Array.IndexOf(quantized, quantized.Max());
                Console.WriteLine($"lm_head W4A16: logits relative L2 error {Math.Sqrt(num / den):E2} vs the bf16 lm_head (32-token prompt), top-1 {(sameTop ? "same" : "differs")}");
            }
            return 0;
        });
        return command;
    }

    static unsafe float[] LastLogits(Step1Model model, int[] prompt)
    {
        fixed (int* p = prompt) model.Backend.Upload(model.History, (nint)p, prompt.Length * 4L);
        model.WriteInt(model.PrefillLength, prompt.Length);
        model.Forward(model.History, prompt.Length, model.PrefillLength);
        return model.ReadLogits();
    }

    /// <summary>One prefill forward over <paramref name="prompt"/> from an empty cache: (ms until the GPU finished,
    /// ms until the host had issued every launch).</summary>
    static unsafe (double Total, double Enqueue) TimePrefill(Step1Model model, int[] prompt)
    {
        fixed (int* p = prompt) model.Backend.Upload(model.History, (nint)p, prompt.Length * 4L);
        model.Backend.Synchronize();
        var clock = Stopwatch.StartNew();
        model.PrefillHistory(prompt.Length);
        double enqueue = clock.Elapsed.TotalMilliseconds;
        model.Backend.Synchronize();
        return (clock.Elapsed.TotalMilliseconds, enqueue);
    }

    static List<int> ParseList(string s) =>
        s.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
         .Select(p => int.TryParse(p, out int v) && v > 1 ? v : throw new ArgumentException($"'{p}' is not a length > 1")).ToList();
}
