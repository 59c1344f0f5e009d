"""HDTF nodes: schema facts, training nodes feeding inference nodes, errors, figures, caching."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from engine_helpers import ctx_for
from hdtf_data import write_toy_dataset

from graphcore.node import NodeError
from graphcore.stream import run_whole
from graphcore.types import CheckpointBlob
from nodes.hdtf import hdtf_nodes as H
from nodes.types import FeatureSeq, MorphCoeffs


@pytest.fixture(scope="module")
def toy_dataset(tmp_path_factory):
    return write_toy_dataset(tmp_path_factory.mktemp("data") / "toy.zarr", n_clips=4, n_frames=40, size=64)


def test_describe_reports_the_models_it_runs():
    facts = H.FlowVideoGenerator.schema()["models"]["flow_video_generator"]
    assert facts["official_parameters"] == {"total": 20.4e6} and facts["parameters"]["tiny"] < facts["parameters"]["paper"]
    assert set(H.AnimationGenerator.schema()["models"]["animation_generator"]["parameters"]) == {"paper", "tiny"}
    assert list(H.EvaluateHDTF.schema()["params"]["properties"])[:2] == ["animation_checkpoint", "video_checkpoint"]


@pytest.fixture(scope="module")
def trained(toy_dataset, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    logs = []
    node = H.TrainAnimationGenerator({"steps": 12, "batch_size": 4, "window": 16, "threads": 1, "work_dir": str(tmp / "work"),
                                      "save_to": str(tmp / "anim.pt")})
    out = node.run(ctx_for(tmp, "TrainAnimationGenerator", logs), dataset=toy_dataset)
    return out, tmp, logs


def test_training_node_outputs_checkpoint_metrics_and_curve(trained):
    out, tmp, logs = trained
    assert isinstance(out["checkpoint"], CheckpointBlob) and out["checkpoint"].meta["step"] == 12
    assert out["metrics"]["steps"] == 12 and "l1_mouth" in out["metrics"]
    assert out["loss_curve"].ndim == 3 and out["loss_curve"].dtype == np.uint8
    assert (tmp / "anim.pt").read_bytes() == out["checkpoint"].data
    assert any(kind == "progress" and d["i"] == 12 for kind, d in logs)


def test_training_node_continues_from_an_init_checkpoint(trained, toy_dataset, tmp_path):
    _, tmp, _ = trained
    logs = []
    out = H.TrainAnimationGenerator({"steps": 3, "batch_size": 4, "window": 16, "threads": 1, "gan_start": 0,
                                     "work_dir": str(tmp_path / "work"), "init": str(tmp / "work" / "last.pt")}).run(
        ctx_for(tmp_path, "TrainAnimationGenerator", logs), dataset=toy_dataset)
    assert out["checkpoint"].meta["step"] == 3
    assert any(kind == "log" and "initialised the generator, discriminator" in str(d) and "step 12 of that run" in str(d)
               for kind, d in logs)
    torch.save({"format": "talkgraph.model/1", "task": "yi.audio_to_expression"}, tmp_path / "other.pt")
    with pytest.raises(NodeError, match="TrainAnimationGenerator: init checkpoint .*other.pt is not a hdtf.animation_generator"):
        H.TrainAnimationGenerator({"steps": 3, "window": 16, "threads": 1, "work_dir": str(tmp_path / "work2"),
                                   "init": str(tmp_path / "other.pt")}).run(ctx_for(tmp_path), dataset=toy_dataset)


def _reference(size=64):
    angles = np.linspace(0, 2 * np.pi, 478, endpoint=False)
    lm = np.stack([size / 2 + 18 * np.cos(angles), size / 2 + 18 * np.sin(angles)], -1).astype(np.float32)[None]
    img = np.full((size, size, 3), 120, np.uint8)
    coeffs = MorphCoeffs(np.zeros(60, np.float32), np.zeros((1, 33), np.float32),
                         np.array([[0, 0, 0, size / 2, size / 2, 0]], np.float32), np.zeros(1, np.float32), (size, size))
    return img, lm, coeffs


def test_animation_generator_node_from_connected_checkpoint(trained, tmp_path):
    out, _, _ = trained
    img, lm, coeffs = _reference()
    feats = FeatureSeq(np.random.default_rng(0).normal(size=(30, 15)).astype(np.float32), 25.0, "mfcc_pitch")
    logs = []
    res = H.AnimationGenerator().run(ctx_for(tmp_path, logs=logs), features=feats, reference=img, landmarks=lm,
                                      coeffs=coeffs, checkpoint=out["checkpoint"])["coeffs"]
    assert res.expression.shape == (30, 33) and res.pose.shape == (30, 6) and res.image_size == (64, 64)
    assert res.expression.min() >= 0 and res.expression.max() <= 1.5
    np.testing.assert_array_equal(res.shape, coeffs.shape)
    assert any("fallback" in d.get("message", "") for _, d in logs)
    plain = H.AnimationGenerator({"style": False}).run(ctx_for(tmp_path), features=feats, reference=img, landmarks=lm,
                                                        coeffs=coeffs, checkpoint=out["checkpoint"])["coeffs"]
    assert not np.allclose(plain.expression, res.expression)


def test_wrong_features_and_missing_checkpoint_are_clear(trained, tmp_path):
    out, _, _ = trained
    img, lm, coeffs = _reference()
    mel = FeatureSeq(np.zeros((30, 80, 16), np.float32), 25.0, "mel")
    with pytest.raises(NodeError, match="mfcc_pitch"):
        H.AnimationGenerator().run(ctx_for(tmp_path), features=mel, reference=img, landmarks=lm, coeffs=coeffs,
                                   checkpoint=out["checkpoint"])
    feats = FeatureSeq(np.zeros((30, 15), np.float32), 25.0, "mfcc_pitch")
    with pytest.raises(NodeError, match="trained on phonetic features .*set AudioFeatures variant: phonetic"):
        H.AnimationGenerator().run(ctx_for(tmp_path), features=feats, reference=img, landmarks=lm, coeffs=coeffs)
    with pytest.raises(NodeError, match="TrainAnimationGenerator"):
        H.AnimationGenerator({"checkpoint": str(tmp_path / "nope.pt")}).run(
            ctx_for(tmp_path), features=feats, reference=img, landmarks=lm, coeffs=coeffs)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(NodeError, match="junk.pt"):
        run_whole(H.FlowVideoGenerator({"checkpoint": str(tmp_path / "junk.pt")}),
                  ctx_for(tmp_path), reference=img, flow=np.zeros((2, 64, 64, 2), np.float32))
    with pytest.raises(NodeError, match="not a 'flow_video_generator'"):
        run_whole(H.FlowVideoGenerator(), ctx_for(tmp_path), reference=img, flow=np.zeros((2, 64, 64, 2), np.float32),
                  checkpoint=out["checkpoint"])


def test_flow_video_nodes_and_figures(toy_dataset, tmp_path, monkeypatch):
    from test_hdtf_train_flow_video import toy_flow

    import nodes.hdtf.train_flow_video as tfv

    monkeypatch.setattr(tfv, "default_flow_builder", lambda: toy_flow)
    trained = H.TrainFlowVideoGenerator({"steps": 4, "batch_size": 2, "frame_size": 64, "crop": 32, "threads": 1,
                                         "work_dir": str(tmp_path / "work")}).run(ctx_for(tmp_path), dataset=toy_dataset)
    img, _, _ = _reference()
    flow = np.zeros((5, 64, 64, 2), np.float32)
    flow[..., 0] = np.linspace(0, 4, 5)[:, None, None]
    out = run_whole(H.FlowVideoGenerator({"chunk": 2}), ctx_for(tmp_path), reference=img, flow=flow,
                    checkpoint=trained["checkpoint"])
    assert out["frames"].shape == (5, 64, 64, 3) and out["frames"].dtype == np.uint8
    assert out["foreground_mask"].shape == (5, 16, 16) and out["warped_reference"].shape == (5, 16, 16, 3)
    assert out["revised_flow"].shape == (5, 16, 16, 2)
    fig = H.FlowVideoFigure({"path": str(tmp_path / "fig9.png"), "frames_shown": 3}).run(
        ctx_for(tmp_path), flow=flow, **{k: out[k] for k in ("warped_reference", "foreground_mask", "revised_flow", "matting_mask", "frames")})
    assert (tmp_path / "fig9.png").stat().st_size > 1000 and fig["image"].shape[1] > 6 * 160
    _, _, coeffs = _reference()
    seq = MorphCoeffs(coeffs.shape, np.random.default_rng(1).uniform(0, 1, (20, 33)).astype(np.float32),
                      np.repeat(coeffs.pose, 20, 0), np.zeros(20, np.float32), (64, 64))
    curves = H.AnimationCurves({"path": str(tmp_path / "fig8.png")}).run(ctx_for(tmp_path), coeffs=seq, coeffs_b=seq)
    assert (tmp_path / "fig8.png").exists() and curves["image"].ndim == 3
