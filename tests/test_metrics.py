"""Evaluation metrics against independent computations and known cases."""
from __future__ import annotations

import numpy as np
import pytest

from nodes.metrics.image_quality import cpbd, frame_metrics, psnr, ssim
from nodes.metrics.motion import canonical_correlations, cca_score, lip_landmark_distance, mse, sequence_ssim


def test_psnr_ssim_known_values():
    a = np.full((32, 32, 3), 100, np.uint8)
    b = a.copy()
    b[0, 0, 0] = 110
    assert psnr(a, a) == float("inf")
    assert psnr(a, b) == pytest.approx(10 * np.log10(255**2 / (100 / (32 * 32 * 3))))
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
    assert ssim(img, img) == pytest.approx(1.0)
    noisy = np.clip(img + rng.normal(0, 30, img.shape), 0, 255).astype(np.uint8)
    assert 0 < ssim(img, noisy) < 0.97
    m = frame_metrics(np.stack([img, img]), np.stack([img, noisy]))
    assert set(m) == {"psnr", "ssim", "cpbd"}


def test_cpbd_ranks_sharp_above_blurred():
    import cv2
    from skimage import data

    img = data.camera()
    scores = [cpbd(cv2.GaussianBlur(img, (0, 0), s) if s else img) for s in (0, 0.8, 1.6)]
    assert scores[0] > scores[1] > scores[2] > 0 and scores[0] <= 1
    assert cpbd(np.full((128, 128), 7, np.uint8)) == 0.0  # no edges, nothing to judge


def test_canonical_correlations_against_linear_mixtures():
    rng = np.random.default_rng(2)
    z = rng.normal(size=(500, 2))
    x = z @ rng.normal(size=(2, 3)) + 0.01 * rng.normal(size=(500, 3))
    y = z @ rng.normal(size=(2, 4)) + 0.01 * rng.normal(size=(500, 4))
    c = canonical_correlations(x, y)
    assert c[0] > 0.99 and c[1] > 0.99 and c[2] < 0.3
    indep = canonical_correlations(rng.normal(size=(2000, 3)), rng.normal(size=(2000, 3)))
    assert indep.max() < 0.15
    full = rng.normal(size=(300, 4))
    assert cca_score(full, full) == pytest.approx(1.0, abs=1e-4)


def test_sequence_metrics():
    rng = np.random.default_rng(3)
    t = rng.normal(size=(50, 5))
    assert sequence_ssim(t, t) == pytest.approx(1.0)
    assert sequence_ssim(t + 5, 5 - t) < 0  # anti-correlated around the same positive mean
    assert mse(t, t + 0.5) == pytest.approx(0.25)


def test_lip_distance_uses_the_lip_vertices():
    from nodes.face.model import load_face_model

    model = load_face_model()
    shape = np.zeros(60, np.float32)
    closed = np.zeros((3, 33), np.float32)
    opened = closed.copy()
    opened[:, 0] = 1.0  # jaw_open moves the lower lip
    brows = closed.copy()
    brows[:, 30] = 1.0  # brow_inner_up does not touch the lips
    assert lip_landmark_distance(model, shape, closed, closed) == 0.0
    assert lip_landmark_distance(model, shape, opened, closed) > 2.0  # millimetres
    assert lip_landmark_distance(model, shape, brows, closed) < 0.1 * lip_landmark_distance(model, shape, opened, closed)
