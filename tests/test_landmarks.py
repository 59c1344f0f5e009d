"""DetectLandmarks on a real face (skimage's astronaut photo), video mode, missing faces, smoothing,
and DrawLandmarks."""
from __future__ import annotations

import numpy as np
import pytest

from graphcore.node import NodeError, RunContext
from nodes.face.landmark_nodes import DetectLandmarks, DrawLandmarks
from nodes.face.landmarks import interpolate_missing, smooth_one_euro, smooth_savgol
from nodes.types import LANDMARKS

pytest.importorskip("mediapipe")
skdata = pytest.importorskip("skimage.data")

T = 8
DX, DY = 3, 2  # per-frame shift of the crop window


def make_ctx(events: list | None = None) -> RunContext:
    sink = (lambda kind, data: events.append((kind, dict(data)))) if events is not None else (lambda k, d: None)
    return RunContext(node_id="lm", node_type="DetectLandmarks", key="k", emit=sink)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skdata.astronaut()


@pytest.fixture(scope="module")
def image_landmarks(astronaut) -> np.ndarray:
    return DetectLandmarks().run(make_ctx(), image=astronaut)["landmarks"]


@pytest.fixture(scope="module")
def shifted_video(astronaut) -> np.ndarray:
    """400x400 crops whose window moves right/down: the face moves left/up by (DX, DY) per frame."""
    return np.stack([astronaut[20 + DY * k: 420 + DY * k, 60 + DX * k: 460 + DX * k] for k in range(T)])


def offsets() -> np.ndarray:
    return np.array([[60 + DX * k, 20 + DY * k] for k in range(T)], np.float32)


def test_image_mode_on_the_astronaut(image_landmarks):
    lm = image_landmarks
    LANDMARKS.validate(lm)
    assert lm.shape == (1, 478, 3) and lm.dtype == np.float32
    pts = lm[0]
    # the face sits around x 180-270, y 70-177 of the 512x512 photo
    assert 165 < pts[:, 0].min() and pts[:, 0].max() < 285 and 55 < pts[:, 1].min() and pts[:, 1].max() < 190
    # anatomy: eyes above the nose tip above the lips above the chin; iris centres inside the eye corners
    nose, upper_lip, chin, forehead = pts[1], pts[13], pts[152], pts[10]
    right_iris, left_iris = pts[468], pts[473]
    assert forehead[1] < right_iris[1] < nose[1] < upper_lip[1] < chin[1]
    assert pts[33, 0] < right_iris[0] < pts[133, 0] and pts[362, 0] < left_iris[0] < pts[263, 0]
    assert 35 < left_iris[0] - right_iris[0] < 55  # inter-pupil distance in pixels
    # z is scaled like x: depth spread comparable to the face width, nose tip nearest the camera
    assert 0.2 < np.ptp(pts[:, 2]) / np.ptp(pts[:, 0]) < 1.2 and pts[:, 2].argmin() in (1, 4, 5, 19, 94)


@pytest.mark.parametrize("tracking", [True, False])
def test_video_mode_follows_the_shift(shifted_video, image_landmarks, tracking):
    events: list = []
    lm = DetectLandmarks({"tracking": tracking}).run(make_ctx(events), frames=shifted_video)["landmarks"]
    assert lm.shape == (T, 478, 3)
    in_photo = lm[..., :2] + offsets()[:, None]  # back to the photo's pixel frame
    err = np.linalg.norm(in_photo - image_landmarks[0, None, :, :2], axis=-1)
    assert err.mean() < 1.5 and err.max() < 6
    # frame-to-frame motion is the crop shift
    motion = np.median(np.diff(lm[..., :2], axis=0), axis=1)
    np.testing.assert_allclose(motion, np.tile([-DX, -DY], (T - 1, 1)), atol=0.6)
    assert events[-1] == ("progress", {"i": T, "n": T, "message": "face mesh"})


def test_missing_face_error_names_the_frame(shifted_video):
    frames = shifted_video.copy()
    frames[3] = 0
    with pytest.raises(NodeError, match=r"no face found in frame 3 of 8 \(frames without a face: 3\)"):
        DetectLandmarks().run(make_ctx(), frames=frames)
    with pytest.raises(NodeError, match="no face found in any of the 2 frame"):
        DetectLandmarks({"on_missing": "interpolate"}).run(make_ctx(), frames=np.zeros((2, 64, 64, 3), np.uint8))


