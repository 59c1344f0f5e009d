"""Phonemes -> per-frame mouth coefficients: a viseme table plus co-articulation.

Phoneme names are eSpeak's ASCII mnemonics (what libespeak-ng reports in its phoneme events;
`espeak-ng -x` prints the same names). The English set covered explicitly:

    pauses       _  _:  _!  _^_  (any name starting with "_"; consecutive pauses count as one, and one
                 of at least `Coarticulation.close_pause` s closes the lips: people stop talking
                 with their mouth shut, whatever their face does while they speak)
    bilabial     p b m
    labiodental  f v
    dental       T (thin)  D (this)
    alveolar     t d n l s z t# (flap) t[ n- l- (syllabic) @L (syllabic l)  ?  (glottal stop)
    postalveolar S (ship) Z (measure) tS (church) dZ (judge)
    velar        k g N (sing) x (loch) h
    approximant  r r- w j ;
    vowels       a a# aa A: A@ V VR 0 O: O2 O@ o@ oU OI E e e@ eI I I2 IR i i: i@ i@3 U U@ u: @ @2 @5 @- 3 3:
    diphthongs   aI aI2 aI3 aI@ aU eI oU OI (two targets, one per half of the segment)

Other names are reduced to a base (diacritics `# [ - ; :` and digits stripped) and, failing
that, treated as a neutral vowel or consonant by their first letter; `viseme_for` reports which.

Each viseme has targets over the 28 mouth components of the project's 3DMM (activation units,
0 = the portrait's own rest expression, 1 = the component's full deformation; `mouth_close`
is the exception: the *fraction* of the jaw opening the lips cancel, see `animate.combine`) and a
*dominance* per articulator group (jaw, lips). Co-articulation follows Cohen & Massaro (1993,
"Modeling coarticulation in synthetic visual speech"): every segment s has a dominance
function D_s(t) = a_s exp(-theta |t - c_s|) around its centre c_s (flat over the segment's middle,
a steeper decay after the segment than before it, i.e. anticipatory co-articulation), and the
trajectory of component k is the dominance-weighted mean of the targets,
y_k(t) = sum_s D_sk(t) T_sk / sum_s D_sk(t). Segments that do not control an articulator group
(e.g. /t/ for the lips) have a weak dominance there, so neighbouring vowels shape them (the
rounded /t/ of "too"), while bilabials dominate the lips strongly enough to close them in fast speech.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from .speech import is_pause

MOUTH_COMPONENTS = (
    "jaw_open", "jaw_left", "jaw_right", "jaw_forward", "mouth_close", "lip_pucker", "lip_funnel",
    "smile_left", "smile_right", "frown_left", "frown_right", "dimple_left", "dimple_right",
    "stretch_left", "stretch_right", "roll_lower", "roll_upper", "shrug_lower", "shrug_upper",
    "press_left", "press_right", "lower_down_left", "lower_down_right", "upper_up_left", "upper_up_right",
    "mouth_left", "mouth_right", "cheek_puff",
)
BROW_COMPONENTS = ("brow_down_left", "brow_down_right", "brow_inner_up", "brow_outer_up_left", "brow_outer_up_right")
N_MOUTH = len(MOUTH_COMPONENTS)
_INDEX = {name: i for i, name in enumerate(MOUTH_COMPONENTS)}

JAW = ("jaw_open", "jaw_left", "jaw_right", "jaw_forward")
LIPS = tuple(c for c in MOUTH_COMPONENTS if c not in JAW)
_GROUPS = {"jaw": JAW, "lips": LIPS}
WEAK = 0.04  # dominance of a segment over an articulator group it does not control


@dataclasses.dataclass(frozen=True)
class Viseme:
    name: str
    targets: Mapping[str, float]  # pair names expand: "smile" -> smile_left/right, "roll" -> roll_lower/upper
    control: Mapping[str, float]  # articulator group -> dominance magnitude a_s

    def target_vector(self) -> np.ndarray:
        v = np.zeros(N_MOUTH, np.float32)
        for name, value in self.targets.items():
            for full in _expand(name):
                v[_INDEX[full]] = value
        return v

    def dominance_vector(self) -> np.ndarray:
        d = np.full(N_MOUTH, WEAK, np.float32)
        for group, a in self.control.items():
            d[[_INDEX[c] for c in _GROUPS[group]]] = a
        return d


def _expand(name: str) -> tuple[str, ...]:
    if name in _INDEX:
        return (name,)
    for pair in ((f"{name}_left", f"{name}_right"), (f"{name}_lower", f"{name}_upper")):
        if all(p in _INDEX for p in pair):
            return pair
    raise KeyError(f"unknown mouth component {name!r}")


def _v(name: str, control: Mapping[str, float], **targets: float) -> Viseme:
    return Viseme(name, targets, control)


BOTH = {"jaw": 0.6, "lips": 0.6}  # vowels: jaw height and lip shape both matter
STRONG_LIPS = {"jaw": 0.9, "lips": 1.0}
LIPS_ONLY = {"jaw": 0.25, "lips": 0.8}
TONGUE = {"jaw": 0.35}  # tongue consonants: the jaw is half-constrained, the lips free

VISEMES: dict[str, Viseme] = {v.name: v for v in [
    _v("rest", {"jaw": 0.45, "lips": 0.45}),
    # a pause long enough to stop talking: the lips close and relax, the jaw rests
    _v("rest_closed", {"jaw": 0.45, "lips": 0.6}, mouth_close=1.0),
    _v("bilabial", STRONG_LIPS, jaw_open=0.02, mouth_close=1.0, press=0.45, roll=0.1),
    _v("labiodental", {"jaw": 0.7, "lips": 0.9}, jaw_open=0.1, roll_lower=0.55, upper_up=0.3, shrug_upper=0.1),
    _v("dental", TONGUE, jaw_open=0.18, lower_down=0.15),
    _v("alveolar", TONGUE, jaw_open=0.12),
    _v("sibilant", {"jaw": 0.6, "lips": 0.3}, jaw_open=0.05, stretch=0.25, smile=0.1),
    _v("postalveolar", LIPS_ONLY, jaw_open=0.1, lip_pucker=0.3, lip_funnel=0.45, upper_up=0.15, lower_down=0.15),
    _v("velar", TONGUE, jaw_open=0.18),
    _v("glottal", {"jaw": 0.2}, jaw_open=0.22),
    _v("r", LIPS_ONLY, jaw_open=0.12, lip_pucker=0.25, lip_funnel=0.2),
    _v("w", STRONG_LIPS, jaw_open=0.05, mouth_close=0.5, lip_pucker=0.7, lip_funnel=0.2),
    _v("j", {"jaw": 0.4, "lips": 0.5}, jaw_open=0.08, stretch=0.3, smile=0.15),
    _v("open", BOTH, jaw_open=0.75, lower_down=0.2),
    _v("open_front", BOTH, jaw_open=0.65, stretch=0.15, lower_down=0.15),
    _v("open_mid", BOTH, jaw_open=0.55, lower_down=0.1),
    _v("open_round", BOTH, jaw_open=0.55, lip_funnel=0.25),
    _v("mid_round", BOTH, jaw_open=0.45, lip_funnel=0.45, lip_pucker=0.2),
    _v("mid_front", BOTH, jaw_open=0.4, stretch=0.25, smile=0.1),
    _v("close_front", BOTH, jaw_open=0.18, stretch=0.4, smile=0.25),
    _v("near_close_front", BOTH, jaw_open=0.22, stretch=0.3, smile=0.15),
    _v("close_back", {"jaw": 0.6, "lips": 0.8}, jaw_open=0.15, mouth_close=0.4, lip_pucker=0.75, lip_funnel=0.15),
    _v("near_close_back", BOTH, jaw_open=0.22, mouth_close=0.25, lip_pucker=0.45, lip_funnel=0.15),
    _v("schwa", {"jaw": 0.45, "lips": 0.3}, jaw_open=0.3),
    _v("nurse", BOTH, jaw_open=0.3, lip_funnel=0.2, lip_pucker=0.15),
]}

# eSpeak mnemonic -> viseme name, or a pair (first half, second half) for diphthongs.
PHONEME_VISEMES: dict[str, str | tuple[str, str]] = {
    **{p: "bilabial" for p in ("p", "b", "m")},
    **{p: "labiodental" for p in ("f", "v")},
    **{p: "dental" for p in ("T", "D")},
    # t2: en-us's tapped / unreleased t ("into"); w#: en-gb-scotland's voiceless wh ("where")
    **{p: "alveolar" for p in ("t", "d", "n", "l", "t#", "t[", "t2", "n-", "l-", "@L")},
    **{p: "sibilant" for p in ("s", "z")},
    **{p: "postalveolar" for p in ("S", "Z", "tS", "dZ")},
    **{p: "velar" for p in ("k", "g", "N", "x")},
    **{p: "glottal" for p in ("h", "?")},
    **{p: "r" for p in ("r", "r-")},
    **{p: "w" for p in ("w", "w#")},
    **{p: "j" for p in ("j", ";")},  # ";": espeak-ng's linking glide between vowels ("balcony overlooking")
    **{p: "open" for p in ("A:", "A@", "aa", "VR")},
    **{p: "open_front" for p in ("a", "a#")},
    "V": "open_mid",
    "0": "open_round",
    **{p: "mid_round" for p in ("O:", "O2", "O@", "o@")},
    **{p: "mid_front" for p in ("E", "e", "e@")},
    **{p: "close_front" for p in ("i", "i:")},
    **{p: "near_close_front" for p in ("I", "I2", "IR", "I#", "i@", "i@3")},
    "u:": "close_back",
    **{p: "near_close_back" for p in ("U", "U@")},
    **{p: "schwa" for p in ("@", "@2", "@5", "@-", "3")},
    "3:": "nurse",
    **{p: ("open_front", "near_close_front") for p in ("aI", "aI2", "aI3", "aI@")},
    "aU": ("open_front", "near_close_back"),
    "eI": ("mid_front", "near_close_front"),
    "oU": ("mid_round", "near_close_back"),
    "OI": ("mid_round", "near_close_front"),
}
_VOWEL_LETTERS = set("aeiouAEIOUV03@")

# ARPAbet (the CMU dictionary's and PocketSphinx's en-us phone set; stress digits and
# `(2)`-style variant marks are stripped) -> viseme. AH covers both the strut vowel and
# schwa in CMU transcriptions; unstressed schwa is far more frequent in running speech.
ARPABET_VISEMES: dict[str, str | tuple[str, str]] = {
    **{p: "bilabial" for p in ("P", "B", "M")},
    **{p: "labiodental" for p in ("F", "V")},
    **{p: "dental" for p in ("TH", "DH")},
    **{p: "alveolar" for p in ("T", "D", "N", "L", "DX", "EL", "EN", "NX")},
    **{p: "sibilant" for p in ("S", "Z")},
    **{p: "postalveolar" for p in ("SH", "ZH", "CH", "JH")},
    **{p: "velar" for p in ("K", "G", "NG")},
    **{p: "glottal" for p in ("HH", "Q")},
    "R": "r", "W": "w", "WH": "w", "Y": "j",
    "AA": "open", "AE": "open_front", "AH": "schwa", "AX": "schwa", "AO": "mid_round",
    "EH": "mid_front", "ER": "nurse", "AXR": "nurse", "IH": "near_close_front", "IX": "near_close_front",
    "IY": "close_front", "UH": "near_close_back", "UW": "close_back", "UX": "close_back",
    "AW": ("open_front", "near_close_back"), "AY": ("open_front", "near_close_front"),
    "EY": ("mid_front", "near_close_front"), "OW": ("mid_round", "near_close_back"),
    "OY": ("mid_round", "near_close_front"),
}
ALPHABETS = ("espeak", "arpabet")


def is_arpabet_pause(phoneme: str) -> bool:
    """PocketSphinx's silence and filler units (SIL, <sil>, +NSN+, [NOISE], ...) and empty labels."""
    return phoneme in ("", "SIL", "sil", "<sil>", "<s>", "</s>") or phoneme[0] in "+[<"


