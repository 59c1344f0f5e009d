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


def pitch_track(samples: np.ndarray, sample_rate: int, n_frames: int, fps: float = 25.0) -> tuple[np.ndarray, np.ndarray]:
    """F0 in Hz per video frame (0 where unvoiced) and the voiced fraction of the frame in [0, 1].

    The YIN pitch rows of trainers/data/audio_features.py (100 per second); a video frame is voiced when
    at least half of the rows centred inside it are, and its F0 is their mean.
    """
    from trainers.data.audio_features import ROW_RATE, SAMPLE_RATE, first_rows, mean_over_frames, pitch_rows, resample_audio

    x = resample_audio(np.asarray(samples, np.float32), int(sample_rate), SAMPLE_RATE).astype(np.float64)
    f0, voiced, _ = pitch_rows(x)
    starts = first_rows(n_frames + 1, fps, ROW_RATE)
    rows = np.stack([f0 * voiced, voiced], axis=1)
    mean = mean_over_frames(rows, starts[:-1], starts[1:])
    frac = mean[:, 1]
    f0_frame = np.where(frac >= 0.5, mean[:, 0] / np.maximum(frac, 1e-9), 0.0)
    return f0_frame.astype(np.float32), frac.astype(np.float32)


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
