"""Inference with trained Yi et al. models: audio -> coefficients, frame refinement."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from nodes.face.pose_deltas import apply_pose_delta
from nodes.types import MorphCoeffs

from . import memory_gan


@torch.no_grad()
def predict_coeffs(model, mfcc: np.ndarray, target: MorphCoeffs, *, predict_pose: bool = True,
                   device: str = "cpu") -> MorphCoeffs:
    """§3.2 at test time: expression and pose per frame of the audio, around the target's mean pose,
    with the target's identity. predict_pose=False keeps the mean pose (the §4.2 ablation)."""
    x = torch.as_tensor(np.asarray(mfcc, np.float32), device=device)[None]
    exp, delta = model(x)
    exp = exp[0].cpu().numpy().clip(0, 1.5)  # the fitted expression box of nodes/face/model.py
    rest = np.asarray(target.pose, np.float32).mean(0)
    delta = delta[0].cpu().numpy() if predict_pose else np.zeros((len(exp), 6), np.float32)
    pose = apply_pose_delta(rest, delta, tuple(target.image_size))
    return MorphCoeffs(np.asarray(target.shape, np.float32), exp.astype(np.float32), pose.astype(np.float32),
                       np.zeros(len(exp), np.float32), tuple(target.image_size))


@dataclasses.dataclass
class Refined:
    frames: np.ndarray  # (T, H, W, 3) uint8
    attention: np.ndarray  # (T, H, W) float32
    colour: np.ndarray  # (T, H, W, 3) uint8
    score: np.ndarray  # (T,) cosine of the retrieved memory key (NaN without memory)


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).movedim(-3, -1).cpu().numpy()


@torch.no_grad()
def refine(gan, rendered: np.ndarray, *, identity: Literal["memory", "mean"] = "memory", sigma: float = 2.0,
           size: int | None = None, chunk: int = 8, device: str = "cpu",
           progress: Callable[[int, int], None] | None = None) -> Refined:
    """§3.4 at test time: identity features retrieved from the memory with the rendered frames as
    queries and smoothed over time (or the training set's mean identity), then G over windows of
    three rendered frames. Frames are processed at `size` (the training size) and the result is
    brought back to the input size: when the sizes differ, the refinement's change (o - r) is
    resized and added to the full-size rendering, so detail the renderer drew is kept."""
    t, h, w = rendered.shape[:3]
    work = (size, size) if size else (h, w)
    frames = torch.from_numpy(np.ascontiguousarray(rendered)).to(device).movedim(-1, 1).float().div(127.5).sub(1)
    small = torch.cat([_resize(frames[i:i + chunk], work) for i in range(0, t, chunk)])
    if identity == "memory":
        feats, score = [], []
        for i in range(0, t, chunk):
            f, s = gan.memory.retrieve(gan.encoder(small[i:i + chunk]))
            feats.append(f)
            score.append(s)
        ident = memory_gan.smooth_features(torch.cat(feats), sigma)
        score = torch.cat(score).cpu().numpy()
    else:
        ident = gan.mean_identity[None].expand(t, -1)
        score = np.full(t, np.nan, np.float32)
    out = np.empty((t, h, w, 3), np.uint8)
    att = np.empty((t, h, w), np.float32)
    col = np.empty((t, h, w, 3), np.uint8)
    for i in range(0, t, chunk):
        idx = torch.arange(i, min(t, i + chunk))
        win = torch.stack([small[(idx - 2).clamp(min=0)], small[(idx - 1).clamp(min=0)], small[idx]], 1).flatten(1, 2)
        o, c, a = gan(win, ident[idx])
        if work != (h, w):
            o = frames[idx] + _resize(o - small[idx], (h, w))
            c, a = _resize(c, (h, w)), _resize(a, (h, w))
        out[idx.numpy()] = _to_uint8(o)
        col[idx.numpy()] = _to_uint8(c)
        att[idx.numpy()] = a[:, 0].clamp(0, 1).cpu().numpy()
        if progress is not None:
            progress(int(idx[-1]) + 1, t)
    return Refined(out, att, col, score.astype(np.float32))
