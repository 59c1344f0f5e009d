"""A ctypes binding of libespeak-ng's synthesis and event API (speak_lib.h, API revision 12).

Standard library only: this file also runs as a one-shot worker process
(`python -S -I espeak.py` reads a JSON request on stdin, writes a JSON header line and the PCM),
which is how `speech.synthesize` gets reproducible audio. libespeak-ng keeps state between
utterances that no API call resets (e.g. the pitch-flutter phase, a function-level static in
wavegen.c), so the same text spoken twice in one process differs by a few samples; the first
utterance of a fresh process is always the same.

espeak-ng is initialised once per process in synchronous mode with phoneme events
(`espeakINITIALIZE_PHONEME_EVENTS`); the library is not re-entrant, so synthesis holds a lock.
"""
from __future__ import annotations

import ctypes
import json
import os
import sys
import threading

LIBRARY_NAMES = ("libespeak-ng.so.1", "/usr/lib/x86_64-linux-gnu/libespeak-ng.so.1", "libespeak-ng.so")

# speak_lib.h (API revision 12) constants.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_CHARS_AUTO = 0
_PHONEMES = 0x100
_POS_CHARACTER = 1
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7
_PARAM_RATE, _PARAM_PITCH = 1, 3
_EE_OK = 0
RATE_MIN, RATE_MAX = 80, 450  # words per minute (espeakRATE_MINIMUM/MAXIMUM)


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):  # espeak_EVENT
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # ms
        ("sample", ctypes.c_int),  # sample index at the native rate
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


class _Voice(ctypes.Structure):  # espeak_VOICE
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_void_p),  # (priority byte, language string, NUL)*, then a 0 byte
        ("identifier", ctypes.c_char_p),  # file within espeak-ng-data/voices, e.g. b"gmw/en"
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


class SpeechError(RuntimeError):
    """espeak-ng is missing, a voice is unknown, or synthesis failed."""


class _Espeak:
    """The process-wide handle on libespeak-ng (initialised lazily, again after a fork)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lib: ctypes.CDLL | None = None
        self.pid: int | None = None
        self.native_rate = 0
        self._pcm: list[bytes] = []
        self._events: list[tuple[str, int]] = []
        self._callback = _SynthCallback(self._on_synth)  # kept alive for the library's lifetime

    def _on_synth(self, wav, n_samples, events) -> int:
        if n_samples > 0:
            self._pcm.append(ctypes.string_at(wav, n_samples * 2))
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            ev = events[i]
            if ev.type == _EVENT_PHONEME:
                name = bytes(ev.id.string).split(b"\0", 1)[0].decode("utf-8", "replace")
                self._events.append((name, int(ev.sample)))
            i += 1
        return 0  # 0 = continue synthesis

    def _ensure(self) -> ctypes.CDLL:
        if self.lib is not None and self.pid == os.getpid():
            return self.lib
        lib = None
        for name in LIBRARY_NAMES:
            try:
                lib = ctypes.CDLL(name)
                break
            except OSError:
                continue
        if lib is None:
            raise SpeechError("libespeak-ng is not installed (Debian package libespeak-ng1; `make system` installs it)")
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_ListVoices.argtypes = [ctypes.c_void_p]
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None, _INITIALIZE_PHONEME_EVENTS)
        if rate <= 0:
            raise SpeechError("espeak_Initialize failed: is espeak-ng-data installed (package espeak-ng-data)?")
        lib.espeak_SetSynthCallback(self._callback)
        self.lib, self.pid, self.native_rate = lib, os.getpid(), int(rate)
        return lib

    def voices(self) -> list[tuple[str, str, list[tuple[int, str]]]]:
        """(name, identifier, [(priority, language)]) of every installed voice."""
        lib = self._ensure()
        table = lib.espeak_ListVoices(None)
        out, i = [], 0
        while table[i]:
            v = table[i].contents
            langs, raw = [], ctypes.cast(v.languages, ctypes.POINTER(ctypes.c_ubyte))
            j = 0
            while raw[j] != 0:
                prio, j = raw[j], j + 1
                lang = ctypes.string_at(ctypes.addressof(raw.contents) + j).decode("utf-8", "replace")
                langs.append((int(prio), lang))
                j += len(lang) + 1
            out.append(((v.name or b"").decode(), (v.identifier or b"").decode(), langs))
            i += 1
        return out

    def _set_voice(self, voice: str) -> None:
        """By voice file name (`en-us`, `gmw/en+f3`), else by language (`en-gb+f3` -> `gmw/en+f3`)."""
        lib = self.lib
        if lib.espeak_SetVoiceByName(voice.encode("utf-8")) == _EE_OK:
            return
        base, plus, variant = voice.partition("+")
        matches = [(prio, ident) for _, ident, langs in self.voices() for prio, lang in langs
                   if lang.lower() == base.lower() and not ident.startswith("mb/")]  # mbrola voices need extra data
        for _, ident in sorted(matches):
            if lib.espeak_SetVoiceByName((ident + plus + variant).encode("utf-8")) == _EE_OK:
                return
        raise SpeechError(f"unknown espeak-ng voice {voice!r} (e.g. 'en-us', 'en-gb', 'en-us+f3'; "
                          "`espeak-ng --voices` lists them)")

    def synthesize(self, text: str, voice: str, rate: int, pitch: int) -> tuple[bytes, int, list[tuple[str, int]]]:
        """16-bit PCM (native byte order), the native sample rate and [(phoneme, start sample)]."""
        with self.lock:
            lib = self._ensure()
            self._set_voice(voice)
            lib.espeak_SetParameter(_PARAM_RATE, int(rate), 0)
            lib.espeak_SetParameter(_PARAM_PITCH, int(pitch), 0)
            self._pcm, self._events = [], []
            data = text.encode("utf-8") + b"\0"
            err = lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_AUTO | _PHONEMES, None, None)
            if err != _EE_OK:
                raise SpeechError(f"espeak_Synth failed with code {err} for text {text[:60]!r}")
            pcm, events = b"".join(self._pcm), self._events
            self._pcm, self._events = [], []
            return pcm, self.native_rate, events


_ESPEAK = _Espeak()


def _worker() -> int:
    request = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    try:
        pcm, rate, events = _ESPEAK.synthesize(request["text"], request["voice"], request["rate"], request["pitch"])
    except SpeechError as e:
        sys.stdout.buffer.write(json.dumps({"error": str(e)}).encode() + b"\n")
        return 0
    head = {"rate": rate, "events": events, "bytes": len(pcm), "byteorder": sys.byteorder}
    sys.stdout.buffer.write(json.dumps(head).encode() + b"\n" + pcm)
    return 0


if __name__ == "__main__":
    sys.exit(_worker())
