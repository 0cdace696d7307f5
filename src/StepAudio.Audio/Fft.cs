using System.Collections.Concurrent;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace StepAudio.Audio;

/// <summary>Mixed-radix complex FFT in double (radix 8, 4, 2, 3 and 5 butterflies; any other prime by a direct DFT),
/// forward and unscaled: X[k] = Σ x[n]·e^(−2πikn/N). Stockham autosort: every pass reads one buffer and writes the
/// other in order, so there is no bit/digit-reversal step. It transforms <see cref="Lanes"/> independent sequences at
/// once, one per SIMD lane (element i of a buffer holds sample i of every sequence), so every butterfly is a vector
/// operation whatever the size — the features hand it Lanes frames at a time. The plan (factors, per-pass twiddles)
/// is immutable and cached per size, so it is thread-safe; callers own the buffers.</summary>
public sealed class ComplexFft
{
    public static int Lanes => Vector<double>.Count;

    static readonly ConcurrentDictionary<int, ComplexFft> Plans = new();

    /// <summary>The cached plan for size n.</summary>
    public static ComplexFft Plan(int n) => Plans.GetOrAdd(n, static n => new ComplexFft(n));

    /// <summary>One Stockham pass: radix r over blocks of length r·M at stride S. Twiddle (p, k) for p &lt; M,
    /// 1 ≤ k &lt; r is W_(rM)^(pk), stored at [p·(r−1) + k − 1]. Dft is W_r^(jk) ([k·r + j]) for the generic radix.</summary>
    sealed record Pass(int Radix, int M, int S, double[] TwRe, double[] TwIm, double[]? DftRe, double[]? DftIm);

    readonly Pass[] _passes;

    ComplexFft(int n)
    {
        if (n < 1) throw new ArgumentOutOfRangeException(nameof(n), n, "FFT length must be positive");
        Size = n;
        var factors = new List<int>();
        int rest = n;
        foreach (int p in new[] { 8, 4, 2, 3, 5 }) // radix 8 first: fewer passes over memory (960 = 8·8·3·5)
            while (rest % p == 0) { factors.Add(p); rest /= p; }
        for (int p = 7; rest > 1; p += 2)
            while (rest % p == 0) { factors.Add(p); rest /= p; }
        // e^(−2πij/N) from the exact angle of each j (no recurrence, so no accumulated rounding).
        var cos = new double[n]; var sin = new double[n];
        for (int j = 0; j < n; j++) { double a = -2 * Math.PI * j / n; cos[j] = Math.Cos(a); sin[j] = Math.Sin(a); }
        var passes = new List<Pass>();
        int len = n, stride = 1;
        foreach (int r in factors)
        {
            int m = len / r;
            var twRe = new double[m * (r - 1)]; var twIm = new double[m * (r - 1)];
            for (int p = 0; p < m; p++)
                for (int k = 1; k < r; k++)
                {
                    int j = (int)((long)p * k * stride % n); // W_len^(pk) = W_N^(pk·stride)
                    twRe[p * (r - 1) + k - 1] = cos[j]; twIm[p * (r - 1) + k - 1] = sin[j];
                }
            double[]? dftRe = null, dftIm = null;
            if (r > 5)
            {
                dftRe = new double[r * r]; dftIm = new double[r * r];
                for (int k = 0; k < r; k++)
                    for (int j = 0; j < r; j++) { int e = j * k % r * (n / r); dftRe[k * r + j] = cos[e]; dftIm[k * r + j] = sin[e]; }
            }
            passes.Add(new Pass(r, m, stride, twRe, twIm, dftRe, dftIm));
            len = m; stride *= r;
        }
        _passes = passes.ToArray();
    }

    public int Size { get; }

    /// <summary>In-place transform of the Lanes sequences in re/im (length Size); work re/im are scratch of the same length.</summary>
    public void Forward(Span<Vector<double>> re, Span<Vector<double>> im, Span<Vector<double>> workRe, Span<Vector<double>> workIm)
    {
        int n = Size;
        if (re.Length < n || im.Length < n || workRe.Length < n || workIm.Length < n)
            throw new ArgumentException($"FFT buffers must hold {n} elements");
        Span<Vector<double>> xr = re, xi = im, yr = workRe, yi = workIm;
        foreach (var p in _passes)
        {
            RunPass(p, xr, xi, yr, yi);
            var tr = xr; xr = yr; yr = tr;
            var ti = xi; xi = yi; yi = ti;
        }
        if (_passes.Length % 2 == 1) { xr[..n].CopyTo(re); xi[..n].CopyTo(im); }
    }

