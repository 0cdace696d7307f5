#!/usr/bin/env python3
"""Oracle for the audio front end (issue 7): writes deterministic synthetic WAVs and, for each, what the reference's
torch/torchaudio/librosa numerics make of it. Runs on the GPU machine (CPU torch only; no librosa/whisper there, so
their formulas are written out below from the published definitions).

Usage: audio_oracle.py OUT_DIR [REAL_WAV ...]
Writes OUT_DIR/manifest.json, OUT_DIR/<name>.wav (the synthetic inputs), OUT_DIR/<name>.<feature>.bin (float32 LE,
row-major, shapes in the manifest) and OUT_DIR/am.mvn (a synthetic Kaldi CMVN file, 560 dims).
For REAL_WAV files (speech prompts that stay out of the repo) only hashes, spans, shapes and slices are written.
"""
import hashlib, json, math, os, struct, sys
import numpy as np
import torch
import torchaudio
import torchaudio.compliance.kaldi as kaldi
import torchaudio.functional as taf

torch.set_num_threads(4)
OUT = sys.argv[1]
REAL = sys.argv[2:]
os.makedirs(OUT, exist_ok=True)
manifest = {"torch": torch.__version__, "torchaudio": torchaudio.__version__, "signals": [], "real": []}

# ---------------------------------------------------------------- WAV writing / reading (own, format spec)
def write_wav(path, data, sr, kind, extensible=False, list_chunk=False):
    """data: float64 array [C, N] in [-1, 1). kind: u8 | i16 | i24 | i32 | f32."""
    C, N = data.shape
    inter = data.T.reshape(-1)
    if kind == "u8":
        raw = np.clip(np.round(inter * 128) + 128, 0, 255).astype(np.uint8).tobytes(); bits, tag = 8, 1
    elif kind == "i16":
        raw = np.clip(np.round(inter * 32768), -32768, 32767).astype("<i2").tobytes(); bits, tag = 16, 1
    elif kind == "i24":
        v = np.clip(np.round(inter * 8388608), -8388608, 8388607).astype("<i4")
        b = v.view(np.uint8).reshape(-1, 4)[:, :3]
        raw = b.tobytes(); bits, tag = 24, 1
    elif kind == "i32":
        raw = np.clip(np.round(inter * 2147483648.0), -2147483648, 2147483647).astype("<i4").tobytes(); bits, tag = 32, 1
    elif kind == "f32":
        raw = inter.astype("<f4").tobytes(); bits, tag = 32, 3
    block = C * bits // 8
    if extensible:
        sub = (b"\x01\x00" if tag == 1 else b"\x03\x00") + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        mask = 0x4 if C == 1 else 0x3
        fmt = struct.pack("<HHIIHHHHI", 0xFFFE, C, sr, sr * block, block, bits, 22, bits, mask) + sub
    else:
        fmt = struct.pack("<HHIIHH", tag, C, sr, sr * block, block, bits)
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt
    if list_chunk:
        info = b"INFOISFT" + struct.pack("<I", 6) + b"oracle"
        chunks += b"LIST" + struct.pack("<I", len(info)) + info
    chunks += b"data" + struct.pack("<I", len(raw)) + raw + (b"\x00" if len(raw) & 1 else b"")
    with open(path, "wb") as f:
        f.write(b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks)


