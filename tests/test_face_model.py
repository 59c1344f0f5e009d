"""The project's 3DMM: asset contents, determinism of the build, anatomy of the key components."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from nodes.face.model import (
    BROW_COMPONENTS,
    DEFAULT_MODEL_PATH,
    EXPRESSION_COMPONENTS,
    MOUTH_COMPONENTS,
    MorphableModel,
    load_face_model,
)


@pytest.fixture(scope="module")
def model():
    return load_face_model()


def comp(model, name):
    return model.expression_basis[..., model.expression_names.index(name)].astype(np.float64)


def test_asset_matches_manifest_and_shapes(model):
    manifest = json.loads(DEFAULT_MODEL_PATH.with_suffix(".json").read_text())
    assert manifest["sha256"] == hashlib.sha256(DEFAULT_MODEL_PATH.read_bytes()).hexdigest() == model.sha256
    assert DEFAULT_MODEL_PATH.stat().st_size < 600_000
    assert model.mean.shape == (468, 3)
    assert model.shape_basis.shape == (468, 3, 60)
    assert model.expression_basis.shape == (468, 3, 33)
    assert model.aux_basis.shape == (468, 3, 2)
    assert model.triangles.shape == (898, 3) and model.cap_triangles.sum() == 46
    assert len(MOUTH_COMPONENTS) == 28 and len(BROW_COMPONENTS) == 5
    assert model.expression_names == EXPRESSION_COMPONENTS == MOUTH_COMPONENTS + BROW_COMPONENTS
    assert model.expression_names[:2] == ("jaw_open", "jaw_left") and model.expression_names[-1] == "brow_outer_up_right"
    assert isinstance(model, MorphableModel)
    for name in ("inner_face", "face_edge", "lips", "lips_outer", "lips_inner", "eyes", "brows", "nose"):
        assert model.regions[name].shape == (468,) and model.regions[name].any(), name
    assert model.regions["face_edge"].sum() == 36 and (model.regions["inner_face"] == ~model.regions["face_edge"]).all()
    assert not (model.regions["upper_lip"] & model.regions["lower_lip"]).any()


def test_rebuild_is_deterministic(tmp_path, model):
    from tools import build_face_model as build_model

    built = build_model.build()
    sha = build_model.save_npz(tmp_path / "m.npz", built["arrays"], built["meta"])
    if sha != model.sha256:  # another CPU may round MediaPipe differently: then the arrays must agree
        again = load_face_model(tmp_path / "m.npz")
        for name in ("mean", "shape_basis", "expression_basis", "aux_basis"):
            np.testing.assert_allclose(getattr(again, name), getattr(model, name), atol=0.05, err_msg=name)
        np.testing.assert_array_equal(again.triangles, model.triangles)


def test_topology_is_a_consistently_oriented_manifold(model):
    from collections import Counter

    surface = model.triangles[~model.cap_triangles]
    directed = Counter((int(t[i]), int(t[(i + 1) % 3])) for t in model.triangles for i in range(3))
    assert max(directed.values()) == 1  # no directed edge twice: consistent orientation
    undirected = Counter(tuple(sorted(e)) for e in directed)
    assert set(undirected.values()) <= {1, 2}
    assert sum(v == 1 for v in undirected.values()) == 36  # only the face oval stays open once capped
    # frontal view: (almost) all front faces have positive signed area
    from nodes.face.topology import signed_area

    assert np.mean(signed_area(model.mean[:, :2], surface) > 0) > 0.95


def test_mean_and_pairs_are_mirror_symmetric(model):
    flip = np.array([-1.0, 1.0, 1.0])
    np.testing.assert_allclose(model.mean[model.mirror] * flip, model.mean, atol=1e-3)
    for name in MOUTH_COMPONENTS + BROW_COMPONENTS:
        if name.endswith("_left"):
            right = comp(model, name[: -len("_left")] + "_right")
            np.testing.assert_allclose(comp(model, name)[model.mirror] * flip, right, atol=1e-3, err_msg=name)
    # subject's left = +x: the left eye's outer corner (MediaPipe 263) is on the image right
    assert model.mean[263, 0] > 0 > model.mean[33, 0]
    assert model.mean[1, 2] < model.mean[:, 2].mean()  # the nose points at the camera (-z)
    assert model.mean[152, 1] > model.mean[10, 1]  # chin below forehead (y down)


def test_jaw_open_is_a_hinge_rotation_that_parts_the_lips(model):
    v = model.mean.astype(np.float64)
    d = comp(model, "jaw_open")
    lower_outer = model.loops["lips_outer_lower"]
    chin = v[:, 1] > v[lower_outer, 1].max() + 3.0  # the mandible proper: weight 1
    assert chin.sum() > 20
    src, dst = v[chin], v[chin] + d[chin]
    ms, md = src.mean(0), dst.mean(0)
    u, _, vt = np.linalg.svd((src - ms).T @ (dst - md))
    rot = (u @ vt).T
    assert np.linalg.det(rot) > 0
    np.testing.assert_allclose((src - ms) @ rot.T + md, dst, atol=1e-3)  # rigid
    angle = np.degrees(np.arccos(np.clip((np.trace(rot) - 1) / 2, -1, 1)))
    assert 15.0 < angle < 21.0
    axis = np.array([rot[2, 1] - rot[1, 2], rot[0, 2] - rot[2, 0], rot[1, 0] - rot[0, 1]])
    assert abs(axis[0]) / np.linalg.norm(axis) > 0.99  # about the left-right axis
    assert d[152, 1] > 5.0 and d[152, 2] > 5.0  # the chin goes down and back
    up, lo = model.loops["lips_inner_upper"][1:-1], model.loops["lips_inner_lower"][1:-1]
    gap_before = v[lo, 1] - v[up, 1]
    gap_after = (v + d)[lo, 1] - (v + d)[up, 1]
    assert gap_before.mean() < 1.5
    assert (gap_after - gap_before).min() > 3.0 and (gap_after - gap_before).max() > 15.0
    # the upper lip stays (its middle exactly; towards the corners it follows a little)
    upper, lower = model.regions["upper_lip"], model.regions["lower_lip"]
    middle = np.abs(v[:, 0]) < 0.7 * v[291, 0]
    np.testing.assert_allclose(d[upper & middle], 0.0, atol=1e-6)
    assert np.linalg.norm(d[upper], axis=1).mean() < 0.25 * np.linalg.norm(d[lower], axis=1).mean()
    assert np.abs(d[v[:, 1] < v[1, 1] - 15.0]).max() < 1e-6  # nothing above the hinge moves


def test_named_components_move_where_their_names_say(model):
    v = model.mean.astype(np.float64)
    corner_l, corner_r = 291, 61
    smile = comp(model, "smile_left")
    assert smile[corner_l, 1] < -3.0 and smile[corner_l, 0] > 3.0  # up and out (subject's left = +x)
    assert np.abs(smile[corner_r]).max() < 0.5
    assert comp(model, "frown_right")[corner_r, 1] > 3.0
    assert comp(model, "lip_pucker")[0, 2] < -3.0  # lips forward
    assert comp(model, "lip_pucker")[corner_l, 0] < -3.0  # corners in
    funnel = comp(model, "lip_funnel")
    assert funnel[14, 1] - funnel[13, 1] > 4.0  # funnel parts the lips
    close = comp(model, "jaw_open") + comp(model, "mouth_close")
    assert abs(close[14, 1] - close[13, 1]) < 1.0  # lips stay together with the jaw open
    assert comp(model, "brow_inner_up")[model.loops["brow_left"][0], 1] < -3.0
    assert comp(model, "brow_outer_up_left")[model.loops["brow_left"][-1], 1] < -3.0
    assert abs(comp(model, "brow_outer_up_left")[model.loops["brow_right"][-1], 1]) < 0.1
    assert comp(model, "brow_down_right")[model.loops["brow_right"][0], 1] > 3.0
    for name in EXPRESSION_COMPONENTS:  # every component does something, within a natural range
        mag = np.linalg.norm(comp(model, name), axis=1).max()
        assert 1.0 < mag < 35.0, (name, mag)
    blink = model.aux_basis[..., model.aux_names.index("eye_blink_left")]
    up, lo = model.loops["eye_left_upper"][4], model.loops["eye_left_lower"][4]
    assert (v[lo, 1] - v[up, 1]) > 4.0 and (v + blink)[lo, 1] - (v + blink)[up, 1] < 1.0


def test_identity_basis_is_orthogonal_to_pose_expression_and_itself(model):
    from tools.build_face_model import similarity_motions

    a = model.shape_basis.reshape(-1, 60).astype(np.float64)
    gram = a.T @ a
    np.testing.assert_allclose(gram - np.diag(np.diag(gram)), 0.0, atol=1e-2 * gram.diagonal().max())
    np.testing.assert_allclose(np.sqrt(gram.diagonal()), model.shape_std, rtol=1e-4)
    fixed = np.concatenate([similarity_motions(model.mean.astype(np.float64)), model.expression_basis.reshape(-1, 33)], 1)
    q = np.linalg.svd(fixed, full_matrices=False)
    q = q[0][:, q[1] > 1e-6 * q[1][0]]
    assert np.linalg.norm(q.T @ a) / np.linalg.norm(a) < 1e-3
    # smooth: neighbouring vertices move alike (far less Laplacian energy than white noise)
    from nodes.face.topology import laplacian

    lap = laplacian(model.mean.astype(np.float64), model.triangles)
    fields = model.shape_basis.astype(np.float64)  # (468, 3, 60)
    noise = np.random.default_rng(0).standard_normal(fields.shape)

    def rough(f):  # per component: |L f| / |f|
        lf = (lap @ f.reshape(468, -1)).reshape(f.shape)
        return np.linalg.norm(lf, axis=(0, 1)) / np.linalg.norm(f, axis=(0, 1))

    assert np.median(rough(fields)) < 0.3 * np.median(rough(noise))
    assert rough(fields[..., 22:]).max() < 0.4 * rough(noise).min()  # every random field


def test_vertices_follow_eq1(model):
    rng = np.random.default_rng(1)
    alpha, beta = rng.standard_normal(60), rng.uniform(0, 1, (3, 33))
    v = model.vertices(alpha, beta)
    assert v.shape == (3, 468, 3) and v.dtype == np.float32
    manual = model.mean + np.tensordot(model.shape_basis, alpha, 1)[None] + np.einsum("vdk,tk->tvd", model.expression_basis, beta)
    np.testing.assert_allclose(v, manual, atol=1e-4)
    np.testing.assert_allclose(model.landmark_points(v), v[:, model.landmark_ids], atol=1e-6)


def test_missing_model_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="tools.build_face_model"):
        load_face_model(tmp_path / "nope.npz")
