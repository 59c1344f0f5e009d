"""Dataset mode of the synthetic generator: N talking clips -> the dataset format.

Each clip draws its own sentence(s), voice (espeak-ng, flite or festival), speaking rate, pitch,
articulation amplitude, head motion amplitude and seed from the dataset seed, speaks, animates
its identity's fitted 3DMM (visemes, brows, blinks, head motion) and renders it through the
3DMM flow. Optionally (`phrasing`, `augment`, `identities`):

- **phrasing**: each sentence is spoken on its own and the clip is assembled with silences before,
  between and after them (0.05-1 s; sometimes a 2-4 s silence), breaths in the longer gaps and,
  now and then, a non-speech sound (clicks, a beep, music, a buzz). The phoneme track marks all
  of them as pauses, so the mouth truth there is a closed, resting mouth (`visemes.py`);
  `events` in the clip's attributes says what was inserted where;
- **augment**: a recording-like degradation chain (`augment.py`: tempo, pitch shift, room
  reverb, microphone colouring, noise, band-limiting, a codec round trip, level) drawn per clip;
  tempo changes are applied to each sentence before assembly together with its phoneme times,
  everything else after it. Brows and head nods follow the clean speech, the stored `audio` and
  features are the degraded sound;
- **identities**: several faces made from the portrait (`identity.py`, identity k drawn from
  (seed, k)), stored once in the dataset's `identities` group; each clip draws one, and its
  articulation and head-motion amplitudes are scaled by that face's speaking style.

Written per clip: frames (unless `render` is off), 16 kHz audio, ground-truth landmarks (the 3DMM's
motion applied to the identity's detected points), the driving coefficients, the phoneme track,
the blink curve and the requested audio features.

**Held-out split.** `held_out="exclude"` (training data, the default) refuses the evaluation-only
voices (`speech.HELD_OUT_VOICES`) and sentences (`sentences.EVAL_SENTENCES`) and never draws the
evaluation-only degradations; `held_out="evaluation"` draws the degradations from the held-out
kinds (give it the held-out voices and sentences); `"allow"` skips the check (for data that only
trains image models, which never hear the speech).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trainers.data.dataset import DatasetWriter, assign_splits

from .animate import AnimationSettings, animate
from .render import Driving, landmark_tracks, render_chunks
from .sentences import EVAL_SENTENCES, SENTENCES
from .speech import TRAINING_VOICES, is_held_out_voice, synthesize

# The first generator's espeak-ng voices (en-gb-x-rp, now held out, was among them; old workflows
# whose data only trains image models keep it with `held_out: allow`).
ESPEAK_VOICES = ("en-us", "en-us+f3", "en-gb", "en-gb+f2", "en-us+m3", "en-gb-x-rp", "en-us+f4", "en-gb-scotland")
HELD_OUT_POLICIES = ("exclude", "evaluation", "allow")


@dataclasses.dataclass
class SynthDatasetSettings:
    n_clips: int = 8
    size: int = 256
    fps: float = 25.0
    seed: int = 0
    sentences: Sequence[str] = SENTENCES
    voices: Sequence[str] = TRAINING_VOICES
    sentences_per_clip: tuple[int, int] = (1, 2)
    rate: tuple[int, int] = (130, 190)
    pitch: tuple[int, int] = (35, 65)
    mouth_amplitude: tuple[float, float] = (0.8, 1.2)
    head_amplitude: tuple[float, float] = (0.5, 1.3)
    features: Sequence[str] = ("mfcc_pitch",)
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    chunk: int = 8
    phrasing: bool = False  # sentences spoken separately with silences, breaths and non-speech between
    augment: float = 0.0  # strength of the recording-like degradation (0: clean speech)
    clean_fraction: float = 0.2  # with augment > 0, this fraction of the clips stays clean
    identities: int = 1  # faces made from the portrait (1: the portrait only)
    render: bool = True  # write frames (False: audio, coefficients and landmarks only)
    # "exclude": training data (held-out voices and sentences refused, training degradations);
    # "evaluation": degradations from the held-out kinds; "allow": no check (image-only trainers)
    held_out: str = "exclude"
    mouth_lead: float = 0.0  # seconds the mouth truth leads the sound (animate.AnimationSettings.mouth_lead)


@dataclasses.dataclass
class Portrait:
    """A portrait and its fitted 3DMM at the dataset's frame size."""

    image: np.ndarray  # uint8 (size, size, 3)
    landmarks: np.ndarray  # (478, 2|3) detected, pixels
    shape: np.ndarray  # (60,)
    expression: np.ndarray  # (33,)
    pose: np.ndarray  # (6,)


