"""RecognizePhonemes: speech -> PhonemeTrack with PocketSphinx (trainers/data/phonetic.py).

The phonetic front-end of the audio-driven nodes: free phone recognition with the en-us
acoustic model and phone bigram inside the `pocketsphinx` wheel (nothing is downloaded), or
forced alignment when the text is known (the `text` input, e.g. SynthesizeSpeech's, or the
`transcript` parameter).
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from graphcore.node import In, Node, NodeError, Out, RunContext
from nodes.types import AudioClip, PhonemeTrack

Recognition = Literal["words", "phones"]


def recognition_field() -> Any:
    """The `recognition` parameter of every node that can recognise phones itself."""
    return Field("words", description="free recognition: words (the phone loop corrected by English word "
                                      "recognition, docs/lipsync.md) or phones (the phone loop alone: faster, any language)")


class RecognizePhonemes(Node):
    """Phonemes (ARPAbet) with start, end and confidence from speech, by PocketSphinx.

    Without a text: all-phone recognition (a segment's confidence is the agreement of a second
    decode on its viseme class) where, with `recognition: words`, the phones of confidently
    recognised English words replace the phone loop's; quiet stretches are silence. With a text
    (`text` input or `transcript`): forced alignment of the CMU dictionary's pronunciations;
    words missing from the dictionary fall back to recognition, and the log says so.
    """

    category = "audio"
    inputs = {
        "audio": In("Audio"),
        "text": In("String", "what is said (forced alignment instead of recognition)", optional=True),
    }
    outputs = {"phonemes": Out("PhonemeTrack", "ARPAbet phones, contiguous from 0 to the end of the audio")}

    class Params(BaseModel):
        transcript: str = Field("", description="what is said, when the text input is not connected (empty: recognise)")
        recognition: Recognition = recognition_field()

    def run(self, ctx: RunContext, audio: AudioClip, text: str | None = None) -> dict[str, Any]:
        from trainers.data.phonetic import phones

        transcript = text if text is not None else self.params.transcript
        if audio.duration < 0.05:
            raise NodeError(f"RecognizePhonemes: the audio lasts {audio.duration * 1000:.0f} ms, too short to recognise")
        result, _ = phones(audio.samples, audio.sample_rate, transcript or None, words=self.params.recognition == "words")
        if result.note:
            ctx.log(result.note)
        track = PhonemeTrack.from_items(result.items, alphabet="arpabet")
        speech = [i for i, label in enumerate(track.labels) if label != "SIL"]
        ctx.log(f"{result.mode}: {len(speech)} phones (+ {len(track) - len(speech)} silences) in {audio.duration:.2f} s")
        return {"phonemes": track}
