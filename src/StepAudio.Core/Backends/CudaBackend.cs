using StepAudio.Cuda;
using StepAudio.Native;

namespace StepAudio.Backends;

/// <summary>The CUDA backend: device memory and streams through the project's driver-API binding, kernels from
/// libstepaudio_native (kernels/*.cu) launched on this backend's stream. Prepare() captures a decode step once
/// as a CUDA graph and replays it.</summary>
public sealed unsafe class CudaBackend : IComputeBackend
{
    readonly CudaContext _context;
    readonly CudaStream _stream;

    public string Name => $"cuda ({_context.DeviceName}, sm_{_context.ComputeCapability.Major}{_context.ComputeCapability.Minor})";
    public CudaContext Context => _context;
    public CudaStream Stream => _stream;
    nint S => _stream.Handle;

    public CudaBackend(int device = 0)
    {
        NativeLibraryInfo.EnsureLoaded();
        if (!NativeLibraryInfo.HasCudaKernels)
            throw new NativeException(NativeStatus.NoCuda,
                "libstepaudio_native was built without CUDA kernels; rebuild it on a machine with nvcc (cmake finds it automatically)");
        CudaContext.PreferEagerModuleLoading();
        _context = new CudaContext(device);
        _stream = new CudaStream(_context);
        _attentionWorkspace = _context.Allocate(NativeMethods.AttentionWorkspaceBytes, "attention workspace (split partial sums)");
    }

    // The attention kernels' scratch for this backend's stream: every backend (every model) has its own, so models
    // decoding at once on different streams cannot overwrite each other's partial sums.
    readonly CudaDeviceMemory _attentionWorkspace;

    sealed class GpuBuffer : DeviceBuffer
    {
        readonly CudaDeviceMemory _memory;

        public GpuBuffer(CudaDeviceMemory memory, string purpose)
        {
            _memory = memory;
            Pointer = memory.Pointer;
            Bytes = memory.Bytes;
            Purpose = purpose;
        }

        public override void Dispose()
        {
            _memory.Dispose();
            Pointer = 0;
        }
    }

    public DeviceBuffer Allocate(long bytes, string purpose) => new GpuBuffer(_context.Allocate(bytes, purpose), purpose);

    public void Upload(nint deviceDst, nint hostSrc, long bytes)
    {
        // Synchronous with respect to the host buffer: the caller may reuse or unmap it on return.
        if (bytes >= StagingChunk)
        {
            _staging ??= new PinnedStaging(_context, StagingChunk);
            _staging.Upload(deviceDst, hostSrc, bytes, _stream);
            return;
        }
        CudaDriver.Check(CudaDriver.MemcpyHtoDAsync(deviceDst, hostSrc, (nuint)bytes, S), "cuMemcpyHtoDAsync");
        _stream.Synchronize();
    }

    const long StagingChunk = 32L << 20;
    PinnedStaging? _staging;

    /// <summary>Weight loading: the mapped file's pages are copied (several threads) into one of two pinned
    /// buffers while the other is in flight to the GPU, so disk/page-cache reads overlap the PCIe transfer.
    /// Buffers and events hold references on the context: it outlives them whatever the order of disposal.</summary>
    sealed class PinnedStaging : IDisposable
    {
        readonly CudaPinnedHostHandle[] _buffers = new CudaPinnedHostHandle[2];
        readonly CudaEventHandle[] _done = new CudaEventHandle[2];
        readonly long _chunk;

        public PinnedStaging(CudaContext context, long chunk)
        {
            _chunk = chunk;
            try
            {
                for (int i = 0; i < 2; i++)
                {
                    _buffers[i] = context.AllocatePinned(chunk);
                    _done[i] = context.CreateEvent(CudaDriver.EventDisableTiming);
                }
            }
            catch
            {
                Dispose();
                throw;
            }
        }

        public void Upload(nint deviceDst, nint hostSrc, long bytes, CudaStream stream)
        {
            for (long offset = 0, i = 0; offset < bytes; offset += _chunk, i++)
            {
                int b = (int)(i & 1);
                long n = Math.Min(_chunk, bytes - offset);
                CudaDriver.Check(CudaDriver.EventSynchronize(_done[b]), "cuEventSynchronize"); // buffer b free again
                nint buffer = _buffers[b].Pointer;
                ParallelCopy(hostSrc + (nint)offset, buffer, n);
                CudaDriver.Check(CudaDriver.MemcpyHtoDAsync(deviceDst + (nint)offset, buffer, (nuint)n, stream.Handle), "cuMemcpyHtoDAsync");
                CudaDriver.Check(CudaDriver.EventRecord(_done[b], stream.StreamHandle), "cuEventRecord");
            }
            stream.Synchronize();
        }

        static void ParallelCopy(nint src, nint dst, long bytes)
        {
            const int parts = 8;
            long per = (bytes + parts - 1) / parts;
            Parallel.For(0, parts, p =>
            {
                long start = p * per, n = Math.Min(per, bytes - start);
                if (n > 0) Buffer.MemoryCopy((void*)(src + (nint)start), (void*)(dst + (nint)start), n, n);
            });
        }

