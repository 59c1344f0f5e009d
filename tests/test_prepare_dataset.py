"""Real-data preparation on videos the generator wrote (the real decode path)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from graphcore.node import NodeError, RunContext
from nodes.prepare.videos import retime_indices
from trainers.data.dataset import open_dataset

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Two short synthetic clips as .mp4 (+ their ground truth), a face-less video and a corrupt file."""
    from nodes.face.fitting import fit_coefficients
    from nodes.face.landmarks import detect_landmarks
    from nodes.face.model import load_face_model
    from nodes.io.media import read_image, write_video
    from nodes.synth.generate import SynthDatasetSettings, generate_dataset, resize_portrait

    out = tmp_path_factory.mktemp("prep")
    image = read_image(ROOT / "assets/samples/portrait.png")
    lms, _ = detect_landmarks(image[None], tracking=False)
    model = load_face_model()
    fit = fit_coefficients(model, lms)
    face = resize_portrait(image, lms[0], fit.shape, fit.expression[0], fit.pose[0], 256)
    settings = SynthDatasetSettings(n_clips=2, size=256, seed=11, sentences=("Mama made a map.", "Bob, open the box."),
                                    sentences_per_clip=(1, 1), voices=("en-us",), features=())
    generate_dataset(str(out / "truth.zarr"), face, model, settings, mp4_dir=out / "good")
    noise = np.random.default_rng(0).integers(0, 255, (10, 128, 128, 3), dtype=np.uint8)
    write_video(out / "noface" / "static.mp4", noise, 25.0)
    (out / "corrupt").mkdir()
    (out / "corrupt" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    return out


def _prepare(folder: Path, out: Path, **params):
    from nodes.prepare.prepare_nodes import PrepareDataset

    logs = []
    ctx = RunContext("prepare", "PrepareDataset", "k", workflow_dir=out,
                     emit=lambda kind, data: logs.append((kind, data)))
    node = PrepareDataset({"folder": str(folder), "path": str(out / "prepared.zarr"), "size": 256, **params})
    return node.run(ctx), logs


def test_prepares_generated_videos_into_the_dataset_layout(videos):
    result, logs = _prepare(videos / "good", videos)
    assert result["summary"]["clips"] == 2 and result["summary"]["skipped"] == 0
    progress = [d for k, d in logs if k == "progress"]
    assert progress[0]["message"] == "clip_00000.mp4" and progress[-1]["i"] == 2  # per-file progress
    ds, truth = open_dataset(result["dataset"]), open_dataset(str(videos / "truth.zarr"))
    assert ds.attrs["source"] == "prepared" and ds.attrs["landmark_source"] == "mediapipe"
    for clip, gt in zip(ds, truth):
        n = clip.n_frames
        assert clip.attrs["source_file"] == f"{gt.name}.mp4"
        assert n == gt.n_frames and clip.frames.shape == (n, 256, 256, 3) and len(clip.audio) == n * 640
        assert clip.landmarks.shape == (n, 478, 2) and np.isfinite(clip.landmarks[...]).all()
        c = clip.coeffs
        assert c["expression"].shape == (n, 33) and float(np.mean(c["error"])) < 2.0
        assert clip.features("mfcc_pitch").shape == (n, 15)
        crop = clip.attrs["crop"]
        assert crop["size"] == 256 and tuple(crop["frame_size"]) == (256, 256)
        # the fitted mouth follows the generator's ground truth
        assert np.corrcoef(c["expression"][:, 0], gt.coeffs["expression"][:, 0])[0, 1] > 0.6
        # the sound survives AAC: same envelope as the generator's audio
        env = lambda a: np.sqrt((a.reshape(n, 640) ** 2).mean(1))  # noqa: E731
        assert np.corrcoef(env(clip.audio), env(gt.audio))[0, 1] > 0.9


def test_a_bad_video_is_named_or_skipped(videos, tmp_path):
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    shutil.copy(videos / "good" / "clip_00000.mp4", mixed / "a_good.mp4")
    shutil.copy(videos / "corrupt" / "broken.mp4", mixed / "b_broken.mp4")
    shutil.copy(videos / "noface" / "static.mp4", mixed / "c_static.mp4")
    with pytest.raises(NodeError, match="b_broken.mp4"):
        _prepare(mixed, tmp_path)
    result, logs = _prepare(mixed, tmp_path, on_error="skip")
    assert result["summary"]["clips"] == 1 and result["summary"]["skipped"] == 2
    messages = " ".join(d["message"] for k, d in logs if k == "log")
    assert "b_broken.mp4" in messages and "c_static.mp4" in messages and "no face" in messages
    ds = open_dataset(result["dataset"])
    assert ds.names == ["clip_00000"] and ds.clip(0).attrs["source_file"] == "a_good.mp4"
    with pytest.raises(NodeError, match="no file in .* matches"):
        _prepare(mixed, tmp_path, pattern="*.mov")


def test_retiming_to_the_dataset_rate():
    np.testing.assert_array_equal(retime_indices(10, 25.0, 25.0), np.arange(10))
    idx = retime_indices(30, 30.0, 25.0)  # one second at 30 fps -> 25 frames
    assert len(idx) == 25 and idx[0] == 0 and idx[-1] == 28 and np.all(np.diff(idx) >= 1)
    idx = retime_indices(15, 15.0, 25.0)  # upsampling repeats frames
    assert len(idx) == 25 and idx.max() == 14 and np.all(np.diff(idx) >= 0)
