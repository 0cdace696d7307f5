using System.Runtime.InteropServices;
using StepAudio.Native;

namespace StepAudio.Backends;

/// <summary>The CPU reference backend: host memory and the plain native kernels (native/src/cpu_reference.cpp).
/// It is the oracle for the GPU kernels and what CI runs.</summary>
public sealed unsafe class CpuBackend : IComputeBackend
{
    public string Name => "cpu";

    public CpuBackend() => NativeLibraryInfo.EnsureLoaded();

    sealed class HostBuffer : DeviceBuffer
    {
        public HostBuffer(long bytes, string purpose)
        {
            Bytes = bytes;
            Purpose = purpose;
            try { Pointer = (nint)NativeMemory.AlignedAlloc((nuint)Math.Max(bytes, 1), 64); }
            catch (OutOfMemoryException)
            {
                throw new OutOfMemoryException($"host allocation of {bytes / 1048576.0:F1} MiB for {purpose} failed");
            }
        }

        public override void Dispose()
        {
            if (Pointer != 0) NativeMemory.AlignedFree((void*)Pointer);
            Pointer = 0;
        }
    }

    public DeviceBuffer Allocate(long bytes, string purpose) => new HostBuffer(bytes, purpose);
    public void Upload(nint deviceDst, nint hostSrc, long bytes) => Buffer.MemoryCopy((void*)hostSrc, (void*)deviceDst, bytes, bytes);
    public void Download(nint deviceSrc, nint hostDst, long bytes) => Buffer.MemoryCopy((void*)deviceSrc, (void*)hostDst, bytes, bytes);
    public void Synchronize() { }

    public void Embed(nint table, long vocab, int dim, nint ids, int n, nint output) =>
        NativeException.Check(NativeMethods.CpuEmbed(table, vocab, dim, ids, n, output));
    public void RmsNorm(nint x, nint weight, nint output, int rows, int dim, float eps) =>
        NativeException.Check(NativeMethods.CpuRmsNorm(x, weight, output, rows, dim, eps));
    public void Linear(nint x, LinearWeight w, nint y, int m, LinearEpilogue epilogue = LinearEpilogue.Store, NormFold fold = default)
    {
        if (epilogue != LinearEpilogue.Store || fold != default)
        {
            LinearWithEpilogue(x, w, y, m, epilogue, fold);
            return;
        }
        switch (w.Format)
        {
            case WeightFormat.Bf16:
                NativeException.Check(NativeMethods.CpuLinear(x, w.Data.Pointer, y, m, w.N, w.K));
                break;
            case WeightFormat.W4A16:
                NativeException.Check(NativeMethods.CpuLinearW4A16(x, w.Data.Pointer, w.Scales!.Pointer, w.Extra?.Pointer ?? 0, w.Flags, y, m, w.N, w.K));
                break;
            case WeightFormat.Nf4:
                NativeException.Check(NativeMethods.CpuLinearNf4(x, w.Data.Pointer, w.Scales!.Pointer, w.Extra!.Pointer,
                    StepAudio.Quant.Nf4KernelLayout.IsDoubleQuant(w) ? 1 : 0, y, m, w.N, w.K));
                break;
            default:
                throw new NotSupportedException($"the {Name} backend has no {w.Format} linear kernel in this build");
        }
    }
    /// <summary>The reference composes the epilogues and a folded norm from its own ops (same numbers by
    /// definition), so the model's decode path runs, and is tested, on the CPU too.</summary>
    public bool HasEpilogues(WeightFormat format) => true;
    void LinearWithEpilogue(nint x, LinearWeight w, nint y, int m, LinearEpilogue epilogue, NormFold fold)
    {
        if (m > LinearEpilogues.MaxTokens)
            throw new ArgumentOutOfRangeException(nameof(m), $"the {epilogue} epilogue and a folded norm are for decode: at most {LinearEpilogues.MaxTokens} tokens, got {m}");
        if (x == y) throw new ArgumentException($"with the {epilogue} epilogue the output must not alias the input");
        if (fold.Produces && (epilogue != LinearEpilogue.Add || fold.Output == 0 || fold.SumSqOut == 0 || w.N % 16 != 0 || fold.Output == x || fold.Output == y))
            throw new ArgumentException($"a folded norm's producer needs the Add epilogue, an output and sums buffer, N % 16 == 0 (N = {w.N}) and an output aliasing neither x nor y");
        using var product = new HostBuffer((long)m * w.N * 2, "linear product before its epilogue");
        Linear(x, w, product.Pointer, m);
        if (fold.Consumes) NativeException.Check(NativeMethods.CpuNormFoldIn(product.Pointer, fold.SumSqIn, m, w.N, w.K, fold.Eps));
        switch (epilogue)
        {
            case LinearEpilogue.Store: Buffer.MemoryCopy((void*)product.Pointer, (void*)y, (long)m * w.N * 2, (long)m * w.N * 2); break;
            case LinearEpilogue.Add: Add(y, product.Pointer, (long)m * w.N); break;
            case LinearEpilogue.SwiGlu: SwiGlu(product.Pointer, y, m, w.N / 2); break;
            default: throw new ArgumentOutOfRangeException(nameof(epilogue), $"unknown epilogue {epilogue}");
        }
        if (fold.Produces) NativeException.Check(NativeMethods.CpuNormFoldOut(y, fold.Weight, fold.Output, fold.SumSqOut, m, w.N));
    }
    public void SwiGlu(nint gateUp, nint output, int m, int f) =>
        NativeException.Check(NativeMethods.CpuSwiGlu(gateUp, output, m, f));
    public void Add(nint x, nint y, long n) => NativeException.Check(NativeMethods.CpuAdd(x, y, n));
    public void AddRmsNorm(nint x, nint y, nint weight, nint output, int rows, int dim, float eps) =>
        NativeException.Check(NativeMethods.CpuAddRmsNorm(x, y, weight, output, rows, dim, eps));

