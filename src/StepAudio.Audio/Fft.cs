namespace StepAudio.Audio;

/// <summary>Mixed-radix complex FFT (radices 4, 2, 3, 5, and any other prime by a direct butterfly) in double, for
/// the non-power-of-two sizes the features need (400, 1920). Forward transform, no scaling: X[k] = Σ x[n]·e^(−2πikn/N).
/// Not thread-safe (scratch buffers); make one per thread.</summary>
public sealed class ComplexFft
{
    readonly int _n;
    readonly int[] _factors;
    readonly double[] _twRe, _twIm;
    readonly double[] _tmpRe, _tmpIm;

    public ComplexFft(int n)
    {
        if (n < 1) throw new ArgumentOutOfRangeException(nameof(n));
        _n = n;
        var f = new List<int>();
        int m = n;
        foreach (int p in new[] { 4, 2, 3, 5 })
            while (m % p == 0) { f.Add(p); m /= p; }
        for (int p = 7; m > 1; p += 2)
            while (m % p == 0) { f.Add(p); m /= p; }
        _factors = f.ToArray();
        _twRe = new double[n]; _twIm = new double[n];
        for (int i = 0; i < n; i++)
        {
            double a = -2 * Math.PI * i / n;
            _twRe[i] = Math.Cos(a); _twIm[i] = Math.Sin(a);
        }
        int maxR = _factors.Length == 0 ? 1 : _factors.Max();
        _tmpRe = new double[maxR]; _tmpIm = new double[maxR];
        foreach (int r in _factors.Distinct())
        {
            var wr = new double[r * r]; var wi = new double[r * r];
            for (int p = 0; p < r; p++)
                for (int q = 0; q < r; q++) { int t = (q * p % r) * (n / r); wr[p * r + q] = _twRe[t]; wi[p * r + q] = _twIm[t]; }
            _small[r] = (wr, wi);
        }
    }

    // W_r^{pq} for each radix r, row-major [p, q], so the generic butterfly needs no modulo.
    readonly Dictionary<int, (double[], double[])> _small = new();

    public int Size => _n;

    /// <summary>out = DFT(in); in and out must not overlap.</summary>
    public void Forward(ReadOnlySpan<double> inRe, ReadOnlySpan<double> inIm, Span<double> outRe, Span<double> outIm)
    {
        if (_n == 1) { outRe[0] = inRe[0]; outIm[0] = inIm[0]; return; }
        Recurse(inRe, inIm, 0, 1, outRe, outIm, 0, _n, 0);
    }

