using System.Reflection;
using System.Runtime.InteropServices;

namespace StepAudio.Native;

/// <summary>P/Invoke declarations of libstepaudio_native (native/include/stepaudio_native.h). Every call returns a
/// status; <see cref="NativeStatus.Check"/> turns a failure into a <see cref="NativeException"/>.</summary>
internal static unsafe partial class NativeMethods
{
    internal const string Library = "stepaudio_native";
    internal const int ExpectedAbiVersion = 5;

    static NativeMethods() => NativeLibraryResolver.Install();

    [StructLayout(LayoutKind.Sequential)]
    internal struct AttnShape
    {
        public int NHeads, NKvHeads, HeadDim, NNew, MaxCtx;
    }

    /// <summary>sa_norm_fold.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct NormFoldNative
    {
        public nint Weight, Output, SumSqOut, SumSqIn;
        public float Eps;

        public static NormFoldNative From(in StepAudio.Backends.NormFold f) =>
            new() { Weight = f.Weight, Output = f.Output, SumSqOut = f.SumSqOut, SumSqIn = f.SumSqIn, Eps = f.Eps };
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct SampleParams
    {
        public float Temperature;
        public int TopK;
        public int RepetitionWindow;
        public ulong Seed;
    }

    [LibraryImport(Library, EntryPoint = "sa_last_error")] internal static partial nint LastError();
    [LibraryImport(Library, EntryPoint = "sa_abi_version")] internal static partial int AbiVersion();
    [LibraryImport(Library, EntryPoint = "sa_has_cuda")] internal static partial int HasCuda();
    [LibraryImport(Library, EntryPoint = "sa_alibi_slopes")] internal static partial int AlibiSlopes(int nHeads, float* output);
    [LibraryImport(Library, EntryPoint = "sa_uniform")] internal static partial float Uniform(ulong seed, ulong step);

    // CPU reference kernels (host pointers)
    [LibraryImport(Library, EntryPoint = "sa_cpu_embed_bf16")] internal static partial int CpuEmbed(nint table, long vocab, int dim, nint ids, int n, nint output);
    [LibraryImport(Library, EntryPoint = "sa_cpu_rmsnorm_bf16")] internal static partial int CpuRmsNorm(nint x, nint w, nint output, int rows, int dim, float eps);
    [LibraryImport(Library, EntryPoint = "sa_cpu_linear_bf16")] internal static partial int CpuLinear(nint x, nint w, nint y, int m, int n, int k);
    [LibraryImport(Library, EntryPoint = "sa_cpu_swiglu_bf16")] internal static partial int CpuSwiGlu(nint gateUp, nint output, int m, int f);
    [LibraryImport(Library, EntryPoint = "sa_cpu_add_bf16")] internal static partial int CpuAdd(nint x, nint y, long n);
    [LibraryImport(Library, EntryPoint = "sa_cpu_norm_fold_out")] internal static partial int CpuNormFoldOut(nint h, nint w, nint output, nint sumSq, int rows, int dim);
    [LibraryImport(Library, EntryPoint = "sa_cpu_norm_fold_in")] internal static partial int CpuNormFoldIn(nint y, nint sumSq, int rows, int n, int k, float eps);
    [LibraryImport(Library, EntryPoint = "sa_cpu_add_rmsnorm_bf16")] internal static partial int CpuAddRmsNorm(nint x, nint y, nint w, nint output, int rows, int dim, float eps);
    [LibraryImport(Library, EntryPoint = "sa_cpu_attention_bf16")] internal static partial int CpuAttention(AttnShape* shape, nint qkv, nint kCache, nint vCache, nint seqLen, nint slopes, nint output);
    [LibraryImport(Library, EntryPoint = "sa_cpu_sample_bf16")] internal static partial int CpuSample(nint logits, int vocab, nint history, int historyLen, SampleParams* p, ulong step, int* outId);

    [LibraryImport(Library, EntryPoint = "sa_cpu_w4a16_dequant")] internal static partial int CpuW4A16Dequant(nint qweight, nint scales, nint zeros, int flags, int n, int k, nint output);
    [LibraryImport(Library, EntryPoint = "sa_cpu_linear_w4a16")] internal static partial int CpuLinearW4A16(nint x, nint qweight, nint scales, nint zeros, int flags, nint y, int m, int n, int k);

    // CUDA kernels (device pointers, CUstream)
    [LibraryImport(Library, EntryPoint = "sa_cuda_embed_bf16")] internal static partial int CudaEmbed(nint table, long vocab, int dim, nint ids, int n, nint output, nint stream);
    [LibraryImport(Library, EntryPoint = "sa_cuda_rmsnorm_bf16")] internal static partial int CudaRmsNorm(nint x, nint w, nint output, int rows, int dim, float eps, nint stream);
    [LibraryImport(Library, EntryPoint = "sa_cuda_linear_bf16")] internal static partial int CudaLinear(nint x, nint w, nint y, int m, int n, int k, int epilogue, NormFoldNative* fold, nint stream);
    [LibraryImport(Library, EntryPoint = "sa_cuda_swiglu_bf16")] internal static partial int CudaSwiGlu(nint gateUp, nint output, int m, int f, nint stream);
    [LibraryImport(Library, EntryPoint = "sa_cuda_add_bf16")] internal static partial int CudaAdd(nint x, nint y, long n, nint stream);
    [LibraryImport(Library, EntryPoint = "sa_cuda_add_rmsnorm_bf16")] internal static partial int CudaAddRmsNorm(nint x, nint y, nint w, nint output, int rows, int dim, float eps, nint stream);
    [LibraryImport(Library, EntryPoint = "sa_cuda_attention_bf16")] internal static partial int CudaAttention(AttnShape* shape, nint qkv, nint kCache, nint vCache, nint seqLen, nint slopes, nint output, nint workspace, long workspaceBytes, nint stream);
    /// <summary>SA_ATTENTION_WORKSPACE_BYTES: the most device scratch one attention call uses.</summary>
    internal const long AttentionWorkspaceBytes = 8L << 20;
    [LibraryImport(Library, EntryPoint = "sa_cuda_linear_w4a16")] internal static partial int CudaLinearW4A16(nint x, nint qweight, nint scales, nint zeros, int flags, nint y, int m, int n, int k, int epilogue, NormFoldNative* fold, nint stream);
    [LibraryImport(Library, EntryPoint = "sa_cuda_sample_bf16")] internal static partial int CudaSample(nint logits, int vocab, nint history, nint historyLen, SampleParams* p, nint step, nint outId, nint stream);

    // bitsandbytes NF4 (kernel layout of stepaudio_native.h)
    [LibraryImport(Library, EntryPoint = "sa_cpu_nf4_dequantize")] internal static partial int CpuNf4Dequantize(nint qweight, nint absmax, nint tables, int doubleQuant, int n, int k, nint wF32, nint wBf16);
    [LibraryImport(Library, EntryPoint = "sa_cpu_linear_nf4")] internal static partial int CpuLinearNf4(nint x, nint qweight, nint absmax, nint tables, int doubleQuant, nint y, int m, int n, int k);
    [LibraryImport(Library, EntryPoint = "sa_cuda_linear_nf4")] internal static partial int CudaLinearNf4(nint x, nint qweight, nint absmax, nint tables, int doubleQuant, nint y, int m, int n, int k, int epilogue, NormFoldNative* fold, nint stream);
    [LibraryImport(Library, EntryPoint = "sa_cuda_nf4_quantize")] internal static partial int CudaNf4Quantize(nint w, long count, nint quantMap, nint packed, nint absmax, nint stream);
    [LibraryImport(Library, EntryPoint = "sa_cuda_nf4_quantize_nested")] internal static partial int CudaNf4QuantizeNested(nint absmax, long blocks, float offset, nint nestedMap, nint codes, nint nestedAbsmax, nint stream);
}

/// <summary>Status codes of the C ABI (SA_OK, SA_E_*).</summary>
public enum NativeStatus
{
    Ok = 0,
    InvalidArgument = 1,
    NoCuda = 2,
    Cuda = 3,
    OutOfMemory = 4,
    Internal = 5,
}

/// <summary>A failure reported by libstepaudio_native, with its status code and message.</summary>
public sealed class NativeException(NativeStatus status, string message) : Exception(message)
{
    public NativeStatus Status { get; } = status;

