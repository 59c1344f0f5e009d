"""DenseFlowBuilder (HDTF §4.2 F_app): analytic flows for rigid in-plane motion, the regions,
the rasteriser against brute force, and warping moving points where the model says."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from graphcore.node import NodeError, RunContext
from graphcore.stream import run_whole
from nodes.face.flow import REGION_LEVELS, Coefficients, FlowBuilder, FlowSettings
from nodes.face.model import load_face_model

H = W = 256


@pytest.fixture(scope="module")
def model():
    return load_face_model()


def coeffs(pose, expression=None, shape=None):
    pose = np.atleast_2d(np.asarray(pose, np.float32))
    exp = np.zeros((len(pose), 33), np.float32) if expression is None else np.asarray(expression, np.float32)
    return Coefficients(np.zeros(60, np.float32) if shape is None else shape, exp, pose)


REF_POSE = [0.05, -0.1, 0.02, 128.0, 118.0, np.log(0.85)]


def level(regions, code):
    return np.isclose(regions, REGION_LEVELS[code])


def test_pure_translation_moves_everything_but_the_background(model):
    drv_pose = np.tile(REF_POSE, (3, 1))
    drv_pose[:, 3] += [0.0, 6.0, -3.5]
    drv_pose[:, 4] += [0.0, -2.0, 4.25]
    flow, regions = FlowBuilder(model).build(coeffs(REF_POSE), coeffs(drv_pose), H, W)
    assert flow.shape == (3, H, W, 2) and flow.dtype == np.float32 and regions.shape == (3, H, W)
    for t in range(3):
        expected = -(drv_pose[t, 3:5] - np.array(REF_POSE[3:5]))  # backward: where the pixel came from
        moving = regions[t] > 0
        for code in (1, 2, 3):  # torso, head-related, inner face all present
            assert level(regions[t], code).sum() > 200, (t, code)
        np.testing.assert_allclose(flow[t][moving], np.broadcast_to(expected, flow[t][moving].shape), atol=2e-3)
        assert not flow[t][~moving].any()  # background untouched


def test_in_plane_rotation_matches_the_analytic_flow(model):
    theta = 0.25
    drv_pose = np.array(REF_POSE, np.float64)
    drv_pose[2] += theta  # roll about the model origin, which projects to (tx, ty)
    flow, regions = FlowBuilder(model).build(coeffs(REF_POSE), coeffs(drv_pose), H, W)
    flow, regions = flow[0], regions[0]
    yy, xx = np.mgrid[:H, :W].astype(np.float64)
    c = np.array(REF_POSE[3:5])
    back = np.array([[np.cos(theta), np.sin(theta)], [-np.sin(theta), np.cos(theta)]])  # R(-theta)
    pix = np.stack([xx, yy], -1)
    analytic = (pix - c) @ back.T + c - pix
    face = level(regions, 3)
    assert face.sum() > 5000
    np.testing.assert_allclose(flow[face], analytic[face], atol=2e-3)
    # A head-related pixel x carries the flow of a face pixel q; the rotation's flow is an
    # invertible affine map of q, so q can be read back from the flow and must be (about) the
    # nearest face pixel: the chamfer transform's distances are within ~2% of Euclidean and it
    # runs on a 2x coarser grid (q within ~2 px of the exact nearest face pixel).
    from scipy.ndimage import distance_transform_edt

    head = level(regions, 2)
    assert head.sum() > 2000
    dist = distance_transform_edt(~face)
    q = (flow[head] @ np.linalg.inv(back - np.eye(2)).T) + c  # solves flow = (back - I)(q - c)
    qi = np.round(q).astype(int)
    assert face[qi[:, 1], qi[:, 0]].mean() > 0.99  # q is a face (edge) pixel
    pix_head = np.stack([xx[head], yy[head]], -1)
    assert (np.linalg.norm(q - pix_head, axis=1) <= 1.03 * dist[head] + 3.0).all()
    torso = level(regions, 1)
    np.testing.assert_allclose(flow[torso], np.broadcast_to(flow[face].mean(0), flow[torso].shape), atol=1e-4)
    # the torso starts below the chin + neck, the head band stays above it
    rows = np.flatnonzero(torso.any(1))
    assert rows.min() > np.flatnonzero(face.any(1)).max()
    assert np.flatnonzero(head.any(1)).max() < rows.min()


def _brute_force_triangle_map(points, depth, triangles, h, w):
    """Per pixel, the nearest front-facing triangle containing the pixel centre (slow, obvious)."""
    out = np.full((h, w), -1)
    zbest = np.full((h, w), np.inf)
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    for f, (i, j, k) in enumerate(triangles):
        a, b, c = points[i], points[j], points[k]
        area = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
        if area <= 1e-9:
            continue
        l1 = ((xx - a[0]) * (c[1] - a[1]) - (yy - a[1]) * (c[0] - a[0])) / area
        l2 = ((b[0] - a[0]) * (yy - a[1]) - (b[1] - a[1]) * (xx - a[0])) / area
        inside = (l1 >= -1e-6) & (l2 >= -1e-6) & (l1 + l2 <= 1 + 1e-6)
        z = depth[i] + l1 * (depth[j] - depth[i]) + l2 * (depth[k] - depth[i])
        better = inside & (z < zbest)
        out[better], zbest[better] = f, z[better]
    return out


def test_rasteriser_matches_brute_force_with_self_occlusion(model):
    from nodes.face.raster import rasterize

    # a strong yaw: the nose hides part of the far cheek, the far side is back-facing
    pose = np.array([[0.1, 0.6, 0.05, 48.0, 46.0, np.log(0.33)]])
    fb = FlowBuilder(model)
    expr = np.zeros((1, 33), np.float32)
    expr[0, 0] = 0.7
    pts, dep = fb.project(np.zeros(60), expr, pose)
    frags = rasterize(pts, dep, fb.triangles, 96, 96)
    got = frags.triangle_map()[0].numpy()
    want = _brute_force_triangle_map(pts[0].double().numpy(), dep[0].double().numpy(), model.triangles, 96, 96)
    assert (want >= 0).sum() > 1500
    differ = got != want
    # only pixel centres on a shared edge may go either way
    assert differ.mean() < 0.01
    covered = frags.covered[0].numpy()
    np.testing.assert_array_equal(covered, want >= 0)
    b = frags.bary
    assert torch.all(b > -1e-3) and torch.allclose(b.sum(1), torch.ones(len(b)), atol=1e-5)


def test_chunking_does_not_change_the_flow(model):
    rng = np.random.default_rng(0)
    n = 7
    pose = np.tile(REF_POSE, (n, 1)) + rng.normal(0, [0.05, 0.05, 0.05, 3, 3, 0.02], (n, 6))
    expr = np.clip(rng.normal(0, 0.4, (n, 33)), 0, 1)
    ref, drv = coeffs(REF_POSE), coeffs(pose, expr)
    a = FlowBuilder(model, FlowSettings(chunk=3)).build(ref, drv, H, W)
    b = FlowBuilder(model, FlowSettings(chunk=16)).build(ref, drv, H, W)
    # (batched matrix products may round the last bit differently, which can flip a pixel on a
    # shared edge to the neighbouring triangle: same flow up to rounding)
    np.testing.assert_allclose(a[0], b[0], atol=1e-4)
    assert (a[1] != b[1]).mean() < 1e-4


def test_warping_with_the_flow_moves_points_where_the_model_says(model):
    """Warp an image whose pixels hold their own (x, y) coordinates: at a vertex's driving
    position the warped image must hold that vertex's reference position (the whole chain:
    flow construction, its sign and WarpImage's pixel convention)."""
    from nodes.face.raster import rasterize
    from nodes.warp import warp_frames

    fb = FlowBuilder(model)
    ref = coeffs(REF_POSE)
    expr = np.zeros((1, 33), np.float32)
    names = model.expression_names
    expr[0, names.index("jaw_open")] = 0.5
    expr[0, names.index("smile_left")] = 0.8
    expr[0, names.index("brow_inner_up")] = 1.0
    drv = coeffs(np.array(REF_POSE) + [0.05, 0.12, -0.06, 5.0, -3.0, 0.05], expr)
    ref_pts = fb.project(ref.shape, ref.expression, ref.pose)[0][0].numpy().astype(np.float64)
    pts, dep = fb.project(drv.shape, drv.expression, drv.pose)
    drv_pts = pts[0].numpy().astype(np.float64)
    # vertices visible in the driving frame: the triangle drawn at the vertex's pixel is its own
    tri_map = rasterize(pts, dep, fb.triangles, H, W).triangle_map()[0].numpy()
    at = tri_map[np.round(drv_pts[:, 1]).astype(int), np.round(drv_pts[:, 0]).astype(int)]
    visible = np.array([a >= 0 and v in model.triangles[a] for v, a in enumerate(at)])
    assert visible.sum() > 300
    yy, xx = np.mgrid[:H, :W].astype(np.float32)
    coords = np.stack([xx, yy], -1)
    flow, _ = fb.build(ref, drv, H, W)
    warped = warp_frames(coords, flow)[0]  # float image: warped(x) = coords(x + flow(x))
    # bilinear read of the warped image at the driving positions
    x, y = drv_pts[visible, 0], drv_pts[visible, 1]
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    read = ((1 - fx) * (1 - fy) * warped[y0, x0] + fx * (1 - fy) * warped[y0, x0 + 1]
            + (1 - fx) * fy * warped[y0 + 1, x0] + fx * fy * warped[y0 + 1, x0 + 1])
    err = np.linalg.norm(read - ref_pts[visible], axis=1)
    moved = np.linalg.norm(drv_pts[visible] - ref_pts[visible], axis=1)
    assert moved.max() > 8.0  # the points really moved
    print(f"median {np.median(err):.3f} px, 99% {np.percentile(err, 99):.3f} px, max {err.max():.3f} px")
    assert np.median(err) < 0.1 and np.percentile(err, 99) < 0.5, (np.median(err), err.max())


