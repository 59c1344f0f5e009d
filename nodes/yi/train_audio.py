"""Training of the audio -> expression + pose network (Yi et al. §3.2, eq. 2) with the shared loop.

General model: windows of T frames from every training clip of a talkgraph dataset; each clip's
pose targets are deltas from its mean pose (image-normalised translations). Personalisation
(§3.2, §4.1): the same loss on one target clip (its audio features and the coefficients Fit3DMM
found on its frames, ~300 frames in the paper), starting from a general checkpoint whose
standardisation buffers are kept, so the personalised model speaks in the same units.

Options (not in the paper; nodes/yi/audio_to_exp_pose.py): `feature: phonetic` trains on the
dataset's phonetic features instead of MFCC windows; `mouth_prior: rules` adds each clip's rules
mouth, computed once from its stored phonetic features by the function the node calls at
inference (nodes/lipsync/prior.py), and `lambda_residual` weighs an L2 penalty on the learned
correction; `warm_start` seeds such a model from an export without the prior.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from nodes.face.pose_deltas import pose_delta
from nodes.lipsync.prior import residual_penalty, rules_mouth_prior, warm_start
from nodes.model_registry import ModelSpec, model_config
from trainers.fingerprint import arrays_fingerprint
from trainers.loop import StepOutput, TrainTask, file_sha256

from .audio_to_exp_pose import AudioToExpressionPoseNet, exp_pose_loss
from .models import AUDIO_EXP_POSE


@dataclasses.dataclass
class TalkingClip:
    """One clip as the trainer sees it: audio features (MFCC windows (T, 28, 12), or phonetic
    (T, 44)), expression (T, 33), pose deltas from the clip's mean pose (T, 6) and, for
    `mouth_prior: rules`, the rules mouth of the features (T, 28)."""

    name: str
    features: np.ndarray
    expression: np.ndarray
    pose: np.ndarray
    prior: np.ndarray | None = None


def clip_from_coeffs(name: str, features: np.ndarray, coeffs, *, prior: bool = False, fps: float = 25.0) -> TalkingClip:
    """`prior`: also the rules mouth of the (phonetic) features, as the node computes it at inference."""
    t = min(len(features), len(coeffs.expression))
    if t < 2:
        raise ValueError(f"{name}: needs at least 2 frames of aligned audio features and coefficients, got {t}")
    pose = np.asarray(coeffs.pose[:t], np.float32)
    feats = np.asarray(features[:t], np.float32)
    return TalkingClip(name, feats, np.asarray(coeffs.expression[:t], np.float32),
                       pose_delta(pose, pose.mean(0), tuple(coeffs.image_size)), rules_mouth_prior(feats, fps) if prior else None)


def dataset_clips(url: str, split: str = "train", min_frames: int = 2, feature: str = "mfcc_window",
                  prior: bool = False) -> tuple[list[TalkingClip], dict[str, Any]]:
    from nodes.types import MorphCoeffs
    from trainers.data import ClipStore

    store = ClipStore(url, split, fields=("expression", "pose", "shape"), feature=feature, min_frames=min_frames)
    clips = []
    for k in range(len(store)):
        c = store.get(k)
        coeffs = MorphCoeffs(c["shape"], c["expression"], c["pose"], np.zeros(len(c["pose"]), np.float32), c["image_size"])
        clips.append(clip_from_coeffs(c["name"], c["features"], coeffs, prior=prior, fps=store.dataset.fps))
    return clips, {**store.describe(), **({"feature": feature} if feature != "mfcc_window" else {})}


def start_config(model: ModelSpec, preset: str, init: dict[str, Any] | None) -> BaseModel:
    """The model config to train: a preset's, or (fine-tuning) the one of the `init` export."""
    return model_config(model, preset if init is None else init["model_config"])


class AudioTrainSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    preset: str = Field("tiny", description="size preset: tiny or paper")
    window: int = Field(32, ge=2, le=1024, description="frames per training window (T)")
    lambda_pose: float = Field(0.2, ge=0, description="eq. 2 lambda1 (pose MSE)")
    lambda_smooth: float = Field(0.01, ge=0, description="eq. 2 lambda2 (pose continuity)")
    feature: Literal["mfcc_window", "phonetic"] = Field(
        "mfcc_window", description="audio input: the paper's MFCC windows or phonetic features (an option; docs/yi.md)")
    mouth_prior: Literal["none", "rules"] = Field("none", description=(
        "rules (phonetic only): the rules mouth is an input and the model learns a residual on top (docs/lipsync.md)"))
    lambda_residual: float = Field(1.0, ge=0, description="mouth_prior rules: weight of the mean squared standardised residual")
    warm_start: str | None = Field(None, description=(
        "mouth_prior rules: an export without the prior (same feature) seeding the weights where shapes agree"))


OPTIONS = ("feature", "mouth_prior", "lambda_residual", "warm_start")  # not in the paper (docs/yi.md)


