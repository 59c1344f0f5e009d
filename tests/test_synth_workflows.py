"""The generator's workflows run from `graphrun` (CLI subprocess, fresh cache)."""
from __future__ import annotations

import json

import numpy as np
from engine_helpers import ROOT, graphrun


def test_synth_talk_workflow_makes_a_video_with_sound(tmp_path):
    video = tmp_path / "talk.mp4"
    args = [ROOT / "workflows/synth_talk.yaml", "--cache", tmp_path / "cache", "--set", "speech.text=Hi, Bob!",
            "--set", f"video.path={video}", "--set", "video.preset=ultrafast"]
    first = graphrun(*args)
    assert first.returncode == 0, first.stdout + first.stderr
    from nodes.io.media import read_video

    v = read_video(video)
    assert v.frames.shape[1:] == (512, 512, 3) and 15 <= len(v.frames) <= 40 and v.audio is not None
    assert np.abs(v.audio.samples).max() > 0.05
    moved = np.abs(v.frames[1:].astype(int) - v.frames[:-1].astype(int)).mean(axis=(1, 2, 3))
    assert moved.max() > 0.3  # the face moves
    again = graphrun(*args)
    assert again.returncode == 0 and "7 cached" in again.stdout, again.stdout


def test_dataset_workflows_validate(tmp_path):
    assert graphrun("validate", ROOT / "workflows/synth_dataset.yaml").returncode == 0
    folder = tmp_path / "videos"
    folder.mkdir()
    res = graphrun("validate", ROOT / "workflows/prepare_dataset.yaml", "--set", f"prepare.folder={folder}")
    assert res.returncode == 0, res.stdout + res.stderr
    res = graphrun("validate", ROOT / "workflows/prepare_dataset.yaml", "--set", f"prepare.folder={tmp_path / 'nope'}")
    assert res.returncode != 0 and "file not found" in res.stdout + res.stderr


def test_synth_dataset_workflow_writes_a_readable_dataset(tmp_path):
    out = tmp_path / "ds.zarr"
    res = graphrun(ROOT / "workflows/synth_dataset.yaml", "--cache", tmp_path / "cache",
                   "--set", "dataset.n_clips=1", "--set", "dataset.sentences_per_clip=1",
                   "--set", 'dataset.sentences=["Hi, Bob."]', "--set", f"dataset.path={out}",
                   "--set", "dataset.mp4_dir=", "--set", f"summary.path={tmp_path / 'summary.json'}")
    assert res.returncode == 0, res.stdout + res.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    from trainers.data.dataset import open_dataset

    ds = open_dataset(str(out))
    assert summary["clips"] == len(ds) == 1 and summary["frames"] == ds.clip(0).n_frames
    assert ds.clip(0).text == "Hi, Bob."
