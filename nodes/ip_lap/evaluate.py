"""IP_LAP's Table 1 (reconstruction setting) and Table 5 (number of references) on held-out clips.

Each held-out clip (first `max_frames` frames) is dubbed with its own speech, so its frames are
the ground truth; references come from the clip itself, picked by mouth opening as at inference
(as in the paper's reconstruction setting, the reference pool contains the frames being
reconstructed). Rows:
- `GT landmarks`: the renderer driven by the clip's true landmarks (its ceiling);
- `full model`: landmark generator + renderer, N = 1/5 of the frames (the paper's inference);
- `full model, N = n`: the same with n reference images (Table 5).

Metrics (means over frames):
- PSNR / SSIM of the full frames, and of the face box (resized to 128 px);
- LMD / LipLMD: MediaPipe landmarks detected on the generated and on the real frames, distance in
  units of the real frame's face box (box coordinates in [0, 1]): all 131 IP_LAP points / the 40
  lip points;
- CSIM: cosine similarity of identity features of generated and real frames — ArcFace when its
  weights are given (nodes/face/identity.py), else the documented fallback `own` (the fitted 3DMM
  identity coefficients and face colours, from landmarks detected on each side, the 3DMM fitted
  per clip on each side);
- landmark L1 (generator only): mean |predicted − true| jaw and lip coordinates, in box units.
FID needs Inception weights and LPIPS AlexNet/VGG weights: neither is computed here.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from . import facemesh as fm
from .pipeline import FaceTrack, generate_content, paste_faces, reference_count, render_faces


def _box_coords(landmarks_px: np.ndarray, track: FaceTrack) -> np.ndarray:
    """(T, 478, 2) pixel landmarks -> (T, 478, 2) coordinates in each frame's (real) face box."""
    norm = fm.to_normalised(landmarks_px, track.frame_hw)
    return np.stack([fm.in_box(norm[t], track.boxes[t], track.frame_hw) for t in range(len(track))])


def _face_crops(frames: np.ndarray, track: FaceTrack) -> np.ndarray:
    return np.stack([fm.crop_face(f, b, 128) for f, b in zip(frames, track.boxes)])


class Judge:
    """Measures generated frames against one clip's real frames."""

    def __init__(self, real: np.ndarray, track: FaceTrack, identity) -> None:
        from nodes.face.landmarks import detect_landmarks

        self.real, self.track, self.identity = real, track, identity
        self.real_faces = _face_crops(real, track)
        lms, found = detect_landmarks(real)
        self.real_lms = lms
        self.real_found = found
        self.real_id = self._identity(real, lms, found)

    def _identity(self, frames: np.ndarray, lms: np.ndarray, found: np.ndarray) -> np.ndarray | None:
        if found.sum() < 2:
            return None
        features, face_model = self.identity
        shape = None
        if face_model is not None:  # the `own` fallback: the 3DMM identity fitted on these frames' landmarks
            from nodes.face.fitting import fit_coefficients

            shape = fit_coefficients(face_model, lms[found]).shape
        out = np.full((len(frames), features.dim), np.nan, np.float32)
        out[found] = features(frames[found], lms[found], shape)
        return out

    def __call__(self, frames: np.ndarray) -> dict[str, float]:
        from nodes.face.landmarks import detect_landmarks
        from nodes.metrics.image_quality import psnr, ssim

        faces = _face_crops(frames, self.track)
        lms, found = detect_landmarks(frames)
        ok = found & self.real_found
        out = {"psnr": float(np.mean([psnr(a, b) for a, b in zip(frames, self.real)])),
               "ssim": float(np.mean([ssim(a, b) for a, b in zip(frames, self.real)])),
               "psnr_face": float(np.mean([psnr(a, b) for a, b in zip(faces, self.real_faces)])),
               "ssim_face": float(np.mean([ssim(a, b) for a, b in zip(faces, self.real_faces)])),
               "detected": float(found.mean())}
        if ok.any():
            d = np.linalg.norm(_box_coords(lms, self.track) - _box_coords(self.real_lms, self.track), axis=-1)[ok]
            out["lmd"] = float(d[:, list(fm.ORDER)].mean())
            out["lip_lmd"] = float(d[:, list(fm.ORDER[-40:])].mean())
            gen_id = self._identity(frames, lms, found)
            if gen_id is not None and self.real_id is not None:
                both = ok & np.isfinite(gen_id).all(1) & np.isfinite(self.real_id).all(1)
                out["csim"] = float(np.mean(np.sum(gen_id[both] * self.real_id[both], axis=1)))
        return out


def identity_model(arcface_weights: str | None):
    """(IdentityFeatures, face model for fitting or None): ArcFace with weights, else the fallback."""
    from nodes.face.identity import IdentityFeatures

    if arcface_weights:
        return IdentityFeatures("arcface", arcface_weights), None
    features = IdentityFeatures("own")
    return features, features.model


