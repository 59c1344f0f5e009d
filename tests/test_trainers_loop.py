"""The shared training loop: convergence, files written, exact resume, GAN steps."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from trainers.discriminators import TemporalPatchDiscriminator
from trainers.loop import MODEL_FORMAT, StepOutput, TrainConfig, Trainer, TrainTask, load_checkpoint
from trainers.losses import l1_loss, lsgan_d_loss, lsgan_g_loss


class LinearGanTask(TrainTask):
    """Learn y = 2x + 1 over short sequences, with an adversarial term on top."""

    name = "toy.linear"

    def __init__(self, gan: bool = True) -> None:
        self.gan = gan

    def build(self):
        self.generator = nn.Linear(1, 1)
        self.discriminator = TemporalPatchDiscriminator(1, 1, channels=8, n_layers=2) if self.gan else None

    def model_config(self):
        return {"kind": "linear"}

    def sample_batch(self, rng, batch_size):
        x = torch.from_numpy(rng.uniform(-1, 1, (batch_size, 8, 1)).astype(np.float32))
        return {"x": x, "y": 2 * x + 1}

    def generator_step(self, batch, use_gan):
        pred = self.generator(batch["x"])
        loss = l1_loss(pred, batch["y"])
        logs = {"l1": loss.item()}
        if use_gan:
            adv = lsgan_g_loss(self.discriminator(pred, batch["x"]))
            loss = loss + 0.01 * adv
            logs["g_adv"] = adv.item()
        return StepOutput(loss, logs, pred.detach())

    def discriminator_step(self, batch, fake):
        d = lsgan_d_loss(self.discriminator(batch["y"], batch["x"]), self.discriminator(fake, batch["x"]))
        return StepOutput(d, {"d_adv": d.item()})


def _cfg(**kw):
    return TrainConfig(**{"steps": 60, "batch_size": 8, "lr_g": 0.05, "log_every": 5, "checkpoint_every": 100,
                          "progress_bar": False, "threads": 1, **kw})


def test_loop_converges_and_writes_files(tmp_path):
    progress = []
    result = Trainer(LinearGanTask(), _cfg(steps=200), tmp_path, on_progress=lambda i, n, l: progress.append(i)).fit()
    w, b = result_weights(tmp_path / "model.pt")
    assert abs(w - 2) < 0.15 and abs(b - 1) < 0.15
    rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 200 and {"l1", "g_adv", "d_adv"} <= set(rows[-1])
    assert rows[-1]["l1"] < rows[0]["l1"]
    assert (tmp_path / "loss_curve.png").stat().st_size > 1000
    assert progress[-1] == 200
    export = load_checkpoint(tmp_path / "model.pt")
    assert export["format"] == MODEL_FORMAT and export["step"] == 200
    assert set(export["final_losses"]) == {"l1", "g_adv", "d_adv"}


def result_weights(path):
    g = load_checkpoint(path)["generator"]
    return float(g["weight"]), float(g["bias"])


def test_resume_matches_uninterrupted_run(tmp_path):
    Trainer(LinearGanTask(), _cfg(steps=40), tmp_path / "straight").fit()
    Trainer(LinearGanTask(), _cfg(steps=25), tmp_path / "split").fit()
    r = Trainer(LinearGanTask(), _cfg(steps=40), tmp_path / "split").fit()
    assert r.steps == 40
    a = load_checkpoint(tmp_path / "straight" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "last.pt")
    for part in ("generator", "discriminator"):
        for k in a[part]:
            torch.testing.assert_close(a[part][k], b[part][k], rtol=0, atol=0)
    steps = [json.loads(l)["step"] for l in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 40


def test_resume_refuses_other_model_config(tmp_path):
    Trainer(LinearGanTask(), _cfg(steps=5), tmp_path).fit()
    task = LinearGanTask()
    task.model_config = lambda: {"kind": "other"}
    with pytest.raises(RuntimeError, match="model config"):
        Trainer(task, _cfg(steps=10), tmp_path).fit()


def test_gan_start_and_no_discriminator(tmp_path):
    r = Trainer(LinearGanTask(gan=False), _cfg(steps=10), tmp_path / "plain").fit()
    assert set(r.final_losses) == {"l1"}
    r = Trainer(LinearGanTask(), _cfg(steps=10, gan_start=100), tmp_path / "late").fit()
    assert set(r.final_losses) == {"l1"}


def test_max_minutes_stops_early_and_saves(tmp_path):
    r = Trainer(LinearGanTask(), _cfg(steps=10**6, max_minutes=1e-4), tmp_path).fit()
    assert r.stopped_early and r.steps < 10**6
    assert load_checkpoint(tmp_path / "last.pt")["step"] == r.steps


def test_nan_loss_is_reported(tmp_path):
    task = LinearGanTask(gan=False)
    task.sample_batch = lambda rng, n: {"x": torch.full((n, 4, 1), float("nan")), "y": torch.zeros(n, 4, 1)}
    with pytest.raises(FloatingPointError, match="step 0"):
        Trainer(task, _cfg(steps=3), tmp_path).fit()


def test_cuda_request_without_cuda_is_clear(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        Trainer(LinearGanTask(), _cfg(device="cuda"), tmp_path)
