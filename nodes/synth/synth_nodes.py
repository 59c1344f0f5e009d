"""Nodes of the synthetic talking-face generator (docs/nodes/synth.md).

    SynthesizeSpeech      text -> Audio (16 kHz) + PhonemeTrack          (espeak-ng)
    SpeechBank            training voices x training sentences -> one Audio (a teacher's speech bank)
    AnimateFromPhonemes   phonemes + audio + the portrait's fitted 3DMM -> driving MorphCoeffs + blinks
    RenderTalkingFace     portrait + reference/driving MorphCoeffs (+ blinks) -> Frames

`workflows/synth_talk.yaml` wires them with LoadImage, DetectLandmarks, Fit3DMM and SaveVideo
into a portrait + sentence -> .mp4 pipeline.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from graphcore.node import In, Node, NodeError, Out, RunContext
from nodes.face.model_nodes import FaceModelInput, resolve_model
from nodes.types import AudioClip, MorphCoeffs, PhonemeTrack


class SynthesizeSpeech(Node):
    """Speak a text with espeak-ng, flite or festival: 16 kHz audio and each phoneme's start and end time.

    Timings come from libespeak-ng's phoneme events, flite's and festival's segment tables (phones
    converted to eSpeak mnemonics); the same request always gives the same audio.
    """

    category = "synth"
    outputs = {"audio": Out("Audio"), "phonemes": Out("PhonemeTrack"),
               "text": Out("String", "the text spoken (e.g. for RecognizePhonemes' forced alignment)")}

    class Params(BaseModel):
        text: str = Field("Hello! I am a synthetic talking face.", min_length=1, description="what to say")
        voice: str = Field("en-us", description="espeak-ng voice (en-us, en-gb+f3, ...) or engine:name (flite:slt, flite:rms, "
                                                 "festival:kal_diphone, festival:cmu_us_slt_arctic_hts)")
        rate: int = Field(160, ge=80, le=450, description="speaking rate in words per minute")
        pitch: int = Field(50, ge=0, le=100, description="base pitch (0-100, 50 = the voice's normal)")

    def run(self, ctx: RunContext) -> dict[str, Any]:
        from .speech import SpeechError, synthesize

        p = self.params
        try:
            speech = synthesize(p.text, voice=p.voice, rate=p.rate, pitch=p.pitch)
        except SpeechError as e:
            raise NodeError(str(e)) from None
        ctx.log(f"{len(speech.phonemes)} phonemes, {len(speech.samples) / speech.sample_rate:.2f} s of speech")
        return {"audio": AudioClip(speech.samples, speech.sample_rate), "phonemes": speech.phonemes, "text": p.text}


# Training voices the MetaTalk pseudo clips (MakeSyntheticDataset's espeak-ng voices) mostly do not use.
BANK_VOICES = ["flite:kal16", "flite:rms", "flite:slt", "festival:kal_diphone", "festival:cmu_us_slt_arctic_hts",
               "espeak:en-us+f3", "espeak:en-gb-scotland"]


class SpeechBank(Node):
    """Many voices in one clip, for a teacher that works on any audio (e.g. LipSyncRules feeding
    TrainA2E's teacher pairs): for each voice, `per_voice` distinct training sentences at rates
    drawn from [rate_min, rate_max) words per minute (seeded), each followed by `pause` s of
    silence. The evaluation's held-out voices and sentences are never used (a held-out voice is
    refused)."""

    category = "synth"
    outputs = {"audio": Out("Audio")}

    class Params(BaseModel):
        voices: list[str] = Field(default_factory=lambda: list(BANK_VOICES), min_length=1,
                                  description="engine:name voices (docs/nodes/synth.md), none of the held-out ones")
        per_voice: int = Field(4, ge=1, le=200, description="sentences per voice (distinct, from the training sentences)")
        rate_min: int = Field(140, ge=80, le=450, description="slowest rate, words per minute")
        rate_max: int = Field(185, ge=81, le=451, description="rates are drawn below this")
        pause: float = Field(0.4, ge=0, le=10, description="seconds of silence after each sentence")
        seed: int = Field(3, description="draws of sentences and rates")

    def run(self, ctx: RunContext) -> dict[str, Any]:
        from .sentences import TRAINING_SENTENCES
        from .speech import SpeechError, is_held_out_voice, synthesize

        p = self.params
        held_out = [v for v in p.voices if is_held_out_voice(v)]
        if held_out:
            raise NodeError(f"SpeechBank: {held_out} are held-out voices (kept for the lip-sync evaluation); choose others")
        if p.rate_max <= p.rate_min or p.per_voice > len(TRAINING_SENTENCES):
            raise NodeError(f"SpeechBank: need rate_min < rate_max (got {p.rate_min}, {p.rate_max}) and per_voice <= "
                            f"{len(TRAINING_SENTENCES)}")
        rng = np.random.default_rng(p.seed)
        parts, rate = [], 16000
        for i, voice in enumerate(p.voices):
            for k in rng.choice(len(TRAINING_SENTENCES), p.per_voice, replace=False):
                try:
                    speech = synthesize(TRAINING_SENTENCES[k], voice=voice, rate=int(rng.integers(p.rate_min, p.rate_max)))
                except SpeechError as e:
                    raise NodeError(f"SpeechBank: voice {voice!r}: {e}") from None
                rate = speech.sample_rate
                parts += [speech.samples.astype(np.float32), np.zeros(int(p.pause * rate), np.float32)]
            ctx.progress(i + 1, len(p.voices), voice)
        samples = np.concatenate(parts)
        ctx.log(f"{len(samples) / rate:.1f} s of speech from {len(p.voices)} voices")
        return {"audio": AudioClip(samples, rate)}


class AnimateFromPhonemes(Node):
    """Driving 3DMM coefficients for a portrait from phonemes and audio.

    Mouth: a viseme table over the 28 mouth components with Cohen–Massaro co-articulation.
    Brows: raised on pitch accents (F0 of the audio). Head: seeded Ornstein–Uhlenbeck wander of
    pitch/yaw/roll/translation/scale plus small loudness nods. Blinks: seeded, ~17 a minute.
    Everything is added to the portrait's fitted expression and pose (its rest face).
    """

    category = "synth"
    inputs = {
        "phonemes": In("PhonemeTrack"),
        "audio": In("Audio", "the speech the phonemes belong to (pitch and loudness)"),
        "reference": In("MorphCoeffs", "the portrait's fitted coefficients (first frame is used)"),
    }
    outputs = {
        "coeffs": Out("MorphCoeffs", "per-frame expression and pose with the portrait's identity"),
        "blink": Out("Array", "eyelid closure per frame, float32 (T,) in [0, 1]"),
    }

    class Params(BaseModel):
        fps: float = Field(25.0, gt=0, le=120, description="video frame rate")
        seed: int = Field(0, ge=0, description="seed of the blinks, brow asymmetry and head motion")
        mouth_amplitude: float = Field(1.0, ge=0, le=1.5, description="scales every viseme target")
        brow_gain: float = Field(0.5, ge=0, le=1.5, description="brow raise on the strongest pitch accents")
        blink_rate: float = Field(17.0, ge=0, le=60, description="blinks per minute")
        head_amplitude: float = Field(1.0, ge=0, le=3, description="scales the head motion (0 = still)")
        mouth_lead: float = Field(0.0, ge=0, le=0.2, description="seconds the mouth leads the sound (real lips move first)")

    def run(self, ctx: RunContext, phonemes: PhonemeTrack, audio: AudioClip, reference: MorphCoeffs) -> dict[str, Any]:
        from trainers.data.audio_features import frame_count

        from .animate import AnimationSettings, animate

        p = self.params
        n = frame_count(len(audio.samples), audio.sample_rate, p.fps)
        if n == 0:
            raise NodeError("the audio is shorter than half a video frame: nothing to animate")
        if reference.expression.shape[0] == 0:
            raise NodeError("the reference coefficients have no frames")
        settings = AnimationSettings(fps=p.fps, seed=p.seed, mouth_amplitude=p.mouth_amplitude, brow_gain=p.brow_gain,
                                     blink_rate=p.blink_rate, head_amplitude=p.head_amplitude, mouth_lead=p.mouth_lead)
        anim = animate(phonemes.items(), audio.samples, audio.sample_rate, n,
                       reference.expression[0], reference.pose[0], settings)
        if anim.unknown_phonemes:
            ctx.log(f"phonemes not in the viseme table (mapped by their class): {sorted(anim.unknown_phonemes)}")
        coeffs = MorphCoeffs(shape=np.asarray(reference.shape, np.float32), expression=anim.expression, pose=anim.pose,
                             error=np.zeros(n, np.float32), image_size=tuple(reference.image_size))
        return {"coeffs": coeffs, "blink": anim.blink}


class RenderTalkingFace(Node):
    """Animate a portrait with driving 3DMM coefficients: dense flow from the model + warping.

    The flow is HDTF §4.2's F_app inner-face flow (DenseFlowBuilder's construction) with the
    eye blinks added, continued smoothly outside the face so hair, neck and collar follow the
    head without seams; the portrait is warped by it frame by frame (chunks: flat memory).
    """

    category = "synth"
    inputs = {
        "image": In("Image", "the portrait the reference coefficients were fitted to"),
        "reference": In("MorphCoeffs", "the portrait's fitted coefficients (first frame)"),
        "driving": In("MorphCoeffs", "per-frame expression and pose to render"),
        "blink": In("Array", "eyelid closure per frame (T,) in [0, 1]", optional=True),
        "model": FaceModelInput(),
    }
    outputs = {"frames": Out("Frames")}

    class Params(BaseModel):
        chunk: int = Field(8, ge=1, le=256, description="frames rendered at once (memory vs. speed)")

    def run(self, ctx: RunContext, image: np.ndarray, reference: MorphCoeffs, driving: MorphCoeffs,
            blink: np.ndarray | None = None, model: Any = None) -> dict[str, Any]:
        from .render import Driving, render_chunks

        p = self.params
        n = len(driving.expression)
        if blink is not None and blink.shape != (n,):
            raise NodeError(f"RenderTalkingFace: blink has shape {blink.shape}, expected ({n},) like the driving coefficients")
        if tuple(reference.image_size) != tuple(image.shape[:2]):
            raise NodeError(f"RenderTalkingFace: the reference was fitted on {reference.image_size[1]}x{reference.image_size[0]} "
                            f"images but the portrait is {image.shape[1]}x{image.shape[0]}")
        model = resolve_model(ctx, "RenderTalkingFace", model, p.model_path)
        drive = Driving(reference.shape, driving.expression, driving.pose,
                        np.zeros(n, np.float32) if blink is None else blink)
        out = np.empty((n, *image.shape), np.uint8)
        for sl, frames in render_chunks(image, model, reference.shape, reference.expression[0], reference.pose[0],
                                        drive, chunk=p.chunk, device=ctx.device,
                                        progress=lambda i, total: ctx.progress(i, total, "rendering")):
            out[sl] = frames
        return {"frames": out}
