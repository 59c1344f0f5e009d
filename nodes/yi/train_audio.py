"""Training of the audio -> expression + pose network (Yi et al. §3.2, eq. 2) with the shared loop.

General model: windows of T frames from every training clip of a talkgraph dataset; each clip's
pose targets are deltas from its mean pose (image-normalised translations). Personalisation
(§3.2, §4.1): the same loss on one target clip (its audio features and the coefficients Fit3DMM
found on its frames, ~300 frames in the paper), starting from a general checkpoint whose
standardisation buffers are kept, so the personalised model speaks in the same units.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from nodes.face.pose_deltas import pose_delta
from nodes.model_registry import ModelSpec, model_config
from trainers.fingerprint import arrays_fingerprint
from trainers.loop import StepOutput, TrainTask

from .audio_to_exp_pose import MFCC_COEFFS, AudioToExpressionPoseNet, exp_pose_loss
from .models import AUDIO_EXP_POSE


@dataclasses.dataclass
class TalkingClip:
    """One clip as the trainer sees it: MFCC windows (T, 28, 12), expression (T, 33) and pose
    deltas from the clip's mean pose (T, 6)."""

    name: str
    mfcc: np.ndarray
    expression: np.ndarray
    pose: np.ndarray


def clip_from_coeffs(name: str, mfcc: np.ndarray, coeffs) -> TalkingClip:
    t = min(len(mfcc), len(coeffs.expression))
    if t < 2:
        raise ValueError(f"{name}: needs at least 2 frames of aligned audio features and coefficients, got {t}")
    pose = np.asarray(coeffs.pose[:t], np.float32)
    return TalkingClip(name, np.asarray(mfcc[:t], np.float32), np.asarray(coeffs.expression[:t], np.float32),
                       pose_delta(pose, pose.mean(0), tuple(coeffs.image_size)))


def dataset_clips(url: str, split: str = "train", min_frames: int = 2) -> tuple[list[TalkingClip], dict[str, Any]]:
    from nodes.types import MorphCoeffs
    from trainers.data import ClipStore

    store = ClipStore(url, split, fields=("expression", "pose", "shape"), feature="mfcc_window", min_frames=min_frames)
    clips = []
    for k in range(len(store)):
        c = store.get(k)
        coeffs = MorphCoeffs(c["shape"], c["expression"], c["pose"], np.zeros(len(c["pose"]), np.float32), c["image_size"])
        clips.append(clip_from_coeffs(c["name"], c["features"], coeffs))
    return clips, store.describe()


def start_config(model: ModelSpec, preset: str, init: dict[str, Any] | None) -> BaseModel:
    """The model config to train: a preset's, or (fine-tuning) the one of the `init` export."""
    return model_config(model, preset if init is None else init["model_config"])


class AudioTrainSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    preset: str = Field("tiny", description="size preset: tiny or paper")
    window: int = Field(32, ge=2, le=1024, description="frames per training window (T)")
    lambda_pose: float = Field(0.2, ge=0, description="eq. 2 lambda1 (pose MSE)")
    lambda_smooth: float = Field(0.01, ge=0, description="eq. 2 lambda2 (pose continuity)")


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
        self.lengths = np.array([len(c.mfcc) for c in clips])

    def build(self) -> None:
        g = AudioToExpressionPoseNet(self.arch)
        if self.init is not None and not self.official_init:
            g.load_state_dict(self.init["generator"])
        else:
            cat = lambda f: np.concatenate([getattr(c, f) for c in self.clips])  # noqa: E731
            mfcc = cat("mfcc").reshape(-1, MFCC_COEFFS)
            g.mfcc_norm.set(torch.from_numpy(mfcc.mean(0)), torch.from_numpy(mfcc.std(0) + 1e-4))
            for norm, x in ((g.expression_norm, cat("expression")), (g.pose_norm, cat("pose"))):
                norm.set(torch.from_numpy(x.mean(0)), torch.from_numpy(x.std(0) + 1e-5))
            g.pose_norm.mean.zero_()  # deltas from each clip's mean pose: centred by construction
            if self.official_init:  # raw MFCC in, as the release was trained; encoder + LSTM from it
                g.mfcc_norm.set(torch.zeros(MFCC_COEFFS), torch.ones(MFCC_COEFFS))
                body = {k: v for k, v in self.init["generator"].items() if k.startswith(("encoder.", "lstm."))}
                missing, unexpected = g.load_state_dict(body, strict=False)
                assert not unexpected and all(k.startswith(("head.", "mfcc_norm.", "expression_norm.", "pose_norm.")) for k in missing)
        self.generator = g
        self.discriminator = None

    def model_config(self) -> dict[str, Any]:
        return {"arch": AUDIO_EXP_POSE.name, **self.arch.model_dump(mode="json")}

    def data_description(self) -> dict[str, Any]:
        return {**self.data, "settings": self.s.model_dump(), "personalised": self.init is not None,
                "frames": int(self.lengths.sum()), "clips": len(self.clips)}

    def data_identity(self) -> dict[str, Any]:
        """A personalisation trains on one target's arrays, from a given model: both by content."""
        if self.init is None:
            return super().data_identity()
        return {**super().data_identity(),
                "clips_sha256": arrays_fingerprint(a for c in self.clips for a in (c.mfcc, c.expression, c.pose)),
                "init_sha256": arrays_fingerprint(self.init["generator"][k] for k in sorted(self.init["generator"]))}

    def on_train_start(self, log: Callable[[str], None]) -> None:
        what = "personalising a general model" if self.init is not None else "general model"
        log(f"audio->expression+pose ({what}): {len(self.clips)} clip(s), {int(self.lengths.sum())} frames")

    def sample_batch(self, rng: np.random.Generator, batch_size: int) -> dict[str, torch.Tensor]:
        t = int(min(self.s.window, self.lengths.min()))
        w = (self.lengths - t + 1).astype(np.float64)
        ks = rng.choice(len(self.clips), size=batch_size, p=w / w.sum())
        picks = [(k, int(rng.integers(0, self.lengths[k] - t + 1))) for k in ks]
        return {f: torch.from_numpy(np.stack([getattr(self.clips[k], f)[t0:t0 + t] for k, t0 in picks]))
                for f in ("mfcc", "expression", "pose")}

    def generator_step(self, batch: dict[str, torch.Tensor], use_gan: bool) -> StepOutput:
        g = self.generator
        exp_n, pose_n, _ = g.forward_normalized(batch["mfcc"])
        loss, logs = exp_pose_loss(exp_n, pose_n, g.expression_norm.norm(batch["expression"]), g.pose_norm.norm(batch["pose"]),
                                   self.s.lambda_pose, self.s.lambda_smooth)
        return StepOutput(loss, logs)
