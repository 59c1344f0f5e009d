"""Audio2Head Table 2 on held-out clips of a talkgraph dataset, plus the paper's switch ablations.

Per clip, the first frame is the reference and the clip's audio drives the models:
- HE: mean L1 between predicted and ground-truth head poses, in the predictor's standardised
  units (per-dimension z-scores of the training poses; the paper normalises OpenFace poses to
  [-1, 1], so the scales differ);
- KE: mean L1 between the motion field generator's keypoints and the keypoint detector's
  keypoints of the real frames ([-1, 1] image coordinates, as the paper);
- PSNR / SSIM of the rendered frames against the real ones (frames after the reference).
Rows: GT-keypoint (render with the detector's keypoints of the real frames: the renderer's
ceiling), GT-head (motion field from the true poses), the full model, and the ablations that
are switches — w/o Jacobians (the renderer uses translations only) and "with L1" (the head
motion predictor trained with L1 instead of SSIM, a second checkpoint) — a still-reference
baseline (every frame = the reference, every keypoint = the reference's), and the full model
rendered with FOMM's relative motion (KeypointRenderer `motion: relative`), which is not in the
paper.

Departure: the paper retrains without E_J for its Jacobian ablation; here the trained models
are run with the Jacobians switched off (identity), which measures how much they rely on them.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from nodes.types import Keypoints

COLUMNS = ("HE", "KE", "PSNR", "SSIM")


def _quality(frames: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    from nodes.metrics.image_quality import psnr, ssim

    return float(np.mean([psnr(a, b) for a, b in zip(frames, truth)])), float(np.mean([ssim(a, b) for a, b in zip(frames, truth)]))


def _ke(kp: Keypoints, truth: Keypoints) -> float:
    return float(np.abs(kp.value - truth.value).mean())


def evaluate(models: dict[str, Any], dataset: str, splits: tuple[str, ...] = ("test",), max_clips: int = 0,
             max_frames: int = 100, device: str = "cpu", progress: Callable[[int, int], None] | None = None,
             keep: int = 1, frame_size: int = 256) -> tuple[dict[str, dict[str, float]], list[dict[str, Any]]]:
    """models: detector, renderer, head_motion, motion_field, optional head_motion_l1; frames are
    compared at `frame_size` (the keypoint networks' training size). Returns (table: row -> column -> value, the first `keep` clips' outputs for figures)."""
    from trainers.data import ClipStore

    from .inference import detect_keypoints, motion_field, predict_head_motion, relative_keypoints, render
    from .pose import camera_pose_from_morph

    stores = [ClipStore(dataset, s, fields=("frames", "pose"), feature="a2h", frame_size=frame_size, min_frames=2) for s in splits]
    clips = [(st, k) for st in stores for k in range(len(st))]
    clips = clips[:max_clips] if max_clips else clips
    rows: dict[str, dict[str, list[float]]] = {}

    def add(row: str, **vals: float) -> None:
        for k, v in vals.items():
            rows.setdefault(row, {}).setdefault(k, []).append(v)

    hm, mf, det, ren = models["head_motion"], models["motion_field"], models["detector"], models["renderer"]
    kept = []
    for i, (store, k) in enumerate(clips):
        c = store.get(k)
        n = min(c["n_frames"], max_frames)
        frames, feats = c["frames"][:n], c["features"][:n]
        poses = camera_pose_from_morph(c["pose"][:n], c["image_size"])
        reference, truth = frames[0], frames[1:]
        kp_true = detect_keypoints(det, frames, device)
        kp_src = Keypoints(kp_true.value[:1], kp_true.jacobian[:1])
        tail = lambda kp: Keypoints(kp.value[1:], kp.jacobian[1:])  # noqa: E731 (frames after the reference)

        def pipeline(pose_pred: np.ndarray, jacobians: bool = True) -> tuple[Keypoints, np.ndarray]:
            kp, _ = motion_field(mf, reference, feats, pose_pred, device)
            out, _ = render(ren, reference, kp_src, tail(kp), device, use_jacobians=jacobians)
            return kp, out

        gt_kp_frames, _ = render(ren, reference, kp_src, tail(kp_true), device)
        add("GT-keypoint", **dict(zip(("PSNR", "SSIM"), _quality(gt_kp_frames, truth))))
        kp_head, head_frames = pipeline(poses)
        add("GT-head", KE=_ke(kp_head, kp_true), **dict(zip(("PSNR", "SSIM"), _quality(head_frames, truth))))
        pred = predict_head_motion(hm, reference, feats, device)
        he = float((np.abs(pred - poses) / hm.pose_std.cpu().numpy()).mean())
        kp_full, full_frames = pipeline(pred)
        add("full model", HE=he, KE=_ke(kp_full, kp_true), **dict(zip(("PSNR", "SSIM"), _quality(full_frames, truth))))
        kp_rel = relative_keypoints(kp_full, kp_src)
        rel_frames, _ = render(ren, reference, kp_src, tail(kp_rel), device)
        add("full model, relative motion", KE=_ke(kp_rel, kp_true), **dict(zip(("PSNR", "SSIM"), _quality(rel_frames, truth))))
        nojac_frames, _ = render(ren, reference, kp_src, tail(kp_full), device, use_jacobians=False)
        add("w/o Jacobians (switch)", KE=_ke(kp_full, kp_true), **dict(zip(("PSNR", "SSIM"), _quality(nojac_frames, truth))))
        if models.get("head_motion_l1") is not None:
            l1 = models["head_motion_l1"]
            pred_l1 = predict_head_motion(l1, reference, feats, device)
            kp_l1, l1_frames = pipeline(pred_l1)
            add("with L1 (pose loss)", HE=float((np.abs(pred_l1 - poses) / hm.pose_std.cpu().numpy()).mean()),
                KE=_ke(kp_l1, kp_true), **dict(zip(("PSNR", "SSIM"), _quality(l1_frames, truth))))
        still_kp = Keypoints(np.repeat(kp_true.value[:1], n, 0), np.repeat(kp_true.jacobian[:1], n, 0))
        add("still reference", KE=_ke(still_kp, kp_true),
            **dict(zip(("PSNR", "SSIM"), _quality(np.repeat(reference[None], len(truth), 0), truth))))
        if i < keep:
            kept.append({"name": c["name"], "frames": frames, "gt_keypoint": gt_kp_frames, "full": full_frames,
                         "gt_head": head_frames, "no_jacobians": nojac_frames, "pose_true": poses, "pose_pred": pred,
                         "kp_true": kp_true, "kp_full": kp_full, "pose_l1": pred_l1 if models.get("head_motion_l1") is not None else None})
        if progress:
            progress(i + 1, len(clips))
    table = {row: {col: float(np.mean(v)) for col, v in vals.items()} for row, vals in rows.items()}
    return table, kept


def report(table: dict[str, dict[str, float]], about: str) -> str:
    lines = ["| | " + " | ".join(COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
    fmt = {"HE": "{:.4f}", "KE": "{:.4f}", "PSNR": "{:.2f}", "SSIM": "{:.3f}"}
    for row, vals in table.items():
        cells = [fmt[c].format(vals[c]) if c in vals else "-" for c in COLUMNS]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return about + "\n\n" + "\n".join(lines) + "\n"


# --- figures ---


def frames_figure(clip: dict[str, Any], n: int = 5, tile: int = 160) -> np.ndarray:
    """Rows: frames spread over the clip; columns: real, GT-keypoint, GT-head, full, w/o Jacobians,
    with the real frame's keypoints (green) and the motion field's (red) drawn on the full model."""
    import cv2

    from nodes.figures import intermediates_grid

    t = len(clip["full"])
    ids = sorted({int(round(v)) for v in np.linspace(0, t - 1, n)})
    full = clip["full"].copy()
    size = full.shape[1]
    for j in ids:
        for kp, colour in ((clip["kp_true"].value[j + 1], (0, 200, 0)), (clip["kp_full"].value[j + 1], (220, 0, 0))):
            for x, y in (kp + 1) / 2 * (size - 1):
                cv2.circle(full[j], (int(round(x)), int(round(y))), 3, colour, -1, cv2.LINE_AA)
    return intermediates_grid({"real": clip["frames"][1:], "GT-keypoint": clip["gt_keypoint"], "GT-head": clip["gt_head"],
                               "full model (+kp)": full, "w/o Jacobians": clip["no_jacobians"]}, ids, tile)


def pose_figure(clip: dict[str, Any], fps: float = 25.0) -> np.ndarray:
    """Head pose curves: ground truth, the SSIM-trained predictor and (if given) the L1 one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ("pitch (deg)", "yaw (deg)", "roll (deg)", "tx (mm)", "ty (mm)", "tz (mm)")
    fig, axes = plt.subplots(2, 3, figsize=(12, 5.5))
    series = [("ground truth", clip["pose_true"]), ("predicted (SSIM)", clip["pose_pred"])]
    if clip.get("pose_l1") is not None:
        series.append(("predicted (L1)", clip["pose_l1"]))
    for d, ax in enumerate(axes.flat):
        for label, p in series:
            y = np.degrees(p[:, d]) if d < 3 else p[:, d]
            ax.plot(np.arange(len(y)) / fps, y, label=label, linewidth=1.2)
        ax.set_title(names[d], fontsize=10)
        ax.set_xlabel("seconds")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(f"head motion, held-out clip {clip['name']}")
    fig.tight_layout()
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return rgb
