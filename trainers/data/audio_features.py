"""Per-video-frame audio features for the papers' audio encoders: pure numpy functions.

Variants (all at 16 kHz; `T` video frames; shapes of `audio_features(...)`):

| variant       | shape         | content                                                            | source        |
|---------------|---------------|--------------------------------------------------------------------|---------------|
| `mfcc_pitch`  | (T, 15)       | 13 MFCC + log-F0 + voicing probability, averaged over the frame    | HDTF §3       |
| `a2h`         | (T, 4, 41)    | 4 windows × (13 MFCC, 26 log-fbank, F0 in Hz, voiced flag)         | Audio2Head §3.2 |
| `mel`         | (T, 16, 80)   | 16 mel frames (time) × 80 bins, Wav2Lip's normalised log-mel       | IP_LAP §4 / Wav2Lip |
| `mfcc_window` | (T, 28, 12)   | 28 MFCC frames (0.28 s around the frame) × MFCC 1..12 (no c0)      | Yi et al. §3.2 (ATVGnet's input) |
| `mfcc80_window` | (T, 28, 80) | the same 28 rows × 80 MFCC of an 80-band log-mel (c0 = log energy)  | MetaTalk §3 (28×80 per block) |
| `phonetic`    | (T, 44)       | per-frame phoneme posteriors from free recognition (trainers/data/phonetic.py) | this project (#11) |

Analysis frames. MFCC, filterbank and pitch rows come at 100 Hz: 25 ms windows (Hamming,
400 samples) every 10 ms (160 samples), *centred* on j·10 ms (the signal is zero-padded by half
a window at both ends), so there are 1 + n // 160 rows. MFCC follow HTK / python_speech_features:
pre-emphasis 0.97, 512-point power spectrum, 26 HTK-mel triangles over 0–8 kHz, log, DCT-II
(orthonormal), cepstral lifter 22, c0 replaced by the log frame energy. (Departure: a Hamming
window instead of python_speech_features' rectangular default — less spectral leakage.) Mel
rows follow Wav2Lip: pre-emphasis 0.97, |STFT| with an 800-sample Hann window every 200
samples (80 rows/s, centred), 80 Slaney mel bins over 55–7600 Hz, 20·log10 − 20 dB,
mapped from [−100, 0] dB to [−4, 4].

Pitch is our own vectorised YIN (de Cheveigné & Kawahara 2002): 64 ms frames on the same
100 Hz grid, cumulative-mean-normalised difference, first dip under 0.15 within 60–500 Hz,
parabolic refinement. A row is voiced when it has such a dip and its RMS is above −40 dB of
the loudest row. F0 is linearly interpolated through unvoiced rows (held at the ends; zero when
nothing is voiced), as Audio2Head does with its voiced flag. `mfcc_pitch` uses ln(F0) and the
periodicity 1 − d'(τ*) (zeroed below the loudness floor) as its two pitch dims, like Kaldi's
(pitch, NCCF) pair; `a2h` uses F0 in Hz and the 0/1 voiced flag.

Alignment to video. The clip gives T = round-half-up(duration · fps) frames
(`frame_count` below), unless a count is imposed. Video frame t spans
[t/fps, (t+1)/fps); with r = 100 rows/s its first row is s_t = ceil(t·r/fps) (exact rational
arithmetic, so 25 fps gives s_t = 4t):
- `mfcc_pitch` averages rows s_t .. s_{t+1}−1 (the rows centred inside the frame);
- `a2h` takes rows s_t .. s_t+3 (Audio2Head's 4 windows per 25 fps frame);
- `mfcc_window` takes rows s_t−12 .. s_t+15: seven video frames (t−3 .. t+3) at 25 fps, as
  ATVGnet/Yi et al. do after padding the audio by 0.12 s on both sides; `mfcc80_window` the same
  rows of 80 MFCC (MetaTalk gives only "10 ms window, 28×80 per block": 80 HTK-mel bands over
  0–8 kHz of a 1024-point spectrum, so that the narrowest band still holds a bin, DCT-II kept whole);
- `mel` (80 rows/s) takes 16 rows from m_t: with `mel_align="centre"` (default)
  m_t = floor((t + ½)·80/fps) − 8, the window centred on the frame — at 25 fps this is
  IP_LAP's training crop int(3.2·(t−2)); with `"start"`, m_t = floor(t·80/fps), the window
  starting at the frame as in Wav2Lip/IP_LAP inference.
Rows outside the clip repeat the first/last row (edge padding), so every frame has features
and a clip's prefix gives the same rows as the whole clip away from its end.

Cost: numpy + scipy.fft only (no librosa, hence no numba compilation at first call): measured
here about 0.2 s per minute of audio for `mel` / `mfcc_window` and about 1 s for the variants
with pitch (YIN dominates; it runs over chunks of 512 rows so its FFT buffers stay small).
"""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Literal