    /// <summary>The transform of the Lanes sequences whose element i is (input[2i], input[2i+1]) (real, imaginary),
    /// into re/im; work re/im are scratch. When the first pass is radix 8 it reads the interleaved input in place
    /// (no deinterleaving copy: for the features' frames that copy costs as much as a pass).</summary>
    public void ForwardInterleaved(ReadOnlySpan<Vector<double>> input, Span<Vector<double>> re, Span<Vector<double>> im,
        Span<Vector<double>> workRe, Span<Vector<double>> workIm)
    {
        int n = Size;
        if (input.Length < 2 * n || re.Length < n || im.Length < n || workRe.Length < n || workIm.Length < n)
            throw new ArgumentException($"FFT buffers must hold {n} elements (the interleaved input {2 * n})");
        ref var x = ref MemoryMarshal.GetReference(input);
        if (_passes.Length == 0 || _passes[0].Radix != 8)
        {
            for (int j = 0; j < n; j++) { re[j] = Unsafe.Add(ref x, 2 * j); im[j] = Unsafe.Add(ref x, 2 * j + 1); }
            Forward(re, im, workRe, workIm);
            return;
        }
        // ping-pong so that the last pass lands in re/im
        Span<Vector<double>> yr = _passes.Length % 2 == 1 ? re : workRe, yi = _passes.Length % 2 == 1 ? im : workIm;
        Radix8(_passes[0], ref x, ref Unsafe.Add(ref x, 1), 2, ref MemoryMarshal.GetReference(yr), ref MemoryMarshal.GetReference(yi));
        Span<Vector<double>> xr = yr, xi = yi;
        yr = _passes.Length % 2 == 1 ? workRe : re; yi = _passes.Length % 2 == 1 ? workIm : im;
        for (int i = 1; i < _passes.Length; i++)
        {
            RunPass(_passes[i], xr, xi, yr, yi);
            var tr = xr; xr = yr; yr = tr;
            var ti = xi; xi = yi; yi = ti;
        }
    }

    static void RunPass(Pass p, Span<Vector<double>> xr, Span<Vector<double>> xi, Span<Vector<double>> yr, Span<Vector<double>> yi)
    {
        switch (p.Radix)
        {
            case 8: Radix8(p, ref MemoryMarshal.GetReference(xr), ref MemoryMarshal.GetReference(xi), 1, ref MemoryMarshal.GetReference(yr), ref MemoryMarshal.GetReference(yi)); break;
            case 4: Radix4(p, xr, xi, yr, yi); break;
            case 2: Radix2(p, xr, xi, yr, yi); break;
            case 3: Radix3(p, xr, xi, yr, yi); break;
            case 5: Radix5(p, xr, xi, yr, yi); break;
            default: RadixGeneric(p, xr, xi, yr, yi); break;
        }
    }

    // Each radix-r pass: for block p < M and offset q < S, a_j = x[S·(p + j·M) + q], b = DFT_r(a),
    // y[S·(r·p + k) + q] = b_k · W^(pk).

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Radix2(Pass ps, Span<Vector<double>> xrS, Span<Vector<double>> xiS, Span<Vector<double>> yrS, Span<Vector<double>> yiS)
    {
        ref var xr = ref MemoryMarshal.GetReference(xrS); ref var xi = ref MemoryMarshal.GetReference(xiS);
        ref var yr = ref MemoryMarshal.GetReference(yrS); ref var yi = ref MemoryMarshal.GetReference(yiS);
        int m = ps.M, s = ps.S;
        double[] twRe = ps.TwRe, twIm = ps.TwIm;
        for (int p = 0; p < m; p++)
        {
            double w1r = twRe[p], w1i = twIm[p];
            int i0 = s * p, i1 = s * (p + m), o = s * 2 * p;
            for (int q = 0; q < s; q++)
            {
                var ar = Unsafe.Add(ref xr, i0 + q); var ai = Unsafe.Add(ref xi, i0 + q);
                var br = Unsafe.Add(ref xr, i1 + q); var bi = Unsafe.Add(ref xi, i1 + q);
                Unsafe.Add(ref yr, o + q) = ar + br; Unsafe.Add(ref yi, o + q) = ai + bi;
                var dr = ar - br; var di = ai - bi;
                Unsafe.Add(ref yr, o + s + q) = dr * w1r - di * w1i; Unsafe.Add(ref yi, o + s + q) = dr * w1i + di * w1r;
            }
        }
    }

