"""MetaTalk nodes: the trainers make checkpoints the inference nodes run with (a short training
reduces the loss), the target is retimed to the speech, the renderer changes only the lower half
of the crop, and missing checkpoints or wrong inputs are clear errors naming the trainer."""
from __future__ import annotations

import numpy as np
import pytest
from yi_data import write_yi_dataset

from graphcore.node import NodeError, RunContext
from nodes.metatalk import metatalk_nodes as M
from nodes.types import FeatureSeq, MorphCoeffs


def ctx_for(tmp_path, node="n", logs=None):
    logs = logs if logs is not None else []
    return RunContext(node_id=node, node_type=node, key="k" * 64, tmp_dir=tmp_path, workflow_dir=tmp_path,
                      emit=lambda kind, data: logs.append((kind, data)))


def coeffs(t: int, size: int = 512) -> MorphCoeffs:
    rng = np.random.default_rng(t)
    pose = np.zeros((t, 6), np.float32)
    pose[:, 1] = np.arange(t)
    return MorphCoeffs(np.zeros(60, np.float32), rng.normal(size=(t, 33)).astype(np.float32), pose,
                       np.zeros(t, np.float32), (size, size))


def crops(t: int, size: int = 512) -> np.ndarray:
    y, x = np.mgrid[:size, :size]
    base = np.stack([x * 255 // size, y * 255 // size, (x + y) * 127 // size], -1).astype(np.uint8)
    return np.stack([np.roll(base, 3 * i, axis=1) for i in range(t)])


def test_loop_index_plays_forwards_and_backwards():
    assert M.loop_index(4, 10).tolist() == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3]
    assert M.loop_index(1, 3).tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="no frames"):
        M.loop_index(0, 3)


def test_loop_frames_and_mouth_closed_frame(tmp_path):
    frames = crops(4, 512)[:, :8, :8]
    c = coeffs(4)
    out = M.LoopFrames().run(ctx_for(tmp_path), frames=frames, coeffs=coeffs(7))["frames"]
    np.testing.assert_array_equal(out, frames[[0, 1, 2, 3, 2, 1, 0]])
    c.expression[2, :28] = 0.0  # the mouth-closed frame; its brows may move
    c.expression[2, 28:] = 5.0
    still = M.MouthClosedFrame().run(ctx_for(tmp_path), frames=frames, landmarks=np.zeros((4, 478, 3), np.float32), coeffs=c)
    np.testing.assert_array_equal(still["image"], frames[2])
    assert still["landmarks"].shape == (1, 478, 3) and still["coeffs"].expression.shape == (1, 33)
    with pytest.raises(NodeError, match="4 frames, 3 landmark frames"):
        M.MouthClosedFrame().run(ctx_for(tmp_path), frames=frames, landmarks=np.zeros((3, 478, 3), np.float32), coeffs=c)