        public void Dispose()
        {
            // Null where the constructor failed.
            for (int i = 0; i < 2; i++)
            {
                _done[i]?.Dispose();
                _buffers[i]?.Dispose();
            }
        }
    }

    public void Download(nint deviceSrc, nint hostDst, long bytes)
    {
        CudaDriver.Check(CudaDriver.MemcpyDtoHAsync(hostDst, deviceSrc, (nuint)bytes, S), "cuMemcpyDtoHAsync");
        _stream.Synchronize();
    }

    public void Synchronize() => _stream.Synchronize();

    public void Embed(nint table, long vocab, int dim, nint ids, int n, nint output) =>
        NativeException.Check(NativeMethods.CudaEmbed(table, vocab, dim, ids, n, output, S));
    public void RmsNorm(nint x, nint weight, nint output, int rows, int dim, float eps) =>
        NativeException.Check(NativeMethods.CudaRmsNorm(x, weight, output, rows, dim, eps, S));
    public void Linear(nint x, LinearWeight w, nint y, int m, LinearEpilogue epilogue = LinearEpilogue.Store, NormFold fold = default)
    {
        if ((epilogue != LinearEpilogue.Store || fold != default) && !HasEpilogues(w.Format))
            throw new NotSupportedException($"the {Name} backend's {w.Format} linear has no {epilogue} epilogue or folded norm (HasEpilogues says so)");
        var native = NativeMethods.NormFoldNative.From(fold);
        var f = fold == default ? null : &native;
        switch (w.Format)
        {
            case WeightFormat.Bf16:
                NativeException.Check(NativeMethods.CudaLinear(x, w.Data.Pointer, y, m, w.N, w.K, (int)epilogue, f, S));
                break;
            case WeightFormat.W4A16:
                NativeException.Check(NativeMethods.CudaLinearW4A16(x, w.Data.Pointer, w.Scales!.Pointer, w.Extra?.Pointer ?? 0, w.Flags, y, m, w.N, w.K, (int)epilogue, f, S));
                break;
            case WeightFormat.Nf4:
                NativeException.Check(NativeMethods.CudaLinearNf4(x, w.Data.Pointer, w.Scales!.Pointer, w.Extra!.Pointer,
                    StepAudio.Quant.Nf4KernelLayout.IsDoubleQuant(w) ? 1 : 0, y, m, w.N, w.K, (int)epilogue, f, S));
                break;
            default:
                throw new NotSupportedException($"the {Name} backend has no {w.Format} linear kernel in this build");
        }
    }
    /// <summary>NF4 quantization at load, first stage (sa_cuda_nf4_quantize): count bf16 weights → packed codes and
    /// fp32 absmax per 64-block. Used by <see cref="StepAudio.Quant.Nf4DeviceQuantizer"/>.</summary>
    public void Nf4Quantize(nint bf16, long count, nint quantMap, nint packed, nint absmax) =>
        NativeException.Check(NativeMethods.CudaNf4Quantize(bf16, count, quantMap, packed, absmax, S));
    /// <summary>NF4 double quant (sa_cuda_nf4_quantize_nested): absmax − offset in 256-blocks → u8 codes and the
    /// nested absmax per block.</summary>
    public void Nf4QuantizeNested(nint absmax, long blocks, float offset, nint nestedMap, nint codes, nint nestedAbsmax) =>
        NativeException.Check(NativeMethods.CudaNf4QuantizeNested(absmax, blocks, offset, nestedMap, codes, nestedAbsmax, S));
    /// <summary>Every CUDA linear kernel takes the Add / SwiGlu epilogues.</summary>
    public bool HasEpilogues(WeightFormat format) => format is WeightFormat.Bf16 or WeightFormat.W4A16 or WeightFormat.Nf4;
    public void SwiGlu(nint gateUp, nint output, int m, int f) =>
        NativeException.Check(NativeMethods.CudaSwiGlu(gateUp, output, m, f, S));
    public void Add(nint x, nint y, long n) => NativeException.Check(NativeMethods.CudaAdd(x, y, n, S));
    public void AddRmsNorm(nint x, nint y, nint weight, nint output, int rows, int dim, float eps) =>
        NativeException.Check(NativeMethods.CudaAddRmsNorm(x, y, weight, output, rows, dim, eps, S));

    public void Attention(in AttentionShape s, nint qkv, nint kCache, nint vCache, nint seqLen, nint slopes, nint output)
    {
        var shape = new NativeMethods.AttnShape { NHeads = s.NHeads, NKvHeads = s.NKvHeads, HeadDim = s.HeadDim, NNew = s.NNew, MaxCtx = s.MaxCtx };
        NativeException.Check(NativeMethods.CudaAttention(&shape, qkv, kCache, vCache, seqLen, slopes, output,
            _attentionWorkspace.Pointer, _attentionWorkspace.Bytes, S));
    }

