"""Driving coefficients for a portrait: phonemes + audio + the portrait's fitted 3DMM -> T frames.

The portrait's own fitted expression is the rest pose; the viseme curves (mouth), the
pitch-driven brows and the head-motion deltas are added to it, so a smiling portrait keeps its
smile between words. Expression coefficients stay in the model's fitted range [0, 1.5].
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from .motion import HeadMotion, blink_curve, brow_curves, head_motion, loudness_curve, pitch_track
from .visemes import MOUTH_COMPONENTS, N_MOUTH, Coarticulation, mouth_curves

EXPRESSION_MAX = 1.5  # the face model's coefficient box (nodes/face/model.py)
_I = {n: i for i, n in enumerate(MOUTH_COMPONENTS)}
_PARTING = [_I[n] for n in ("lower_down_left", "lower_down_right", "upper_up_left", "upper_up_right")]
_SPREADING = [_I[n] for n in ("smile_left", "smile_right", "stretch_left", "stretch_right", "dimple_left", "dimple_right")]
FACE_HEIGHT_MM = 150.0  # brow-to-chin height used to turn relative translations into pixels


@dataclasses.dataclass(frozen=True)
class AnimationSettings:
    fps: float = 25.0
    seed: int = 0
    mouth_amplitude: float = 1.0  # scales every viseme target
    brow_gain: float = 0.5  # brow raise at the strongest pitch accents
    blink_rate: float = 17.0  # blinks per minute (0 = none)
    head_amplitude: float = 1.0  # scales the head-motion standard deviations (0 = still)
    # seconds by which the mouth leads the sound: in real speech the lips move before the sound
    # they shape (measured here on a real talking clip: a model trained without a lead lagged the
    # speaker's lips by 1-2 frames; docs/nodes/synth.md). 0 = the phoneme times as they are.
    mouth_lead: float = 0.0
    coarticulation: Coarticulation = Coarticulation()
    head: HeadMotion = HeadMotion()


@dataclasses.dataclass
class Animation:
    expression: np.ndarray  # float32 (T, 33)
    pose: np.ndarray  # float32 (T, 6)
    blink: np.ndarray  # float32 (T,) eyelid closure in [0, 1]
    unknown_phonemes: set


def combine_mouth(rest: np.ndarray, curves: np.ndarray, amplitude: float = 1.0) -> np.ndarray:
    """Mouth coefficients (T, 28): the rest expression plus the viseme curves.

    Most components add (scaled by `amplitude`). Lip closure does not: the model's `mouth_close`
    cancels `jaw_open` on the lower lip (as ARKit's mouthClose), so it is set to the closure
    fraction c (the `mouth_close` curve, 1 on bilabials) times the total jaw opening, and the
    rest face's own lip parting (lower_down / upper_up) is scaled by 1 - c: /p b m/ shut the
    lips whatever the portrait's mouth was doing. Likewise rounding (pucker, funnel) relaxes the
    rest face's antagonists (smile, stretch, dimple): a smiling portrait still rounds its /u/.
    """
    closure = np.clip(curves[:, _I["mouth_close"]], 0.0, 1.0)
    rounding = np.clip(1.2 * (curves[:, _I["lip_pucker"]] + 0.5 * curves[:, _I["lip_funnel"]]) * amplitude, 0.0, 1.0)
    out = rest[None, :] + amplitude * curves
    out[:, _PARTING] = rest[None, _PARTING] * (1.0 - closure[:, None]) + amplitude * curves[:, _PARTING]
    out[:, _SPREADING] = rest[None, _SPREADING] * (1.0 - rounding[:, None]) + amplitude * curves[:, _SPREADING]
    out[:, _I["mouth_close"]] = np.maximum(rest[_I["mouth_close"]], closure * out[:, _I["jaw_open"]])
    return np.clip(out, 0.0, EXPRESSION_MAX)


def animate(track: Sequence[tuple[str, float, float]], samples: np.ndarray, sample_rate: int, n_frames: int,
            ref_expression: np.ndarray, ref_pose: np.ndarray, settings: AnimationSettings = AnimationSettings(),
            ) -> Animation:
    """Per-frame expression, pose and blink curves for `n_frames` video frames."""
    s = settings
    ref_expression = np.asarray(ref_expression, np.float32).reshape(-1)
    ref_pose = np.asarray(ref_pose, np.float32).reshape(6)
    if s.mouth_lead:
        track = [(p, a - s.mouth_lead, b - s.mouth_lead) for p, a, b in track]
    mouth, unknown = mouth_curves(track, n_frames, s.fps, 1.0, s.coarticulation)
    f0, _ = pitch_track(samples, sample_rate, n_frames, s.fps)
    brows = brow_curves(f0, s.seed, s.brow_gain)
    expression = np.repeat(ref_expression[None], n_frames, axis=0)
    expression[:, :N_MOUTH] = combine_mouth(ref_expression[:N_MOUTH], mouth, s.mouth_amplitude)
    expression[:, N_MOUTH:N_MOUTH + brows.shape[1]] += brows
    expression = np.clip(expression, 0.0, EXPRESSION_MAX)

    face_px = float(np.exp(ref_pose[5])) * FACE_HEIGHT_MM
    loud = loudness_curve(samples, sample_rate, n_frames, s.fps)
    deltas = head_motion(n_frames, s.fps, s.seed, face_px, loud, s.head, s.head_amplitude)
    pose = ref_pose[None, :] + deltas
    blink = blink_curve(n_frames, s.fps, s.seed, s.blink_rate)
    return Animation(expression.astype(np.float32), pose.astype(np.float32), blink, unknown)
