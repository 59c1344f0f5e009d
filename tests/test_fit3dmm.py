"""Fit3DMM (HDTF eq. 2): recovery from synthetic landmarks with known ground truth, the real
astronaut photo, chunking, and the node's checks."""
from __future__ import annotations

import numpy as np
import pytest

from graphcore.node import NodeError, RunContext
from nodes.face.camera import project
from nodes.face.fitting import FitSettings, fit_coefficients
from nodes.face.model import load_face_model

ACTIVE = ("jaw_open", "smile_left", "smile_right", "lip_pucker", "lip_funnel", "frown_left", "stretch_right",
          "upper_up_left", "mouth_left", "brow_inner_up", "brow_outer_up_left", "brow_down_right")


@pytest.fixture(scope="module")
def model():
    return load_face_model()


def synthetic(model, n=80, noise=0.3, seed=0, active=ACTIVE, depth=False):
    """Landmarks (n, 478, 3) from known coefficients: smooth, sparse expressions and head motion."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 25.0
    alpha = 0.8 * rng.standard_normal(60)
    beta = np.zeros((n, 33))
    for j, name in enumerate(active):
        k = model.expression_names.index(name)
        phase, freq = rng.uniform(0, 2 * np.pi), rng.uniform(0.3, 1.5)
        beta[:, k] = np.clip(0.9 * np.sin(2 * np.pi * freq * t + phase), 0, None) * (0.9 if j else 1.0)
    pose = np.stack([0.25 * np.sin(1.1 * t), 0.35 * np.sin(0.7 * t + 1), 0.15 * np.sin(0.9 * t + 2),
                     256 + 20 * np.sin(0.5 * t), 260 + 15 * np.cos(0.6 * t), np.log(2.4) + 0.05 * np.sin(t)], 1)
    pts, z = project(model.vertices(alpha, beta), pose)
    lms = np.zeros((n, 478, 3))
    lms[:, :468, :2] = pts
    lms[:, :468, 2] = z - z.mean(1, keepdims=True)
    lms[:, 468:] = lms[:, 468:469]  # iris points: unused by the fit
    lms[..., :2] += rng.normal(0, noise, lms[..., :2].shape)
    return lms.astype(np.float32), alpha, beta, pose


def test_recovers_pose_expression_and_identity_from_synthetic_landmarks(model):
    lms, alpha, beta, pose = synthetic(model)
    res = fit_coefficients(model, lms, FitSettings(chunk=32))
    assert res.expression.shape == (80, 33) and res.pose.shape == (80, 6) and res.shape.shape == (60,)
    assert res.error.mean() < 0.6  # about the landmark noise (0.3 px per axis)
    ang = np.degrees(np.abs(res.pose[:, :3] - pose[:, :3]))
    assert ang.max() < 2.0 and ang.mean() < 0.7, ang.max(0)
    assert np.abs(res.pose[:, 3:5] - pose[:, 3:5]).max() < 2.0
    assert np.abs(res.pose[:, 5] - pose[:, 5]).max() < 0.03
    for name in ACTIVE:
        k = model.expression_names.index(name)
        err = np.abs(res.expression[:, k] - beta[:, k])
        assert err.mean() < 0.08, (name, err.mean())
        assert np.corrcoef(res.expression[:, k], beta[:, k])[0, 1] > 0.95, name
    idle = [k for k, n in enumerate(model.expression_names) if n not in ACTIVE]
    assert np.abs(res.expression[:, idle]).mean() < 0.04
    # identity: the neutral face it describes, in mm (coefficients of weak components may differ)
    shape_err = model.vertices(res.shape) - model.vertices(alpha)
    assert np.sqrt((shape_err[..., :2] ** 2).sum(-1).mean()) < 0.8


def test_depth_weight_makes_depth_only_components_observable(model):
    active = ("jaw_open", "jaw_forward", "smile_left")
    lms, alpha, beta, pose = synthetic(model, n=40, noise=0.0, seed=3, active=active)
    k = model.expression_names.index("jaw_forward")
    flat = fit_coefficients(model, lms, FitSettings())
    deep = fit_coefficients(model, lms, FitSettings(depth_weight=0.5))
    err_flat = np.abs(flat.expression[:, k] - beta[:, k]).mean()
    err_deep = np.abs(deep.expression[:, k] - beta[:, k]).mean()
    assert err_deep < 0.05 and err_deep < 0.5 * err_flat


def test_chunking_and_fixed_identity_give_the_same_fit(model):
    lms, alpha, *_ = synthetic(model, n=30, seed=5)
    shape = fit_coefficients(model, lms).shape
    a = fit_coefficients(model, lms, FitSettings(chunk=7), shape=shape)
    b = fit_coefficients(model, lms, FitSettings(chunk=100), shape=shape)
    np.testing.assert_allclose(a.expression, b.expression, atol=1e-4)
    np.testing.assert_allclose(a.pose, b.pose, atol=1e-4)
    np.testing.assert_array_equal(a.shape, shape)


def test_real_photo_reprojection_error_under_2px(model):
    import mediapipe as mp
    from skimage import data

    img = data.astronaut()
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True) as fm:
        found = fm.process(img).multi_face_landmarks
    assert found, "MediaPipe found no face in the astronaut photo"
    h, w = img.shape[:2]
    lms = np.array([[(p.x * w - 0.5, p.y * h - 0.5, p.z * w) for p in found[0].landmark]], np.float32)
    res = fit_coefficients(model, lms)
    assert res.error[0] < 2.0
    names = model.expression_names
    # she smiles broadly: both smile components are strongly active
    assert res.expression[0, names.index("smile_left")] > 0.4 and res.expression[0, names.index("smile_right")] > 0.4
    assert np.degrees(np.abs(res.pose[0, :3])).max() < 20  # a near-frontal portrait


def _ctx():
    logs = []
    return RunContext("fit", "Fit3DMM", "k", emit=lambda kind, d: logs.append(d)), logs


def test_node_outputs_morph_coeffs_and_reports_bad_input(model):
    from graphcore.types import TYPES
    from nodes.face.fit_nodes import Fit3DMM

    lms, *_ = synthetic(model, n=6, seed=2)
    ctx, logs = _ctx()
    out = Fit3DMM({"image_width": 512, "image_height": 480}).run(ctx, landmarks=lms)
    coeffs = TYPES.get("MorphCoeffs").validate(out["coeffs"])
    assert coeffs.image_size == (480, 512) and coeffs.expression.dtype == np.float32
    np.testing.assert_array_equal(out["error"], coeffs.error)
    assert any("reprojection error" in d.get("message", "") for d in logs)
    # identity from a reference
    again = Fit3DMM({"image_width": 512, "image_height": 480}).run(ctx, landmarks=lms[:2], reference=coeffs)["coeffs"]
    np.testing.assert_array_equal(again.shape, coeffs.shape)
    with pytest.raises(NodeError, match="image size"):
        Fit3DMM({}).run(ctx, landmarks=lms)
    broken = lms.copy()
    broken[3, 10] = np.nan
    with pytest.raises(NodeError, match="frame 3"):
        Fit3DMM({"image_width": 512, "image_height": 512}).run(ctx, landmarks=broken)
    with pytest.raises(NodeError, match="MediaPipe face mesh"):
        Fit3DMM({"image_width": 512, "image_height": 512}).run(ctx, landmarks=lms[:, :68])