def resize_portrait(image: np.ndarray, landmarks: np.ndarray, shape: np.ndarray, expression: np.ndarray,
                    pose: np.ndarray, size: int) -> Portrait:
    """Scale a square portrait and its geometry to `size` pixels (pixel centres kept aligned)."""
    import cv2

    h, w = image.shape[:2]
    if h != w:
        raise ValueError(f"the portrait must be square, got {w}x{h}")
    s = size / w
    lm = np.array(landmarks, np.float32, copy=True)
    pose = np.array(pose, np.float32, copy=True).reshape(6)
    if size != w:
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
        lm[..., :2] = (lm[..., :2] + 0.5) * s - 0.5
        if lm.shape[-1] > 2:
            lm[..., 2] *= s
        pose[3:5] = (pose[3:5] + 0.5) * s - 0.5
        pose[5] += np.log(s)
    return Portrait(np.ascontiguousarray(image), lm, np.asarray(shape, np.float32).reshape(-1),
                    np.asarray(expression, np.float32).reshape(-1), pose)


@dataclasses.dataclass
class ClipPlan:
    name: str
    text: str
    voice: str
    rate: int
    pitch: int
    seed: int
    mouth_amplitude: float
    head_amplitude: float
    split: str
    sentences: list[str] = dataclasses.field(default_factory=list)
    # phrasing: silences (s) before, between and after the sentences, breaths in the gaps, inserts
    lead: float = 0.0
    gaps: list[float] = dataclasses.field(default_factory=list)
    tail: float = 0.0
    breaths: list[float] = dataclasses.field(default_factory=list)  # per gap: breath length (0: none)
    inserts: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # {"at": "lead"|gap index|"tail", "kind", "duration", "level_db", "seed"}
    chain: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    identity: int = 0


def plan_clips(s: SynthDatasetSettings) -> list[ClipPlan]:
    """Every clip's draws, from the dataset seed alone (so a clip does not depend on the others' runs).

    The first stream of draws is the original generator's (so old settings give the same clips);
    phrasing, degradation and identity come from a second stream per clip.
    """
    from .augment import NON_SPEECH, draw_chain
    from .identity import plan_identity

    splits = assign_splits(s.n_clips, s.seed, s.split_fractions)
    plans = []
    for i in range(s.n_clips):
        rng = np.random.default_rng([s.seed, i, 0x5C1])
        k = int(rng.integers(s.sentences_per_clip[0], s.sentences_per_clip[1] + 1))
        chosen = [s.sentences[j] for j in rng.choice(len(s.sentences), size=min(k, len(s.sentences)), replace=False)]
        plan = ClipPlan(
            name=f"clip_{i:05d}", text=" ".join(chosen), voice=str(s.voices[int(rng.integers(len(s.voices)))]),
            rate=int(rng.integers(s.rate[0], s.rate[1] + 1)), pitch=int(rng.integers(s.pitch[0], s.pitch[1] + 1)),
            seed=int(rng.integers(2**31 - 1)), mouth_amplitude=float(rng.uniform(*s.mouth_amplitude)),
            head_amplitude=float(rng.uniform(*s.head_amplitude)), split=splits[i], sentences=chosen,
        )
        extra = np.random.default_rng([s.seed, i, 0xA06])
        if s.phrasing:
            plan.lead, plan.tail = (round(float(extra.uniform(0.05, 0.8)), 3) for _ in range(2))
            plan.gaps = [round(float(extra.uniform(0.1, 1.0)), 3) for _ in range(len(chosen) - 1)]
            plan.breaths = [round(float(min(g - 0.1, extra.uniform(0.25, 0.5))), 3) if g >= 0.35 and extra.random() < 0.5
                            else 0.0 for g in plan.gaps]
            places: list[Any] = ["lead", *range(len(plan.gaps)), "tail"]
            if extra.random() < 0.3:
                plan.inserts.append({"at": places[int(extra.integers(len(places)))], "kind": str(extra.choice(NON_SPEECH)),
                                     "duration": round(float(extra.uniform(0.4, 2.0)), 3),
                                     "level_db": round(float(extra.uniform(-20, 0)), 1), "seed": int(extra.integers(2**31 - 1))})
            if extra.random() < 0.15:
                plan.inserts.append({"at": places[int(extra.integers(len(places)))], "kind": "silence",
                                     "duration": round(float(extra.uniform(2.0, 4.0)), 3), "level_db": 0.0, "seed": 0})
        if s.augment > 0 and extra.random() >= s.clean_fraction:
            plan.chain = draw_chain(extra, strength=s.augment, held_out=s.held_out == "evaluation")
        if s.identities > 1:
            plan.identity = int(extra.integers(s.identities))
            style = plan_identity(s.seed, plan.identity)
            plan.mouth_amplitude *= style.mouth_gain
            plan.head_amplitude *= style.head_gain
        plans.append(plan)
    return plans