    /// <summary>Radix 8 as two radix-4 DFTs (even and odd inputs) joined by W8^k: b_k = E_k + W8^k·O_k,
    /// b_(k+4) = E_k − W8^k·O_k. Input element i is at xr/xi[i·stride] (stride 2: real and imaginary interleaved).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Radix8(Pass ps, ref Vector<double> xr, ref Vector<double> xi, int stride, ref Vector<double> yr, ref Vector<double> yi)
    {
        const double h = 0.70710678118654752440; // √½
        int m = ps.M, s = ps.S, ms = s * m * stride;
        double[] twRe = ps.TwRe, twIm = ps.TwIm;
        for (int p = 0; p < m; p++)
        {
            int i0 = s * p, o = s * 8 * p, w = 7 * p;
            for (int q = 0; q < s; q++)
            {
                ref var r0 = ref Unsafe.Add(ref xr, (i0 + q) * stride); ref var j0 = ref Unsafe.Add(ref xi, (i0 + q) * stride);
                // even half: DFT4(a0, a2, a4, a6)
                var a0r = r0; var a0i = j0;
                var a2r = Unsafe.Add(ref r0, 2 * ms); var a2i = Unsafe.Add(ref j0, 2 * ms);
                var a4r = Unsafe.Add(ref r0, 4 * ms); var a4i = Unsafe.Add(ref j0, 4 * ms);
                var a6r = Unsafe.Add(ref r0, 6 * ms); var a6i = Unsafe.Add(ref j0, 6 * ms);
                var s0r = a0r + a4r; var s0i = a0i + a4i; var s1r = a0r - a4r; var s1i = a0i - a4i;
                var s2r = a2r + a6r; var s2i = a2i + a6i; var s3r = a2r - a6r; var s3i = a2i - a6i;
                var e0r = s0r + s2r; var e0i = s0i + s2i; var e2r = s0r - s2r; var e2i = s0i - s2i;
                var e1r = s1r + s3i; var e1i = s1i - s3r; var e3r = s1r - s3i; var e3i = s1i + s3r;
                // odd half: DFT4(a1, a3, a5, a7)
                var a1r = Unsafe.Add(ref r0, ms); var a1i = Unsafe.Add(ref j0, ms);
                var a3r = Unsafe.Add(ref r0, 3 * ms); var a3i = Unsafe.Add(ref j0, 3 * ms);
                var a5r = Unsafe.Add(ref r0, 5 * ms); var a5i = Unsafe.Add(ref j0, 5 * ms);
                var a7r = Unsafe.Add(ref r0, 7 * ms); var a7i = Unsafe.Add(ref j0, 7 * ms);
                s0r = a1r + a5r; s0i = a1i + a5i; s1r = a1r - a5r; s1i = a1i - a5i;
                s2r = a3r + a7r; s2i = a3i + a7i; s3r = a3r - a7r; s3i = a3i - a7i;
                var o0r = s0r + s2r; var o0i = s0i + s2i; var o2r = s0r - s2r; var o2i = s0i - s2i;
                var o1r = s1r + s3i; var o1i = s1i - s3r; var o3r = s1r - s3i; var o3i = s1i + s3r;
                // W8^1 = (1 − i)·√½, W8^2 = −i, W8^3 = −(1 + i)·√½
                var u1r = (o1r + o1i) * h; var u1i = (o1i - o1r) * h;
                var u2r = o2i; var u2i = -o2r;
                var u3r = (o3i - o3r) * h; var u3i = -(o3r + o3i) * h;
                Unsafe.Add(ref yr, o + q) = e0r + o0r; Unsafe.Add(ref yi, o + q) = e0i + o0i;
                Twiddle(ref yr, ref yi, o + 4 * s + q, e0r - o0r, e0i - o0i, twRe[w + 3], twIm[w + 3]);
                Twiddle(ref yr, ref yi, o + s + q, e1r + u1r, e1i + u1i, twRe[w], twIm[w]);
                Twiddle(ref yr, ref yi, o + 5 * s + q, e1r - u1r, e1i - u1i, twRe[w + 4], twIm[w + 4]);
                Twiddle(ref yr, ref yi, o + 2 * s + q, e2r + u2r, e2i + u2i, twRe[w + 1], twIm[w + 1]);
                Twiddle(ref yr, ref yi, o + 6 * s + q, e2r - u2r, e2i - u2i, twRe[w + 5], twIm[w + 5]);
                Twiddle(ref yr, ref yi, o + 3 * s + q, e3r + u3r, e3i + u3i, twRe[w + 2], twIm[w + 2]);
                Twiddle(ref yr, ref yi, o + 7 * s + q, e3r - u3r, e3i - u3i, twRe[w + 6], twIm[w + 6]);
            }
        }
    }

