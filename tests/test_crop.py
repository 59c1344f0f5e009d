"""CropAlign / PasteBack: the fixed HDTF window, its pixel mapping, and putting crops back."""
from __future__ import annotations

import numpy as np
import pytest

from graphcore.node import NodeError, RunContext
from graphcore.stream import run_whole
from nodes.face import crop as C
from nodes.face.crop_nodes import CropAlign, PasteBack
from nodes.types import CROP, CropTransform


def make_ctx() -> RunContext:
    return RunContext(node_id="c", node_type="CropAlign", key="k")


def box_landmarks(boxes: list[tuple[float, float, float, float]]) -> np.ndarray:
    """(T, 4, 3) landmarks at the corners of the given (x0, y0, x1, y1) boxes."""
    out = np.zeros((len(boxes), 4, 3), np.float32)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        out[i, :, :2] = [(x0, y0), (x1, y0), (x0, y1), (x1, y1)]
    return out


def linear_frame(h: int, w: int) -> np.ndarray:
    """Channels linear in x and y (kept below 255), so resampling reproduces them closely."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.stack([10 + 0.3 * xx, 10 + 0.3 * yy, 40 + 0.15 * (xx + yy)], -1).round().astype(np.uint8)


def test_window_union_median_scale_offset():
    lms = box_landmarks([(100, 100, 200, 220), (110, 90, 210, 210), (400, 400, 420, 420)])  # one outlier frame
    union = C.crop_window(lms, (1000, 1000), size=256, scale=2.0, offset_y=0.0, box="union", keep_inside=False)
    assert (union.x0, union.y0, union.side) == (-70.0, -75.0, 660.0)  # box 100..420 x 90..420 -> 330 * 2
    median = C.crop_window(lms, (1000, 1000), size=256, scale=2.0, offset_y=0.0, box="median")
    # per-side medians: x 110..210, y 100..220 -> longer side 120, centre (160, 160)
    assert (median.x0, median.y0, median.side, median.size) == (40.0, 40.0, 240.0, 256)
    down = C.crop_window(lms, (1000, 1000), size=256, scale=2.0, offset_y=0.25, box="median")
    assert down.y0 == 100.0 and down.x0 == 40.0
    assert median.frame_size == (1000, 1000)
    CROP.validate(median)


def test_window_slides_inside_or_pads():
    lms = box_landmarks([(10, 20, 110, 120)])
    inside = C.crop_window(lms, (300, 400), scale=2.0, offset_y=0.0)
    assert (inside.x0, inside.y0, inside.side) == (0.0, 0.0, 200.0)
    free = C.crop_window(lms, (300, 400), scale=2.0, offset_y=0.0, keep_inside=False)
    assert (free.x0, free.y0) == (-40.0, -30.0)
    frame = linear_frame(300, 400)
    crop = C.crop_frames(frame[None], CropTransform(-40.0, -30.0, 200.0, 200, (300, 400)))[0]
    np.testing.assert_array_equal(crop[30:, 40:], frame[:170, :160])  # size == side: a plain copy
    np.testing.assert_array_equal(crop[:30, 40:], np.repeat(frame[:1, :160], 30, 0))  # edge repeated
    with pytest.raises(ValueError, match="outside"):
        C.crop_frames(frame[None], CropTransform(500.0, 0.0, 50.0, 64, (300, 400)))


@pytest.mark.parametrize("size", [256, 512])
def test_crop_pixel_mapping(size):
    frame = linear_frame(480, 640)
    tf = CropTransform(x0=150.0, y0=60.0, side=350.0, size=size, frame_size=(480, 640))
    crop = C.crop_frames(frame[None], tf)[0]
    assert crop.shape == (size, size, 3)
    # crop pixel u looks at frame pixel x = from_crop(u): compare with the linear frame there
    us = np.array([[5, 7], [100, 200], [size - 6, size // 3]], np.float32)
    xy = C.from_crop(us, tf)
    expect = np.stack([10 + 0.3 * xy[:, 0], 10 + 0.3 * xy[:, 1], 40 + 0.15 * xy.sum(1)], -1)
    got = crop[us[:, 1].astype(int), us[:, 0].astype(int)].astype(np.float32)
    np.testing.assert_allclose(got, expect, atol=1.0)
    pts = np.random.default_rng(0).uniform(0, 600, (3, 10, 3)).astype(np.float32)
    np.testing.assert_allclose(C.from_crop(C.to_crop(pts, tf), tf), pts, atol=1e-3)
    assert np.isclose(C.to_crop(pts, tf)[..., 2], pts[..., 2] * size / 350).all()


def test_crop_align_on_the_astronaut_matches_detection_in_the_crop():
    pytest.importorskip("mediapipe")
    from skimage import data

    from nodes.face.landmark_nodes import DetectLandmarks

    img = data.astronaut()
    lm = DetectLandmarks().run(make_ctx(), image=img)["landmarks"]
    out = CropAlign({"size": 256}).run(make_ctx(), image=img, landmarks=lm)
    crops, tf, crop_lm = out["frames"], out["transform"], out["landmarks"]
    assert crops.shape == (1, 256, 256, 3) and crop_lm.shape == (1, 478, 3)
    assert tf.side >= 2.2 * (lm[0, :, 1].max() - lm[0, :, 1].min()) - 1
    # the face sits centred horizontally, a little above the middle (window moved down)
    cx, cy = crop_lm[0, :, 0].mean(), crop_lm[0, :, 1].mean()
    assert abs(cx - 128) < 12 and 80 < cy < 128
    # detecting again on the crop lands on the transformed landmarks
    again = DetectLandmarks().run(make_ctx(), image=crops[0])["landmarks"]
    err = np.linalg.norm(again[0, :, :2] - crop_lm[0, :, :2], axis=-1)
    assert err.mean() < 1.5 * 256 / tf.side + 0.5 and err.max() < 6


def test_paste_back_round_trip_and_outside_untouched():
    frames = np.stack([linear_frame(300, 400)] * 3)
    lms = box_landmarks([(150, 100, 230, 190)] * 3)
    out = CropAlign({"size": 512, "scale": 1.5, "offset_y": 0.0}).run(make_ctx(), frames=frames, landmarks=lms)
    tf = out["transform"]
    back = run_whole(PasteBack(), make_ctx(), crops=out["frames"], transform=tf, frames=frames)["frames"]
    # streamed a chunk of 2 frames at a time (as from a cache entry): the same frames
    from graphcore.stream import Chunks

    def view(a):
        return Chunks(a.shape, a.dtype, 2, lambda i, j: a[i:j].copy())

    steps = list(PasteBack().run(make_ctx(), crops=view(out["frames"]), transform=tf, frames=view(frames)))
    assert [len(s["frames"]) for s in steps] == [2, 1]
    assert np.concatenate([s["frames"] for s in steps]).tobytes() == back.tobytes()
    x0, y0, side = int(tf.x0), int(tf.y0), int(tf.side)
    outside = np.ones((300, 400), bool)
    outside[y0:y0 + side, x0:x0 + side] = False
    np.testing.assert_array_equal(back[:, outside], frames[:, outside])
    diff = np.abs(back.astype(int) - frames)[:, y0 + 2:y0 + side - 2, x0 + 2:x0 + side - 2]
    assert diff.max() <= 2  # up-sampling and back on a linear image


def test_paste_back_with_mask_feather_and_single_original():
    original = linear_frame(200, 240)
    tf = CropTransform(x0=40.0, y0=30.0, side=128.0, size=64, frame_size=(200, 240))
    crops = np.full((2, 64, 64, 3), 255, np.uint8)
    mask = np.zeros((1, 64, 64), np.float32)
    mask[0, 16:48, 16:48] = 1.0
    out = run_whole(PasteBack(), make_ctx(), crops=crops, transform=tf, image=original, mask=mask)["frames"]
    assert out.shape == (2, 200, 240, 3)
    assert (out[:, 30 + 40:30 + 88, 40 + 40:40 + 88] == 255).all()  # the masked square, scaled x2
    np.testing.assert_array_equal(out[:, 30:30 + 20, 40:40 + 128], np.stack([original[30:50, 40:168]] * 2))
    feathered = run_whole(PasteBack({"feather": 8}), make_ctx(), crops=crops, transform=tf, image=original)["frames"][0]
    row = feathered[30 + 64, 40:40 + 40, 0].astype(int)  # from the window's left border inwards
    assert row[0] < 60 and row[-1] == 255 and np.all(np.diff(row) >= 0)


def test_crop_adaption_picks_the_size_from_the_face_resolution():
    """MetaTalk §2.1: 512, 768 or 1024 by the face's size in the source video."""
    assert [C.adapted_size(s, [512, 768, 1024]) for s in (100, 512, 513, 700, 900, 1500)] == [512, 512, 768, 768, 1024, 1024]
    frames = np.zeros((2, 1200, 1600, 3), np.uint8)
    for box, size in [((700, 500, 800, 600), 512), ((600, 400, 900, 700), 768), ((560, 330, 960, 730), 1024)]:
        out = CropAlign({"sizes": [512, 768, 1024], "scale": 2.0}).run(make_ctx(), frames=frames, landmarks=box_landmarks([box] * 2))
        assert out["transform"].size == size and out["frames"].shape == (2, size, size, 3)
    with pytest.raises(ValueError, match="crop sizes must be in"):
        CropAlign({"sizes": [4096]})