def _arpabet_viseme(phoneme: str) -> tuple[tuple[str, ...], bool]:
    if is_arpabet_pause(phoneme):
        return ("rest",), True
    base = re.sub(r"(\(\d+\))?[0-2]?$", "", phoneme.upper())
    entry = ARPABET_VISEMES.get(base)
    if entry is None:
        return (("schwa",) if base[:1] in "AEIOU" else ("alveolar",)), False
    return ((entry,) if isinstance(entry, str) else tuple(entry)), True


def viseme_for(phoneme: str, alphabet: str = "espeak") -> tuple[tuple[str, ...], bool]:
    """The viseme name(s) of one phoneme, and whether the phoneme was in the table.

    `alphabet` "espeak" (eSpeak mnemonics, the synthesiser's) or "arpabet" (CMU / PocketSphinx,
    the recogniser's; stress digits and `(2)` variant marks are ignored).
    """
    if alphabet == "arpabet":
        return _arpabet_viseme(phoneme)
    if alphabet != "espeak":
        raise ValueError(f"unknown phoneme alphabet {alphabet!r}; choose from {ALPHABETS}")
    if is_pause(phoneme):
        return ("rest",), True
    entry = PHONEME_VISEMES.get(phoneme)
    if entry is None:
        entry = PHONEME_VISEMES.get(re.sub(r"[#\[\-;:0-9]+$", "", phoneme) or phoneme)
        known = False
    else:
        known = True
    if entry is None:
        entry = "schwa" if phoneme[0] in _VOWEL_LETTERS else "alveolar"
    return ((entry,) if isinstance(entry, str) else tuple(entry)), known


