using System.Runtime.InteropServices;

namespace StepAudio.Cuda;

// The CUDA driver objects this binding owns, one SafeHandle type per kind: each is released exactly once, by
// Dispose or else by the finalizer, and a closed one cannot reach the driver again (the LibraryImport marshaller
// holds a reference across every call that takes one).

/// <summary>A retained primary context (cuDevicePrimaryCtxRetain), released with cuDevicePrimaryCtxRelease.
/// Every object created in it holds a reference on this handle, so the release runs only after theirs, whatever
/// the order of Dispose calls or finalizers.</summary>
internal sealed class CudaContextHandle : SafeHandle
{
    readonly int _device;

    internal CudaContextHandle(nint context, int device) : base(0, ownsHandle: true)
    {
        _device = device;
        SetHandle(context);
    }

    public override bool IsInvalid => handle == 0;

    protected override bool ReleaseHandle() => CudaDriver.DevicePrimaryCtxRelease(_device) == 0;

    /// <summary>Takes ownership of what a driver create call returned: binds it to this context (even when the call
    /// failed, since some calls, e.g. cuStreamEndCapture, hand back an object to destroy), then throws if it failed.</summary>
    internal T Adopt<T>(T created, int result, string call) where T : CudaContextBoundHandle
    {
        created.Bind(this);
        if (result != 0)
        {
            created.Dispose();
            CudaDriver.Check(result, call);
        }
        return created;
    }
}

/// <summary>A driver object that lives in one context: the driver destroys it with that context current (the
/// finalizer thread has none), and the reference it holds keeps the context alive until then.</summary>
public abstract class CudaContextBoundHandle : SafeHandle
{
    CudaContextHandle? _context;

    private protected CudaContextBoundHandle() : base(0, ownsHandle: true) { }

    public override bool IsInvalid => handle == 0;

    internal CudaContextHandle Context => _context ?? throw new InvalidOperationException("this CUDA handle was never bound to a context");

    /// <summary>Called once, right after the driver created the object. An invalid (zero) handle takes no reference:
    /// ReleaseHandle never runs for it, so the reference would never be given back.</summary>
    internal void Bind(CudaContextHandle context)
    {
        if (IsInvalid) return;
        if (_context is not null) throw new InvalidOperationException("this CUDA handle is already bound to a context");
        bool added = false;
        context.DangerousAddRef(ref added);
        _context = context;
    }

    protected sealed override bool ReleaseHandle()
    {
        if (_context is null) return false; // not reachable through Adopt: nothing to make current, so leak it
        // The raw context pointer, not the SafeHandle: the context handle may already be closed (its own Dispose
        // ran), and only our reference keeps it alive.
        CudaDriver.CtxSetCurrent(_context.DangerousGetHandle());
        bool destroyed = Destroy(handle) == 0;
        _context.DangerousRelease();
        return destroyed;
    }

    private protected abstract int Destroy(nint handle);
}

// The kinds below come back from their create calls as LibraryImport out parameters, for which the marshaller
// makes them with their (implicit, public) parameterless constructor.

internal sealed class CudaStreamHandle : CudaContextBoundHandle
{
    private protected override int Destroy(nint handle) => CudaDriver.StreamDestroy(handle);
}

internal sealed class CudaEventHandle : CudaContextBoundHandle
{
    private protected override int Destroy(nint handle) => CudaDriver.EventDestroy(handle);
}

internal sealed class CudaGraphHandle : CudaContextBoundHandle
{
    private protected override int Destroy(nint handle) => CudaDriver.GraphDestroy(handle);
}

internal sealed class CudaGraphExecHandle : CudaContextBoundHandle
{
    private protected override int Destroy(nint handle) => CudaDriver.GraphExecDestroy(handle);
}

/// <summary>Page-locked host memory (cuMemAllocHost), the host side of asynchronous copies. It belongs to the
/// context it was allocated in, so cuMemFreeHost runs with that context current, like the other destroys.</summary>
internal sealed class CudaPinnedHostHandle : CudaContextBoundHandle
{
    /// <summary>The host address; refused once freed, since host code reads and writes through it directly.</summary>
    public nint Pointer
    {
        get
        {
            ObjectDisposedException.ThrowIf(IsClosed, this);
            return handle;
        }
    }

    private protected override int Destroy(nint handle) => CudaDriver.MemFreeHost(handle);
}