def evaluate(dataset: str, generator, renderer, *, splits: tuple[str, ...] = ("val", "test"), max_frames: int = 50,
             references: tuple[int, ...] = (1, 5, 10, 25), margin: float = 25, renderer_bgr: bool = False,
             arcface_weights: str | None = None, device: str = "cpu", figure_path: str | None = None,
             progress: Callable[[int, int], None] | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """{'rows': {row: {metric: mean}}, 'landmark_l1': float, 'clips': [...], 'csim': kind}."""
    from trainers.data import ClipStore
    from trainers.data.clips import clip_features

    identity = identity_model(arcface_weights)
    clips = []
    for split in splits:
        store = ClipStore(dataset, split, fields=(), min_frames=5)
        clips += [(store, k) for k in range(len(store))]
    if not clips:
        raise ValueError(f"dataset {dataset} has no clips in the splits {list(splits)}")
    rows: dict[str, list[dict[str, float]]] = {}
    l1s, names = [], []
    figure: dict[str, Any] | None = {} if figure_path else None
    steps = len(clips) * (2 + len(references))
    done = 0
    for store, k in clips:
        clip = store.dataset.clip(store.clip_ids[k])
        t = min(max_frames, clip.n_frames)
        frames = np.asarray(clip.frames[:t])
        landmarks = np.asarray(clip.landmarks[:t], np.float32)
        mels = clip_features(clip, "mel", store.dataset.fps)[:t]
        track = FaceTrack.from_frames(frames, landmarks, margin, renderer.cfg.size)
        judge = Judge(frames, track, identity)
        names.append(clip.name)
        if len(names) == 1:
            frames_of_first = frames
        # a `mouth_prior: rules` generator also reads the clip's phonetic features (from its audio)
        phonetic = clip_features(clip, "phonetic", store.dataset.fps)[:t] if getattr(generator, "uses_prior", False) else None
        content = generate_content(generator, track, mels, device=device, phonetic=phonetic)
        l1s.append(float(np.abs(content - track.content).mean()))
        n_paper = reference_count(t, 0)
        runs = [("GT landmarks", track.content, n_paper), (f"full model (N = {n_paper}: 1/5 of the frames)", content, n_paper)]
        runs += [(f"full model, N = {n}", content, n) for n in references]
        for name, drive, n in runs:
            faces, info = render_faces(renderer, track, drive, mels, n, device, bgr=renderer_bgr)
            out, _ = paste_faces(frames, track, faces, landmarks, drive)
            key = name if not name.startswith("full model (N =") else "full model (N = 1/5 of the frames)"
            rows.setdefault(key, []).append(judge(out))
            if figure is not None and len(names) == 1 and key in ("GT landmarks", "full model (N = 1/5 of the frames)"):
                figure[key] = (out, info["sketches"])
            done += 1
            if progress:
                progress(done, steps)
        log(f"{clip.name}: {t} frames, landmark L1 {l1s[-1]:.4f}, full model {rows['full model (N = 1/5 of the frames)'][-1]}")
    if figure:
        save_figure(figure_path, figure, frames_of_first)
    table = {name: {m: float(np.mean([r[m] for r in rs if m in r])) for m in dict.fromkeys(k for r in rs for k in r)}
             for name, rs in rows.items()}
    return {"rows": table, "landmark_l1": float(np.mean(l1s)), "clips": names, "frames_per_clip": max_frames,
            "csim": "arcface" if arcface_weights else "own (fallback: fitted 3DMM identity + face colours)"}


def table_markdown(result: dict[str, Any]) -> str:
    cols = [("psnr", "PSNR"), ("ssim", "SSIM"), ("psnr_face", "PSNR face"), ("ssim_face", "SSIM face"), ("lmd", "LMD"),
            ("lip_lmd", "LipLMD"), ("csim", "CSIM")]
    lines = ["| | " + " | ".join(c for _, c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, r in result["rows"].items():
        cells = [f"{r[k]:.2f}" if k.startswith("psnr") else f"{r[k]:.4f}" if k in r else "-" for k, _ in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"Landmark generator: mean |error| of the jaw and lip coordinates {result['landmark_l1']:.4f} "
                 f"(face-box units) on {len(result['clips'])} clips ({', '.join(result['clips'])}), first "
                 f"{result['frames_per_clip']} frames each; CSIM: {result['csim']}.")
    return "\n".join(lines) + "\n"


def save_figure(path: str, runs: dict[str, tuple[np.ndarray, np.ndarray]], real: np.ndarray, count: int = 5) -> None:
    """Rows: real frames, then per run its sketches and its frames, at `count` evenly spaced times."""
    import cv2

    t = np.linspace(0, len(real) - 1, count).astype(int)
    rows = [np.concatenate(list(real[t]), axis=1)]
    for frames, sketches in runs.values():
        side = real.shape[1]
        sk = [cv2.resize(np.clip(sketches[i], 0, 255).astype(np.uint8), (side, side), interpolation=cv2.INTER_NEAREST) for i in t]
        rows += [np.concatenate(sk, axis=1), np.concatenate(list(frames[t]), axis=1)]
    image = np.concatenate(rows, axis=0)
    scale = min(1.0, 1280 / image.shape[1])
    if scale < 1:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])


def lip_gap(frames: np.ndarray) -> np.ndarray:
    """Per frame: the inner-lip opening (MediaPipe points 13 and 14) over the face height (10 to 152),
    NaN where no face is found."""
    from nodes.face.landmarks import detect_landmarks

    lms, found = detect_landmarks(frames)
    gap = np.linalg.norm(lms[:, 13, :2] - lms[:, 14, :2], axis=-1) / np.linalg.norm(lms[:, 10, :2] - lms[:, 152, :2], axis=-1)
    return np.where(found, gap, np.nan)


def loudness(samples: np.ndarray, sample_rate: int, frames: int, fps: float = 25.0) -> np.ndarray:
    """RMS level in dB of each video frame's audio (T,)."""
    per = sample_rate / fps
    out = np.empty(frames)
    for t in range(frames):
        seg = samples[int(t * per): int((t + 1) * per)]
        out[t] = 20 * np.log10(np.sqrt(np.mean(seg.astype(np.float64) ** 2)) + 1e-4) if len(seg) else -80.0
    return out


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    return float(np.corrcoef(a[ok], b[ok])[0, 1]) if ok.sum() > 2 else float("nan")