def _merge_pauses(track: Sequence[tuple], alphabet: str = "espeak") -> list[tuple]:
    """Consecutive pauses as one (a sentence's trailing pause + a gap + the next one's leading pause).

    Items are (phoneme, start, end, weight); a merged pause keeps the first one's label and weight.
    """
    pause = is_arpabet_pause if alphabet == "arpabet" else is_pause
    out: list[tuple] = []
    for p, s, e, w in track:
        if out and pause(p) and pause(out[-1][0]) and s <= out[-1][2] + 1e-6:
            out[-1] = (out[-1][0], out[-1][1], max(e, out[-1][2]), out[-1][3])
        else:
            out.append((p, s, e, w))
    return out


@dataclasses.dataclass(frozen=True)
class Coarticulation:
    """Cohen–Massaro dominance shape: decay rates (1/s) before and after a segment's plateau."""

    theta_before: float = 22.0  # anticipation: influence halves ~30 ms ahead of the segment's plateau
    theta_after: float = 32.0  # carry-over: halves ~20 ms after it
    plateau: float = 0.6  # fraction of the segment (around its centre) at full dominance
    max_edge: float = 0.08  # ... but at most this much (s) of each end is outside it (long pauses hold their shape)
    horizon: float = 0.6  # seconds beyond which a segment's influence is ignored
    close_pause: float = 0.25  # pauses at least this long (s) close the lips (0: never; pauses keep the rest face)


