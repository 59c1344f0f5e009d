"""The dataset format: writer, reader, windows and splits."""
from __future__ import annotations

import numpy as np
import pytest

from nodes.synth.dataset import DatasetError, DatasetWriter, assign_splits, open_dataset


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
    coeffs = c.coeffs
    np.testing.assert_array_equal(coeffs.expression, truth[0]["expression"])
    assert coeffs.image_size == (32, 24)
    assert c.phonemes.items()[1][0] == "i:"
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


def test_splits_are_seeded_and_cover_every_split():
    s = assign_splits(10, seed=1)
    assert s == assign_splits(10, seed=1) and s != assign_splits(10, seed=2)
    assert s.count("train") == 8 and s.count("val") == 1 and s.count("test") == 1
    assert sorted(set(assign_splits(3, seed=0))) == ["test", "train", "val"]
    assert assign_splits(1, seed=0) == ["train"]
