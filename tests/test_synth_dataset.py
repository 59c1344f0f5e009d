"""The dataset format: writer, reader, windows and splits."""
from __future__ import annotations

import numpy as np
import pytest

from trainers.data.dataset import DatasetError, DatasetWriter, assign_splits, open_dataset


def _write(path, n_clips=3, frames=(13, 9, 20), size=(32, 24)):
    w = DatasetWriter(str(path), frame_size=size, source="test", landmark_source="test")
    rng = np.random.default_rng(0)
    truth = []
    for i in range(n_clips):
        T = frames[i]
        cw = w.begin_clip(f"clip_{i:05d}", T, split=("train", "val", "test")[i % 3],
                          attrs={"text": f"sentence {i}", "seed": i, "phonemes": [["h", 0.0, 0.1], ["i:", 0.1, 0.3]]})
        fr = rng.integers(0, 255, (T, *size, 3), dtype=np.uint8)
        cw.write_frames(0, fr[:5])
        cw.write_frames(5, fr[5:])
        audio = rng.standard_normal(T * 640 - 100).astype(np.float32)
        cw.write_audio(audio)
        lm = rng.standard_normal((T, 478, 2)).astype(np.float32)
        cw.write_landmarks(0, lm)
        expr, pose = rng.random((T, 33)).astype(np.float32), rng.random((T, 6)).astype(np.float32)
        cw.write_coeffs(np.ones(60, np.float32), expr, pose, image_size=size)
        cw.write_features("mfcc_pitch", rng.random((T, 15)).astype(np.float32), 25.0)
        truth.append(dict(frames=fr, audio=audio, landmarks=lm, expression=expr, pose=pose))
    counts = w.close()
    return truth, counts


def test_round_trip_and_windows(tmp_path):
    truth, counts = _write(tmp_path / "d.zarr")
    assert counts == {"train": 1, "val": 1, "test": 1}
    ds = open_dataset(str(tmp_path / "d.zarr"))
    assert len(ds) == 3 and ds.fps == 25 and ds.sample_rate == 16000 and ds.samples_per_frame == 640
    c = ds.clip(0)
    assert c.text == "sentence 0" and c.split == "train" and len(c) == 13
    np.testing.assert_array_equal(c.frames[...], truth[0]["frames"])
    assert c.frames.chunks[1:] == (32, 24, 3)  # chunked along time only
    audio = c.audio
    assert len(audio) == 13 * 640  # padded to whole frames
    np.testing.assert_array_equal(audio[: len(truth[0]["audio"])], truth[0]["audio"])
    assert np.all(audio[len(truth[0]["audio"]):] == 0)
    np.testing.assert_array_equal(c.coeffs["expression"], truth[0]["expression"])
    assert c.image_size == (32, 24)
    assert c.phoneme_items[1][0] == "i:"
    assert c.feature_names() == ["mfcc_pitch"]

    win = ds.windows(4, stride=2, fields=("frames", "audio", "landmarks", "expression", "pose", "features/mfcc_pitch"))
    assert len(win) == 5 + 3 + 9  # (13-4)//2+1, (9-4)//2+1, (20-4)//2+1
    w = win[6]  # clip 1, t0 = 2
    assert int(w["clip"]) == 1 and int(w["t0"]) == 2
    np.testing.assert_array_equal(w["frames"], truth[1]["frames"][2:6])
    np.testing.assert_array_equal(w["audio"], truth[1]["audio"][2 * 640:6 * 640])
    np.testing.assert_array_equal(w["pose"], truth[1]["pose"][2:6])
    assert w["features/mfcc_pitch"].shape == (4, 15)
    assert [int(x["clip"]) for x in ds.windows(5, split="test")] == [2] * 4


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(DatasetError, match="no dataset"):
        open_dataset(str(tmp_path / "missing.zarr"))
    _write(tmp_path / "d.zarr")
    ds = open_dataset(str(tmp_path / "d.zarr"))
    with pytest.raises(DatasetError, match="outside clip clip_00001"):
        ds.clip(1).window(7, 4)
    with pytest.raises(DatasetError, match="no 'mel' features"):
        ds.clip(0).features("mel")
    with pytest.raises(DatasetError, match="no clip 'nope'"):
        ds.clip("nope")
    w = DatasetWriter(str(tmp_path / "e.zarr"), frame_size=(8, 8), source="t", landmark_source="t")
    cw = w.begin_clip("a", 3, split="train", attrs={})
    with pytest.raises(DatasetError, match="expected \\(3, 6\\)"):
        cw.write_coeffs(np.zeros(60), np.zeros((3, 33)), np.zeros((2, 6)))
    with pytest.raises(DatasetError, match="split"):
        w.begin_clip("b", 3, split="holdout", attrs={})