def test_window_centred_on_the_lower_half_of_the_face():
    """MetaTalk §3: crops "centered around the lower half of the face": the window's centre is
    3/4 of the way down the face box (then offset_y), same side, same x."""
    lms = box_landmarks([(100, 100, 200, 220)])  # centre (150, 160), lower half's centre y = 190
    face = C.crop_window(lms, (1000, 1000), scale=2.0, offset_y=0.0)
    lower = C.crop_window(lms, (1000, 1000), scale=2.0, offset_y=0.0, centre="lower_half")
    assert (face.x0, face.y0, face.side) == (30.0, 40.0, 240.0)
    assert (lower.x0, lower.y0, lower.side) == (30.0, 70.0, 240.0)
    out = CropAlign({"centre": "lower_half", "scale": 2.0, "offset_y": 0.0, "size": 256}).run(
        make_ctx(), frames=np.zeros((1, 1000, 1000, 3), np.uint8), landmarks=lms)
    assert out["transform"].y0 == 70.0
    # the lower half's centre (150, 190) lands in the middle of the crop (within the whole-pixel rounding)
    assert np.allclose(C.to_crop(np.array([[150.0, 190.0]]), out["transform"])[0], 127.5, atol=1.0)
    with pytest.raises(ValueError, match="centre"):
        CropAlign({"centre": "chin"})


