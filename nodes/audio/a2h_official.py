"""The AudioFeatures variant `a2h_official`: Audio2Head's features as its release computes them
(wangsuzhen/Audio2Head `inference.py`): python_speech_features' MFCC and log filterbank and
pyworld's harvest pitch (the real packages, not re-derivations), four 10 ms rows per 25 fps
frame. Imported official Audio2Head checkpoints read these (docs/official-weights.md).
"""
from __future__ import annotations

import numpy as np

SAMPLE_RATE = 16000


def _fill_unvoiced(f0: np.ndarray, voiced: np.ndarray) -> np.ndarray:
    """Unvoiced frames take the pitch linearly interpolated between the voiced frames around
    them; leading/trailing ones hold the nearest voiced value (all-unvoiced audio stays 0)."""
    idx = np.flatnonzero(voiced)
    if len(idx) == 0:
        return f0
    return np.interp(np.arange(len(f0)), idx, f0[idx])


def feature_rows(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """(rows, 41) float64 at 100 rows/s: 13 MFCC, 26 log filterbank energies, F0 (Hz, unvoiced
    frames interpolated) and the voiced flag, from mono 16 kHz audio.

    As the release: the waveform (int16 as ffmpeg writes it; float samples in [-1, 1] are scaled
    by 32768 and rounded) is centred and peak-normalised, then python_speech_features' default
    MFCC / log filterbank (25 ms windows, 10 ms step) and pyworld's harvest (10 ms frames)."""
    import warnings

    import python_speech_features

    with warnings.catch_warnings():  # pyworld 0.3.5 imports the deprecated pkg_resources
        warnings.simplefilter("ignore", UserWarning)
        import pyworld

    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"the official Audio2Head features are defined at 16 kHz, got {sample_rate} Hz (resample first)")
    x = np.asarray(samples)
    if x.ndim != 1:
        raise ValueError(f"mono audio expected, got shape {x.shape}")
    if x.dtype.kind == "f":
        x = np.clip(np.round(x.astype(np.float64) * 32768.0), -32768, 32767)
    x = x.astype(np.float64)
    x = x - x.mean()
    peak = np.abs(x).max()
    if peak == 0:
        raise ValueError("the audio is silent")
    x = x / peak
    mfcc = python_speech_features.mfcc(x, SAMPLE_RATE)
    fbank = python_speech_features.logfbank(x, SAMPLE_RATE)
    f0, _ = pyworld.harvest(x, SAMPLE_RATE, frame_period=10)
    voiced = (f0 != 0.0).astype(np.float64)
    f0 = _fill_unvoiced(f0, voiced)
    n = min(len(mfcc), len(fbank), len(f0))
    return np.concatenate([mfcc[:n], fbank[:n], f0[:n, None], voiced[:n, None]], axis=1)


def frame_features(rows: np.ndarray) -> np.ndarray:
    """(T, 4, 41) float32: four consecutive rows per 25 fps video frame (T = rows // 4)."""
    t = len(rows) // 4
    return rows[:4 * t].reshape(t, 4, rows.shape[1]).astype(np.float32)


def official_frame_features(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """AudioFeatures `a2h_official`: audio at any rate -> 16 kHz int16 (as the release's ffmpeg
    step) -> feature_rows -> (T, 4, 41)."""
    from trainers.data.audio_features import resample_audio

    x = np.asarray(samples, np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1)
    if sample_rate != SAMPLE_RATE:
        x = resample_audio(x, int(sample_rate), SAMPLE_RATE)
    pcm = np.clip(np.round(x.astype(np.float64) * 32768.0), -32768, 32767).astype(np.int16)
    frames = frame_features(feature_rows(pcm, SAMPLE_RATE))
    if len(frames) == 0:
        raise ValueError("the audio is shorter than one video frame (40 ms)")
    return frames
