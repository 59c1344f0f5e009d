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
    Trainer(LinearGanTask(), _cfg(steps=200), tmp_path, on_progress=lambda i, n, l: progress.append(i)).fit()
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


class DatasetTask(LinearGanTask):
    """The toy task 'trained on' a dataset folder: its identity is part of the run's."""

    def __init__(self, url) -> None:
        super().__init__(gan=False)
        self.url = str(url)

    def data_description(self):
        return {"url": self.url, "split": "train"}


def fit(task, cfg, out_dir):
    logs = []
    result = Trainer(task, cfg, out_dir, log=logs.append).fit()
    return result, logs


def weights(path):
    state = load_checkpoint(path)
    return {k: v for k, v in state["generator"].items()}


def assert_same_weights(a, b):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=0)


def test_extending_steps_resumes(tmp_path):
    fit(LinearGanTask(), _cfg(steps=20), tmp_path / "run")
    result, logs = fit(LinearGanTask(), _cfg(steps=30, log_every=3, checkpoint_every=7), tmp_path / "run")
    assert result.steps == 30 and any("resumed toy.linear" in m and "at step 20" in m for m in logs)
    fit(LinearGanTask(), _cfg(steps=30), tmp_path / "straight")
    assert_same_weights(tmp_path / "run" / "last.pt", tmp_path / "straight" / "last.pt")
    assert not (tmp_path / "run" / "superseded").exists()