def check_split(s: SynthDatasetSettings) -> None:
    """Training data must not touch the held-out voices or sentences (ValueError naming them)."""
    if s.held_out not in HELD_OUT_POLICIES:
        raise ValueError(f"held_out must be one of {HELD_OUT_POLICIES}, got {s.held_out!r}")
    if s.held_out != "exclude":
        return
    voices = sorted(v for v in s.voices if is_held_out_voice(v))
    if voices:
        raise ValueError(f"voices {voices} are held out for the evaluation (speech.HELD_OUT_VOICES); "
                         "remove them, or set held_out to make evaluation data")
    sentences = sorted(set(s.sentences) & set(EVAL_SENTENCES))
    if sentences:
        raise ValueError(f"sentences {[x[:40] for x in sentences]} are held out for the evaluation (sentences.EVAL_SENTENCES)")


@dataclasses.dataclass
class SpokenClip:
    samples: np.ndarray  # degraded 16 kHz audio (what is stored)
    speech_only: np.ndarray  # the same timeline with only the (tempo-changed) speech: brows, nods
    track: list[tuple[str, float, float]]
    events: list[list[Any]]  # [kind, start s, end s] of the inserted silences and sounds


def speak_clip(plan: ClipPlan, sample_rate: int = 16000, babble_source: np.ndarray | None = None) -> SpokenClip:
    """Synthesise, assemble and degrade one clip's sound; the phoneme track follows every step."""
    from .augment import apply_chain, breath, non_speech

    tempo = [st for st in plan.chain if st["kind"] == "tempo"]
    rest = [st for st in plan.chain if st["kind"] != "tempo"]
    sentences = plan.sentences if plan.gaps or plan.lead or plan.tail or plan.inserts else [plan.text]
    parts = []
    for text in sentences:
        sp = synthesize(text, voice=plan.voice, rate=plan.rate, pitch=plan.pitch, sample_rate=sample_rate)
        x, items = apply_chain(sp.samples, sp.phonemes.items(), tempo) if tempo else (sp.samples, sp.phonemes.items())
        parts.append((x, items))
    if len(parts) == 1 and not (plan.lead or plan.tail or plan.inserts):
        x, items = parts[0]
        samples, track, events = x, list(items), []
        speech_only = x
    else:
        samples, speech_only, track, events = _assemble(plan, parts, sample_rate, breath, non_speech)
    if rest:
        samples, _ = apply_chain(samples, track, rest, babble_source=babble_source)
    return SpokenClip(samples.astype(np.float32), speech_only.astype(np.float32), track, events)