@pytest.fixture(scope="module")
def trained_a2e(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("a2e")
    data = write_yi_dataset(tmp / "pseudo.zarr", n_clips=3, n_frames=40, size=64)
    logs = []
    out = M.TrainA2E({"steps": 60, "batch_size": 16, "threads": 1, "work_dir": str(tmp / "work")}).run(
        ctx_for(tmp, "TrainA2E", logs), dataset=data)
    return out, tmp


def test_train_a2e_reduces_the_loss_and_drives_the_target(trained_a2e, tmp_path):
    import json

    out, tmp = trained_a2e
    rows = [json.loads(line) for line in (tmp / "work" / "metrics.jsonl").read_text().splitlines()]
    first, last = np.mean([r["mse"] for r in rows[:3]]), np.mean([r["mse"] for r in rows[-3:]])
    assert last < 0.7 * first, (first, last)
    assert out["metrics"]["steps"] == 60 and out["loss_curve"].ndim == 3
    feats = FeatureSeq(np.random.default_rng(0).normal(size=(9, 28, 80)).astype(np.float32), 25.0, "mfcc80_window")
    target = coeffs(4)
    c = M.A2E().run(ctx_for(tmp_path), features=feats, target=target, checkpoint=out["checkpoint"])["coeffs"]
    assert c.expression.shape == (9, 33) and np.isfinite(c.expression).all()
    np.testing.assert_array_equal(c.pose[:, 1], [0, 1, 2, 3, 2, 1, 0, 1, 2])  # the target's pose, looped
    np.testing.assert_array_equal(c.shape, target.shape)
    assert c.image_size == target.image_size


def test_a2e_errors_name_the_feature_variant_and_the_trainer(tmp_path):
    feats = FeatureSeq(np.zeros((4, 28, 80), np.float32), 25.0, "mfcc80_window")
    with pytest.raises(NodeError, match="train_metatalk.yaml"):
        M.A2E({"checkpoint": "nope.pt"}).run(ctx_for(tmp_path), features=feats, target=coeffs(2))
    with pytest.raises(NodeError, match="mfcc80_window"):
        M.A2E().run(ctx_for(tmp_path), features=FeatureSeq(np.zeros((4, 28, 12), np.float32), 25.0, "mfcc_window"),
                    target=coeffs(2))
    # a bundled checkpoint that was never trained: validation names the workflow that makes it
    for node in (M.A2E, M.NeuralFaceRenderer):
        assert "train_metatalk.yaml" in node.inputs["checkpoint"].file.label


def test_a2e_options_phonetic_input_and_audiodvp_baseline(trained_a2e, tmp_path):
    """TrainA2E's explicit options: `feature: phonetic` trains on 44-D phonetic features (computed
    from the clips' audio) and the A2E node then wants that variant; `network: audiodvp` is Table
    3's shallow baseline. The checkpoints carry the option, the inference node needs no setting."""
    _, tmp = trained_a2e
    phon = M.TrainA2E({"steps": 3, "batch_size": 4, "threads": 1, "feature": "phonetic", "work_dir": str(tmp_path / "p")}).run(
        ctx_for(tmp_path), dataset=str(tmp / "pseudo.zarr"))
    feats = FeatureSeq(np.random.default_rng(1).random((6, 44)).astype(np.float32), 25.0, "phonetic")
    c = M.A2E().run(ctx_for(tmp_path), features=feats, target=coeffs(3), checkpoint=phon["checkpoint"])["coeffs"]
    assert c.expression.shape == (6, 33) and np.isfinite(c.expression).all()
    mfcc = FeatureSeq(np.zeros((6, 28, 80), np.float32), 25.0, "mfcc80_window")
    with pytest.raises(NodeError, match="variant phonetic"):
        M.A2E().run(ctx_for(tmp_path), features=mfcc, target=coeffs(3), checkpoint=phon["checkpoint"])
    with pytest.raises(NodeError, match="variant phonetic"):  # the target's own features must match the option
        M.TrainA2E({"steps": 1, "feature": "phonetic"}).run(ctx_for(tmp_path), dataset=str(tmp / "pseudo.zarr"),
                                                             features=mfcc, coeffs=coeffs(6))
    base = M.TrainA2E({"steps": 3, "batch_size": 4, "threads": 1, "network": "audiodvp", "work_dir": str(tmp_path / "b")}).run(
        ctx_for(tmp_path), dataset=str(tmp / "pseudo.zarr"))
    from nodes.checkpoints import load_checkpoint

    node = M.A2E()
    for out, want in ((phon, {"feature": "phonetic", "channels": (5, 5, 3, 3, 3)}),
                      (base, {"feature": "mfcc80_window", "channels": (5, 3, 1), "window": 7, "activation": "none"})):
        model, export = load_checkpoint(node, ctx_for(tmp_path), "checkpoint", out["checkpoint"])
        assert {k: getattr(model.cfg, k) for k in want} == want
    c = M.A2E().run(ctx_for(tmp_path), features=mfcc, target=coeffs(3), checkpoint=base["checkpoint"])["coeffs"]
    assert c.expression.shape == (6, 33)


def test_a2e_rules_mouth_prior_starts_at_the_rules_and_learns_a_residual(trained_a2e, tmp_path):
    """`mouth_prior: rules` (an option, docs/lipsync.md): the phonetic features' rules mouth
    (nodes/lipsync/rules.py) is an input and α's mouth is it plus a residual that starts at zero; the
    trainer appends the prior exactly as the node does; the option needs phonetic input."""
    import torch

    from nodes.checkpoints import load_checkpoint
    from nodes.lipsync.rules import features_rule_mouth
    from nodes.metatalk.a2e import MOUTH_DIM, with_mouth_prior
    from nodes.synth.speech import synthesize
    from trainers.data.phonetic import phonetic_features

    _, tmp = trained_a2e
    with pytest.raises(NodeError, match="needs feature: phonetic"):
        M.TrainA2E({"steps": 1, "mouth_prior": "rules"}).run(ctx_for(tmp_path), dataset=str(tmp / "pseudo.zarr"))
    out = M.TrainA2E({"steps": 1, "batch_size": 4, "threads": 1, "lr_g": 1e-9, "feature": "phonetic", "mouth_prior": "rules",
                      "work_dir": str(tmp_path / "r")}).run(ctx_for(tmp_path), dataset=str(tmp / "pseudo.zarr"))
    model, export = load_checkpoint(M.A2E(), ctx_for(tmp_path), "checkpoint", out["checkpoint"])
    assert model.cfg.mouth_prior == "rules" and export["data"]["mouth_prior"] == "rules"

    speech = synthesize("Maybe we should open the window.", voice="en-us")
    feats = phonetic_features(speech.samples, speech.sample_rate)
    silence = np.zeros((30, feats.shape[1]), np.float32)
    silence[:, 0] = 1.0  # SIL
    feats = np.concatenate([feats, silence])
    c = M.A2E().run(ctx_for(tmp_path), features=FeatureSeq(feats, 25.0, "phonetic"), target=coeffs(3),
                    checkpoint=out["checkpoint"])["coeffs"]
    # an (almost) untrained residual: the rules mouth plus the training targets' mean offset from it
    offset = model.expression_mean[:MOUTH_DIM].numpy()
    np.testing.assert_allclose(c.expression[:, :MOUTH_DIM], features_rule_mouth(feats) + offset, atol=1e-4)
    assert np.ptp(c.expression[:-30, 0]) > 0.1 and np.ptp(c.expression[-20:, :MOUTH_DIM], axis=0).max() < 1e-3
    # the trainer's input is the node's: with_mouth_prior on the same features, the prior last
    x = with_mouth_prior(feats, 25.0)
    assert x.shape == (len(feats), 44 + MOUTH_DIM)
    np.testing.assert_array_equal(model.prior(torch.from_numpy(x[:model.cfg.window][None]))[0, :MOUTH_DIM].numpy(),
                                  x[model.cfg.window // 2, 44:])


def test_train_a2e_wants_both_target_inputs(trained_a2e):
    _, tmp = trained_a2e
    feats = FeatureSeq(np.zeros((4, 28, 80), np.float32), 25.0, "mfcc80_window")
    with pytest.raises(NodeError, match="both `features` and `coeffs`"):
        M.TrainA2E({"steps": 1}).run(ctx_for(tmp), dataset=str(tmp / "pseudo.zarr"), features=feats)
    with pytest.raises(NodeError, match="both `teacher_features` and `teacher_coeffs`"):
        M.TrainA2E({"steps": 1}).run(ctx_for(tmp), dataset=str(tmp / "pseudo.zarr"), teacher_coeffs=coeffs(4))


def test_lip_sync_rules_teach_a2e_on_any_audio(trained_a2e, tmp_path):
    """LipSyncRules (checkpoint-free) on speech the user gives -> more pseudo pairs for TrainA2E."""
    from nodes.audio.audio_nodes import AudioFeatures
    from nodes.checkpoints import load_checkpoint
    from nodes.lipsync.lipsync_nodes import LipSyncRules
    from nodes.synth.speech import synthesize
    from nodes.types import AudioClip

    _, tmp = trained_a2e
    speech = synthesize("Maybe we should open the window.", voice="en-us")
    audio = AudioClip(speech.samples, speech.sample_rate)
    rules = LipSyncRules().run(ctx_for(tmp_path), audio=audio, reference=coeffs(1))["coeffs"]
    feats = AudioFeatures({"variant": "mfcc80_window"}).run(ctx_for(tmp_path), audio=audio)["features"]
    assert len(rules.expression) == len(feats.data) > 25
    assert np.ptp(rules.expression[:, 0]) > 0  # the mouth moves with the speech
    out = M.TrainA2E({"steps": 2, "batch_size": 4, "threads": 1, "work_dir": str(tmp_path / "t")}).run(
        ctx_for(tmp_path), dataset=str(tmp / "pseudo.zarr"), teacher_features=feats, teacher_coeffs=rules)
    _, export = load_checkpoint(M.A2E(), ctx_for(tmp_path), "checkpoint", out["checkpoint"])
    assert export["data"]["teacher_frames"] == len(feats.data) and export["data"]["clips_used"] == 4


def test_renderer_trains_and_changes_only_the_lower_half(tmp_path):
    import json

    t, size = 3, 512
    real = crops(t, size)
    mask = np.zeros((t, size, size), np.float32)
    mask[:, 150:450, 130:380] = 1.0
    rendered = np.zeros_like(real)
    rendered[mask > 0] = (real[mask > 0] // 2 + 60)  # a flat-looking "render" of the face region
    out = M.TrainNeuralFaceRenderer({"steps": 8, "batch_size": 1, "lr_g": 2e-3, "threads": 1,
                                     "work_dir": str(tmp_path / "r")}).run(
        ctx_for(tmp_path), frames=real, rendered=rendered, face_mask=mask)
    rows = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["l1"] < rows[0]["l1"] and "d_gan" in rows[-1]
    band = M.NeuralFaceRenderer({"region": "band", "feather": 8}).run(
        ctx_for(tmp_path), rendered=rendered, face_mask=mask, frames=real, checkpoint=out["checkpoint"])
    frames, weight = band["frames"], band["mask"]
    assert frames.shape == real.shape and weight.shape == (t, size, size)
    np.testing.assert_array_equal(frames[:, :size // 2], real[:, :size // 2])  # the upper half is the target's
    assert (frames[:, size // 2 + 8:] != real[:, size // 2 + 8:]).any()
    assert weight[:, :size // 2].max() == 0 and weight[:, size // 2 + 8:].min() == 1
    face = M.NeuralFaceRenderer({"grow": 4, "feather": 4}).run(
        ctx_for(tmp_path), rendered=rendered, face_mask=mask, frames=real, checkpoint=out["checkpoint"])
    frames, weight = face["frames"], face["mask"]
    outside = np.ones((size, size), bool)
    outside[150 - 8:450 + 8, 130 - 8:380 + 8] = False  # the face region grown and feathered
    outside[:size // 2] = True
    np.testing.assert_array_equal(frames[:, outside], real[:, outside])  # only the lower face changes
    assert weight[:, outside].max() == 0 and weight[:, 300:440, 140:370].min() == 1
    np.testing.assert_array_equal(frames[:, 300:440, 140:370], band["frames"][:, 300:440, 140:370])


def test_residual_renderer_keeps_the_renders_mouth_and_learns_towards_the_frames(tmp_path):
    """preset tiny_residual (the workflows' renderer): trained briefly, its output is still the
    render drawn over the crop plus a small correction towards the real frames, so a mouth the
    render draws (here a dark bar no training frame has) survives into the frame."""
    import json

    from nodes.checkpoints import load_checkpoint
    from nodes.metatalk.face_renderer import compose

    t, size = 3, 512
    real = crops(t, size)
    mask = np.zeros((t, size, size), np.float32)
    mask[:, 150:450, 130:380] = 1.0
    rendered = np.zeros_like(real)
    rendered[mask > 0] = (real[mask > 0].astype(np.int16) + 12).clip(0, 255).astype(np.uint8)  # the render: a little too bright
    out = M.TrainNeuralFaceRenderer({"preset": "tiny_residual", "steps": 8, "batch_size": 1, "lr_g": 2e-3, "threads": 1,
                                     "work_dir": str(tmp_path / "r")}).run(
        ctx_for(tmp_path), frames=real, rendered=rendered, face_mask=mask)
    rows = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["l1"] < rows[0]["l1"]
    _, export = load_checkpoint(M.NeuralFaceRenderer(), ctx_for(tmp_path), "checkpoint", out["checkpoint"])
    assert export["model_config"]["residual"] is True
    mouth = rendered.copy()
    mouth[:, 360:380, 200:310] = 20  # an open mouth the training frames never showed
    res = M.NeuralFaceRenderer({"region": "band", "feather": 8}).run(
        ctx_for(tmp_path), rendered=mouth, face_mask=mask, frames=real, checkpoint=out["checkpoint"])["frames"]
    synthetic = compose(mouth, mask, real).astype(np.float32)
    assert np.abs(res[:, 360:380, 200:310] - synthetic[:, 360:380, 200:310]).mean() < 20  # the mouth is drawn
    lower = slice(size // 2 + 8, size)
    err_in = np.abs(synthetic[:, lower] - real[:, lower]).mean()
    assert np.abs(res[:, lower].astype(np.float32) - synthetic[:, lower]).mean() < err_in  # a small correction


def test_low_definition_renderer_for_the_table3_ablation(tmp_path):
    """256 crops (AudioDVP's size) train a 256 renderer; a checkpoint only renders its own size."""
    t = 2
    real = crops(t, 256)
    mask = np.zeros((t, 256, 256), np.float32)
    mask[:, 140:230, 70:190] = 1.0
    out = M.TrainNeuralFaceRenderer({"steps": 2, "batch_size": 1, "threads": 1, "work_dir": str(tmp_path / "r")}).run(
        ctx_for(tmp_path), frames=real, rendered=real // 2, face_mask=mask)
    low = M.NeuralFaceRenderer().run(ctx_for(tmp_path), rendered=real // 2, face_mask=mask, frames=real,
                                     checkpoint=out["checkpoint"])
    assert low["frames"].shape == real.shape
    hd = crops(t, 512)
    with pytest.raises(NodeError, match="trained on 256 crops, these are 512"):
        M.NeuralFaceRenderer().run(ctx_for(tmp_path), rendered=hd, face_mask=np.zeros(hd.shape[:3], np.float32), frames=hd,
                                   checkpoint=out["checkpoint"])


def test_renderer_errors(tmp_path):
    small = crops(2, 512)[:, :200, :200]
    with pytest.raises(NodeError, match="512/768/1024 crops"):
        M.NeuralFaceRenderer().run(ctx_for(tmp_path), rendered=small, face_mask=np.zeros(small.shape[:3], np.float32),
                                   frames=small)
    real = crops(2)
    with pytest.raises(NodeError, match="must match"):
        M.TrainNeuralFaceRenderer().run(ctx_for(tmp_path), frames=real, rendered=real[:1],
                                        face_mask=np.zeros(real.shape[:3], np.float32))
    with pytest.raises(NodeError, match="train_metatalk.yaml"):
        M.NeuralFaceRenderer({"checkpoint": "nope.pt"}).run(ctx_for(tmp_path), rendered=real,
                                                           face_mask=np.zeros(real.shape[:3], np.float32), frames=real)


def test_evaluate_scores_a_perfect_result_perfectly_and_a_worse_one_worse(tmp_path):
    real = crops(2)
    target = coeffs(2)
    perfect = M.EvaluateMetaTalk().run(ctx_for(tmp_path), real=real, generated=real, target=target, driven=target)["metrics"]
    assert perfect["ssim_lower_half"] == pytest.approx(1.0) and perfect["lip_vertex_distance_mm"] == 0.0
    assert perfect["lip_vertex_distance_mean_mm"] > 0
    noisy = np.clip(real + np.random.default_rng(0).normal(0, 20, real.shape), 0, 255).astype(np.uint8)
    mask = np.ones(real.shape[:3], np.float32)
    worse = M.EvaluateMetaTalk().run(ctx_for(tmp_path), real=real, generated=noisy, rendered=noisy, face_mask=mask,
                                     target=target, driven=coeffs(3))["metrics"]
    assert worse["ssim_lower_half"] < 0.9 and worse["ssim_lower_half_synthetic"] == pytest.approx(worse["ssim_lower_half"])
    assert worse["lip_vertex_distance_mm"] > 0 and worse["frames"] == 2
    # Table 3's low-definition ablation: 256 crops of the same window, scored against the HD ones
    import cv2

    low = np.stack([cv2.resize(f, (256, 256), interpolation=cv2.INTER_AREA) for f in real])
    ld = M.EvaluateMetaTalk().run(ctx_for(tmp_path), real=real, generated=low, rendered=low, face_mask=mask[:, :256, :256],
                                  target=target, driven=target)["metrics"]
    assert (ld["size"], ld["generated_size"]) == (512, 256)
    assert 0.9 < ld["ssim_lower_half"] < 1.0 and ld["ssim_lower_half_synthetic"] == pytest.approx(ld["ssim_lower_half"])
