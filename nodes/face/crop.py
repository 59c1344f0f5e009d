"""The HDTF face crop: one fixed square window per video, resized to a square of `size` pixels.

HDTF §3 (Dataset): "a landmark detector is first leveraged to crop the face region. The crop
window is fixed during each video. Then, each cropped video is resized into 512 × 512." The
paper gives no margins; we take the box of the landmarks over the whole clip (their union, or
the per-side median over frames, which ignores a few bad detections), centre a square of
`scale` × its longer side on it, move it down by `offset_y` × side (talking-head crops show
more neck and shoulders than hair), round it to whole pixels and, when it fits, slide it inside
the frame. A window reaching outside the frame repeats the frame's edge pixels.

Mapping (pixel centres, as cv2.resize): with s = size / side, crop pixel u and frame pixel x
relate by u = (x − x0 + ½)·s − ½ (same for y); landmark depth z scales by s.
"""
from __future__ import annotations

from typing import Literal

import numpy as np

from nodes.types import CropTransform


def face_box(landmarks: np.ndarray, how: Literal["union", "median"] = "union") -> tuple[float, float, float, float]:
    """(x_min, y_min, x_max, y_max) of landmarks (T, N, 2|3) over a clip; NaN points are ignored."""
    xy = np.asarray(landmarks, dtype=np.float64)[..., :2]
    ok = np.isfinite(xy).all(axis=-1).any(axis=-1)
    if not ok.any():
        raise ValueError("no finite landmarks to place the crop window")
    xy = xy[ok]
    lo, hi = np.nanmin(xy, axis=1), np.nanmax(xy, axis=1)  # per frame (T, 2)
    if how == "union":
        lo, hi = lo.min(axis=0), hi.max(axis=0)
    else:
        lo, hi = np.median(lo, axis=0), np.median(hi, axis=0)
    return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])


def crop_window(landmarks: np.ndarray, frame_size: tuple[int, int], *, size: int = 512, scale: float = 2.2,
                offset_y: float = 0.1, box: Literal["union", "median"] = "union",
                keep_inside: bool = True, centre: Literal["face", "lower_half"] = "face") -> CropTransform:
    """The fixed square window for a clip (whole pixels) as a CropTransform. `centre`: the
    window's centre before `offset_y` is the face box's, or that of its lower half (MetaTalk §3:
    frames "centered around the lower half of the face"), i.e. 3/4 of the way down the box."""
    h, w = int(frame_size[0]), int(frame_size[1])
    x_min, y_min, x_max, y_max = face_box(landmarks, box)
    side = max(2, int(round(scale * max(x_max - x_min, y_max - y_min))))
    cy = (y_min + y_max) / 2 if centre == "face" else y_min + 0.75 * (y_max - y_min)
    cx, cy = (x_min + x_max) / 2, cy + offset_y * side
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    if keep_inside:
        if side <= w:
            x0 = min(max(x0, 0), w - side)
        if side <= h:
            y0 = min(max(y0, 0), h - side)
    return CropTransform(x0=float(x0), y0=float(y0), side=float(side), size=int(size), frame_size=(h, w))


def adapted_size(side: float, sizes: tuple[int, ...] | list[int]) -> int:
    """MetaTalk §2.1's crop adaption: the output side for a window of `side` source pixels is
    the smallest of `sizes` (e.g. 512, 768, 1024) that does not shrink the face, else the largest."""
    if not sizes:
        raise ValueError("no crop sizes to choose from")
    ordered = sorted(int(s) for s in sizes)
    return next((s for s in ordered if s >= side), ordered[-1])


def _ints(tf: CropTransform) -> tuple[int, int, int]:
    return int(round(tf.x0)), int(round(tf.y0)), int(round(tf.side))


def _window(frame: np.ndarray, x0: int, y0: int, side: int) -> np.ndarray:
    """frame[y0:y0+side, x0:x0+side], with edge pixels repeated where the window leaves the frame."""
    import cv2

    h, w = frame.shape[:2]
    top, left = max(0, -y0), max(0, -x0)
    bottom, right = max(0, y0 + side - h), max(0, x0 + side - w)
    inner = frame[max(0, y0): min(h, y0 + side), max(0, x0): min(w, x0 + side)]
    if top or left or bottom or right:
        if inner.size == 0:
            raise ValueError(f"crop window x0={x0}, y0={y0}, side={side} lies outside the {w}x{h} frame")
        inner = cv2.copyMakeBorder(inner, top, bottom, left, right, cv2.BORDER_REPLICATE)
    return inner


def _resize(img: np.ndarray, out: int) -> np.ndarray:
    import cv2

    interp = cv2.INTER_AREA if out < img.shape[0] else cv2.INTER_CUBIC
    return cv2.resize(img, (out, out), interpolation=interp)