    public void Attention(in AttentionShape s, nint qkv, nint kCache, nint vCache, nint seqLen, nint slopes, nint output)
    {
        var shape = new NativeMethods.AttnShape { NHeads = s.NHeads, NKvHeads = s.NKvHeads, HeadDim = s.HeadDim, NNew = s.NNew, MaxCtx = s.MaxCtx };
        NativeException.Check(NativeMethods.CpuAttention(&shape, qkv, kCache, vCache, seqLen, slopes, output));
    }

    public void Sample(nint logits, int vocab, nint history, nint historyLen, in SamplingParams p, nint step, nint outId)
    {
        var native = new NativeMethods.SampleParams { Temperature = p.Temperature, TopK = p.TopK, RepetitionWindow = p.RepetitionWindow, Seed = p.Seed };
        int len = *(int*)historyLen;
        int id;
        NativeException.Check(NativeMethods.CpuSample(logits, vocab, history, len, &native, *(ulong*)step, &id));
        ((int*)history)[len] = id;
        *(int*)historyLen = len + 1;
        *(ulong*)step += 1;
        *(int*)outId = id;
    }

    public IReplayableStep Prepare(Action step) => new DirectStep(step);

    sealed class DirectStep(Action step) : IReplayableStep
    {
        public void Run() => step();
        public void Dispose() { }
    }

    public IReadbackQueue CreateReadbackQueue(int capacity) => new ImmediateReadback(capacity);

    /// <summary>Every CPU operation has finished when it returns, so a read is taken at Enqueue.</summary>
    sealed class ImmediateReadback : IReadbackQueue
    {
        readonly int _capacity;
        readonly Queue<int> _values = new();

        public ImmediateReadback(int capacity)
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
            _capacity = capacity;
        }

        public void Enqueue(nint deviceSrc)
        {
            if (_values.Count == _capacity) throw new InvalidOperationException($"the readback queue already holds its {_capacity} reads");
            _values.Enqueue(*(int*)deviceSrc);
        }

        public int Dequeue() => _values.TryDequeue(out int value) ? value : throw new InvalidOperationException("the readback queue is empty");

        public void Dispose() { }
    }

    public void Dispose() { }
}