    internal static void Check(int status)
    {
        if (status == 0) return;
        string message = Marshal.PtrToStringUTF8(NativeMethods.LastError()) ?? "(no message)";
        throw new NativeException((NativeStatus)status, message);
    }
}

/// <summary>Finds libstepaudio_native and explains what to do when it is missing or stale.</summary>
public static class NativeLibraryResolver
{
    /// <summary>Environment variable naming the library file explicitly.</summary>
    public const string PathVariable = "STEPAUDIO_NATIVE_LIB";
    static int _installed;

    internal static void Install()
    {
        if (Interlocked.Exchange(ref _installed, 1) == 1) return;
        NativeLibrary.SetDllImportResolver(typeof(NativeLibraryResolver).Assembly, Resolve);
    }

    static nint Resolve(string name, Assembly assembly, DllImportSearchPath? searchPath)
    {
        if (name != NativeMethods.Library) return 0;
        var tried = new List<string>();
        foreach (string candidate in Candidates())
        {
            tried.Add(candidate);
            if (File.Exists(candidate) && NativeLibrary.TryLoad(candidate, out nint handle)) return handle;
        }
        if (NativeLibrary.TryLoad("libstepaudio_native.so", assembly, searchPath, out nint fromPath)) return fromPath;
        throw new DllNotFoundException(
            "libstepaudio_native.so was not found. Build it with\n" +
            "    cmake -S . -B build && cmake --build build -j\n" +
            $"or point {PathVariable} at the file. Looked in:\n    " + string.Join("\n    ", tried));
    }

    static IEnumerable<string> Candidates()
    {
        string? explicitPath = Environment.GetEnvironmentVariable(PathVariable);
        if (!string.IsNullOrEmpty(explicitPath)) yield return Path.GetFullPath(explicitPath);
        yield return Path.Combine(AppContext.BaseDirectory, "libstepaudio_native.so");
        // A developer checkout: walk up from the executable to the repository's build/ folder.
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "CMakeLists.txt")))
            {
                yield return Path.Combine(dir.FullName, "build", "libstepaudio_native.so");
                yield break;
            }
        }
    }
}

/// <summary>What the loaded native library offers.</summary>
public static class NativeLibraryInfo
{
    /// <summary>Loads the library (or throws a clear DllNotFoundException) and checks its ABI version.</summary>
    public static void EnsureLoaded()
    {
        int version = NativeMethods.AbiVersion();
        if (version != NativeMethods.ExpectedAbiVersion)
            throw new InvalidOperationException(
                $"libstepaudio_native has ABI version {version}, this program expects {NativeMethods.ExpectedAbiVersion}: rebuild the native library");
    }

    public static int AbiVersion => NativeMethods.AbiVersion();

    /// <summary>True when the library was compiled with the CUDA kernels.</summary>
    public static bool HasCudaKernels
    {
        get { EnsureLoaded(); return NativeMethods.HasCuda() != 0; }
    }
}
