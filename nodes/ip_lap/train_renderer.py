"""Training of the landmark-to-video renderer (IP_LAP §3.2.3) with the shared loop (trainers/loop.py).

A sample: 2k+1 consecutive frames (their sketches; the middle one is the target face and gives
the mel window) and N reference frames of the same clip (nodes/ip_lap/data.py). Loss, eq. 20:
lambda_w L_w (warped references vs the target, eq. 17) + lambda_r (L_r + style L_s, eq. 18-19) +
lambda_g L_g + lambda_f L_f (pix2pixHD LSGAN and feature matching with a two-scale PatchGAN).
With lambda_w = 2.5, lambda_r = 4, style 250 (so lambda_s = 1000), lambda_g = 0.25, lambda_f = 2.5
as the paper; the official schedule trains the alignment module alone first (loss 2.5 L_w) and
adds the rest later — here until `gan_start`, when the adversarial terms start too.

Without VGG-19 weights the perceptual terms use the documented fallback (nodes/ip_lap/losses.py).
Departures: the discriminator is trainers.discriminators.MultiScalePatchDiscriminator (affine
instance norm; the official pix2pixHD one has none) and its loss averages the scales.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from nodes.model_registry import create_model, model_config
from trainers.discriminators import MultiScalePatchDiscriminator
from trainers.loop import StepOutput, TrainTask
from trainers.losses import feature_matching_loss, lsgan_d_loss, lsgan_g_loss

from .data import FaceClips
from .losses import RenderLoss
from .models import RENDERER


class RendererTrainSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: str
    split: str = "train"
    preset: str = "tiny"
    references: int = Field(3, ge=1, le=64, description="N reference images per sample (paper: 3 in training)")
    margin: float = Field(25, ge=0, le=200, description="face box margin in pixels of the dataset's frames")
    lambda_w: float = Field(2.5, ge=0)
    lambda_r: float = Field(4.0, ge=0)
    style: float = Field(250.0, ge=0, description="style weight inside L_r (lambda_s / lambda_r)")
    lambda_g: float = Field(0.25, ge=0)
    lambda_f: float = Field(2.5, ge=0)
    disc_channels: int = Field(64, ge=4, le=512, description="discriminator width (pix2pixHD: 64)")
    vgg_weights: str | None = None


class RendererTask(TrainTask):
    name = "ip_lap.renderer"
    init_may_differ_in = frozenset({"size"})  # fully convolutional: tiny's 64-px weights start a tiny128 run

    def __init__(self, settings: RendererTrainSettings) -> None:
        self.s = settings
        self.cfg = model_config(RENDERER.name, settings.preset)
        self.clips = FaceClips(settings.dataset, settings.split, size=self.cfg.size, margin=settings.margin,
                               min_frames=max(self.cfg.sketches, settings.references))
        self.loss = RenderLoss(settings.vgg_weights, settings.style)

    def build(self) -> None:
        self.generator = create_model(RENDERER.name, self.cfg)
        self.discriminator = MultiScalePatchDiscriminator(3, channels=self.s.disc_channels, n_layers=3, num_scales=2)

    def model_config(self) -> dict[str, Any]:
        return {"arch": RENDERER.name, **self.cfg.model_dump(mode="json")}

    def data_description(self) -> dict[str, Any]:
        return {**self.clips.describe(), "settings": self.s.model_dump()}

    def export_extra(self) -> dict[str, Any]:
        return {"channels": "rgb", "margin": self.s.margin, "perceptual": self.loss.kind}

    def on_train_start(self, log: Callable[[str], None]) -> None:
        self.loss.to(next(self.generator.parameters()).device)
        log(f"perceptual loss: {self.loss.kind}")
        log(f"{len(self.clips)} clips, {int(self.clips.store.lengths.sum())} frames; faces {self.cfg.size}px, N={self.s.references}")

    def sample_batch(self, rng: np.random.Generator, batch_size: int) -> dict[str, torch.Tensor]:
        return self.clips.render_batch(rng, batch_size, self.cfg.sketches, self.s.references)

    def generator_step(self, batch: dict[str, torch.Tensor], use_gan: bool) -> StepOutput:
        s = self.s
        out = self.generator(batch["face"], batch["target_sketches"], batch["ref_images"], batch["ref_sketches"], batch["mel"])
        warp = self.loss(out["warped"], batch["face"], with_style=False)
        loss = s.lambda_w * warp
        logs = {"warp": warp.item(), "l1": (out["face"] - batch["face"]).abs().mean().item()}
        if use_gan:  # after the alignment-only phase: reconstruction, style and adversarial terms
            rec = self.loss(out["face"], batch["face"], with_style=True)
            fake = self.discriminator(out["face"])
            with torch.no_grad():
                real = self.discriminator(batch["face"])
            g_gan, feat = lsgan_g_loss(fake), feature_matching_loss(real, fake)
            loss = loss + s.lambda_r * rec + s.lambda_g * g_gan + s.lambda_f * feat
            logs.update({"rec": rec.item(), "g_gan": g_gan.item(), "feat": feat.item()})
        return StepOutput(loss, logs, state=out["face"].detach())

    def discriminator_step(self, batch: dict[str, torch.Tensor], state: Any) -> StepOutput | None:
        d = lsgan_d_loss(self.discriminator(batch["face"]), self.discriminator(state))
        return StepOutput(d, {"d_loss": d.item()})
