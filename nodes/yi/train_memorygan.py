"""Training of the memory-augmented GAN (Yi et al. §3.4, eq. 4-5) with the shared loop.

Training pairs are built from talkgraph clips the way the pipeline builds its inputs: the clip's
appearance (SH lighting + albedo) is fitted on its frames, every frame's fitted coefficients
are rendered (nodes/yi/render3dmm.py) over a background matched by head pose from the *other*
frames of the clip (frames closer than `exclude` frames in time may not match, so the network
never sees the true background behind a render and learns to repair seams as at test time),
and the ground-truth frame gives the identity feature (nodes/face/identity.py).

One step (footnote 3 of §3.4: the memory is updated separately, then the GAN is trained):
the key encoder's threshold triplet loss on the memory as it is, the memory items updated with
the batch's (key, identity) pairs, then G's loss of eq. 4 with the ground-truth identity
feature as the official code does in training; D follows with the conditional GAN loss.
The encoder and G have disjoint parameters, so one Adam over both equals two Adams at one rate.

Pseudo-identities: the synthetic dataset holds one portrait, while the memory and AdaIN are
about telling identities apart, so `identity_variants` > 1 adds recoloured copies of every
clip (a fixed random 3x3 colour mixing and gain per variant, applied to the whole frame before
anything is fitted). Real data prepared from several people does not need them.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from nodes.face.identity import DIMS, THRESHOLDS, IdentityFeatures
from trainers.fingerprint import arrays_fingerprint
from trainers.gan_losses import bce_d_loss, bce_g_loss
from trainers.loop import StepOutput, TrainTask

from .memory_gan import WINDOW, MemoryGANNet, attention_losses, build_discriminator
from .models import MEMORY_GAN
from .train_audio import start_config


@dataclasses.dataclass
class RefineClip:
    """Rendered and real frames (T, H, W, 3) uint8 of one clip with per-frame identity features."""

    name: str
    rendered: np.ndarray
    real: np.ndarray
    identity: np.ndarray  # (T, D) unit vectors


def variant_transform(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Colour mixing matrix and offset of pseudo-identity k (k = 0: unchanged)."""
    if k == 0:
        return np.eye(3, dtype=np.float32), np.zeros(3, np.float32)
    rng = np.random.default_rng([k, 0x1D])
    mix = np.eye(3) * rng.uniform(0.75, 1.15, 3) + rng.normal(0, 0.12, (3, 3)) * (1 - np.eye(3))
    return mix.astype(np.float32), rng.uniform(-0.08, 0.08, 3).astype(np.float32)


def recolour(frames: np.ndarray, k: int) -> np.ndarray:
    mix, offset = variant_transform(k)
    if k == 0:
        return frames
    x = frames.astype(np.float32) / 255.0 @ mix.T + offset
    return (np.clip(x, 0, 1) * 255).round().astype(np.uint8)


