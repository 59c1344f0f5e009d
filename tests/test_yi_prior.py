"""Yi's AudioToExpressionPose options `feature: phonetic` and `mouth_prior: rules` (issue 11,
docs/yi.md): the paper presets never set them; the rules prior is the function HDTF's generator
uses (nodes/lipsync/prior.py), computed by the trainer from the dataset's stored features exactly
as the node computes it at inference; the residual starts at zero and is penalised."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hdtf_data import write_toy_dataset

from nodes.lipsync.prior import rules_mouth_prior
from nodes.model_registry import model_config
from nodes.yi.audio_to_exp_pose import AudioExpPoseConfig, AudioToExpressionPoseNet
from nodes.yi.models import AUDIO_EXP_POSE

TINY = {"channels": (8, 16, 32, 32, 32), "fc_hidden": 32, "embed": 16, "lstm_hidden": 16, "lstm_layers": 1}


def phonetic_rows(t: int, seed: int = 0) -> np.ndarray:
    """(t, 44) phonetic-like features: phone-class rows summing to 1 and acoustic cues in range."""
    rng = np.random.default_rng(seed)
    x = np.zeros((t, 44), np.float32)
    x[np.arange(t), rng.integers(0, 40, t)] = 1.0
    x[:, 40:] = rng.uniform(0, 1, (t, 4))
    return x


@pytest.fixture(scope="module")
def toy_dataset(tmp_path_factory):
    return write_toy_dataset(tmp_path_factory.mktemp("data") / "toy.zarr", n_clips=4, n_frames=48)


def test_paper_and_tiny_presets_keep_the_paper_input():
    for preset in ("paper", "tiny"):
        cfg = model_config(AUDIO_EXP_POSE, preset)
        assert cfg.feature == "mfcc_window" and cfg.mouth_prior == "none"
    with pytest.raises(ValueError, match="needs feature: phonetic"):
        AudioExpPoseConfig(mouth_prior="rules")


def test_phonetic_encoder_reads_a_window_and_chunks_give_the_same_values():
    torch.manual_seed(0)
    net = AudioToExpressionPoseNet(AudioExpPoseConfig(**TINY, feature="phonetic")).eval()
    x = torch.from_numpy(phonetic_rows(30))[None]
    with torch.no_grad():
        whole, pose = net(x)
        parts, _ = net(x, chunk=7)
        assert whole.shape == (1, 30, 33) and pose.shape == (1, 30, 6)
        assert torch.allclose(whole, parts, atol=1e-6)
        # frame 10's encoding depends on frames 7..13 only (context 3), not on frame 20
        y = x.clone()
        y[0, 20] = y[0, 20].flip(0)
        a = net.encoder(net._encoder_input(x, None)).reshape(30, -1)
        b = net.encoder(net._encoder_input(y, None)).reshape(30, -1)
    assert torch.equal(a[:17], b[:17]) and not torch.equal(a[17:24], b[17:24])
    with pytest.raises(ValueError, match="phonetic features"):
        net(torch.zeros(1, 30, 28, 12))


def test_an_untrained_prior_model_gives_the_rules_mouth_and_needs_the_prior():
    torch.manual_seed(0)
    net = AudioToExpressionPoseNet(AudioExpPoseConfig(**TINY, feature="phonetic", mouth_prior="rules")).eval()
    net.expression_norm.set(torch.rand(33), 0.1 + torch.rand(33))
    feats = phonetic_rows(25)
    prior = torch.from_numpy(rules_mouth_prior(feats))[None]
    with torch.no_grad():
        exp, _ = net(torch.from_numpy(feats)[None], prior=prior)
    assert torch.allclose(exp[..., :28], prior, atol=1e-5)
    assert not torch.allclose(exp[..., 28:], net.expression_norm.mean[28:].expand(1, 25, 5))  # brows: the network's own
    with pytest.raises(ValueError, match="pass `prior`"):
        net(torch.from_numpy(feats)[None])


def test_trainer_prior_is_the_node_prior_and_training_moves_the_residual(toy_dataset, tmp_path):
    from nodes.checkpoints import load_model
    from nodes.types import MorphCoeffs
    from nodes.yi.inference import predict_coeffs
    from nodes.yi.train_audio import AudioExpPoseTask, AudioTrainSettings, dataset_clips
    from trainers.loop import TrainConfig, Trainer

    clips, data = dataset_clips(toy_dataset, feature="phonetic", prior=True)
    assert clips[0].features.shape[1] == 44 and data["feature"] == "phonetic"
    assert np.array_equal(clips[0].prior, rules_mouth_prior(clips[0].features))
    settings = AudioTrainSettings(window=16, feature="phonetic", mouth_prior="rules", lambda_residual=0.5)
    task = AudioExpPoseTask(clips, settings, data)
    assert task.model_config()["mouth_prior"] == "rules" and task.model_config()["feature"] == "phonetic"
    assert task.data_description()["settings"]["mouth_prior"] == "rules"
    result = Trainer(task, TrainConfig(steps=30, batch_size=4, lr_g=3e-3, log_every=1, checkpoint_every=1000,
                                       progress_bar=False, threads=1), tmp_path).fit()
    assert result.final_losses["residual"] > 0
    model, export = load_model(result.export_path, "yi_audio_exp_pose")
    assert model.uses_prior and export["model_config"]["mouth_prior"] == "rules"
    c = clips[0]
    target = MorphCoeffs(np.zeros(60, np.float32), c.expression[:1], np.zeros((1, 6), np.float32), np.zeros(1, np.float32), (64, 64))
    got = predict_coeffs(model, c.features, target)
    with torch.no_grad():  # the node's path = the network on the trainer's stored prior
        exp, _ = model(torch.from_numpy(c.features)[None], prior=torch.from_numpy(c.prior)[None])
    assert np.allclose(got.expression, exp[0].numpy().clip(0, 1.5), atol=1e-6)
    assert not np.allclose(exp[0, :, :28].numpy(), c.prior, atol=1e-4)  # the residual learned something


def test_options_are_checked_against_the_clips(toy_dataset):
    from nodes.yi.train_audio import AudioExpPoseTask, AudioTrainSettings, dataset_clips

    clips, data = dataset_clips(toy_dataset, feature="phonetic")
    with pytest.raises(ValueError, match="rules mouth prior"):
        AudioExpPoseTask(clips, AudioTrainSettings(feature="phonetic", mouth_prior="rules"), data)
    with pytest.raises(ValueError, match="the model reads mfcc_window"):
        AudioExpPoseTask(clips, AudioTrainSettings(), data)
    phonetic = AudioExpPoseTask(clips, AudioTrainSettings(feature="phonetic"), data).data_description()["settings"]
    assert phonetic["mouth_prior"] == "none" and phonetic["lambda_residual"] == 1.0
    mfcc, described = dataset_clips(toy_dataset)  # the paper's model is described as before the options existed
    paper = AudioExpPoseTask(mfcc, AudioTrainSettings(), described)
    assert set(paper.data_description()["settings"]) == {"preset", "window", "lambda_pose", "lambda_smooth"}
    assert "feature" not in described and not {"feature", "context", "mouth_prior"} & set(paper.model_config())


def test_warm_start_from_a_phonetic_model_without_the_prior(tmp_path):
    from nodes.lipsync.prior import warm_start

    torch.manual_seed(0)
    old = AudioToExpressionPoseNet(AudioExpPoseConfig(**TINY, feature="phonetic")).eval()
    path = tmp_path / "old.pt"
    torch.save({"generator": old.state_dict()}, path)
    new = AudioToExpressionPoseNet(AudioExpPoseConfig(**TINY, feature="phonetic", mouth_prior="rules")).eval()
    warm_start(new, str(path))
    feats = torch.from_numpy(phonetic_rows(20))[None]
    prior = torch.rand(1, 20, 28)
    with torch.no_grad():
        e0, p0 = old(feats)
        e1, p1 = new(feats, prior=prior)
    assert torch.allclose(p0, p1, atol=1e-6) and torch.allclose(e0[..., 28:], e1[..., 28:], atol=1e-6)
    assert torch.allclose(e1[..., :28], prior, atol=1e-6)


def test_node_checks_the_feature_variant_the_checkpoint_reads(tmp_path):
    from graphcore.node import NodeError
    from nodes.types import FeatureSeq
    from nodes.yi.yi_nodes import _check_features

    mfcc = FeatureSeq(np.zeros((10, 28, 12), np.float32), 25.0, "mfcc_window")
    with pytest.raises(NodeError, match="needs phonetic \\(T, 44\\) audio features"):
        _check_features("AudioToExpressionPose", mfcc, "phonetic")
    phon = FeatureSeq(phonetic_rows(10), 25.0, "phonetic")
    assert _check_features("AudioToExpressionPose", phon, "phonetic").shape == (10, 44)
    with pytest.raises(NodeError, match="needs mfcc_window"):
        _check_features("AudioToExpressionPose", phon)


def test_trainer_and_inference_nodes_with_the_options(toy_dataset, tmp_path):
    """TrainAudioToExpressionPose (feature phonetic, mouth_prior rules) -> AudioToExpressionPose on
    AudioFeatures(phonetic): MorphCoeffs per frame; mfcc_window features are refused by name."""
    from graphcore.node import NodeError, RunContext
    from nodes.types import FeatureSeq, MorphCoeffs
    from nodes.yi import yi_nodes as Y

    logs: list = []
    ctx = RunContext(node_id="n", node_type="n", key="k" * 64, tmp_dir=tmp_path, workflow_dir=tmp_path,
                     emit=lambda kind, data: logs.append((kind, data)))
    with pytest.raises(NodeError, match="needs feature: phonetic"):
        Y.TrainAudioToExpressionPose({"steps": 1, "mouth_prior": "rules"}).run(ctx, dataset=toy_dataset)
    out = Y.TrainAudioToExpressionPose({"steps": 3, "batch_size": 4, "window": 16, "threads": 1, "feature": "phonetic",
                                        "mouth_prior": "rules", "work_dir": str(tmp_path / "w")}).run(ctx, dataset=toy_dataset)
    target = MorphCoeffs(np.zeros(60, np.float32), np.zeros((1, 33), np.float32), np.array([[0, 0, 0, 32, 32, 0]], np.float32),
                         np.zeros(1, np.float32), (64, 64))
    node = Y.AudioToExpressionPose({})
    feats = phonetic_rows(20)
    got = node.run(ctx, features=FeatureSeq(feats, 25.0, "phonetic"), target=target, checkpoint=out["checkpoint"])["coeffs"]
    assert got.expression.shape == (20, 33) and got.pose.shape == (20, 6)
    assert any("rules prior" in str(data) for _, data in logs)
    with pytest.raises(NodeError, match="needs phonetic"):
        node.run(ctx, features=FeatureSeq(np.zeros((20, 28, 12), np.float32), 25.0, "mfcc_window"), target=target,
                 checkpoint=out["checkpoint"])