def read_wav_own(path):
    """torchaudio.load semantics written out: float32 [C, N]; int PCM divided by 2^(bits-1), u8 centred at 128."""
    d = open(path, "rb").read()
    i, fmt, data = 12, None, None
    while i + 8 <= len(d):
        cid, sz = d[i:i + 4], struct.unpack("<I", d[i + 4:i + 8])[0]
        if cid == b"fmt ":
            fmt = struct.unpack("<HHIIHH", d[i + 8:i + 24])
            if fmt[0] == 0xFFFE:
                fmt = (struct.unpack("<H", d[i + 32:i + 34])[0],) + fmt[1:]
        elif cid == b"data":
            data = d[i + 8:i + 8 + sz]
        i += 8 + sz + (sz & 1)
    tag, C, sr, _, block, bits = fmt
    n = len(data) // block
    data = data[:n * block]
    if tag == 3:
        x = np.frombuffer(data, "<f4").astype(np.float32)
    elif bits == 8:
        x = ((np.frombuffer(data, np.uint8).astype(np.float32) - 128.0) / 128.0).astype(np.float32)
    elif bits == 16:
        x = (np.frombuffer(data, "<i2").astype(np.float32) / 32768.0).astype(np.float32)
    elif bits == 24:
        b = np.frombuffer(data, np.uint8).reshape(-1, 3).astype(np.int32)
        v = (b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8  # as int32, then /2^31 (exact)
        x = (v.astype(np.float64) / 2147483648.0).astype(np.float32)
    elif bits == 32:
        x = (np.frombuffer(data, "<i4").astype(np.float64) / 2147483648.0).astype(np.float32)
    return torch.from_numpy(x.reshape(n, C).T.copy()), sr


def load(path):
    own, sr = read_wav_own(path)
    try:
        ta, sr2 = torchaudio.load(path)
        ta = ta.to(torch.float32)
        assert sr2 == sr and ta.shape == own.shape, (sr2, sr, ta.shape, own.shape)
        return ta, sr, "torchaudio.load", float((ta - own).abs().max())
    except Exception as e:  # torchaudio >= 2.9 needs torchcodec for load(); fall back to the written-out semantics
        return own, sr, f"own-parser ({type(e).__name__}: {str(e)[:80]})", None

# ---------------------------------------------------------------- librosa formulas (0.10.2), written out
def hz_to_mel(f):
    f = np.asarray(f, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, f / f_sp)


def mel_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def librosa_mel(sr, n_fft, n_mels, fmin, fmax):
    fftfreqs = np.arange(1 + n_fft // 2) * (sr / n_fft)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    w = np.zeros((n_mels, 1 + n_fft // 2), dtype=np.float32)
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        w[i] = np.maximum(0, np.minimum(lower, upper))
    enorm = 2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels])
    w *= enorm[:, None]
    return w


def librosa_trim_span(y, top_db=20, frame_length=512, hop_length=128):
    y = np.asarray(y, dtype=np.float32)
    pad = frame_length // 2
    yp = np.pad(y, (pad, pad), mode="constant")
    n_frames = 1 + (len(yp) - frame_length) // hop_length
    idx = np.arange(frame_length)[None, :] + hop_length * np.arange(n_frames)[:, None]
    frames = yp[idx]
    rms = np.sqrt(np.mean(np.abs(frames) ** 2, axis=1))
    S = np.abs(rms)
    ref = np.max(S)
    amin = 1e-5 ** 2
    db = 10.0 * np.log10(np.maximum(amin, S ** 2)) - 10.0 * np.log10(np.maximum(amin, ref ** 2))
    nz = np.flatnonzero(db > -top_db)
    if nz.size == 0:
        return 0, 0
    return int(nz[0] * hop_length), int(min(len(y), (nz[-1] + 1) * hop_length))


def trim_silence(audio, sr=16000, keep_left=0.05, keep_right=0.22, hop=240):
    s, e = librosa_trim_span(audio)
    num_frames = int(math.ceil((e - s) / hop))
    start = s - int(keep_left * sr)
    w = audio[start:] if start > 0 else np.pad(audio, (abs(start), 0))
    out_len = int(num_frames * hop + (keep_left + keep_right) * sr)
    w = w[:out_len] if out_len < len(w) else np.pad(w, (0, out_len - len(w)))
    return w.astype(np.float32), dict(s=s, e=e, num_frames=num_frames, start=start, out_len=out_len)