    /// <summary>y[at] = b · w (complex).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Twiddle(ref Vector<double> yr, ref Vector<double> yi, int at, Vector<double> br, Vector<double> bi, double wr, double wi)
    {
        Unsafe.Add(ref yr, at) = br * wr - bi * wi;
        Unsafe.Add(ref yi, at) = br * wi + bi * wr;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Radix4(Pass ps, Span<Vector<double>> xrS, Span<Vector<double>> xiS, Span<Vector<double>> yrS, Span<Vector<double>> yiS)
    {
        ref var xr = ref MemoryMarshal.GetReference(xrS); ref var xi = ref MemoryMarshal.GetReference(xiS);
        ref var yr = ref MemoryMarshal.GetReference(yrS); ref var yi = ref MemoryMarshal.GetReference(yiS);
        int m = ps.M, s = ps.S;
        double[] twRe = ps.TwRe, twIm = ps.TwIm;
        for (int p = 0; p < m; p++)
        {
            double w1r = twRe[3 * p], w1i = twIm[3 * p];
            double w2r = twRe[3 * p + 1], w2i = twIm[3 * p + 1];
            double w3r = twRe[3 * p + 2], w3i = twIm[3 * p + 2];
            int i0 = s * p, i1 = s * (p + m), i2 = s * (p + 2 * m), i3 = s * (p + 3 * m), o = s * 4 * p;
            for (int q = 0; q < s; q++)
            {
                var ar = Unsafe.Add(ref xr, i0 + q); var ai = Unsafe.Add(ref xi, i0 + q);
                var br = Unsafe.Add(ref xr, i1 + q); var bi = Unsafe.Add(ref xi, i1 + q);
                var cr = Unsafe.Add(ref xr, i2 + q); var ci = Unsafe.Add(ref xi, i2 + q);
                var dr = Unsafe.Add(ref xr, i3 + q); var di = Unsafe.Add(ref xi, i3 + q);
                var s0r = ar + cr; var s0i = ai + ci; var s1r = ar - cr; var s1i = ai - ci;
                var s2r = br + dr; var s2i = bi + di; var s3r = br - dr; var s3i = bi - di;
                Unsafe.Add(ref yr, o + q) = s0r + s2r; Unsafe.Add(ref yi, o + q) = s0i + s2i;
                // k = 1: s1 − i·s3; k = 2: s0 − s2; k = 3: s1 + i·s3 (forward transform)
                var t1r = s1r + s3i; var t1i = s1i - s3r;
                var t2r = s0r - s2r; var t2i = s0i - s2i;
                var t3r = s1r - s3i; var t3i = s1i + s3r;
                Unsafe.Add(ref yr, o + s + q) = t1r * w1r - t1i * w1i; Unsafe.Add(ref yi, o + s + q) = t1r * w1i + t1i * w1r;
                Unsafe.Add(ref yr, o + 2 * s + q) = t2r * w2r - t2i * w2i; Unsafe.Add(ref yi, o + 2 * s + q) = t2r * w2i + t2i * w2r;
                Unsafe.Add(ref yr, o + 3 * s + q) = t3r * w3r - t3i * w3i; Unsafe.Add(ref yi, o + 3 * s + q) = t3r * w3i + t3i * w3r;
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Radix3(Pass ps, Span<Vector<double>> xrS, Span<Vector<double>> xiS, Span<Vector<double>> yrS, Span<Vector<double>> yiS)
    {
        ref var xr = ref MemoryMarshal.GetReference(xrS); ref var xi = ref MemoryMarshal.GetReference(xiS);
        ref var yr = ref MemoryMarshal.GetReference(yrS); ref var yi = ref MemoryMarshal.GetReference(yiS);
        const double s60 = 0.86602540378443864676; // sin(2π/3)
        int m = ps.M, s = ps.S;
        double[] twRe = ps.TwRe, twIm = ps.TwIm;
        for (int p = 0; p < m; p++)
        {
            double w1r = twRe[2 * p], w1i = twIm[2 * p], w2r = twRe[2 * p + 1], w2i = twIm[2 * p + 1];
            int i0 = s * p, i1 = s * (p + m), i2 = s * (p + 2 * m), o = s * 3 * p;
            for (int q = 0; q < s; q++)
            {
                var ar = Unsafe.Add(ref xr, i0 + q); var ai = Unsafe.Add(ref xi, i0 + q);
                var br = Unsafe.Add(ref xr, i1 + q); var bi = Unsafe.Add(ref xi, i1 + q);
                var cr = Unsafe.Add(ref xr, i2 + q); var ci = Unsafe.Add(ref xi, i2 + q);
                var tr = br + cr; var ti = bi + ci;
                var mr = ar - tr * 0.5; var mi = ai - ti * 0.5;
                var nr = (br - cr) * s60; var ni = (bi - ci) * s60;
                Unsafe.Add(ref yr, o + q) = ar + tr; Unsafe.Add(ref yi, o + q) = ai + ti;
                var t1r = mr + ni; var t1i = mi - nr; // m − i·n
                var t2r = mr - ni; var t2i = mi + nr; // m + i·n
                Unsafe.Add(ref yr, o + s + q) = t1r * w1r - t1i * w1i; Unsafe.Add(ref yi, o + s + q) = t1r * w1i + t1i * w1r;
                Unsafe.Add(ref yr, o + 2 * s + q) = t2r * w2r - t2i * w2i; Unsafe.Add(ref yi, o + 2 * s + q) = t2r * w2i + t2i * w2r;
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Radix5(Pass ps, Span<Vector<double>> xrS, Span<Vector<double>> xiS, Span<Vector<double>> yrS, Span<Vector<double>> yiS)
    {
        ref var xr = ref MemoryMarshal.GetReference(xrS); ref var xi = ref MemoryMarshal.GetReference(xiS);
        ref var yr = ref MemoryMarshal.GetReference(yrS); ref var yi = ref MemoryMarshal.GetReference(yiS);
        const double c1 = 0.30901699437494742410, c2 = -0.80901699437494742410; // cos(2π/5), cos(4π/5)
        const double s1 = 0.95105651629515357212, s2 = 0.58778525229247312917;  // sin(2π/5), sin(4π/5)
        int m = ps.M, s = ps.S;
        double[] twRe = ps.TwRe, twIm = ps.TwIm;
        for (int p = 0; p < m; p++)
        {
            int w = 4 * p;
            double w1r = twRe[w], w1i = twIm[w], w2r = twRe[w + 1], w2i = twIm[w + 1];
            double w3r = twRe[w + 2], w3i = twIm[w + 2], w4r = twRe[w + 3], w4i = twIm[w + 3];
            int i0 = s * p, i1 = s * (p + m), i2 = s * (p + 2 * m), i3 = s * (p + 3 * m), i4 = s * (p + 4 * m), o = s * 5 * p;
            for (int q = 0; q < s; q++)
            {
                var a0r = Unsafe.Add(ref xr, i0 + q); var a0i = Unsafe.Add(ref xi, i0 + q);
                var a1r = Unsafe.Add(ref xr, i1 + q); var a1i = Unsafe.Add(ref xi, i1 + q);
                var a2r = Unsafe.Add(ref xr, i2 + q); var a2i = Unsafe.Add(ref xi, i2 + q);
                var a3r = Unsafe.Add(ref xr, i3 + q); var a3i = Unsafe.Add(ref xi, i3 + q);
                var a4r = Unsafe.Add(ref xr, i4 + q); var a4i = Unsafe.Add(ref xi, i4 + q);
                var t1r = a1r + a4r; var t1i = a1i + a4i; var t2r = a2r + a3r; var t2i = a2i + a3i;
                var t3r = a1r - a4r; var t3i = a1i - a4i; var t4r = a2r - a3r; var t4i = a2i - a3i;
                Unsafe.Add(ref yr, o + q) = a0r + t1r + t2r; Unsafe.Add(ref yi, o + q) = a0i + t1i + t2i;
                var m1r = a0r + t1r * c1 + t2r * c2; var m1i = a0i + t1i * c1 + t2i * c2;
                var m2r = a0r + t1r * c2 + t2r * c1; var m2i = a0i + t1i * c2 + t2i * c1;
                var n1r = t3r * s1 + t4r * s2; var n1i = t3i * s1 + t4i * s2;
                var n2r = t3r * s2 - t4r * s1; var n2i = t3i * s2 - t4i * s1;
                // b1 = m1 − i·n1, b4 = m1 + i·n1, b2 = m2 − i·n2, b3 = m2 + i·n2
                var b1r = m1r + n1i; var b1i = m1i - n1r; var b4r = m1r - n1i; var b4i = m1i + n1r;
                var b2r = m2r + n2i; var b2i = m2i - n2r; var b3r = m2r - n2i; var b3i = m2i + n2r;
                Unsafe.Add(ref yr, o + s + q) = b1r * w1r - b1i * w1i; Unsafe.Add(ref yi, o + s + q) = b1r * w1i + b1i * w1r;
                Unsafe.Add(ref yr, o + 2 * s + q) = b2r * w2r - b2i * w2i; Unsafe.Add(ref yi, o + 2 * s + q) = b2r * w2i + b2i * w2r;
                Unsafe.Add(ref yr, o + 3 * s + q) = b3r * w3r - b3i * w3i; Unsafe.Add(ref yi, o + 3 * s + q) = b3r * w3i + b3i * w3r;
                Unsafe.Add(ref yr, o + 4 * s + q) = b4r * w4r - b4i * w4i; Unsafe.Add(ref yi, o + 4 * s + q) = b4r * w4i + b4i * w4r;
            }
        }
    }

    static void RadixGeneric(Pass ps, Span<Vector<double>> xr, Span<Vector<double>> xi, Span<Vector<double>> yr, Span<Vector<double>> yi)
    {
        int r = ps.Radix, m = ps.M, s = ps.S;
        var dRe = ps.DftRe!; var dIm = ps.DftIm!;
        Span<Vector<double>> ar = r <= 64 ? stackalloc Vector<double>[r] : new Vector<double>[r];
        Span<Vector<double>> ai = r <= 64 ? stackalloc Vector<double>[r] : new Vector<double>[r];
        for (int p = 0; p < m; p++)
            for (int q = 0; q < s; q++)
            {
                for (int j = 0; j < r; j++) { ar[j] = xr[s * (p + j * m) + q]; ai[j] = xi[s * (p + j * m) + q]; }
                for (int k = 0; k < r; k++)
                {
                    var br = Vector<double>.Zero; var bi = Vector<double>.Zero;
                    for (int j = 0; j < r; j++)
                    {
                        double wr = dRe[k * r + j], wi = dIm[k * r + j];
                        br += ar[j] * wr - ai[j] * wi; bi += ar[j] * wi + ai[j] * wr;
                    }
                    if (k > 0)
                    {
                        double wr = ps.TwRe[p * (r - 1) + k - 1], wi = ps.TwIm[p * (r - 1) + k - 1];
                        (br, bi) = (br * wr - bi * wi, br * wi + bi * wr);
                    }
                    yr[s * (r * p + k) + q] = br; yi[s * (r * p + k) + q] = bi;
                }
            }
    }
}

/// <summary>FFT of Lanes real sequences of even length N at once, through one complex FFT of length N/2 (even
/// samples as the real part, odd as the imaginary part, then split); gives bins 0..N/2. Fill <see cref="Input"/>
/// (element i = sample i of each lane's sequence), call <see cref="Transform"/>, read <see cref="Re"/>/<see cref="Im"/>.
/// The buffers make an instance not thread-safe (one per thread); the plan underneath is shared.</summary>
public sealed class RealFft
{
    readonly int _h;
    readonly ComplexFft _fft;
    readonly double[] _wr, _wi;
    readonly Vector<double>[] _zr, _zi, _workR, _workI;

    public RealFft(int n)
    {
        if (n < 2 || n % 2 != 0) throw new ArgumentOutOfRangeException(nameof(n), n, "real FFT length must be even");
        Size = n; _h = n / 2;
        _fft = ComplexFft.Plan(_h);
        _zr = new Vector<double>[_h]; _zi = new Vector<double>[_h];
        _workR = new Vector<double>[_h]; _workI = new Vector<double>[_h];
        _wr = new double[_h + 1]; _wi = new double[_h + 1];
        for (int k = 0; k <= _h; k++) { double a = -2 * Math.PI * k / n; _wr[k] = Math.Cos(a); _wi[k] = Math.Sin(a); }
        Input = new Vector<double>[n];
        Re = new Vector<double>[_h + 1]; Im = new Vector<double>[_h + 1];
    }

    public static int Lanes => ComplexFft.Lanes;
    public int Size { get; }
    public int Bins => _h + 1;
    /// <summary>Time-domain input, Size elements of Lanes sequences.</summary>
    public Vector<double>[] Input { get; }
    /// <summary>Bins 0..Size/2 of each lane's transform.</summary>
    public Vector<double>[] Re { get; }
    public Vector<double>[] Im { get; }

    public void Transform() => Transform(Bins);

    /// <summary>Only bins 0..bins−1 of Re/Im are computed (the rest keep stale values).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Transform(int bins)
    {
        if (bins < 0 || bins > Bins) throw new ArgumentOutOfRangeException(nameof(bins), bins, $"a real FFT of size {Size} has {Bins} bins");
        int h = _h;
        // z[j] = x[2j] + i·x[2j+1]: the input already is that complex sequence, interleaved
        _fft.ForwardInterleaved(Input, _zr, _zi, _workR, _workI);
        ref var zr = ref MemoryMarshal.GetArrayDataReference(_zr);
        ref var zi = ref MemoryMarshal.GetArrayDataReference(_zi);
        ref var re = ref MemoryMarshal.GetArrayDataReference(Re);
        ref var im = ref MemoryMarshal.GetArrayDataReference(Im);
        ref double wr = ref MemoryMarshal.GetArrayDataReference(_wr);
        ref double wi = ref MemoryMarshal.GetArrayDataReference(_wi);
        // bin k pairs Z[k] with conj(Z[h−k]); bins 0 and h both pair Z[0] with itself
        if (bins > 0) Split(ref re, ref im, 0, Unsafe.Add(ref zr, 0), Unsafe.Add(ref zi, 0), Unsafe.Add(ref zr, 0), Unsafe.Add(ref zi, 0), wr, wi);
        int inner = Math.Min(bins, h);
        for (int k = 1; k < inner; k++)
            Split(ref re, ref im, k, Unsafe.Add(ref zr, k), Unsafe.Add(ref zi, k), Unsafe.Add(ref zr, h - k), Unsafe.Add(ref zi, h - k),
                Unsafe.Add(ref wr, k), Unsafe.Add(ref wi, k));
        if (bins > h) Split(ref re, ref im, h, Unsafe.Add(ref zr, 0), Unsafe.Add(ref zi, 0), Unsafe.Add(ref zr, 0), Unsafe.Add(ref zi, 0), Unsafe.Add(ref wr, h), Unsafe.Add(ref wi, h));
    }

    /// <summary>The power spectrum |X_k|² = Re² + Im² of bins 0..bins−1 (as Transform then squaring would give it, bit
    /// for bit), without storing Re/Im; bins k and h−k share their loads and half sums.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Power(Span<Vector<double>> power, int bins)
    {
        if (bins < 0 || bins > Bins || power.Length < bins)
            throw new ArgumentOutOfRangeException(nameof(bins), bins, $"a real FFT of size {Size} has {Bins} bins (power holds {power.Length})");
        int h = _h;
        _fft.ForwardInterleaved(Input, _zr, _zi, _workR, _workI);
        ref var zr = ref MemoryMarshal.GetArrayDataReference(_zr);
        ref var zi = ref MemoryMarshal.GetArrayDataReference(_zi);
        ref double wr = ref MemoryMarshal.GetArrayDataReference(_wr);
        ref double wi = ref MemoryMarshal.GetArrayDataReference(_wi);
        ref var pw = ref MemoryMarshal.GetReference(power);
        var half = new Vector<double>(0.5);
        for (int k = 0; k <= h / 2; k++)
        {
            int k2 = h - k; // k = 0 pairs Z[0] with itself for both bin 0 and bin h
            bool one = k < bins, two = k2 < bins && k2 != k;
            if (!one && !two) continue;
            var ar = Unsafe.Add(ref zr, k); var ai = Unsafe.Add(ref zi, k);
            int b = k == 0 ? 0 : k2;
            var br = Unsafe.Add(ref zr, b); var bi = Unsafe.Add(ref zi, b);
            // bin k: even (Z[k] + conj Z[h−k])/2, odd (Z[k] − conj Z[h−k])/(2i); bin h−k has the same even real and
            // odd real parts and the negated imaginary ones (exactly: IEEE sums commute and negate)
            var er = half * (ar + br); var ei = half * (ai + -bi);
            var odr = half * (ai - -bi); var odi = -half * (ar - br);
            if (one)
            {
                double w1 = Unsafe.Add(ref wr, k), w2 = Unsafe.Add(ref wi, k);
                var xr = er + odr * w1 - odi * w2; var xi = ei + odi * w1 + odr * w2;
                Unsafe.Add(ref pw, k) = xr * xr + xi * xi;
            }
            if (two)
            {
                double w1 = Unsafe.Add(ref wr, k2), w2 = Unsafe.Add(ref wi, k2);
                var nei = -ei; var nodi = -odi;
                var xr = er + odr * w1 - nodi * w2; var xi = nei + nodi * w1 + odr * w2;
                Unsafe.Add(ref pw, k2) = xr * xr + xi * xi;
            }
        }
    }

    /// <summary>Bin k of the real transform from Z = Z[k] and c = conj(Z[h−k]): even part (Z + c)/2, odd part
    /// (Z − c)/(2i), X = even + W^k·odd.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Split(ref Vector<double> re, ref Vector<double> im, int k, Vector<double> zr, Vector<double> zi,
        Vector<double> yr, Vector<double> yi, double wr, double wi)
    {
        var half = new Vector<double>(0.5);
        var cr = yr; var ci = -yi; // c = conj(Z[h−k])
        var er = half * (zr + cr); var ei = half * (zi + ci);
        var odr = half * (zi - ci); var odi = -half * (zr - cr);
        Unsafe.Add(ref re, k) = er + odr * wr - odi * wi;
        Unsafe.Add(ref im, k) = ei + odi * wr + odr * wi;
    }

    /// <summary>One sequence (lane 0; the other lanes transform zeros): re/im get bins 0..Size/2.</summary>
    public void Forward(ReadOnlySpan<double> x, Span<double> re, Span<double> im)
    {
        if (x.Length != Size) throw new ArgumentException($"real FFT of size {Size} got {x.Length} samples", nameof(x));
        Array.Clear(Input);
        SimdLanes.Set(Input, 0, x);
        Transform();
        for (int k = 0; k < Bins; k++) { re[k] = Re[k][0]; im[k] = Im[k][0]; }
    }
}

/// <summary>Moving data in and out of lane-interleaved buffers (element i, lane l at i·Lanes + l).</summary>
public static class SimdLanes
{
    /// <summary>dst[i] lane l = src[(first + l)·hop + i] for i &lt; n, l &lt; count; lanes ≥ count are zeroed — Lanes
    /// overlapping frames of a signal, transposed into lane order (4×4 blocks with AVX, else one sample at a time).</summary>
    public static void SetFrames(Span<Vector<double>> dst, ReadOnlySpan<float> src, int first, int hop, int count, int n) =>
        SetFrames(dst, src, first, hop, count, n, default);

    /// <summary>SetFrames, each sample i multiplied by window[i] on the way (an empty window multiplies by nothing).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void SetFrames(Span<Vector<double>> dst, ReadOnlySpan<float> src, int first, int hop, int count, int n,
        ReadOnlySpan<double> window)
    {
        if (!window.IsEmpty && window.Length < n) throw new ArgumentException($"window has {window.Length} samples, frames {n}", nameof(window));
        int w = Vector<double>.Count;
        bool windowed = !window.IsEmpty;
        if (count == w && w == 4 && Avx.IsSupported && (long)(first + 3) * hop + n <= src.Length && dst.Length >= n)
        {
            ref float s0 = ref Unsafe.Add(ref MemoryMarshal.GetReference(src), first * hop);
            ref float s1 = ref Unsafe.Add(ref s0, hop);
            ref float s2 = ref Unsafe.Add(ref s1, hop);
            ref float s3 = ref Unsafe.Add(ref s2, hop);
            ref var d = ref Unsafe.As<Vector<double>, Vector256<double>>(ref MemoryMarshal.GetReference(dst));
            int i = 0;
            for (; i + 4 <= n; i += 4)
            {
                var a = Avx.ConvertToVector256Double(Vector128.LoadUnsafe(ref s0, (nuint)i)); // frame 0, samples i..i+3
                var b = Avx.ConvertToVector256Double(Vector128.LoadUnsafe(ref s1, (nuint)i));
                var c = Avx.ConvertToVector256Double(Vector128.LoadUnsafe(ref s2, (nuint)i));
                var e = Avx.ConvertToVector256Double(Vector128.LoadUnsafe(ref s3, (nuint)i));
                var ab0 = Avx.UnpackLow(a, b);  // a0 b0 a2 b2
                var ab1 = Avx.UnpackHigh(a, b); // a1 b1 a3 b3
                var ce0 = Avx.UnpackLow(c, e);
                var ce1 = Avx.UnpackHigh(c, e);
                var f0 = Avx.Permute2x128(ab0, ce0, 0x20); // a0 b0 c0 e0
                var f1 = Avx.Permute2x128(ab1, ce1, 0x20); // a1 b1 c1 e1
                var f2 = Avx.Permute2x128(ab0, ce0, 0x31); // a2 b2 c2 e2
                var f3 = Avx.Permute2x128(ab1, ce1, 0x31); // a3 b3 c3 e3
                if (windowed)
                {
                    f0 *= Vector256.Create(window[i]); f1 *= Vector256.Create(window[i + 1]);
                    f2 *= Vector256.Create(window[i + 2]); f3 *= Vector256.Create(window[i + 3]);
                }
                Unsafe.Add(ref d, i) = f0; Unsafe.Add(ref d, i + 1) = f1;
                Unsafe.Add(ref d, i + 2) = f2; Unsafe.Add(ref d, i + 3) = f3;
            }
            for (; i < n; i++)
            {
                var f = Vector256.Create(Unsafe.Add(ref s0, i), Unsafe.Add(ref s1, i), Unsafe.Add(ref s2, i), (double)Unsafe.Add(ref s3, i));
                Unsafe.Add(ref d, i) = windowed ? f * Vector256.Create(window[i]) : f;
            }
            return;
        }
        for (int l = 0; l < w; l++)
            if (l < count) Set(dst, l, src.Slice((first + l) * hop, n));
            else Clear(dst, l);
        if (windowed)
            for (int i = 0; i < n; i++) dst[i] *= window[i];
    }

    public static void Set(Span<Vector<double>> dst, int lane, ReadOnlySpan<double> src)
    {
        var d = MemoryMarshal.Cast<Vector<double>, double>(dst);
        int w = Vector<double>.Count;
        for (int i = 0; i < src.Length; i++) d[i * w + lane] = src[i];
    }

    public static void Set(Span<Vector<double>> dst, int lane, ReadOnlySpan<float> src)
    {
        var d = MemoryMarshal.Cast<Vector<double>, double>(dst);
        int w = Vector<double>.Count;
        for (int i = 0; i < src.Length; i++) d[i * w + lane] = src[i];
    }

    public static void Clear(Span<Vector<double>> dst, int lane)
    {
        var d = MemoryMarshal.Cast<Vector<double>, double>(dst);
        int w = Vector<double>.Count;
        for (int i = lane; i < d.Length; i += w) d[i] = 0;
    }
}
