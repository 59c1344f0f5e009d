"""MediaPipe face-mesh landmarks in pixels, gap filling, temporal smoothing and drawing.

Detection uses `mediapipe.solutions.face_mesh` (mediapipe 0.10.21, model bundled in the wheel,
nothing downloaded) with `refine_landmarks=True`: 468 mesh points + 10 iris points = 478.
MediaPipe returns x, y normalised by the image width/height from the image's left/top edge and
z (depth, smaller = nearer) in roughly the same unit as x. We convert to the pixel convention of
nodes/types.py (origin at the top-left pixel's centre): x·W − ½, y·H − ½, and z·W so that z is
scaled like x.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal

import numpy as np

N_POINTS = 478


class FaceMeshDetector:
    """One MediaPipe FaceMesh graph; `tracking=True` reuses the previous frame's face region."""

    def __init__(self, tracking: bool = True, min_detection_confidence: float = 0.5,
                 min_tracking_confidence: float = 0.5) -> None:
        from mediapipe.python.solutions import face_mesh

        self._mesh = face_mesh.FaceMesh(
            static_image_mode=not tracking, max_num_faces=1, refine_landmarks=True,
            min_detection_confidence=min_detection_confidence, min_tracking_confidence=min_tracking_confidence)

    def __enter__(self) -> FaceMeshDetector:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._mesh.close()

    def detect(self, rgb: np.ndarray) -> np.ndarray | None:
        """(478, 3) float32 pixel landmarks of the most confident face in a uint8 RGB image, or None."""
        h, w = rgb.shape[:2]
        result = self._mesh.process(np.ascontiguousarray(rgb))
        if not result.multi_face_landmarks:
            return None
        pts = np.array([(p.x, p.y, p.z) for p in result.multi_face_landmarks[0].landmark], dtype=np.float32)
        return pts * np.array([w, h, w], np.float32) - np.array([0.5, 0.5, 0.0], np.float32)


