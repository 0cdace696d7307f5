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

/// <summary>A prepared piece of device work (one decode step) that can be run many times. The CUDA backend captures
/// it once as a graph and replays it; the CPU backend simply calls it.</summary>
public interface IReplayableStep : IDisposable
{
    void Run();
}

/// <summary>The operations the Step1 forward pass needs, on one device. All pointers are device addresses; bf16
/// tensors are row-major and linear weights are [N out, K in]. Semantics are those of native/src/cpu_reference.cpp.
/// Work may be asynchronous: Download and Synchronize are the only points where the host waits.</summary>
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
    /// <summary>y[m, w.N] = x[m, w.K] · Wᵀ for any <see cref="WeightFormat"/> the backend supports.</summary>
    void Linear(nint x, LinearWeight w, nint y, int m);
    /// <summary>Whether <see cref="LinearFused"/> is one kernel here for this weight format at m tokens; the model
    /// issues the separate operations otherwise.</summary>
    bool FusesLinear(WeightFormat format, int m);
    /// <summary>The decode fusions of sa_linear_fusion (stepaudio_native.h), m ≤ 16: the linear multiplies
    /// RmsNorm(x, fusion.NormWeight) when NormWeight ≠ 0 (x is then the residual stream), and its result is stored,
    /// added into y in place (<see cref="LinearEpilogue.Add"/>: the residual add) or passed through SwiGLU
    /// (<see cref="LinearEpilogue.SwiGlu"/>: W is the fused gate+up, y is [m, N/2]). Same numbers as RmsNorm, Linear
    /// and Add / SwiGlu in sequence; y must not alias x.</summary>
    void LinearFused(nint x, LinearWeight w, nint y, int m, in LinearFusion fusion);
    void SwiGlu(nint gateUp, nint output, int m, int f);
    void Add(nint x, nint y, long n);
    /// <summary>The residual add and the RMSNorm after it: x += y (n = rows·dim elements), then
    /// output = RmsNorm(x, weight). Same results as Add then RmsNorm; one kernel on the GPU. output must not alias x or y.</summary>
    void AddRmsNorm(nint x, nint y, nint weight, nint output, int rows, int dim, float eps);
    void Attention(in AttentionShape shape, nint qkv, nint kCache, nint vCache, nint seqLen, nint slopes, nint output);
    /// <summary>One sampling step; appends the chosen id to history, increments *historyLen and *step, writes *outId.</summary>
    void Sample(nint logits, int vocab, nint history, nint historyLen, in SamplingParams p, nint step, nint outId);

    IReplayableStep Prepare(Action step);
}

/// <summary>What a fused decode linear does around the product (sa_linear_fusion).</summary>
public enum LinearEpilogue { Store = 0, Add = 1, SwiGlu = 2 }

/// <summary>A fused decode linear's prologue (RMSNorm with NormWeight, a device address, or none when 0) and
/// epilogue.</summary>
public readonly record struct LinearFusion(nint NormWeight, float NormEps, LinearEpilogue Epilogue)
{
    /// <summary>The most tokens a fused linear takes (SA_FUSION_MAX_M).</summary>
    public const int MaxTokens = 16;
}

public readonly record struct AttentionShape(int NHeads, int NKvHeads, int HeadDim, int NNew, int MaxCtx);

/// <summary>Per-step sampling settings (spec §3.5). Temperature ≤ 0 or TopK == 1 is greedy.</summary>
public readonly record struct SamplingParams(float Temperature, int TopK, int RepetitionWindow, ulong Seed);
