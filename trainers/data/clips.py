"""Clips of a talking-face dataset held in memory, plus the sampling helpers trainers share.

A dataset written by the synthetic generator or the real-video preparation (the same layout,
see docs/dataset-format.md) is read through `trainers.data.dataset.open_dataset`; `ClipStore`
loads the fields a trainer needs once per clip (frames optionally downscaled on load), and
computes audio features from the clip's audio when the dataset does not store them, so
features always stay aligned with the frames (feature row t belongs to frame t).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


class ClipStore:
    """The clips of one split, loaded lazily and kept (small datasets fit in memory)."""

    def __init__(self, url: str, split: str | None = "train", *, fields: Sequence[str] = ("expression", "pose"),
                 feature: str | None = None, frame_size: int | None = None, min_frames: int = 1) -> None:
        from trainers.data.dataset import DatasetError, open_dataset

        self.dataset = open_dataset(url)
        self.url, self.split, self.fields, self.feature = str(url), split, tuple(fields), feature
        self.frame_size = frame_size
        ids = self.dataset.split(split) if split else list(range(len(self.dataset)))
        self.clip_ids = [i for i in ids if self.dataset.clip(i).n_frames >= min_frames]
        if not self.clip_ids:
            raise DatasetError(f"dataset {url} has no {split or ''} clips of at least {min_frames} frames")
        self.lengths = np.array([self.dataset.clip(i).n_frames for i in self.clip_ids])
        self._cache: dict[int, dict[str, Any]] = {}

    def __len__(self) -> int:
        return len(self.clip_ids)

    def describe(self) -> dict[str, Any]:
        a = self.dataset.attrs
        return {"url": self.url, "split": self.split, "clips": len(self), "frames": int(self.lengths.sum()),
                "source": a.get("source"), "frame_size": list(self.dataset.frame_size)}

    def get(self, k: int) -> dict[str, Any]:
        """All requested fields of the k-th clip of this split as numpy arrays."""
        if k not in self._cache:
            self._cache[k] = self._load(self.clip_ids[k])
        return self._cache[k]

    def _load(self, ci: int) -> dict[str, Any]:
        clip = self.dataset.clip(ci)
        out: dict[str, Any] = {"name": clip.name, "n_frames": clip.n_frames}
        scale = 1.0
        if "frames" in self.fields:
            frames = np.asarray(clip.frames[...])
            if self.frame_size and frames.shape[1] != self.frame_size:
                scale = self.frame_size / frames.shape[1]
                frames = resize_frames(frames, self.frame_size)
            out["frames"] = frames
        coeffs = clip.coeffs
        out["image_size"] = tuple(int(s * scale) for s in clip.image_size)
        for f in self.fields:
            if f in ("expression", "shape", "error"):
                out[f] = np.asarray(coeffs[f], np.float32)
            elif f == "pose":
                pose = np.asarray(coeffs["pose"], np.float32).copy()
                pose[:, 3:5] = rescale_pixels(pose[:, 3:5], scale)  # translations are pixels of the frames
                pose[:, 5] += np.log(scale)  # and so is the projection scale
                out[f] = pose
            elif f == "landmarks":
                out[f] = rescale_pixels(np.asarray(clip.landmarks[...], np.float32), scale)
            elif f == "audio":
                out[f] = clip.audio
        if self.feature:
            out["features"] = clip_features(clip, self.feature, self.dataset.fps)
        return out

    def frame(self, k: int, t: int) -> dict[str, Any]:
        """One frame of the k-th clip with its landmarks, read directly (not kept in memory). Frame 0
        of a dataset written without frames is the clip's still face (its identity's portrait)."""
        clip = self.dataset.clip(self.clip_ids[k])
        if t == 0 and not clip.has_frames:
            image, landmarks = clip.reference()
        else:
            image = np.asarray(clip.frames[t])
            landmarks = np.asarray(clip.landmarks[t], np.float32)
        if self.frame_size and image.shape[0] != self.frame_size:
            scale = self.frame_size / image.shape[0]
            image, landmarks = resize_frames(image[None], self.frame_size)[0], rescale_pixels(landmarks, scale)
        return {"image": image, "landmarks": landmarks}

    def sample_clips(self, rng: np.random.Generator, n: int, min_frames: int = 1) -> np.ndarray:
        """n clip indices drawn with probability proportional to their usable length."""
        w = np.maximum(self.lengths - min_frames + 1, 0).astype(np.float64)
        if w.sum() == 0:
            raise ValueError(f"no clip has {min_frames} frames")
        return rng.choice(len(self.clip_ids), size=n, p=w / w.sum())


def clip_features(clip, variant: str, fps: float) -> np.ndarray:
    """The clip's stored audio features, or ones computed from its audio (same frame alignment)."""
    if variant in clip.feature_names():
        return np.asarray(clip.features(variant)[...], np.float32)
    from trainers.data.audio_features import audio_features

    return audio_features(clip.audio, clip.dataset.sample_rate, variant, fps=fps, num_frames=clip.n_frames)


def rescale_pixels(xy: np.ndarray, scale: float) -> np.ndarray:
    """Pixel coordinates after resizing the frame by `scale` (origin at the first pixel's centre)."""
    return ((xy + 0.5) * scale - 0.5).astype(np.float32) if scale != 1.0 else xy


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    import cv2

    interp = cv2.INTER_AREA if size < frames.shape[1] else cv2.INTER_LINEAR
    return np.stack([cv2.resize(f, (size, size), interpolation=interp) for f in frames])


def sample_windows(store: ClipStore, rng: np.random.Generator, n: int, length: int) -> list[tuple[int, int]]:
    """n (clip index, first frame) pairs of windows of `length` frames, uniform over all windows."""
    ks = store.sample_clips(rng, n, length)
    return [(int(k), int(rng.integers(0, store.lengths[k] - length + 1))) for k in ks]


def random_crop_box(rng: np.random.Generator, height: int, width: int, crop: int,
                    scale: tuple[float, float] = (1.0, 1.0)) -> tuple[int, int, int]:
    """A square box (x0, y0, side) inside the frame; side = crop * s with s drawn from `scale`."""
    side = int(round(crop * rng.uniform(*scale)))
    side = max(1, min(side, height, width))
    return int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1)), side


def crop_resize(image: np.ndarray, box: tuple[int, int, int], size: int, *, is_flow: bool = False) -> np.ndarray:
    """Crop (H, W, C) to the box and resize to size x size. A backward pixel flow is also
    rescaled, since its vectors are measured in pixels of the frame it belongs to."""
    import cv2

    x0, y0, side = box
    patch = image[y0:y0 + side, x0:x0 + side]
    if side != size:
        patch = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_LINEAR)
        if is_flow:
            patch = patch * (size / side)
    return patch