import numpy as np
from scipy import fft as sfft

SAMPLE_RATE = 16000
ROW_RATE = 100  # MFCC / fbank / pitch rows per second
HOP, WIN, N_FFT = 160, 400, 512
N_MFCC, N_FBANK, LIFTER = 13, 26, 22
PREEMPHASIS = 0.97
MEL_HOP, MEL_WIN, MEL_BINS, MEL_STEP = 200, 800, 80, 16
MEL_RATE = SAMPLE_RATE // MEL_HOP  # 80 rows per second
YIN_FRAME, F0_MIN, F0_MAX, YIN_THRESHOLD, VOICED_FLOOR_DB = 1024, 60.0, 500.0, 0.15, -40.0
EPS = np.finfo(np.float64).eps
ROW_BLOCK = 4096  # spectrum rows computed at once (~40 s of audio): memory flat in clip length

Variant = Literal["mfcc_pitch", "a2h", "mel", "mfcc_window", "mfcc80_window", "phonetic"]
# phonetic: trainers/data/phonetic.py (FEATURE_DIM), free recognition; computed there, listed here so
# datasets can store it and trainers can ask for it like any other variant
SHAPES: dict[str, tuple[int, ...]] = {"mfcc_pitch": (15,), "a2h": (4, 41), "mel": (MEL_STEP, MEL_BINS), "mfcc_window": (28, 12),
                                      "mfcc80_window": (28, 80), "phonetic": (44,)}


# ------------------------------------------------------------------------------ spectral pieces


def hz_to_mel(f: np.ndarray | float, scale: str = "htk") -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    if scale == "htk":
        return 2595.0 * np.log10(1.0 + f / 700.0)
    # Slaney's Auditory Toolbox: linear below 1 kHz, logarithmic above
    lin = f / (200.0 / 3)
    return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0), lin)


def mel_to_hz(m: np.ndarray | float, scale: str = "htk") -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    if scale == "htk":
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)), (200.0 / 3) * m)


def mel_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float,
                   scale: str = "htk", area_norm: bool = False) -> np.ndarray:
    """Triangular mel filters (n_mels, n_fft//2 + 1) over the rfft bins.

    `scale` "htk" or "slaney"; `area_norm` divides each triangle by its width in Hz / 2
    (Slaney's equal-area normalisation).
    """
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin, scale), hz_to_mel(fmax, scale), n_mels + 2), scale)
    freqs = np.arange(n_fft // 2 + 1) * sr / n_fft
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs - lo) / (mid - lo)
    down = (hi - freqs) / (hi - mid)
    fb = np.maximum(0.0, np.minimum(up, down))
    if area_norm:
        fb *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return fb


def preemphasis(x: np.ndarray, coef: float = PREEMPHASIS) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return np.concatenate([x[:1], x[1:] - coef * x[:-1]])


def centred_frames(x: np.ndarray, length: int, hop: int) -> np.ndarray:
    """(1 + n // hop, length) read-only view; row j is centred on sample j·hop (zero padding)."""
    n_rows = 1 + len(x) // hop
    padded = np.zeros((n_rows - 1) * hop + length, dtype=np.float64)
    half = length // 2
    src = x[: max(0, len(padded) - half)]
    padded[half: half + len(src)] = src
    return np.lib.stride_tricks.sliding_window_view(padded, length)[::hop][:n_rows]


def _dct_ortho(x: np.ndarray, n: int) -> np.ndarray:
    return sfft.dct(x, type=2, axis=-1, norm="ortho")[..., :n]