def test_a_rewrite_that_stops_half_way_keeps_the_previous_dataset(tmp_path):
    """A dataset is built beside its place and swapped in by close(): a re-run that fails (or is
    killed) before close leaves the previous dataset readable and whole."""
    path = tmp_path / "d.zarr"
    _write(path)
    before = open_dataset(str(path))
    n_clips = len(before.attrs["clips"])
    w = DatasetWriter(str(path), frame_size=(8, 8), source="t", landmark_source="t")
    w.begin_clip("only", 3, split="train", attrs={})  # ... and the run dies here
    still = open_dataset(str(path))
    assert len(still.attrs["clips"]) == n_clips and still.attrs["complete"]
    assert (tmp_path / "d.zarr.partial").is_dir()
    _write(path)  # a later run: clears the stale .partial, swaps its result in
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.zarr"]
    assert open_dataset(str(path)).attrs["complete"]


def test_splits_are_seeded_and_cover_every_split():
    s = assign_splits(10, seed=1)
    assert s == assign_splits(10, seed=1) and s != assign_splits(10, seed=2)
    assert s.count("train") == 8 and s.count("val") == 1 and s.count("test") == 1
    assert sorted(set(assign_splits(3, seed=0))) == ["test", "train", "val"]
    assert assign_splits(1, seed=0) == ["train"]


# --- the generator's dataset mode ---------------------------------------------------------------

from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHORT = ("Bob made a map.", "Hello, Paul!")


@pytest.fixture(scope="module")
def portrait():
    from nodes.face.fitting import fit_coefficients
    from nodes.face.landmarks import detect_landmarks
    from nodes.face.model import load_face_model
    from nodes.io.media import read_image
    from nodes.synth.generate import resize_portrait

    image = read_image(ROOT / "assets/samples/portrait.png")
    lms, found = detect_landmarks(image[None], tracking=False)
    assert found.all()
    model = load_face_model()
    fit = fit_coefficients(model, lms)
    return model, resize_portrait(image, lms[0], fit.shape, fit.expression[0], fit.pose[0], 256)


@pytest.fixture(scope="module")
def synth(portrait, tmp_path_factory):
    from nodes.synth.generate import SynthDatasetSettings, generate_dataset

    model, face = portrait
    out = tmp_path_factory.mktemp("synth")
    settings = SynthDatasetSettings(n_clips=2, size=256, seed=3, sentences=SHORT, sentences_per_clip=(1, 1),
                                    voices=("en-us", "en-gb+f2"), features=("mfcc_pitch", "mel"))
    summary = generate_dataset(str(out / "d.zarr"), face, model, settings, mp4_dir=out / "mp4")
    return out, face, summary


