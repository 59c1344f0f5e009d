"""HDTF Tables 3 and 4 on held-out clips of a talkgraph dataset.

Table 3 (audio-to-animation): the generator is driven by each clip's audio with the clip's first
frame as reference, and compared with the clip's coefficients: MSE of the 28 mouth parameters,
LMD^3D (mean distance of the 3-D lip vertices, mm), eq. 5 SSIM of the 5 eyebrow parameters, and
the mean canonical correlation (CCA) of the head pose. Rows: the full model, 'w/o style', and
for scale a still baseline (the reference frame's coefficients held for the whole clip).

Table 4 (animation-to-video): F_app from the clip's first frame to every other frame is built
from the true coefficients (so only the video module is judged), frames are generated from
the first frame and compared with the real ones: PSNR, SSIM, and CPBD of the generated frames.
Rows: the full model; 'w/o matting' (eq. 14); 'w/o F_app' (F_app kept only on the inner face,
i.e. no torso / head-related flow); and the geometric warp-only pipeline (the reference warped
by F_app, no network).

Departure: the paper retrains a model per ablation; here each ablation is a switch of the same
trained nodes (the same checkpoint run with the component disabled), which is cheaper but
measures how much the trained model relies on the component rather than how well a model
trained without it would do.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from nodes.types import MorphCoeffs

TABLE3 = ("mouth_mse", "lmd3d_mm", "brow_ssim", "pose_cca")
TABLE4 = ("psnr", "ssim", "cpbd")


def evaluate_animation(generator, dataset: str, split: str = "test", max_clips: int = 0, feature: str = "mfcc_pitch",
                       progress: Callable[[int, int], None] | None = None) -> dict[str, dict[str, float]]:
    from nodes.face.model import load_face_model
    from nodes.metrics.motion import cca_score, lip_landmark_distance, mse, sequence_ssim
    from trainers.data import ClipStore

    from .identity import IdentityEncoder
    from .inference import animate

    store = ClipStore(dataset, split, fields=("expression", "pose", "shape"), feature=feature, min_frames=2)
    face_model = load_face_model()
    encoder = IdentityEncoder(generator.cfg.identity) if generator.cfg.identity == "morph" else None
    if encoder is None:
        raise ValueError("evaluation of VGG-Face identity models needs the VGG-Face weights; use the AnimationGenerator node")
    n = len(store) if not max_clips else min(max_clips, len(store))
    rows: dict[str, list[dict[str, float]]] = {"full model": [], "w/o style": [], "still reference (baseline)": []}
    for k in range(n):
        c, ref = store.get(k), store.frame(k, 0)
        identity = encoder(ref["image"], ref["landmarks"], c["shape"])
        reference = MorphCoeffs(c["shape"], c["expression"][:1], c["pose"][:1], np.zeros(1, np.float32), c["image_size"])
        t = len(c["expression"])
        still = MorphCoeffs(c["shape"], np.repeat(c["expression"][:1], t, 0), np.repeat(c["pose"][:1], t, 0),
                            np.zeros(t, np.float32), c["image_size"])
        for name, style in (("full model", True), ("w/o style", False), ("still reference (baseline)", None)):
            pred = still if style is None else animate(generator, c["features"], identity, reference, style=style)
            rows[name].append({
                "mouth_mse": mse(pred.expression[:, :28], c["expression"][:, :28]),
                "lmd3d_mm": lip_landmark_distance(face_model, c["shape"], pred.expression, c["expression"]),
                "brow_ssim": sequence_ssim(pred.expression[:, 28:], c["expression"][:, 28:]),
                "pose_cca": cca_score(pred.pose, c["pose"]),
            })
        if progress is not None:
            progress(k + 1, n)
    return {name: {m: float(np.mean([r[m] for r in rs])) for m in TABLE3} for name, rs in rows.items()}


def evaluate_video(generator, dataset: str, split: str = "test", *, frame_size: int = 256, max_clips: int = 0,
                   max_frames: int = 50, flow_builder=None, chunk: int = 8,
                   progress: Callable[[int, int], None] | None = None) -> dict[str, dict[str, float]]:
    from nodes.face.flow import REGION_FACE, REGION_LEVELS
    from nodes.metrics.image_quality import frame_metrics
    from nodes.warp import warp_frames
    from trainers.data import ClipStore

    from .fapp import ClipFlowBuilder
    from .inference import render_video

    store = ClipStore(dataset, split, fields=("frames", "expression", "pose", "shape"), frame_size=frame_size, min_frames=2)
    builder = flow_builder or ClipFlowBuilder()
    n = len(store) if not max_clips else min(max_clips, len(store))
    rows: dict[str, list[dict[str, float]]] = {"full model": [], "w/o matting": [], "w/o F_app": [], "warp only (geometric)": []}
    for k in range(n):
        c = store.get(k)
        targets = np.arange(1, min(c["n_frames"], max_frames + 1))
        ref, truth = c["frames"][0], c["frames"][targets]
        fapp = builder(c, 0, targets)
        inner = (builder.last_regions == REGION_LEVELS[REGION_FACE])[..., None]
        outputs = {
            "full model": render_video(generator, ref, fapp, chunk=chunk).frames,
            "w/o matting": render_video(generator, ref, fapp, matting=False, chunk=chunk).frames,
            "w/o F_app": render_video(generator, ref, fapp * inner, chunk=chunk).frames,
            "warp only (geometric)": warp_frames(ref, fapp),
        }
        for name, frames in outputs.items():
            rows[name].append(frame_metrics(frames, truth))
        if progress is not None:
            progress(k + 1, n)
    return {name: {m: float(np.mean([r[m] for r in rs])) for m in TABLE4} for name, rs in rows.items()}


def markdown_table(title: str, results: dict[str, dict[str, float]], columns: tuple[str, ...], headers: dict[str, str]) -> str:
    lines = [f"**{title}**", "", "| | " + " | ".join(headers[c] for c in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for name, vals in results.items():
        lines.append(f"| {name} | " + " | ".join(f"{vals[c]:.4f}" for c in columns) + " |")
    return "\n".join(lines)


HEADERS = {"mouth_mse": "MSE (mouth) ↓", "lmd3d_mm": "LMD³ᴰ mouth (mm) ↓", "brow_ssim": "SSIM (eyebrow) ↑",
           "pose_cca": "CCA (head pose) ↑", "psnr": "PSNR ↑", "ssim": "SSIM ↑", "cpbd": "CPBD ↑"}


def report(table3: dict[str, Any] | None, table4: dict[str, Any] | None, about: str = "") -> str:
    parts = [about] if about else []
    if table3:
        parts.append(markdown_table("Table 3 — audio-to-animation", table3, TABLE3, HEADERS))
    if table4:
        parts.append(markdown_table("Table 4 — animation-to-video", table4, TABLE4, HEADERS))
    return "\n\n".join(parts) + "\n"