# ---------------------------------------------------------------- features
def whisper_logmel(x, dtype=torch.float32):
    x = x.to(dtype)
    st = torch.stft(x, 400, 160, window=torch.hann_window(400, dtype=dtype), return_complex=True)
    mag = st[..., :-1].abs() ** 2
    mel = torch.from_numpy(librosa_mel(16000, 400, 128, 0.0, 8000.0)).to(dtype) @ mag
    log = torch.clamp(mel, min=1e-10).log10()
    log = torch.maximum(log, log.max() - 8.0)
    return ((log + 4.0) / 4.0)  # [128, T]


def vocoder_mel(x24, dtype=torch.float32):
    y = torch.nn.functional.pad(x24.to(dtype)[None, None], (720, 720), mode="reflect")[0]
    st = torch.stft(y, 1920, hop_length=480, win_length=1920, window=torch.hann_window(1920, dtype=dtype),
                    center=False, normalized=False, onesided=True, return_complex=True)
    spec = torch.view_as_real(st)
    spec = torch.sqrt(spec.pow(2).sum(-1) + 1e-9)
    spec = torch.from_numpy(librosa_mel(24000, 1920, 80, 0.0, 8000.0)).to(dtype) @ spec
    return torch.log(torch.clamp(spec, min=1e-5))[0].T  # [T, 80]


def speaker_fbank(x16, dtype=torch.float32):
    f = kaldi.fbank(x16.to(dtype)[None], num_mel_bins=80, dither=0, sample_frequency=16000)
    return f - f.mean(dim=0, keepdim=True)  # [T, 80]


def write_am_mvn(path, rng):
    shift = -(rng.uniform(8.0, 16.0, 80)).astype(np.float32)
    scale = (1.0 / rng.uniform(2.0, 6.0, 80)).astype(np.float32)
    shift, scale = np.tile(shift, 7), np.tile(scale, 7)
    fmt = lambda v: " ".join(repr(float(a)) for a in v)
    with open(path, "w") as f:
        f.write("<Nnet>\n<Splice> 560 560\n[ 0 ]\n")
        f.write(f"<AddShift> 560 560\n<LearnRateCoef> 0 [ {fmt(shift)} ]\n")
        f.write(f"<Rescale> 560 560\n<LearnRateCoef> 0 [ {fmt(scale)} ]\n</Nnet>\n")


def load_cmvn(path):  # FunASR load_cmvn, written out
    lines = open(path).read().splitlines()
    means = vars_ = None
    for i, line in enumerate(lines):
        it = line.split()
        if it and it[0] in ("<AddShift>", "<Rescale>"):
            nxt = lines[i + 1].split()
            vals = np.array(nxt[3:len(nxt) - 1], dtype=np.float32)
            if it[0] == "<AddShift>":
                means = vals
            else:
                vars_ = vals
    return torch.from_numpy(means), torch.from_numpy(vars_)


