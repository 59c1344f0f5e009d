"""Inference with trained Yi et al. models: audio -> coefficients, frame refinement."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from nodes.face.pose_deltas import apply_pose_delta
from nodes.types import MorphCoeffs

from . import memory_gan

ENCODER_CHUNK = 256  # MFCC windows per CNN pass: memory flat in clip length, the same values (tested)


@torch.no_grad()
def predict_coeffs(model, features: np.ndarray, target: MorphCoeffs, *, predict_pose: bool = True,
                   device: str = "cpu", fps: float = 25.0) -> MorphCoeffs:
    """§3.2 at test time: expression and pose per frame of the audio, around the target's mean pose,
    with the target's identity. predict_pose=False keeps the mean pose (the §4.2 ablation). A
    `mouth_prior: rules` model also gets the rules mouth of the features, as in training."""
    from nodes.lipsync.prior import rules_mouth_prior

    features = np.asarray(features, np.float32)
    x = torch.as_tensor(features, device=device)[None]
    prior = torch.as_tensor(rules_mouth_prior(features, fps), device=device)[None] if model.uses_prior else None
    exp, delta = model(x, chunk=ENCODER_CHUNK, prior=prior)
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


def _as_float(frames: np.ndarray, device: str) -> torch.Tensor:
    """uint8 frames (B, H, W, 3) -> (B, 3, H, W) in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).to(device).movedim(-1, 1).float().div(127.5).sub(1)


@torch.no_grad()
def retrieve_identity(gan, rendered, *, identity: Literal["memory", "mean"] = "memory", sigma: float = 2.0,
                      size: int | None = None, chunk: int = 8, device: str = "cpu") -> tuple[torch.Tensor, np.ndarray]:
    """§3.4's identity feature per frame (T, D) and the retrieved key's cosine (T,): the memory
    queried with each rendered frame (at `size`), smoothed over time; or the training set's mean
    identity (scores NaN). `rendered` is an array or a graphcore.stream.Chunks, read `chunk` frames
    at a time."""
    from graphcore.stream import Chunks

    rendered = Chunks.of(rendered)
    t, h, w = rendered.shape[:3]
    if identity != "memory":
        return gan.mean_identity[None].expand(t, -1), np.full(t, np.nan, np.float32)
    work = (size, size) if size else (h, w)
    feats, score = [], []
    for block in rendered.chunks(chunk):
        f, s = gan.memory.retrieve(gan.encoder(_resize(_as_float(block, device), work)))
        feats.append(f)
        score.append(s)
    return memory_gan.smooth_features(torch.cat(feats), sigma), torch.cat(score).cpu().numpy().astype(np.float32)


@torch.no_grad()
def refine_chunks(gan, rendered, ident: torch.Tensor, *, size: int | None = None, chunk: int = 8, device: str = "cpu",
                  progress: Callable[[int, int], None] | None = None,
                  ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """G over windows of three rendered frames (eq. 3), `chunk` output frames at a time: yields
    (frames uint8, attention float32, colour uint8) per chunk. Each step reads its frames and the
    two before them from `rendered` (an array or a Chunks view), so the clip is never whole.
    Frames are processed at `size` and brought back to the input size: when the sizes differ,
    the refinement's change (o - r) is resized and added to the full-size rendering, so detail
    the renderer drew is kept."""
    from graphcore.stream import Chunks

    rendered = Chunks.of(rendered)
    t, h, w = rendered.shape[:3]
    work = (size, size) if size else (h, w)
    for win in rendered.windows(chunk, before=2):
        frames = _as_float(win.data, device)
        small = _resize(frames, work)
        first = win.rows.start - win.core.start  # the sequence's row of small[0]
        idx = torch.arange(win.rows.start, win.rows.stop)
        at = lambda back: (idx - back).clamp(min=0) - first  # noqa: E731
        stacked = torch.stack([small[at(2)], small[at(1)], small[at(0)]], 1).flatten(1, 2)
        o, c, a = gan(stacked, ident[idx])
        if work != (h, w):
            o = frames[at(0)] + _resize(o - small[at(0)], (h, w))
            c, a = _resize(c, (h, w)), _resize(a, (h, w))
        yield _to_uint8(o), a[:, 0].clamp(0, 1).cpu().numpy(), _to_uint8(c)
        if progress is not None:
            progress(win.rows.stop, t)


def refine(gan, rendered: np.ndarray, *, identity: Literal["memory", "mean"] = "memory", sigma: float = 2.0,
           size: int | None = None, chunk: int = 8, device: str = "cpu",
           progress: Callable[[int, int], None] | None = None) -> Refined:
    """§3.4 at test time on a whole clip (retrieve_identity, then refine_chunks collected)."""
    ident, score = retrieve_identity(gan, rendered, identity=identity, sigma=sigma, size=size, chunk=chunk, device=device)
    parts = list(refine_chunks(gan, rendered, ident, size=size, chunk=chunk, device=device, progress=progress))
    return Refined(*(np.concatenate([part[k] for part in parts]) for k in range(3)), score)
