using System.Runtime.InteropServices;

namespace StepAudio.Cuda;

/// <summary>The primary context of one GPU, made current on the calling thread (and re-made current wherever this
/// binding destroys something, e.g. on the finalizer thread). The native kernels use the CUDA runtime, which shares
/// this same primary context. Disposing it gives up this binding's retain once every stream, event, graph and
/// buffer made in it has been released too (each holds a reference on <see cref="Handle"/>).</summary>
public sealed unsafe partial class CudaContext : IDisposable
{
    public int Device { get; }
    public string DeviceName { get; }
    public int MultiprocessorCount { get; }
    public (int Major, int Minor) ComputeCapability { get; }
    internal CudaContextHandle Handle { get; }

    public CudaContext(int ordinal = 0)
    {
        CudaDriver.Check(CudaDriver.Init(0), "cuInit");
        int count;
        CudaDriver.Check(CudaDriver.DeviceGetCount(&count), "cuDeviceGetCount");
        if (ordinal < 0 || ordinal >= count) throw new ArgumentOutOfRangeException(nameof(ordinal), $"GPU {ordinal} requested, {count} present");
        int device;
        CudaDriver.Check(CudaDriver.DeviceGet(&device, ordinal), "cuDeviceGet");
        Device = device;
        byte* name = stackalloc byte[256];
        CudaDriver.Check(CudaDriver.DeviceGetName(name, 256, device), "cuDeviceGetName");
        DeviceName = Marshal.PtrToStringUTF8((nint)name) ?? "?";
        int sms, major, minor;
        CudaDriver.Check(CudaDriver.DeviceGetAttribute(&sms, CudaDriver.AttributeMultiprocessorCount, device), "cuDeviceGetAttribute");
        CudaDriver.Check(CudaDriver.DeviceGetAttribute(&major, CudaDriver.AttributeComputeCapabilityMajor, device), "cuDeviceGetAttribute");
        CudaDriver.Check(CudaDriver.DeviceGetAttribute(&minor, CudaDriver.AttributeComputeCapabilityMinor, device), "cuDeviceGetAttribute");
        MultiprocessorCount = sms;
        ComputeCapability = (major, minor);
        nint ctx;
        CudaDriver.Check(CudaDriver.DevicePrimaryCtxRetain(&ctx, device), "cuDevicePrimaryCtxRetain");
        Handle = new CudaContextHandle(ctx, device);
        MakeCurrent();
    }

    [LibraryImport("libc", EntryPoint = "setenv", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int SetEnv(string name, string value, int overwrite);

    /// <summary>CUDA loads kernel modules lazily by default; a module first touched inside a stream capture would
    /// break the decode-step graph. Loading eagerly costs little for this one library. Must run before cuInit and
    /// the first runtime call; a value the user set wins (overwrite 0). .NET's Environment does not change the
    /// native environment, hence setenv.</summary>
    public static void PreferEagerModuleLoading() => SetEnv("CUDA_MODULE_LOADING", "EAGER", 0);

    // Set by Dispose. The handle itself stays open while streams or buffers made in this context still hold their
    // references on it (SafeHandle marks itself closed only when the last reference goes), so it cannot tell.
    int _disposed;

    public bool IsDisposed => Volatile.Read(ref _disposed) != 0;

    public void MakeCurrent()
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        CudaDriver.Check(CudaDriver.CtxSetCurrent(Handle), "cuCtxSetCurrent");
    }

    public (long Free, long Total) MemoryInfo()
    {
        MakeCurrent(); // cuMemGetInfo reports on the calling thread's current context
        nuint free, total;
        CudaDriver.Check(CudaDriver.MemGetInfo(&free, &total), "cuMemGetInfo");
        return ((long)free, (long)total);
    }

    /// <summary>Allocates device memory; out-of-memory becomes <see cref="CudaOutOfMemoryException"/>.</summary>
    public CudaDeviceMemory Allocate(long bytes, string purpose)
    {
        MakeCurrent();
        nint p;
        int r = CudaDriver.MemAlloc(&p, (nuint)Math.Max(bytes, 1));
        if (r == CudaDriver.CudaErrorOutOfMemory)
        {
            var (free, total) = MemoryInfo();
            throw new CudaOutOfMemoryException(bytes, purpose, free, total);
        }
        CudaDriver.Check(r, $"cuMemAlloc({bytes} bytes for {purpose})");
        return new CudaDeviceMemory(Handle, p, bytes);
    }

    /// <summary>An event in this context; <see cref="CudaDriver.EventDisableTiming"/> where no time is read from it
    /// (cheaper to record and wait on).</summary>
    internal CudaEventHandle CreateEvent(uint flags)
    {
        MakeCurrent(); // the event lives in the current context, which must be the one it is bound to
        int r = CudaDriver.EventCreate(out var ev, flags);
        return Handle.Adopt(ev, r, "cuEventCreate");
    }

    /// <summary>Page-locked host memory, which asynchronous copies need; freed with this context current.</summary>
    internal CudaPinnedHostHandle AllocatePinned(long bytes)
    {
        MakeCurrent();
        int r = CudaDriver.MemAllocHost(out var pinned, (nuint)bytes);
        return Handle.Adopt(pinned, r, $"cuMemAllocHost({bytes} bytes)");
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0) Handle.Dispose();
    }
}

