"""Training of the landmark generator (IP_LAP §3.1.2) with the shared loop (trainers/loop.py).

A sample: T consecutive frames of a clip (mel windows, pose-prior landmarks, the true jaw and
lips) and N_l reference frames from the rest of the clip (nodes/ip_lap/data.py). Loss, eq. 12:
L1 (eq. 10) + lambda_c * continuity (eq. 11), lambda_c = 1; plus, when lambda_open > 0 (not in the
paper), lambda_open * the mouth-opening error (losses.mouth_opening_l1). No discriminator. The official run
used Adam at lr 1e-4, batch 128, until the validation L1 stopped falling (about 6e-3).

With `mouth_prior: rules` (not in the paper; docs/ip_lap.md "Rules lip prior") each clip's
prior and phonetic features are computed once from its landmarks and stored audio, by the
function the node calls (mouth_prior.content_prior), and the loss adds lambda_residual x the
mean squared residual (output minus prior, face-box units), so the model only corrects the
rules where the data insist. `warm_start` seeds it from an export without the prior.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

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
    mouth_prior: Literal["none", "rules"] = Field("none", description="rules: output = rule-based lip prior + learned residual")
    residual_inputs: Literal["all", "phones"] = Field("all", description="mouth_prior rules: the audio tokens read mels "
                                                                         "and phonetic features (all) or the latter alone")
    residual_gate: Literal["none", "speech"] = Field("speech", description="mouth_prior rules: speech = the residual "
                                                                           "is scaled by the features' speech dimension")
    lambda_residual: float = Field(100.0, ge=0, description="mouth_prior rules: weight of the mean squared residual "
                                                            "(face-box units: a residual of 0.01 costs 0.01)")
    warm_start: str | None = Field(None, description="mouth_prior rules: an export without the prior whose weights seed "
                                                     "this model where shapes agree (the heads stay zero)")


def warm_start(generator: torch.nn.Module, path: str) -> list[str]:
    """Seed a `mouth_prior: rules` generator from an export without the prior: every tensor of the
    same name and shape is copied except the two output heads, which stay zero (the residual
    starts at zero). Returns the names left as initialised."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    src = state.get("generator", state) if isinstance(state, dict) else state
    own = generator.state_dict()
    kept = []
    for key, value in own.items():
        old = src.get(key)
        if old is None or key.startswith(("lip_head.", "jaw_head.")) or old.shape != value.shape:
            kept.append(key)
            continue
        own[key] = old
    generator.load_state_dict(own)
    return kept


class LandmarkGeneratorTask(TrainTask):
    name = "ip_lap.landmark_generator"

    def __init__(self, settings: LandmarkTrainSettings) -> None:
        self.s = settings
        self.cfg = model_config(LANDMARK_GENERATOR.name, settings.preset)
        if settings.mouth_prior != "none":
            self.cfg = self.cfg.model_copy(update={"mouth_prior": settings.mouth_prior,
                                                   "residual_inputs": settings.residual_inputs,
                                                   "residual_gate": settings.residual_gate})
        self.clips = FaceClips(settings.dataset, settings.split, margin=settings.margin,
                               min_frames=self.cfg.frames + settings.references, images=False,
                               prior=settings.mouth_prior == "rules")

    def build(self) -> None:
        self.generator = create_model(LANDMARK_GENERATOR.name, self.cfg)
        if self.s.warm_start:
            warm_start(self.generator, self.s.warm_start)

    def model_config(self) -> dict[str, Any]:
        config = self.cfg.model_dump(mode="json")
        if config["mouth_prior"] == "none":  # as before the option existed: earlier checkpoints still match
            for key in ("mouth_prior", "phonetic_dim", "residual_inputs", "residual_gate"):
                del config[key]
        return {"arch": LANDMARK_GENERATOR.name, **config}

    def data_description(self) -> dict[str, Any]:
        return {**self.clips.describe(), "settings": self.s.model_dump()}

    def export_extra(self) -> dict[str, Any]:
        return {"channels": "rgb", "margin": self.s.margin, "references": self.s.references}

    def on_train_start(self, log: Callable[[str], None]) -> None:
        log(f"{len(self.clips)} clips, {int(self.clips.store.lengths.sum())} frames; T={self.cfg.frames}, N_l={self.s.references}")

    def sample_batch(self, rng: np.random.Generator, batch_size: int) -> dict[str, torch.Tensor]:
        return self.clips.landmark_batch(rng, batch_size, self.cfg.frames, self.s.references)

    def generator_step(self, batch: dict[str, torch.Tensor], use_gan: bool) -> StepOutput:
        prior = batch.get("prior")
        pred = self.generator(batch["mels"], batch["pose"], batch["ref_pose"], batch["ref_content"], prior, batch.get("phonetic"))
        l1 = landmark_l1(pred, batch["content"])
        cont = landmark_continuity(pred, batch["content"])
        loss = l1 + self.s.lambda_c * cont
        logged = {"l1": l1.item(), "continuity": cont.item()}
        if self.s.lambda_open > 0:
            opening = mouth_opening_l1(pred, batch["content"])
            loss = loss + self.s.lambda_open * opening
            logged["opening"] = opening.item()
        if prior is not None:
            residual = (pred - prior).pow(2).mean()  # after the gate: what moves the output
            loss = loss + self.s.lambda_residual * residual
            logged["residual"] = residual.item()
        return StepOutput(loss, logged)
