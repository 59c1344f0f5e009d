"""Training of the head motion predictor N_H (Audio2Head §3.2, loss eq. 3-4).

A sample is a window of T + 1 frames of one clip: frame t0 is the reference image (its pose is
s_0), the audio frames t0+1 .. t0+T drive the LSTM, and the target is the ground-truth pose
sequence s_0 .. s_T (the dataset's fitted/synthetic 3DMM pose in the camera-space HeadPose
convention of pose.py, standing in for the paper's OpenFace poses). Poses are standardised
with the training set's statistics (stored in the model).

Loss (eq. 4): lambda_ssim * (1 - SSIM of the 6 x (T+1) pose image) (eq. 3; `pose_loss="l1"` is
the paper's "with L1" ablation) + LSGAN with a 1-D temporal PatchGAN over the pose sequence
(trainers/discriminators.TemporalPatchDiscriminator, unconditioned).
The paper's window is T = 256 frames; the synthetic clips are shorter, so the window is a setting.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from nodes.model_registry import model_config
from trainers.data import ClipStore
from trainers.discriminators import TemporalPatchDiscriminator
from trainers.loop import StepOutput, TrainTask
from trainers.losses import l1_loss, lsgan_d_loss, lsgan_g_loss

from .blocks import image_tensor
from .head_motion import HeadMotionPredictorNet
from .losses import pose_ssim_loss
from .models import HEAD_MOTION
from .pose import camera_pose_from_morph

DISCRIMINATORS = {"paper": {"channels": 64, "n_layers": 3}, "tiny": {"channels": 16, "n_layers": 3}}


class HeadMotionTrainSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: str
    split: str = "train"
    preset: str = "tiny"
    frame_size: int = Field(256, ge=32, le=1024)
    window: int = Field(256, ge=4, le=4096, description="T: audio frames per training sequence (paper: 256)")
    pose_loss: Literal["ssim", "l1"] = "ssim"
    ssim_window: int = Field(32, ge=2, description="frames per SSIM statistics window (eq. 3 over the whole sequence when >= T)")
    lambda_pose: float = Field(1.0, ge=0)
    lambda_gan: float = Field(1.0, ge=0)


def clip_camera_poses(clip: dict[str, Any]) -> np.ndarray:
    return camera_pose_from_morph(clip["pose"], clip["image_size"])


def feature_statistics(store: ClipStore) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of the 41 a2h feature dimensions over every training frame and window."""
    rows = np.concatenate([store.get(k)["features"].reshape(-1, 41) for k in range(len(store))])
    return rows.mean(0), np.maximum(rows.std(0), 1e-3)


class HeadMotionTask(TrainTask):
    name = "audio2head.head_motion"

    def __init__(self, settings: HeadMotionTrainSettings) -> None:
        self.s = settings
        self.arch = model_config(HEAD_MOTION, settings.preset)
        self.store = ClipStore(settings.dataset, settings.split, fields=("frames", "pose"), feature="a2h",
                               frame_size=settings.frame_size, min_frames=settings.window + 1)
        poses = np.concatenate([clip_camera_poses(self.store.get(k)) for k in range(len(self.store))])
        self.pose_mean, self.pose_std = poses.mean(0), np.maximum(poses.std(0), 1e-4)
        self.audio_mean, self.audio_std = feature_statistics(self.store)

    def build(self) -> None:
        self.generator = HeadMotionPredictorNet(self.arch)
        self.generator.set_statistics(self.audio_mean, self.audio_std, self.pose_mean, self.pose_std)
        d = DISCRIMINATORS.get(self.s.preset, DISCRIMINATORS["tiny"])
        self.discriminator = TemporalPatchDiscriminator(self.arch.pose_dim, 0, d["channels"], d["n_layers"]) if self.s.lambda_gan else None

    def model_config(self) -> dict[str, Any]:
        return {"arch": HEAD_MOTION.name, **self.arch.model_dump()}

    def data_description(self) -> dict[str, Any]:
        return {**self.store.describe(), "settings": self.s.model_dump()}

    def on_train_start(self, log: Callable[[str], None]) -> None:
        log(f"{len(self.store)} clips, windows of {self.s.window} frames, pose loss {self.s.pose_loss}")

    def sample_batch(self, rng: np.random.Generator, batch_size: int) -> dict[str, torch.Tensor]:
        t = self.s.window
        images, audio, poses = [], [], []
        for k in self.store.sample_clips(rng, batch_size, t + 1):
            clip = self.store.get(int(k))
            t0 = int(rng.integers(0, clip["n_frames"] - t))
            images.append(clip["frames"][t0])
            audio.append(clip["features"][t0 + 1:t0 + t + 1])
            poses.append(clip_camera_poses(clip)[t0:t0 + t + 1])
        return {"image": image_tensor(np.stack(images)), "audio": torch.from_numpy(np.stack(audio)),
                "pose": torch.from_numpy(np.stack(poses))}

    def generator_step(self, batch: dict[str, torch.Tensor], use_gan: bool) -> StepOutput:
        s, g = self.s, self.generator
        pred = g(batch["image"], batch["audio"])
        target = g.normalize_pose(batch["pose"])
        if s.pose_loss == "ssim":
            pose_term = pose_ssim_loss(pred, target, s.ssim_window)
        else:
            pose_term = l1_loss(pred, target)
        loss = s.lambda_pose * pose_term
        logs = {f"pose_{s.pose_loss}": pose_term.item(), "pose_l1": l1_loss(pred, target).item()}
        if use_gan and self.discriminator is not None:
            adv = lsgan_g_loss(self._d(pred))
            loss = loss + s.lambda_gan * adv
            logs["g_adv"] = adv.item()
        return StepOutput(loss, logs, (pred.detach(), target))

    def _d(self, poses: torch.Tensor):
        return self.discriminator(poses, poses.new_zeros(*poses.shape[:2], 0))

    def discriminator_step(self, batch: dict[str, torch.Tensor], state) -> StepOutput:
        fake, real = state
        d = lsgan_d_loss(self._d(real), self._d(fake))
        return StepOutput(d, {"d_adv": d.item()})
