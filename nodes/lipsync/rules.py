"""Rule-based lip sync: phonemes -> visemes -> the 3DMM's 28 mouth coefficients.

The explainable baseline and the fallback when no learned checkpoint fits (what Rhubarb Lip
Sync does for animators), built from the synthetic generator's pieces so that its mouth is the
same kind of mouth the learned nodes were trained to produce:

1. Phones (ARPAbet from RecognizePhonemes, or eSpeak from SynthesizeSpeech) are shifted
   `lead` seconds earlier: the lips move before the sound they shape (a real talker's lip gap
   leads the acoustic phone boundaries by about one video frame).
2. The viseme table with Cohen–Massaro co-articulation (`nodes.synth.visemes.mouth_curves`),
   each segment's dominance scaled by its confidence (floored at `min_confidence`) so an
   uncertain phone yields to its neighbours. Pauses use a *closed* rest viseme: lips together,
   jaw relaxed.
3. Energy: the opening components (jaw, lip parting) are scaled by the clip-normalised
   loudness of the frame — louder syllables open wider; `energy` = 0 turns this off.
4. Voice activity: where the audio is quiet (the front-end's gate, smoothed over 80 ms) the
   mouth closes whatever the phones say, so silence and non-speech give a resting mouth.
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
    curves, unknown = mouth_curves(shifted, n_frames, s.fps, 1.0, s.coarticulation, alphabet=alphabet, weights=weights)
    if loudness is not None and s.energy > 0:
        gain = (1.0 - s.energy) + s.energy * np.clip(np.asarray(loudness, np.float64) / 0.6, 0.0, 1.4)
        curves[:, OPENING] *= gain[:, None]
    rest = rest_frames(shifted, n_frames, s, alphabet, activity)
    curves[:, OPENING] *= (1.0 - rest)[:, None]
    if s.closed_rest:
        close = _I["mouth_close"]
        curves[:, close] = np.maximum(curves[:, close], rest)
    return (curves * s.amplitude).astype(np.float32), unknown


def rest_frames(items: Sequence[tuple], n_frames: int, s: RuleSettings, alphabet: str,
                activity: np.ndarray | None) -> np.ndarray:
    """(T,) in [0, 1]: how much each frame is inside a rest — a pause of at least `rest_after`
    seconds, or (with `activity`) a quiet stretch as long — with 80 ms ramps in and out."""
    from scipy.ndimage import uniform_filter1d

    from nodes.synth.speech import is_pause
    from nodes.synth.visemes import frame_times, is_arpabet_pause

    pause = is_arpabet_pause if alphabet == "arpabet" else is_pause
    t = frame_times(n_frames, s.fps)
    mask = np.zeros(n_frames, bool)
    end = max((float(it[2]) for it in items), default=0.0)
    mask |= (t < min((float(it[1]) for it in items if not pause(str(it[0]))), default=np.inf)) | (t >= end)
    run_start = None
    for phone, start, stop, *_ in [*items, ("", end, end)]:
        if pause(str(phone)) and stop > start:
            run_start = start if run_start is None else run_start
            run_end = stop
            continue
        if run_start is not None and run_end - run_start >= s.rest_after:
            mask |= (t >= run_start) & (t < run_end)
        run_start = None
    if activity is not None:
        quiet = np.asarray(activity) < 0.5
        width = max(1, round(s.rest_after * s.fps))
        long_quiet = uniform_filter1d(quiet.astype(float), size=width, mode="nearest") > 0.999
        mask |= np.convolve(long_quiet, np.ones(width), mode="same") > 0  # back to the run's full length
    ramp = max(1, round(0.08 * s.fps))
    return np.clip(uniform_filter1d(mask.astype(np.float64), size=2 * ramp + 1, mode="nearest") * 2 - 1, 0, 1) if ramp else mask


def rule_expression(rest_expression: np.ndarray, curves: np.ndarray) -> np.ndarray:
    """Per-frame expression (T, E): the portrait's rest expression with the rule mouth combined in."""
    rest = np.asarray(rest_expression, np.float32).reshape(-1)
    n_mouth = curves.shape[1]
    out = np.repeat(rest[None], len(curves), axis=0)
    out[:, :n_mouth] = combine_mouth(rest[:n_mouth], curves)
    return out.astype(np.float32)
