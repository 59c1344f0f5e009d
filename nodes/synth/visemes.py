"""Phonemes -> per-frame mouth coefficients: a viseme table plus co-articulation.

Phoneme names are eSpeak's ASCII mnemonics (what libespeak-ng reports in its phoneme events;
`espeak-ng -x` prints the same names). The English set covered explicitly:

    pauses       _  _:  _!  _^_  (any name starting with "_")
    bilabial     p b m
    labiodental  f v
    dental       T (thin)  D (this)
    alveolar     t d n l s z t# (flap) t[ n- l- (syllabic) @L (syllabic l)  ?  (glottal stop)
    postalveolar S (ship) Z (measure) tS (church) dZ (judge)
    velar        k g N (sing) x (loch) h
    approximant  r r- w j
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
    **{p: "alveolar" for p in ("t", "d", "n", "l", "t#", "t[", "n-", "l-", "@L")},
    **{p: "sibilant" for p in ("s", "z")},
    **{p: "postalveolar" for p in ("S", "Z", "tS", "dZ")},
    **{p: "velar" for p in ("k", "g", "N", "x")},
    **{p: "glottal" for p in ("h", "?")},
    **{p: "r" for p in ("r", "r-")},
    "w": "w",
    "j": "j",
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


def viseme_for(phoneme: str) -> tuple[tuple[str, ...], bool]:
    """The viseme name(s) of one eSpeak phoneme, and whether the phoneme was in the table."""
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


@dataclasses.dataclass(frozen=True)
class Coarticulation:
    """Cohen–Massaro dominance shape: decay rates (1/s) before and after a segment's plateau."""

    theta_before: float = 22.0  # anticipation: influence halves ~30 ms ahead of the segment's plateau
    theta_after: float = 32.0  # carry-over: halves ~20 ms after it
    plateau: float = 0.6  # fraction of the segment (around its centre) at full dominance
    horizon: float = 0.6  # seconds beyond which a segment's influence is ignored


def frame_times(n_frames: int, fps: float) -> np.ndarray:
    """Frame k shows the interval [k/fps, (k+1)/fps); it is sampled at the interval's centre."""
    return (np.arange(n_frames, dtype=np.float64) + 0.5) / fps


def n_frames_for(duration: float, fps: float) -> int:
    """Video frames for `duration` seconds of audio: round half up, as `trainers.data.audio_features.frame_count`."""
    return max(1, int(np.floor(duration * fps + 0.5)))


def _segments(track: Iterable[tuple[str, float, float]]) -> tuple[list[tuple[str, float, float]], set[str]]:
    """Expand diphthongs into two half-segments; collect phonemes missing from the table."""
    segs, unknown = [], set()
    for phoneme, start, end in track:
        names, known = viseme_for(phoneme)
        if not known:
            unknown.add(phoneme)
        step = (end - start) / len(names)
        for i, name in enumerate(names):
            segs.append((name, start + i * step, start + (i + 1) * step))
    return segs, unknown


def mouth_curves(
    track: Sequence[tuple[str, float, float]],
    n_frames: int,
    fps: float = 25.0,
    amplitude: float = 1.0,
    coart: Coarticulation = Coarticulation(),
) -> tuple[np.ndarray, set[str]]:
    """Per-frame mouth activations (n_frames, 28) from a phoneme track [(phoneme, start_s, end_s)].

    Returns the curves (activation units, scaled by `amplitude`) and the set of phonemes that were
    not in the table (mapped by the fallback rule).
    """
    t = frame_times(n_frames, fps)
    num = np.zeros((n_frames, N_MOUTH), np.float64)
    den = np.zeros((n_frames, N_MOUTH), np.float64)
    # A silent lead-in/out outside the track keeps the mouth at rest there.
    duration = max((e for _, _, e in track), default=0.0)
    segs, unknown = _segments([("_", -1.0, 0.0), *track, ("_", duration, max(duration, t[-1]) + 1.0)])
    for name, start, end in segs:
        vis = VISEMES[name]
        centre, half = 0.5 * (start + end), 0.5 * coart.plateau * (end - start)
        lo, hi = np.searchsorted(t, [start - coart.horizon, end + coart.horizon])
        if hi <= lo:
            continue
        tau = t[lo:hi] - centre
        dist = np.maximum(np.abs(tau) - half, 0.0)
        theta = np.where(tau < 0, coart.theta_before, coart.theta_after)
        d = np.exp(-theta * dist)[:, None] * vis.dominance_vector()[None, :]
        num[lo:hi] += d * vis.target_vector()[None, :]
        den[lo:hi] += d
    curves = np.where(den > 0, num / np.maximum(den, 1e-12), 0.0)
    return (curves * amplitude).astype(np.float32), unknown