def test_changed_settings_start_over_and_keep_the_old_files(tmp_path):
    run = tmp_path / "run"
    fit(LinearGanTask(), _cfg(steps=20), run)
    old_model = (run / "model.pt").read_bytes()
    result, logs = fit(LinearGanTask(), _cfg(steps=20, lr_g=0.02), run)
    assert result.steps == 20 and not any(m.startswith("resumed") for m in logs)
    (line,) = [m for m in logs if m.startswith("not resuming")]
    assert "lr_g 0.05 -> 0.02" in line and "superseded" in line
    (kept,) = (run / "superseded").iterdir()
    assert (kept / "model.pt").read_bytes() == old_model and (kept / "metrics.jsonl").is_file()
    fit(LinearGanTask(), _cfg(steps=20, lr_g=0.02), tmp_path / "fresh")
    assert_same_weights(run / "last.pt", tmp_path / "fresh" / "last.pt")  # a clean start, not a mix
    rows = [json.loads(l)["step"] for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows == sorted(set(rows)) and rows[-1] == 20


def test_changed_model_config_starts_over(tmp_path):
    fit(LinearGanTask(), _cfg(steps=5), tmp_path)
    task = LinearGanTask()
    task.model_config = lambda: {"kind": "other"}
    result, logs = fit(task, _cfg(steps=10), tmp_path)
    assert result.steps == 10 and any("the model config changed" in m for m in logs)


def test_changed_dataset_starts_over(tmp_path):
    data = tmp_path / "data.zarr"
    (data / "clips").mkdir(parents=True)
    (data / "zarr.json").write_text('{"clips": 1}')
    fit(DatasetTask(data), _cfg(steps=10), tmp_path / "run")
    result, logs = fit(DatasetTask(data), _cfg(steps=15), tmp_path / "run")
    assert any(m.startswith("resumed") and "at step 10" in m for m in logs)  # same data: resumes
    (data / "clips" / "c1").write_text("another clip")  # the dataset was regenerated / extended
    result, logs = fit(DatasetTask(data), _cfg(steps=15), tmp_path / "run")
    assert any("not resuming" in m and "the training data changed" in m for m in logs)
    assert not any(m.startswith("resumed") for m in logs)
    other = tmp_path / "other.zarr"
    other.mkdir()
    result, logs = fit(DatasetTask(other), _cfg(steps=15), tmp_path / "run")  # another dataset altogether
    assert any("the training data changed" in m for m in logs)


def test_state_without_a_fingerprint_is_not_resumed(tmp_path):
    fit(LinearGanTask(), _cfg(steps=5), tmp_path)
    state = load_checkpoint(tmp_path / "last.pt")
    del state["run_fingerprint"]  # a last.pt from before run fingerprints
    torch.save(state, tmp_path / "last.pt")
    result, logs = fit(LinearGanTask(), _cfg(steps=10), tmp_path)
    assert any("records no run fingerprint" in m for m in logs) and result.steps == 10


def test_resume_refuses_another_task(tmp_path):
    fit(LinearGanTask(), _cfg(steps=5), tmp_path)
    task = LinearGanTask()
    task.name = "toy.other"
    with pytest.raises(RuntimeError, match="not a toy.other training state"):
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


def test_init_from_a_model_export_starts_from_its_generator(tmp_path):
    fit(LinearGanTask(), _cfg(steps=20), tmp_path / "a")
    export = tmp_path / "a" / "model.pt"
    result, logs = fit(LinearGanTask(), _cfg(steps=1, lr_g=1e-9, lr_d=1e-9, seed=5, init=str(export)), tmp_path / "b")
    assert result.steps == 1  # `steps` more updates, counted from 0
    (line,) = [m for m in logs if "initialised" in m]
    assert "initialised the generator from" in line and "step 20 of that run" in line
    for k, v in weights(export).items():
        torch.testing.assert_close(weights(tmp_path / "b" / "model.pt")[k], v, rtol=0, atol=1e-6)
    fit(LinearGanTask(), _cfg(steps=1, lr_g=1e-9, lr_d=1e-9, seed=5), tmp_path / "fresh")  # what seed 5 alone gives
    assert abs(result_weights(tmp_path / "fresh" / "model.pt")[0] - result_weights(export)[0]) > 1e-3


def test_init_from_a_training_state_continues_its_optimisers(tmp_path):
    fit(LinearGanTask(), _cfg(steps=20), tmp_path / "a")
    result, logs = fit(LinearGanTask(), _cfg(steps=5, seed=1, init=str(tmp_path / "a" / "last.pt")), tmp_path / "b")
    assert any("initialised the generator, discriminator, generator optimiser, discriminator optimiser" in m for m in logs)
    state = load_checkpoint(tmp_path / "b" / "last.pt")
    assert state["step"] == 5
    for opt in ("opt_g", "opt_d"):  # Adam's moments and step counts went on from the 20 steps of run a
        assert {int(s["step"]) for s in state[opt]["state"].values()} == {25}
    fit(LinearGanTask(), _cfg(steps=2, lr_g=0.01, init=str(tmp_path / "a" / "last.pt")), tmp_path / "c")
    groups = load_checkpoint(tmp_path / "c" / "last.pt")["opt_g"]["param_groups"]
    assert [g["lr"] for g in groups] == [0.01]  # this run's learning rate, not the one saved with the moments


def test_init_is_part_of_the_run_it_starts(tmp_path):
    fit(LinearGanTask(), _cfg(steps=10), tmp_path / "a")
    fit(LinearGanTask(), _cfg(steps=15, seed=3), tmp_path / "c")
    a, c = str(tmp_path / "a" / "model.pt"), str(tmp_path / "c" / "model.pt")
    fit(LinearGanTask(), _cfg(steps=5, init=a), tmp_path / "run")
    result, logs = fit(LinearGanTask(), _cfg(steps=8, init=a), tmp_path / "run")
    assert any(m.startswith("resumed") and "at step 5" in m for m in logs) and not any("initialised" in m for m in logs)
    result, logs = fit(LinearGanTask(), _cfg(steps=8, init=c), tmp_path / "run")  # other starting weights: another run
    assert any(m.startswith("not resuming") for m in logs) and any("initialised" in m and "step 15" in m for m in logs)


def test_init_may_differ_in_the_keys_the_task_names(tmp_path):
    """A fully convolutional model's weights start a run at another image size; any other
    difference is still refused."""
    from trainers.loop import InitError

    fit(LinearGanTask(), _cfg(steps=5), tmp_path / "a")
    export = str(tmp_path / "a" / "model.pt")
    bigger = LinearGanTask()
    bigger.model_config = lambda: {"kind": "linear", "size": 128}
    with pytest.raises(InitError, match="another model config"):
        Trainer(bigger, _cfg(steps=1, init=export), tmp_path / "b").fit()
    bigger.init_may_differ_in = frozenset({"size"})
    result, logs = fit(bigger, _cfg(steps=1, init=export), tmp_path / "c")
    assert any("initialised the generator" in m and "size None -> 128" in m for m in logs)
    other = LinearGanTask()
    other.model_config = lambda: {"kind": "other", "size": 128}
    other.init_may_differ_in = frozenset({"size"})
    with pytest.raises(InitError, match="another model config"):
        Trainer(other, _cfg(steps=1, init=export), tmp_path / "d").fit()


def test_init_refuses_what_does_not_fit(tmp_path):
    from trainers.loop import InitError

    fit(LinearGanTask(), _cfg(steps=5), tmp_path / "a")
    export = str(tmp_path / "a" / "model.pt")
    other = LinearGanTask()
    other.model_config = lambda: {"kind": "other"}
    with pytest.raises(InitError, match=r"model.pt has another model config: \{'kind': 'linear'\}; this run builds \{'kind': 'other'\}"):
        Trainer(other, _cfg(steps=5, init=export), tmp_path / "b").fit()
    other = LinearGanTask()
    other.name = "toy.other"
    with pytest.raises(InitError, match="is not a toy.other model export or training state .it is 'talkgraph.model/1' of task 'toy.linear'"):
        Trainer(other, _cfg(steps=5, init=export), tmp_path / "c").fit()
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InitError, match="junk.pt could not be read"):
        Trainer(LinearGanTask(), _cfg(steps=5, init=str(tmp_path / "junk.pt")), tmp_path / "d").fit()
    with pytest.raises(InitError, match="nope.pt does not exist"):
        Trainer(LinearGanTask(), _cfg(steps=5, init=str(tmp_path / "nope.pt")), tmp_path / "e").fit()
