"""Training of the animation generator G^ani (HDTF §4.1, loss eq. 7) with the shared loop.

Each clip's first frame is its reference: the identity embedding comes from it and head-pose
targets are deltas from its pose. A batch is B windows of T frames of audio features (the
condition), mouth and eyebrow coefficients and pose deltas. Everything the networks and the
discriminators see is standardised with training-set statistics, which the generator keeps
as buffers (so its checkpoint maps raw features to raw coefficients).

Departures: eq. 5 is applied to the standardised signals shifted by +3 sigma (SSIM_OFFSET).
SSIM's luminance and structure terms both change sign for zero-mean data, so on raw signed
signals an anti-correlated prediction with the opposite mean would score as well as a correct
one; the shift keeps every mean positive, as the paper's raw eyebrow coefficients are, and
leaves the contrast/structure term untouched. delta_1, delta_2 are set for that dynamic range
(~6 sigma: (0.01*6)^2, (0.03*6)^2). The lambda weights are not given in the paper and are
parameters here. With `mouth_prior: rules` (an explicit option, docs/lipsync.md) each clip's
rules mouth is computed once from its stored phonetic features, exactly as the node does at
inference, and `lambda_residual` weighs an L2 penalty on the learned correction.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from nodes.face.pose_deltas import pose_delta
from nodes.lipsync.prior import residual_penalty, rules_mouth_prior, warm_start
from nodes.model_registry import model_config
from trainers.data import ClipStore, sample_windows
from trainers.data.audio_features import SHAPES
from trainers.loop import StepOutput, TrainTask, file_sha256
from trainers.losses import l1_loss, lsgan_d_loss, lsgan_g_loss, sequence_ssim

from .animation_generator import PARTS, AnimationDiscriminators, AnimationGeneratorNet
from .coeffs import split_expression
from .identity import IdentityEncoder, spread_floor
from .models import ANIMATION_GENERATOR

SSIM_C1, SSIM_C2 = (0.01 * 6) ** 2, (0.03 * 6) ** 2
SSIM_OFFSET = 3.0


def shifted_ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return sequence_ssim(pred + SSIM_OFFSET, target + SSIM_OFFSET, SSIM_C1, SSIM_C2)


def drop_acoustic_cues(audio_n: torch.Tensor, p: float) -> torch.Tensor:
    """Standardised phonetic features (B, T, 44) with the acoustic dims of a random fraction `p`
    of the windows set to 0, their training mean (departure from the paper: a regulariser for
    voices unlike the training ones)."""
    from trainers.data.phonetic import N_PHONES

    drop = torch.rand(audio_n.shape[0], 1, 1, device=audio_n.device) < p
    acoustic = torch.zeros_like(audio_n, dtype=torch.bool)
    acoustic[..., N_PHONES:] = True
    return audio_n.masked_fill(drop & acoustic, 0.0)


class AnimationTrainSettings(BaseModel):
    """What to train on and the loss weights of eq. 7."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(..., description="talkgraph dataset (Zarr path or fsspec URL)")
    split: str = "train"
    preset: str = Field("tiny", description="size preset: tiny or paper")
    window: int = Field(64, ge=8, le=1024, description="frames per training window (T)")
    feature: Literal["mfcc_pitch", "phonetic"] = Field(
        "mfcc_pitch", description="audio feature variant: mfcc_pitch (the paper's 13 MFCC + 2 pitch) or phonetic (44 per "
                                  "frame, speaker-independent: docs/lipsync.md); the input layer is sized to it")
    identity: Literal["morph", "vggface"] = "morph"
    vggface_weights: str | None = None
    lambda_mouth: float = Field(10.0, ge=0)
    lambda_brow: float = Field(5.0, ge=0)
    lambda_pose: float = Field(5.0, ge=0)
    lambda_gan: float = Field(1.0, ge=0, description="weight of each of the three LSGAN terms")
    acoustic_dropout: float = Field(0.0, ge=0, le=1, description=(
        "phonetic features only: the fraction of training windows whose acoustic cues (voicing, loudness, "
        "loudness change, speech activity) are replaced by their training mean, so that the model must also "
        "read the mouth from the phones, which do not depend on the voice (0: off)"))
    mouth_prior: Literal["none", "rules"] = Field("none", description=(
        "none: the paper's generator; rules (phonetic features only): the rule-based mouth of the clip's features "
        "is an extra input and the model learns a residual on top of it (docs/lipsync.md)"))
    residual_inputs: Literal["all", "phones", "prior"] = Field("all", description=(
        "mouth_prior rules: the mouth residual reads all features (shared encoder) or only the phone classes "
        "and the prior (its own encoder: no voice-dependent acoustic cues)"))
    lambda_residual: float = Field(1.0, ge=0, description=(
        "mouth_prior rules: weight of the mean squared (standardised) residual, so the model only corrects the "
        "rules where the data says so reliably"))
    warm_start: str | None = Field(None, description=(
        "mouth_prior rules: an animation generator export without the prior (e.g. the bundled one) whose weights "
        "seed this model where the shapes agree (its input layer gets the prior's channels at zero)"))
    identity_noise: float = Field(1.0, ge=0, description=(
        "std of Gaussian noise added to the standardised identity while training: a dataset with few "
        "identities says nothing about how style varies between people, and the noise teaches the AdaIN "
        "branch to stay sane on faces it never saw (lower it for data with many identities)"))


