"""Non-verbal motion for the synthetic talker: blinks, pitch-driven brows, head motion.

Everything is sampled per video frame (25 fps by default) and seeded, so a clip is reproducible.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .visemes import frame_times


# --- blinks ------------------------------------------------------------------------------------


def blink_curve(n_frames: int, fps: float, seed: int, rate_per_min: float = 17.0,
                close_s: float = 0.08, open_s: float = 0.17) -> np.ndarray:
    """Eyelid closure per frame in [0, 1] (1 = shut).

    Inter-blink intervals are gamma distributed (shape 3, so blinks are neither regular nor
    bunched; mean 60/rate s, adults blink ~15-20 times a minute); each blink closes quickly and
    opens more slowly (about 100 ms down, 150-200 ms up).
    """
    rng = np.random.default_rng([seed, 0xB1])
    t = frame_times(n_frames, fps)
    out = np.zeros(n_frames, np.float32)
    if rate_per_min <= 0:
        return out
    mean = 60.0 / rate_per_min
    when = rng.uniform(0.3, 1.0) * mean  # the first blink comes sooner than a full interval
    end = n_frames / fps
    while when < end:
        down, up = close_s * rng.uniform(0.8, 1.2), open_s * rng.uniform(0.8, 1.3)
        rise = np.clip((t - (when - down)) / down, 0, 1)
        fall = np.clip(1 - (t - when) / up, 0, 1)
        shape = np.where(t < when, rise, fall)
        out = np.maximum(out, (0.5 - 0.5 * np.cos(np.pi * shape)).astype(np.float32))
        when += rng.gamma(3.0, mean / 3.0) + down + up
    return out


# --- pitch and brows -------------------------------------------------------------------------


def pitch_track(samples: np.ndarray, sample_rate: int, n_frames: int, fps: float = 25.0,
                fmin: float = 70.0, fmax: float = 400.0, voicing: float = 0.45) -> tuple[np.ndarray, np.ndarray]:
    """F0 in Hz per video frame (0 where unvoiced) and the voicing confidence in [0, 1].

    Normalised autocorrelation of a 64 ms Hann window centred on each frame, peak picked between
    1/fmax and 1/fmin with parabolic interpolation; a frame is voiced when the peak exceeds
    `voicing` and the frame is not near-silent.
    """
    win = int(round(0.064 * sample_rate))
    centres = np.round(frame_times(n_frames, fps) * sample_rate).astype(int)
    padded = np.pad(samples.astype(np.float64), (win, win))
    idx = centres[:, None] + win - win // 2 + np.arange(win)[None, :]
    frames = padded[idx] * np.hanning(win)[None, :]
    frames -= frames.mean(axis=1, keepdims=True)
    nfft = 1 << int(np.ceil(np.log2(2 * win)))
    spec = np.fft.rfft(frames, nfft, axis=1)
    ac = np.fft.irfft(np.abs(spec) ** 2, nfft, axis=1)[:, :win]
    # Correct for the window's own autocorrelation so long lags are not penalised.
    w_ac = np.fft.irfft(np.abs(np.fft.rfft(np.hanning(win), nfft)) ** 2, nfft)[:win]
    ac = ac / np.maximum(w_ac[None, :], 1e-9 * w_ac[0])
    energy = ac[:, 0]
    lo, hi = int(sample_rate / fmax), min(int(sample_rate / fmin), win - 2)
    norm = ac[:, lo:hi] / np.maximum(energy[:, None], 1e-12)
    # The first local maximum close to the best one: avoids picking a multiple of the period.
    is_peak = np.zeros_like(norm, dtype=bool)
    is_peak[:, 1:-1] = (norm[:, 1:-1] >= norm[:, :-2]) & (norm[:, 1:-1] > norm[:, 2:])
    best = norm.max(axis=1, keepdims=True)
    good = is_peak & (norm >= 0.85 * best)
    k = np.where(good.any(axis=1), np.argmax(good, axis=1), np.argmax(norm, axis=1))
    peak = norm[np.arange(n_frames), k]
    lag = (k + lo).astype(np.float64)
    inner = (k > 0) & (k < hi - lo - 1)
    a, b, c = (norm[np.arange(n_frames), np.clip(k + o, 0, hi - lo - 1)] for o in (-1, 0, 1))
    denom = a - 2 * b + c
    shift = np.where(inner & (np.abs(denom) > 1e-12), 0.5 * (a - c) / np.where(denom == 0, 1, denom), 0.0)
    f0 = sample_rate / (lag + np.clip(shift, -1, 1))
    loud = energy > 1e-3 * max(float(energy.max()), 1e-12)
    voiced = (peak > voicing) & loud
    return np.where(voiced, f0, 0.0).astype(np.float32), np.clip(np.where(loud, peak, 0.0), 0, 1).astype(np.float32)


def smooth(x: np.ndarray, sigma_frames: float) -> np.ndarray:
    """Gaussian smoothing along time (axis 0), edges held."""
    if sigma_frames <= 0:
        return x
    from scipy.ndimage import gaussian_filter1d

    return gaussian_filter1d(x.astype(np.float64), sigma_frames, axis=0, mode="nearest").astype(np.float32)


def brow_curves(f0: np.ndarray, seed: int, gain: float = 0.5) -> np.ndarray:
    """Brow activations (T, 5) in the order of `visemes.BROW_COMPONENTS`, following pitch.

    Brows rise with pitch accents: the raise follows the positive z-score of log F0 over the
    voiced frames (held through short unvoiced gaps and smoothed over ~120 ms), inner and outer
    raisers together with a seeded per-clip asymmetry; low pitch lowers the brows a little.
    """
    rng = np.random.default_rng([seed, 0xB7])
    voiced = f0 > 0
    out = np.zeros((len(f0), 5), np.float32)
    if voiced.sum() < 3:
        return out
    logf = np.log(np.where(voiced, f0, 1.0))
    mu, sd = logf[voiced].mean(), logf[voiced].std() + 1e-6
    z = np.where(voiced, (logf - mu) / sd, 0.0)
    raise_ = smooth(np.clip(z - 0.3, 0, 2.5) / 2.5, 3.0)
    lower = smooth(np.clip(-z - 1.0, 0, 2.0) / 2.0, 3.0)
    left, right = 1.0 + rng.uniform(-0.2, 0.2, size=2)
    out[:, 0], out[:, 1] = 0.4 * gain * lower * left, 0.4 * gain * lower * right
    out[:, 2] = gain * raise_
    out[:, 3], out[:, 4] = 0.8 * gain * raise_ * left, 0.8 * gain * raise_ * right
    return out


# --- head motion -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class HeadMotion:
    """Stationary standard deviations of the head-pose deltas and their correlation time.

    Rotations in radians (pitch, yaw, roll), translations as a fraction of the face size and
    scale as a log factor. The defaults (about 2.5 deg pitch, 3.5 deg yaw, 1.5 deg roll, 1.5 %
    translation) are in the range of frontal talking-head footage such as HDTF, and small enough
    that warping one portrait stays artefact free.
    """

    std: tuple[float, ...] = (0.045, 0.06, 0.026, 0.015, 0.012, 0.01)
    tau_s: float = 1.2  # Ornstein–Uhlenbeck correlation time
    nod_gain: float = 0.02  # extra pitch (rad) nodding with loudness


def ou_process(n: int, dt: float, tau: float, std: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Exact discretisation of d x = -x/tau dt + sigma dW, started from its stationary law."""
    std = np.asarray(std, np.float64)
    a = np.exp(-dt / tau)
    innov = std * np.sqrt(1 - a * a)
    from scipy.signal import lfilter

    drive = rng.standard_normal((n, len(std))) * innov
    drive[0] = rng.standard_normal(len(std)) * std
    return lfilter([1.0], [1.0, -a], drive, axis=0)  # x[i] = a x[i-1] + drive[i]


