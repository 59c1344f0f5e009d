"""Port types of the talking-face library, built from the engine's generic factories.

Conventions shared by every node:
- images and frames are uint8 RGB, frames shaped (T, H, W, 3), time first;
- coordinates are pixels of the frames they belong to, x right, y down, origin at the
  top-left pixel's centre (OpenCV's convention);
- flow fields are *backward* flows in pixels: output(x) = input(x + flow(x)), shaped (T, H, W, 2)
  as (dx, dy) — the convention `WarpImage` and `grid_sample` use;
- masks are float32 in [0, 1], shaped (T, H, W);
- the video frame rate is 25 fps unless a node says otherwise; audio is float32 mono in [-1, 1].
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from graphcore.types import ArrayType, RecordType, TypeValidationError, register_type

ORIGIN = "talkgraph"


def _reg(t):
    return register_type(t, ORIGIN)


IMAGE = _reg(ArrayType("Image", dtype="uint8", shape=(None, None, 3), color="#4a90d9",
                       doc="RGB image, uint8 (H, W, 3)."))
FRAMES = _reg(ArrayType("Frames", dtype="uint8", shape=(None, None, None, 3), color="#2f6fb5",
                        doc="RGB video frames, uint8 (T, H, W, 3), chunked along time."))
MASK = _reg(ArrayType("Mask", dtype="float32", ndim=3, value_range=(0.0, 1.0), color="#909090",
                      doc="Per-frame soft mask, float32 (T, H, W) in [0, 1]."))
FLOW = _reg(ArrayType("FlowField", dtype="float32", shape=(None, None, None, 2), color="#c0509a",
                      doc="Backward flow in pixels, float32 (T, H, W, 2) as (dx, dy): out(x) = in(x + flow(x))."))
LANDMARKS = _reg(ArrayType("Landmarks", dtype="float32", ndim=3, color="#e07b39",
                           doc="Per-frame 2-D/3-D landmarks in pixels, float32 (T, N, 2|3); MediaPipe mesh: N = 478."))
POSE = _reg(ArrayType("HeadPose", dtype="float32", shape=(None, 6), color="#b0a030",
                      doc="Per-frame head pose, float32 (T, 6): rotation (pitch, yaw, roll in radians), translation (tx, ty, tz)."))


@dataclasses.dataclass
class AudioClip:
    """Mono audio: float32 samples in [-1, 1] and their sample rate."""

    samples: np.ndarray
    sample_rate: int

    @property
    def duration(self) -> float:
        return len(self.samples) / float(self.sample_rate)


def _check_audio(a: AudioClip) -> None:
    if not isinstance(a.samples, np.ndarray) or a.samples.ndim != 1:
        raise TypeValidationError("audio samples must be a 1-D ndarray (mono)")
    if a.samples.dtype != np.float32:
        raise TypeValidationError(f"audio samples must be float32, got {a.samples.dtype}")
    if int(a.sample_rate) <= 0:
        raise TypeValidationError(f"sample rate must be positive, got {a.sample_rate}")


AUDIO = _reg(RecordType("Audio", AudioClip, check=_check_audio, color="#3aa876"))


@dataclasses.dataclass
class FeatureSeq:
    """Audio features aligned to video frames: `data[t]` belongs to video frame t."""

    data: np.ndarray  # float32 (T, ...) — shape depends on the variant
    fps: float
    variant: str


def _check_features(f: FeatureSeq) -> None:
    if not isinstance(f.data, np.ndarray) or f.data.ndim < 2 or f.data.dtype != np.float32:
        raise TypeValidationError("audio features must be a float32 ndarray shaped (T, ...)")
    if not np.isfinite(f.data).all():
        raise TypeValidationError("audio features contain NaN or infinite values")


AUDIO_FEATURES = _reg(RecordType("AudioFeatures", FeatureSeq, check=_check_features, color="#2d8a5e"))


@dataclasses.dataclass
class MorphCoeffs:
    """Coefficients of the project's 3DMM (see nodes/face): one identity, per-frame expression and pose.

    shape:      float32 (60,)       identity coefficients, fixed per video
    expression: float32 (T, 33)     28 mouth + 5 eyebrow coefficients
    pose:       float32 (T, 6)      pitch, yaw, roll (radians), tx, ty (pixels), log-scale
    error:      float32 (T,)        mean reprojection error per frame in pixels (0 when not fitted)
    image_size: (H, W) of the frames the pose refers to
    """

    shape: np.ndarray
    expression: np.ndarray
    pose: np.ndarray
    error: np.ndarray
    image_size: tuple


def _check_coeffs(c: MorphCoeffs) -> None:
    t = c.expression.shape[0]
    if c.expression.ndim != 2 or c.pose.shape != (t, 6) or c.error.shape != (t,):
        raise TypeValidationError(
            f"inconsistent coefficient shapes: expression {c.expression.shape}, pose {c.pose.shape}, error {c.error.shape}"
        )


MORPH_COEFFS = _reg(RecordType("MorphCoeffs", MorphCoeffs, check=_check_coeffs, color="#d4a017"))


@dataclasses.dataclass
class Keypoints:
    """Unsupervised keypoints (FOMM / Audio2Head) in [-1, 1] coordinates with local Jacobians."""

    value: np.ndarray  # float32 (T, K, 2)
    jacobian: np.ndarray  # float32 (T, K, 2, 2)


KEYPOINTS = _reg(RecordType("Keypoints", Keypoints, color="#8a5cd0"))


@dataclasses.dataclass
class CropTransform:
    """A fixed similarity crop per video: crop = resize(frame[y0:y0+side, x0:x0+side], size)."""

    x0: float
    y0: float
    side: float
    size: int
    frame_size: tuple  # (H, W) of the source frames


CROP = _reg(RecordType("CropTransform", CropTransform, color="#7a7a30"))


@dataclasses.dataclass
class PhonemeTrack:
    """Phonemes with their times in seconds: `labels[i]` sounds from `start[i]` to `end[i]`.

    `alphabet` names the label set: "espeak" (eSpeak mnemonics, from SynthesizeSpeech) or
    "arpabet" (the CMU / PocketSphinx set, from RecognizePhonemes). `confidence` (P,) in
    [0, 1] is 1 for synthesiser timings and forced alignments.
    """

    labels: list
    start: np.ndarray  # float32 (P,)
    end: np.ndarray  # float32 (P,)
    confidence: np.ndarray | None = None  # float32 (P,); None means all 1
    alphabet: str = "espeak"

    def __post_init__(self) -> None:
        if self.confidence is None:
            self.confidence = np.ones(len(self.labels), np.float32)

    def __len__(self) -> int:
        return len(self.labels)

    def items(self) -> list[tuple[str, float, float]]:
        return [(p, float(s), float(e)) for p, s, e in zip(self.labels, self.start, self.end)]

    @classmethod
    def from_items(cls, items: Sequence[tuple], alphabet: str = "espeak") -> PhonemeTrack:
        """From [(label, start, end)] or [(label, start, end, confidence)]."""
        return cls([str(it[0]) for it in items],
                   np.array([it[1] for it in items], np.float32).reshape(-1),
                   np.array([it[2] for it in items], np.float32).reshape(-1),
                   np.array([it[3] if len(it) > 3 else 1.0 for it in items], np.float32).reshape(-1),
                   alphabet)


def _check_track(t: PhonemeTrack) -> None:
    n = len(t.labels)
    conf = np.asarray(t.confidence)
    if t.start.shape != (n,) or t.end.shape != (n,) or conf.shape != (n,):
        raise TypeValidationError(f"phoneme track: {n} labels but start {t.start.shape}, end {t.end.shape}, "
                                  f"confidence {conf.shape}")
    if n and (np.any(t.end < t.start) or np.any(np.diff(t.start) < 0)):
        raise TypeValidationError("phoneme track times must be ordered with end >= start")
    if n and not (np.all(conf >= 0) and np.all(conf <= 1)):
        raise TypeValidationError("phoneme confidences must lie in [0, 1]")
    if t.alphabet not in ("espeak", "arpabet"):
        raise TypeValidationError(f"phoneme alphabet must be 'espeak' or 'arpabet', got {t.alphabet!r}")


PHONEME_TRACK = _reg(RecordType("PhonemeTrack", PhonemeTrack, check=_check_track, color="#5fb0a0",
                                doc="Phonemes with start/end times (s) and confidence; eSpeak or ARPAbet labels."))
