"""Training of the keypoint detector N_D and the renderer N_I together on video reconstruction
(Audio2Head §4.2: "we first follow the training details of FOMM to train N_D and N_I").

A sample is a (source, driving) frame pair of one clip. The detector finds keypoints in both,
the renderer redraws the driving frame from the source (FOMM §3). Loss (FOMM §3.3, the official
vox-256 weights): lambda_perc * the perceptual loss summed over the pyramid 1, 1/2, 1/4, 1/8
(VGG-19 when its weights are given, else the documented fallback of trainers/losses.py) +
lambda_eq * (equivariance of keypoints + of Jacobians) under a random TPS warp of the driving
frame. The official config sets the generator's GAN weight to 0, so there is no discriminator.
Augmentation: the pair is mirrored left-right at random (FOMM flips too).

`mouth_keypoints` (a departure, issue 11: mouth.py): the renderer also takes 4 lip keypoints
from each frame's landmarks, and `lambda_mouth` adds the perceptual loss of a 64 px crop around
the driving frame's mouth, so the few lip pixels weigh enough to be learnt; `grow_from` starts
from a checkpoint without them (its weights kept, the new inputs at zero) and `freeze_detector`
keeps N_D as it was (the bundled motion field generator was trained on its keypoints).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from nodes.model_registry import model_config
from trainers.data import ClipStore
from trainers.loop import StepOutput, TrainTask, file_sha256
from trainers.losses import PerceptualLoss

from .blocks import image_tensor
from .keypoint_autoencoder import KeypointAutoencoder
from .losses import RandomTPS, equivariance_losses, pyramid_loss
from .models import KEYPOINT_AUTOENCODER
from .mouth import N_MOUTH_KP, grow_state, mirror_points, mouth_box, mouth_crop, mouth_points


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
    mouth_keypoints: bool = False
    lambda_mouth: float = Field(0.0, ge=0, description="perceptual loss of the mouth crop (with mouth_keypoints)")
    grow_from: str | None = None
    freeze_detector: bool = False


class KeypointTask(TrainTask):
    name = "audio2head.keypoint_autoencoder"

    def __init__(self, settings: KeypointTrainSettings) -> None:
        self.s = settings
        arch = model_config(KEYPOINT_AUTOENCODER, settings.preset)
        if settings.mouth_keypoints:
            arch = model_config(KEYPOINT_AUTOENCODER, {**arch.model_dump(), "renderer": {
                **arch.renderer.model_dump(), "mouth_kp": N_MOUTH_KP}})
        self.arch = arch
        fields = ("frames", "landmarks") if settings.mouth_keypoints else ("frames",)
        self.store = ClipStore(settings.dataset, settings.split, fields=fields, frame_size=settings.frame_size, min_frames=2)
        self.perceptual = PerceptualLoss(settings.vgg_weights, scales=1)

    def build(self) -> None:
        self.generator = KeypointAutoencoder(self.arch)
        multiple = self.generator.renderer.multiple
        if self.s.frame_size % multiple:
            raise ValueError(f"frame_size {self.s.frame_size} must be a multiple of {multiple} for this preset")
        if self.s.grow_from:
            from trainers.exports import read_model_export

            old = read_model_export(self.s.grow_from, KEYPOINT_AUTOENCODER.name, "grow_from takes a keypoint checkpoint")
            self.grown = grow_state(self.generator, old["generator"])
        if self.s.freeze_detector:  # e.g. a motion field generator was trained on its keypoints
            self.generator.detector.requires_grad_(False)

    def model_config(self) -> dict[str, Any]:
        return {"arch": KEYPOINT_AUTOENCODER.name, **self.arch.model_dump()}

    def data_description(self) -> dict[str, Any]:
        grow = {"grow_from_sha256": file_sha256(self.s.grow_from)} if self.s.grow_from else {}
        return {**self.store.describe(), "settings": self.s.model_dump(), **grow}

    def on_train_start(self, log: Callable[[str], None]) -> None:
        self.perceptual.to(next(self.generator.parameters()).device)
        log(f"perceptual loss: {self.perceptual.kind}")
        log(f"{len(self.store)} clips, {int(self.store.lengths.sum())} frames at {self.s.frame_size}px")
        if self.s.grow_from:
            log(f"grown from {self.s.grow_from}: {', '.join(self.grown) or 'nothing to grow'}")

    def sample_batch(self, rng: np.random.Generator, batch_size: int) -> dict[str, torch.Tensor]:
        src, drv, mouths = [], [], []
        for k in self.store.sample_clips(rng, batch_size, 2):
            clip = self.store.get(int(k))
            frames = clip["frames"]
            a, b = rng.choice(len(frames), 2, replace=False)
            pair = frames[[a, b]]
            mouth = mouth_points(clip["landmarks"][[a, b]], frames.shape[1:3]) if self.s.mouth_keypoints else None
            if rng.random() < 0.5:
                pair = pair[:, :, ::-1]
                mouth = None if mouth is None else mirror_points(mouth)
            src.append(pair[0])
            drv.append(pair[1])
            mouths.append(mouth)
        seed = int(rng.integers(2**31))
        batch = {"source": image_tensor(np.stack(src)), "driving": image_tensor(np.stack(drv)), "tps_seed": seed}
        if self.s.mouth_keypoints:
            m = torch.from_numpy(np.stack(mouths))
            batch.update(mouth_source=m[:, 0], mouth_driving=m[:, 1])
        return batch

    def generator_step(self, batch: dict[str, Any], use_gan: bool) -> StepOutput:
        s = self.s
        if s.freeze_detector:
            self.generator.detector.eval()  # its BatchNorm statistics stay too
        out = self.generator(batch["source"], batch["driving"], batch.get("mouth_source"), batch.get("mouth_driving"))
        perc = pyramid_loss(self.perceptual, out["prediction"], batch["driving"], s.pyramid_scales)
        loss = s.lambda_perc * perc
        logs = {"perceptual": perc.item(), "l1": (out["prediction"] - batch["driving"]).abs().mean().item()}
        if s.mouth_keypoints and s.lambda_mouth:
            centre, half = mouth_box(batch["mouth_driving"])
            crops = [mouth_crop(x, centre, half) for x in (out["prediction"], batch["driving"])]
            mouth = self.perceptual(*crops)
            loss = loss + s.lambda_mouth * mouth
            logs.update({"mouth": mouth.item(), "mouth_l1": (crops[0] - crops[1]).abs().mean().item()})
        if (s.lambda_eq_value or s.lambda_eq_jacobian) and not s.freeze_detector:
            gen = torch.Generator().manual_seed(batch["tps_seed"])
            tps = RandomTPS(batch["driving"].shape[0], s.sigma_affine, s.sigma_tps, generator=gen, device=batch["driving"].device)
            kp_warped = self.generator.detector(tps.warp_image(batch["driving"]))
            eq_value, eq_jac = equivariance_losses(out["kp_driving"], kp_warped, tps)
            loss = loss + s.lambda_eq_value * eq_value + s.lambda_eq_jacobian * eq_jac
            logs.update({"eq_value": eq_value.item(), "eq_jacobian": eq_jac.item()})
        return StepOutput(loss, logs)