def apply_lfr(inputs, m, n, is_final):  # FunASR WavFrontendOnline.apply_lfr (loop form), written out
    T = inputs.shape[0]
    T_lfr = int(np.ceil((T - (m - 1) // 2) / n))
    splice_idx = T_lfr
    out = []
    for i in range(T_lfr):
        if m <= T - i * n:
            out.append(inputs[i * n:i * n + m].reshape(1, -1))
        elif is_final:
            pad = m - (T - i * n)
            frame = torch.cat([inputs[i * n:].reshape(-1)] + [inputs[-1]] * pad)
            out.append(frame.reshape(1, -1))
        else:
            splice_idx = i
            break
    splice_idx = min(T - 1, splice_idx * n)
    if not out:
        raise RuntimeError("empty LFR")  # torch.vstack([]) raises in the reference
    return torch.cat(out, 0), inputs[splice_idx:]


def paraformer_stream(x16, shift, scale):
    """infer_encoder chunk loop + WavFrontendOnline (dither 0): returns [T, 560] and the per-chunk frame counts."""
    stride = 4 * 960
    n = len(x16) // stride + 1
    input_cache = torch.zeros(0)
    splice = None
    outs, counts = [], []
    for i in range(n):
        final = i == n - 1
        chunk = x16[i * stride:(i + 1) * stride]
        if final and len(chunk) == 0:
            break
        try:
            buf = torch.cat([input_cache, chunk])
            L = buf.shape[0]
            fn = int((L - 400) / 160 + 1)
            fn = fn if fn >= 1 and L >= 400 else 0
            input_cache = buf[-(L - fn * 160):]
            lfr = None
            if fn:
                fb = kaldi.fbank((buf * 32768)[None], num_mel_bins=80, frame_length=25, frame_shift=10, dither=0.0,
                                 energy_floor=0.0, window_type="hamming", sample_frequency=16000)
                if splice is None:
                    splice = fb[0:1].repeat(3, 1)
                if fb.shape[0] + splice.shape[0] >= 7:
                    lfr, splice = apply_lfr(torch.cat([splice, fb]), 7, 6, final)
                else:
                    splice = torch.cat([splice, fb])
            elif final:
                if splice is None:
                    raise RuntimeError("no frames")
                lfr, _ = apply_lfr(splice, 7, 6, True)
        except RuntimeError:
            if final and len(chunk) < 480:
                break
            raise
        if lfr is None:
            if final:
                break
            counts.append(0)
            continue
        outs.append((lfr + shift) * scale)
        counts.append(lfr.shape[0])
    return (torch.cat(outs) if outs else torch.zeros(0, 560)), counts

# ---------------------------------------------------------------- the pipeline
def front_end(wav, sr, shift, scale):
    """wav: float32 [C, N] as loaded. Returns a dict of arrays and scalars."""
    r = {}
    mono = wav.mean(dim=0)
    peak = float(mono.abs().max())
    if peak > 0.6:
        mono = mono / peak * 0.6
    r["peak"] = peak
    x16 = mono if sr == 16000 else taf.resample(mono, sr, 16000)
    x24 = mono if sr == 24000 else taf.resample(mono, sr, 24000)
    x16_64 = mono.double() if sr == 16000 else taf.resample(mono.double(), sr, 16000)
    x24_64 = mono.double() if sr == 24000 else taf.resample(mono.double(), sr, 24000)
    r["res16"], r["res24"] = x16, x24
    r["res16_f32_vs_f64"] = float((x16.double() - x16_64).abs().max())
    r["res24_f32_vs_f64"] = float((x24.double() - x24_64).abs().max())
    norm = x16 / max(float(x16.abs().max()), 0.01) * 0.999
    trimmed, span = trim_silence(norm.numpy())
    r["span"] = span
    trimmed = torch.from_numpy(trimmed)
    r["trimmed"] = trimmed
    r["whisper"] = whisper_logmel(trimmed)
    r["whisper_f32_vs_f64"] = float((r["whisper"].double() - whisper_logmel(trimmed, torch.float64)).abs().max())
    r["spkfbank"] = speaker_fbank(x16)
    r["spkfbank_f32_vs_f64"] = float((r["spkfbank"].double() - speaker_fbank(x16, torch.float64)).abs().max())
    r["para"], r["para_chunks"] = paraformer_stream(trimmed, shift, scale)
    r["vocmel"] = vocoder_mel(x24)
    r["vocmel_f32_vs_f64"] = float((r["vocmel"].double() - vocoder_mel(x24, torch.float64)).abs().max())
    return r


def save_bin(name, t):
    a = np.ascontiguousarray(t.detach().numpy().astype("<f4"))
    a.tofile(os.path.join(OUT, name))
    return {"file": name, "shape": list(a.shape)}


def sha(t):
    return hashlib.sha256(np.ascontiguousarray(t.numpy().astype("<f4")).tobytes()).hexdigest()

# ---------------------------------------------------------------- synthetic signals (deterministic)
rng = np.random.RandomState(20240607)


def envelope(n, sr, t0, t1, ramp=0.01):
    t = np.arange(n) / sr
    e = np.clip((t - t0) / ramp, 0, 1) * np.clip((t1 - t) / ramp, 0, 1)
    return e


def speechlike(n, sr, f0=140.0, seed_shift=0.0):
    t = np.arange(n) / sr
    f = f0 * (1 + 0.1 * np.sin(2 * np.pi * 3 * t + seed_shift))
    ph = 2 * np.pi * np.cumsum(f) / sr
    x = sum((1.0 / k) * np.sin(k * ph) * (1 + 0.5 * np.sin(2 * np.pi * 0.7 * k + seed_shift)) for k in range(1, 25)
            if k * f0 < sr / 2 * 0.9)
    am = 0.55 + 0.45 * np.sin(2 * np.pi * 4.3 * t + seed_shift)
    return x * am


def chirp(n, sr, f0, f1):
    t = np.arange(n) / sr
    T = n / sr
    return np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t * t / (2 * T)))


def make_signals():
    sig = []
    n = int(8000 * 1.2)  # 8 kHz chirp in silence (below the reference's 16 kHz floor)
    x = 0.5 * chirp(n, 8000, 100, 3500) * envelope(n, 8000, 0.25, 0.95)
    sig.append(("s08k_chirp_i16", 8000, x[None], "i16", {}))
    n = 11025  # 11.025 kHz 8-bit noise burst
    x = 0.7 * np.clip(rng.randn(n) * 0.3, -1, 1) * envelope(n, 11025, 0.3, 0.7)
    sig.append(("s11k_burst_u8", 11025, x[None], "u8", {}))
    n = int(16000 * 1.3)  # 16 kHz tone + noise burst with quiet gaps, loud (peak 0.9 -> normalised to 0.6)
    t = np.arange(n) / 16000
    x = (0.5 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 1320 * t)) * envelope(n, 16000, 0.2, 0.6)
    x += 0.3 * rng.randn(n) * envelope(n, 16000, 0.75, 1.0)
    x += 1e-3 * rng.randn(n) * envelope(n, 16000, 0.6, 0.75)
    x = x / np.abs(x).max() * 0.9
    sig.append(("s16k_tone_noise_i16", 16000, x[None], "i16", {}))
    n = 22050  # 22.05 kHz stereo speech-like, different channels, LIST chunk before data
    l = 0.4 * speechlike(n, 22050, 130) * envelope(n, 22050, 0.15, 0.85)
    r = 0.3 * speechlike(n, 22050, 190, 1.0) * envelope(n, 22050, 0.2, 0.8) + 0.01 * rng.randn(n)
    sig.append(("s22k_stereo_i16", 22050, np.stack([l, r]) / 8.0, "i16", {"list_chunk": True}))
    n = int(24000 * 0.9)  # 24 kHz 32-bit int PCM, speech-like
    x = 0.25 * speechlike(n, 24000, 110) / 5.0 * envelope(n, 24000, 0.1, 0.7)
    sig.append(("s24k_speech_i32", 24000, x[None], "i32", {}))
    n = 44100  # 44.1 kHz float, speech-like + chirp, peak above 0.6
    x = speechlike(n, 44100, 160) / 3.0 * envelope(n, 44100, 0.1, 0.6) + 0.4 * chirp(n, 44100, 300, 9000) * envelope(n, 44100, 0.65, 0.9)
    x = x / np.abs(x).max() * 0.95
    sig.append(("s44k_float", 44100, x[None], "f32", {}))
    n = int(48000 * 0.8)  # 48 kHz 24-bit stereo, WAVE_FORMAT_EXTENSIBLE
    l = 0.3 * speechlike(n, 48000, 120) / 3.0 * envelope(n, 48000, 0.12, 0.7)
    r = 0.3 * chirp(n, 48000, 50, 20000) * envelope(n, 48000, 0.1, 0.65)
    sig.append(("s48k_stereo_i24ext", 48000, np.stack([l, r]), "i24", {"extensible": True}))
    return sig