def frame_times(n_frames: int, fps: float) -> np.ndarray:
    """Frame k shows the interval [k/fps, (k+1)/fps); it is sampled at the interval's centre."""
    return (np.arange(n_frames, dtype=np.float64) + 0.5) / fps


def n_frames_for(duration: float, fps: float) -> int:
    """Video frames for `duration` seconds of audio: round half up, as `trainers.data.audio_features.frame_count`."""
    return max(1, int(np.floor(duration * fps + 0.5)))


def _segments(track: Iterable[tuple], close_pause: float = 0.0, alphabet: str = "espeak",
              ) -> tuple[list[tuple[str, float, float, float]], set[str]]:
    """Expand diphthongs into two half-segments; long pauses close the lips; collect phonemes
    missing from the table. Items are (phoneme, start, end, weight); segments keep the weight."""
    segs, unknown = [], set()
    for phoneme, start, end, weight in track:
        names, known = viseme_for(phoneme, alphabet)
        if names == ("rest",) and close_pause > 0 and end - start >= close_pause:
            names = ("rest_closed",)
        if not known:
            unknown.add(phoneme)
        step = (end - start) / len(names)
        for i, name in enumerate(names):
            segs.append((name, start + i * step, start + (i + 1) * step, weight))
    return segs, unknown


