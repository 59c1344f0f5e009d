"""Speech with per-phoneme timings from espeak-ng (its C event API, see `espeak.py`).

libespeak-ng reports every phoneme as an `espeakEVENT_PHONEME` whose `id.string` is the
phoneme's eSpeak mnemonic (`h @ l oU` for "hello"; the set is listed in `visemes.py`) and whose
`sample` is its start at the native rate (22050 Hz). A phoneme lasts until the next one starts,
the last until the end of the audio; audio before the first phoneme is a pause (`_`). Samples
are resampled to 16 kHz (the project's audio rate) and times are returned in seconds.

By default every utterance is synthesised in a fresh worker process so the same request always
gives the same samples (the library carries state from one utterance to the next; see
`espeak.py`); `isolated=False` synthesises in this process instead, under the binding's lock.
"""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .espeak import _ESPEAK, RATE_MAX, RATE_MIN, SpeechError

TARGET_RATE = 16000
_WORKER = Path(__file__).with_name("espeak.py")


@dataclasses.dataclass
class PhonemeTrack:
    """Phonemes with their times in seconds: `labels[i]` sounds from `start[i]` to `end[i]`."""

    labels: list
    start: np.ndarray  # float32 (P,)
    end: np.ndarray  # float32 (P,)

    def __len__(self) -> int:
        return len(self.labels)

    def items(self) -> list[tuple[str, float, float]]:
        return [(p, float(s), float(e)) for p, s, e in zip(self.labels, self.start, self.end)]

    @classmethod
    def from_items(cls, items: Sequence[tuple[str, float, float]]) -> PhonemeTrack:
        return cls([str(p) for p, _, _ in items],
                   np.array([s for _, s, _ in items], np.float32).reshape(-1),
                   np.array([e for _, _, e in items], np.float32).reshape(-1))


@dataclasses.dataclass
class Speech:
    samples: np.ndarray  # float32 mono at `sample_rate`
    sample_rate: int
    phonemes: PhonemeTrack


def is_pause(phoneme: str) -> bool:
    """eSpeak's pause mnemonics: `_`, `_:`, `_!`, `_^_` ... (all start with an underscore)."""
    return phoneme.startswith("_") or phoneme == ""


def _track(events: Sequence[tuple[str, int]], n_samples: int, rate: int) -> PhonemeTrack:
    """Consecutive phoneme intervals; events of zero length are dropped, leading silence is a pause."""
    items: list[tuple[str, float, float]] = []
    starts = [min(max(int(s), 0), n_samples) for _, s in events] + [n_samples]
    for i in range(1, len(starts)):  # a later event never starts before an earlier one
        starts[i] = max(starts[i], starts[i - 1])
    if events and starts[0] > 0:
        items.append(("_", 0.0, starts[0] / rate))
    for (name, _), s0, s1 in zip(events, starts[:-1], starts[1:]):
        if s1 > s0:
            items.append((name, s0 / rate, s1 / rate))
    return PhonemeTrack.from_items(items)


def _synthesize_in_worker(text: str, voice: str, rate: int, pitch: int) -> tuple[np.ndarray, int, list]:
    request = json.dumps({"text": text, "voice": voice, "rate": rate, "pitch": pitch}).encode("utf-8")
    proc = subprocess.run([sys.executable, "-S", "-I", str(_WORKER)], input=request, capture_output=True, timeout=600, check=False)
    head, sep, body = proc.stdout.partition(b"\n")
    if proc.returncode != 0 or not sep:
        raise SpeechError(f"the espeak-ng worker failed (exit {proc.returncode}): "
                          f"{proc.stderr.decode('utf-8', 'replace').strip()[-500:]}")
    meta = json.loads(head)
    if meta.get("error"):
        raise SpeechError(meta["error"])
    dtype = np.dtype(np.int16).newbyteorder("<" if meta["byteorder"] == "little" else ">")
    pcm = np.frombuffer(body[:meta["bytes"]], dtype=dtype).astype(np.int16)
    return pcm, int(meta["rate"]), [(str(n), int(s)) for n, s in meta["events"]]


def synthesize(text: str, voice: str = "en-us", rate: int = 160, pitch: int = 50,
               sample_rate: int = TARGET_RATE, isolated: bool = True) -> Speech:
    """Speak `text` with espeak-ng; return float32 samples at `sample_rate` and the phoneme track.

    `voice` is an espeak-ng voice (`en-us`, `en-gb`, with an optional variant: `en-gb+f3`), `rate`
    in words per minute (80–450), `pitch` the base pitch (0–100, 50 = normal).
    """
    if not text.strip():
        raise SpeechError("the text to speak is empty")
    if not RATE_MIN <= rate <= RATE_MAX:
        raise SpeechError(f"rate {rate} wpm is outside espeak-ng's range {RATE_MIN}–{RATE_MAX}")
    if not 0 <= pitch <= 100:
        raise SpeechError(f"pitch {pitch} is outside 0–100")
    if isolated:
        pcm, native, events = _synthesize_in_worker(text, voice, int(rate), int(pitch))
    else:
        raw, native, events = _ESPEAK.synthesize(text, voice, int(rate), int(pitch))
        pcm = np.frombuffer(raw, dtype=np.int16)
    if pcm.size == 0:
        raise SpeechError(f"espeak-ng produced no audio for {text[:60]!r}")
    track = _track(events, len(pcm), native)
    from trainers.data.audio_features import resample_audio

    audio = np.clip(resample_audio(pcm.astype(np.float32) / 32768.0, native, sample_rate), -1.0, 1.0)
    if len(track):  # measured at the native rate: end exactly at the resampled length
        track.end[-1] = np.float32(len(audio) / float(sample_rate))
    return Speech(audio, sample_rate, track)


def list_voices() -> list[str]:
    """Names `synthesize` accepts: the voice files' languages (mbrola voices excluded)."""
    return sorted({lang for _, ident, langs in _ESPEAK.voices() if not ident.startswith("mb/") for _, lang in langs})
