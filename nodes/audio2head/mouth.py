"""Supervised mouth keypoints for the renderer N_I: a departure from Audio2Head (issue 11).

The paper's keypoints are unsupervised; with the tiny presets trained here none of them settles
on the lips, so the rendered mouth never moved with speech (lip-gap correlation 0.20 on the
held-out benchmark of docs/lipsync.md). A renderer built with `mouth_kp = 4` takes four more
keypoints after N_D's / N_M's: the MediaPipe inner-lip centres (upper 13, lower 14) and inner
corners (78, 308), with identity Jacobians (their motion is a translation each).

- Training (TrainKeypointRenderer): the points come from each frame's landmarks (the synthetic
  dataset's exact 3DMM-moved landmarks), so N_I learns to open and close the lips from them.
- Inference (MouthKeypoints -> KeypointRenderer): the lips of the portrait's landmarks moved by
  a 3DMM mouth track at the portrait's pose (LipSyncRules: recognised phones -> visemes), then
  carried with the head by the affine map that takes the reference's N_D keypoints to each
  frame's driving keypoints (least squares over the K points). `head_only` rendering keeps only
  that head motion of the driving keypoints, so the mouth moves with the mouth keypoints alone.

Both sides call the functions below, so the points mean the same thing in training and in use.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from nodes.types import Keypoints

# MediaPipe face-mesh indices: upper / lower inner-lip centre, then the inner corners in the
# order image-left, image-right of a frontal face (the subject's right corner first)
MOUTH_LANDMARKS = (13, 14, 78, 308)
N_MOUTH_KP = len(MOUTH_LANDMARKS)


def mouth_points(landmarks: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """(..., 478, 2+) landmarks in pixels of an image of `image_size` (H, W) -> (..., 4, 2) float32
    keypoints in [-1, 1] (-1/+1 at the centres of the first/last pixel: the Keypoints convention)."""
    lm = np.asarray(landmarks, np.float32)
    if lm.shape[-2] <= max(MOUTH_LANDMARKS):
        raise ValueError(f"mouth keypoints need MediaPipe face-mesh landmarks (478 points); got shape {lm.shape}")
    pts = lm[..., list(MOUTH_LANDMARKS), :2]
    h, w = image_size
    scale = np.array([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)], np.float32)
    return (pts * scale - 1.0).astype(np.float32)


def mirror_points(points: np.ndarray) -> np.ndarray:
    """Mouth keypoints of the left-right mirrored image: x -> -x, and the corners swap places."""
    out = np.asarray(points, np.float32).copy()
    out[..., 0] = -out[..., 0]
    out[..., [2, 3], :] = out[..., [3, 2], :]
    return out


def with_mouth(kp: dict[str, torch.Tensor], mouth: torch.Tensor) -> dict[str, torch.Tensor]:
    """N_D / N_M keypoints {"value" (B, K, 2), "jacobian" (B, K, 2, 2)} followed by mouth points
    (B, M, 2) with identity Jacobians: the renderer's K + M keypoints."""
    b, m = mouth.shape[:2]
    eye = torch.eye(2, dtype=mouth.dtype, device=mouth.device).expand(b, m, 2, 2)
    return {"value": torch.cat([kp["value"], mouth.to(kp["value"].dtype)], 1),
            "jacobian": torch.cat([kp["jacobian"], eye.to(kp["jacobian"].dtype)], 1)}


def head_maps(source_kp: np.ndarray, driving_kp: np.ndarray) -> np.ndarray:
    """(T, 3, 2): per frame the least-squares affine map [x, y, 1] @ X from the reference's
    keypoints (K, 2) to that frame's driving keypoints (T, K, 2): the head's motion they imply."""
    src = np.asarray(source_kp, np.float64).reshape(-1, 2)
    drv = np.asarray(driving_kp, np.float64)
    a = np.concatenate([src, np.ones((len(src), 1))], 1)  # (K, 3)
    maps = np.linalg.lstsq(a, drv.transpose(1, 0, 2).reshape(len(src), -1), rcond=None)[0]  # every frame in one solve
    return maps.reshape(3, len(drv), 2).transpose(1, 0, 2)


def carry_with_head(source_kp: np.ndarray, driving_kp: np.ndarray, mouth: np.ndarray) -> np.ndarray:
    """Mouth points given at the reference's head pose (T, M, 2) moved as the head moves (head_maps)."""
    maps = head_maps(source_kp, driving_kp)
    return (np.asarray(mouth, np.float64) @ maps[:, :2] + maps[:, 2:3]).astype(np.float32)