write_am_mvn(os.path.join(OUT, "am.mvn"), rng)
shift, scale = load_cmvn(os.path.join(OUT, "am.mvn"))
report = []
for name, sr, data, kind, opts in make_signals():
    path = os.path.join(OUT, name + ".wav")
    write_wav(path, np.asarray(data, dtype=np.float64), sr, kind, **opts)
    wav, sr_, backend, own_diff = load(path)
    r = front_end(wav, sr, shift, scale)
    entry = {"name": name, "wav": name + ".wav", "sample_rate": sr, "channels": wav.shape[0], "frames": wav.shape[1],
             "format": kind, "load_backend": backend, "load_vs_own_parser": own_diff, "load_sha256": sha(wav),
             "peak": r["peak"], "span": r["span"], "para_chunks": r["para_chunks"],
             "trimmed_sha256": sha(r["trimmed"]),
             "f32_vs_f64": {k[:-11]: r[k] for k in r if k.endswith("_f32_vs_f64")}}
    for k in ("res16", "res24", "whisper", "spkfbank", "para", "vocmel"):
        entry[k] = save_bin(f"{name}.{k}.bin", r[k])
    manifest["signals"].append(entry)
    report.append(f"{name}: {backend[:20]} span={r['span']} whisper={entry['whisper']['shape']} para={entry['para']['shape']} f32v64={entry['f32_vs_f64']}")