def head_motion(n_frames: int, fps: float, seed: int, face_size: float, loudness: np.ndarray | None = None,
                motion: HeadMotion = HeadMotion(), amplitude: float = 1.0) -> np.ndarray:
    """Head-pose deltas (T, 6): pitch, yaw, roll (rad), tx, ty (pixels), log-scale.

    An Ornstein–Uhlenbeck process per axis (mean-reverting random wander), smoothed with a 80 ms
    Gaussian so velocities are continuous too; with `loudness` (per frame, 0..1) the head also
    dips slightly on stressed syllables.
    """
    rng = np.random.default_rng([seed, 0x4EAD])
    std = np.asarray(motion.std, np.float64) * amplitude
    x = ou_process(n_frames, 1.0 / fps, motion.tau_s, std, rng)
    x = smooth(x, 0.08 * fps).astype(np.float64)
    if loudness is not None and motion.nod_gain > 0:
        ll = np.asarray(loudness, np.float64)
        x[:, 0] += amplitude * motion.nod_gain * smooth(ll - ll.mean(), 0.1 * fps)
    x[:, 3:5] *= face_size
    return x.astype(np.float32)


def loudness_curve(samples: np.ndarray, sample_rate: int, n_frames: int, fps: float = 25.0) -> np.ndarray:
    """RMS loudness per video frame, normalised to [0, 1] by the clip's 95th percentile."""
    hop = sample_rate / fps
    edges = np.round(np.arange(n_frames + 1) * hop).astype(int)
    sq = np.concatenate([[0.0], np.cumsum(samples.astype(np.float64) ** 2)])
    edges = np.clip(edges, 0, len(samples))
    counts = np.maximum(np.diff(edges), 1)
    rms = np.sqrt((sq[edges[1:]] - sq[edges[:-1]]) / counts)
    ref = np.percentile(rms, 95) if rms.size else 0.0
    return np.clip(rms / max(ref, 1e-9), 0, 1).astype(np.float32)
