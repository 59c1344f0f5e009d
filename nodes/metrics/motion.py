"""Accuracy of generated animation parameters (HDTF Table 3)."""
from __future__ import annotations

import numpy as np


def mse(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean((np.asarray(pred, np.float64) - np.asarray(truth, np.float64)) ** 2))


def sequence_ssim(pred: np.ndarray, truth: np.ndarray, c1: float = 1e-4, c2: float = 9e-4) -> float:
    """HDTF eq. 5 on whole sequences (T, D): SSIM of each dimension's time series, averaged."""
    p, t = np.asarray(pred, np.float64), np.asarray(truth, np.float64)
    mp, mt = p.mean(0), t.mean(0)
    vp, vt = p.var(0), t.var(0)
    cov = ((p - mp) * (t - mt)).mean(0)
    s = ((2 * mp * mt + c1) * (2 * cov + c2)) / ((mp**2 + mt**2 + c1) * (vp + vt + c2))
    return float(s.mean())


def canonical_correlations(x: np.ndarray, y: np.ndarray, reg: float = 1e-6) -> np.ndarray:
    """Canonical correlations between two multivariate series (T, Dx), (T, Dy), largest first
    (Hotelling): the singular values of Cxx^-1/2 Cxy Cyy^-1/2. Dimensions that do not vary are
    dropped; `reg` (relative to the mean variance) keeps the whitening well-posed."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    x = x[:, x.std(0) > 1e-12] - x.mean(0)[x.std(0) > 1e-12]
    y = y[:, y.std(0) > 1e-12] - y.mean(0)[y.std(0) > 1e-12]
    if x.shape[1] == 0 or y.shape[1] == 0:
        return np.zeros(0)
    n = len(x)

    def inv_sqrt(c: np.ndarray) -> np.ndarray:
        c = c + reg * np.trace(c) / len(c) * np.eye(len(c))
        vals, vecs = np.linalg.eigh(c)
        return vecs @ np.diag(1 / np.sqrt(np.maximum(vals, 1e-300))) @ vecs.T

    m = inv_sqrt(x.T @ x / n) @ (x.T @ y / n) @ inv_sqrt(y.T @ y / n)
    return np.clip(np.linalg.svd(m, compute_uv=False), 0.0, 1.0)


def cca_score(pred: np.ndarray, truth: np.ndarray) -> float:
    """The mean canonical correlation between generated and real head-pose sequences."""
    c = canonical_correlations(pred, truth)
    return float(c.mean()) if c.size else 0.0


def lip_landmark_distance(face_model, shape: np.ndarray, pred_expression: np.ndarray, true_expression: np.ndarray) -> float:
    """LMD^3D: mean Euclidean distance (model units, mm) between the lip vertices of the 3-D
    mesh built with the generated and the real expression — pose-free by construction."""
    lips = face_model.regions["lips"]
    vp = face_model.vertices(shape, pred_expression)[:, lips]
    vt = face_model.vertices(shape, true_expression)[:, lips]
    return float(np.linalg.norm(vp - vt, axis=-1).mean())
