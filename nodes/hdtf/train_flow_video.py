"""Training of the flow-guided video generator G^vid (HDTF §4.2, loss eq. 13) with the shared loop.

A sample is a (reference, target) frame pair from one clip with the approximate dense flow
F_app between them, built from the two frames' 3DMM coefficients exactly as at inference
(`flow_builder`, by default the project's DenseFlowBuilder geometry). Pairs are cropped at
random (same box for both frames and the flow; flow vectors rescaled) so the generator learns at
the pixel scale of the frames while each step stays cheap on a CPU.

Loss (eq. 13): LSGAN with a multi-scale PatchGAN D^vid + lambda_perc * perceptual (VGG-19 when
the user gives its weights, else the documented fallback of trainers/losses.py) + lambda_FM *
feature matching. The lambda values are not given in the paper; pix2pixHD's 10/10 are used.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from nodes.model_registry import model_config
from trainers.data import ClipStore, crop_resize, random_crop_box
from trainers.discriminators import MultiScalePatchDiscriminator
from trainers.loop import StepOutput, TrainTask
from trainers.losses import PerceptualLoss, feature_matching_loss, lsgan_d_loss, lsgan_g_loss

from .blocks import pixel_flow_to_normalized
from .flow_video_generator import FlowVideoGeneratorNet
from .models import FLOW_VIDEO_GENERATOR

# D^vid widths per preset (the discriminator is not part of the inference checkpoint)
DISCRIMINATORS = {
    "paper": {"channels": 64, "n_layers": 3, "num_scales": 2, "max_channels": 512},
    "tiny": {"channels": 16, "n_layers": 3, "num_scales": 2, "max_channels": 128},
}


class FlowBuilder(Protocol):
    def __call__(self, clip: dict[str, Any], ref: int, targets: np.ndarray) -> np.ndarray:
        """F_app (len(targets), H, W, 2) from frame `ref` of the clip to each target frame."""


class FlowVideoTrainSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(..., description="talkgraph dataset (Zarr path or fsspec URL)")
    split: str = "train"
    preset: str = Field("tiny", description="size preset: tiny or paper")
    frame_size: int = Field(256, ge=32, le=2048, description="frames are loaded at this size")
    crop: int = Field(128, ge=0, le=2048, description="training crop size (0: whole frames)")
    crop_scale: tuple[float, float] = Field((1.0, 1.0), description="crop side = crop * U(lo, hi), resized to crop")
    vgg_weights: str | None = Field(None, description="VGG-19 state dict for the perceptual loss (else the fallback)")
    lambda_perc: float = Field(10.0, ge=0)
    lambda_fm: float = Field(10.0, ge=0)
    lambda_gan: float = Field(1.0, ge=0)


class FlowVideoTask(TrainTask):
    name = "hdtf.flow_video_generator"

    def __init__(self, settings: FlowVideoTrainSettings, flow_builder: FlowBuilder | None = None) -> None:
        self.s = settings
        self.arch = model_config(FLOW_VIDEO_GENERATOR, settings.preset)
        self.store = ClipStore(settings.dataset, settings.split, fields=("frames", "landmarks", "expression", "pose", "shape"),
                               frame_size=settings.frame_size, min_frames=2)
        self.flow_builder = flow_builder or default_flow_builder()
        self.perceptual = PerceptualLoss(settings.vgg_weights)
        m = 2**self.arch.encoder_down
        size = settings.crop or settings.frame_size
        if size % m:
            raise ValueError(f"training size {size} must be a multiple of {m}")

    def build(self) -> None:
        self.generator = FlowVideoGeneratorNet(self.arch)
        d = DISCRIMINATORS.get(self.s.preset, DISCRIMINATORS["tiny"])
        self.discriminator = MultiScalePatchDiscriminator(self.arch.channels, 0, **d)

    def model_config(self) -> dict[str, Any]:
        return {"arch": FLOW_VIDEO_GENERATOR.name, **self.arch.model_dump()}

    def data_description(self) -> dict[str, Any]:
        return {**self.store.describe(), "settings": self.s.model_dump()}

    def on_train_start(self, log: Callable[[str], None]) -> None:
        self.perceptual.to(next(self.generator.parameters()).device)
        log(f"perceptual loss: {self.perceptual.kind}")
        log(f"{len(self.store)} training clips, {int(self.store.lengths.sum())} frames at {self.s.frame_size}px")

    def sample_batch(self, rng: np.random.Generator, batch_size: int) -> dict[str, torch.Tensor]:
        s = self.s
        refs, targets, flows = [], [], []
        for k in self.store.sample_clips(rng, batch_size, 2):
            clip = self.store.get(int(k))
            n = clip["n_frames"]
            ref, tgt = (int(v) for v in rng.choice(n, 2, replace=False))
            flow = self.flow_builder(clip, ref, np.array([tgt]))[0]
            h, w = clip["frames"].shape[1:3]
            box = random_crop_box(rng, h, w, s.crop, s.crop_scale) if s.crop else (0, 0, min(h, w))
            size = s.crop or min(h, w)
            refs.append(crop_resize(clip["frames"][ref], box, size))
            targets.append(crop_resize(clip["frames"][tgt], box, size))
            flows.append(crop_resize(flow, box, size, is_flow=True))
        to_image = lambda xs: torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).float() / 255.0  # noqa: E731
        flow_t = pixel_flow_to_normalized(torch.from_numpy(np.stack(flows).astype(np.float32)))
        return {"reference": to_image(refs), "target": to_image(targets), "flow": flow_t}

    def generator_step(self, batch: dict[str, torch.Tensor], use_gan: bool) -> StepOutput:
        s = self.s
        fake = self.generator(batch["reference"], batch["flow"])["image"]
        perc = self.perceptual(fake, batch["target"])
        loss = s.lambda_perc * perc
        logs = {"perceptual": perc.item(), "l1": (fake - batch["target"]).abs().mean().item()}
        if use_gan:
            d_fake, d_real = self.discriminator(fake), self.discriminator(batch["target"])
            adv, fm = lsgan_g_loss(d_fake), feature_matching_loss(d_real, d_fake)
            loss = loss + s.lambda_gan * adv + s.lambda_fm * fm
            logs.update({"g_adv": adv.item(), "feature_matching": fm.item()})
        return StepOutput(loss, logs, fake.detach())

    def discriminator_step(self, batch: dict[str, torch.Tensor], fake: torch.Tensor) -> StepOutput:
        d = lsgan_d_loss(self.discriminator(batch["target"]), self.discriminator(fake))
        return StepOutput(d, {"d_adv": d.item()})


def default_flow_builder() -> FlowBuilder:
    """F_app between two frames of a clip from their 3DMM coefficients (DenseFlowBuilder's geometry)."""
    from .fapp import ClipFlowBuilder

    return ClipFlowBuilder()