def _assemble(plan: ClipPlan, parts, sr: int, breath, non_speech):
    """Silences, breaths and inserts around and between the spoken sentences."""
    from .augment import active_power

    level = np.sqrt(np.mean([active_power(x) for x, _ in parts]))  # RMS of active speech
    by_place: dict[Any, list[dict[str, Any]]] = {}
    for ins in plan.inserts:
        by_place.setdefault(ins["at"], []).append(ins)
    chunks, clean, track, events = [], [], [], []
    t = 0.0

    def gap(place, length: float, breath_len: float = 0.0) -> None:
        nonlocal t
        inserts = by_place.get(place, [])
        length = max([length] + [ins["duration"] + 0.3 for ins in inserts])
        n = int(round(length * sr))
        y = np.zeros(n, np.float32)
        for ins in inserts:
            if ins["kind"] == "silence":
                snd = np.zeros(min(n, int(ins["duration"] * sr)), np.float32)
            else:
                snd = non_speech(ins["kind"], ins["duration"], np.random.default_rng(ins["seed"]))[:n]
            m = len(snd)
            at = (n - m) // 2
            y[at:at + m] += snd * level * np.sqrt(2) * 10 ** (ins["level_db"] / 20)
            events.append([ins["kind"], round(t + at / sr, 4), round(t + (at + m) / sr, 4)])
        if breath_len > 0:
            rng = np.random.default_rng([plan.seed, len(events), 0xB4])
            snd = breath(breath_len, rng)
            at = n - len(snd) - int(0.05 * sr)
            if at >= 0:
                y[at:at + len(snd)] += snd * level * 10 ** (rng.uniform(-22, -12) / 20)
                events.append(["breath", round(t + at / sr, 4), round(t + (at + len(snd)) / sr, 4)])
        chunks.append(y)
        clean.append(np.zeros(n, np.float32))
        if n:
            track.append(("_", t, t + n / sr))
        t += n / sr

    gap("lead", plan.lead)
    for j, (x, items) in enumerate(parts):
        chunks.append(x)
        clean.append(x)
        track.extend((p, t + s, t + e) for p, s, e in items)
        t += len(x) / sr
        if j < len(parts) - 1:
            gap(j, plan.gaps[j] if j < len(plan.gaps) else 0.3, plan.breaths[j] if j < len(plan.breaths) else 0.0)
    gap("tail", plan.tail)
    samples = np.concatenate(chunks)
    speech_only = np.concatenate(clean)
    # contiguous: each item starts where the previous ended (float sums drift by ulps)
    fixed = []
    for p, s, e in track:
        s = fixed[-1][2] if fixed else 0.0
        if e > s:
            fixed.append((p, s, e))
    if fixed:
        fixed[-1] = (fixed[-1][0], fixed[-1][1], len(samples) / sr)
    return samples, speech_only, fixed, events


def babble_pool(voices: Sequence[str], sentences: Sequence[str], seed: int, n: int = 4) -> np.ndarray:
    """Speech of `n` voices (drawn from `voices`) saying `n` sentences, concatenated: the babble
    noise's source (other people talking), from the same side of the held-out split as the data."""
    rng = np.random.default_rng([seed, 0xBAB])
    out = []
    for _ in range(n):
        v = str(voices[int(rng.integers(len(voices)))])
        text = sentences[int(rng.integers(len(sentences)))]
        out.append(synthesize(text, voice=v, rate=int(rng.integers(140, 190)), pitch=int(rng.integers(35, 66))).samples)
    return np.concatenate(out)