def test_generator_writes_aligned_clips(synth):
    out, face, summary = synth
    assert summary["clips"] == 2 and summary["train"] + summary["val"] + summary["test"] == 2
    ds = open_dataset(str(out / "d.zarr"))
    assert ds.attrs["complete"] and ds.attrs["source"] == "synthetic" and ds.frame_size == (256, 256)
    for clip in ds:
        n = clip.n_frames
        assert clip.attrs["text"] in SHORT and clip.attrs["voice"] in ("en-us", "en-gb+f2")
        assert clip.frames.shape == (n, 256, 256, 3) and clip.landmarks.shape == (n, 478, 2)
        assert len(clip.audio) == n * 640 and np.abs(clip.audio).max() > 0.05
        assert abs(clip.phoneme_items[-1][2] - n / 25) < 0.03  # the speech fills the clip (half a frame of rounding)
        c = clip.coeffs
        assert c["expression"].shape == (n, 33) and c["pose"].shape == (n, 6) and clip.image_size == (256, 256)
        np.testing.assert_allclose(c["shape"], face.shape)
        assert clip.features("mfcc_pitch").shape == (n, 15) and clip.features("mel").shape == (n, 16, 80)
        assert np.asarray(clip.group["blink"]).shape == (n,)
        # the far background is never moved
        corner = np.abs(clip.frames[:, :24, :24].astype(int) - face.image[None, :24, :24].astype(int)).mean()
        assert corner < 2.0


def test_ground_truth_landmarks_and_mouth_follow_the_rendered_frames(synth):
    """MediaPipe on the rendered frames finds the stored landmarks, and the mouth opens with jaw_open."""
    from nodes.face.landmarks import detect_landmarks

    out, _, _ = synth
    ds = open_dataset(str(out / "d.zarr"))
    for clip in ds:
        frames = clip.frames[...]
        det, found = detect_landmarks(frames)
        assert found.all()
        err = np.linalg.norm(det[..., :2] - clip.landmarks[...], axis=-1)
        assert err.mean() < 1.5 and err.mean(axis=1).max() < 2.5, err.mean()
        gap = det[:, 14, 1] - det[:, 13, 1]  # inner lower lip minus inner upper lip, pixels
        jaw = clip.coeffs["expression"][:, 0]
        assert gap.max() - gap.min() > 3.0
        assert np.corrcoef(gap, jaw)[0, 1] > 0.6


def test_mp4_export_decodes_with_sound(synth):
    from nodes.io.media import read_video

    out, _, _ = synth
    ds = open_dataset(str(out / "d.zarr"))
    for clip in ds:
        video = read_video(out / "mp4" / f"{clip.name}.mp4")
        assert len(video.frames) == clip.n_frames and video.fps == 25
        assert abs(len(video.audio.samples) - clip.n_frames * 640) <= 640
        assert np.abs(video.frames.astype(int) - clip.frames[...].astype(int)).mean() < 4  # H.264 at crf 18


def test_clip_plans_are_seeded():
    from nodes.synth.generate import SynthDatasetSettings, plan_clips

    a = plan_clips(SynthDatasetSettings(n_clips=6, seed=1))
    assert a == plan_clips(SynthDatasetSettings(n_clips=6, seed=1))
    assert a != plan_clips(SynthDatasetSettings(n_clips=6, seed=2))
    assert len({p.seed for p in a}) == 6
    # a clip's draws do not depend on how many clips there are
    assert plan_clips(SynthDatasetSettings(n_clips=3, seed=1))[0].text == a[0].text


def test_dataset_node_rejects_bad_parameters(portrait, tmp_path):
    from graphcore.node import NodeError, RunContext
    from nodes.synth.dataset_nodes import MakeSyntheticDataset
    from nodes.types import MorphCoeffs

    model, face = portrait
    ref = MorphCoeffs(face.shape, face.expression[None], face.pose[None], np.zeros(1, np.float32), (256, 256))
    ctx = RunContext("d", "MakeSyntheticDataset", "k", workflow_dir=tmp_path)
    args = dict(portrait=face.image, landmarks=face.landmarks[None], reference=ref, model=model)
    with pytest.raises(NodeError, match="unknown voice"):
        MakeSyntheticDataset({"voices": ["en-us", "klingon"]}).run(ctx, **args)
    with pytest.raises(NodeError, match="min_rate"):
        MakeSyntheticDataset({"min_rate": 200, "max_rate": 150}).run(ctx, **args)
    with pytest.raises(Exception, match="unknown audio feature variant"):
        MakeSyntheticDataset({"features": ["mfcc", "mel"]})
