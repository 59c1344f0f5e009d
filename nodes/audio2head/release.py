"""Audio2Head's released conventions (wangsuzhen/Audio2Head `inference.py` and
`modules/audio2pose.py`), for the `official` mode of imported checkpoints (docs/official-weights.md):
its audio features (python_speech_features + pyworld, the real packages), its pose scaling and
its pose-box drawing. The weight converter is nodes/audio2head/official.py.
"""
from __future__ import annotations

import numpy as np

# The release's head-pose scaling (modules/audio2pose.py): the network's [-1, 1] outputs map
# linearly onto [MIN, MAX]: Rodrigues rotation vector (rad) then translation (mm, camera frame).
POSE_MIN = np.array([-0.639, -0.501, -0.47, -102.6, -32.5, 184.6], np.float32)
POSE_MAX = np.array([0.411, 0.547, 0.433, 159.1, 116.5, 376.5], np.float32)
CANVAS = 256  # the release draws its pose boxes on 256 x 256 whatever the image size
FOCAL = 233.333  # its camera: f = 233.333 px, principal point at (128, 128)
BOX_NEAR_HALF, BOX_FAR_HALF, BOX_FAR_DEPTH = 75.0, 100.0, 100.0  # mm: a square at depth 0, a larger one at depth 100
SAMPLE_RATE = 16000


# --- audio features (python_speech_features + pyworld, as the release's inference.py) ---------


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
    from nodes.io.media import resample_audio

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


# --- pose conventions ---------------------------------------------------------------------------


def denormalize_pose(raw: np.ndarray) -> np.ndarray:
    """The network's [-1, 1] outputs (T, 6) -> (Rodrigues vector, translation in mm)."""
    return (raw + 1) / 2 * (POSE_MAX - POSE_MIN) + POSE_MIN


def _box_points() -> np.ndarray:
    corners = [(-1, -1), (-1, 1), (1, 1), (1, -1), (-1, -1)]
    near = [(sx * BOX_NEAR_HALF, sy * BOX_NEAR_HALF, 0.0) for sx, sy in corners]
    far = [(sx * BOX_FAR_HALF, sy * BOX_FAR_HALF, BOX_FAR_DEPTH) for sx, sy in corners]
    return np.array(near + far, np.float64)


def draw_pose_boxes(pose: np.ndarray) -> np.ndarray:
    """The release's V_S: each pose (rotation vector, translation) projects the two squares
    with cv2.projectPoints on the 256-px camera; the points are truncated to integers and drawn
    as value 255 with 2-px lines on a float canvas (cv2 draws non-8-bit images without
    anti-aliasing): the square outlines and the three connecting edges 1-6, 2-7, 3-8.
    Returns float32 (T, 256, 256) in {0, 255}."""
    import cv2

    camera = np.array([[FOCAL, 0, CANVAS / 2], [0, FOCAL, CANVAS / 2], [0, 0, 1]], np.float64)
    points = _box_points()
    out = np.zeros((len(pose), CANVAS, CANVAS), np.float32)
    for t, p in enumerate(np.asarray(pose)):
        canvas = np.zeros((CANVAS, CANVAS), np.float64)
        rvec = np.array(p[:3], np.float64).reshape(3, 1)  # float32 poses as the release hands them over
        tvec = np.array(p[3:6], np.float64).reshape(3, 1)
        projected, _ = cv2.projectPoints(points, rvec, tvec, camera, np.zeros((4, 1)))
        q = np.int32(projected.reshape(-1, 2))
        cv2.polylines(canvas, [q], True, (255, 255, 255), 2, cv2.LINE_AA)
        for a, b in ((1, 6), (2, 7), (3, 8)):
            cv2.line(canvas, tuple(int(v) for v in q[a]), tuple(int(v) for v in q[b]), (255, 255, 255), 2, cv2.LINE_AA)
        out[t] = canvas
    return out
