"""IP_LAP inference on numpy inputs: a talking video + new speech -> the same video dubbed.

    FaceTrack.from_frames(frames, landmarks)      per frame: face box, pose/content landmarks
                                                  in the box, 128-px crop, mouth openness
    generate_content(model, track, mels, ...)     §3.1 in windows of T frames -> jaw + lips per
                                                  output frame (box coordinates)
    render_faces(model, track, content, mels, ...) §3.2 -> one 128-px face per output frame
    paste_faces(frames, track, faces, ...)        Fig. 3: resize into the box, blend through a
                                                  Gaussian-smoothed face mask

Output frame t shows template frame `template_indices(...)[t]`: the video plays forward, then
backward, and so on while the speech lasts (the official inference's loop), or is cut short.

Each frame's mel window is the one the official code pairs with it: 16 mel rows starting
int(3.2 (t − 2)) at 25 fps (AudioFeatures `mel` with mel_align `centre`; rows before the clip
repeat the first row, where the official code repeats the first window).

References, as the official inference picks them: the N_l reference landmarks and the N
reference images are frames spread evenly over the video's mouth openings (sorted by the
distance between the lip middles). The paper: N = 1/5 of the video length at inference.

Departures from the official script (the networks are unchanged):
- one landmark sequence: frame t's jaw and lips come from the window of T frames centred on it
  (clamped at the ends); the official script draws frame t's five target sketches from the
  single window starting at t − 2, so a frame's landmarks differ between the sketches of its
  neighbours. Here every sketch of frame s is the same.
- the paste-back mask is the filled convex hull of the face oval and brows of both the original
  and the generated landmarks (MediaPipe points), blurred with a 21 x 21 Gaussian (sigma 11); the
  official script fills the hull of a 68-point FAN detection of the original frame's jaw and brows
  (FAN weights are a download).
- the references' encoder features are computed once per clip, not once per frame (same values).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from . import facemesh as fm

Progress = Callable[[int, int], None]


def is_bgr(export: dict[str, Any]) -> bool:
    """Whether a renderer checkpoint was trained on BGR images (the official release) rather than RGB."""
    return (export.get("extra") or {}).get("channels") == "bgr"


@dataclasses.dataclass
class FaceTrack:
    """What IP_LAP reads from a video's frames and their landmarks (T frames)."""

    frame_hw: tuple[int, int]
    boxes: list[fm.FaceBox]
    pose: np.ndarray       # (T, 2, 74) box coordinates
    content: np.ndarray    # (T, 2, 57)
    crops: np.ndarray      # (T, 128, 128, 3) uint8, the frames' channel order
    openness: np.ndarray   # (T,)
    size: int = fm.SKETCH_SIZE  # side of the crops and sketches

    @classmethod
    def from_frames(cls, frames: np.ndarray, landmarks: np.ndarray, margin: float = 25,
                    size: int = fm.SKETCH_SIZE) -> FaceTrack:
        if len(landmarks) != len(frames):
            raise ValueError(f"{len(landmarks)} landmark frames for {len(frames)} video frames")
        if landmarks.shape[1] < 468:
            raise ValueError(f"IP_LAP needs MediaPipe face-mesh landmarks (478 points), got {landmarks.shape[1]}")
        hw = tuple(int(v) for v in frames.shape[1:3])
        norm = fm.to_normalised(landmarks, hw)
        boxes, poses, contents, crops = [], [], [], []
        for t in range(len(frames)):
            try:
                box = fm.face_box(norm[t], hw, margin)
            except ValueError as exc:
                raise ValueError(f"frame {t}: {exc}") from None
            pose, content = fm.split(fm.in_box(norm[t], box, hw))
            boxes.append(box)
            poses.append(pose)
            contents.append(content)
            crops.append(fm.crop_face(frames[t], box, size))
        return cls(hw, boxes, np.stack(poses), np.stack(contents), np.stack(crops), fm.lip_openness(norm), size)

    def __len__(self) -> int:
        return len(self.boxes)

    def sketch(self, t: int, content: np.ndarray | None = None) -> np.ndarray:
        """The sketch of frame t (float32 (size, size, 3) in [0, 224]), with other jaw/lip points if given."""
        box = self.boxes[t]
        points = fm.full_131(self.pose[t], self.content[t] if content is None else content)
        return fm.draw_sketch(points, (box.height, box.width), self.size)


