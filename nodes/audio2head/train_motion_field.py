"""Training of the motion field generator N_M (Audio2Head §3.3, eq. 5-7), in two stages, with
the keypoint detector N_D and renderer N_I of a keypoint checkpoint frozen.

A sample is a window of T frames of one clip: the reference is a random frame of the same clip,
the inputs are the window's a2h audio frames and its ground-truth head poses drawn as boxes
(pose.draw_pose_boxes), and the targets are N_D's heatmaps, keypoints and Jacobians of the
window's frames (computed once per clip when training starts).

Stage 1 (eq. 5): lambda_m L1(m^, m) + lambda_p L1(p^, p) + lambda_j L1(j^, j), lambda_p = lambda_j
= 10, lambda_m = 1 decaying linearly to 0 over `heatmap_decay_steps`. The heatmap L1 is summed
over pixels (heatmaps are distributions; a per-pixel mean would vanish), and N_D's heatmaps are
area-resampled to N_M's heatmap size when the presets differ.
Stage 2 (eq. 7): lambda'_p L1(p^, p) (100) + lambda_rec L_rec^mul (10) + lambda_eq^P L_eq^P (10) +
lambda_eq^J L_eq^J (10). N_I renders `render_frames` random frames of each window from the
reference (an unbiased estimate of eq. 7's 1/T sum, affordable on a CPU); L_rec^mul is the
perceptual pyramid loss (VGG-19 with its weights, else the fallback of trainers/losses.py; the
paper uses a VGG-16 layer); the equivariance terms compare p^, j^ with N_D's keypoints of a TPS-
warped copy of the ground-truth frame (FOMM's constraint with N_M's keypoints in place of N_D's).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from graphcore.types import CheckpointBlob
from nodes.checkpoints import load_model
from nodes.model_registry import model_config
from trainers.data import ClipStore
from trainers.loop import StepOutput, TrainTask
from trainers.losses import PerceptualLoss

from .blocks import image_tensor
from .losses import RandomTPS, equivariance_losses, pyramid_loss
from .models import KEYPOINT_AUTOENCODER, MOTION_FIELD
from .motion_field import MotionFieldGeneratorNet
from .pose import camera_pose_from_morph, draw_pose_boxes
from .train_head_motion import feature_statistics


class MotionFieldTrainSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    dataset: str
    keypoints: Any = Field(..., description="keypoint_autoencoder checkpoint (path or CheckpointBlob)")
    init: Any = Field(None, description="stage 2: the stage-1 motion_field checkpoint to start from")
    stage: Literal[1, 2] = 1
    split: str = "train"
    preset: str = "tiny"
    frame_size: int = Field(256, ge=32, le=1024)
    lambda_heatmap: float = Field(1.0, ge=0)
    heatmap_decay_steps: int = Field(200, ge=1)
    lambda_value: float = Field(10.0, ge=0, description="stage 1: 10; stage 2: 100 (lambda'_p)")
    lambda_jacobian: float = Field(10.0, ge=0)
    lambda_rec: float = Field(10.0, ge=0)
    lambda_eq_value: float = Field(10.0, ge=0)
    lambda_eq_jacobian: float = Field(10.0, ge=0)
    render_frames: int = Field(2, ge=1, le=64, description="stage 2: frames per window rendered for L_rec")
    pyramid_scales: int = Field(4, ge=1, le=6)
    vgg_weights: str | None = None


def _describe_source(source) -> str:
    return "connected checkpoint" if isinstance(source, CheckpointBlob) else str(source)


class MotionFieldTask(TrainTask):
    name = "audio2head.motion_field"

    def __init__(self, settings: MotionFieldTrainSettings, log: Callable[[str], None] = print) -> None:
        self.s = settings
        if settings.stage == 2 and settings.init is None:
            raise ValueError("stage 2 starts from a stage-1 motion_field checkpoint: connect `init`")
        self.arch = model_config(MOTION_FIELD, settings.preset)
        frozen, self.keypoint_export = load_model(settings.keypoints, KEYPOINT_AUTOENCODER)
        self.detector, self.renderer = frozen.detector, frozen.renderer
        if settings.stage == 2 and self.renderer.cfg.mouth_kp:
            raise ValueError("stage 2 renders through a keypoint checkpoint without mouth keypoints (N_M does not place "
                             "them); use the one the mouth checkpoint was grown from (keypoints_tiny.pt)")
        for m in (self.detector, self.renderer):
            m.requires_grad_(False)
        self.store = ClipStore(settings.dataset, settings.split, fields=("frames", "pose"), feature="a2h",
                               frame_size=settings.frame_size, min_frames=self.arch.window)
        self.audio_mean, self.audio_std = feature_statistics(self.store)
        self.targets = [self._clip_targets(k) for k in range(len(self.store))]
        log(f"detector targets and pose boxes for {len(self.store)} clips ({int(self.store.lengths.sum())} frames)")
        self.perceptual = PerceptualLoss(settings.vgg_weights, scales=1) if settings.stage == 2 else None
        self._steps = 0

    @torch.no_grad()
    def _clip_targets(self, k: int) -> dict[str, np.ndarray]:
        clip = self.store.get(k)
        values, jacobians, heatmaps = [], [], []
        size = self._heatmap_size()
        for i in range(0, clip["n_frames"], 32):
            kp = self.detector(image_tensor(clip["frames"][i:i + 32]))
            values.append(kp["value"].numpy())
            jacobians.append(kp["jacobian"].numpy())
            hm = kp["heatmap"]
            if hm.shape[-1] != size:
                hm = F.interpolate(hm, size=(size, size), mode="area")
                hm = hm / hm.sum(dim=(-2, -1), keepdim=True)
            heatmaps.append(hm.half().numpy())
        poses = camera_pose_from_morph(clip["pose"], clip["image_size"])
        return {"value": np.concatenate(values), "jacobian": np.concatenate(jacobians), "heatmap": np.concatenate(heatmaps),
                "boxes": draw_pose_boxes(poses, clip["image_size"], self.arch.size)}

    def _heatmap_size(self) -> int:
        return self.arch.size - (self.arch.head_kernel - 1)

    def build(self) -> None:
        self.generator = MotionFieldGeneratorNet(self.arch)
        if self.s.init is not None:
            init, _ = load_model(self.s.init, MOTION_FIELD)
            if init.cfg != self.arch:
                raise ValueError(f"the stage-1 checkpoint is a {init.cfg} model, not the {self.s.preset} preset")
            self.generator.load_state_dict(init.state_dict())
        else:
            self.generator.set_statistics(self.audio_mean, self.audio_std)

    def model_config(self) -> dict[str, Any]:
        return {"arch": MOTION_FIELD.name, **self.arch.model_dump()}

    def data_description(self) -> dict[str, Any]:
        settings = self.s.model_dump(exclude={"keypoints", "init"})
        settings["keypoints"] = _describe_source(self.s.keypoints)
        settings["keypoint_checkpoint_steps"] = self.keypoint_export.get("step")
        if self.s.init is not None:
            settings["init"] = _describe_source(self.s.init)
        return {**self.store.describe(), "settings": settings}

    def on_train_start(self, log: Callable[[str], None]) -> None:
        device = next(self.generator.parameters()).device
        self.detector.to(device)
        self.renderer.to(device)
        if self.perceptual is not None:
            self.perceptual.to(device)
            log(f"stage 2 reconstruction loss: {self.perceptual.kind}")

    def sample_batch(self, rng: np.random.Generator, batch_size: int) -> dict[str, Any]:
        t = self.arch.window
        refs, audio, boxes, values, jacobians, heatmaps, frames, picks = [], [], [], [], [], [], [], []
        for k in self.store.sample_clips(rng, batch_size, t):
            clip, tgt = self.store.get(int(k)), self.targets[int(k)]
            t0 = int(rng.integers(0, clip["n_frames"] - t + 1))
            w = slice(t0, t0 + t)
            refs.append(clip["frames"][int(rng.integers(clip["n_frames"]))])
            audio.append(clip["features"][w])
            boxes.append(tgt["boxes"][w])
            values.append(tgt["value"][w])
            jacobians.append(tgt["jacobian"][w])
            heatmaps.append(tgt["heatmap"][w].astype(np.float32))
            if self.s.stage == 2:
                pick = np.sort(rng.choice(t, self.s.render_frames, replace=False))
                picks.append(pick)
                frames.append(clip["frames"][t0 + pick])
        batch = {"reference": image_tensor(np.stack(refs)), "audio": torch.from_numpy(np.stack(audio)),
                 "boxes": torch.from_numpy(np.stack(boxes)), "value": torch.from_numpy(np.stack(values)),
                 "jacobian": torch.from_numpy(np.stack(jacobians)), "heatmap": torch.from_numpy(np.stack(heatmaps))}
        if self.s.stage == 2:
            batch["picks"] = torch.from_numpy(np.stack(picks))
            batch["frames"] = image_tensor(np.stack(frames))
            batch["tps_seed"] = int(rng.integers(2**31))
        return batch

    def generator_step(self, batch: dict[str, Any], use_gan: bool) -> StepOutput:
        s = self.s
        out = self.generator(batch["reference"], batch["audio"], batch["boxes"])
        value_l1 = (out["value"] - batch["value"]).abs().mean()
        jac_l1 = (out["jacobian"] - batch["jacobian"]).abs().mean()
        logs = {"kp_l1": value_l1.item(), "jacobian_l1": jac_l1.item()}
        if s.stage == 1:
            decay = max(0.0, 1.0 - self._steps / s.heatmap_decay_steps)
            heat_l1 = (out["heatmap"] - batch["heatmap"]).abs().sum(dim=(-2, -1)).mean()
            loss = s.lambda_heatmap * decay * heat_l1 + s.lambda_value * value_l1 + s.lambda_jacobian * jac_l1
            logs["heatmap_l1"] = heat_l1.item()
        else:
            loss = s.lambda_value * value_l1 + self._stage2_terms(batch, out, logs)
        self._steps += 1
        return StepOutput(loss, logs)

    def _stage2_terms(self, batch: dict[str, Any], out: dict[str, torch.Tensor], logs: dict[str, float]) -> torch.Tensor:
        s = self.s
        b, n = batch["picks"].shape
        idx = batch["picks"].to(out["value"].device)
        take = lambda x: torch.stack([x[i, idx[i]] for i in range(b)]).flatten(0, 1)  # noqa: E731 (B*n, ...)
        kp_pred = {"value": take(out["value"]), "jacobian": take(out["jacobian"])}
        reference = batch["reference"].repeat_interleave(n, 0)
        with torch.no_grad():
            kp_ref = self.detector(batch["reference"])
        kp_ref = {k: v.repeat_interleave(n, 0) for k, v in kp_ref.items() if k in ("value", "jacobian")}
        rendered = self.renderer(reference, kp_ref, kp_pred)["prediction"]
        target = batch["frames"].flatten(0, 1)
        rec = pyramid_loss(self.perceptual, rendered, target, s.pyramid_scales)
        gen = torch.Generator().manual_seed(batch["tps_seed"])
        tps = RandomTPS(target.shape[0], generator=gen, device=target.device)
        with torch.no_grad():
            kp_warped = self.detector(tps.warp_image(target))
        eq_value, eq_jac = equivariance_losses(kp_pred, kp_warped, tps)
        logs.update({"rec": rec.item(), "eq_value": eq_value.item(), "eq_jacobian": eq_jac.item(),
                     "rec_l1": (rendered - target).abs().mean().item()})
        return s.lambda_rec * rec + s.lambda_eq_value * eq_value + s.lambda_eq_jacobian * eq_jac
