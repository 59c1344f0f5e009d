"""Training of the keypoint detector N_D and the renderer N_I together on video reconstruction
(Audio2Head §4.2: "we first follow the training details of FOMM to train N_D and N_I").

A sample is a (source, driving) frame pair of one clip. The detector finds keypoints in both,
the renderer redraws the driving frame from the source (FOMM §3). Loss (FOMM §3.3, the official
vox-256 weights): lambda_perc * the perceptual loss summed over the pyramid 1, 1/2, 1/4, 1/8
(VGG-19 when its weights are given, else the documented fallback of trainers/losses.py) +
lambda_eq * (equivariance of keypoints + of Jacobians) under a random TPS warp of the driving
frame. The official config sets the generator's GAN weight to 0, so there is no discriminator.
Augmentation: the pair is mirrored left-right at random (FOMM flips too).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from nodes.model_registry import model_config
from trainers.data import ClipStore
from trainers.loop import StepOutput, TrainTask
from trainers.losses import PerceptualLoss

from .blocks import image_tensor
from .keypoint_autoencoder import KeypointAutoencoder
from .losses import RandomTPS, equivariance_losses, pyramid_loss
from .models import KEYPOINT_AUTOENCODER


class KeypointTrainSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: str
    split: str = "train"
    preset: str = "tiny"
    frame_size: int = Field(256, ge=32, le=1024)
    lambda_perc: float = Field(10.0, ge=0, description="perceptual weight per pyramid scale (FOMM: 10)")
    lambda_eq_value: float = Field(10.0, ge=0, description="keypoint equivariance (FOMM: 10)")
    lambda_eq_jacobian: float = Field(10.0, ge=0, description="Jacobian equivariance (FOMM: 10)")
    pyramid_scales: int = Field(4, ge=1, le=6)
    sigma_affine: float = 0.05
    sigma_tps: float = 0.005
    vgg_weights: str | None = None


class KeypointTask(TrainTask):
    name = "audio2head.keypoint_autoencoder"

    def __init__(self, settings: KeypointTrainSettings) -> None:
        self.s = settings
        self.arch = model_config(KEYPOINT_AUTOENCODER, settings.preset)
        self.store = ClipStore(settings.dataset, settings.split, fields=("frames",), frame_size=settings.frame_size, min_frames=2)
        self.perceptual = PerceptualLoss(settings.vgg_weights, scales=1)

    def build(self) -> None:
        self.generator = KeypointAutoencoder(self.arch)
        multiple = self.generator.renderer.multiple
        if self.s.frame_size % multiple:
            raise ValueError(f"frame_size {self.s.frame_size} must be a multiple of {multiple} for this preset")

    def model_config(self) -> dict[str, Any]:
        return {"arch": KEYPOINT_AUTOENCODER.name, **self.arch.model_dump()}

    def data_description(self) -> dict[str, Any]:
        return {**self.store.describe(), "settings": self.s.model_dump()}

    def on_train_start(self, log: Callable[[str], None]) -> None:
        self.perceptual.to(next(self.generator.parameters()).device)
        log(f"perceptual loss: {self.perceptual.kind}")
        log(f"{len(self.store)} clips, {int(self.store.lengths.sum())} frames at {self.s.frame_size}px")

    def sample_batch(self, rng: np.random.Generator, batch_size: int) -> dict[str, torch.Tensor]:
        src, drv = [], []
        for k in self.store.sample_clips(rng, batch_size, 2):
            frames = self.store.get(int(k))["frames"]
            a, b = rng.choice(len(frames), 2, replace=False)
            pair = frames[[a, b]]
            if rng.random() < 0.5:
                pair = pair[:, :, ::-1]
            src.append(pair[0])
            drv.append(pair[1])
        seed = int(rng.integers(2**31))
        return {"source": image_tensor(np.stack(src)), "driving": image_tensor(np.stack(drv)), "tps_seed": seed}

    def generator_step(self, batch: dict[str, Any], use_gan: bool) -> StepOutput:
        s = self.s
        out = self.generator(batch["source"], batch["driving"])
        perc = pyramid_loss(self.perceptual, out["prediction"], batch["driving"], s.pyramid_scales)
        loss = s.lambda_perc * perc
        logs = {"perceptual": perc.item(), "l1": (out["prediction"] - batch["driving"]).abs().mean().item()}
        if s.lambda_eq_value or s.lambda_eq_jacobian:
            gen = torch.Generator().manual_seed(batch["tps_seed"])
            tps = RandomTPS(batch["driving"].shape[0], s.sigma_affine, s.sigma_tps, generator=gen, device=batch["driving"].device)
            kp_warped = self.generator.detector(tps.warp_image(batch["driving"]))
            eq_value, eq_jac = equivariance_losses(out["kp_driving"], kp_warped, tps)
            loss = loss + s.lambda_eq_value * eq_value + s.lambda_eq_jacobian * eq_jac
            logs.update({"eq_value": eq_value.item(), "eq_jacobian": eq_jac.item()})
        return StepOutput(loss, logs)
