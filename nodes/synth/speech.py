"""Speech with per-phoneme timings from espeak-ng (its C event API, see `espeak.py`), flite or
festival (`engines.py`).

A voice is `engine:name` — `espeak:en-us+f3`, `flite:slt`, `festival:cmu_us_slt_arctic_hts` — or a
bare espeak-ng voice name (`en-gb`). Every engine's phonemes come as eSpeak mnemonics.

libespeak-ng reports every phoneme as an `espeakEVENT_PHONEME` whose `id.string` is the
phoneme's eSpeak mnemonic (`h @ l oU` for "hello"; the set is listed in `visemes.py`) and whose
`sample` is its start at the native rate (22050 Hz; moved 30 ms earlier, `EVENT_DELAY_S`, to
where its sound starts). A phoneme lasts until the next one starts,
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

from nodes.types import PhonemeTrack

from .espeak import _ESPEAK, RATE_MAX, RATE_MIN, SpeechError

TARGET_RATE = 16000
_WORKER = Path(__file__).with_name("espeak.py")


@dataclasses.dataclass
class Speech:
    samples: np.ndarray  # float32 mono at `sample_rate`
    sample_rate: int
    phonemes: PhonemeTrack


def is_pause(phoneme: str) -> bool:
    """eSpeak's pause mnemonics: `_`, `_:`, `_!`, `_^_` ... (all start with an underscore)."""
    return phoneme.startswith("_") or phoneme == ""


# libespeak-ng's phoneme events come about 30 ms after the sound they name starts (measured with
# the loudness envelope, tests/test_synth_voices.py::envelope_lag_ms, on 4 voices x 5 texts:
# -20..-40 ms as reported, 0..+10 ms moved 30 ms earlier — where flite's and festival's are).
EVENT_DELAY_S = 0.030


def _track(events: Sequence[tuple[str, int]], n_samples: int, rate: int) -> PhonemeTrack:
    """Consecutive phoneme intervals; events of zero length are dropped, leading silence is a pause.
    Event times are moved `EVENT_DELAY_S` earlier."""
    items: list[tuple[str, float, float]] = []
    delay = int(round(EVENT_DELAY_S * rate))
    starts = [min(max(int(s) - delay, 0), n_samples) for _, s in events] + [n_samples]
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


ENGINES = ("espeak", "flite", "festival")
# The held-out split (docs/nodes/synth.md): these voices are never in training data; the lip-sync
# evaluation speaks with them. The espeak-ng one is the voice of assets/samples/speech.wav.
HELD_OUT_VOICES = ("espeak:en-gb-x-rp", "flite:awb", "festival:ked_diphone")
TRAINING_VOICES = (
    "espeak:en-us", "espeak:en-us+f3", "espeak:en-gb", "espeak:en-gb+f2", "espeak:en-us+m3", "espeak:en-us+f4",
    "espeak:en-gb-scotland", "espeak:en-029", "espeak:en-gb-x-gbclan+f5", "espeak:en-gb-x-gbcwmd", "espeak:en-us-nyc+m5",
    "flite:kal16", "flite:rms", "flite:slt",
    "festival:kal_diphone", "festival:cmu_us_slt_arctic_hts",
)


def parse_voice(voice: str) -> tuple[str, str]:
    """`engine:name` -> (engine, name); a bare name is an espeak-ng voice."""
    engine, sep, name = voice.strip().partition(":")
    if not sep:
        return "espeak", engine
    if engine not in ENGINES or not name:
        raise SpeechError(f"voice {voice!r}: expected ENGINE:NAME with ENGINE one of {list(ENGINES)} "
                          "(e.g. 'flite:slt', 'festival:kal_diphone', 'espeak:en-us+f3') or an espeak-ng voice name")
    return engine, name


def voice_id(voice: str) -> str:
    """`engine:name` without an espeak-ng variant: the speaker a voice belongs to."""
    engine, name = parse_voice(voice)
    return f"{engine}:{name.split('+')[0]}" if engine == "espeak" else f"{engine}:{name}"


def is_held_out_voice(voice: str) -> bool:
    """Whether a voice (any variant of it) is kept for the evaluation (`HELD_OUT_VOICES`)."""
    return voice_id(voice) in HELD_OUT_VOICES


def synthesize(text: str, voice: str = "en-us", rate: int = 160, pitch: int = 50,
               sample_rate: int = TARGET_RATE, isolated: bool = True) -> Speech:
    """Speak `text`; return float32 samples at `sample_rate` and the phoneme track.

    `voice`: an espeak-ng voice (`en-us`, `en-gb`, with an optional variant: `en-gb+f3`), or
    `engine:name` (`flite:slt`, `festival:kal_diphone`; see `engines.py`); `rate` in words per
    minute (80–450; flite and festival take 160 as their own normal timing), `pitch` the base
    pitch (0–100, 50 = the voice's normal; ±50 = ±6 half-tones for flite and festival).
    """
    if not text.strip():
        raise SpeechError("the text to speak is empty")
    if not RATE_MIN <= rate <= RATE_MAX:
        raise SpeechError(f"rate {rate} wpm is outside the range {RATE_MIN}–{RATE_MAX}")
    if not 0 <= pitch <= 100:
        raise SpeechError(f"pitch {pitch} is outside 0–100")
    engine, name = parse_voice(voice)
    if engine != "espeak":
        from . import engines

        samples, native, items = getattr(engines, engine)(text, name, float(rate), float(pitch))
        from trainers.data.audio_features import resample_audio

        audio = np.clip(resample_audio(samples, native, sample_rate), -1.0, 1.0)
        track = PhonemeTrack.from_items(items)
        if len(track):
            track.end[-1] = np.float32(len(audio) / float(sample_rate))
        return Speech(audio, sample_rate, track)
    voice = name
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
    """Names `synthesize` accepts: espeak-ng's voice languages (mbrola voices excluded), then the
    installed flite and festival voices as `flite:NAME`, `festival:NAME`."""
    from .engines import festival_voices, flite_voices

    espeak = sorted({lang for _, ident, langs in _ESPEAK.voices() if not ident.startswith("mb/") for _, lang in langs})
    return espeak + [f"flite:{v}" for v in flite_voices()] + [f"festival:{v}" for v in festival_voices()]


def voice_known(voice: str, known: Sequence[str]) -> bool:
    """Whether `voice` (with an optional espeak-ng +variant) names one of `known` (from list_voices)."""
    engine, name = parse_voice(voice)
    if engine == "espeak":
        return name.split("+")[0] in known or f"espeak:{name.split('+')[0]}" in known
    return f"{engine}:{name}" in known