def prepare_clip(name: str, frames: np.ndarray, landmarks: np.ndarray, coeffs, model, identity: IdentityFeatures, *,
                 albedo: str = "detailed", background: str = "matched", exclude: int = 8,
                 device: str = "cpu") -> RefineClip:
    """Render every frame of a clip over its matched background; identity features of the real frames."""
    from .render3dmm import FaceRenderer, background_frames, fit_appearance, plan_backgrounds, render_sequence

    t, h, w = frames.shape[:3]
    if t < 2:
        raise ValueError(f"{name}: needs at least 2 frames")
    app = fit_appearance(model, frames, coeffs, device=device)
    renderer = FaceRenderer(model, app, albedo, device)
    if background == "matched":
        idx = np.arange(t)
        excl = np.abs(idx[:, None] - idx[None]) < min(exclude, max(1, t // 2))
        plan = plan_backgrounds(coeffs.pose, coeffs.pose, (h, w), fit_pose=False, exclude=excl)
        bg = lambda sl: background_frames(plan, frames, sl)  # noqa: E731
    else:
        bg = lambda sl: frames[sl].astype(np.float32) / 255.0  # noqa: E731
    rendered = np.empty_like(frames)
    for sl, img, _ in render_sequence(renderer, coeffs.shape, coeffs.expression, coeffs.pose, h, w, bg):
        rendered[sl] = img
    return RefineClip(name, rendered, frames, identity(frames, landmarks, coeffs.shape))


def dataset_refine_clips(url: str, split: str, frame_size: int, identity: IdentityFeatures, variants: int, *,
                         albedo: str = "detailed", background: str = "matched", exclude: int = 8, max_clips: int = 0,
                         device: str = "cpu", progress: Callable[[int, int], None] | None = None,
                         ) -> tuple[list[RefineClip], dict[str, Any]]:
    from nodes.types import MorphCoeffs
    from trainers.data import ClipStore

    store = ClipStore(url, split, fields=("frames", "landmarks", "expression", "pose", "shape"), frame_size=frame_size,
                      min_frames=WINDOW)
    n = min(len(store), max_clips) if max_clips else len(store)
    out = []
    for k in range(n):
        c = store.get(k)
        coeffs = MorphCoeffs(c["shape"], c["expression"], c["pose"], np.zeros(len(c["pose"]), np.float32), c["image_size"])
        for v in range(variants):
            out.append(prepare_clip(f"{c['name']}/v{v}", recolour(c["frames"], v), c["landmarks"], coeffs, identity.model,
                                    identity, albedo=albedo, background=background, exclude=exclude, device=device))
            if progress is not None:
                progress(len(out), n * variants)
        store._cache.pop(k, None)  # the rendered copies are what training keeps
    return out, {**store.describe(), "clips_used": n}


def save_clips(path, clips: list[RefineClip], data: dict[str, Any]) -> None:
    """Keep prepared clips next to the training state, so a resumed run does not render them again."""
    import json
    import os

    arrays = {}
    for i, c in enumerate(clips):
        arrays.update({f"{i}/rendered": c.rendered, f"{i}/real": c.real, f"{i}/identity": c.identity})
    meta = {"names": [c.name for c in clips], "data": data}
    tmp = f"{path}.tmp.npz"
    np.savez(tmp, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)
    os.replace(tmp, path)


def load_clips(path) -> tuple[list[RefineClip], dict[str, Any]]:
    import json

    with np.load(path) as z:
        meta = json.loads(bytes(z["meta"]).decode())
        clips = [RefineClip(n, z[f"{i}/rendered"], z[f"{i}/real"], z[f"{i}/identity"]) for i, n in enumerate(meta["names"])]
    return clips, meta["data"]


def window_indices(t: int) -> list[int]:
    """(r_{t-2}, r_{t-1}, r_t), the first frame repeated at the start of a clip."""
    return [max(0, t - 2), max(0, t - 1), t]


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float (..., 3, H, W) in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).movedim(-1, -3).float().div(127.5).sub(1.0)


class MemoryGANTrainSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    preset: str = Field("tiny", description="size preset: tiny or paper")
    identity: Literal["own", "arcface"] = "own"
    threshold: float | None = Field(None, gt=-1, lt=1, description="same-identity cosine threshold (None: the kind's default)")
    top_k: int = Field(256, ge=2, description="neighbours the triplet loss looks at (official: 256)")
    margin: float = Field(0.3, ge=0, description="triplet margin alpha (official: 0.3)")
    lambda_l1: float = Field(100.0, ge=0, description="eq. 4 lambda1")
    lambda_attention: float = Field(2.0, ge=0, description="eq. 4 lambda2")
    lambda_smooth: float = Field(1e-5, ge=0, description="eq. 4 lambda3")
    lambda_gan: float = Field(1.0, ge=0)


class MemoryGANTask(TrainTask):
    """General training (no `init`) or personalisation (`init`: a general model's export)."""

    name = "yi.memory_gan"

    def __init__(self, clips: list[RefineClip], settings: MemoryGANTrainSettings, data: dict[str, Any],
                 init: dict[str, Any] | None = None) -> None:
        if not clips:
            raise ValueError("no training clips")
        self.s, self.clips, self.data, self.init = settings, clips, data, init
        self.arch = start_config(MEMORY_GAN, settings.preset, init)
        if init is None:
            self.arch = self.arch.model_copy(update={"identity": settings.identity, "identity_dim": DIMS[settings.identity]})
        dim = clips[0].identity.shape[1]
        if dim != self.arch.identity_dim:
            raise ValueError(f"identity features have {dim} dims, the model expects {self.arch.identity_dim} ({self.arch.identity})")
        self.threshold = settings.threshold if settings.threshold is not None else THRESHOLDS[self.arch.identity]
        self.lengths = np.array([len(c.real) for c in clips])

    def build(self) -> None:
        m = MemoryGANNet(self.arch)
        if self.init is not None:
            m.load_state_dict(self.init["generator"])
        else:
            ids = np.concatenate([c.identity for c in self.clips])
            mean = torch.from_numpy(ids.mean(0))
            m.mean_identity.copy_(torch.nn.functional.normalize(mean, dim=0))
        self.generator = m
        self.discriminator = build_discriminator(self.arch)

    def model_config(self) -> dict[str, Any]:
        return {"arch": MEMORY_GAN.name, **self.arch.model_dump(mode="json")}

    def data_description(self) -> dict[str, Any]:
        h, w = self.clips[0].real.shape[1:3]
        return {**self.data, "frame_size": [h, w], "threshold": self.threshold, "settings": self.s.model_dump(),
                "personalised": self.init is not None, "clips": len(self.clips), "frames": int(self.lengths.sum())}

    def data_identity(self) -> dict[str, Any]:
        """A personalisation trains on one target's arrays, from a given model: both by content."""
        if self.init is None:
            return super().data_identity()
        return {**super().data_identity(),
                "clips_sha256": arrays_fingerprint(a for c in self.clips for a in (c.rendered, c.real, c.identity)),
                "init_sha256": arrays_fingerprint(self.init["generator"][k] for k in sorted(self.init["generator"]))}

    def on_train_start(self, log: Callable[[str], None]) -> None:
        sims = identity_separation(self.clips)
        log(f"memory GAN: {len(self.clips)} clip(s), {int(self.lengths.sum())} frames; identity cosine within a clip "
            f"p5 {sims['within_p5']:.4f}, between clips p50 {sims['between_p50']:.4f}; threshold {self.threshold}")

    def sample_batch(self, rng: np.random.Generator, batch_size: int) -> dict[str, torch.Tensor]:
        ks = rng.choice(len(self.clips), size=batch_size, p=self.lengths / self.lengths.sum())
        ts = [int(rng.integers(0, self.lengths[k])) for k in ks]
        window = np.stack([self.clips[k].rendered[window_indices(t)] for k, t in zip(ks, ts)])  # (B, 3, H, W, 3)
        b, _, h, w, _ = window.shape
        return {
            "window": to_tensor(window).reshape(b, 3 * WINDOW, h, w),
            "real": to_tensor(np.stack([self.clips[k].real[t] for k, t in zip(ks, ts)])),
            "identity": torch.from_numpy(np.stack([self.clips[k].identity[t] for k, t in zip(ks, ts)])),
        }

    def generator_step(self, batch: dict[str, torch.Tensor], use_gan: bool) -> StepOutput:
        s, m = self.s, self.generator
        window, real, ident = batch["window"], batch["real"], batch["identity"]
        query = m.encoder(window[:, -3:])
        l_mem = m.memory.triplet_loss(query, ident, self.threshold, s.top_k, s.margin)
        refreshed, replaced = m.memory.update(query.detach(), ident, self.threshold)
        out, _, attention = m(window, ident)
        l1 = (out - real).abs().mean()
        l_att, l_smooth = attention_losses(attention)
        loss = s.lambda_l1 * l1 + s.lambda_attention * l_att + s.lambda_smooth * l_smooth + l_mem
        logs = {"l1": l1.item(), "attention": l_att.item(), "attention_smooth": l_smooth.item(), "mem_triplet": l_mem.item(),
                "mem_replaced": float(replaced), "mem_items": float(m.memory.n_filled)}
        if use_gan:
            adv = bce_g_loss(self.discriminator(out, window))
            loss = loss + s.lambda_gan * adv
            logs["g_gan"] = adv.item()
        return StepOutput(loss, logs, (out.detach(), window, real))

    def discriminator_step(self, batch: dict[str, torch.Tensor], state: Any) -> StepOutput:
        fake, window, real = state
        loss = bce_d_loss(self.discriminator(real, window), self.discriminator(fake, window))
        return StepOutput(loss, {"d_gan": loss.item()})


def identity_separation(clips: list[RefineClip], per_clip: int = 16) -> dict[str, float]:
    """Identity feature cosines: 5th percentile within a clip (one identity: the threshold must be
    below it) and the median between clips (clips of one person share an identity, so this mixes
    same- and different-identity pairs)."""
    feats = [c.identity[np.linspace(0, len(c.identity) - 1, min(per_clip, len(c.identity))).astype(int)] for c in clips]
    within = np.concatenate([(f @ f.T)[np.triu_indices(len(f), 1)] for f in feats if len(f) > 1] or [np.ones(1)])
    between = [(a @ b.T).ravel() for i, a in enumerate(feats) for b in feats[i + 1:]]
    between = np.concatenate(between) if between else np.array([np.nan])  # one clip: nothing to compare
    return {"within_p5": float(np.percentile(within, 5)), "between_p50": float(np.percentile(between, 50))}