class AnimationTask(TrainTask):
    name = "hdtf.animation_generator"

    def __init__(self, settings: AnimationTrainSettings) -> None:
        self.s = settings
        self.arch = model_config(ANIMATION_GENERATOR, settings.preset)
        encoder = IdentityEncoder(settings.identity, settings.vggface_weights)
        self.arch = self.arch.model_copy(update={"identity": settings.identity, "identity_dim": encoder.dim,
                                                 "audio_dim": SHAPES[settings.feature][0],
                                                 "mouth_prior": settings.mouth_prior,
                                                 "residual_inputs": settings.residual_inputs})
        if settings.mouth_prior != "none" and settings.feature != "phonetic":
            raise ValueError(f"mouth_prior {settings.mouth_prior} needs feature: phonetic (the rules read its phones)")
        self.store = ClipStore(settings.dataset, settings.split, fields=("expression", "pose", "shape"),
                               feature=settings.feature, min_frames=settings.window)
        self.clips = [self._prepare(k, encoder) for k in range(len(self.store))]
        self.stats = self._statistics()

    def _prepare(self, k: int, encoder: IdentityEncoder) -> dict[str, np.ndarray]:
        c = self.store.get(k)
        ref = self.store.frame(k, 0)
        mouth, brow = split_expression(c["expression"])
        feats = c["features"]
        if feats.ndim != 2 or feats.shape[1] != self.arch.audio_dim:
            raise ValueError(f"clip {c['name']}: {self.s.feature} features are {feats.shape[1:]}, the model needs ({self.arch.audio_dim},)")
        out = {
            "audio": feats, "mouth": mouth, "brow": brow,
            "pose": pose_delta(c["pose"], c["pose"][0], c["image_size"]),
            "identity": encoder(ref["image"], ref["landmarks"], c["shape"]),
        }
        if self.arch.mouth_prior == "rules":
            out["prior"] = rules_mouth_prior(feats, self.store.dataset.fps)  # the node times it by the features' fps too
        return out

    def _statistics(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        stats = {}
        for key in ("audio", *PARTS):
            x = np.concatenate([c[key] for c in self.clips])
            stats[key] = (x.mean(0), x.std(0) + 1e-4)
        ids = np.stack([c["identity"] for c in self.clips])
        # with few identities the spread is tiny: the prior floor keeps unseen faces in range
        stats["identity"] = (ids.mean(0), np.maximum(ids.std(0), spread_floor(self.s.identity)))
        return stats

    # --- TrainTask ---

    def build(self) -> None:
        g = AnimationGeneratorNet(self.arch)
        if self.s.warm_start:
            warm_start(g, self.s.warm_start)
        g.audio_norm.set(*map(torch.from_numpy, self.stats["audio"]))
        g.identity_norm.set(*map(torch.from_numpy, self.stats["identity"]))
        for key in PARTS:
            g.out_norm[key].set(*map(torch.from_numpy, self.stats[key]))
        self.generator = g
        self.discriminator = AnimationDiscriminators(self.arch)

    def model_config(self) -> dict[str, Any]:
        config = {"arch": ANIMATION_GENERATOR.name, **self.arch.model_dump()}
        if config["mouth_prior"] == "none":  # as before the option existed: earlier checkpoints still match
            del config["mouth_prior"], config["residual_inputs"]
        return config

    def data_description(self) -> dict[str, Any]:
        warm = {"warm_start_sha256": file_sha256(self.s.warm_start)} if self.s.warm_start else {}
        return {**self.store.describe(), "window": self.s.window, "feature": self.s.feature, "settings": self.s.model_dump(),
                **warm}

    def on_train_start(self, log: Callable[[str], None]) -> None:
        kind = "VGG-Face" if self.s.identity == "vggface" else "3DMM shape + face appearance statistics (no VGG-Face weights)"
        log(f"identity embedding: {kind}; {len(self.clips)} training clips, {int(self.store.lengths.sum())} frames")

    def sample_batch(self, rng: np.random.Generator, batch_size: int) -> dict[str, torch.Tensor]:
        T = self.s.window
        picks = sample_windows(self.store, rng, batch_size, T)
        batch = {}
        for key in ("audio", *PARTS):
            batch[key] = torch.from_numpy(np.stack([self.clips[k][key][t0:t0 + T] for k, t0 in picks]))
        batch["identity"] = torch.from_numpy(np.stack([self.clips[k]["identity"] for k, _ in picks]))
        if self.arch.mouth_prior == "rules":
            batch["prior"] = torch.from_numpy(np.stack([self.clips[k]["prior"][t0:t0 + T] for k, t0 in picks]))
        return batch

    def _normalized(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        g = self.generator
        targets = {k: g.out_norm[k].norm(batch[k]) for k in PARTS}
        return g.audio_norm.norm(batch["audio"]), g.identity_norm.norm(batch["identity"]), targets

    def generator_step(self, batch: dict[str, torch.Tensor], use_gan: bool) -> StepOutput:
        s = self.s
        audio_n, id_n, real = self._normalized(batch)
        if s.identity_noise:
            id_n = id_n + s.identity_noise * torch.randn_like(id_n)
        if s.acoustic_dropout and s.feature == "phonetic" and self.generator.training:
            audio_n = drop_acoustic_cues(audio_n, s.acoustic_dropout)
        prior_n = self.generator.out_norm["mouth"].norm(batch["prior"]) if "prior" in batch else None
        fake = self.generator.forward_normalized(audio_n, id_n, prior_n=prior_n)
        l1_mouth = l1_loss(fake["mouth"], real["mouth"])
        ssim_brow = 1 - shifted_ssim(fake["brow"], real["brow"])
        ssim_pose = 1 - shifted_ssim(fake["pose"], real["pose"])
        loss = s.lambda_mouth * l1_mouth + s.lambda_brow * ssim_brow + s.lambda_pose * ssim_pose
        logs = {"l1_mouth": l1_mouth.item(), "ssim_brow": ssim_brow.item(), "ssim_pose": ssim_pose.item()}
        if prior_n is not None:
            residual = residual_penalty(fake["mouth"], prior_n)
            loss = loss + s.lambda_residual * residual
            logs["residual"] = residual.item()
        if use_gan:
            d_out = self.discriminator(fake, audio_n)
            for key in PARTS:  # eq. 4, 6 and the head-pose analogue
                adv = lsgan_g_loss(d_out[key])
                loss = loss + s.lambda_gan * adv
                logs[f"g_{key}"] = adv.item()
        return StepOutput(loss, logs, ({k: v.detach() for k, v in fake.items()}, real, audio_n))

    def discriminator_step(self, batch: dict[str, torch.Tensor], state: Any) -> StepOutput:
        fake, real, audio_n = state
        d_real, d_fake = self.discriminator(real, audio_n), self.discriminator(fake, audio_n)
        terms = {key: lsgan_d_loss(d_real[key], d_fake[key]) for key in PARTS}
        return StepOutput(sum(terms.values()), {f"d_{k}": v.item() for k, v in terms.items()})
