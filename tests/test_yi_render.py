"""Render3DMM pieces: z-buffer coverage and interpolation on a known triangle, normals, SH
lighting recovery, appearance fitting on rendered frames, key frames and background matching."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nodes.yi import render3dmm as r3


def test_known_triangle_coverage_and_interpolation():
    from nodes.face.raster import rasterize

    # front-facing (positive signed area in x right / y down) triangle
    pts = torch.tensor([[[2.0, 2.0], [17.0, 4.0], [6.0, 15.0]]])
    tri = torch.tensor([[0, 1, 2]])
    frags = rasterize(pts, torch.zeros(1, 3), tri, 20, 20)
    ys, xs = np.mgrid[0:20, 0:20]
    p = pts[0].numpy()

    def edge(a, b):
        return (b[0] - a[0]) * (ys - a[1]) - (b[1] - a[1]) * (xs - a[0])

    inside = (edge(p[0], p[1]) >= 0) & (edge(p[1], p[2]) >= 0) & (edge(p[2], p[0]) >= 0)
    cov = frags.covered[0].numpy()
    # pixels strictly inside are covered; only pixels within a hair of an edge may differ
    assert (cov == inside).mean() > 0.98 and cov[inside].mean() > 0.97
    # barycentric interpolation of x reproduces the pixel's column exactly
    attr = torch.cat([pts, torch.ones(1, 3, 1)], -1)  # (x, y, 1)
    vals = r3._per_fragment(frags, tri, attr)
    assert torch.allclose(vals[:, 0], frags.col.float(), atol=1e-4)
    assert torch.allclose(vals[:, 1], frags.row.float(), atol=1e-4)
    assert torch.allclose(vals[:, 2], torch.ones(len(vals)), atol=1e-5)


def test_vertex_normals_face_the_camera():
    # a triangle in the image plane, front-facing: its normal points to -z (towards the camera)
    v = torch.tensor([[[0.0, 0.0, 5.0], [10.0, 0.0, 5.0], [0.0, 10.0, 5.0]]])
    n = r3.vertex_normals(v, torch.tensor([[0, 1, 2]]))
    assert torch.allclose(n, torch.tensor([0.0, 0.0, -1.0]).expand(1, 3, 3))


def test_sh_lighting_fit_recovers_known_coefficients():
    torch.manual_seed(0)
    n = torch.nn.functional.normalize(torch.randn(2000, 3), dim=1)
    n[:, 2] = -n[:, 2].abs()  # the visible hemisphere only, as from one camera
    gamma = torch.randn(3, 9) * 0.2
    gamma[:, 0] += 0.8
    albedo = torch.rand(2000, 3) * 0.5 + 0.3
    colours = albedo * r3.shading(n, gamma)
    fitted = r3.fit_sh_lighting(n, colours, albedo)
    assert torch.allclose(fitted, gamma, atol=1e-3)


@pytest.fixture(scope="module")
def toy_clip():
    from yi_data import toy_coeffs, toy_frames

    from nodes.face.model import load_face_model

    model = load_face_model()
    coeffs, _ = toy_coeffs(24, 96, np.random.default_rng(1))
    frames = toy_frames(model, coeffs, np.array([0.8, 0.6, 0.5]), np.array([0.2, 0.4, 0.3]), 96)
    return model, coeffs, frames


def test_fitted_appearance_reproduces_the_frames(toy_clip):
    from yi_data import GAMMA

    model, coeffs, frames = toy_clip
    app = r3.fit_appearance(model, frames, coeffs, max_frames=6)
    assert app.reference_frame == r3.select_reference(coeffs.expression, coeffs.pose)
    # albedo x shading is only defined up to a scale per channel, and low-frequency albedo and
    # lighting trade off (the lips): the dominant (frontal) light term must come back
    g, g0 = app.gamma / app.gamma[:, :1], GAMMA / GAMMA[:, :1]
    assert np.abs(g[:, 2] - g0[:, 2]).max() < 0.12 and np.abs(g[:, 3] - g0[:, 3]).max() < 0.05, g
    bg = torch.as_tensor(frames[:8] / 255.0, dtype=torch.float32)
    for albedo, tol in (("detailed", 0.03), ("low", 0.05)):  # the low-frequency albedo blurs the lips
        out, cov = r3.FaceRenderer(model, app, albedo).render(coeffs.shape, coeffs.expression[:8], coeffs.pose[:8], 96, 96)
        err = (out.numpy() - bg.numpy())[cov.numpy()]
        assert np.abs(err).mean() < tol, (albedo, np.abs(err).mean())


def test_key_frames_are_the_head_turns():
    t = np.arange(100)
    pose = np.zeros((100, 6))
    pose[:, 1] = np.sin(t / 100 * 4 * np.pi)  # two left and two right turns
    keys = r3.key_frames(pose, window=25, axis=1)
    assert keys[0] == 0 and keys[-1] == 99
    inner = keys[1:-1]
    assert sorted(int(np.argmin(np.abs(inner - k))) for k in (12, 37, 62, 87)) == [0, 1, 2, 3]
    assert all(np.abs(inner - k).min() <= 1 for k in (12, 37, 62, 87))


def test_background_plan_matches_and_interpolates():
    size = (64, 64)
    target_pose = np.zeros((5, 6), np.float32)
    target_pose[:, 1] = [-0.3, -0.1, 0.0, 0.1, 0.3]
    frames = np.stack([np.full((64, 64, 3), 50 * i, np.uint8) for i in range(5)])
    gen = np.zeros((21, 6), np.float32)
    gen[:, 1] = 0.29 * np.sin(np.linspace(0, np.pi, 21))  # right turn peaking at frame 10
    plan = r3.plan_backgrounds(gen, target_pose, size, window=21)
    assert list(plan.keys) == [0, 10, 20] and list(plan.matches) == [2, 4, 2]
    np.testing.assert_allclose(plan.pose[10, 1], 0.3, atol=1e-6)  # the key frame takes the matched pose
    bg = r3.background_frames(plan, frames, slice(0, 21))
    assert bg[5, 0, 0, 0] == pytest.approx((100 + 200) / 2 / 255.0)  # halfway between key backgrounds
    # training mode: a frame may not match itself
    exclude = np.eye(5, dtype=bool)
    plan = r3.plan_backgrounds(target_pose, target_pose, size, window=3, fit_pose=False, exclude=exclude)
    assert all(m != k for k, m in zip(plan.keys, plan.matches))