def crop_frames(frames: np.ndarray, tf: CropTransform) -> np.ndarray:
    """Frames (T, H, W, C) -> crops (T, size, size, C) through the transform's window."""
    x0, y0, side = _ints(tf)
    out = np.empty((len(frames), tf.size, tf.size, frames.shape[-1]), frames.dtype)
    for i, frame in enumerate(frames):
        out[i] = _resize(np.ascontiguousarray(_window(frame, x0, y0, side)), tf.size).reshape(out.shape[1:])
    return out


def to_crop(landmarks: np.ndarray, tf: CropTransform) -> np.ndarray:
    """Frame-pixel landmarks (..., 2|3) -> crop pixels."""
    s = tf.size / tf.side
    out = np.array(landmarks, dtype=np.float32, copy=True)
    out[..., 0] = (out[..., 0] - tf.x0 + 0.5) * s - 0.5
    out[..., 1] = (out[..., 1] - tf.y0 + 0.5) * s - 0.5
    if out.shape[-1] > 2:
        out[..., 2:] *= s
    return out


def from_crop(landmarks: np.ndarray, tf: CropTransform) -> np.ndarray:
    """Crop-pixel landmarks (..., 2|3) -> frame pixels (inverse of `to_crop`)."""
    s = tf.side / tf.size
    out = np.array(landmarks, dtype=np.float32, copy=True)
    out[..., 0] = (out[..., 0] + 0.5) * s - 0.5 + tf.x0
    out[..., 1] = (out[..., 1] + 0.5) * s - 0.5 + tf.y0
    if out.shape[-1] > 2:
        out[..., 2:] *= s
    return out


def border_ramp(size: int, feather: int) -> np.ndarray:
    """(size, size) float32 weight rising linearly from the crop's border to 1 at `feather` pixels in."""
    if feather <= 0:
        return np.ones((size, size), np.float32)
    d = np.minimum(np.arange(size), np.arange(size)[::-1]).astype(np.float32)
    r = np.clip((d + 0.5) / feather, 0.0, 1.0)
    return np.minimum(r[:, None], r[None, :])


def paste_back(crops: np.ndarray, tf: CropTransform, originals: np.ndarray, mask: np.ndarray | None = None,
               feather: int = 0) -> np.ndarray:
    """Put crops (T, size, size, 3) back into originals (T or 1, H, W, 3) through the window.

    `mask` (T or 1, size, size) in [0, 1] selects which crop pixels replace the frame (all when
    None); `feather` fades the crop's outer border over that many crop pixels.
    """
    import cv2

    t = len(crops)
    if crops.shape[1:3] != (tf.size, tf.size):
        raise ValueError(f"crops are {crops.shape[2]}x{crops.shape[1]} but the transform makes {tf.size}x{tf.size} crops")
    if tuple(originals.shape[1:3]) != tuple(tf.frame_size):
        raise ValueError(f"frames are {originals.shape[2]}x{originals.shape[1]} but the crop was taken "
                         f"from {tf.frame_size[1]}x{tf.frame_size[0]} frames")
    if len(originals) not in (1, t):
        raise ValueError(f"{len(originals)} original frames for {t} crops (give one, or one per crop)")
    if mask is not None and (mask.shape[1:] != (tf.size, tf.size) or len(mask) not in (1, t)):
        raise ValueError(f"mask {mask.shape} does not match {t} crops of {tf.size}x{tf.size}")
    x0, y0, side = _ints(tf)
    h, w = tf.frame_size
    fx0, fy0, fx1, fy1 = max(0, x0), max(0, y0), min(w, x0 + side), min(h, y0 + side)
    out = np.repeat(originals, t, axis=0) if len(originals) == 1 and t > 1 else originals.copy()
    if fx1 <= fx0 or fy1 <= fy0:
        return out
    inner = (slice(fy0 - y0, fy1 - y0), slice(fx0 - x0, fx1 - x0))
    ramp = border_ramp(tf.size, feather)
    for i in range(t):
        alpha = ramp if mask is None else ramp * mask[i if len(mask) > 1 else 0].astype(np.float32)
        patch = _resize(np.ascontiguousarray(crops[i]), side)[inner].astype(np.float32)
        a = cv2.resize(alpha, (side, side), interpolation=cv2.INTER_LINEAR)[inner][..., None]
        region = out[i, fy0:fy1, fx0:fx1].astype(np.float32)
        out[i, fy0:fy1, fx0:fx1] = np.clip(region + a * (patch - region) + 0.5, 0, 255).astype(out.dtype)
    return out