def mfcc_fbank_rows(x: np.ndarray, sr: int = SAMPLE_RATE) -> tuple[np.ndarray, np.ndarray]:
    """HTK-style MFCC (N, 13) and log mel-filterbank energies (N, 26) at 100 rows/s. Rows are
    independent: the spectra are computed ROW_BLOCK rows at a time, so a long clip never holds
    all of them (the same values as one pass: tested)."""
    frames = centred_frames(preemphasis(x), WIN, HOP)  # a view
    bank = mel_filterbank(sr, N_FFT, N_FBANK, 0.0, sr / 2).T
    mfcc, logfbank = np.empty((len(frames), N_MFCC)), np.empty((len(frames), N_FBANK))
    for i in range(0, len(frames), ROW_BLOCK):
        power = np.abs(sfft.rfft(frames[i:i + ROW_BLOCK] * np.hamming(WIN), N_FFT)) ** 2 / N_FFT
        logfbank[i:i + ROW_BLOCK] = np.log(np.maximum(power @ bank, EPS))
        block = _dct_ortho(logfbank[i:i + ROW_BLOCK], N_MFCC)
        block *= 1.0 + (LIFTER / 2.0) * np.sin(np.pi * np.arange(N_MFCC) / LIFTER)
        block[:, 0] = np.log(np.maximum(power.sum(axis=1), EPS))
        mfcc[i:i + ROW_BLOCK] = block
    return mfcc, logfbank


def mfcc80_rows(x: np.ndarray, sr: int = SAMPLE_RATE, n: int = 80) -> np.ndarray:
    """MFCC (N, 80) of an 80-band log-mel at 100 rows/s (MetaTalk's 28×80 blocks); c0 = log energy."""
    frames = centred_frames(preemphasis(x), WIN, HOP) * np.hamming(WIN)
    power = np.abs(sfft.rfft(frames, 2 * N_FFT)) ** 2 / (2 * N_FFT)
    logmel = np.log(np.maximum(power @ mel_filterbank(sr, 2 * N_FFT, n, 0.0, sr / 2).T, EPS))
    mfcc = _dct_ortho(logmel, n)
    mfcc[:, 0] = np.log(np.maximum(power.sum(axis=1), EPS))
    return mfcc