    void Recurse(ReadOnlySpan<double> inRe, ReadOnlySpan<double> inIm, int inOff, int stride,
        Span<double> outRe, Span<double> outIm, int outOff, int n, int level)
    {
        int r = _factors[level], m = n / r;
        if (m == 1)
        {
            for (int q = 0; q < r; q++) { outRe[outOff + q] = inRe[inOff + q * stride]; outIm[outOff + q] = inIm[inOff + q * stride]; }
        }
        else
        {
            for (int q = 0; q < r; q++)
                Recurse(inRe, inIm, inOff + q * stride, stride * r, outRe, outIm, outOff + q * m, m, level + 1);
        }
        // Combine: X[k + p·m] = Σ_q (W_n^{qk} Y_q[k]) · W_r^{qp}; W_n^j = tw[j·stride].
        for (int k = 0; k < m; k++)
        {
            for (int q = 0; q < r; q++)
            {
                int idx = outOff + q * m + k;
                double xr = outRe[idx], xi = outIm[idx];
                if (q != 0 && k != 0)
                {
                    int t = q * k * stride;
                    double wr = _twRe[t], wi = _twIm[t];
                    (xr, xi) = (xr * wr - xi * wi, xr * wi + xi * wr);
                }
                _tmpRe[q] = xr; _tmpIm[q] = xi;
            }
            switch (r)
            {
                case 2:
                {
                    double ar = _tmpRe[0], ai = _tmpIm[0], br = _tmpRe[1], bi = _tmpIm[1];
                    outRe[outOff + k] = ar + br; outIm[outOff + k] = ai + bi;
                    outRe[outOff + k + m] = ar - br; outIm[outOff + k + m] = ai - bi;
                    break;
                }
                case 4:
                {
                    double ar = _tmpRe[0], ai = _tmpIm[0], br = _tmpRe[1], bi = _tmpIm[1];
                    double cr = _tmpRe[2], ci = _tmpIm[2], dr = _tmpRe[3], di = _tmpIm[3];
                    double s0r = ar + cr, s0i = ai + ci, s1r = ar - cr, s1i = ai - ci;
                    double s2r = br + dr, s2i = bi + di, s3r = br - dr, s3i = bi - di;
                    outRe[outOff + k] = s0r + s2r; outIm[outOff + k] = s0i + s2i;
                    outRe[outOff + k + 2 * m] = s0r - s2r; outIm[outOff + k + 2 * m] = s0i - s2i;
                    // −i·s3 for p = 1, +i·s3 for p = 3 (forward transform).
                    outRe[outOff + k + m] = s1r + s3i; outIm[outOff + k + m] = s1i - s3r;
                    outRe[outOff + k + 3 * m] = s1r - s3i; outIm[outOff + k + 3 * m] = s1i + s3r;
                    break;
                }
                default:
                    var (smallRe, smallIm) = _small[r];
                    for (int p = 0; p < r; p++)
                    {
                        double sr = 0, si = 0;
                        for (int q = 0; q < r; q++)
                        {
                            double wr = smallRe[p * r + q], wi = smallIm[p * r + q];
                            sr += _tmpRe[q] * wr - _tmpIm[q] * wi;
                            si += _tmpRe[q] * wi + _tmpIm[q] * wr;
                        }
                        outRe[outOff + k + p * m] = sr; outIm[outOff + k + p * m] = si;
                    }
                    break;
            }
        }
    }
}

/// <summary>FFT of a real sequence of even length N through one complex FFT of length N/2; returns bins 0..N/2.</summary>
public sealed class RealFft
{
    readonly int _n, _h;
    readonly ComplexFft _fft;
    readonly double[] _zr, _zi, _Zr, _Zi, _wr, _wi;

    public RealFft(int n)
    {
        if (n < 2 || n % 2 != 0) throw new ArgumentOutOfRangeException(nameof(n), n, "real FFT length must be even");
        _n = n; _h = n / 2;
        _fft = new ComplexFft(_h);
        _zr = new double[_h]; _zi = new double[_h]; _Zr = new double[_h]; _Zi = new double[_h];
        _wr = new double[_h + 1]; _wi = new double[_h + 1];
        for (int k = 0; k <= _h; k++) { double a = -2 * Math.PI * k / n; _wr[k] = Math.Cos(a); _wi[k] = Math.Sin(a); }
    }

    public int Size => _n;
    public int Bins => _h + 1;

    public void Forward(ReadOnlySpan<double> x, Span<double> re, Span<double> im)
    {
        for (int i = 0; i < _h; i++) { _zr[i] = x[2 * i]; _zi[i] = x[2 * i + 1]; }
        _fft.Forward(_zr, _zi, _Zr, _Zi);
        for (int k = 0; k <= _h; k++)
        {
            int a = k == _h ? 0 : k, b = k == 0 ? 0 : _h - k;
            double zr = _Zr[a], zi = _Zi[a], cr = _Zr[b], ci = -_Zi[b]; // c = conj(Z[h−k])
            double er = 0.5 * (zr + cr), ei = 0.5 * (zi + ci);            // even part
            double dr = zr - cr, di = zi - ci;                             // odd part = d / (2i) = (di, −dr)/2
            double or_ = 0.5 * di, oi = -0.5 * dr;
            re[k] = er + _wr[k] * or_ - _wi[k] * oi;
            im[k] = ei + _wr[k] * oi + _wi[k] * or_;
        }
    }

    /// <summary>|X[k]|² for k = 0..N/2.</summary>
    public void Power(ReadOnlySpan<double> x, Span<double> power, Span<double> scratchRe, Span<double> scratchIm)
    {
        Forward(x, scratchRe, scratchIm);
        for (int k = 0; k <= _h; k++) power[k] = scratchRe[k] * scratchRe[k] + scratchIm[k] * scratchIm[k];
    }
}
