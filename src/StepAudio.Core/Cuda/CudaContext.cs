using System.Runtime.InteropServices;

namespace StepAudio.Cuda;

/// <summary>The primary context of one GPU, made current on the calling thread (and re-made current wherever this
/// binding frees memory, e.g. on the finalizer thread). The native kernels use the CUDA runtime, which shares this
/// same primary context.</summary>
public sealed unsafe partial class CudaContext : IDisposable
{
    public int Device { get; }
    public string DeviceName { get; }
    public int MultiprocessorCount { get; }
    public (int Major, int Minor) ComputeCapability { get; }
    internal nint Handle { get; private set; }

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
        Handle = ctx;
        MakeCurrent();
    }

    [LibraryImport("libc", EntryPoint = "setenv", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int SetEnv(string name, string value, int overwrite);

    /// <summary>CUDA loads kernel modules lazily by default; a module first touched inside a stream capture would
    /// break the decode-step graph. Loading eagerly costs little for this one library. Must run before cuInit and
    /// the first runtime call; a value the user set wins (overwrite 0). .NET's Environment does not change the
    /// native environment, hence setenv.</summary>
    public static void PreferEagerModuleLoading() => SetEnv("CUDA_MODULE_LOADING", "EAGER", 0);

    public void MakeCurrent() => CudaDriver.Check(CudaDriver.CtxSetCurrent(Handle), "cuCtxSetCurrent");

    public (long Free, long Total) MemoryInfo()
    {
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
        return new CudaDeviceMemory(this, p, bytes);
    }

    public void Dispose()
    {
        if (Handle == 0) return;
        CudaDriver.DevicePrimaryCtxRelease(Device);
        Handle = 0;
    }
}

/// <summary>Owned device memory; freed exactly once, on any thread.</summary>
public sealed class CudaDeviceMemory : SafeHandle
{
    readonly CudaContext _context;
    public long Bytes { get; }
    public nint Pointer => handle;

    internal CudaDeviceMemory(CudaContext context, nint pointer, long bytes) : base(0, ownsHandle: true)
    {
        _context = context;
        Bytes = bytes;
        SetHandle(pointer);
    }

    public override bool IsInvalid => handle == 0;

    protected override bool ReleaseHandle()
    {
        if (_context.Handle == 0) return false; // context already gone: the driver freed everything with it
        CudaDriver.CtxSetCurrent(_context.Handle);
        return CudaDriver.MemFree(handle) == 0;
    }
}

/// <summary>A CUDA stream owned by this binding.</summary>
public sealed unsafe class CudaStream : IDisposable
{
    public nint Handle { get; private set; }

    public CudaStream()
    {
        nint s;
        CudaDriver.Check(CudaDriver.StreamCreate(&s, 1 /* CU_STREAM_NON_BLOCKING */), "cuStreamCreate");
        Handle = s;
    }

    public void Synchronize() => CudaDriver.Check(CudaDriver.StreamSynchronize(Handle), "cuStreamSynchronize");

    public void Dispose()
    {
        if (Handle != 0) CudaDriver.StreamDestroy(Handle);
        Handle = 0;
    }
}

/// <summary>A pair of events timing device work on a stream.</summary>
public sealed unsafe class CudaTimer : IDisposable
{
    nint _start, _stop;

    public CudaTimer()
    {
        nint a, b;
        CudaDriver.Check(CudaDriver.EventCreate(&a, 0), "cuEventCreate");
        CudaDriver.Check(CudaDriver.EventCreate(&b, 0), "cuEventCreate");
        (_start, _stop) = (a, b);
    }

    public void Start(CudaStream stream) => CudaDriver.Check(CudaDriver.EventRecord(_start, stream.Handle), "cuEventRecord");
    public void Stop(CudaStream stream) => CudaDriver.Check(CudaDriver.EventRecord(_stop, stream.Handle), "cuEventRecord");

    public double ElapsedMilliseconds()
    {
        CudaDriver.Check(CudaDriver.EventSynchronize(_stop), "cuEventSynchronize");
        float ms;
        CudaDriver.Check(CudaDriver.EventElapsedTime(&ms, _start, _stop), "cuEventElapsedTime");
        return ms;
    }

    public void Dispose()
    {
        if (_start != 0) CudaDriver.EventDestroy(_start);
        if (_stop != 0) CudaDriver.EventDestroy(_stop);
        _start = _stop = 0;
    }
}

/// <summary>Work captured from a stream once (cuStreamBeginCapture → cuStreamEndCapture → instantiate) and
/// replayed with one cuGraphLaunch.</summary>
public sealed unsafe class CudaGraph : IDisposable
{
    nint _graph, _exec;

    public static CudaGraph Capture(CudaStream stream, Action work)
    {
        CudaDriver.Check(CudaDriver.StreamBeginCapture(stream.Handle, CudaDriver.CaptureModeThreadLocal), "cuStreamBeginCapture");
        nint graph = 0;
        try
        {
            work();
        }
        finally
        {
            int end = CudaDriver.StreamEndCapture(stream.Handle, &graph);
            if (end != 0 && graph != 0) CudaDriver.GraphDestroy(graph);
            CudaDriver.Check(end, "cuStreamEndCapture");
        }
        nint exec;
        int r = CudaDriver.GraphInstantiate(&exec, graph, 0);
        if (r != 0)
        {
            CudaDriver.GraphDestroy(graph);
            CudaDriver.Check(r, "cuGraphInstantiate");
        }
        return new CudaGraph { _graph = graph, _exec = exec };
    }

    public void Launch(CudaStream stream) => CudaDriver.Check(CudaDriver.GraphLaunch(_exec, stream.Handle), "cuGraphLaunch");

    public void Dispose()
    {
        if (_exec != 0) CudaDriver.GraphExecDestroy(_exec);
        if (_graph != 0) CudaDriver.GraphDestroy(_graph);
        _exec = _graph = 0;
    }
}