def test_missing_face_interpolated(shifted_video):
    frames = shifted_video.copy()
    frames[3] = 0
    frames[T - 1] = 0
    events: list = []
    lm = DetectLandmarks({"on_missing": "interpolate"}).run(make_ctx(events), frames=frames)["landmarks"]
    good = DetectLandmarks().run(make_ctx(), frames=shifted_video[[2, 4]])["landmarks"]
    assert np.isfinite(lm).all()
    np.testing.assert_allclose(lm[3], lm[[2, 4]].mean(0), atol=1e-4)  # linear between neighbours
    np.testing.assert_array_equal(lm[T - 1], lm[T - 2])  # after the last detection: held
    # the filled frame lands where the face really was (the motion is linear)
    assert np.abs(lm[3, :, :2] - good[:, :, :2].mean(0)).mean() < 1.5
    assert any(k == "log" and "no face in 2 of 8 frames (3, 7): interpolated" in d["message"] for k, d in events)


def test_interpolate_missing_unit():
    lm = np.zeros((5, 2, 3), np.float32)
    lm[:, :, 0] = np.arange(5)[:, None] * 10
    found = np.array([False, True, False, False, True])
    out = interpolate_missing(np.where(found[:, None, None], lm, np.nan), found)
    np.testing.assert_allclose(out[:, 0, 0], [10, 10, 20, 30, 40])
    with pytest.raises(ValueError):
        interpolate_missing(lm, np.zeros(5, bool))


def test_smoothing_reduces_jitter_keeps_motion():
    rng = np.random.default_rng(0)
    t = np.arange(100, dtype=np.float32)
    still = np.full((100, 478, 3), 100.0, np.float32)
    drift = still.copy()
    drift[..., 0] += (0.8 * t)[:, None]  # 20 px/s at 25 fps
    noise = rng.normal(0, 1.0, still.shape).astype(np.float32)
    inner = slice(10, 90)
    for smooth in (lambda x: smooth_savgol(x, 11), lambda x: smooth_one_euro(x, 25.0, 1.0, 0.1)):
        # jitter on a still face is at least halved
        assert np.abs(smooth(still + noise)[inner] - 100).mean() < 0.5 * np.abs(noise[inner]).mean()
        # a steady motion keeps its speed and lags by at most about a pixel
        moved = smooth(drift)
        assert abs(np.mean(np.diff(moved[inner, :, 0], axis=0)) - 0.8) < 0.02
        assert np.abs(moved[inner] - drift[inner]).max() < 1.1
    assert smooth_savgol(still[:2], 9).shape == (2, 478, 3)  # too short to filter: unchanged


def test_node_smoothing_param(shifted_video):
    raw = DetectLandmarks().run(make_ctx(), frames=shifted_video)["landmarks"]
    sm = DetectLandmarks({"smoothing": "savgol", "window": 5}).run(make_ctx(), frames=shifted_video)["landmarks"]
    assert sm.shape == raw.shape and not np.array_equal(sm, raw) and np.abs(sm - raw).mean() < 1.0


def test_streamed_frames_give_the_same_landmarks(shifted_video):
    """The node reads a lazy view a stored chunk at a time (here 3 frames), never the whole clip."""
    from graphcore.stream import Chunks

    reads = []

    def read(a, b):
        reads.append((a, b))
        return shifted_video[a:b].copy()

    view = Chunks(shifted_video.shape, shifted_video.dtype, 3, read)
    whole = DetectLandmarks().run(make_ctx(), frames=shifted_video)["landmarks"]
    streamed = DetectLandmarks().run(make_ctx(), frames=view)["landmarks"]
    assert streamed.tobytes() == whole.tobytes()
    assert max(b - a for a, b in reads) == 3 and len(reads) == -(-len(shifted_video) // 3)


def test_input_errors():
    with pytest.raises(NodeError, match="exactly one"):
        DetectLandmarks().run(make_ctx())


def test_draw_landmarks(astronaut, image_landmarks):
    out = DrawLandmarks({"radius": 0, "color": [255, 0, 255]}).run(make_ctx(), frames=astronaut[None],
                                                                    landmarks=image_landmarks)["frames"]
    assert out.shape == (1, 512, 512, 3) and out.dtype == np.uint8
    xy = np.round(image_landmarks[0, :, :2]).astype(int)
    np.testing.assert_array_equal(out[0, xy[:, 1], xy[:, 0]], np.tile([255, 0, 255], (478, 1)))
    changed = (out[0] != astronaut).any(-1)
    assert changed.sum() <= 478  # radius 0: one pixel per point, nothing else
    lines = DrawLandmarks({"style": "contours", "radius": 0}).run(make_ctx(), frames=astronaut[None],
                                                                 landmarks=np.repeat(image_landmarks, 3, 0))["frames"]
    assert lines.shape == (3, 512, 512, 3)
    assert (lines[1] != astronaut).any(-1).sum() > 3 * changed.sum()  # the contour lines add pixels
    with pytest.raises(NodeError, match="contours need"):
        DrawLandmarks({"style": "contours"}).run(make_ctx(), frames=astronaut[None], landmarks=image_landmarks[:, :68])
    with pytest.raises(NodeError, match="2 frames but 1 landmark frames"):
        DrawLandmarks().run(make_ctx(), frames=np.stack([astronaut] * 2), landmarks=image_landmarks)