for path in REAL:
    wav, sr, backend, own_diff = load(path)
    r = front_end(wav, sr, shift, scale)
    base = os.path.basename(path)[:-4]
    mid16, mid24 = len(r["res16"]) // 2, len(r["res24"]) // 2
    entry = {"name": base, "wav": os.path.basename(path), "sample_rate": sr, "channels": wav.shape[0],
             "frames": wav.shape[1], "load_backend": backend, "load_vs_own_parser": own_diff, "load_sha256": sha(wav),
             "peak": r["peak"], "span": r["span"], "trimmed_sha256": sha(r["trimmed"]), "para_chunks": r["para_chunks"],
             "shapes": {k: list(r[k].shape) for k in ("res16", "res24", "whisper", "spkfbank", "para", "vocmel")},
             "res16_mid_offset": mid16, "res24_mid_offset": mid24,
             "f32_vs_f64": {k[:-11]: r[k] for k in r if k.endswith("_f32_vs_f64")}}
    entry["res16_head"] = save_bin(f"real_{base}.res16_head.bin", r["res16"][:4000])
    entry["res16_mid"] = save_bin(f"real_{base}.res16_mid.bin", r["res16"][mid16:mid16 + 4000])
    entry["res24_mid"] = save_bin(f"real_{base}.res24_mid.bin", r["res24"][mid24:mid24 + 4000])
    entry["whisper_head"] = save_bin(f"real_{base}.whisper_head.bin", r["whisper"][:, :48].contiguous())
    entry["vocmel_head"] = save_bin(f"real_{base}.vocmel_head.bin", r["vocmel"][:48])
    entry["spkfbank_head"] = save_bin(f"real_{base}.spkfbank_head.bin", r["spkfbank"][:48])
    entry["para_head"] = save_bin(f"real_{base}.para_head.bin", r["para"][:12])
    manifest["real"].append(entry)
    report.append(f"real {base}: {backend[:20]} sr={sr} span={r['span']} shapes={entry['shapes']} f32v64={entry['f32_vs_f64']}")

with open(os.path.join(OUT, "manifest.json"), "w") as f:
    json.dump(manifest, f, indent=1)
print("\n".join(report))
print(f"torch {torch.__version__} torchaudio {torchaudio.__version__}; wrote {len(os.listdir(OUT))} files")