/// <summary>Owned device memory; freed exactly once, on any thread, with its context current.</summary>
public sealed class CudaDeviceMemory : CudaContextBoundHandle
{
    readonly long _bytes;

    internal CudaDeviceMemory(CudaContextHandle context, nint pointer, long bytes)
    {
        _bytes = bytes;
        SetHandle(pointer);
        Bind(context);
    }

    public long Bytes => _bytes;

    public nint Pointer
    {
        get
        {
            ObjectDisposedException.ThrowIf(IsClosed, this);
            return handle;
        }
    }

    private protected override int Destroy(nint handle) => CudaDriver.MemFree(handle);
}

/// <summary>A CUDA stream owned by this binding.</summary>
public sealed class CudaStream : IDisposable
{
    readonly CudaStreamHandle _handle;

    public CudaStream(CudaContext context)
    {
        context.MakeCurrent();
        int r = CudaDriver.StreamCreate(out var stream, 1 /* CU_STREAM_NON_BLOCKING */);
        _handle = context.Handle.Adopt(stream, r, "cuStreamCreate");
    }

    /// <summary>Wraps a handle made elsewhere (the tests pass invalid ones to check the disposed paths).</summary>
    internal CudaStream(CudaStreamHandle handle) => _handle = handle;

    public bool IsDisposed => _handle.IsClosed;

    /// <summary>The raw CUstream for kernel launches; valid until Dispose, which the owner must not race.</summary>
    public nint Handle => StreamHandle.DangerousGetHandle();

    internal CudaStreamHandle StreamHandle
    {
        get
        {
            ObjectDisposedException.ThrowIf(IsDisposed, this);
            return _handle;
        }
    }

    public void Synchronize() => CudaDriver.Check(CudaDriver.StreamSynchronize(StreamHandle), "cuStreamSynchronize");

    public void Dispose() => _handle.Dispose();
}

/// <summary>A pair of events timing device work on a stream.</summary>
public sealed unsafe class CudaTimer : IDisposable
{
    readonly CudaEventHandle _start, _stop;

    public CudaTimer(CudaContext context)
    {
        _start = context.CreateEvent(0);
        try
        {
            _stop = context.CreateEvent(0);
        }
        catch
        {
            _start.Dispose();
            throw;
        }
    }

    internal CudaTimer(CudaEventHandle start, CudaEventHandle stop) => (_start, _stop) = (start, stop);

    public bool IsDisposed => _start.IsClosed;

    public void Start(CudaStream stream) => Record(_start, stream);
    public void Stop(CudaStream stream) => Record(_stop, stream);

    void Record(CudaEventHandle ev, CudaStream stream)
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        CudaDriver.Check(CudaDriver.EventRecord(ev, stream.StreamHandle), "cuEventRecord");
    }

    public double ElapsedMilliseconds()
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        CudaDriver.Check(CudaDriver.EventSynchronize(_stop), "cuEventSynchronize");
        float ms;
        CudaDriver.Check(CudaDriver.EventElapsedTime(&ms, _start, _stop), "cuEventElapsedTime");
        return ms;
    }

    public void Dispose()
    {
        _start.Dispose();
        _stop.Dispose();
    }
}

/// <summary>Work captured from a stream once (cuStreamBeginCapture → cuStreamEndCapture → instantiate) and
/// replayed with one cuGraphLaunch.</summary>
public sealed class CudaGraph : IDisposable
{
    readonly CudaGraphHandle _graph;
    readonly CudaGraphExecHandle _exec;

    internal CudaGraph(CudaGraphHandle graph, CudaGraphExecHandle exec) => (_graph, _exec) = (graph, exec);

    public static CudaGraph Capture(CudaStream stream, Action work)
    {
        var s = stream.StreamHandle;
        var context = s.Context; // the graph and its executable live in the stream's context
        CudaDriver.Check(CudaDriver.StreamBeginCapture(s, CudaDriver.CaptureModeThreadLocal), "cuStreamBeginCapture");
        CudaGraphHandle graph;
        try
        {
            work();
        }
        finally
        {
            // Always end the capture, or the stream stays in capture mode; a graph returned on failure is destroyed.
            int end = CudaDriver.StreamEndCapture(s, out var captured);
            graph = context.Adopt(captured, end, "cuStreamEndCapture");
        }
        int r = CudaDriver.GraphInstantiate(out var instantiated, graph, 0);
        try
        {
            return new CudaGraph(graph, context.Adopt(instantiated, r, "cuGraphInstantiate"));
        }
        catch
        {
            graph.Dispose();
            throw;
        }
    }

    public bool IsDisposed => _exec.IsClosed;

    public void Launch(CudaStream stream)
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        CudaDriver.Check(CudaDriver.GraphLaunch(_exec, stream.StreamHandle), "cuGraphLaunch");
    }

    public void Dispose()
    {
        // The executable first, then the graph it was made from.
        _exec.Dispose();
        _graph.Dispose();
    }
}
