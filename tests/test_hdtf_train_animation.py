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