def head_only(source: Keypoints, driving: Keypoints) -> Keypoints:
    """The driving keypoints reduced to the head motion they imply: the reference's keypoints
    (values and Jacobians) moved by each frame's head_maps. Used with mouth keypoints, so that
    the face moves only with the head and the mouth only as the mouth keypoints say (the tiny
    N_M's own non-rigid keypoint motion opened the mouth even in silence)."""
    maps = head_maps(source.value[0], driving.value)
    value = np.asarray(source.value[0], np.float64) @ maps[:, :2] + maps[:, 2:3]
    linear = maps[:, :2].transpose(0, 2, 1)  # (T, 2, 2) acting on column vectors
    jacobian = np.einsum("tij,kjl->tkil", linear, np.asarray(source.jacobian[0], np.float64))
    return Keypoints(value.astype(np.float32), jacobian.astype(np.float32))


def mouth_box(points: torch.Tensor, margin: float = 1.6) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre (B, 2) and half-side (B,) of a square around the mouth points (B, M, 2), in [-1, 1]
    units: `margin` x the corner-to-corner half-width, at least 0.12 (the crop of mouth_crop)."""
    centre = points.mean(1)
    half = (points[:, 3] - points[:, 2]).norm(dim=-1) * 0.5 * margin
    return centre, half.clamp(min=0.12)


def mouth_crop(images: torch.Tensor, centre: torch.Tensor, half: torch.Tensor, size: int = 64) -> torch.Tensor:
    """(B, C, size, size) crops of images (B, C, H, W) around each mouth box (bilinear)."""
    b = images.shape[0]
    theta = torch.zeros(b, 2, 3, dtype=images.dtype, device=images.device)
    theta[:, 0, 0] = theta[:, 1, 1] = half
    theta[:, :, 2] = centre
    grid = F.affine_grid(theta, (b, images.shape[1], size, size), align_corners=True)
    return F.grid_sample(images, grid, align_corners=True)


def grow_state(model: torch.nn.Module, old: dict[str, torch.Tensor], mask_bias: float = -4.0) -> list[str]:
    """Load a renderer state without mouth keypoints into `model` (with them), preserving what it
    computes: the dense-motion hourglass's input channels are keypoint-major ((K+1) x (C+1)), so
    the old weights fill the first channels and the new mouth channels start at zero; the new
    mask logits start at zero weight and `mask_bias` (their masks near 0, still learnable).
    Returns the names of the tensors that were grown."""
    new = model.state_dict()
    grown = []
    for name, value in old.items():
        if name not in new:
            raise KeyError(f"{name} is not in the model")
        target = new[name]
        if target.shape == value.shape:
            new[name] = value
            continue
        if target.ndim != value.ndim or any(t < v for t, v in zip(target.shape, value.shape, strict=True)):
            raise ValueError(f"{name}: cannot grow {tuple(value.shape)} into {tuple(target.shape)}")
        fill = torch.full_like(target, mask_bias) if name.endswith("mask.bias") else torch.zeros_like(target)
        fill[tuple(slice(0, s) for s in value.shape)] = value
        new[name] = fill
        grown.append(name)
    model.load_state_dict(new)
    return grown


def lip_track(face_model, landmarks: np.ndarray, reference, expression: np.ndarray, image_size: tuple[int, int],
              chunk: int = 500) -> np.ndarray:
    """(T, 4, 2) mouth keypoints of the portrait whose face moves from `reference` (MorphCoeffs of
    its fit, first frame) to each row of `expression` (T, 33) at the reference's head pose: its
    landmarks moved by the 3DMM exactly as the synthetic dataset's truth is (synth.render.landmark_tracks)."""
    from nodes.synth.render import Driving, landmark_tracks

    expr = np.asarray(expression, np.float32)
    shape = np.asarray(reference.shape, np.float32)
    pose = np.asarray(reference.pose, np.float32).reshape(-1, 6)[0]
    rest = np.asarray(reference.expression, np.float32).reshape(-1, expr.shape[1])[0]
    lm = np.asarray(landmarks, np.float32).reshape(-1, np.shape(landmarks)[-2], np.shape(landmarks)[-1])[0, :, :2]
    out = np.empty((len(expr), N_MOUTH_KP, 2), np.float32)
    for a in range(0, len(expr), chunk):  # whole meshes of a 10-minute clip would take ~0.6 GiB
        part = expr[a:a + chunk]
        drive = Driving(shape, part, np.repeat(pose[None], len(part), 0), np.zeros(len(part), np.float32))
        out[a:a + chunk] = mouth_points(landmark_tracks(face_model, lm, shape, rest, pose, drive), image_size)
    return out