def template_indices(n_video: int, n_out: int) -> np.ndarray:
    """Which video frame each output frame shows: 0, 1, …, n−1, n−1, …, 0, 0, 1, … (cut at n_out)."""
    cycle = np.concatenate([np.arange(n_video), np.arange(n_video)[::-1]])
    return np.resize(cycle, n_out)


def reference_count(n_video: int, references: int) -> int:
    """N: `references` when positive, else the paper's 1/5 of the video length (at least 1)."""
    return references if references > 0 else max(1, int(round(n_video / 5)))


def _mel_tensor(mels: np.ndarray) -> torch.Tensor:
    """AudioFeatures `mel` rows (T, 16 time, 80 bins) -> the networks' (T, 80, 16)."""
    return torch.from_numpy(np.ascontiguousarray(np.asarray(mels, np.float32).transpose(0, 2, 1)))


@torch.no_grad()
def generate_content(model, track: FaceTrack, mels: np.ndarray, n_ref: int = 15, device: str = "cpu",
                     batch: int = 16, progress: Progress | None = None, phonetic: np.ndarray | None = None) -> np.ndarray:
    """Jaw and lip landmarks (T_out, 2, 57) in each output frame's box, T_out = len(mels).
    A `mouth_prior: rules` model also needs the speech's phonetic features (T_out, 44)."""
    t_win = model.cfg.frames
    n_out = len(mels)
    idx = template_indices(len(track), max(n_out, t_win))
    mel = _mel_tensor(mels)
    extra: dict[str, torch.Tensor] = {}
    if getattr(model, "uses_prior", False):
        from .mouth_prior import content_prior

        if phonetic is None or len(phonetic) != n_out:
            raise ValueError(f"this landmark generator (mouth_prior: rules) needs phonetic features, one row per "
                             f"mel window ({n_out}); got {None if phonetic is None else len(phonetic)}")
        prior = content_prior(track.pose, track.content, track.openness, phonetic, idx[:n_out])
        extra = {"prior": torch.from_numpy(prior), "phonetic": torch.from_numpy(np.asarray(phonetic, np.float32))}
    if n_out < t_win:  # a clip shorter than one window: repeat its last mel window (and prior, features)
        mel = torch.cat([mel, mel[-1:].expand(t_win - n_out, *mel.shape[1:])])
        extra = {k: torch.cat([v, v[-1:].expand(t_win - n_out, *v.shape[1:])]) for k, v in extra.items()}
    refs = fm.spread_by_openness(track.openness, n_ref)
    ref_pose = torch.from_numpy(track.pose[refs])[None].to(device)
    ref_content = torch.from_numpy(track.content[refs])[None].to(device)
    pose = torch.from_numpy(track.pose[idx])
    starts = np.arange(len(idx) - t_win + 1)
    preds = np.empty((len(starts), t_win, 2, fm.N_CONTENT), np.float32)
    for i in range(0, len(starts), batch):
        s = starts[i:i + batch]
        win = s[:, None] + np.arange(t_win)
        out = model(mel[win].to(device), pose[win].to(device), ref_pose.expand(len(s), -1, -1, -1),
                    ref_content.expand(len(s), -1, -1, -1), **{k: v[win].to(device) for k, v in extra.items()})
        preds[i:i + len(s)] = out.float().cpu().numpy()
        if progress:
            progress(min(i + batch, len(starts)), len(starts))
    t = np.arange(n_out)
    start = np.clip(t - t_win // 2, 0, len(starts) - 1)
    return preds[start, t - start]


def _to_tensor(images: np.ndarray, bgr: bool) -> torch.Tensor:
    """uint8/float (..., H, W, 3) in [0, 255] -> float (..., 3, H, W) in [0, 1], channels swapped for BGR models."""
    x = torch.from_numpy(np.ascontiguousarray(images[..., ::-1] if bgr else images)).float() / 255.0
    return x.movedim(-1, -3)


@torch.no_grad()
def render_faces(model, track: FaceTrack, content: np.ndarray, mels: np.ndarray, references: int = 0,
                 device: str = "cpu", batch: int = 8, bgr: bool = False, progress: Progress | None = None) -> tuple[np.ndarray, dict]:
    """One generated face (T_out, 128, 128, 3) uint8 per output frame, and what was used."""
    n_out = len(content)
    k = model.cfg.sketches // 2
    idx = template_indices(len(track), n_out)
    sketches = np.stack([track.sketch(int(idx[t]), content[t]) for t in range(n_out)])
    n_ref = reference_count(len(track), references)
    refs = fm.spread_by_openness(track.openness, n_ref)
    ref_images = _to_tensor(track.crops[refs], bgr)[None].to(device)
    ref_sketches = _to_tensor(np.stack([track.sketch(int(r)) for r in refs]), bgr)[None].to(device)
    encoded = model.alignment.encode(ref_images, ref_sketches)
    mel = _mel_tensor(mels)
    out = np.empty((n_out, *track.crops.shape[1:]), np.uint8)
    for i in range(0, n_out, batch):
        ts = np.arange(i, min(i + batch, n_out))
        window = np.clip(ts[:, None] + np.arange(-k, k + 1), 0, n_out - 1)
        b = len(ts)
        faces = model(_to_tensor(track.crops[idx[ts]], bgr).to(device), _to_tensor(sketches[window], bgr).to(device),
                      ref_images.expand(b, -1, -1, -1, -1), ref_sketches.expand(b, -1, -1, -1, -1), mel[ts].to(device),
                      [(h1.expand(b, -1, -1, -1), h2.expand(b, -1, -1, -1)) for h1, h2 in encoded])["face"]
        img = (faces.clamp(0, 1) * 255 + 0.5).byte().movedim(1, -1).cpu().numpy()
        out[ts] = img[..., ::-1] if bgr else img
        if progress:
            progress(int(ts[-1]) + 1, n_out)
    return out, {"references": n_ref, "reference_frames": refs.tolist(), "sketches": sketches}


# the paste-back mask's outline: the whole face (lower oval and brow tops, as the paper's Fig. 3),
# or only the lower face (the oval from temple to temple and the nose base)
MASK_POINTS = {"face": np.array(fm.OVAL + fm.RIGHT_BROW[0] + fm.LEFT_BROW[0]), "lower": np.array(fm.OVAL + fm.NOSE_BASE)}


def face_mask(points_px: np.ndarray, frame_hw: tuple[int, int], blur: int = 21, sigma: float = 11) -> np.ndarray:
    """float32 (H, W) in [0, 1]: the filled convex hull of `points_px` (N, 2), Gaussian-blurred."""
    import cv2

    mask = np.zeros(frame_hw, np.uint8)
    hull = cv2.convexHull(np.round(points_px).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 255)
    return cv2.GaussianBlur(mask, (blur, blur), sigma).astype(np.float32) / 255.0


def paste_faces(frames: np.ndarray, track: FaceTrack, faces: np.ndarray, landmarks: np.ndarray,
                content: np.ndarray, region: str = "face") -> tuple[np.ndarray, np.ndarray]:
    """Full frames (T_out, H, W, 3) with the generated faces pasted into their boxes through a
    blurred mask of the face (`region` "face") or of the lower face only ("lower"), and the
    masks (T_out, H, W)."""
    import cv2

    idx = template_indices(len(track), len(faces))
    out = np.empty((len(faces), *frames.shape[1:]), np.uint8)
    masks = np.empty((len(faces), *frames.shape[1:3]), np.float32)
    for t, j in enumerate(idx):
        box = track.boxes[j]
        original = frames[j]
        pasted = original.copy()
        pasted[box.y1:box.y2, box.x1:box.x2] = cv2.resize(faces[t], (box.width, box.height))
        new_pts = fm.from_box(content[t].T, box)
        pts = np.concatenate([landmarks[j, MASK_POINTS[region], :2], new_pts])
        masks[t] = face_mask(pts, track.frame_hw)
        a = masks[t][..., None]
        out[t] = np.clip(pasted * a + original * (1 - a) + 0.5, 0, 255).astype(np.uint8)
    return out, masks


def content_landmarks_px(track: FaceTrack, content: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The template frames' landmarks (T_out, 478, C) with the jaw and lip points moved to `content`."""
    idx = template_indices(len(track), len(content))
    out = np.array(landmarks[idx], np.float32, copy=True)
    for t, j in enumerate(idx):
        out[t, fm.CONTENT_IDX, :2] = fm.from_box(content[t].T, track.boxes[j])
    return out