def generate_dataset(url: str, portrait: Portrait, model, settings: SynthDatasetSettings, *,
                     mp4_dir: str | Path | None = None, device: str = "cpu",
                     progress: Callable[[int, int, str], None] = lambda i, n, m: None,
                     log: Callable[[str], None] = lambda m: None,
                     identities: Sequence[Portrait] | None = None,
                     identity_info: Sequence[dict[str, Any]] | None = None) -> dict[str, float]:
    """Write the dataset; returns a summary (clips, frames, seconds of audio, clips per split).

    `identities` (default: `[portrait]`) are the faces the clips draw from, at the dataset size.
    """
    from nodes.io.media import write_video
    from nodes.types import AudioClip
    from trainers.data.audio_features import audio_features, frame_count

    s = settings
    check_split(s)
    faces = list(identities) if identities else [portrait]
    if s.identities > len(faces):
        raise ValueError(f"{s.identities} identities asked for, {len(faces)} given")
    writer = DatasetWriter(url, fps=s.fps, frame_size=(s.size, s.size), source="synthetic",
                           landmark_source="3dmm_projection",
                           attrs={"generator": dataclasses.asdict(s) | {"sentences": len(s.sentences)},
                                  "face_model_sha256": getattr(model, "sha256", ""), "has_frames": bool(s.render),
                                  "held_out": s.held_out})
    if s.identities > 1 or not s.render:
        writer.write_identities([f.image for f in faces], [np.asarray(f.landmarks)[..., :2] for f in faces],
                                [f.shape for f in faces], [f.expression for f in faces], [f.pose for f in faces],
                                info=list(identity_info or [{} for _ in faces]))
    plans = plan_clips(s)
    babble = None
    if any(st.get("noise") == "babble" for p in plans for st in p.chain):
        babble = babble_pool(s.voices, s.sentences, s.seed)
    frames_total, seconds = 0, 0.0
    for i, plan in enumerate(plans):
        progress(i, len(plans), f"{plan.name}: {plan.voice}, {plan.rate} wpm")
        face = faces[plan.identity]
        spoken = speak_clip(plan, babble_source=babble)
        n = frame_count(len(spoken.samples), 16000, s.fps)
        anim = animate(spoken.track, spoken.speech_only, 16000, n, face.expression, face.pose,
                       AnimationSettings(fps=s.fps, seed=plan.seed, mouth_amplitude=plan.mouth_amplitude,
                                         head_amplitude=plan.head_amplitude, mouth_lead=s.mouth_lead))
        if anim.unknown_phonemes:
            log(f"{plan.name}: phonemes not in the viseme table: {sorted(anim.unknown_phonemes)}")
        driving = Driving(face.shape, anim.expression, anim.pose, anim.blink)
        attrs = {**dataclasses.asdict(plan), "phonemes": [list(x) for x in spoken.track],
                 "portrait": "input" if len(faces) == 1 else f"identity_{plan.identity:02d}"}
        if spoken.events:
            attrs["events"] = spoken.events
        clip = writer.begin_clip(plan.name, n, split=plan.split, attrs=attrs, frames=s.render)
        keep = np.empty((n, s.size, s.size, 3), np.uint8) if (mp4_dir and s.render) else None
        if s.render:
            for sl, frames in render_chunks(face.image, model, face.shape, face.expression, face.pose,
                                            driving, chunk=s.chunk, device=device):
                clip.write_frames(sl.start, frames)
                if keep is not None:
                    keep[sl] = frames
        clip.write_landmarks(0, landmark_tracks(model, face.landmarks, face.shape, face.expression, face.pose, driving))
        clip.write_coeffs(face.shape, anim.expression, anim.pose, image_size=(s.size, s.size))
        clip.write_audio(spoken.samples)
        clip.write_array("blink", anim.blink)
        for variant in s.features:
            clip.write_features(variant, audio_features(spoken.samples, 16000, variant, fps=s.fps, num_frames=n), s.fps)
        if keep is not None:
            write_video(Path(mp4_dir) / f"{plan.name}.mp4", keep, s.fps, AudioClip(spoken.samples, 16000))
        frames_total += n
        seconds += len(spoken.samples) / 16000
    counts = writer.close()
    progress(len(plans), len(plans), "done")
    return {"clips": len(plans), "frames": frames_total, "seconds": round(seconds, 3), **counts}