def _ctx():
    return RunContext("flow", "DenseFlowBuilder", "k")


def test_node_validates_its_inputs_and_outputs_typed_values(model):
    from graphcore.types import TYPES
    from nodes.face.flow_nodes import DenseFlowBuilder
    from nodes.types import MorphCoeffs

    def mc(pose, size=(H, W)):
        pose = np.atleast_2d(np.asarray(pose, np.float32))
        n = len(pose)
        return MorphCoeffs(np.zeros(60, np.float32), np.zeros((n, 33), np.float32), pose, np.zeros(n, np.float32), size)

    ref = mc(REF_POSE)
    drv = mc(np.tile(REF_POSE, (2, 1)) + [0, 0, 0, 2, 0, 0])
    out = run_whole(DenseFlowBuilder({}), _ctx(), reference=ref, driving=drv)
    flow = TYPES.get("FlowField").validate(out["flow"])
    regions = TYPES.get("Mask").validate(out["regions"])
    assert flow.shape == (2, H, W, 2) and regions.shape == (2, H, W)
    with pytest.raises(NodeError, match="reference_frame 3"):
        run_whole(DenseFlowBuilder({"reference_frame": 3}), _ctx(), reference=ref, driving=drv)
    with pytest.raises(NodeError, match="crop/scale"):
        run_whole(DenseFlowBuilder({}), _ctx(), reference=ref, driving=mc(REF_POSE, size=(512, 512)))
    bad = mc(REF_POSE)
    bad.pose[0, 0] = np.nan
    with pytest.raises(NodeError, match="NaN"):
        run_whole(DenseFlowBuilder({}), _ctx(), reference=ref, driving=bad)


