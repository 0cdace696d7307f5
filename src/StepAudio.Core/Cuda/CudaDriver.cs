using System.Runtime.InteropServices;

namespace StepAudio.Cuda;

/// <summary>The project's own typed binding of the CUDA driver API (libcuda.so.1), the part this backend uses:
/// initialisation, the primary context, device memory, copies, streams, events and stream-capture graphs.
/// Every call returns a CUresult; <see cref="Check"/> turns failures into <see cref="CudaException"/>.</summary>
internal static unsafe partial class CudaDriver
{
    const string Lib = "libcuda.so.1";

    [LibraryImport(Lib, EntryPoint = "cuInit")] internal static partial int Init(uint flags);
    [LibraryImport(Lib, EntryPoint = "cuDriverGetVersion")] internal static partial int DriverGetVersion(int* version);
    [LibraryImport(Lib, EntryPoint = "cuDeviceGetCount")] internal static partial int DeviceGetCount(int* count);
    [LibraryImport(Lib, EntryPoint = "cuDeviceGet")] internal static partial int DeviceGet(int* device, int ordinal);
    [LibraryImport(Lib, EntryPoint = "cuDeviceGetName")] internal static partial int DeviceGetName(byte* name, int length, int device);
    [LibraryImport(Lib, EntryPoint = "cuDeviceGetAttribute")] internal static partial int DeviceGetAttribute(int* value, int attribute, int device);
    [LibraryImport(Lib, EntryPoint = "cuDevicePrimaryCtxRetain")] internal static partial int DevicePrimaryCtxRetain(nint* context, int device);
    [LibraryImport(Lib, EntryPoint = "cuDevicePrimaryCtxRelease_v2")] internal static partial int DevicePrimaryCtxRelease(int device);
    [LibraryImport(Lib, EntryPoint = "cuCtxSetCurrent")] internal static partial int CtxSetCurrent(CudaContextHandle context);
    [LibraryImport(Lib, EntryPoint = "cuCtxSetCurrent")] internal static partial int CtxSetCurrent(nint context);
    [LibraryImport(Lib, EntryPoint = "cuCtxSynchronize")] internal static partial int CtxSynchronize();

    [LibraryImport(Lib, EntryPoint = "cuMemAlloc_v2")] internal static partial int MemAlloc(nint* pointer, nuint bytes);
    [LibraryImport(Lib, EntryPoint = "cuMemFree_v2")] internal static partial int MemFree(nint pointer);
    [LibraryImport(Lib, EntryPoint = "cuMemGetInfo_v2")] internal static partial int MemGetInfo(nuint* free, nuint* total);
    [LibraryImport(Lib, EntryPoint = "cuMemAllocHost_v2")] internal static partial int MemAllocHost(out CudaPinnedHostHandle pointer, nuint bytes);
    [LibraryImport(Lib, EntryPoint = "cuMemFreeHost")] internal static partial int MemFreeHost(nint pointer);
    [LibraryImport(Lib, EntryPoint = "cuMemHostGetFlags")] internal static partial int MemHostGetFlags(uint* flags, nint pointer); // fails once freed: the tests' witness
    [LibraryImport(Lib, EntryPoint = "cuMemcpyHtoDAsync_v2")] internal static partial int MemcpyHtoDAsync(nint dst, nint src, nuint bytes, nint stream);
    [LibraryImport(Lib, EntryPoint = "cuMemcpyDtoHAsync_v2")] internal static partial int MemcpyDtoHAsync(nint dst, nint src, nuint bytes, nint stream);
    [LibraryImport(Lib, EntryPoint = "cuMemcpyDtoDAsync_v2")] internal static partial int MemcpyDtoDAsync(nint dst, nint src, nuint bytes, nint stream);
    [LibraryImport(Lib, EntryPoint = "cuMemsetD8Async")] internal static partial int MemsetD8Async(nint dst, byte value, nuint count, nint stream);