def test_errors_name_the_problem():
    frames = np.zeros((2, 100, 100, 3), np.uint8)
    with pytest.raises(NodeError, match="no finite landmarks"):
        CropAlign().run(make_ctx(), frames=frames, landmarks=np.full((2, 5, 3), np.nan, np.float32))
    with pytest.raises(NodeError, match="3 landmark frames for 2 frames"):
        CropAlign().run(make_ctx(), frames=frames, landmarks=box_landmarks([(1, 1, 9, 9)] * 3))
    tf = CropTransform(0.0, 0.0, 50.0, 64, (100, 100))
    with pytest.raises(NodeError, match="taken from 100x100 frames"):
        run_whole(PasteBack(), make_ctx(), crops=np.zeros((1, 64, 64, 3), np.uint8), transform=tf, image=np.zeros((90, 100, 3), np.uint8))
    with pytest.raises(NodeError, match="makes 64x64 crops"):
        run_whole(PasteBack(), make_ctx(), crops=np.zeros((1, 32, 32, 3), np.uint8), transform=tf, image=frames[0])


def test_chain_decode_detect_crop_draw_encode(tmp_path):
    """LoadVideo -> DetectLandmarks -> CropAlign -> DrawLandmarks -> SaveVideo on a real .mp4."""
    pytest.importorskip("mediapipe")
    from skimage import data

    from nodes.face.landmark_nodes import DetectLandmarks, DrawLandmarks
    from nodes.io.media import read_video, write_video
    from nodes.io.media_nodes import LoadVideo, SaveVideo
    from nodes.types import AudioClip

    img = data.astronaut()
    clip = np.stack([img[10 + k: 410 + k, 50 + 2 * k: 450 + 2 * k] for k in range(10)])
    tone = (0.3 * np.sin(2 * np.pi * 200 * np.arange(6400) / 16000)).astype(np.float32)
    write_video(tmp_path / "in.mp4", clip, 25, AudioClip(tone, 16000))
    ctx = RunContext(node_id="c", node_type="chain", key="k", workflow_dir=tmp_path)
    video = run_whole(LoadVideo({"path": "in.mp4"}), ctx)
    lm = DetectLandmarks({"smoothing": "savgol"}).run(ctx, frames=video["frames"])["landmarks"]
    crop = CropAlign({"size": 256}).run(ctx, frames=video["frames"], landmarks=lm)
    drawn = DrawLandmarks().run(ctx, frames=crop["frames"], landmarks=crop["landmarks"])["frames"]
    out = run_whole(SaveVideo({"path": "out.mp4"}), ctx, frames=drawn, audio=video["audio"], fps=video["fps"])["path"]
    back = read_video(out)
    assert back.frames.shape == (10, 256, 256, 3) and back.fps == 25.0
    assert abs(back.audio.duration - 0.4) < 1e-3
