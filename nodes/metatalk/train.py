"""Training of MetaTalk's A2E (§2.3, eq. 1) and neural face renderer (§2.4, eq. 2-4) with the
shared loop (trainers/loop.py).

A2E learns from (audio, expression) pairs of the pseudo videos: a talkgraph dataset whose clips
are the target driven by a teacher lip-sync path (MakeSyntheticDataset on the target's frame,
or PrepareDataset over a teacher's output videos, which fits the 3DMM on them as §2.2 does).
The renderer learns from the target video itself: its frames with the 3DMM render of their own
fitted coefficients drawn over them (the masking of §2.4), lower half to lower half.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from trainers.fingerprint import arrays_fingerprint
from trainers.gan_losses import bce_d_loss, bce_g_loss
from trainers.loop import StepOutput, TrainTask

from .a2e import AUDIODVP_A2E, MOUTH_DIM, A2ENet, with_mouth_prior
from .face_renderer import FaceRendererConfig, NeuralFaceRendererNet, band_shape, build_discriminator, to_tensor
from .models import A2E, NEURAL_FACE_RENDERER

FEATURE = "mfcc80_window"  # the paper's input; `phonetic` is the option


def load_pseudo_pairs(url: str, split: str | None, feature: str = FEATURE,
                      mouth_prior: str = "none") -> tuple[list[tuple[np.ndarray, np.ndarray]], dict[str, Any]]:
    """[(audio features (T, 28, 80) MFCC blocks or (T, 44) phonetic, expression α (T, E))] of a
    dataset's clips (features computed from the clip's audio when not stored); with `mouth_prior:
    rules` the phonetic features come with their rules mouth, (T, 44 + 28)."""
    from trainers.data import ClipStore

    store = ClipStore(url, split, fields=("expression",), feature=feature)
    pairs = [(store.get(k)["features"], store.get(k)["expression"]) for k in range(len(store))]
    if mouth_prior == "rules":
        pairs = [(with_mouth_prior(f, store.dataset.fps), e) for f, e in pairs]
    return pairs, store.describe()


class A2ETrainSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    preset: str = Field("tiny", description="size preset: tiny or paper")
    feature: Literal["mfcc80_window", "phonetic"] = Field(FEATURE, description="audio input (the paper's MFCC, or phonetic)")
    network: Literal["table1", "audiodvp"] = Field(
        "table1", description="MetaTalk's deep A2E (Table 1) or Table 3's baseline, AudioDVP's shallow one")
    mouth_prior: Literal["none", "rules"] = Field("none", description="rules: learn a residual on the rules mouth (option)")
    lambda_residual: float = Field(0.1, ge=0, description="mouth_prior rules: weight of the mean squared standardised "
                                                           "mouth residual (the model corrects the rules only where it must)")


class A2ETask(TrainTask):
    """Eq. 1: MSE between H(f) and the expression fitted on the pseudo video, frame by frame. With
    `mouth_prior: rules` the pairs' features carry their rules mouth (`with_mouth_prior`, as the
    node computes it) and an L2 term keeps the learned mouth residual small."""

    name = "metatalk.a2e"

    def __init__(self, pairs: list[tuple[np.ndarray, np.ndarray]], settings: A2ETrainSettings, data: dict[str, Any]) -> None:
        from nodes.model_registry import model_config

        if not pairs:
            raise ValueError("no (audio, expression) pairs to train on")
        options = {"feature": settings.feature, **(AUDIODVP_A2E if settings.network == "audiodvp" else {})}
        if settings.mouth_prior != "none":
            options["mouth_prior"] = settings.mouth_prior
        self.cfg = model_config(A2E, {**A2E.presets[settings.preset], **options})
        shapes = {(f.shape[1:], e.shape[1]) for f, e in pairs}
        want = (self.cfg.input_shape, self.cfg.expression_dim)
        if shapes != {want}:
            raise ValueError(f"pairs have ({settings.feature} features, expression) shapes {sorted(shapes)}, "
                             f"the model expects {want}")
        for f, e in pairs:
            if len(f) != len(e):
                raise ValueError(f"a clip has {len(f)} feature frames but {len(e)} expression rows")
        self.pairs, self.data, self.s = pairs, data, settings
        self.lengths = np.array([len(e) for _, e in pairs])

    def build(self) -> None:
        net = A2ENet(self.cfg)
        rows = np.concatenate([f.reshape(-1, f.shape[-1]) for f, _ in self.pairs])
        expr = np.concatenate([e for _, e in self.pairs])
        if self.cfg.mouth_prior == "rules":  # H predicts what is added to the prior: standardise that
            expr = expr.copy()
            expr[:, :MOUTH_DIM] -= np.concatenate([f[:, -MOUTH_DIM:] for f, _ in self.pairs])
        net.mfcc_mean.copy_(torch.from_numpy(rows.mean(0)))
        net.mfcc_std.copy_(torch.from_numpy(rows.std(0) + 1e-3))
        net.expression_mean.copy_(torch.from_numpy(expr.mean(0)))
        net.expression_std.copy_(torch.from_numpy(expr.std(0) + 1e-4))
        self.generator = net

    def model_config(self) -> dict[str, Any]:
        config = {"arch": A2E.name, **self.cfg.model_dump(mode="json")}
        if config["mouth_prior"] == "none":  # as before the option existed: earlier checkpoints still match
            del config["mouth_prior"]
        return config

    def data_description(self) -> dict[str, Any]:
        return {**self.data, "feature": self.cfg.feature, "network": self.s.network, "clips_used": len(self.pairs),
                "pairs": int(self.lengths.sum()),
                **({"mouth_prior": self.cfg.mouth_prior, "lambda_residual": self.s.lambda_residual} if self.cfg.mouth_prior != "none" else {})}

    def data_identity(self) -> dict[str, Any]:
        return {**super().data_identity(), "pairs_sha256": arrays_fingerprint(a for p in self.pairs for a in p)}

    def sample_batch(self, rng: np.random.Generator, batch_size: int) -> dict[str, torch.Tensor]:
        w = self.cfg.window
        ks = rng.choice(len(self.pairs), size=batch_size, p=self.lengths / self.lengths.sum())
        ts = [int(rng.integers(0, self.lengths[k])) for k in ks]
        idx = [np.clip(np.arange(t - w // 2, t - w // 2 + w), 0, self.lengths[k] - 1) for k, t in zip(ks, ts)]
        return {"audio": torch.from_numpy(np.stack([self.pairs[k][0][i] for k, i in zip(ks, idx)])),
                "expression": torch.from_numpy(np.stack([self.pairs[k][1][t] for k, t in zip(ks, ts)]))}

    def generator_step(self, batch: dict[str, torch.Tensor], use_gan: bool) -> StepOutput:
        net = self.generator
        residual = net.residual(batch["audio"])
        alpha = residual * net.expression_std + net.expression_mean + net.prior(batch["audio"])  # = net(audio)
        mse = torch.nn.functional.mse_loss(alpha, batch["expression"])  # eq. 1
        if not net.uses_prior:
            return StepOutput(mse, {"mse": mse.item()})
        penalty = residual[:, :MOUTH_DIM].pow(2).mean()  # nodes/lipsync/prior.py residual_penalty, in H's units
        return StepOutput(mse + self.s.lambda_residual * penalty, {"mse": mse.item(), "residual": penalty.item()})


class RendererTrainSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    preset: str = Field("tiny", description="size preset: tiny, tiny_residual or paper")
    lambda_adv: float = Field(0.01, ge=0, description="eq. 4 λ (not given by the paper)")


class RendererTask(TrainTask):
    """Eq. 4: L1 (eq. 2) + λ GAN (eq. 3) between G(lower half of the synthetic face) and the real one."""

    name = "metatalk.face_renderer"

    def __init__(self, synthetic: np.ndarray, real: np.ndarray, settings: RendererTrainSettings, data: dict[str, Any]) -> None:
        from nodes.model_registry import model_config

        size = real.shape[2]
        if real.shape != synthetic.shape or real.shape[1:] != (*band_shape(size), 3):
            raise ValueError(f"synthetic {synthetic.shape} and real {real.shape} must both be (T, size/2, size, 3) bands")
        self.cfg: FaceRendererConfig = model_config(NEURAL_FACE_RENDERER, {**NEURAL_FACE_RENDERER.presets[settings.preset],
                                                                          "size": size})
        self.synthetic, self.real, self.s, self.data = synthetic, real, settings, data

    def build(self) -> None:
        self.generator = NeuralFaceRendererNet(self.cfg)
        self.discriminator = build_discriminator(self.cfg)

    def model_config(self) -> dict[str, Any]:
        return {"arch": NEURAL_FACE_RENDERER.name, **self.cfg.model_dump(mode="json")}

    def data_description(self) -> dict[str, Any]:
        return {**self.data, "frames": len(self.real), "band": list(self.real.shape[1:3]), "settings": self.s.model_dump()}

    def data_identity(self) -> dict[str, Any]:
        return {**super().data_identity(), "arrays_sha256": arrays_fingerprint([self.synthetic, self.real])}

    def on_train_start(self, log: Callable[[str], None]) -> None:
        log(f"face renderer: {len(self.real)} frames, band {self.real.shape[1]}x{self.real.shape[2]}, "
            f"{self.generator.levels} U-Net levels")

    def sample_batch(self, rng: np.random.Generator, batch_size: int) -> dict[str, torch.Tensor]:
        ts = rng.integers(0, len(self.real), size=batch_size)
        return {"synthetic": to_tensor(self.synthetic[ts]), "real": to_tensor(self.real[ts])}

    def generator_step(self, batch: dict[str, torch.Tensor], use_gan: bool) -> StepOutput:
        out = self.generator(batch["synthetic"])
        l1 = (out - batch["real"]).abs().mean()  # eq. 2
        loss, logs = l1, {"l1": l1.item()}
        if use_gan and self.s.lambda_adv > 0:
            adv = bce_g_loss(self.discriminator(out))  # eq. 3, generator side
            loss = loss + self.s.lambda_adv * adv  # eq. 4
            logs["g_gan"] = adv.item()
        return StepOutput(loss, logs, out.detach())

    def discriminator_step(self, batch: dict[str, torch.Tensor], state: Any) -> StepOutput | None:
        if self.s.lambda_adv == 0:
            return None
        loss = bce_d_loss(self.discriminator(batch["real"]), self.discriminator(state))
        return StepOutput(loss, {"d_gan": loss.item()})
