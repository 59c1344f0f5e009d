"""Lip-sync measures: the lip gap of a face (MediaPipe landmarks or the 3DMM) and its correlation.

The issue's metric: Pearson correlation between the inner-lip gap of a generated video and
the truth's lip gap, frame by frame. The gap is the distance between MediaPipe landmarks 13
(upper inner lip, centre) and 14 (lower inner lip, centre) divided by the outer eye-corner
distance (33-263), so head distance and image size cancel.
"""
from __future__ import annotations

import numpy as np

UPPER_INNER_LIP, LOWER_INNER_LIP, EYE_RIGHT, EYE_LEFT = 13, 14, 33, 263


def landmark_lip_gap(landmarks: np.ndarray) -> np.ndarray:
    """(T,) normalised inner-lip gap of MediaPipe landmarks (T, 478, 2|3); NaN where missing."""
    lm = np.asarray(landmarks, np.float64)[..., :2]
    gap = np.linalg.norm(lm[:, UPPER_INNER_LIP] - lm[:, LOWER_INNER_LIP], axis=-1)
    return gap / np.linalg.norm(lm[:, EYE_RIGHT] - lm[:, EYE_LEFT], axis=-1)


def model_lip_gap(mouth: np.ndarray, face_model=None, rest: np.ndarray | None = None) -> np.ndarray:
    """(T,) the same gap on the 3DMM's mean face driven by mouth curves (T, 28), added to `rest` (28,)
    the way the synthetic generator combines them (`nodes.synth.animate.combine_mouth`)."""
    from nodes.face.model import N_EXPRESSION, N_SHAPE, load_face_model
    from nodes.synth.animate import combine_mouth

    fm = face_model or load_face_model()
    mouth = np.asarray(mouth, np.float32)
    expression = np.zeros((len(mouth), N_EXPRESSION), np.float32)
    expression[:, :mouth.shape[1]] = combine_mouth(np.zeros(mouth.shape[1], np.float32) if rest is None else rest, mouth)
    v = fm.vertices(np.zeros(N_SHAPE, np.float32), expression)
    return landmark_lip_gap(v)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation over the frames both have (NaN frames dropped; 0 when one is constant)."""
    n = min(len(a), len(b))
    a, b = np.asarray(a, np.float64)[:n], np.asarray(b, np.float64)[:n]
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if len(a) < 3 or a.std() < 1e-12 or b.std() < 1e-12:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])
