using System.Runtime.CompilerServices;
using StepAudio.Backends;
using StepAudio.Cuda;

namespace StepAudio.Tests.Cuda;

/// <summary>Measures free GPU memory, so nothing else may allocate meanwhile: this collection runs after the
/// parallel ones, alone.</summary>
[CollectionDefinition(DisableParallelization = true)]
public class CudaHandleCollection;

/// <summary>The driver-object wrappers (context, stream, events, graphs, device and pinned memory) and their SafeHandles:
/// release once, disposed use refused with ObjectDisposedException. The first group runs without a GPU (invalid
/// handles never reach the driver); the second skips, visibly, where no usable GPU is present.</summary>
[Collection(typeof(CudaHandleCollection))]
public unsafe class CudaHandleTests
{
    public static TheoryData<string> HandleKinds => ["stream", "event", "graph", "graph exec", "pinned host", "context"];

    static System.Runtime.InteropServices.SafeHandle ZeroHandle(string kind) => kind switch
    {
        "stream" => new CudaStreamHandle(),
        "event" => new CudaEventHandle(),
        "graph" => new CudaGraphHandle(),
        "graph exec" => new CudaGraphExecHandle(),
        "pinned host" => new CudaPinnedHostHandle(),
        "context" => new CudaContextHandle(0, device: 0),
        _ => throw new ArgumentException(kind),
    };

    [Theory]
    [MemberData(nameof(HandleKinds))]
    public void AZeroHandleIsInvalidAndDisposesTwiceWithoutTheDriver(string kind)
    {
        var handle = ZeroHandle(kind);
        Assert.True(handle.IsInvalid, $"a zero {kind} handle must be invalid, so ReleaseHandle never runs for it");
        handle.Dispose();
        handle.Dispose();
        Assert.True(handle.IsClosed);
    }

    [Fact]
    public void ADisposedStreamRefusesUseNamingTheStream()
    {
        var stream = new CudaStream(new CudaStreamHandle());
        stream.Dispose();
        stream.Dispose();
        Assert.True(stream.IsDisposed);
        AssertDisposed<CudaStream>(() => stream.Synchronize());
        AssertDisposed<CudaStream>(() => _ = stream.Handle);
    }

    [Fact]
    public void ADisposedTimerRefusesUseAndADisposedStreamIsRefusedByALiveTimer()
    {
        var deadStream = new CudaStream(new CudaStreamHandle());
        deadStream.Dispose();
        var timer = new CudaTimer(new CudaEventHandle(), new CudaEventHandle());
        AssertDisposed<CudaStream>(() => timer.Start(deadStream));

        timer.Dispose();
        timer.Dispose();
        AssertDisposed<CudaTimer>(() => timer.Start(deadStream));
        AssertDisposed<CudaTimer>(() => timer.ElapsedMilliseconds());
    }

    [Fact]
    public void ADisposedGraphRefusesLaunchAndADisposedStreamCannotBeCaptured()
    {
        var graph = new CudaGraph(new CudaGraphHandle(), new CudaGraphExecHandle());
        graph.Dispose();
        graph.Dispose();
        var deadStream = new CudaStream(new CudaStreamHandle());
        deadStream.Dispose();
        AssertDisposed<CudaGraph>(() => graph.Launch(deadStream));

        bool ran = false;
        AssertDisposed<CudaStream>(() => CudaGraph.Capture(deadStream, () => ran = true));
        Assert.False(ran, "the work must not run when the capture cannot start");
    }

    [Fact]
    public void ADisposedPinnedHandleRefusesItsPointer()
    {
        var pinned = new CudaPinnedHostHandle();
        pinned.Dispose();
        AssertDisposed<CudaPinnedHostHandle>(() => _ = pinned.Pointer);
    }

    static void AssertDisposed<T>(Action use)
    {
        var e = Assert.Throws<ObjectDisposedException>(use);
        Assert.Equal(typeof(T).FullName, e.ObjectName);
    }

    // ---- on the GPU ----

    static CudaContext RequireContext()
    {
        if (!CudaBackendLoader.IsUsable(out string reason)) Assert.Skip($"no usable CUDA GPU: {reason}");
        return new CudaContext();
    }

    static byte[] Download(CudaDeviceMemory memory, CudaStream stream)
    {
        var host = new byte[memory.Bytes];
        fixed (byte* p = host)
            CudaDriver.Check(CudaDriver.MemcpyDtoHAsync((nint)p, memory.Pointer, (nuint)host.Length, stream.Handle), "cuMemcpyDtoHAsync");
        stream.Synchronize();
        return host;
    }

    static void Fill(CudaDeviceMemory memory, byte value, CudaStream stream) =>
        CudaDriver.Check(CudaDriver.MemsetD8Async(memory.Pointer, value, (nuint)memory.Bytes, stream.Handle), "cuMemsetD8Async");

    [Fact]
    public void ACapturedGraphReplaysItsWorkAndIsRefusedOnceDisposed()
    {
        using var context = RequireContext();
        using var stream = new CudaStream(context);
        using var memory = context.Allocate(Random.Shared.Next(1 << 16, 1 << 20), "graph test buffer");
        byte before = (byte)Random.Shared.Next(256), captured = (byte)(before ^ (1 + Random.Shared.Next(255)));

        var graph = CudaGraph.Capture(stream, () => Fill(memory, captured, stream));
        Fill(memory, before, stream);
        Assert.All(Download(memory, stream), b => Assert.Equal(before, b)); // capturing ran nothing
        graph.Launch(stream);
        Assert.All(Download(memory, stream), b => Assert.Equal(captured, b));

        graph.Dispose();
        graph.Dispose();
        AssertDisposed<CudaGraph>(() => graph.Launch(stream));
    }

