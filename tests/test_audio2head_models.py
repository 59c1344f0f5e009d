"""Audio2Head architectures: tiny forward shapes, window stitching, pose conventions, the TPS
Jacobian and the pose SSIM (parameter counts: tests/test_model_registry.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from audio2head_helpers import one_thread  # noqa: F401 (autouse fixture)

from nodes.audio2head.motion_field import crossfade_weights, predict_windows, stitch, window_starts
from nodes.model_registry import create_model


def test_tiny_shapes():
    torch.manual_seed(0)
    pair = create_model("keypoint_autoencoder", "tiny").eval()
    det, ren = pair.detector, pair.renderer
    hm, mf = create_model("head_motion", "tiny").eval(), create_model("motion_field", "tiny").eval()
    img = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        kp = det(img)
        assert kp["value"].shape == (2, 10, 2) and kp["jacobian"].shape == (2, 10, 2, 2)
        assert kp["value"].abs().max() <= 1
        torch.testing.assert_close(kp["jacobian"], torch.eye(2).expand(2, 10, 2, 2))  # identity at initialisation
        out = ren(img, kp, det(img.flip(0)))
        assert out["prediction"].shape == (2, 3, 64, 64) and out["occlusion_map"].shape == (2, 1, 16, 16)
        assert out["mask"].shape == (2, 11, 16, 16)
        poses = hm(img, torch.randn(2, 7, 4, 41))
        assert poses.shape == (2, 8, 6)
        t, s = mf.cfg.window, mf.cfg.size
        field = mf(img, torch.randn(2, t, 4, 41), torch.rand(2, t, s, s))
        assert field["value"].shape == (2, t, 10, 2) and field["jacobian"].shape == (2, t, 10, 2, 2)
        assert field["heatmap"].shape == (2, t, 10, s - 2, s - 2)


def test_head_motion_audio_encoder_in_chunks_gives_the_same_poses(monkeypatch):
    """A long clip's audio goes through N_H's CNN a chunk at a time (flat memory): the same
    bytes as one pass."""
    from nodes.audio2head import head_motion

    torch.manual_seed(0)
    hm = create_model("head_motion", "tiny").eval()
    img, audio = torch.rand(1, 3, 64, 64), torch.randn(1, 40, 4, 41)
    with torch.no_grad():
        monkeypatch.setattr(head_motion, "ENCODER_CHUNK", 7)
        chunked = hm(img, audio)
        monkeypatch.setattr(head_motion, "ENCODER_CHUNK", 10**6)
        whole = hm(img, audio)
    assert torch.equal(chunked, whole)


def test_renderer_with_equal_keypoints_is_close_to_identity_motion():
    pair = create_model("keypoint_autoencoder", "tiny").eval()
    det, ren = pair.detector, pair.renderer
    img = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        kp = det(img)
        out = ren(img, kp, kp)
    # T_k(z) = p + J J^-1 (z - p) = z: every candidate motion is the identity, whatever the masks
    from nodes.audio2head.blocks import coordinate_grid

    torch.testing.assert_close(out["deformation"][0], coordinate_grid(16, 16), atol=1e-5, rtol=0)


def test_window_starts_cover_every_frame():
    for n in (1, 31, 32, 33, 47, 100, 129):
        starts = window_starts(n, 32, 16)
        covered = np.zeros(max(n, 32), bool)
        for s in starts:
            covered[s:s + 32] = True
        assert covered[:n].all() and starts[0] == 0 and starts[-1] + 32 >= n


def test_crossfade_weights_sum_to_one():
    n, window = 100, 32
    starts = window_starts(n, window, 16)
    w = crossfade_weights(n, window, starts)
    total = np.zeros(n)
    for i, s in enumerate(starts):
        total[s:s + window] += w[i][: n - s]
    np.testing.assert_allclose(total, 1.0)


def test_stitching_is_continuous_across_window_boundaries():
    # every window predicts a different constant: the stitched track must ramp, never jump
    n, window, hop = 150, 32, 16
    starts = window_starts(n, window, hop)
    per_window = np.stack([np.full((window, 1), float(i * 10)) for i in range(len(starts))])
    out = stitch(per_window, starts, n)[:, 0]
    steps = np.abs(np.diff(out))
    assert steps.max() <= 2 * 10 / (hop + 1) + 1e-4  # a level change of 10 is spread over the overlap
    np.testing.assert_allclose(out[:hop // 2], 0.0)  # first window alone at the start
    np.testing.assert_allclose(out[-2:], 10.0 * (len(starts) - 1))


def test_predict_windows_any_length_and_matches_single_window():
    torch.manual_seed(0)
    mf = create_model("motion_field", "tiny").eval()
    t, s = mf.cfg.window, mf.cfg.size
    ref = torch.rand(1, 3, 64, 64)
    rng = np.random.default_rng(0)
    audio, boxes = rng.normal(size=(70, 4, 41)).astype(np.float32), rng.random((70, s, s)).astype(np.float32)
    out = predict_windows(mf, ref, audio, boxes)
    assert out["value"].shape == (70, 10, 2) and out["jacobian"].shape == (70, 10, 2, 2)
    with torch.no_grad():
        first = mf(ref, torch.from_numpy(audio[None, :t]), torch.from_numpy(boxes[None, :t]))["value"][0].numpy()
    np.testing.assert_allclose(out["value"][: t // 2], first[: t // 2], atol=1e-5)  # only the first window there
    short = predict_windows(mf, ref, audio[:5], boxes[:5])
    assert short["value"].shape == (5, 10, 2)


def test_pose_conversions_round_trip_and_box_follows_the_head():
    from nodes.audio2head.pose import camera_pose_from_morph, draw_pose_boxes, morph_pose_from_camera, project_box

    morph = np.array([[0.1, -0.2, 0.05, 140.0, 120.0, np.log(1.3)], [0.0, 0.0, 0.0, 127.5, 127.5, np.log(1.0)]], np.float32)
    cam = camera_pose_from_morph(morph, (256, 256))
    np.testing.assert_allclose(morph_pose_from_camera(cam, (256, 256)), morph, rtol=1e-5, atol=1e-4)
    assert np.allclose(cam[1, 3:5], 0) and cam[1, 5] > cam[0, 5]  # centred; the smaller face is farther away
    centre = project_box(cam, (256, 256)).mean(1)
    assert abs(centre[1, 0] - 127.5) < 1 and centre[0, 0] > centre[1, 0]  # the box moves with tx
    boxes = draw_pose_boxes(cam, (256, 256), 32)
    assert boxes.shape == (2, 32, 32) and boxes.dtype == np.float32 and 0 < boxes.max() <= 1
    assert not np.allclose(boxes[0], boxes[1])
    with pytest.raises(ValueError):
        morph_pose_from_camera(np.zeros((1, 6), np.float32), (256, 256))


def test_tps_jacobian_matches_autograd():
    from nodes.audio2head.losses import RandomTPS

    tps = RandomTPS(2, sigma_affine=0.1, sigma_tps=0.05, generator=torch.Generator().manual_seed(1))
    xy = (torch.rand(2, 6, 2) * 2 - 1).requires_grad_(True)
    out = tps.warp(xy)
    rows = [torch.autograd.grad(out[..., i].sum(), xy, retain_graph=True)[0] for i in range(2)]
    torch.testing.assert_close(tps.jacobian(xy.detach()), torch.stack(rows, -2), atol=1e-5, rtol=1e-4)


def test_equivariance_is_zero_for_consistent_keypoints():
    from nodes.audio2head.losses import RandomTPS, equivariance_losses

    tps = RandomTPS(1, generator=torch.Generator().manual_seed(2))
    p_w = torch.rand(1, 4, 2) * 1.6 - 0.8
    j_w = torch.eye(2).expand(1, 4, 2, 2)
    kp = {"value": tps.warp(p_w), "jacobian": tps.jacobian(p_w) @ j_w}
    value, jac = equivariance_losses(kp, {"value": p_w, "jacobian": j_w}, tps)
    assert value.item() < 1e-6 and jac.item() < 1e-5


def test_pose_ssim_loss():
    from nodes.audio2head.losses import pose_ssim_loss

    x = torch.randn(2, 64, 6)
    assert pose_ssim_loss(x, x).item() == pytest.approx(0.0, abs=1e-6)
    assert pose_ssim_loss(x, -x).item() > 1.0  # anti-correlated
    assert pose_ssim_loss(x, x, window=None).item() == pytest.approx(0.0, abs=1e-6)


def test_head_pose_drives_morph_coeffs():
    from graphcore.node import NodeError, RunContext
    from nodes.audio2head.a2h_nodes import HeadPoseToMorphCoeffs
    from nodes.audio2head.pose import camera_pose_from_morph
    from nodes.types import MorphCoeffs

    ctx = RunContext(node_id="n", node_type="n", key="k")
    ref = MorphCoeffs(np.zeros(60, np.float32), np.full((1, 33), 0.1, np.float32),
                      np.array([[0.05, 0.0, 0.0, 130.0, 120.0, np.log(1.2)]], np.float32), np.zeros(1, np.float32), (256, 256))
    cam = camera_pose_from_morph(np.array([[0.0, 0.1, 0.0, 128.0, 128.0, 0.0], [0.1, 0.2, 0.0, 140.0, 128.0, 0.1]], np.float32), (256, 256))
    rel = HeadPoseToMorphCoeffs().run(ctx, coeffs=ref, pose=cam)["coeffs"]
    assert rel.pose.shape == (2, 6) and rel.expression.shape == (2, 33)
    np.testing.assert_allclose(rel.pose[0], ref.pose[0], atol=1e-4)  # starts at the portrait's pose
    np.testing.assert_allclose(rel.pose[1, :3] - rel.pose[0, :3], [0.1, 0.1, 0.0], atol=1e-6)
    assert rel.pose[1, 3] > rel.pose[0, 3] and rel.pose[1, 5] > rel.pose[0, 5]  # moved right, came nearer
    absolute = HeadPoseToMorphCoeffs({"mode": "absolute"}).run(ctx, coeffs=ref, pose=cam)["coeffs"]
    np.testing.assert_allclose(absolute.pose[:, 3], [128.0, 140.0], atol=1e-3)
    with pytest.raises(NodeError, match="3 coefficient frames but 2 head poses"):
        three = MorphCoeffs(ref.shape, np.zeros((3, 33), np.float32), np.repeat(ref.pose, 3, 0), np.zeros(3, np.float32), (256, 256))
        HeadPoseToMorphCoeffs().run(ctx, coeffs=three, pose=cam)


def test_relative_motion_moves_the_source_keypoints_by_the_driving_motion():
    """FOMM's relative motion: a constant offset and a constant linear distortion of the driving
    keypoints cancel; their motion since the first frame is applied to the source keypoints."""
    from nodes.audio2head.inference import relative_keypoints
    from nodes.types import Keypoints

    rng = np.random.default_rng(0)
    src = Keypoints(rng.uniform(-0.5, 0.5, (1, 10, 2)).astype(np.float32),
                    np.tile(np.eye(2, dtype=np.float32), (1, 10, 1, 1)) + 0.1 * rng.standard_normal((1, 10, 2, 2)).astype(np.float32))
    motion = np.cumsum(0.01 * rng.standard_normal((6, 10, 2)), 0).astype(np.float32)
    motion -= motion[:1]
    rot = np.array([[np.cos(0.2), -np.sin(0.2)], [np.sin(0.2), np.cos(0.2)]], np.float32)
    jac = np.stack([np.linalg.matrix_power(rot, t) for t in range(6)])[:, None] @ (1.3 * np.eye(2, dtype=np.float32))
    drv = Keypoints(src.value + 0.2 + motion, np.broadcast_to(jac, (6, 10, 2, 2)).astype(np.float32))
    rel = relative_keypoints(drv, src)
    np.testing.assert_allclose(rel.value, src.value + motion, atol=1e-6)
    want = np.stack([np.linalg.matrix_power(rot, t) for t in range(6)])[:, None] @ src.jacobian
    np.testing.assert_allclose(rel.jacobian, want, atol=1e-5)