    // Streams, events and graphs are passed as their SafeHandles (a closed one cannot reach the driver); the nint
    // destroys serve only ReleaseHandle.
    [LibraryImport(Lib, EntryPoint = "cuStreamCreate")] internal static partial int StreamCreate(out CudaStreamHandle stream, uint flags);
    [LibraryImport(Lib, EntryPoint = "cuStreamDestroy_v2")] internal static partial int StreamDestroy(nint stream);
    [LibraryImport(Lib, EntryPoint = "cuStreamSynchronize")] internal static partial int StreamSynchronize(CudaStreamHandle stream);
    [LibraryImport(Lib, EntryPoint = "cuStreamWaitEvent")] internal static partial int StreamWaitEvent(CudaStreamHandle stream, CudaEventHandle ev, uint flags);
    [LibraryImport(Lib, EntryPoint = "cuStreamBeginCapture_v2")] internal static partial int StreamBeginCapture(CudaStreamHandle stream, int mode);
    [LibraryImport(Lib, EntryPoint = "cuStreamEndCapture")] internal static partial int StreamEndCapture(CudaStreamHandle stream, out CudaGraphHandle graph);

    [LibraryImport(Lib, EntryPoint = "cuEventCreate")] internal static partial int EventCreate(out CudaEventHandle ev, uint flags);
    [LibraryImport(Lib, EntryPoint = "cuEventDestroy_v2")] internal static partial int EventDestroy(nint ev);
    [LibraryImport(Lib, EntryPoint = "cuEventRecord")] internal static partial int EventRecord(CudaEventHandle ev, CudaStreamHandle stream);
    [LibraryImport(Lib, EntryPoint = "cuEventSynchronize")] internal static partial int EventSynchronize(CudaEventHandle ev);
    [LibraryImport(Lib, EntryPoint = "cuEventElapsedTime")] internal static partial int EventElapsedTime(float* ms, CudaEventHandle start, CudaEventHandle end);

    [LibraryImport(Lib, EntryPoint = "cuGraphInstantiateWithFlags")] internal static partial int GraphInstantiate(out CudaGraphExecHandle exec, CudaGraphHandle graph, ulong flags);
    [LibraryImport(Lib, EntryPoint = "cuGraphLaunch")] internal static partial int GraphLaunch(CudaGraphExecHandle exec, CudaStreamHandle stream);
    [LibraryImport(Lib, EntryPoint = "cuGraphExecDestroy")] internal static partial int GraphExecDestroy(nint exec);
    [LibraryImport(Lib, EntryPoint = "cuGraphDestroy")] internal static partial int GraphDestroy(nint graph);

    [LibraryImport(Lib, EntryPoint = "cuGetErrorName")] internal static partial int GetErrorName(int error, byte** name);
    [LibraryImport(Lib, EntryPoint = "cuGetErrorString")] internal static partial int GetErrorString(int error, byte** text);

    internal const int CudaErrorOutOfMemory = 2;
    internal const int CaptureModeThreadLocal = 1;
    internal const uint EventDisableTiming = 2;
    internal const int AttributeMultiprocessorCount = 16;
    internal const int AttributeComputeCapabilityMajor = 75;
    internal const int AttributeComputeCapabilityMinor = 76;

    internal static void Check(int result, string call)
    {
        if (result != 0) throw new CudaException(result, call);
    }

    internal static string ErrorName(int result)
    {
        byte* p = null;
        return GetErrorName(result, &p) == 0 && p != null ? Marshal.PtrToStringUTF8((nint)p)! : $"CUresult {result}";
    }

    internal static string ErrorText(int result)
    {
        byte* p = null;
        return GetErrorString(result, &p) == 0 && p != null ? Marshal.PtrToStringUTF8((nint)p)! : "unknown error";
    }
}

/// <summary>A failed CUDA driver call: the driver's error name and message, and the call that failed.</summary>
public class CudaException : Exception
{
    public int Result { get; }
    public string ErrorName { get; }

    internal CudaException(int result, string call)
        : base($"{call} failed: {CudaDriver.ErrorName(result)} ({CudaDriver.ErrorText(result)})")
    {
        Result = result;
        ErrorName = CudaDriver.ErrorName(result);
    }

    protected CudaException(int result, string errorName, string message) : base(message)
    {
        Result = result;
        ErrorName = errorName;
    }
}

/// <summary>GPU memory exhausted: says how much was asked, for what, and how much is free.</summary>
public sealed class CudaOutOfMemoryException(long requested, string purpose, long free, long total)
    : CudaException(CudaDriver.CudaErrorOutOfMemory, "CUDA_ERROR_OUT_OF_MEMORY",
        $"GPU out of memory: asked for {requested / 1048576.0:F1} MiB ({purpose}); {free / 1048576.0:F1} MiB free of {total / 1048576.0:F1} MiB")
{
    public long Requested { get; } = requested;
    public long Free { get; } = free;
}