class AudioExpPoseTask(TrainTask):
    """General training (no `init`) or personalisation (`init`: a general model's export)."""

    name = "yi.audio_exp_pose"

    def __init__(self, clips: list[TalkingClip], settings: AudioTrainSettings, data: dict[str, Any],
                 init: dict[str, Any] | None = None) -> None:
        if not clips:
            raise ValueError("no training clips")
        self.s, self.clips, self.data, self.init = settings, clips, data, init
        # the released ATC_net (graphrun weights import yi): its 70 outputs mean Deep3DFaceRecon's
        # coefficients, so only its audio encoder and LSTM start a project model (paper preset, new head)
        self.official_init = init is not None and bool(init["model_config"].get("official"))
        self.arch = model_config(AUDIO_EXP_POSE, "paper") if self.official_init else start_config(AUDIO_EXP_POSE, settings.preset, init)
        if init is None:  # a general model: the options choose the input (a fine-tuned one keeps its export's)
            self.arch = self.arch.model_copy(update={"feature": settings.feature, "mouth_prior": settings.mouth_prior})
            self.arch = type(self.arch).model_validate(self.arch.model_dump())  # the options' consistency check
        if self.arch.mouth_prior == "rules" and any(c.prior is None for c in clips):
            raise ValueError("mouth_prior rules: the clips need their rules mouth prior (clip_from_coeffs(prior=True))")
        shape = clips[0].features.shape[1:]
        want = (self.arch.feature_dim,) if self.arch.feature == "phonetic" else (28, 12)
        if tuple(shape) != want:
            raise ValueError(f"the model reads {self.arch.feature} features {want}, the clips have {tuple(shape)}")
        self.lengths = np.array([len(c.features) for c in clips])

    def build(self) -> None:
        g = AudioToExpressionPoseNet(self.arch)
        if self.init is not None and not self.official_init:
            g.load_state_dict(self.init["generator"])
        else:
            if self.s.warm_start:
                warm_start(g, self.s.warm_start)
            cat = lambda f: np.concatenate([getattr(c, f) for c in self.clips])  # noqa: E731
            rows = cat("features").reshape(-1, self.arch.feature_dim)
            g.mfcc_norm.set(torch.from_numpy(rows.mean(0)), torch.from_numpy(rows.std(0) + 1e-4))
            for norm, x in ((g.expression_norm, cat("expression")), (g.pose_norm, cat("pose"))):
                norm.set(torch.from_numpy(x.mean(0)), torch.from_numpy(x.std(0) + 1e-5))
            g.pose_norm.mean.zero_()  # deltas from each clip's mean pose: centred by construction
            if self.official_init:  # raw MFCC in, as the release was trained; encoder + LSTM from it
                g.mfcc_norm.set(torch.zeros(self.arch.feature_dim), torch.ones(self.arch.feature_dim))
                body = {k: v for k, v in self.init["generator"].items() if k.startswith(("encoder.", "lstm."))}
                missing, unexpected = g.load_state_dict(body, strict=False)
                assert not unexpected and all(k.startswith(("head.", "mfcc_norm.", "expression_norm.", "pose_norm.")) for k in missing)
        self.generator = g
        self.discriminator = None

    def model_config(self) -> dict[str, Any]:
        config = {"arch": AUDIO_EXP_POSE.name, **self.arch.model_dump(mode="json")}
        if config["feature"] == "mfcc_window" and config["mouth_prior"] == "none":  # as before the options existed
            del config["feature"], config["context"], config["mouth_prior"]
        return config

    def data_description(self) -> dict[str, Any]:
        settings = self.s.model_dump()
        if all(settings[key] == AudioTrainSettings.model_fields[key].default for key in OPTIONS):
            for key in OPTIONS:  # the paper's model: written as before the options existed
                del settings[key]
        warm = {"warm_start_sha256": file_sha256(self.s.warm_start)} if self.s.warm_start else {}
        return {**self.data, "settings": settings, "personalised": self.init is not None,
                "frames": int(self.lengths.sum()), "clips": len(self.clips), **warm}

    def data_identity(self) -> dict[str, Any]:
        """A personalisation trains on one target's arrays, from a given model: both by content."""
        if self.init is None:
            return super().data_identity()
        return {**super().data_identity(),
                "clips_sha256": arrays_fingerprint(a for c in self.clips for a in (c.features, c.expression, c.pose)),
                "init_sha256": arrays_fingerprint(self.init["generator"][k] for k in sorted(self.init["generator"]))}

    def on_train_start(self, log: Callable[[str], None]) -> None:
        what = "personalising a general model" if self.init is not None else "general model"
        log(f"audio->expression+pose ({what}): {len(self.clips)} clip(s), {int(self.lengths.sum())} frames")

    def sample_batch(self, rng: np.random.Generator, batch_size: int) -> dict[str, torch.Tensor]:
        t = int(min(self.s.window, self.lengths.min()))
        w = (self.lengths - t + 1).astype(np.float64)
        ks = rng.choice(len(self.clips), size=batch_size, p=w / w.sum())
        picks = [(k, int(rng.integers(0, self.lengths[k] - t + 1))) for k in ks]
        fields = ("features", "expression", "pose", *(("prior",) if self.arch.mouth_prior == "rules" else ()))
        return {f: torch.from_numpy(np.stack([getattr(self.clips[k], f)[t0:t0 + t] for k, t0 in picks])) for f in fields}

    def generator_step(self, batch: dict[str, torch.Tensor], use_gan: bool) -> StepOutput:
        g = self.generator
        prior_n = g.normalize_prior(batch["prior"]) if "prior" in batch else None
        exp_n, pose_n, _ = g.forward_normalized(batch["features"], prior_n=prior_n)
        loss, logs = exp_pose_loss(exp_n, pose_n, g.expression_norm.norm(batch["expression"]), g.pose_norm.norm(batch["pose"]),
                                   self.s.lambda_pose, self.s.lambda_smooth)
        if prior_n is not None:
            residual = residual_penalty(exp_n[..., :prior_n.shape[-1]], prior_n)
            loss = loss + self.s.lambda_residual * residual
            logs["residual"] = residual.item()
        return StepOutput(loss, logs)
