namespace StepAudio.Backends;

/// <summary>Memory on a backend's device (host memory for the CPU backend). Pointer is a device address.</summary>
public abstract class DeviceBuffer : IDisposable
{
    public nint Pointer { get; protected set; }
    public long Bytes { get; protected init; }
    public string Purpose { get; protected init; } = "";
    public nint At(long byteOffset) => Pointer + (nint)byteOffset;
    public abstract void Dispose();
}

/// <summary>A window into another buffer (some rows of a weight): it owns no memory, so disposing it frees nothing,
/// and it is valid as long as the buffer it looks into.</summary>
public sealed class DeviceBufferView : DeviceBuffer
{
    public DeviceBufferView(DeviceBuffer parent, long byteOffset, long bytes, string purpose)
    {
        if (byteOffset < 0 || bytes < 1 || byteOffset + bytes > parent.Bytes)
            throw new ArgumentOutOfRangeException(nameof(byteOffset),
                $"bytes [{byteOffset}, {byteOffset + bytes}) are not inside {parent.Purpose} ({parent.Bytes} bytes)");
        Pointer = parent.At(byteOffset);
        Bytes = bytes;
        Purpose = purpose;
    }

    public override void Dispose() { }
}

/// <summary>A prepared piece of device work (one decode step) that can be run many times. The CUDA backend captures
/// it once as a graph and replays it; the CPU backend simply calls it.</summary>
public interface IReplayableStep : IDisposable
{
    void Run();
}

/// <summary>Int32 values copied from device memory to the host, oldest first. Each copy waits for the work issued
/// before its <see cref="Enqueue"/> and not for work issued after it, so the host can read decode step t's token
/// while step t+1 runs. The CPU backend's work is synchronous: there a copy is done at once.</summary>
public interface IReadbackQueue : IDisposable
{
    /// <summary>Queues a copy of the int32 at deviceSrc, taken once the work issued so far is done. At most
    /// the capacity given at creation may be queued; more is an <see cref="InvalidOperationException"/>.</summary>
    void Enqueue(nint deviceSrc);
    /// <summary>Waits for the oldest queued copy only and returns its value.</summary>
    int Dequeue();
}

/// <summary>The operations the Step1 forward pass needs, on one device. All pointers are device addresses; bf16
/// tensors are row-major and linear weights are [N out, K in]. Semantics are those of native/src/cpu_reference.cpp.
/// Work may be asynchronous: Download, Synchronize and <see cref="IReadbackQueue.Dequeue"/> are the only points where
/// the host waits.</summary>
public interface IComputeBackend : IDisposable
{
    string Name { get; }

    /// <summary>Allocates device memory; a failure says how much was asked, what for, and how much is free.</summary>
    DeviceBuffer Allocate(long bytes, string purpose);
    void Upload(nint deviceDst, nint hostSrc, long bytes);
    void Download(nint deviceSrc, nint hostDst, long bytes);
    void Synchronize();

    void Embed(nint table, long vocab, int dim, nint ids, int n, nint output);
    void RmsNorm(nint x, nint weight, nint output, int rows, int dim, float eps);
    /// <summary>y[m, w.N] = x[m, w.K] · Wᵀ for any <see cref="WeightFormat"/> the backend supports, finished by an
    /// epilogue (SA_EPILOGUE_* of stepaudio_native.h): <see cref="LinearEpilogue.Add"/> adds the product into y in
    /// place (the residual add), <see cref="LinearEpilogue.SwiGlu"/> treats W as the fused gate+up and writes
    /// SwiGLU of the product, [m, w.N / 2]. Same numbers as Linear then Add / SwiGlu; these two are for decode
    /// (m ≤ <see cref="LinearEpilogues.MaxTokens"/>, see <see cref="HasEpilogues"/>) and y must not alias x.</summary>
    /// <remarks><paramref name="fold"/> (decode only) folds an RMSNorm into this linear and its neighbour, see
    /// <see cref="NormFold"/>; default: none.</remarks>
    void Linear(nint x, LinearWeight w, nint y, int m, LinearEpilogue epilogue = LinearEpilogue.Store, NormFold fold = default);
    /// <summary>Whether <see cref="Linear"/> takes the Add / SwiGlu epilogues for this weight format; the model
    /// issues separate Add / SwiGlu operations otherwise.</summary>
    bool HasEpilogues(WeightFormat format);
    void SwiGlu(nint gateUp, nint output, int m, int f);
    void Add(nint x, nint y, long n);
    /// <summary>The residual add and the RMSNorm after it: x += y (n = rows·dim elements), then
    /// output = RmsNorm(x, weight). Same results as Add then RmsNorm; one kernel on the GPU. output must not alias x or y.</summary>
    void AddRmsNorm(nint x, nint y, nint weight, nint output, int rows, int dim, float eps);
    void Attention(in AttentionShape shape, nint qkv, nint kCache, nint vCache, nint seqLen, nint slopes, nint output);
    /// <summary>One sampling step; appends the chosen id to history, increments *historyLen and *step, writes *outId.</summary>
    void Sample(nint logits, int vocab, nint history, nint historyLen, in SamplingParams p, nint step, nint outId);

    IReplayableStep Prepare(Action step);
    /// <summary>A queue of at most <paramref name="capacity"/> pending int32 reads; see <see cref="IReadbackQueue"/>.</summary>
    IReadbackQueue CreateReadbackQueue(int capacity);
}

/// <summary>What a linear does with its product (SA_EPILOGUE_*).</summary>
public enum LinearEpilogue { Store = 0, Add = 1, SwiGlu = 2 }

/// <summary>An RMSNorm folded into the two decode linears around it (sa_norm_fold of stepaudio_native.h): the producer
/// (an <see cref="LinearEpilogue.Add"/> linear) also writes h·g to <see cref="Output"/> and sums of h² per 16 rows
/// to <see cref="SumSqOut"/> [m, n/16 floats]; the consumer reads h·g as its x and scales its product by 1/rms(h)
/// from <see cref="SumSqIn"/>. Same values as the separate RMSNorm up to bf16 rounding; one launch fewer.</summary>
public readonly record struct NormFold(nint Weight, nint Output, nint SumSqOut, nint SumSqIn, float Eps)
{
    /// <summary>The producer half: g is the following RMSNorm's weight.</summary>
    public static NormFold Produce(nint weight, nint output, nint sumSqOut) => new(weight, output, sumSqOut, 0, 0);
    /// <summary>The consumer half.</summary>
    public static NormFold Consume(nint sumSqIn, float eps) => new(0, 0, 0, sumSqIn, eps);
    public bool Produces => Weight != 0;
    public bool Consumes => SumSqIn != 0;
}

public static class LinearEpilogues
{
    /// <summary>The most tokens a linear with an Add / SwiGlu epilogue takes (SA_EPILOGUE_MAX_M).</summary>
    public const int MaxTokens = 16;
}

public readonly record struct AttentionShape(int NHeads, int NKvHeads, int HeadDim, int NNew, int MaxCtx);

/// <summary>Per-step sampling settings (spec §3.5). Temperature ≤ 0 or TopK == 1 is greedy.</summary>
public readonly record struct SamplingParams(float Temperature, int TopK, int RepetitionWindow, ulong Seed);