def test_mouth_gain_scales_the_mouth_departure_from_the_reference_only(model):
    """mouth_gain g drives the mesh with reference mouth + g x (driving mouth - reference mouth),
    kept in the components' box [0, EXPRESSION_MAX]: the same flow as those coefficients given
    directly; the brows and the pose are untouched."""
    from nodes.face.flow_nodes import DenseFlowBuilder
    from nodes.face.model import N_MOUTH
    from nodes.types import MorphCoeffs

    names = model.expression_names
    jaw, brow = names.index("jaw_open"), names.index("brow_inner_up")
    assert jaw < N_MOUTH <= brow
    ref_exp = np.zeros((1, 33), np.float32)
    ref_exp[0, jaw] = 0.2  # a portrait with its mouth a little open
    drv_exp = np.zeros((2, 33), np.float32)
    drv_exp[:, jaw] = [0.5, 0.0]  # opening further, then closing
    drv_exp[:, brow] = 0.6
    pose = np.tile(REF_POSE, (2, 1)).astype(np.float32)
    ref = MorphCoeffs(np.zeros(60, np.float32), ref_exp, np.asarray([REF_POSE], np.float32), np.zeros(1, np.float32), (H, W))
    drv = MorphCoeffs(np.zeros(60, np.float32), drv_exp, pose, np.zeros(2, np.float32), (H, W))
    flow2 = run_whole(DenseFlowBuilder({"mouth_gain": 2.0}), _ctx(), reference=ref, driving=drv)["flow"]
    want = drv_exp.copy()
    want[:, jaw] = [0.2 + 2 * 0.3, 0.0]  # 0.2 - 2 x 0.2 is below the box
    direct, _ = FlowBuilder(model).build(coeffs(REF_POSE, ref_exp), coeffs(pose, want), H, W)
    np.testing.assert_allclose(flow2, direct, atol=1e-4)
    flow1 = run_whole(DenseFlowBuilder({}), _ctx(), reference=ref, driving=drv)["flow"]
    plain, _ = FlowBuilder(model).build(coeffs(REF_POSE, ref_exp), coeffs(pose, drv_exp), H, W)
    np.testing.assert_allclose(flow1, plain, atol=1e-4)
    assert np.abs(flow2 - flow1).max() > 1.0  # the mouth really moves further