def detect_landmarks(frames: np.ndarray, *, tracking: bool = True, min_confidence: float = 0.5,
                     progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Landmarks (T, 478, 3) float32 (NaN where no face) and a found mask (T,) for uint8 RGB frames
    (an array, or a lazy graphcore.stream.Chunks view: read a stored chunk at a time)."""
    t = len(frames)
    out = np.full((t, N_POINTS, 3), np.nan, np.float32)
    found = np.zeros(t, bool)
    step = max(1, t // 100)
    blocks = frames.chunks() if hasattr(frames, "chunks") else [frames]
    with FaceMeshDetector(tracking, min_confidence, min_confidence) as det:
        for i, frame in enumerate(f for block in blocks for f in block):
            pts = det.detect(frame)
            if pts is not None:
                out[i], found[i] = pts, True
            if progress is not None and ((i + 1) % step == 0 or i + 1 == t):
                progress(i + 1, t)
    return out, found


def interpolate_missing(landmarks: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Fill frames without a face linearly between the nearest detected frames before and after;
    frames before the first / after the last detection copy that detection."""
    found = np.asarray(found, bool)
    if not found.any():
        raise ValueError("no face was detected in any frame")
    t = np.arange(len(found))
    prev = np.maximum.accumulate(np.where(found, t, -1))
    nxt = np.minimum.accumulate(np.where(found, t, len(found))[::-1])[::-1]
    prev = np.where(prev < 0, nxt, prev)
    nxt = np.where(nxt >= len(found), prev, nxt)
    weight = np.where(nxt > prev, (t - prev) / np.maximum(nxt - prev, 1), 0.0)[:, None, None]
    return ((1 - weight) * landmarks[prev] + weight * landmarks[nxt]).astype(np.float32)


def smooth_savgol(landmarks: np.ndarray, window: int = 5, order: int = 2) -> np.ndarray:
    """Savitzky–Golay filter along time (odd `window` frames, polynomial `order`); keeps short clips."""
    from scipy.signal import savgol_filter

    t = len(landmarks)
    window = min(window | 1, t if t % 2 else t - 1)
    if window <= order:
        return landmarks.copy()
    return savgol_filter(landmarks, window, order, axis=0, mode="interp").astype(np.float32)


def smooth_one_euro(landmarks: np.ndarray, fps: float = 25.0, min_cutoff: float = 1.0, beta: float = 0.1,
                    d_cutoff: float = 1.0) -> np.ndarray:
    """One-Euro filter (Casiez et al. 2012) per coordinate: a low-pass whose cutoff rises with speed,
    so slow jitter is removed while fast motion lags little. Cutoffs in Hz, speeds in pixels/s."""
    def alpha(cutoff):
        tau = 1.0 / (2 * np.pi * cutoff)
        return 1.0 / (1.0 + tau * fps)

    out = np.empty_like(landmarks, dtype=np.float32)
    x_prev = landmarks[0].astype(np.float64)
    dx_prev = np.zeros_like(x_prev)
    out[0] = x_prev
    a_d = alpha(d_cutoff)
    for i in range(1, len(landmarks)):
        x = landmarks[i].astype(np.float64)
        dx = a_d * (x - x_prev) * fps + (1 - a_d) * dx_prev
        a = alpha(min_cutoff + beta * np.abs(dx))
        x_prev = a * x + (1 - a) * x_prev
        dx_prev = dx
        out[i] = x_prev
    return out


def mesh_contours() -> list[tuple[int, int]]:
    """Edges of MediaPipe's face contours (lips, eyes, brows, oval) and irises."""
    from mediapipe.python.solutions import face_mesh_connections as c

    return sorted(c.FACEMESH_CONTOURS | c.FACEMESH_IRISES)


def _disc(radius: int) -> tuple[np.ndarray, np.ndarray]:
    dy, dx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    keep = dx**2 + dy**2 <= radius**2 + radius  # a rounder small disc
    return dy[keep], dx[keep]


def draw_landmarks(frames: np.ndarray, landmarks: np.ndarray, *, radius: int = 1,
                   color: Iterable[int] = (0, 255, 0), edges: list[tuple[int, int]] | None = None,
                   line_color: Iterable[int] = (255, 255, 255)) -> np.ndarray:
    """A copy of frames (T, H, W, 3) with landmark dots (and optional edges as anti-aliased lines).

    `frames` may hold one frame for all landmark frames. NaN points are skipped.
    """
    import cv2

    t = len(landmarks)
    if len(frames) not in (1, t):
        raise ValueError(f"{len(frames)} frames but {t} landmark frames")
    out = np.repeat(frames, t, axis=0) if len(frames) == 1 and t > 1 else frames.copy()
    h, w = out.shape[1:3]
    xy = landmarks[..., :2]
    if edges:
        lc = tuple(int(c) for c in line_color)
        for i in range(t):
            for a, b in edges:
                pa, pb = xy[i, a], xy[i, b]
                if np.isfinite(pa).all() and np.isfinite(pb).all():
                    # cv2 draws with 4 fractional bits: coordinates in 1/16 pixels
                    cv2.line(out[i], tuple(np.round(pa * 16).astype(int)), tuple(np.round(pb * 16).astype(int)),
                             lc, 1, cv2.LINE_AA, shift=4)
    dy, dx = _disc(max(0, int(radius)))
    ok = np.isfinite(xy).all(axis=-1)
    ti, pi = np.nonzero(ok)
    px = np.round(xy[ti, pi, 0]).astype(np.int64)[:, None] + dx[None]
    py = np.round(xy[ti, pi, 1]).astype(np.int64)[:, None] + dy[None]
    tt = np.broadcast_to(ti[:, None], px.shape)
    inside = (px >= 0) & (px < w) & (py >= 0) & (py < h)
    out[tt[inside], py[inside], px[inside]] = np.asarray(tuple(color), np.uint8)
    return out


MissingPolicy = Literal["error", "interpolate"]
