"""Figures shared by the families: flows in pseudo-colour, a grid of labelled per-frame
intermediates (HDTF's Fig. 9, Audio2Head's frame comparisons), PNG writing."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def flow_to_color(flow: np.ndarray, max_magnitude: float | None = None) -> np.ndarray:
    """Backward flow (H, W, 2) -> uint8 RGB: hue = direction, saturation = magnitude (white = still)."""
    import cv2

    dx, dy = flow[..., 0].astype(np.float32), flow[..., 1].astype(np.float32)
    mag, ang = cv2.cartToPolar(dx, dy, angleInDegrees=True)
    top = max_magnitude if max_magnitude else max(float(mag.max()), 1e-6)
    hsv = np.empty((*flow.shape[:2], 3), np.uint8)
    hsv[..., 0] = (ang / 2).astype(np.uint8)  # OpenCV hue is 0..179
    hsv[..., 1] = np.clip(mag / top * 255, 0, 255).astype(np.uint8)
    hsv[..., 2] = 255
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def _tile(img: np.ndarray, size: int) -> np.ndarray:
    import cv2

    if img.ndim == 2:  # a mask in [0, 1]
        img = np.repeat((np.clip(img, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=2)
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA if img.shape[0] > size else cv2.INTER_NEAREST)


def _label(text: str, size: int, height: int = 22) -> np.ndarray:
    import cv2

    bar = np.full((height, size, 3), 255, np.uint8)
    cv2.putText(bar, text, (4, height - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return bar


def intermediates_grid(columns: dict[str, np.ndarray], frame_ids: Sequence[int], tile: int = 160) -> np.ndarray:
    """Fig. 9: one row per frame, one labelled column per intermediate (arrays indexed by frame;
    flows (T, H, W, 2) are drawn in pseudo-colour with one magnitude scale per column)."""
    cols = []
    for name, arr in columns.items():
        cells = [_label(name, tile)]
        scale = None
        if arr.ndim == 4 and arr.shape[-1] == 2:
            scale = max(float(np.abs(arr[list(frame_ids)]).max()), 1e-6)
        for t in frame_ids:
            cells.append(_tile(flow_to_color(arr[t], scale) if scale is not None else arr[t], tile))
        cols.append(np.concatenate(cells, axis=0))
    gap = np.full((cols[0].shape[0], 4, 3), 255, np.uint8)
    return np.concatenate([c for col in cols for c in (col, gap)][:-1], axis=1)


def save_png(path, image: np.ndarray) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
