"""Training the animation generator on a small dataset in the project layout."""
from __future__ import annotations

import numpy as np
import pytest
from hdtf_data import write_toy_dataset

from nodes.hdtf.train_animation import AnimationTask, AnimationTrainSettings
from trainers.loop import TrainConfig, Trainer, load_checkpoint


@pytest.fixture(scope="module")
def toy_dataset(tmp_path_factory):
    return write_toy_dataset(tmp_path_factory.mktemp("data") / "toy.zarr", n_clips=5, n_frames=64)


def test_task_batches_and_statistics(toy_dataset):
    task = AnimationTask(AnimationTrainSettings(dataset=toy_dataset, window=32))
    assert len(task.clips) == 3  # the train split
    batch = task.sample_batch(np.random.default_rng(0), 4)
    assert batch["audio"].shape == (4, 32, 15) and batch["mouth"].shape == (4, 32, 28)
    assert batch["brow"].shape == (4, 32, 5) and batch["pose"].shape == (4, 32, 6) and batch["identity"].shape == (4, 66)
    # pose targets are deltas from each clip's first frame, translations in image fractions
    assert np.allclose(task.clips[0]["pose"][0], 0)


def test_phonetic_features_size_the_input_layer(toy_dataset):
    task = AnimationTask(AnimationTrainSettings(dataset=toy_dataset, window=32, feature="phonetic"))
    assert task.arch.audio_dim == 44  # computed from each clip's audio (the toy dataset stores none)
    batch = task.sample_batch(np.random.default_rng(0), 2)
    assert batch["audio"].shape == (2, 32, 44)
    task.build()
    out = task.generator(batch["audio"], batch["identity"])
    assert out["mouth"].shape == (2, 32, 28)


