"""Rule-based lip sync: phonemes -> visemes -> the 3DMM's 28 mouth coefficients.

The explainable baseline and the fallback when no learned checkpoint fits (what Rhubarb Lip
Sync does for animators), built from the synthetic generator's pieces so that its mouth is the
same kind of mouth the learned nodes were trained to produce:

1. Phones (ARPAbet from RecognizePhonemes, or eSpeak from SynthesizeSpeech) are shifted
   `lead` seconds earlier: the lips move before the sound they shape (a real talker's lip gap
   leads the acoustic phone boundaries by about one video frame).
2. The viseme table with Cohen–Massaro co-articulation (`nodes.synth.visemes.mouth_curves`),
   each segment's dominance scaled by its confidence (floored at `min_confidence`) so an
   uncertain phone yields to its neighbours. Pauses of at least `rest_after` use the generator's
   closed rest viseme: lips together, jaw relaxed.
3. Energy: the opening components (jaw, lip parting) are scaled by the clip-normalised
   loudness of the frame — louder syllables open wider; `energy` = 0 turns this off.
4. Optionally (`quiet_rest`), wherever the audio stays quiet that long (the front-end's
   voice-activity gate) the mouth closes whatever the phones say. The recogniser already
   labels quiet rows silence, so this matters for given (aligned) tracks.
5. `nodes.synth.animate.combine_mouth` adds the curves to the portrait's own rest expression
   (a bilabial or a pause closes even a portrait with parted lips).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from nodes.synth.animate import combine_mouth
from nodes.synth.visemes import MOUTH_COMPONENTS, Coarticulation, mouth_curves

_I = {n: i for i, n in enumerate(MOUTH_COMPONENTS)}
OPENING = [_I[n] for n in ("jaw_open", "lower_down_left", "lower_down_right", "upper_up_left", "upper_up_right")]


@dataclasses.dataclass(frozen=True)
class RuleSettings:
    fps: float = 25.0
    amplitude: float = 1.0  # scales every viseme target
    lead: float = 0.02  # seconds the mouth runs ahead of the phone boundaries
    energy: float = 0.2  # 0: no loudness modulation; 1: opening fully proportional to loudness
    min_confidence: float = 1.0  # dominance floor for uncertain phones (1: confidence ignored)
    closed_rest: bool = True  # long pauses and silence close the lips (else: the portrait's own rest)
    rest_after: float = 0.25  # a pause (or quiet stretch) this long counts as rest
    coarticulation: Coarticulation = Coarticulation()


def frame_activity(samples: np.ndarray, sample_rate: int, n_frames: int, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """(loudness in [0, 1.5], voice activity in [0, 1]) per video frame, relative to the clip."""
    from trainers.data.phonetic import SAMPLE_RATE, frame_means, loudness_rows, resample_audio, rms_rows, speech_gate

    x16 = resample_audio(np.asarray(samples, np.float32), int(sample_rate), SAMPLE_RATE)
    loud, db, floor = loudness_rows(rms_rows(x16))
    rows = np.stack([loud, speech_gate(db, floor)], axis=1)
    out = frame_means(rows, n_frames, fps)
    return out[:, 0], out[:, 1]


def rule_mouth(items: Sequence[tuple], n_frames: int, settings: RuleSettings = RuleSettings(), *,
               alphabet: str = "arpabet", confidence: Sequence[float] | None = None,
               loudness: np.ndarray | None = None, activity: np.ndarray | None = None) -> tuple[np.ndarray, set[str]]:
    """Mouth curves (n_frames, 28) in activation units, and the phonemes the viseme table lacked.

    `items` [(phone, start s, end s, ...)]; `loudness` / `activity` per frame (see
    `frame_activity`), None to skip the energy and voice-activity steps.
    """
    s = settings
    shifted = [(str(it[0]), float(it[1]) - s.lead, float(it[2]) - s.lead) for it in items]
    weights = None if confidence is None else np.maximum(np.asarray(confidence, np.float64), s.min_confidence)
    coart = dataclasses.replace(s.coarticulation, close_pause=s.rest_after if s.closed_rest else 0.0)
    curves, unknown = mouth_curves(shifted, n_frames, s.fps, 1.0, coart, alphabet=alphabet, weights=weights)
    if loudness is not None and s.energy > 0:
        gain = (1.0 - s.energy) + s.energy * np.clip(np.asarray(loudness, np.float64) / 0.6, 0.0, 1.4)
        curves[:, OPENING] *= gain[:, None]
    if activity is not None:
        rest = quiet_rest(np.asarray(activity, np.float64), s)
        curves[:, OPENING] *= (1.0 - rest)[:, None]
        if s.closed_rest:
            close = _I["mouth_close"]
            curves[:, close] = np.maximum(curves[:, close], rest)
    return (curves * s.amplitude).astype(np.float32), unknown


def quiet_rest(activity: np.ndarray, s: RuleSettings) -> np.ndarray:
    """(T,) in [0, 1]: inside a stretch at least `rest_after` long where the voice-activity gate
    is below 0.5, with 80 ms ramps in and out."""
    from scipy.ndimage import uniform_filter1d

    width = max(1, round(s.rest_after * s.fps))
    long_quiet = uniform_filter1d((activity < 0.5).astype(float), size=width, mode="nearest") > 0.999
    mask = np.convolve(long_quiet, np.ones(width), mode="same") > 0  # back to the run's full length
    ramp = max(1, round(0.08 * s.fps))
    return np.clip(uniform_filter1d(mask.astype(np.float64), size=2 * ramp + 1, mode="nearest") * 2 - 1, 0, 1)


def rule_expression(rest_expression: np.ndarray, curves: np.ndarray, rest_opening: float = 1.0) -> np.ndarray:
    """Per-frame expression (T, E): the portrait's rest expression with the rule mouth combined in.

    `rest_opening` scales the rest face's own mouth opening (jaw, lip parting) that the speech
    moves from: 1 keeps a portrait's parted lips as they are between visemes, so only bilabials
    and pauses close them; lower lets the lips close between syllables as a speaker's do."""
    rest = np.asarray(rest_expression, np.float32).reshape(-1).copy()
    rest[OPENING] *= rest_opening
    n_mouth = curves.shape[1]
    out = np.repeat(rest[None], len(curves), axis=0)
    out[:, :n_mouth] = combine_mouth(rest[:n_mouth], curves)
    return out.astype(np.float32)


