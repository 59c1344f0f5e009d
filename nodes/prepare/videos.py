"""Real-data preparation: talking-head videos -> the dataset format of docs/dataset-format.md.

Per video, with flat memory (frames are streamed in chunks, never held whole):
1. locate the face: MediaPipe landmarks on a downscaled decode (5 frames a second) -> the HDTF
   crop window, one fixed square per video (`nodes.face.crop.crop_window`, as CropAlign);
2. decode again at full size, retime to the target frame rate (nearest source frame), crop and
   resize to `size`, detect landmarks on the crops (video tracking) and write frames + landmarks;
3. fit the 3DMM to the landmarks (`nodes.face.fitting.fit_coefficients`, as the Fit3DMM node);
4. read the sound (16 kHz) and compute the requested audio features (`trainers.data.audio_features`).
"""
from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from graphcore.node import NodeError
from trainers.data.dataset import DatasetWriter

LOCATE_SIDE = 480  # longer side of the decode used to place the crop window
LOCATE_FPS = 5.0  # frames per second looked at to place it


@dataclasses.dataclass
class PrepareSettings:
    size: int = 512
    fps: float = 25.0
    crop_scale: float = 2.2
    features: Sequence[str] = ("mfcc_pitch",)
    chunk: int = 16  # frames decoded at once in the full-size pass


def retime_indices(n_source: int, source_fps: float, fps: float) -> np.ndarray:
    """Source frame shown at each output frame time k/fps (nearest earlier-or-equal rounding)."""
    duration = n_source / source_fps
    n_out = max(1, int(np.floor(duration * fps + 0.5)))
    idx = np.floor(np.arange(n_out) * source_fps / fps + 1e-6).astype(np.int64)
    return np.minimum(idx, n_source - 1)


def _retimed(chunks: Iterator[np.ndarray], indices: np.ndarray) -> Iterator[np.ndarray]:
    """Re-chunk a stream of source-frame chunks into the output frames `indices` select."""
    pos, k = 0, 0
    for chunk in chunks:
        end = pos + len(chunk)
        stop = k
        while stop < len(indices) and indices[stop] < end:
            stop += 1
        if stop > k:
            yield chunk[indices[k:stop] - pos]
            k = stop
        pos = end
        if k >= len(indices):
            break


def locate_face(path: Path) -> tuple[np.ndarray, int, tuple[int, int], float, bool]:
    """Landmarks of a downscaled decode in full-size pixels, the source frame count, (H, W), fps
    and whether the file has sound."""
    from nodes.face.landmarks import detect_landmarks
    from nodes.io import media

    info = media.probe_video(path)
    scale = min(1.0, LOCATE_SIDE / max(info.width, info.height))
    size = (max(2, round(info.width * scale)), max(2, round(info.height * scale))) if scale < 1 else None
    step = max(1, int(round(info.fps / LOCATE_FPS)))  # the window only needs the face's extent
    found_pts, n = [], 0
    for chunk in media.iter_video_frames(path, chunk=64, size=size):
        pick = chunk[(-n) % step::step]  # global frame indices that are multiples of `step`
        n += len(chunk)
        if len(pick):
            lms, found = detect_landmarks(pick, tracking=True)
            found_pts.append(lms[found])
    pts = np.concatenate(found_pts) if found_pts else np.zeros((0, 478, 3), np.float32)
    if len(pts) == 0:
        raise NodeError(f"{path}: no face found in any of its {n} frames")
    if size is not None:
        sx, sy = info.width / size[0], info.height / size[1]
        pts = pts.copy()
        pts[..., 0] = (pts[..., 0] + 0.5) * sx - 0.5
        pts[..., 1] = (pts[..., 1] + 0.5) * sy - 0.5
    return pts, n, (info.height, info.width), info.fps, info.has_audio


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def prepare_video(path: Path, writer: DatasetWriter, name: str, split: str, model, settings: PrepareSettings,
                  log: Callable[[str], None] = lambda m: None) -> int:
    """Write one video as clip `name`; returns its frame count. Errors name the file."""
    from nodes.face.crop import crop_frames, crop_window
    from nodes.face.fitting import fit_coefficients
    from nodes.face.landmarks import FaceMeshDetector, interpolate_missing
    from nodes.io import media
    from trainers.data.audio_features import audio_features

    s = settings
    located, n_source, frame_hw, source_fps, has_audio = locate_face(path)
    tf = crop_window(located, frame_hw, size=s.size, scale=s.crop_scale)
    indices = retime_indices(n_source, source_fps, s.fps)
    n = len(indices)
    clip = writer.begin_clip(name, n, split=split, attrs={
        "source_file": path.name, "source_sha256": file_sha256(path), "source_fps": source_fps,
        "crop": dataclasses.asdict(tf),
    })
    landmarks = np.full((n, 478, 3), np.nan, np.float32)
    found = np.zeros(n, bool)
    t = 0
    with FaceMeshDetector(tracking=True) as detector:
        for frames in _retimed(media.iter_video_frames(path, chunk=s.chunk), indices):
            crops = crop_frames(frames, tf)
            clip.write_frames(t, crops)
            for i, crop in enumerate(crops):
                pts = detector.detect(crop)
                if pts is not None:
                    landmarks[t + i], found[t + i] = pts, True
            t += len(crops)
    if t != n:
        raise NodeError(f"{path}: decoded {t} frames at {s.fps:g} fps, expected {n} (is the file truncated?)")
    if not found.any():
        raise NodeError(f"{path}: no face found in the cropped frames")
    if not found.all():
        missing = np.flatnonzero(~found)
        log(f"{path.name}: no face in {len(missing)} of {n} cropped frames (first: {missing[0]}); interpolated")
        landmarks = interpolate_missing(landmarks, found)
    clip.write_landmarks(0, landmarks[..., :2])

    fit = fit_coefficients(model, landmarks)
    clip.write_coeffs(fit.shape, fit.expression, fit.pose, fit.error, image_size=(s.size, s.size))

    if has_audio:
        samples = media.read_audio(path, writer.sample_rate).samples
    else:
        log(f"{path.name} has no sound: its audio is silence")
        samples = np.zeros(n * writer.samples_per_frame, np.float32)
    clip.write_audio(samples)
    for variant in s.features:
        clip.write_features(variant, audio_features(samples, writer.sample_rate, variant, fps=s.fps, num_frames=n), s.fps)
    clip.group.attrs["fit_error_px"] = float(np.mean(fit.error))
    return n