    [Fact]
    public void WorkThatThrowsDuringCaptureLeavesTheStreamUsable()
    {
        using var context = RequireContext();
        using var stream = new CudaStream(context);
        Assert.Throws<InvalidOperationException>(() => CudaGraph.Capture(stream, () => throw new InvalidOperationException("test")));
        stream.Synchronize(); // fails with CUDA_ERROR_STREAM_CAPTURE_* if the capture were still open
        using var memory = context.Allocate(4096, "capture-after-failure buffer");
        using var graph = CudaGraph.Capture(stream, () => Fill(memory, 7, stream));
        graph.Launch(stream);
        Assert.All(Download(memory, stream), b => Assert.Equal(7, b));
    }

    [Fact]
    public void TheTimerMeasuresDeviceWorkAndDisposesTwice()
    {
        using var context = RequireContext();
        using var stream = new CudaStream(context);
        using var memory = context.Allocate(256L << 20, "timer test buffer");
        var timer = new CudaTimer(context);
        timer.Start(stream);
        Fill(memory, (byte)Random.Shared.Next(256), stream);
        timer.Stop(stream);
        double ms = timer.ElapsedMilliseconds();
        Assert.True(ms > 0 && double.IsFinite(ms), $"a 256 MiB memset took {ms} ms");
        timer.Dispose();
        timer.Dispose();
        AssertDisposed<CudaTimer>(() => timer.ElapsedMilliseconds());
    }

    [Fact]
    public void DisposingTheContextFirstKeepsItAliveForWhatWasMadeInIt()
    {
        var context = RequireContext();
        var stream = new CudaStream(context);
        var memory = context.Allocate(4096, "outlives-the-context buffer");
        var pinned = context.AllocatePinned(memory.Bytes);
        context.Dispose();
        context.Dispose();
        AssertDisposed<CudaContext>(() => context.MakeCurrent());
        AssertDisposed<CudaContext>(() => context.Allocate(16, "after dispose"));

        // The stream and the buffers each hold a reference on the context handle: they still work, and are
        // destroyed with it current; the context's own release runs after the last of them.
        byte value = (byte)Random.Shared.Next(1, 256);
        new Span<byte>((void*)pinned.Pointer, (int)memory.Bytes).Fill(value);
        CudaDriver.Check(CudaDriver.MemcpyHtoDAsync(memory.Pointer, pinned.Pointer, (nuint)memory.Bytes, stream.Handle), "cuMemcpyHtoDAsync");
        Assert.All(Download(memory, stream), b => Assert.Equal(value, b));
        stream.Dispose();
        memory.Dispose();
        memory.Dispose();
        AssertDisposed<CudaDeviceMemory>(() => _ = memory.Pointer);
        AssertDisposed<CudaStream>(() => stream.Synchronize());
        // Disposed, but not released (IsClosed) while the pinned buffer still holds its reference.
        Assert.False(context.Handle.IsClosed, "the context was released while pinned memory made in it was alive");
        pinned.Dispose();
        pinned.Dispose();
        AssertDisposed<CudaPinnedHostHandle>(() => _ = pinned.Pointer);
        Assert.True(context.Handle.IsClosed, "the context was not released after the last object made in it");
    }

    [Fact]
    public void TheFinalizerFreesDeviceMemoryWithTheContextCurrent()
    {
        using var context = RequireContext();
        const long bytes = 1L << 30;
        long freeBefore = AllocateAndDrop(context, bytes);
        GC.Collect();
        GC.WaitForPendingFinalizers();
        long freeAfter = context.MemoryInfo().Free;
        // The finalizer thread has no current context: cuMemFree there only succeeds because ReleaseHandle makes
        // the buffer's context current. Allowance: 64 MiB for whatever the driver itself takes or gives back.
        Assert.True(freeAfter >= freeBefore + bytes - (64L << 20),
            $"free GPU memory {freeBefore >> 20} MiB while the 1 GiB buffer was held, {freeAfter >> 20} MiB after its finalizer");
    }

    [Fact]
    public void TheFinalizerFreesPinnedHostMemoryWithTheContextCurrent()
    {
        using var context = RequireContext();
        nint address = AllocatePinnedAndDrop(context, Random.Shared.Next(1 << 12, 1 << 24));
        GC.Collect();
        GC.WaitForPendingFinalizers();
        // cuMemHostGetFlags answers only for a live cuMemAllocHost allocation. The finalizer thread has no current
        // context: cuMemFreeHost there runs with the handle's context made current by ReleaseHandle.
        uint flags;
        int r = CudaDriver.MemHostGetFlags(&flags, address);
        Assert.True(r != 0, "the pinned allocation is still registered after its handle's finalizer ran");
    }

    /// <summary>Returns the address of pinned memory that nothing roots after the call (not inlined).</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    static nint AllocatePinnedAndDrop(CudaContext context, int bytes)
    {
        var pinned = context.AllocatePinned(bytes);
        uint flags;
        CudaDriver.Check(CudaDriver.MemHostGetFlags(&flags, pinned.Pointer), "cuMemHostGetFlags on a live allocation");
        return pinned.Pointer;
    }

    /// <summary>Returns the free memory while the buffer is held; not inlined, so nothing roots the buffer after.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    static long AllocateAndDrop(CudaContext context, long bytes)
    {
        var memory = context.Allocate(bytes, "finalizer test buffer");
        Assert.False(memory.IsInvalid);
        return context.MemoryInfo().Free;
    }
}