def phones_from_features(features: np.ndarray, fps: float) -> list[tuple[str, float, float]]:
    """Phone runs [(ARPAbet label, start s, end s)] of phonetic features (T, 44): the most likely
    phone class of each video frame once the features' co-articulation smoothing is undone
    (`uncoarticulate`), consecutive equal frames merged.

    Why undone: the smoothed classes lean toward the next phone (the mouth prepares for it), so
    their argmax put phones early and dropped short ones; the rules add their own co-articulation.
    On the 30 held-out clips the rules mouth read this way scores 0.713, read from the smoothed
    classes 0.695, from the 10 ms phones themselves 0.722 (docs/lipsync.md, "The prior's phones").
    """
    from trainers.data.phonetic import N_PHONES, PHONES, uncoarticulate

    labels = uncoarticulate(np.asarray(features)[:, :N_PHONES], fps).argmax(axis=1)
    if len(labels) == 0:
        return []
    cuts = np.flatnonzero(np.diff(labels)) + 1
    starts, ends = np.r_[0, cuts], np.r_[cuts, len(labels)]
    return [(PHONES[labels[s]], s / fps, e / fps) for s, e in zip(starts, ends)]


def features_rule_mouth(features: np.ndarray, fps: float = 25.0, settings: RuleSettings | None = None) -> np.ndarray:
    """The rule-based mouth (T, 28) in coefficients on a neutral face, from phonetic features
    alone: the prior of the learned generators' `mouth_prior: rules` option (docs/lipsync.md).

    A pure function of the features (their most likely phone per frame and the clip-relative
    loudness), so a trainer computes it from its dataset's stored features exactly as a node does
    at inference: the same input in both places. No rest face: the learned generators never see
    the reference's expression (their identity input carries the style), and the training clips'
    rest faces are not stored. On the held-out clips it scores within 0.01 of LipSyncRules on the
    recogniser's own 10 ms phone segments (0.713 vs 0.722).
    """
    from trainers.data.phonetic import FEATURE_DIM, LOUDNESS

    features = np.asarray(features, np.float32)
    if features.ndim != 2 or features.shape[1] != FEATURE_DIM:
        raise ValueError(f"the rules mouth prior needs phonetic features (T, {FEATURE_DIM}), got {features.shape}")
    s = settings or RuleSettings(fps=fps)
    curves, _ = rule_mouth(phones_from_features(features, s.fps), len(features), s, loudness=features[:, LOUDNESS])
    return rule_expression(np.zeros(curves.shape[1], np.float32), curves)
