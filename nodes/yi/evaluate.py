"""Evaluation of the Yi et al. pipeline on held-out clips of a talkgraph dataset (docs/yi.md).

For every held-out clip, the clip itself plays the target video:
- Image quality (PSNR, SSIM against the real frames, at the GAN's training size): frames rendered
  from the clip's ground-truth coefficients with lighting and albedo fitted on the clip and
  backgrounds matched among its *other* frames (as in training, so no frame sees its own
  background), then refined by the memory GAN with retrieved identity features — and, the §4.2
  ablation, with the training set's mean identity instead (no identity feature, no memory).
- Audio-driven: expression and pose predicted from the clip's audio around the clip's mean pose,
  rendered over the matched backgrounds (pose fitted to them) and refined; compared with the real
  frames, which follow the real pose, so these scores also measure pose error.
- Head pose: HS (eq. 6) between the real pose and the predicted one, and the §4.2 ablation
  without pose prediction (the mean pose throughout); expression MSE of the prediction.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def _quality(frames: np.ndarray, real: np.ndarray) -> dict[str, float]:
    from nodes.metrics.image_quality import psnr, ssim

    return {"psnr": float(np.mean([psnr(a, b) for a, b in zip(frames, real)])),
            "ssim": float(np.mean([ssim(a, b) for a, b in zip(frames, real)]))}


def evaluate(dataset: str, audio_model, gan, *, split: str = "test", max_clips: int = 0, max_frames: int = 100,
             exclude: int = 8, device: str = "cpu", progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Mean metrics over the held-out clips: {'images': {row: {psnr, ssim}}, 'pose': {row: {...}}, 'clips': n}."""
    from nodes.face.model import load_face_model
    from nodes.metrics.head_pose import head_pose_similarity
    from nodes.types import MorphCoeffs
    from trainers.data import ClipStore

    from .inference import predict_coeffs, refine
    from .render3dmm import FaceRenderer, background_frames, fit_appearance, plan_backgrounds, render_sequence

    model = load_face_model()
    size = int(2 ** gan.cfg.levels)
    figure = None
    store = ClipStore(dataset, split, fields=("frames", "landmarks", "expression", "pose", "shape"), feature=audio_model.cfg.feature,
                      frame_size=size, min_frames=3)
    n = min(len(store), max_clips) if max_clips else len(store)
    images: dict[str, list[dict[str, float]]] = {}
    pose: dict[str, list[dict[str, float]]] = {}
    for k in range(n):
        c = store.get(k)
        t = min(max_frames, c["n_frames"])
        real = c["frames"][:t]
        truth = MorphCoeffs(c["shape"], c["expression"][:t], c["pose"][:t], np.zeros(t, np.float32), c["image_size"])
        app = fit_appearance(model, real, truth, device=device)
        renderer = FaceRenderer(model, app, "detailed", device)
        idx = np.arange(t)
        excl = np.abs(idx[:, None] - idx[None]) < min(exclude, max(1, t // 2))

        def render(coeffs: MorphCoeffs, fit_pose: bool) -> np.ndarray:
            plan = plan_backgrounds(coeffs.pose, truth.pose, (size, size), fit_pose=fit_pose, exclude=excl)
            out = np.empty_like(real)
            for sl, img, _ in render_sequence(renderer, coeffs.shape, coeffs.expression, plan.pose, size, size,
                                              lambda s: background_frames(plan, real, s)):
                out[sl] = img
            return out

        rendered = render(truth, False)
        rows = {
            "rendered (ground-truth coefficients)": rendered,
            "refined, memory identity (full)": refine(gan, rendered, identity="memory", device=device).frames,
            "refined, no identity/memory (ablation)": refine(gan, rendered, identity="mean", device=device).frames,
        }
        pred = predict_coeffs(audio_model, c["features"][:t], truth, device=device)
        driven = render(pred, True)
        rows["audio-driven, rendered"] = driven
        rows["audio-driven, refined (full)"] = refine(gan, driven, identity="memory", device=device).frames
        for name, frames in rows.items():
            images.setdefault(name, []).append(_quality(frames, real))
        if k == 0:
            att = refine(gan, rendered, identity="memory", device=device).attention
            shown = np.linspace(0, t - 1, 4).round().astype(int)
            figure = _grid({"real": real, "rendered (GT coeffs)": rendered, "refined": rows["refined, memory identity (full)"],
                            "attention A": (np.repeat(att[..., None], 3, -1) * 255).astype(np.uint8),
                            "audio-driven rendered": driven, "audio-driven refined": rows["audio-driven, refined (full)"]}, shown)
        still = predict_coeffs(audio_model, c["features"][:t], truth, predict_pose=False, device=device)
        hs_full = head_pose_similarity(truth.pose, pred.pose)
        hs_still = head_pose_similarity(truth.pose, still.pose)
        for row, gen, hs in (("predicted pose (full)", pred, hs_full), ("without pose prediction (ablation)", still, hs_still)):
            pose.setdefault(row, []).append({
                "hs": hs["hs"], "w1_yaw_deg": hs["w1_yaw_deg"], "w1_pitch_deg": hs["w1_pitch_deg"],
                "pose_rmse_deg": float(np.degrees(np.sqrt(np.mean((gen.pose[:, :3] - truth.pose[:, :3]) ** 2)))),
                "expression_mse": float(np.mean((gen.expression - truth.expression) ** 2))})
        store._cache.pop(k, None)
        if progress is not None:
            progress(k + 1, n)
    mean = lambda rows: {name: {m: float(np.mean([r[m] for r in v])) for m in v[0]} for name, v in rows.items()}  # noqa: E731
    return {"images": mean(images), "pose": mean(pose), "clips": n, "frame_size": size, "split": split, "figure": figure}


def _grid(columns: dict[str, np.ndarray], frames: np.ndarray) -> np.ndarray:
    """One row per frame, one column per named sequence, with a title row."""
    import cv2

    size = next(iter(columns.values())).shape[1]
    title = np.full((18, size * len(columns), 3), 255, np.uint8)
    for j, name in enumerate(columns):
        cv2.putText(title, name, (j * size + 3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (0, 0, 0), 1, cv2.LINE_AA)
    rows = [np.concatenate([seq[i] for seq in columns.values()], 1) for i in frames]
    return np.concatenate([title, *rows], 0)


def report(result: dict[str, Any], about: str = "") -> str:
    """The evaluation as markdown tables."""
    lines = [f"Held-out split `{result['split']}`: {result['clips']} clip(s), frames at {result['frame_size']} px. {about}".strip(), "",
             "| frames | PSNR (dB) | SSIM |", "|---|---|---|"]
    lines += [f"| {k} | {v['psnr']:.2f} | {v['ssim']:.4f} |" for k, v in result["images"].items()]
    lines += ["", "| head pose | HS | W1 yaw (deg) | W1 pitch (deg) | angle RMSE (deg) | expression MSE |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {k} | {v['hs']:.4f} | {v['w1_yaw_deg']:.2f} | {v['w1_pitch_deg']:.2f} | {v['pose_rmse_deg']:.2f} | "
              f"{v['expression_mse']:.5f} |" for k, v in result["pose"].items()]
    return "\n".join(lines) + "\n"