def test_training_reduces_losses_and_exports_a_standardised_generator(toy_dataset, tmp_path):
    settings = AnimationTrainSettings(dataset=toy_dataset, window=32)
    cfg = TrainConfig(steps=80, batch_size=8, lr_g=1e-3, log_every=10, checkpoint_every=1000, progress_bar=False,
                      threads=1, gan_start=20)
    result = Trainer(AnimationTask(settings), cfg, tmp_path).fit()
    rows = [__import__("json").loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["l1_mouth"] < 0.6 * rows[0]["l1_mouth"]
    assert {"g_mouth", "g_brow", "g_pose", "d_mouth", "d_brow", "d_pose"} <= set(result.final_losses)
    export = load_checkpoint(result.export_path)
    assert export["model_config"]["arch"] == "animation_generator"
    assert "out_norm.mouth.mean" in export["generator"]


def test_acoustic_dropout_hides_the_acoustic_cues_of_some_windows_only():
    import torch

    from nodes.hdtf.train_animation import drop_acoustic_cues

    torch.manual_seed(0)
    x = torch.randn(200, 6, 44) + 3.0
    y = drop_acoustic_cues(x, 0.5)
    dropped = (y[..., 40:] == 0).flatten(1).all(1)
    assert 0.35 < dropped.float().mean() < 0.65  # about half the windows, whole windows
    assert torch.equal(y[..., :40], x[..., :40])  # the phones are never touched
    assert torch.equal(y[~dropped], x[~dropped])
    assert torch.equal(drop_acoustic_cues(x, 0.0), x) and (drop_acoustic_cues(x, 1.0)[..., 40:] == 0).all()


def test_acoustic_dropout_trains(toy_dataset, tmp_path):
    settings = AnimationTrainSettings(dataset=toy_dataset, window=16, feature="phonetic", acoustic_dropout=0.5)
    cfg = TrainConfig(steps=3, batch_size=4, log_every=1, checkpoint_every=1000, progress_bar=False, threads=1)
    result = Trainer(AnimationTask(settings), cfg, tmp_path).fit()
    assert result.steps == 3 and load_checkpoint(result.export_path)["data"]["settings"]["acoustic_dropout"] == 0.5


def test_rules_mouth_prior_starts_as_the_rules_and_trains(toy_dataset, tmp_path):
    """mouth_prior rules (docs/lipsync.md): the prior comes from the clip's phonetic features by the
    same function the node calls; the residual starts at zero, is penalised, and the export
    reproduces the trainer's prior at inference."""
    import torch

    from nodes.checkpoints import load_model
    from nodes.hdtf.inference import animate
    from nodes.lipsync.prior import rules_mouth_prior as mouth_prior
    from nodes.types import MorphCoeffs

    settings = AnimationTrainSettings(dataset=toy_dataset, window=16, feature="phonetic", mouth_prior="rules")
    task = AnimationTask(settings)
    clip = task.clips[0]
    assert np.array_equal(clip["prior"], mouth_prior(clip["audio"]))
    task.build()
    assert task.model_config()["mouth_prior"] == "rules"
    with torch.no_grad():
        out = task.generator(torch.from_numpy(clip["audio"])[None], torch.from_numpy(clip["identity"])[None],
                             prior=torch.from_numpy(clip["prior"])[None])
    assert torch.allclose(out["mouth"][0], torch.from_numpy(clip["prior"]), atol=1e-5)  # zero residual
    with pytest.raises(ValueError, match="pass `prior`"):
        task.generator(torch.from_numpy(clip["audio"])[None], torch.from_numpy(clip["identity"])[None])

    cfg = TrainConfig(steps=4, batch_size=4, log_every=1, checkpoint_every=1000, progress_bar=False, threads=1, gan_start=2)
    result = Trainer(task, cfg, tmp_path).fit()
    assert "residual" in result.final_losses
    generator, export = load_model(result.export_path, "animation_generator")
    assert export["model_config"]["mouth_prior"] == "rules" and generator.uses_prior
    c = task.store.get(0)
    ref = MorphCoeffs(c["shape"], c["expression"][:1], c["pose"][:1], np.zeros(1, np.float32), c["image_size"])
    got = animate(generator, clip["audio"], clip["identity"], ref)
    assert got.expression.shape == (len(clip["audio"]), 33)


def test_rules_mouth_prior_needs_phonetic_features(toy_dataset):
    with pytest.raises(ValueError, match="needs feature: phonetic"):
        AnimationTask(AnimationTrainSettings(dataset=toy_dataset, window=16, mouth_prior="rules"))


def test_warm_start_copies_the_bundled_generator_where_shapes_agree(toy_dataset):
    """The bundled export seeds a rules-prior model: same encoder response to the features (the
    prior's input channels start at zero) and hence the same brow and pose; the residual is zero."""
    import torch

    from nodes.bundled import asset_path
    from nodes.hdtf.animation_generator import AnimationConfig, AnimationGeneratorNet
    from nodes.lipsync.prior import warm_start

    bundled = str(asset_path("checkpoints/hdtf_animation_tiny.pt"))
    export = load_checkpoint(bundled)
    cfg = AnimationConfig(**{k: v for k, v in export["model_config"].items() if k != "arch"})
    old = AnimationGeneratorNet(cfg)
    old.load_state_dict(export["generator"])
    new = AnimationGeneratorNet(cfg.model_copy(update={"mouth_prior": "rules"}))
    warm_start(new, bundled)
    torch.manual_seed(0)
    audio, identity = torch.rand(1, 40, 44), torch.randn(1, 66)
    prior = old.out_norm["mouth"].denorm(torch.randn(1, 40, 28))
    with torch.no_grad():
        a, b = old(audio, identity), new(audio, identity, prior=prior)
    assert torch.allclose(a["brow"], b["brow"], atol=1e-5) and torch.allclose(a["pose"], b["pose"], atol=1e-5)
    assert torch.allclose(b["mouth"], prior, atol=1e-5)


def test_phones_only_residual_ignores_the_acoustic_cues():
    """residual_inputs phones: the mouth reads the phone classes and the prior only, so changing the
    voice-dependent acoustic dims (40..43) moves brow and pose but never the mouth."""
    import torch

    from nodes.hdtf.animation_generator import AnimationConfig, AnimationGeneratorNet

    torch.manual_seed(0)
    g = AnimationGeneratorNet(AnimationConfig(audio_dim=44, channels=16, decoder_channels=8, style_hidden=8,
                                              temporal_levels=2, mouth_prior="rules", residual_inputs="phones")).eval()
    torch.nn.init.normal_(g.mouth_decoder.net[-1].weight)  # a trained, non-zero residual
    a, identity, prior = torch.rand(1, 24, 44), torch.randn(1, 66), torch.rand(1, 24, 28)
    b = a.clone()
    b[..., 40:] = torch.rand(1, 24, 4)
    with torch.no_grad():
        x, y = g(a, identity, prior=prior), g(b, identity, prior=prior)
    assert torch.equal(x["mouth"], y["mouth"]) and not torch.allclose(x["mouth"], prior)
    assert not torch.allclose(x["pose"], y["pose"])


def test_a_rules_prior_generator_rests_in_silence():
    """Issue 11, the option's silence check through `animate` (what the node runs): 3 s of digital
    silence -> the prior's closed rest, still; the residual starts at zero (warm start from the
    bundled export), so the mouth is the rules' one."""
    from nodes.bundled import asset_path
    from nodes.face.model import load_face_model
    from nodes.hdtf.animation_generator import AnimationConfig, AnimationGeneratorNet
    from nodes.hdtf.inference import animate
    from nodes.hdtf.train_animation import warm_start
    from nodes.lipsync.evaluate import landmark_lip_gap
    from nodes.types import MorphCoeffs
    from trainers.data.phonetic import phonetic_features

    bundled = str(asset_path("checkpoints/hdtf_animation_tiny.pt"))
    export = load_checkpoint(bundled)
    cfg = AnimationConfig(**{k: v for k, v in export["model_config"].items() if k != "arch"})
    g = AnimationGeneratorNet(cfg.model_copy(update={"mouth_prior": "rules"}))
    warm_start(g, bundled)  # the standardisers come along (same shapes)
    g.eval()
    f = phonetic_features(np.zeros(48000, np.float32), 16000)
    ref = MorphCoeffs(np.zeros(60, np.float32), np.full((1, 33), 0.3, np.float32), np.zeros((1, 6), np.float32),
                      np.zeros(1, np.float32), (256, 256))
    out = animate(g, f, np.zeros(66, np.float32), ref)
    gap = landmark_lip_gap(load_face_model().vertices(ref.shape, out.expression))
    assert gap.max() < 0.01 and np.ptp(out.expression[:, :28], axis=0).max() < 1e-5, (gap.max(),)
