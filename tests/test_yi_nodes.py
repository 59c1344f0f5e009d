"""Yi et al. nodes: trainer nodes make checkpoints that the inference nodes run with; a tiny
training run reduces the loss; personalisation; HS; missing checkpoints; schema facts."""
from __future__ import annotations

import numpy as np
import pytest
from yi_data import write_yi_dataset

from graphcore.node import NodeError, RunContext
from graphcore.stream import run_whole
from graphcore.types import CheckpointBlob
from nodes.types import FeatureSeq
from nodes.yi import yi_nodes as Y


def ctx_for(tmp_path, node="n", logs=None):
    logs = logs if logs is not None else []
    return RunContext(node_id=node, node_type=node, key="k" * 64, tmp_dir=tmp_path, workflow_dir=tmp_path,
                      emit=lambda kind, data: logs.append((kind, data)))


@pytest.fixture(scope="module")
def toy_dataset(tmp_path_factory):
    return write_yi_dataset(tmp_path_factory.mktemp("data") / "yi.zarr", n_clips=4, n_frames=32, size=64)


@pytest.fixture(scope="module")
def trained(toy_dataset, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    audio = Y.TrainAudioToExpressionPose({"steps": 40, "batch_size": 8, "window": 16, "threads": 1,
                                          "work_dir": str(tmp / "audio")}).run(ctx_for(tmp), dataset=toy_dataset)
    logs = []
    gan = Y.TrainMemoryGAN({"steps": 6, "batch_size": 2, "frame_size": 128, "identity_variants": 2, "max_clips": 1,
                            "threads": 1, "work_dir": str(tmp / "gan"), "save_to": str(tmp / "gan.pt")}).run(
        ctx_for(tmp, "TrainMemoryGAN", logs), dataset=toy_dataset)
    return audio, gan, tmp, logs


def test_schema_reports_parameter_counts():
    facts = Y.MemoryGAN.schema()["models"]["yi_memory_gan"]
    assert facts["official_parameters"] == {"generator": 259e6, "encoder": 11.44e6}
    assert facts["parameters"]["tiny"] < facts["parameters"]["paper"]
    assert Y.AudioToExpressionPose.schema()["models"]["yi_audio_exp_pose"]["official_parameters"] == {"total": 29.4e6}


def test_audio_training_reduces_the_loss(trained):
    audio, _, _, _ = trained
    from trainers.loop import read_metrics

    rows = read_metrics(trained[2] / "audio" / "metrics.jsonl")
    assert audio["metrics"]["steps"] == 40
    first, last = rows[0], rows[-1]
    assert last["exp_mse"] + 0.2 * last["pose_mse"] < first["exp_mse"] + 0.2 * first["pose_mse"]


def test_memory_gan_trainer_outputs(trained):
    _, gan, tmp, logs = trained
    assert isinstance(gan["checkpoint"], CheckpointBlob) and gan["checkpoint"].meta["step"] == 6
    assert {"l1", "attention", "mem_triplet", "d_gan"} <= set(gan["metrics"])
    assert (tmp / "gan.pt").read_bytes() == gan["checkpoint"].data
    assert any("identity features: the project's own" in d.get("message", "") for k, d in logs if k == "log")
    from trainers.loop import read_metrics

    rows = read_metrics(tmp / "gan" / "metrics.jsonl")
    assert rows[-1]["l1"] < rows[0]["l1"] and rows[-1]["mem_items"] > 0


def _target(dataset, frames=24):
    from nodes.types import MorphCoeffs
    from trainers.data.dataset import open_dataset

    clip = open_dataset(dataset).clip(3)
    coeffs = MorphCoeffs(**clip.coeffs, image_size=clip.image_size)
    return (np.asarray(clip.frames[:frames]), np.asarray(clip.landmarks[:frames]), coeffs, clip)


def test_pipeline_nodes_run_with_trainer_checkpoints(trained, toy_dataset, tmp_path):
    from nodes.types import MorphCoeffs
    from trainers.data.audio_features import audio_features

    audio, gan, _, _ = trained
    frames, _, coeffs, clip = _target(toy_dataset)
    c = MorphCoeffs(coeffs.shape, coeffs.expression[:24], coeffs.pose[:24], coeffs.error[:24], coeffs.image_size)
    feats = FeatureSeq(audio_features(clip.audio, 16000, "mfcc_window", fps=25, num_frames=20), 25.0, "mfcc_window")
    ctx = ctx_for(tmp_path)
    out = Y.AudioToExpressionPose({}).run(ctx, features=feats, target=c, checkpoint=audio["checkpoint"])["coeffs"]
    assert out.expression.shape == (20, 33) and out.pose.shape == (20, 6) and out.image_size == (64, 64)
    still = Y.AudioToExpressionPose({"predict_pose": False}).run(ctx, features=feats, target=c, checkpoint=audio["checkpoint"])
    assert np.allclose(still["coeffs"].pose, c.pose.mean(0), atol=1e-5)
    rendered = run_whole(Y.Render3DMM({"key_window": 9}), ctx, coeffs=out, target_coeffs=c, target_frames=frames)
    assert rendered["frames"].shape == (20, 64, 64, 3) and rendered["face_mask"].max() == 1.0
    single = run_whole(Y.Render3DMM({}), ctx, coeffs=out, target_coeffs=MorphCoeffs(
        c.shape, c.expression[:1], c.pose[:1], c.error[:1], c.image_size), target_image=frames[0])
    assert np.array_equal(single["background"][5], frames[0])
    refined = run_whole(Y.MemoryGAN({"chunk": 7}), ctx, rendered=rendered["frames"], checkpoint=gan["checkpoint"])
    assert refined["frames"].shape == (20, 64, 64, 3) and refined["attention"].shape == (20, 64, 64)
    assert np.isfinite(refined["retrieval_score"]).all()
    mean = run_whole(Y.MemoryGAN({"identity": "mean"}), ctx, rendered=rendered["frames"], checkpoint=gan["checkpoint"])
    assert np.isnan(mean["retrieval_score"]).all()
    hs = Y.HeadPoseSimilarity({}).run(ctx, real=c, generated=rendered["coeffs"])["metrics"]
    assert 0 <= hs["hs"] <= 1


def test_personalisation_nodes(trained, toy_dataset, tmp_path):
    from trainers.data.audio_features import audio_features

    audio, gan, _, _ = trained
    frames, lms, coeffs, clip = _target(toy_dataset, frames=32)
    feats = FeatureSeq(audio_features(clip.audio, 16000, "mfcc_window", fps=25, num_frames=32), 25.0, "mfcc_window")
    p = Y.PersonalizeAudioToExpressionPose({"steps": 5, "batch_size": 2, "window": 8, "threads": 1, "work_dir": str(tmp_path / "pa")})
    out = p.run(ctx_for(tmp_path), features=feats, coeffs=coeffs, checkpoint=audio["checkpoint"])
    assert out["checkpoint"].meta["data"]["personalised"] and out["checkpoint"].meta["step"] == 5
    p = Y.PersonalizeMemoryGAN({"steps": 2, "batch_size": 2, "threads": 1, "work_dir": str(tmp_path / "pg")})
    out = p.run(ctx_for(tmp_path), frames=frames, landmarks=lms, coeffs=coeffs, checkpoint=gan["checkpoint"])
    assert out["checkpoint"].meta["data"]["personalised"]


def test_missing_checkpoint_names_the_trainer(tmp_path):
    from nodes.types import MorphCoeffs

    c = MorphCoeffs(np.zeros(60, np.float32), np.zeros((2, 33), np.float32), np.zeros((2, 6), np.float32),
                    np.zeros(2, np.float32), (64, 64))
    feats = FeatureSeq(np.zeros((4, 28, 12), np.float32), 25.0, "mfcc_window")
    with pytest.raises(NodeError, match="train_yi_audio.yaml"):
        Y.AudioToExpressionPose({"checkpoint": "nope.pt"}).run(ctx_for(tmp_path), features=feats, target=c)
    with pytest.raises(NodeError, match="train_memorygan.yaml"):
        run_whole(Y.MemoryGAN({"checkpoint": "nope.pt"}), ctx_for(tmp_path), rendered=np.zeros((2, 64, 64, 3), np.uint8))
    with pytest.raises(NodeError, match="mfcc_window"):
        Y.AudioToExpressionPose({"checkpoint": "nope.pt"}).run(
            ctx_for(tmp_path), features=FeatureSeq(np.zeros((4, 15), np.float32), 25.0, "mfcc_pitch"), target=c)


def test_head_pose_similarity_properties():
    from nodes.metrics.head_pose import head_pose_similarity

    rng = np.random.default_rng(0)
    real = np.zeros((200, 6))
    real[:, :3] = rng.normal(0, 0.1, (200, 3))
    assert head_pose_similarity(real, real)["hs"] == pytest.approx(1.0)
    # a permutation of the frames has the same histograms
    assert head_pose_similarity(real, real[rng.permutation(200)])["hs"] == pytest.approx(1.0)
    shifted = real.copy()
    shifted[:, 1] += np.radians(6)  # every yaw 6 degrees further: W1 = 6 deg / 60 deg range
    m = head_pose_similarity(real, shifted, bins=600, limit=30)
    assert m["w1_yaw"] == pytest.approx(0.1, abs=0.01) and m["hs_pitch"] == pytest.approx(1.0)
    still = np.zeros((200, 6))
    assert head_pose_similarity(real, still)["hs"] < head_pose_similarity(real, real * 0.8)["hs"] < 1.0
    with pytest.raises(ValueError):
        head_pose_similarity(real, np.zeros((0, 6)))


def test_bundled_memory_gan_has_a_filled_memory():
    from nodes.bundled import asset_path
    from nodes.checkpoints import load_model

    gan, _ = load_model(asset_path("checkpoints/yi/memory_gan_tiny.pt"), "yi_memory_gan")
    assert gan.memory.n_filled > 0