def mouth_curves(
    track: Sequence[tuple[str, float, float]],
    n_frames: int,
    fps: float = 25.0,
    amplitude: float = 1.0,
    coart: Coarticulation = Coarticulation(),
    alphabet: str = "espeak",
    weights: Sequence[float] | None = None,
) -> tuple[np.ndarray, set[str]]:
    """Per-frame mouth activations (n_frames, 28) from a phoneme track [(phoneme, start_s, end_s)].

    Returns the curves (activation units, scaled by `amplitude`) and the set of phonemes that were
    not in the table (mapped by the fallback rule). `alphabet` names the track's phoneme set
    ("espeak" or "arpabet"). `weights` (one per phoneme, e.g. a recogniser's confidence in
    [0, 1]) scale each segment's dominance: an uncertain segment yields to its neighbours.
    """
    t = frame_times(n_frames, fps)
    num = np.zeros((n_frames, N_MOUTH), np.float64)
    den = np.zeros((n_frames, N_MOUTH), np.float64)
    # A silent lead-in/out outside the track keeps the mouth at rest there.
    track = [(str(it[0]), float(it[1]), float(it[2])) for it in track]  # extra fields (confidence) ignored
    duration = max((e for _, _, e in track), default=0.0)
    pause = "_" if alphabet == "espeak" else "SIL"
    w = [1.0] * len(track) if weights is None else [max(float(x), 1e-3) for x in weights]
    if len(w) != len(track):
        raise ValueError(f"{len(w)} weights for {len(track)} phonemes")
    weighted = [(p, s0, e0, wk) for (p, s0, e0), wk in zip(track, w)]
    edges = [(pause, -1.0, 0.0, 1.0), *weighted, (pause, duration, max(duration, t[-1]) + 1.0, 1.0)]
    segs, unknown = _segments(_merge_pauses(edges, alphabet), coart.close_pause, alphabet)
    for name, start, end, weight in segs:
        vis = VISEMES[name]
        centre = 0.5 * (start + end)
        half = max(0.5 * coart.plateau * (end - start), 0.5 * (end - start) - coart.max_edge)
        lo, hi = np.searchsorted(t, [start - coart.horizon, end + coart.horizon])
        if hi <= lo:
            continue
        tau = t[lo:hi] - centre
        dist = np.maximum(np.abs(tau) - half, 0.0)
        theta = np.where(tau < 0, coart.theta_before, coart.theta_after)
        d = weight * np.exp(-theta * dist)[:, None] * vis.dominance_vector()[None, :]
        num[lo:hi] += d * vis.target_vector()[None, :]
        den[lo:hi] += d
    curves = np.where(den > 0, num / np.maximum(den, 1e-12), 0.0)
    return (curves * amplitude).astype(np.float32), unknown
