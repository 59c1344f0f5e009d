"""The IP_LAP trainers on the shared loop: a few steps on a small hand-made dataset make exports
that the nodes' loader reads back (tests/hdtf_data.py: the mouth opens with the audio's loudness;
its 478 landmarks are a circle, enough for face boxes and sketches)."""
from __future__ import annotations

import json

import pytest
from hdtf_data import write_toy_dataset

from nodes.checkpoints import load_model
from trainers.loop import TrainConfig, Trainer


@pytest.fixture(scope="module")
def toy_dataset(tmp_path_factory):
    return write_toy_dataset(tmp_path_factory.mktemp("data") / "toy.zarr", n_clips=3, n_frames=40)


def _fit(task, tmp_path, steps: int, batch: int):
    cfg = TrainConfig(steps=steps, batch_size=batch, log_every=1, checkpoint_every=1000, progress_bar=False, threads=1)
    result = Trainer(task, cfg, tmp_path).fit()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    return result, rows


@pytest.mark.parametrize("lambda_open", [0.0, 2.0])
def test_landmark_generator_trains_and_exports(toy_dataset, tmp_path, lambda_open):
    from nodes.ip_lap.train_landmarks import LandmarkGeneratorTask, LandmarkTrainSettings

    settings = LandmarkTrainSettings(dataset=toy_dataset, references=4, lambda_open=lambda_open)
    result, rows = _fit(LandmarkGeneratorTask(settings), tmp_path, steps=3, batch=2)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert ("opening" in rows[-1]) == (lambda_open > 0)  # the extra term is logged only when used
    model, export = load_model(result.export_path, "ip_lap_landmark_generator")
    assert export["step"] == 3 and export["data"]["settings"]["lambda_open"] == lambda_open
    assert export["model_config"]["arch"] == "ip_lap_landmark_generator" and not model.training


def test_renderer_trains_and_exports(toy_dataset, tmp_path):
    from nodes.ip_lap.train_renderer import RendererTask, RendererTrainSettings

    settings = RendererTrainSettings(dataset=toy_dataset, references=2, disc_channels=8)
    result, rows = _fit(RendererTask(settings), tmp_path, steps=2, batch=2)  # BatchNorm needs 2 in training
    assert {"warp", "l1"} <= set(rows[-1])
    model, export = load_model(result.export_path, "ip_lap_renderer")
    assert export["step"] == 2 and model.cfg.size == 64
