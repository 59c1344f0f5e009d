"""Audio2Head's supervised mouth keypoints (nodes/audio2head/mouth.py, issue 11): the point
convention, carrying with the head, growing a checkpoint without changing what it renders, the
trainer option, the nodes' checks, and silence -> a closed, still mouth in the workflow."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from audio2head_helpers import one_thread  # noqa: F401 (autouse fixture)
from engine_helpers import ROOT, ctx_for, graphrun
from hdtf_data import write_toy_dataset

from graphcore.node import NodeError
from graphcore.stream import run_whole
from nodes.audio2head import a2h_nodes as A
from nodes.audio2head.mouth import (
    MOUTH_LANDMARKS,
    N_MOUTH_KP,
    carry_with_head,
    grow_state,
    head_only,
    lip_track,
    mirror_points,
    mouth_crop,
    mouth_points,
    with_mouth,
)
from nodes.types import Keypoints

MOUTH_CHECKPOINT = ROOT / "assets/checkpoints/audio2head/keypoints_mouth_tiny.pt"


def _landmarks(rng: np.random.Generator, size: int = 64) -> np.ndarray:
    return rng.uniform(0, size - 1, (478, 2)).astype(np.float32)


def test_mouth_points_follow_the_keypoint_convention():
    lm = np.zeros((478, 2), np.float32)
    lm[13], lm[14], lm[78], lm[308] = (0, 0), (63, 63), (0, 63), (31.5, 0)
    p = mouth_points(lm, (64, 64))
    np.testing.assert_allclose(p, [[-1, -1], [1, 1], [-1, 1], [0, -1]], atol=1e-6)
    # mirroring the image (x -> W-1-x) mirrors the points, and the corners keep their image side
    rng = np.random.default_rng(0)
    lm = _landmarks(rng)
    flipped = lm.copy()
    flipped[:, 0] = 63 - flipped[:, 0]
    got = mirror_points(mouth_points(lm, (64, 64)))
    want = mouth_points(flipped, (64, 64))
    np.testing.assert_allclose(got[:2], want[:2], atol=1e-6)
    np.testing.assert_allclose(got[2:], want[[3, 2]], atol=1e-6)
    with pytest.raises(ValueError, match="478"):
        mouth_points(np.zeros((68, 2)), (64, 64))
    assert len(MOUTH_LANDMARKS) == N_MOUTH_KP == 4


def test_mouth_is_carried_by_the_head_motion():
    rng = np.random.default_rng(1)
    src = rng.uniform(-0.6, 0.6, (10, 2))
    theta = np.linspace(0, 0.2, 5)
    rot = np.stack([[[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]] for t in theta])  # (T, 2, 2)
    shift = np.stack([theta, -theta], 1)[:, None]
    drv = np.einsum("tij,kj->tki", 1.1 * rot, src) + shift
    mouth = rng.uniform(-0.2, 0.2, (5, 4, 2))
    want = np.einsum("tij,tkj->tki", 1.1 * rot, mouth) + shift
    np.testing.assert_allclose(carry_with_head(src, drv, mouth), want, atol=1e-5)
    np.testing.assert_allclose(carry_with_head(src, np.repeat(src[None], 5, 0), mouth), mouth, atol=1e-6)  # still head
    # head_only: a head-like (affine) motion is kept exactly, Jacobians included; the rest is dropped
    jac = rng.uniform(0.5, 1.0, (1, 10, 2, 2)).astype(np.float32)
    source = Keypoints(src[None].astype(np.float32), jac)
    moved = Keypoints(drv.astype(np.float32), np.einsum("tij,kjl->tkil", 1.1 * rot, jac[0]).astype(np.float32))
    kept = head_only(source, moved)
    np.testing.assert_allclose(kept.value, moved.value, atol=1e-5)
    np.testing.assert_allclose(kept.jacobian, moved.jacobian, atol=1e-5)
    wobble = Keypoints(moved.value + rng.normal(0, 0.02, moved.value.shape).astype(np.float32), moved.jacobian)
    assert np.abs(head_only(source, wobble).value - moved.value).max() < np.abs(wobble.value - moved.value).max()


def test_lip_track_in_chunks_equals_whole():
    # a long clip's mouth is computed a few hundred frames at a time (flat memory, issue 16)
    from nodes.face.model import N_EXPRESSION, N_SHAPE, load_face_model
    from nodes.types import MorphCoeffs

    rng = np.random.default_rng(3)
    ref = MorphCoeffs(rng.normal(0, 0.5, N_SHAPE).astype(np.float32), np.zeros((1, N_EXPRESSION), np.float32),
                      np.array([[0.05, -0.1, 0.02, 1.0, -2.0, 1.0]], np.float32), np.zeros(1, np.float32), (96, 128))
    lm = rng.uniform(0, 95, (478, 2)).astype(np.float32)
    expression = rng.uniform(0, 1, (23, N_EXPRESSION)).astype(np.float32)
    whole = lip_track(load_face_model(), lm, ref, expression, (96, 128), chunk=1000)
    chunked = lip_track(load_face_model(), lm, ref, expression, (96, 128), chunk=5)
    assert whole.shape == (23, N_MOUTH_KP, 2) and np.ptp(whole, axis=0).max() > 0
    np.testing.assert_array_equal(chunked, whole)


def test_mouth_crop_centres_the_box():
    img = torch.zeros(1, 1, 65, 65)
    img[0, 0, 32, 32] = 1.0
    crop = mouth_crop(img, torch.zeros(1, 2), torch.tensor([0.25]), size=17)
    assert crop[0, 0].argmax().item() == 8 * 17 + 8  # the image centre is the crop's centre


def _autoencoders():
    from nodes.audio2head.keypoint_autoencoder import KeypointAutoencoder
    from nodes.audio2head.models import KEYPOINT_AUTOENCODER
    from nodes.model_registry import model_config

    torch.manual_seed(0)
    cfg = model_config(KEYPOINT_AUTOENCODER, "tiny")
    plain = KeypointAutoencoder(cfg).eval()
    grown = model_config(KEYPOINT_AUTOENCODER, {**cfg.model_dump(), "renderer": {**cfg.renderer.model_dump(), "mouth_kp": 4}})
    return plain, KeypointAutoencoder(grown).eval()


def test_growing_a_checkpoint_keeps_what_it_renders():
    plain, mouth = _autoencoders()
    grown = grow_state(mouth, plain.state_dict(), mask_bias=-40.0)
    assert "renderer.dense_motion.mask.weight" in grown and not any(n.startswith("detector.") for n in grown)
    with pytest.raises(ValueError, match="mouth keypoints"):
        mouth(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64))
    src, drv = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    lips = torch.rand(2, 4, 2) - 0.5
    with torch.no_grad():
        before = plain(src, drv)["prediction"]
        after = mouth(src, drv, lips, lips + 0.05)["prediction"]  # the new inputs start at zero: ignored
    assert (after - before).abs().max().item() < 1e-4
    kp = with_mouth({"value": torch.zeros(2, 10, 2), "jacobian": torch.eye(2).expand(2, 10, 2, 2)}, lips)
    assert kp["value"].shape == (2, 14, 2) and torch.equal(kp["jacobian"][:, 10:], torch.eye(2).expand(2, 4, 2, 2))


@pytest.fixture(scope="module")
def toy_dataset(tmp_path_factory):
    return write_toy_dataset(tmp_path_factory.mktemp("data") / "toy.zarr", n_clips=3, n_frames=20, size=64)


def test_mouth_training_grows_and_learns(toy_dataset, tmp_path):
    from nodes.audio2head.train_keypoints import KeypointTask, KeypointTrainSettings
    from trainers.exports import read_model_export

    plain = tmp_path / "plain.pt"
    out = A.TrainKeypointRenderer(A.TrainKeypointRenderer.Params(steps=2, batch_size=2, frame_size=64, threads=1,
                                                                 save_to=str(plain))).run(ctx_for(tmp_path), toy_dataset)
    assert plain.is_file() and out["checkpoint"] is not None
    task = KeypointTask(KeypointTrainSettings(dataset=toy_dataset, frame_size=64, mouth_keypoints=True, lambda_mouth=10.0,
                                              grow_from=str(plain), freeze_detector=True))
    torch.manual_seed(0)
    task.build()
    task.on_train_start(lambda msg: None)
    batch = task.sample_batch(np.random.default_rng(0), 2)
    assert batch["mouth_source"].shape == (2, 4, 2) and batch["mouth_driving"].abs().max() <= 1.0
    detector = {k: v.clone() for k, v in task.generator.detector.state_dict().items()}
    opt = torch.optim.Adam([p for p in task.generator.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for _ in range(6):
        step = task.generator_step(batch, use_gan=False)
        assert "mouth" in step.logs and "eq_value" not in step.logs  # frozen detector: no equivariance terms
        losses.append(step.loss.item())
        opt.zero_grad()
        step.loss.backward()
        opt.step()
    assert losses[-1] < losses[0]
    assert all(torch.equal(v, task.generator.detector.state_dict()[k]) for k, v in detector.items())
    assert task.model_config()["renderer"]["mouth_kp"] == 4
    assert read_model_export(str(plain), "keypoint_autoencoder", "")["model_config"]["renderer"]["mouth_kp"] == 0
    with pytest.raises(NodeError, match="mouth_keypoints: true"):
        A.TrainKeypointRenderer(A.TrainKeypointRenderer.Params(steps=1, frame_size=64, grow_from=str(plain))).run(
            ctx_for(tmp_path), toy_dataset)


def _still(n: int, k: int = 10) -> Keypoints:
    v = np.random.default_rng(2).uniform(-0.5, 0.5, (1, k, 2)).astype(np.float32)
    return Keypoints(np.repeat(v, n, 0), np.broadcast_to(np.eye(2, dtype=np.float32), (n, k, 2, 2)).copy())


@pytest.mark.skipif(not MOUTH_CHECKPOINT.is_file(), reason="the mouth checkpoint is made by train_audio2head_mouth.yaml")
def test_renderer_refuses_missing_or_unfit_mouth_inputs(tmp_path):
    image = np.full((64, 64, 3), 128, np.uint8)
    node = A.KeypointRenderer(A.KeypointRenderer.Params(size=64, checkpoint=str(MOUTH_CHECKPOINT)))
    with pytest.raises(NodeError, match="connect `mouth` and `source_mouth`"):
        run_whole(node, ctx_for(tmp_path), reference=image, keypoints=_still(3))
    with pytest.raises(NodeError, match="3 points"):
        run_whole(node, ctx_for(tmp_path), reference=image, keypoints=_still(3), mouth=_still(3, 3), source_mouth=_still(1, 3))
    with pytest.raises(NodeError, match="1 frames of mouth keypoints for 5"):
        run_whole(node, ctx_for(tmp_path), reference=image, keypoints=_still(5), mouth=_still(1, 4), source_mouth=_still(1, 4))
    plain = A.KeypointRenderer(A.KeypointRenderer.Params(size=64))
    with pytest.raises(NodeError, match="the checkpoint has none"):
        run_whole(plain, ctx_for(tmp_path), reference=image, keypoints=_still(3), mouth=_still(3, 4), source_mouth=_still(1, 4))


def _inner_lip_gap(frames: np.ndarray) -> np.ndarray:
    """MediaPipe inner-lip gap (13-14) over the eye-corner distance (33-263), per frame."""
    from nodes.face.landmarks import detect_landmarks

    lm, found = detect_landmarks(frames, tracking=False)
    assert found.all()
    return np.linalg.norm(lm[:, 13, :2] - lm[:, 14, :2], axis=1) / np.linalg.norm(lm[:, 33, :2] - lm[:, 263, :2], axis=1)


@pytest.mark.skipif(not MOUTH_CHECKPOINT.is_file(), reason="the mouth checkpoint is made by train_audio2head_mouth.yaml")
def test_silence_gives_a_closed_still_mouth(tmp_path):
    """audio2head.yaml on 2 s of digital silence: the lips close (the sample portrait's own are
    parted) and stay closed; the same nodes on speech open them."""
    from nodes.io.media import read_video, write_audio
    from nodes.synth.speech import synthesize
    from nodes.types import AudioClip

    pytest.importorskip("pocketsphinx")
    results = {}
    for name, audio in (("silence", AudioClip(np.zeros(32000, np.float32), 16000)),
                        ("speech", synthesize("Please pass me the blue bowl.", voice="en-gb-x-rp", rate=160))):
        wav, video = tmp_path / f"{name}.wav", tmp_path / f"{name}.mp4"
        write_audio(wav, audio)
        res = graphrun(ROOT / "workflows/audio2head.yaml", "--cache", tmp_path / "cache", "--set", f"speech.path={wav}",
                       "--set", f"save.path={video}", "--set", "save.preset=ultrafast", "--set", "save.crf=12")
        assert res.returncode == 0, res.stdout + res.stderr
        results[name] = _inner_lip_gap(read_video(video).frames)
    from nodes.io.media import read_image

    portrait = _inner_lip_gap(read_image(ROOT / "assets/samples/portrait.png")[None])[0]
    quiet, talk = results["silence"], results["speech"]
    # measured: portrait 0.113, silence mean 0.073 (p90 0.081, std 0.011), speech median 0.130 (std 0.027);
    # MediaPipe on the blurry tiny renders wobbles by about +-0.01 even for a still mouth: means and spreads
    assert quiet.mean() < 0.75 * portrait, (quiet.mean(), portrait)  # closed (the portrait's own lips are parted)
    assert np.percentile(quiet, 90) < np.median(talk), (np.percentile(quiet, 90), np.median(talk))  # speech opens it
    assert quiet.std() < 0.6 * talk.std(), (quiet.std(), talk.std())  # and silence keeps it still


@pytest.mark.skipif(not MOUTH_CHECKPOINT.is_file(), reason="the mouth checkpoint is made by train_audio2head_mouth.yaml")
def test_table2_evaluation_refuses_a_mouth_checkpoint(toy_dataset, tmp_path):
    node = A.EvaluateAudio2Head(A.EvaluateAudio2Head.Params(keypoints_checkpoint=str(MOUTH_CHECKPOINT), path=str(tmp_path / "t.md")))
    with pytest.raises(NodeError, match="without mouth keypoints"):
        node.run(ctx_for(tmp_path), toy_dataset)
