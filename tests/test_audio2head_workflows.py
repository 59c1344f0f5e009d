"""The Audio2Head workflows: audio2head.yaml runs from `graphrun` with the
bundled checkpoints (a 12-frame prefix of the sample speech, fresh cache)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from engine_helpers import ROOT, graphrun


def test_bundled_checkpoints_key_the_cache():
    """A node that falls back to a bundled checkpoint names it as an implicit file (its content
    is then part of the cache key); a connected checkpoint or a set parameter replaces it."""
    from nodes.audio2head.a2h_nodes import EvaluateAudio2Head, MotionFieldGenerator, TrainMotionFieldGenerator

    bundled = MotionFieldGenerator(MotionFieldGenerator.Params()).implicit_files(frozenset())
    assert [p.name for p in bundled.values()] == ["motion_field_tiny.pt"] and all(p.is_file() for p in bundled.values())
    assert MotionFieldGenerator(MotionFieldGenerator.Params()).implicit_files(frozenset({"checkpoint"})) == {}
    assert MotionFieldGenerator(MotionFieldGenerator.Params(checkpoint="x.pt")).implicit_files(frozenset()) == {}
    train = TrainMotionFieldGenerator(TrainMotionFieldGenerator.Params())
    assert [p.name for p in train.implicit_files(frozenset()).values()] == ["keypoints_tiny.pt"]
    assert train.implicit_files(frozenset({"keypoints"})) == {}
    names = {p.name for p in EvaluateAudio2Head(EvaluateAudio2Head.Params()).implicit_files(frozenset()).values()}
    assert names == {"keypoints_tiny.pt", "head_motion_tiny.pt", "motion_field_tiny.pt", "head_motion_l1_tiny.pt"}


def test_audio2head_workflow_makes_a_video_with_sound(tmp_path: Path):
    video = tmp_path / "a2h.mp4"
    res = graphrun(ROOT / "workflows/audio2head.yaml", "--cache", tmp_path / "cache", "--set", "features.num_frames=12",
                   "--set", f"save.path={video}", "--set", "save.preset=ultrafast")
    assert res.returncode == 0, res.stdout + res.stderr
    from nodes.io.media import read_video

    v = read_video(video)
    assert v.frames.shape == (12, 256, 256, 3) and v.audio is not None and abs(v.fps - 25) < 1e-6
    moved = np.abs(v.frames[1:].astype(int) - v.frames[:-1].astype(int)).mean(axis=(1, 2, 3))
    assert moved.max() > 0.1  # the keypoints move the face
