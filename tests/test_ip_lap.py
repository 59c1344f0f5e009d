"""IP_LAP pieces that need no trained weights: topology, face boxes and coordinates, the video
loop, reference picking, the loss terms, the networks' shapes, and the nodes' input checks."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nodes.ip_lap import facemesh as fm
from nodes.ip_lap.pipeline import FaceTrack, reference_count, template_indices


def test_topology_counts_and_split():
    assert (len(fm.ORDER), len(set(fm.ORDER)), len(fm.EDGES)) == (131, 131, 125)
    assert (fm.N_POSE, fm.N_JAW, fm.N_LIP) == (74, 17, 40)
    assert not set(fm.POSE_IDX) & set(fm.CONTENT_IDX)
    assert set(fm.CONTENT_IDX[fm.N_JAW:]) == set(fm.OUTER_LIPS) | set(fm.INNER_LIPS)
    pose = np.arange(74, dtype=np.float64)[None].repeat(2, 0)
    content = 100 + np.arange(57, dtype=np.float64)[None].repeat(2, 0)
    full = fm.full_131(pose, content)
    assert set(full[0, list(fm.POSE_SLOTS)]) == set(range(74)) and set(full[0, list(fm.CONTENT_SLOTS)]) == set(range(100, 157))


def test_box_coordinates_round_trip_and_box_clipping():
    rng = np.random.default_rng(0)
    hw = (240, 320)
    lm = np.zeros((478, 2))
    lm[:, 0], lm[:, 1] = rng.uniform(100, 220, 478), rng.uniform(60, 200, 478)
    norm = fm.to_normalised(lm, hw)
    box = fm.face_box(norm, hw, margin=25)
    pts = lm[list(fm.ORDER)]
    assert box.x1 <= pts[:, 0].min() - 20 and box.x2 >= pts[:, 0].max() + 20
    back = fm.from_box(fm.in_box(norm, box, hw), box)
    assert np.abs(back - lm).max() < 1e-9
    edge = fm.face_box(norm, hw, margin=500)  # clipped to the frame
    assert (edge.y1, edge.y2, edge.x1, edge.x2) == (0, 240, 0, 320)
    norm[fm.ORDER[3]] = np.nan
    with pytest.raises(ValueError, match="missing"):
        fm.face_box(norm, hw)


def test_template_indices_loop_the_video_forward_and_back():
    assert template_indices(3, 8).tolist() == [0, 1, 2, 2, 1, 0, 0, 1]
    assert template_indices(5, 3).tolist() == [0, 1, 2]
    assert reference_count(176, 0) == 35 and reference_count(3, 0) == 1 and reference_count(176, 7) == 7


def test_references_spread_over_mouth_openings():
    openness = np.array([0.5, 0.1, 0.9, 0.3, 0.7])
    assert fm.spread_by_openness(openness, 3).tolist() == [1, 0, 2]  # closed, middle, open
    assert fm.spread_by_openness(openness, 1).tolist() == [1]


def test_continuity_loss_ignores_a_constant_offset_but_not_motion():
    from nodes.ip_lap.losses import landmark_continuity, landmark_l1

    target = torch.rand(2, 5, 2, 57)
    assert landmark_continuity(target + 0.3, target).item() < 1e-6
    assert landmark_l1(target + 0.3, target).item() == pytest.approx(0.3, abs=1e-6)
    moved = target.clone()
    moved[:, 2] += 0.1
    assert landmark_continuity(moved, target).item() > 0.1


def test_mouth_opening_loss_sees_the_lip_gap_not_a_shift():
    import numpy as np

    from nodes.ip_lap.facemesh import CONTENT_IDX
    from nodes.ip_lap.losses import OPENING_PAIRS, mouth_opening_l1

    target = torch.rand(2, 5, 2, 57)
    assert mouth_opening_l1(target + 0.3, target).item() < 1e-6  # the whole mouth moved: no gap changed
    opened = target.clone()
    opened[:, :, 1, int(np.flatnonzero(CONTENT_IDX == 14)[0])] += 0.09  # the lower inner lip's middle drops
    n_pairs = len(OPENING_PAIRS)
    assert mouth_opening_l1(opened, target).item() == pytest.approx(0.09 / (2 * n_pairs), rel=1e-4)
    unrelated = target.clone()
    unrelated[:, :, :, int(np.flatnonzero(CONTENT_IDX == 61)[0])] += 0.2  # a mouth corner: in no pair
    assert mouth_opening_l1(unrelated, target).item() < 1e-6


@pytest.mark.parametrize("arch", ["ip_lap_landmark_generator", "ip_lap_renderer"])
def test_tiny_networks_shapes_and_gradients(arch):
    from nodes.model_registry import create_model

    torch.manual_seed(0)
    m = create_model(arch, "tiny")
    if arch == "ip_lap_landmark_generator":
        out = m(torch.randn(2, 5, 80, 16), torch.rand(2, 5, 2, 74), torch.rand(2, 3, 2, 74), torch.rand(2, 3, 2, 57))
        assert out.shape == (2, 5, 2, 57)
        out.abs().mean().backward()
    else:
        s = m.cfg.size
        out = m(torch.rand(2, 3, s, s), torch.rand(2, 5, 3, s, s), torch.rand(2, 2, 3, s, s), torch.rand(2, 2, 3, s, s),
                torch.randn(2, 80, 16))
        assert out["face"].shape == out["warped"].shape == (2, 3, s, s)
        (out["face"].mean() + out["warped"].mean()).backward()
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)


def test_reference_encodings_once_per_clip_give_the_same_faces():
    from nodes.model_registry import create_model

    torch.manual_seed(1)
    m = create_model("ip_lap_renderer", "tiny").eval()
    s = m.cfg.size
    args = (torch.rand(3, 3, s, s), torch.rand(3, 5, 3, s, s), torch.rand(1, 4, 3, s, s).expand(3, -1, -1, -1, -1),
            torch.rand(1, 4, 3, s, s).expand(3, -1, -1, -1, -1), torch.randn(3, 80, 16))
    with torch.no_grad():
        a = m(*args)["face"]
        enc = [(h1.expand(3, -1, -1, -1), h2.expand(3, -1, -1, -1)) for h1, h2 in m.alignment.encode(args[2][:1], args[3][:1])]
        b = m(*args, encoded=enc)["face"]
    assert torch.allclose(a, b, atol=1e-6)


def test_face_track_checks_its_inputs():
    frames = np.zeros((3, 64, 64, 3), np.uint8)
    with pytest.raises(ValueError, match="478"):
        FaceTrack.from_frames(frames, np.zeros((3, 68, 2), np.float32))
    with pytest.raises(ValueError, match="3 video frames"):
        FaceTrack.from_frames(frames, np.zeros((2, 478, 2), np.float32))
