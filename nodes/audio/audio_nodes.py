"""AudioFeatures: per-video-frame audio features (variants and alignment: trainers/data/audio_features.py)."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from graphcore.node import In, Node, NodeError, Out, RunContext
from nodes.audio.phonetic_nodes import Recognition, recognition_field
from nodes.types import AudioClip, FeatureSeq, PhonemeTrack


class AudioFeatures(Node):
    """Audio features aligned to video frames, one row per frame (T = round(duration · fps)).

    Variants: `mfcc_pitch` (T, 15) 13 MFCC + 2 pitch (HDTF); `a2h` (T, 4, 41) MFCC, fbank,
    pitch and voicing over four 25 ms / 10 ms windows (Audio2Head); `mel` (T, 16, 80)
    Wav2Lip's log-mel window (IP_LAP); `mfcc_window` (T, 28, 12) MFCC windows (Yi et al.);
    `phonetic` (T, 44) soft phone classes + voicing + loudness + speech activity from
    PocketSphinx (speaker- and level-independent; trainers/data/phonetic.py): connect
    RecognizePhonemes' `phonemes` to reuse its track, or give a `transcript` to align.
    `a2h_official` (T, 4, 41) the same layout as the Audio2Head release computes it
    (python_speech_features + pyworld, peak-normalised 16 kHz audio, T = rows // 4 at 25 fps),
    for imported official checkpoints (docs/official-weights.md). `mfcc80_window` (T, 28, 80)
    MFCC windows (MetaTalk).
    """

    category = "audio"
    inputs = {
        "audio": In("Audio"),
        "fps": In("Scalar", "video frame rate (overrides the fps parameter), e.g. from LoadVideo", optional=True),
        "phonemes": In("PhonemeTrack", "phonetic only: ARPAbet phones to use instead of recognising", optional=True),
    }
    outputs = {"features": Out("AudioFeatures")}

    class Params(BaseModel):
        variant: Literal["mfcc_pitch", "a2h", "mel", "mfcc_window", "phonetic", "a2h_official", "mfcc80_window"] = Field(
            "mfcc_pitch", description="feature layout (see the node description)")
        fps: float = Field(25.0, gt=0, le=100, description="video frame rate the features align to")
        num_frames: int = Field(0, ge=0, description="force this many frames (0: round(duration · fps)); edges are padded")
        mel_align: Literal["centre", "start"] = Field(
            "centre", description="mel only: window centred on the frame (IP_LAP training) or starting at it (Wav2Lip inference)")
        transcript: str = Field("", description="phonetic only: what is said (forced alignment instead of recognition)")
        recognition: Recognition = recognition_field()

    def run(self, ctx: RunContext, audio: AudioClip, fps: float | None = None,
            phonemes: PhonemeTrack | None = None) -> dict[str, Any]:
        from trainers.data.audio_features import audio_features
        from trainers.data.phonetic import phonetic_features

        p = self.params
        rate = float(fps) if fps is not None else p.fps
        if phonemes is not None and p.variant != "phonetic":
            raise NodeError(f"AudioFeatures ({p.variant}): the phonemes input is only used by the phonetic variant")
        if phonemes is not None and phonemes.alphabet != "arpabet":
            raise NodeError("AudioFeatures (phonetic): the phonemes must be ARPAbet (RecognizePhonemes' output), "
                            f"got {phonemes.alphabet} labels")
        try:
            if p.variant == "phonetic":
                data = phonetic_features(audio.samples, audio.sample_rate, fps=rate, num_frames=p.num_frames or None,
                                         transcript=p.transcript or None, words=p.recognition == "words",
                                         items=None if phonemes is None else phonemes.items())
            elif p.variant == "a2h_official":
                from .a2h_official import official_frame_features

                if rate != 25.0 or p.num_frames:
                    raise ValueError("the official Audio2Head features are 4 rows of 10 ms per frame: 25 fps, num_frames 0")
                data = official_frame_features(audio.samples, audio.sample_rate)
            else:
                data = audio_features(audio.samples, audio.sample_rate, p.variant, fps=rate,
                                      num_frames=p.num_frames or None, mel_align=p.mel_align)
        except ValueError as e:
            raise NodeError(f"AudioFeatures ({p.variant}): {e}") from None
        ctx.log(f"{p.variant}: {data.shape[0]} frames at {rate:g} fps from {audio.duration:.2f} s of audio, shape {data.shape[1:]}")
        return {"features": FeatureSeq(data=data, fps=rate, variant=p.variant)}
