"""Training the flow-guided video generator on a small dataset in the project layout."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hdtf_data import write_toy_dataset

from nodes.hdtf.train_flow_video import FlowVideoTask, FlowVideoTrainSettings
from trainers.loop import TrainConfig, Trainer, load_checkpoint


def toy_flow(clip, ref, targets):
    """The toy clips move the face sideways by size * yaw pixels: a uniform backward flow."""
    h, w = clip["frames"].shape[1:3]
    shift = w * (clip["pose"][targets, 1] - clip["pose"][ref, 1])
    flow = np.zeros((len(targets), h, w, 2), np.float32)
    flow[..., 0] = -shift[:, None, None]
    return flow


@pytest.fixture(scope="module")
def toy_dataset(tmp_path_factory):
    return write_toy_dataset(tmp_path_factory.mktemp("data") / "toy.zarr", n_clips=4, n_frames=24, size=64)


def test_batches_are_cropped_consistently(toy_dataset):
    task = FlowVideoTask(FlowVideoTrainSettings(dataset=toy_dataset, frame_size=64, crop=32, crop_scale=(0.5, 1.0)), toy_flow)
    b = task.sample_batch(np.random.default_rng(0), 3)
    assert b["reference"].shape == (3, 3, 32, 32) and b["target"].shape == (3, 3, 32, 32) and b["flow"].shape == (3, 2, 32, 32)
    assert 0 <= float(b["reference"].min()) and float(b["reference"].max()) <= 1
    assert "fallback" in task.perceptual.kind


def test_training_runs_gan_steps_and_exports(toy_dataset, tmp_path):
    settings = FlowVideoTrainSettings(dataset=toy_dataset, frame_size=64, crop=32)
    cfg = TrainConfig(steps=30, batch_size=4, lr_g=2e-3, log_every=5, checkpoint_every=1000, progress_bar=False,
                      threads=1, gan_start=10)
    logs = []
    result = Trainer(FlowVideoTask(settings, toy_flow), cfg, tmp_path, log=logs.append).fit()
    rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["l1"] < rows[0]["l1"]
    assert {"g_adv", "feature_matching", "d_adv", "perceptual"} <= set(result.final_losses)
    assert any("perceptual loss: fallback" in m for m in logs)
    export = load_checkpoint(result.export_path)
    assert export["model_config"]["arch"] == "flow_video_generator" and export["step"] == 30
