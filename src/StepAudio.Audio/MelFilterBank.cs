using System.Numerics;

namespace StepAudio.Audio;

/// <summary>A triangular mel filter bank stored sparsely: filter m covers FFT bins [Start[m], Start[m]+Weights[m].Length).</summary>
public sealed class MelFilterBank
{
    MelFilterBank(int[] start, double[][] weights, int bins)
    {
        Start = start; Weights = weights; FftBins = bins;
        for (int m = 0; m < start.Length; m++) UsedBins = Math.Max(UsedBins, start[m] + weights[m].Length);
    }

    public int[] Start { get; }
    public double[][] Weights { get; }
    public int Count => Start.Length;
    public int FftBins { get; }
    /// <summary>Bins 0..UsedBins−1 are all any filter reads (the vocoder's 0–8 kHz bank needs 641 of 961).</summary>
    public int UsedBins { get; }

    /// <summary>mel[m] = Σ_k W[m,k]·spectrum[k].</summary>
    public void Apply(ReadOnlySpan<double> spectrum, Span<double> mel)
    {
        for (int m = 0; m < Start.Length; m++)
        {
            var w = Weights[m];
            var s = spectrum.Slice(Start[m], w.Length);
            double acc = 0;
            for (int k = 0; k < w.Length; k++) acc += w[k] * s[k];
            mel[m] = acc;
        }
    }

    /// <summary>The same product for Lanes spectra at once (lane-interleaved, as <see cref="RealFft"/> gives them);
    /// only each filter's non-zero span is visited.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public void Apply(ReadOnlySpan<Vector<double>> spectrum, Span<Vector<double>> mel)
    {
        for (int m = 0; m < Start.Length; m++)
        {
            var w = Weights[m];
            var s = spectrum.Slice(Start[m], w.Length);
            var acc = Vector<double>.Zero;
            for (int k = 0; k < w.Length; k++) acc += s[k] * w[k];
            mel[m] = acc;
        }
    }

    static MelFilterBank FromDense(double[,] dense)
    {
        int mels = dense.GetLength(0), bins = dense.GetLength(1);
        var start = new int[mels];
        var weights = new double[mels][];
        for (int m = 0; m < mels; m++)
        {
            int a = 0, b = bins - 1;
            while (a < bins && dense[m, a] == 0) a++;
            while (b >= a && dense[m, b] == 0) b--;
            if (a > b) { start[m] = 0; weights[m] = []; continue; }
            start[m] = a;
            weights[m] = new double[b - a + 1];
            for (int k = a; k <= b; k++) weights[m][k - a] = dense[m, k];
        }
        return new MelFilterBank(start, weights, bins);
    }

    // ---- librosa.filters.mel (0.10, Slaney scale and Slaney area normalisation; weights are float32 there)

    static double HzToMelSlaney(double f)
    {
        const double fsp = 200.0 / 3, minLogHz = 1000.0, minLogMel = minLogHz / fsp;
        double logstep = Math.Log(6.4) / 27.0;
        return f >= minLogHz ? minLogMel + Math.Log(f / minLogHz) / logstep : f / fsp;
    }

    static double MelToHzSlaney(double m)
    {
        const double fsp = 200.0 / 3, minLogHz = 1000.0, minLogMel = minLogHz / fsp;
        double logstep = Math.Log(6.4) / 27.0;
        return m >= minLogMel ? minLogHz * Math.Exp(logstep * (m - minLogMel)) : fsp * m;
    }

    public static MelFilterBank Slaney(int sampleRate, int nFft, int nMels, double fMin, double fMax)
    {
        int bins = nFft / 2 + 1;
        var melF = new double[nMels + 2];
        double lo = HzToMelSlaney(fMin), hi = HzToMelSlaney(fMax);
        for (int i = 0; i < melF.Length; i++) melF[i] = MelToHzSlaney(lo + (hi - lo) * i / (nMels + 1));
        var dense = new double[nMels, bins];
        for (int m = 0; m < nMels; m++)
        {
            double enorm = 2.0 / (melF[m + 2] - melF[m]);
            for (int k = 0; k < bins; k++)
            {
                double f = k * ((double)sampleRate / nFft);
                double lower = (f - melF[m]) / (melF[m + 1] - melF[m]);
                double upper = (melF[m + 2] - f) / (melF[m + 2] - melF[m + 1]);
                double w = Math.Max(0, Math.Min(lower, upper));
                dense[m, k] = (float)((float)w * enorm); // float32 like librosa's returned weights
            }
        }
        return FromDense(dense);
    }

    // ---- torchaudio.compliance.kaldi.get_mel_banks (no VTLN); the Nyquist bin gets weight 0

    static double MelKaldi(double f) => 1127.0 * Math.Log(1.0 + f / 700.0);

    public static MelFilterBank Kaldi(int numBins, int paddedWindow, double sampleRate, double lowFreq, double highFreq)
    {
        int fftBins = paddedWindow / 2;
        double nyquist = 0.5 * sampleRate;
        if (highFreq <= 0) highFreq += nyquist;
        double binWidth = sampleRate / paddedWindow;
        double mLow = MelKaldi(lowFreq), mHigh = MelKaldi(highFreq);
        double delta = (mHigh - mLow) / (numBins + 1);
        var dense = new double[numBins, fftBins + 1];
        for (int b = 0; b < numBins; b++)
        {
            double left = mLow + b * delta, center = mLow + (b + 1) * delta, right = mLow + (b + 2) * delta;
            for (int k = 0; k < fftBins; k++)
            {
                double mel = MelKaldi(binWidth * k);
                double up = (mel - left) / (center - left), down = (right - mel) / (right - center);
                dense[b, k] = Math.Max(0, Math.Min(up, down));
            }
        }
        return FromDense(dense);
    }
}

/// <summary>A row-major float matrix with its shape (features are [frames, bins] except whisper's [128, frames]).</summary>
public sealed record FeatureMatrix(int Rows, int Cols, float[] Data)
{
    public float this[int r, int c] => Data[r * Cols + c];
    public ReadOnlySpan<float> Row(int r) => Data.AsSpan(r * Cols, Cols);
    public override string ToString() => $"[{Rows}, {Cols}]";
}