def wav2lip_mel_rows(x: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Wav2Lip's normalised log-mel spectrogram, (M, 80) at 80 rows/s, values in [-4, 4]."""
    window = np.hanning(MEL_WIN + 1)[:-1]  # periodic Hann, as in STFT implementations
    frames = centred_frames(preemphasis(x), MEL_WIN, MEL_HOP) * window
    magnitude = np.abs(sfft.rfft(frames, MEL_WIN))
    mel = magnitude @ mel_filterbank(sr, MEL_WIN, MEL_BINS, 55.0, 7600.0, scale="slaney", area_norm=True).T
    db = 20.0 * np.log10(np.maximum(mel, 1e-5)) - 20.0
    return np.clip(8.0 * (db + 100.0) / 100.0 - 4.0, -4.0, 4.0)


# ------------------------------------------------------------------------------------- pitch


def yin_rows(x: np.ndarray, sr: int = SAMPLE_RATE, hop: int = HOP, frame: int = YIN_FRAME,
             fmin: float = F0_MIN, fmax: float = F0_MAX, threshold: float = YIN_THRESHOLD,
             chunk: int = 512) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """YIN pitch on frames centred at j·hop: (f0 Hz, aperiodicity d'(τ*), frame RMS), each (N,).

    f0 is 0 where no dip falls under `threshold`. Processed in chunks of rows (flat memory).
    """
    tau_min, tau_max = max(2, int(sr // fmax)), min(int(np.ceil(sr / fmin)), frame // 2)
    w = frame - tau_max  # integration window
    n_fft = 1 << int(np.ceil(np.log2(frame + w)))
    taus = np.arange(tau_max + 1)
    frames_all = centred_frames(np.asarray(x, dtype=np.float64), frame, hop)
    f0s, aps, rms = [], [], []
    for i0 in range(0, len(frames_all), chunk):
        fr = frames_all[i0:i0 + chunk]
        cs = np.concatenate([np.zeros((len(fr), 1)), np.cumsum(fr**2, axis=1)], axis=1)
        e0 = cs[:, w:w + 1]
        e_tau = cs[:, taus + w] - cs[:, taus]
        spec = np.conj(sfft.rfft(fr[:, :w], n_fft)) * sfft.rfft(fr, n_fft)
        r = sfft.irfft(spec, n_fft)[:, : tau_max + 1]
        d = np.maximum(e0 + e_tau - 2.0 * r, 0.0)
        cmndf = np.ones_like(d)
        cmndf[:, 1:] = d[:, 1:] * taus[1:] / np.maximum(np.cumsum(d[:, 1:], axis=1), EPS)
        seg = cmndf[:, tau_min:tau_max]
        # first dip under the threshold: first tau below it where the curve stops falling
        dip = (seg[:, :-1] < threshold) & (seg[:, :-1] <= seg[:, 1:])
        has_dip = dip.any(axis=1)
        best = np.where(has_dip, dip.argmax(axis=1), seg.argmin(axis=1))
        rows = np.arange(len(fr))
        # parabolic refinement through the neighbours (not at the ends of the search range)
        b = np.clip(best, 1, seg.shape[1] - 2)
        left, mid, right = seg[rows, b - 1], seg[rows, b], seg[rows, b + 1]
        curvature = left - 2 * mid + right
        ok = (best == b) & (curvature > EPS)
        shift = np.clip(0.5 * (left - right) / np.where(ok, curvature, 1.0), -1, 1) * ok
        f0s.append(np.where(has_dip, sr / (tau_min + best + shift), 0.0))
        aps.append(np.clip(seg[rows, best], 0.0, 1.0))
        centre = fr[:, frame // 2 - WIN // 2: frame // 2 + WIN // 2]
        rms.append(np.sqrt((centre**2).mean(axis=1)))
    return np.concatenate(f0s), np.concatenate(aps), np.concatenate(rms)


def pitch_rows(x: np.ndarray, sr: int = SAMPLE_RATE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(F0 Hz interpolated through unvoiced rows, voiced flag 0/1, periodicity in [0, 1]), each (N,)."""
    f0, aperiodicity, rms = yin_rows(x, sr)
    loud = rms > max(float(rms.max(initial=0.0)) * 10 ** (VOICED_FLOOR_DB / 20), 1e-5)
    voiced = (f0 > 0) & loud
    periodicity = np.where(loud, 1.0 - aperiodicity, 0.0)
    return interpolate_gaps(f0, voiced), voiced.astype(np.float64), periodicity


def interpolate_gaps(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Linear interpolation over rows where `valid` is False, ends held; zeros if none is valid."""
    idx = np.flatnonzero(valid)
    if idx.size == 0:
        return np.zeros_like(values, dtype=np.float64)
    return np.interp(np.arange(len(values)), idx, values[idx])


# --------------------------------------------------------------------------- frame alignment


def _rate(fps: float) -> Fraction:
    f = Fraction(fps).limit_denominator(1_000_000)
    if f <= 0:
        raise ValueError(f"frame rate must be positive, got {fps}")
    return f


def first_rows(num_frames: int, fps: float, row_rate: int, offset_frames: Fraction = Fraction(0),
               rounding: Literal["ceil", "floor"] = "ceil") -> np.ndarray:
    """Row index at time (t + offset_frames)/fps for t = 0..num_frames-1, rounded up or down (exact)."""
    f = _rate(fps)
    num = (np.arange(num_frames, dtype=np.int64) * offset_frames.denominator + offset_frames.numerator) * row_rate * f.denominator
    den = f.numerator * offset_frames.denominator
    return -((-num) // den) if rounding == "ceil" else num // den


def gather_windows(rows: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    """(T, width, D): rows starts[t] .. starts[t]+width-1, indices clamped to the clip (edge padding)."""
    idx = np.clip(starts[:, None] + np.arange(width), 0, len(rows) - 1)
    return rows[idx]


def mean_over_frames(rows: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """(T, D): mean of rows starts[t] .. ends[t]-1 (clamped to the clip; at least one row)."""
    ends = np.maximum(ends, starts + 1)
    last = int(ends.max())
    padded = rows[np.clip(np.arange(last), 0, len(rows) - 1)]
    cs = np.concatenate([np.zeros((1, rows.shape[1])), np.cumsum(padded, axis=0)])
    return (cs[ends] - cs[starts]) / (ends - starts)[:, None]


# ------------------------------------------------------------------------------------ alignment


def frame_count(num_samples: int, sample_rate: int, fps: float) -> int:
    """Video frames covering `num_samples` of audio: round-half-up of duration·fps.

    Exact for integer rates (computed on integers), so e.g. 1.02 s at 25 fps is 26 frames and
    1.0199 s is 25, whatever the float error.
    """
    f = Fraction(fps).limit_denominator(1_000_000)
    return int((2 * num_samples * f.numerator + sample_rate * f.denominator) // (2 * sample_rate * f.denominator))


def resample_audio(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Polyphase resampling (Kaiser-windowed FIR) of mono float samples."""
    from scipy.signal import resample_poly

    from_rate, to_rate = int(from_rate), int(to_rate)
    if from_rate == to_rate or len(samples) == 0:
        return np.asarray(samples, dtype=np.float32)
    g = math.gcd(from_rate, to_rate)
    out = resample_poly(np.asarray(samples, dtype=np.float64), to_rate // g, from_rate // g)
    return out.astype(np.float32)


# ------------------------------------------------------------------------------------ entry


def check_variants(variants: list[str]) -> list[str]:
    """`variants` unchanged, or a ValueError naming the unknown ones (a parameter validator)."""
    bad = [v for v in variants if v not in SHAPES]
    if bad:
        raise ValueError(f"unknown audio feature variant(s) {bad}; choose from {list(SHAPES)}")
    return variants


def audio_features(samples: np.ndarray, sample_rate: int, variant: Variant, *, fps: float = 25.0,
                   num_frames: int | None = None, mel_align: Literal["centre", "start"] = "centre") -> np.ndarray:
    """Features of one clip aligned to video frames: float32 (T, *SHAPES[variant])."""
    if variant not in SHAPES:
        raise ValueError(f"unknown audio feature variant {variant!r}; choose from {sorted(SHAPES)}")
    if not 0 < fps <= ROW_RATE:
        raise ValueError(f"frame rate must be in (0, {ROW_RATE}], got {fps}")
    if variant == "phonetic":
        from .phonetic import phonetic_features

        return phonetic_features(samples, sample_rate, fps=fps, num_frames=num_frames)
    samples = np.asarray(samples, dtype=np.float32)
    t_count = frame_count(len(samples), int(sample_rate), fps) if num_frames is None else int(num_frames)
    if t_count <= 0:
        raise ValueError(f"audio of {len(samples)} samples at {sample_rate} Hz is shorter than half a video frame")
    x = resample_audio(samples, int(sample_rate), SAMPLE_RATE).astype(np.float64)

    if variant == "mel":
        rows = wav2lip_mel_rows(x)
        if mel_align == "centre":
            starts = first_rows(t_count, fps, MEL_RATE, Fraction(1, 2), "floor") - MEL_STEP // 2
        else:
            starts = first_rows(t_count, fps, MEL_RATE, Fraction(0), "floor")
        return gather_windows(rows, starts, MEL_STEP).astype(np.float32)

    starts = first_rows(t_count, fps, ROW_RATE)
    if variant == "mfcc80_window":
        return gather_windows(mfcc80_rows(x), starts - 12, 28).astype(np.float32)
    mfcc, logfbank = mfcc_fbank_rows(x)
    if variant == "mfcc_window":
        return gather_windows(mfcc[:, 1:], starts - 12, 28).astype(np.float32)
    f0, voiced, periodicity = pitch_rows(x)
    if variant == "a2h":
        rows = np.concatenate([mfcc, logfbank, f0[:, None], voiced[:, None]], axis=1)
        return gather_windows(rows, starts, 4).astype(np.float32)
    log_f0 = np.log(np.maximum(f0, 1.0)) * (f0 > 0)
    rows = np.concatenate([mfcc, log_f0[:, None], periodicity[:, None]], axis=1)
    ends = first_rows(t_count + 1, fps, ROW_RATE)[1:]
    return mean_over_frames(rows, starts, ends).astype(np.float32)
