"""Training of the landmark generator (IP_LAP §3.1.2) with the shared loop (trainers/loop.py).

A sample: T consecutive frames of a clip (mel windows, pose-prior landmarks, the true jaw and
lips) and N_l reference frames from the rest of the clip (nodes/ip_lap/data.py). Loss, eq. 12:
L1 (eq. 10) + lambda_c * continuity (eq. 11), lambda_c = 1; plus, when lambda_open > 0 (not in the
paper), lambda_open * the mouth-opening error (losses.mouth_opening_l1). No discriminator. The official run
used Adam at lr 1e-4, batch 128, until the validation L1 stopped falling (about 6e-3).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from nodes.model_registry import create_model, model_config
from trainers.loop import StepOutput, TrainTask

from .data import FaceClips
from .losses import landmark_continuity, landmark_l1, mouth_opening_l1
from .models import LANDMARK_GENERATOR


class LandmarkTrainSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: str
    split: str = "train"
    preset: str = "tiny"
    references: int = Field(15, ge=1, le=64, description="N_l reference landmarks per sample (paper 15)")
    margin: float = Field(25, ge=0, le=200, description="face box margin in pixels of the dataset's frames")
    lambda_c: float = Field(1.0, ge=0, description="weight of the continuity term (eq. 12)")
    lambda_open: float = Field(0.0, ge=0, description="weight of the mouth-opening term (not in the paper; 0: eq. 12 only)")


class LandmarkGeneratorTask(TrainTask):
    name = "ip_lap.landmark_generator"

    def __init__(self, settings: LandmarkTrainSettings) -> None:
        self.s = settings
        self.cfg = model_config(LANDMARK_GENERATOR.name, settings.preset)
        self.clips = FaceClips(settings.dataset, settings.split, margin=settings.margin,
                               min_frames=self.cfg.frames + settings.references, images=False)

    def build(self) -> None:
        self.generator = create_model(LANDMARK_GENERATOR.name, self.cfg)

    def model_config(self) -> dict[str, Any]:
        return {"arch": LANDMARK_GENERATOR.name, **self.cfg.model_dump(mode="json")}

    def data_description(self) -> dict[str, Any]:
        return {**self.clips.describe(), "settings": self.s.model_dump()}

    def export_extra(self) -> dict[str, Any]:
        return {"channels": "rgb", "margin": self.s.margin, "references": self.s.references}

    def on_train_start(self, log: Callable[[str], None]) -> None:
        log(f"{len(self.clips)} clips, {int(self.clips.store.lengths.sum())} frames; T={self.cfg.frames}, N_l={self.s.references}")

    def sample_batch(self, rng: np.random.Generator, batch_size: int) -> dict[str, torch.Tensor]:
        return self.clips.landmark_batch(rng, batch_size, self.cfg.frames, self.s.references)

    def generator_step(self, batch: dict[str, torch.Tensor], use_gan: bool) -> StepOutput:
        pred = self.generator(batch["mels"], batch["pose"], batch["ref_pose"], batch["ref_content"])
        l1 = landmark_l1(pred, batch["content"])
        cont = landmark_continuity(pred, batch["content"])
        loss = l1 + self.s.lambda_c * cont
        logged = {"l1": l1.item(), "continuity": cont.item()}
        if self.s.lambda_open > 0:
            opening = mouth_opening_l1(pred, batch["content"])
            loss = loss + self.s.lambda_open * opening
            logged["opening"] = opening.item()
        return StepOutput(loss, logged)
