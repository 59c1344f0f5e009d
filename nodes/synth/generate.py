"""Dataset mode of the synthetic generator: N talking clips of one portrait -> the dataset format.

Each clip draws its own sentence(s), voice, speaking rate, pitch, articulation amplitude, head
motion amplitude and seed from the dataset seed, speaks with espeak-ng, animates the portrait's
fitted 3DMM (visemes, brows, blinks, head motion) and renders it through the 3DMM flow.
Written per clip: frames, 16 kHz audio, ground-truth landmarks (the 3DMM's motion applied to the
portrait's detected points), the driving coefficients, the phoneme track, the blink curve and
the requested audio features.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from trainers.data.dataset import DatasetWriter, assign_splits

from .animate import AnimationSettings, animate
from .render import Driving, landmark_tracks, render_chunks
from .speech import synthesize

# Short everyday sentences written for this project (no third-party text), phonetically varied:
# bilabials, labiodentals, rounded and spread vowels, sibilants, long and short words.
SENTENCES = (
    "The morning bus was full of people going to work.",
    "Please pass me the blue bowl from the top shelf.",
    "We walked along the beach until the sun went down.",
    "My brother bought a bright yellow bicycle last week.",
    "Five small boats floated slowly past the old bridge.",
    "She said the soup would be ready in a few minutes.",
    "Open the window and let some fresh air into the room.",
    "The cat jumped over the fence and ran into the garden.",
    "Do you remember where we parked the car this morning?",
    "Every Friday we meet for coffee at the corner shop.",
    "The weather will be cool and cloudy with some rain.",
    "Paul put the papers back in the brown paper bag.",
    "Which way is the museum from the main square?",
    "Her voice was soft, but everyone could hear her clearly.",
    "The children played football in the park after school.",
    "I think we should leave before the traffic gets worse.",
    "A few fish were swimming near the rocks in the pool.",
    "Could you show me how this machine works, please?",
    "The room smelled of fresh bread and warm butter.",
    "Move the heavy box over there, next to the wall.",
    "Who wants another cup of tea with some biscuits?",
    "The moon looked huge above the quiet village tonight.",
    "Mix the flour with milk and beat it until smooth.",
    "Thank you for waiting, the doctor will see you now.",
    "Three thin threads were hanging from the sleeve.",
    "We usually visit our grandmother on Sunday afternoons.",
    "Put your shoes by the door before you come inside.",
    "The new library opens at nine o'clock on weekdays.",
    "Bob and Mary made a map of the mountain path.",
    "Which of these two photos do you like the most?",
    "Keep the receipt in case you need to return it.",
    "The judge asked the witness to speak more slowly.",
)
VOICES = ("en-us", "en-us+f3", "en-gb", "en-gb+f2", "en-us+m3", "en-gb-x-rp", "en-us+f4", "en-gb-scotland")


@dataclasses.dataclass
class SynthDatasetSettings:
    n_clips: int = 8
    size: int = 256
    fps: float = 25.0
    seed: int = 0
    sentences: Sequence[str] = SENTENCES
    voices: Sequence[str] = VOICES
    sentences_per_clip: tuple[int, int] = (1, 2)
    rate: tuple[int, int] = (130, 190)
    pitch: tuple[int, int] = (35, 65)
    mouth_amplitude: tuple[float, float] = (0.8, 1.2)
    head_amplitude: tuple[float, float] = (0.5, 1.3)
    features: Sequence[str] = ("mfcc_pitch",)
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    chunk: int = 8


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


def plan_clips(s: SynthDatasetSettings) -> list[ClipPlan]:
    """Every clip's draws, from the dataset seed alone (so a clip does not depend on the others' runs)."""
    splits = assign_splits(s.n_clips, s.seed, s.split_fractions)
    plans = []
    for i in range(s.n_clips):
        rng = np.random.default_rng([s.seed, i, 0x5C1])
        k = int(rng.integers(s.sentences_per_clip[0], s.sentences_per_clip[1] + 1))
        text = " ".join(s.sentences[j] for j in rng.choice(len(s.sentences), size=min(k, len(s.sentences)), replace=False))
        plans.append(ClipPlan(
            name=f"clip_{i:05d}", text=text, voice=str(s.voices[int(rng.integers(len(s.voices)))]),
            rate=int(rng.integers(s.rate[0], s.rate[1] + 1)), pitch=int(rng.integers(s.pitch[0], s.pitch[1] + 1)),
            seed=int(rng.integers(2**31 - 1)), mouth_amplitude=float(rng.uniform(*s.mouth_amplitude)),
            head_amplitude=float(rng.uniform(*s.head_amplitude)), split=splits[i],
        ))
    return plans


def generate_dataset(url: str, portrait: Portrait, model, settings: SynthDatasetSettings, *,
                     mp4_dir: str | Path | None = None, device: str = "cpu",
                     progress: Callable[[int, int, str], None] = lambda i, n, m: None,
                     log: Callable[[str], None] = lambda m: None) -> dict[str, float]:
    """Write the dataset; returns a summary (clips, frames, seconds of audio, clips per split)."""
    from nodes.io.media import write_video
    from nodes.types import AudioClip
    from trainers.data.audio_features import audio_features, frame_count

    s = settings
    writer = DatasetWriter(url, fps=s.fps, frame_size=(s.size, s.size), source="synthetic",
                           landmark_source="3dmm_projection",
                           attrs={"generator": dataclasses.asdict(s) | {"sentences": len(s.sentences)},
                                  "face_model_sha256": getattr(model, "sha256", "")})
    plans = plan_clips(s)
    frames_total, seconds = 0, 0.0
    for i, plan in enumerate(plans):
        progress(i, len(plans), f"{plan.name}: {plan.voice}, {plan.rate} wpm")
        speech = synthesize(plan.text, voice=plan.voice, rate=plan.rate, pitch=plan.pitch)
        n = frame_count(len(speech.samples), speech.sample_rate, s.fps)
        anim = animate(speech.phonemes.items(), speech.samples, speech.sample_rate, n, portrait.expression,
                       portrait.pose, AnimationSettings(fps=s.fps, seed=plan.seed, mouth_amplitude=plan.mouth_amplitude,
                                                        head_amplitude=plan.head_amplitude))
        if anim.unknown_phonemes:
            log(f"{plan.name}: phonemes not in the viseme table: {sorted(anim.unknown_phonemes)}")
        driving = Driving(portrait.shape, anim.expression, anim.pose, anim.blink)
        clip = writer.begin_clip(plan.name, n, split=plan.split, attrs={
            **dataclasses.asdict(plan), "phonemes": [list(x) for x in speech.phonemes.items()], "portrait": "input",
        })
        keep = np.empty((n, s.size, s.size, 3), np.uint8) if mp4_dir else None
        for sl, frames in render_chunks(portrait.image, model, portrait.shape, portrait.expression, portrait.pose,
                                        driving, chunk=s.chunk, device=device):
            clip.write_frames(sl.start, frames)
            if keep is not None:
                keep[sl] = frames
        clip.write_landmarks(0, landmark_tracks(model, portrait.landmarks, portrait.shape, portrait.expression,
                                                portrait.pose, driving))
        clip.write_coeffs(portrait.shape, anim.expression, anim.pose, image_size=(s.size, s.size))
        clip.write_audio(speech.samples)
        clip.write_array("blink", anim.blink)
        for variant in s.features:
            clip.write_features(variant, audio_features(speech.samples, speech.sample_rate, variant, fps=s.fps,
                                                        num_frames=n), s.fps)
        if keep is not None:
            write_video(Path(mp4_dir) / f"{plan.name}.mp4", keep, s.fps, AudioClip(speech.samples, speech.sample_rate))
        frames_total += n
        seconds += len(speech.samples) / speech.sample_rate
    counts = writer.close()
    progress(len(plans), len(plans), "done")
    return {"clips": len(plans), "frames": frames_total, "seconds": round(seconds, 3), **counts}
