"""Phone sets: CMU ARPAbet (flite, festival, PocketSphinx) -> eSpeak mnemonics (the viseme table's).

The synthetic dataset and the viseme table (`visemes.py`) speak eSpeak's ASCII mnemonics. flite
and festival (CMU lexicon, "radio" phone set) and PocketSphinx's English model report CMU
ARPAbet phones, lower or upper case, sometimes with a stress digit (`AH0`). Every ARPAbet phone
has one eSpeak counterpart with the same articulation, so a track is converted on ingestion and
the mouth truth is computed by one table whatever engine spoke.
"""
from __future__ import annotations

import re

# ARPAbet (CMU dictionary set + the syllabic/flap/pause extras of festival's radio phone set).
ARPABET_TO_ESPEAK: dict[str, str] = {
    # vowels
    "aa": "A:", "ae": "a", "ah": "V", "ao": "O:", "aw": "aU", "ax": "@", "axr": "3", "ay": "aI",
    "eh": "E", "er": "3:", "ey": "eI", "ih": "I", "ix": "I2", "iy": "i:", "ow": "oU", "oy": "OI",
    "uh": "U", "uw": "u:", "ux": "u:",
    # consonants
    "b": "b", "ch": "tS", "d": "d", "dh": "D", "dx": "t#", "f": "f", "g": "g", "hh": "h", "h": "h",
    "jh": "dZ", "k": "k", "l": "l", "el": "@L", "m": "m", "em": "m", "n": "n", "en": "n-", "nx": "n",
    "ng": "N", "p": "p", "q": "?", "r": "r", "s": "s", "sh": "S", "t": "t", "th": "T", "v": "v",
    "w": "w", "wh": "w", "y": "j", "z": "z", "zh": "Z",
    # pauses and non-speech (PocketSphinx fillers included): all rest
    "pau": "_", "sil": "_", "h#": "_", "ssil": "_", "brth": "_:", "+breath+": "_:", "+noise+": "_!",
    "+nsn+": "_!", "+spn+": "_!", "+um+": "@", "+uh+": "@", "+cough+": "_!", "+laugh+": "_!",
}
_STRESS = re.compile(r"[0-2]$")


def arpabet_to_espeak(phone: str) -> str:
    """The eSpeak mnemonic of one ARPAbet phone (`AH0`, `ah`, `SIL`, `+NOISE+`); unknown -> ValueError."""
    key = _STRESS.sub("", phone.strip().lower())
    try:
        return ARPABET_TO_ESPEAK[key]
    except KeyError:
        raise ValueError(f"not an ARPAbet phone: {phone!r}") from None