    public void Sample(nint logits, int vocab, nint history, nint historyLen, in SamplingParams p, nint step, nint outId)
    {
        var native = new NativeMethods.SampleParams { Temperature = p.Temperature, TopK = p.TopK, RepetitionWindow = p.RepetitionWindow, Seed = p.Seed };
        NativeException.Check(NativeMethods.CudaSample(logits, vocab, history, historyLen, &native, step, outId, S));
    }

    public IReplayableStep Prepare(Action step) => new GraphStep(this, step);

    /// <summary>Captured on its first Run (the buffers it touches exist by then), replayed afterwards.</summary>
    sealed class GraphStep(CudaBackend backend, Action step) : IReplayableStep
    {
        CudaGraph? _graph;

        public void Run()
        {
            _graph ??= CudaGraph.Capture(backend._stream, step);
            _graph.Launch(backend._stream);
        }

        public void Dispose() => _graph?.Dispose();
    }

    public IReadbackQueue CreateReadbackQueue(int capacity) => new StreamReadback(this, capacity);

    /// <summary>A ring of pinned int32 slots filled on a copy stream of its own: each copy waits (cuStreamWaitEvent)
    /// for an event recorded on the compute stream at its Enqueue, so it runs as soon as that work is done, beside
    /// whatever was launched after it; Dequeue waits on that one copy's event, never on the compute stream.</summary>
    sealed class StreamReadback : IReadbackQueue
    {
        readonly CudaBackend _backend;
        readonly CudaStream _copies;
        readonly CudaEventHandle[] _issued, _copied; // per slot: compute work done / copy done
        readonly CudaPinnedHostHandle _slots;        // pinned int32[capacity]
        int _head, _count;

        public StreamReadback(CudaBackend backend, int capacity)
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
            _backend = backend;
            _copies = new CudaStream(backend._context);
            _issued = new CudaEventHandle[capacity];
            _copied = new CudaEventHandle[capacity];
            try
            {
                _slots = backend._context.AllocatePinned((long)capacity * 4);
                for (int i = 0; i < capacity; i++)
                {
                    _issued[i] = backend._context.CreateEvent(CudaDriver.EventDisableTiming);
                    _copied[i] = backend._context.CreateEvent(CudaDriver.EventDisableTiming);
                }
            }
            catch
            {
                Dispose();
                throw;
            }
        }

        public void Enqueue(nint deviceSrc)
        {
            if (_count == _issued.Length) throw new InvalidOperationException($"the readback queue already holds its {_issued.Length} reads");
            int slot = (_head + _count) % _issued.Length;
            CudaDriver.Check(CudaDriver.EventRecord(_issued[slot], _backend._stream.StreamHandle), "cuEventRecord");
            CudaDriver.Check(CudaDriver.StreamWaitEvent(_copies.StreamHandle, _issued[slot], 0), "cuStreamWaitEvent");
            CudaDriver.Check(CudaDriver.MemcpyDtoHAsync(_slots.Pointer + slot * 4, deviceSrc, 4, _copies.Handle), "cuMemcpyDtoHAsync");
            CudaDriver.Check(CudaDriver.EventRecord(_copied[slot], _copies.StreamHandle), "cuEventRecord");
            _count++;
        }

        public int Dequeue()
        {
            if (_count == 0) throw new InvalidOperationException("the readback queue is empty");
            CudaDriver.Check(CudaDriver.EventSynchronize(_copied[_head]), "cuEventSynchronize");
            int value = ((int*)_slots.Pointer)[_head];
            _head = (_head + 1) % _issued.Length;
            _count--;
            return value;
        }

        public void Dispose()
        {
            // Copies still queued write into the pinned slots: let them land before freeing.
            if (!_copies.IsDisposed) CudaDriver.StreamSynchronize(_copies.StreamHandle);
            for (int i = 0; i < _issued.Length; i++)
            {
                _issued[i]?.Dispose(); // null where the constructor failed
                _copied[i]?.Dispose();
            }
            _slots?.Dispose(); // null too where the constructor failed
            _copies.Dispose();
        }
    }

    public void Dispose()
    {
        _staging?.Dispose();
        _attentionWorkspace.Dispose();
        _stream.Dispose();
        _context.Dispose();
    }
}

/// <summary>Whether the CUDA backend can run here, and why not.</summary>
public static class CudaBackendLoader
{
    public static bool IsUsable(out string reason)
    {
        try
        {
            if (!NativeLibraryInfo.HasCudaKernels) { reason = "libstepaudio_native was built without CUDA kernels"; return false; }
            using var context = new CudaContext();
            reason = context.DeviceName;
            return true;
        }
        catch (DllNotFoundException) { reason = "libcuda.so.1 (the NVIDIA driver) is not installed"; return false; }
        catch (CudaException e) { reason = e.Message; return false; }
        catch (ArgumentOutOfRangeException) { reason = "no CUDA GPU is present"; return false; }
    }

    public static CudaBackend Create() => new();
}
