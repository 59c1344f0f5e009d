"""Phonetic front-end: speech -> phonemes (PocketSphinx) -> per-video-frame phonetic features.

One module for training and inference: the trainers call `phonetic_features` on their
(synthetic) clips and the `AudioFeatures` node (variant `phonetic`) calls the same function on
the user's recording, so a model sees the same representation in both places.

Why phonetic features (a departure from the papers' MFCC / mel inputs): the project has no real
audio-visual training data, only synthetic voices, and spectral features carry the voice — a
model trained on them learns the synthesiser, not speech. A phone recogniser trained on real
speech (PocketSphinx's en-us acoustic model, shipped in its wheel) turns any voice into the same
symbols, and the few acoustic dims kept here are normalised per clip (level, noise floor), so
what the model learns on synthetic voices carries over to real ones.

Recognition (`recognize`). PocketSphinx's all-phone search (CI phone loop with the phone
bigram `en-us-phone.lm.bin`), language weight 2 (its documented setting for phone decoding;
the default 6.5 is for word search: measured here, lip-gap correlation of the viseme mouth
with the truth on espeak-ng speech 0.66 at lw 2 against 0.47 at 6.5), beams 1e-20. The audio is
16 kHz, scaled so its loud rows (95th percentile RMS) sit at -20 dBFS, padded with 0.3 s of faint seeded dither at both ends (the decoder needs silence around
the speech; digital zeros break its cepstral mean normalisation), then 16-bit PCM. Each
segment's confidence is the agreement of a second, differently weighted decode (lw 1): the
fraction of the segment's 10 ms frames where that decode hears a phone of the same viseme
class. The word path (`words`, the default): the same utterance decoded as words with the
wheel's generic English trigram LM, the hypothesis force-aligned, and each word's phones put in
place of the loop's main decode where the word is sure and agrees with the loop
(`fuse_word_phones`). With a transcript, forced alignment instead (`align`: the CMU dictionary's
pronunciations, word pass then phone pass); words missing from the dictionary, or an
alignment that fails, fall back to recognition and say so in `PhoneResult.note`.

Features (`phonetic_features`, `FEATURE_DIM` = 44 per video frame, float32, aligned like
`audio_features`: T = round-half-up(duration * fps), frame t covers [t/fps, (t+1)/fps)):

| dims   | content                                                                              |
|--------|--------------------------------------------------------------------------------------|
| 0..39  | soft phone classes, order `PHONES` (SIL + 39 ARPAbet): 10 ms one-hot frames of the     |
|        | decodes (weight 2/3 for the main decode, 1/3 for the second) smoothed by an           |
|        | asymmetric co-articulation kernel (a phone is anticipated with decay 22 /s and         |
|        | carried over with 32 /s, Cohen & Massaro's rates in nodes/synth/visemes.py), averaged   |
|        | over the video frame; each row sums to 1                                              |
| 40     | voicing: YIN periodicity 1 - d'(tau*) in [0, 1], zero below the loudness floor        |
| 41     | loudness: frame log-RMS relative to the clip, (dB - floor) / (peak - floor) with       |
|        | floor / peak the 10th / 95th percentiles (range at least 20 dB), clipped to [0, 1.5]  |
| 42     | loudness change: dim 41 minus its value one video frame earlier                       |
| 43     | speech: 1 - P(SIL) times a soft gate on loudness above the floor (sigmoid, 3 dB / 3 dB) |

Everything is per clip and relative, so gain, microphone level and a constant noise floor do
not change the features; silence gives SIL = 1, voicing = loudness = speech = 0.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from trainers.data.audio_features import first_rows, frame_count, resample_audio, yin_rows

SAMPLE_RATE = 16000
ROW_RATE = 100  # PocketSphinx frames per second (and the YIN rows')
PHONES: tuple[str, ...] = (
    "SIL", "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH",
    "IH", "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH", "UW",
    "V", "W", "Y", "Z", "ZH",
)
PHONE_INDEX = {p: i for i, p in enumerate(PHONES)}
N_PHONES = len(PHONES)
VOICING, LOUDNESS, LOUDNESS_DELTA, SPEECH = N_PHONES, N_PHONES + 1, N_PHONES + 2, N_PHONES + 3
FEATURE_DIM = N_PHONES + 4
ANTICIPATION, CARRY_OVER = 22.0, 32.0  # 1/s, the co-articulation decay before / after a phone
MAIN_LW, SECOND_LW, BEAM = 2.0, 1.0, 1e-20
# Word path of `recognize`: a recognised word's aligned phones replace the phone loop's where the
# word decoder's posterior is at least WORD_POSTERIOR and the two agree on the viseme class of at
# least WORD_AGREEMENT of the word's rows (docs/lipsync.md "Words first").
WORD_POSTERIOR, WORD_AGREEMENT = 0.3, 0.3
PAD_SECONDS, DITHER = 0.3, 3e-5
WINDOW_CENTRE = 0.0128  # s: a decoder frame's 25.6 ms window is centred this long after the frame's start
SILENCE_DBFS = -70.0  # quieter than this is never speech
MAX_UTTERANCE_S = 60.0  # longer recordings are recognised in pieces cut at pauses (flat memory, issue 16)
RMS_BLOCK_SAMPLES = 60 * SAMPLE_RATE  # rms_rows works a minute at a time (clips up to that: exactly as whole)
GATE_DB = 3.0  # voice activity: this far over the clip's loudness floor (10th percentile)

# Viseme classes of the phones, for the second decode's agreement (the mouth shape matters,
# not the phone): bilabial, labiodental, rounded, open, spread, other consonant, silence.
_CLASS = {
    **dict.fromkeys(("B", "M", "P"), 0), **dict.fromkeys(("F", "V"), 1),
    **dict.fromkeys(("W", "UW", "UH", "OW", "AO", "OY", "R", "SH", "ZH", "CH", "JH"), 2),
    **dict.fromkeys(("AA", "AE", "AH", "AW", "AY", "EH", "ER", "EY"), 3),
    **dict.fromkeys(("IY", "IH", "Y", "S", "Z"), 4), "SIL": 6,
}


def phone_class(phone: str) -> int:
    return _CLASS.get(phone, 5)


PHONE_CLASSES = np.array([phone_class(p) for p in PHONES])  # viseme class of each index of PHONES


def normalize_phone(label: str) -> str:
    """A recogniser / dictionary label as one of `PHONES` (fillers and noise -> SIL, stress dropped)."""
    if not label or label[0] in "+[<" or label.upper() in ("SIL", "SP", "SPN", "NSN"):
        return "SIL"
    base = re.sub(r"(\(\d+\))?[0-2]?$", "", label.upper())
    return base if base in PHONE_INDEX else "SIL"


@dataclasses.dataclass
class PhoneResult:
    """Phones [(ARPAbet label, start s, end s, confidence)], contiguous from 0 to the clip's end."""

    items: list
    mode: str  # "recognised" or "aligned"
    note: str = ""


# ------------------------------------------------------------------------------ decoders

def model_dir() -> Path:
    """PocketSphinx's bundled en-us model folder (inside the wheel; nothing is downloaded)."""
    from pocketsphinx import get_model_path

    return Path(get_model_path()) / "en-us"


def _decoder(kind: str, lw: float):
    """A fresh decoder: PocketSphinx carries state from one utterance to the next (cepstral mean
    and more), so reusing one would make a result depend on what was decoded before."""
    from pocketsphinx import Decoder

    m = model_dir()
    common = dict(hmm=str(m / "en-us"), samprate=SAMPLE_RATE, loglevel="FATAL", lw=lw, beam=BEAM, pbeam=BEAM)
    if kind == "allphone":
        return Decoder(allphone=str(m / "en-us-phone.lm.bin"), **common)
    if kind == "words":  # the generic trigram LM of the wheel, PocketSphinx's default word search
        return Decoder(lm=str(m / "en-us.lm.bin"), dict=str(m / "cmudict-en-us.dict"), **{**common, "beam": 1e-48, "pbeam": 1e-48})
    if kind == "align_wide":  # the retry of a failed alignment: a long utterance can lose every path at 1e-48
        return Decoder(dict=str(m / "cmudict-en-us.dict"), **{**common, "beam": 1e-80, "pbeam": 1e-80, "wbeam": 1e-60})
    return Decoder(dict=str(m / "cmudict-en-us.dict"), **{**common, "beam": 1e-48, "pbeam": 1e-48})


def _pcm(samples: np.ndarray, sample_rate: int) -> tuple[bytes, int]:
    """16 kHz 16-bit PCM with PAD_SECONDS of seeded dither before and after; returns (bytes, pad frames)."""
    x = resample_audio(np.asarray(samples, np.float32), int(sample_rate), SAMPLE_RATE).astype(np.float64)
    # level normalisation: the loud rows (95th percentile RMS) at -20 dBFS, whatever the recording level
    loud = np.percentile(rms_rows(x), 95) if len(x) else 0.0
    if loud > 10 ** (SILENCE_DBFS / 20):
        x = x * min(10 ** (-20.0 / 20) / loud, 1e3)
    pad = int(PAD_SECONDS * SAMPLE_RATE)
    x = np.concatenate([np.zeros(pad), x, np.zeros(pad)])
    x += DITHER * np.random.default_rng(0).standard_normal(len(x))
    return (np.clip(x, -1.0, 1.0) * 32767).astype("<i2").tobytes(), int(PAD_SECONDS * ROW_RATE)


def _row_shift(offset: int) -> int:
    """Decoder frame minus clip row: the PCM's padding, less the frame window's centring."""
    return offset - int(round(WINDOW_CENTRE * ROW_RATE))


def _frame_labels(segments: Sequence[tuple[str, int, int]], n_rows: int, offset: int) -> np.ndarray:
    """Phone index per 10 ms row of the clip from decoder segments (first frame, last frame inclusive).

    Row j is the one centred at j * 10 ms (like the YIN rows); decoder frame i is centred
    WINDOW_CENTRE later than i * 10 ms, i.e. about one row later.
    """
    shift = _row_shift(offset)
    labels = np.zeros(n_rows, np.int64)  # SIL
    for phone, first, last in segments:
        lo, hi = max(first - shift, 0), min(last + 1 - shift, n_rows)
        if hi > lo:
            labels[lo:hi] = PHONE_INDEX[normalize_phone(phone)]
    return labels


def _decode_allphone(pcm: bytes, lw: float) -> list[tuple[str, int, int]]:
    dec = _decoder("allphone", lw)
    dec.start_utt()
    dec.process_raw(pcm, full_utt=True)
    dec.end_utt()
    return [(s.word, int(s.start_frame), int(s.end_frame)) for s in dec.seg()]


def _segments_from_labels(labels: np.ndarray, confidence: np.ndarray, n_samples: int) -> list:
    """Runs of equal labels -> [(phone, start s, end s, mean confidence)], the last ending at the clip's end."""
    if len(labels) == 0:
        return []
    cuts = np.flatnonzero(np.diff(labels)) + 1
    starts, ends = np.r_[0, cuts], np.r_[cuts, len(labels)]
    duration = n_samples / SAMPLE_RATE
    items = []
    for s, e in zip(starts, ends):
        items.append((PHONES[labels[s]], s / ROW_RATE, min(e / ROW_RATE, duration), float(confidence[s:e].mean())))
    if items:
        p, s, _, c = items[-1]
        items[-1] = (p, s, duration, c)
    return [it for it in items if it[2] > it[1]]


def rms_rows(x16: np.ndarray) -> np.ndarray:
    """RMS of 25 ms windows centred every 10 ms, (1 + n // 160,)."""
    from scipy.ndimage import uniform_filter1d

    n = len(x16)
    idx = np.minimum(np.arange(1 + n // 160) * 160, max(n - 1, 0))
    if n == 0:
        return np.zeros(1)
    out = np.empty(len(idx))
    block = RMS_BLOCK_SAMPLES  # a long clip's squared signal whole, in float64, took hundreds of MiB
    for a in range(0, len(idx), block // 160):
        rows = idx[a:a + block // 160]
        lo, hi = (0, n) if n <= block else (max(int(rows[0]) - 400, 0), min(int(rows[-1]) + 400, n))
        x = np.asarray(x16[lo:hi], np.float64)
        power = uniform_filter1d(x * x, size=400, mode="constant")
        out[a:a + len(rows)] = power[rows - lo]
    return np.sqrt(np.maximum(out, 0.0))


def speech_gate(db: np.ndarray, floor: float) -> np.ndarray:
    """Soft voice activity in [0, 1]: loudness GATE_DB over the clip's floor (and over -70 dBFS), 3 dB wide."""
    return 1.0 / (1.0 + np.exp(-(db - max(floor, SILENCE_DBFS) - GATE_DB) / 3.0))


def _gate(rms: np.ndarray, n_rows: int) -> np.ndarray:
    _, db, floor = loudness_rows(rms)
    g = speech_gate(db, floor)
    return np.pad(g, (0, max(0, n_rows - len(g))), mode="edge")[:n_rows]


def utterances(rms: np.ndarray, n_rows: int) -> list[tuple[int, int]]:
    """Row ranges [(first, end)] decoded as separate utterances: the whole clip when it is at most
    MAX_UTTERANCE_S long, else pieces of 2/3 to 1 x that length cut at the quietest 0.3 s of its
    `rms_rows`."""
    from scipy.ndimage import uniform_filter1d

    longest = int(MAX_UTTERANCE_S * ROW_RATE)
    if n_rows <= longest:
        return [(0, n_rows)]
    quiet = uniform_filter1d(rms[:n_rows], size=30, mode="nearest")
    cuts, r0 = [], 0
    while n_rows - r0 > longest:
        lo = r0 + 2 * longest // 3
        cut = lo + int(np.argmin(quiet[lo:r0 + longest]))
        cuts.append((r0, cut))
        r0 = cut
    return [*cuts, (r0, n_rows)]


def _decode_words(pcm: bytes) -> tuple[list[tuple[str, int, int, float]], list[tuple[str, int, int]]]:
    """Word recognition of one utterance with the wheel's generic English LM: the words [(word,
    first frame, last frame, posterior)] (fillers and pauses left out) and their phones [(phone,
    first frame, last frame)] from a forced alignment of the hypothesis (`_align_pcm`; measured
    closer to the truth than the word decoder's own phone alignment: 0.72 against 0.71 on the
    held-out clips)."""
    dec = _decoder("words", 6.5)
    dec.start_utt()
    dec.process_raw(pcm, full_utt=True)
    dec.end_utt()
    if dec.hyp() is None:
        return [], []
    words = [(s.word, int(s.start_frame), int(s.end_frame), float(s.prob)) for s in dec.seg()
             if not s.word.startswith(("<", "[", "+"))]
    phones = _align_pcm(pcm, dec.hyp().hypstr.split()) if dec.hyp().hypstr.strip() else None
    return words, phones or []


def fuse_word_phones(loop: np.ndarray, aligned: np.ndarray, words: Sequence[tuple[str, int, int, float]],
                     shift: int) -> tuple[np.ndarray, int]:
    """The phone loop's row labels with each trusted word's rows replaced by its aligned phones.

    A word is trusted when the word decoder's posterior is at least WORD_POSTERIOR and its aligned
    phones agree with the loop's on the viseme class of at least WORD_AGREEMENT of its rows: two
    independent checks, so a word hallucinated in noise or babble keeps the loop's phones. `shift`:
    rows = decoder frames - shift (see `_frame_labels`). Returns (labels, words trusted)."""
    out, trusted = loop.copy(), 0
    for _, first, last, posterior in words:
        lo, hi = max(first - shift, 0), min(last + 1 - shift, len(loop))
        if hi <= lo or posterior < WORD_POSTERIOR:
            continue
        if (PHONE_CLASSES[loop[lo:hi]] == PHONE_CLASSES[aligned[lo:hi]]).mean() < WORD_AGREEMENT:
            continue
        out[lo:hi] = aligned[lo:hi]
        trusted += 1
    return out, trusted


def recognize(samples: np.ndarray, sample_rate: int, *, words: bool = True) -> tuple[PhoneResult, np.ndarray]:
    """Free recognition. Returns the phones and the soft 10 ms phone posteriors (N, 40).

    The phone loop (all-phone search, two weightings) always runs; with `words` the utterance is
    also decoded as English words with the generic LM and the phones of the words that pass
    `fuse_word_phones` replace the loop's main decode there (a word recogniser knows which phone
    sequences are English; the loop alone does not). Rows quieter than the
    voice-activity gate (`speech_gate`) are silence whatever the decoders heard there (they
    hallucinate in silence and steady noise).
    """
    x16 = resample_audio(np.asarray(samples, np.float32), int(sample_rate), SAMPLE_RATE)
    n16 = len(x16)
    n_rows = max(1, int(np.ceil(n16 / (SAMPLE_RATE / ROW_RATE))))
    rms = rms_rows(x16)  # once: it places the utterance cuts and the voice gate
    main, second = np.zeros(n_rows, np.int64), np.zeros(n_rows, np.int64)
    heard, trusted = 0, 0
    for r0, r1 in utterances(rms, n_rows):
        # one utterance is the whole clip up to MAX_UTTERANCE_S (the decoder's memory grows with it)
        pcm, offset = _pcm(samples, sample_rate) if (r0, r1) == (0, n_rows) else _pcm(x16[r0 * 160:r1 * 160], SAMPLE_RATE)
        main[r0:r1] = _frame_labels(_decode_allphone(pcm, MAIN_LW), r1 - r0, offset)
        second[r0:r1] = _frame_labels(_decode_allphone(pcm, SECOND_LW), r1 - r0, offset)
        if words:
            found, word_phones = _decode_words(pcm)
            aligned = _frame_labels(word_phones, r1 - r0, offset)
            main[r0:r1], n_trusted = fuse_word_phones(main[r0:r1], aligned, found, _row_shift(offset))
            heard, trusted = heard + len(found), trusted + n_trusted
    gate = _gate(rms, n_rows)
    main[gate < 0.5] = 0
    agree = (PHONE_CLASSES[main] == PHONE_CLASSES[second]).astype(np.float64)
    post = np.zeros((n_rows, N_PHONES))
    post[np.arange(n_rows), main] += 2.0 / 3.0
    post[np.arange(n_rows), second] += 1.0 / 3.0
    post = gate[:, None] * post + (1.0 - gate[:, None]) * np.eye(N_PHONES)[0]
    note = f"{trusted} of {heard} recognised words trusted" if words else ""
    return PhoneResult(_segments_from_labels(main, agree, n16), "recognised", note), post


def words_of(transcript: str) -> list[str]:
    """Lower-case words of a transcript as the CMU dictionary spells them (letters and apostrophes)."""
    return re.sub(r"[^a-z' ]+", " ", transcript.lower().replace("’", "'")).split()


def _align_pcm(pcm: bytes, words: Sequence[str], dec=None) -> list[tuple[str, int, int]] | None:
    """Forced alignment of `words` in one utterance: (phone, first frame, last frame), None on
    failure. `dec`: a fresh "align" decoder (one is made if not given). A word pass that fails is
    retried once with wider beams; when the phone pass fails after a good word pass (seen on
    utterances of ~50 s), each word's dictionary phones share its frames evenly (`_spread_phones`)."""
    for kind in ("align", "align_wide"):
        dec = dec or _decoder(kind, 6.5)
        try:
            dec.set_align_text(" ".join(words))
            dec.start_utt()
            dec.process_raw(pcm, full_utt=True)
            dec.end_utt()
            if dec.hyp() is None:
                raise RuntimeError("no path through the words")
            segments = [(s.word, int(s.start_frame), int(s.end_frame)) for s in dec.seg()]
        except RuntimeError:
            dec = None
            continue
        try:
            dec.set_alignment()
            dec.start_utt()
            dec.process_raw(pcm, full_utt=True)
            dec.end_utt()
            return [(p.name, int(p.start), int(p.start + p.duration - 1)) for w in dec.get_alignment() for p in w]
        except RuntimeError:
            return _spread_phones(segments, dec)
    return None


def _spread_phones(segments: list[tuple[str, int, int]], dec) -> list[tuple[str, int, int]]:
    """Phones from a word pass alone: each word's pronunciation (the variant the pass chose) over
    the word's frames in equal shares; pauses and fillers are SIL."""
    out = []
    for word, first, last in segments:
        spelled = dec.lookup_word(word) if not word.startswith(("<", "[", "+")) else None
        phones = spelled.split() if spelled else ["SIL"]
        edges = np.linspace(first, last + 1, len(phones) + 1).round().astype(int)
        out += [(p, int(a), int(max(b - 1, a))) for p, a, b in zip(phones, edges, edges[1:])]
    return out


def transcript_positions(recognised: Sequence[str], cuts: Sequence[int], reference: Sequence[str]) -> list[int]:
    """Where a reference phone string (the transcript's) stands at each cut of a recognised one.

    The least-cost edit alignment of the two strings (substitution 0 for the same phone, 0.5 for the
    same viseme class, else 1; insertion/deletion 1), found with a forward and a backward pass that
    keep one row each (memory linear in the transcript); for cut c (c recognised phones before it)
    the reference index j minimising forward(c, j) + backward(c, j).
    """
    ref = np.array([PHONE_INDEX[normalize_phone(p)] for p in reference], np.int64)
    rec = np.array([PHONE_INDEX[normalize_phone(p)] for p in recognised], np.int64)
    classes = PHONE_CLASSES

    def rows_at(rec: np.ndarray, ref: np.ndarray, wanted: set[int]) -> dict[int, np.ndarray]:
        cols = np.arange(len(ref) + 1, dtype=np.float64)
        row, out = cols.copy(), {}  # row i: cost of rec[:i] against ref[:j] for every j
        if 0 in wanted:
            out[0] = row.copy()
        for i, r in enumerate(rec, 1):
            sub = np.where(ref == r, 0.0, np.where(classes[ref] == classes[r], 0.5, 1.0))
            a = np.empty_like(row)
            a[0] = row[0] + 1.0
            a[1:] = np.minimum(row[1:] + 1.0, row[:-1] + sub)
            row = cols + np.minimum.accumulate(a - cols)  # then deletions of reference phones along the row
            if i in wanted:
                out[i] = row.copy()
        return out

    m, n = len(rec), len(ref)
    fwd = rows_at(rec, ref, set(cuts))
    bwd = rows_at(rec[::-1], ref[::-1], {m - c for c in cuts})
    return [int(np.argmin(fwd[c] + bwd[m - c][::-1])) if n else 0 for c in cuts]


def _align_in_pieces(x16: np.ndarray, rms: np.ndarray, pieces: list[tuple[int, int]], words: list[str],
                     spelled: list[list[str]]) -> tuple[np.ndarray, int]:
    """Forced alignment of a recording longer than one utterance: each piece of `utterances` is
    decoded alone (the decoder's memory grows with the utterance). The words each piece holds come
    from the free recognition of the pieces: its phones against the transcript's pronunciations
    (`transcript_positions`), each cut moved to the nearest word boundary. A piece that will not
    align keeps its recognised phones. `spelled`: each word's dictionary phones. Returns the 10 ms
    phone rows and how many pieces fell back."""
    n_rows = pieces[-1][1]
    recognised_labels, recognised, cuts = np.zeros(n_rows, np.int64), [], []
    pcms = [_pcm(x16[r0 * 160:r1 * 160], SAMPLE_RATE) for r0, r1 in pieces]  # both passes decode the same PCM
    for (r0, r1), (pcm, offset) in zip(pieces, pcms):
        if r0:
            cuts.append(len(recognised))
        segments = _decode_allphone(pcm, MAIN_LW)
        recognised_labels[r0:r1] = _frame_labels(segments, r1 - r0, offset)
        recognised += [normalize_phone(p) for p, *_ in segments if normalize_phone(p) != "SIL"]
    reference = [p for word in spelled for p in word]
    word_starts = np.cumsum([0] + [len(word) for word in spelled])  # phone index of each word boundary
    bounds = [int(np.argmin(np.abs(word_starts - j))) for j in transcript_positions(recognised, cuts, reference)]
    bounds = [0, *np.maximum.accumulate(bounds).tolist(), len(words)]
    labels, fell_back = np.zeros(n_rows, np.int64), 0
    gate = _gate(rms, n_rows)
    for (r0, r1), (pcm, offset), w0, w1 in zip(pieces, pcms, bounds, bounds[1:]):
        if w1 == w0:
            continue  # no words here: silence
        phones = _align_pcm(pcm, words[w0:w1])
        if phones is None:
            fell_back += 1
            labels[r0:r1] = np.where(gate[r0:r1] < 0.5, 0, recognised_labels[r0:r1])
        else:
            labels[r0:r1] = _frame_labels(phones, r1 - r0, offset)
    return labels, fell_back


def align(samples: np.ndarray, sample_rate: int, transcript: str) -> tuple[PhoneResult, np.ndarray]:
    """Forced alignment of a known text; falls back to `recognize` (with a note) when it cannot.

    A recording over MAX_UTTERANCE_S is aligned a piece at a time (`_align_in_pieces`)."""
    words = [w.strip("'") for w in words_of(transcript)]
    words = [w for w in words if w]
    n16 = int(round(len(samples) * SAMPLE_RATE / int(sample_rate)))
    n_rows = max(1, int(np.ceil(n16 / (SAMPLE_RATE / ROW_RATE))))
    if not words:
        result, post = recognize(samples, sample_rate)
        result.note = "the transcript has no words: phones recognised instead"
        return result, post
    dec = _decoder("align", 6.5)
    pronounced = {w: dec.lookup_word(w) for w in set(words)}
    missing = [w for w in words if pronounced[w] is None]
    if missing:
        result, post = recognize(samples, sample_rate)
        result.note = f"words not in the pronunciation dictionary: {', '.join(sorted(set(missing))[:10])}: phones recognised instead"
        return result, post
    note = ""
    if n_rows <= int(MAX_UTTERANCE_S * ROW_RATE):
        pcm, offset = _pcm(samples, sample_rate)
        phones = _align_pcm(pcm, words, dec)
        if phones is None:
            result, post = recognize(samples, sample_rate)
            result.note = "forced alignment failed: phones recognised instead"
            return result, post
        labels = _frame_labels(phones, n_rows, offset)
    else:
        del dec  # each piece gets a fresh decoder (one at a time)
        spelled = [[normalize_phone(p) for p in pronounced[w].split()] for w in words]
        x16 = resample_audio(np.asarray(samples, np.float32), int(sample_rate), SAMPLE_RATE)
        n16 = len(x16)  # resample_poly rounds the length up: count the rows of what is decoded
        n_rows = max(1, int(np.ceil(n16 / (SAMPLE_RATE / ROW_RATE))))
        rms = rms_rows(x16)
        pieces = utterances(rms, n_rows)
        labels, fell_back = _align_in_pieces(x16, rms, pieces, words, spelled)
        if fell_back:
            note = f"forced alignment failed in {fell_back} of {len(pieces)} pieces: their phones recognised instead"
    post = np.zeros((n_rows, N_PHONES))
    post[np.arange(n_rows), labels] = 1.0
    return PhoneResult(_segments_from_labels(labels, np.ones(n_rows), n16), "aligned", note), post


def phones(samples: np.ndarray, sample_rate: int, transcript: str | None = None, *,
           words: bool = True) -> tuple[PhoneResult, np.ndarray]:
    """`align` when a transcript is given, else `recognize` (`words`: with the word path)."""
    if transcript and transcript.strip():
        return align(samples, sample_rate, transcript)
    return recognize(samples, sample_rate, words=words)


def posteriors_from_items(items: Sequence[tuple], n_rows: int) -> np.ndarray:
    """10 ms one-hot phone rows (N, 40) from [(ARPAbet label, start s, end s, ...)] (gaps are SIL)."""
    post = np.zeros((n_rows, N_PHONES))
    labels = np.zeros(n_rows, np.int64)
    for it in items:
        lo, hi = int(round(float(it[1]) * ROW_RATE)), int(round(float(it[2]) * ROW_RATE))
        labels[max(lo, 0):min(hi, n_rows)] = PHONE_INDEX[normalize_phone(str(it[0]))]
    post[np.arange(n_rows), labels] = 1.0
    return post


# ------------------------------------------------------------------------------ features


def coarticulate(post: np.ndarray, rate: float = ROW_RATE, anticipation: float = ANTICIPATION,
                 carry_over: float = CARRY_OVER) -> np.ndarray:
    """Asymmetric exponential smoothing of (N, K) class rows along time, rows renormalised to sum 1.

    Row t becomes sum_s w(s - t) post[s] with w = exp(-anticipation * dt) for later rows (dt > 0:
    the mouth prepares for what comes) and exp(-carry_over * |dt|) for earlier ones.
    """
    from scipy.signal import lfilter

    a_f, a_b = np.exp(-anticipation / rate), np.exp(-carry_over / rate)
    fwd = lfilter([1.0], [1.0, -a_f], post[::-1], axis=0)[::-1]  # sum over s >= t of a_f^(s-t) post[s]
    bwd = lfilter([1.0], [1.0, -a_b], post, axis=0)  # sum over s <= t of a_b^(t-s) post[s]
    out = fwd + bwd - post
    return out / np.maximum(out.sum(axis=1, keepdims=True), 1e-12)


def uncoarticulate(frames: np.ndarray, fps: float, anticipation: float = ANTICIPATION,
                   carry_over: float = CARRY_OVER) -> np.ndarray:
    """Undo `coarticulate` on frame-rate class rows (T, K), e.g. the phone columns of the features.

    The smoothing is (1 - a_f a_b) F B, F and B the one-sided exponential filters, so its inverse
    is two 2-tap filters: x_t = y_t - a_f y_(t+1), then - a_b x_(t-1) (up to a constant scale),
    exact on 10 ms rows. On frame means the decays are taken per frame (a = exp(-rate / fps)), an
    approximation: the smoothing ran on the rows inside each frame. Rows may go negative; what it
    is for is their argmax, the phone said in the frame rather than the one the mouth was
    preparing for.
    """
    y = np.asarray(frames, np.float64)
    a_f, a_b = np.exp(-anticipation / fps), np.exp(-carry_over / fps)
    x = y.copy()
    x[:-1] -= a_f * y[1:]  # undo the anticipation (F)
    x[1:] -= a_b * x[:-1]  # then the carry-over (B); the right side is evaluated before the update
    return x


def loudness_rows(rms: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(normalised loudness in [0, 1.5], dB, floor dB) of 100 Hz RMS rows, relative to the clip."""
    db = 20.0 * np.log10(np.maximum(rms, 1e-5))
    floor, peak = np.percentile(db, 10), np.percentile(db, 95)
    span = max(peak - floor, 20.0)
    return np.clip((db - floor) / span, 0.0, 1.5), db, float(floor)


def frame_means(rows: np.ndarray, n_frames: int, fps: float) -> np.ndarray:
    """(T, D) means of the 100 Hz rows inside each video frame (edge rows repeated)."""
    starts = first_rows(n_frames, fps, ROW_RATE)
    ends = np.maximum(first_rows(n_frames + 1, fps, ROW_RATE)[1:], starts + 1)
    padded = rows[np.clip(np.arange(int(ends.max())), 0, len(rows) - 1)]
    cs = np.concatenate([np.zeros((1, rows.shape[1])), np.cumsum(padded, axis=0)])
    return (cs[ends] - cs[starts]) / (ends - starts)[:, None]


def features_from_posteriors(post: np.ndarray, samples16: np.ndarray, n_frames: int, fps: float = 25.0) -> np.ndarray:
    """(T, 44) features from 10 ms phone posteriors (N, 40) and the 16 kHz samples they came from."""
    n_rows = 1 + len(samples16) // (SAMPLE_RATE // ROW_RATE)
    if len(post) < n_rows:
        post = np.concatenate([post, np.tile(np.eye(N_PHONES)[:1], (n_rows - len(post), 1))])
    post = coarticulate(post[:n_rows])
    _, aperiodicity, _ = yin_rows(samples16.astype(np.float64))
    loud, db, floor = loudness_rows(rms_rows(samples16))
    gate = speech_gate(db, floor)
    voiced = gate * (1.0 - aperiodicity)
    rows = np.concatenate([post, voiced[:, None], loud[:, None], np.zeros((n_rows, 1)),
                           ((1.0 - post[:, 0]) * gate)[:, None]], axis=1)
    out = frame_means(rows, n_frames, fps)
    out[1:, LOUDNESS_DELTA] = np.diff(out[:, LOUDNESS])
    return out.astype(np.float32)


def phonetic_features(samples: np.ndarray, sample_rate: int, *, fps: float = 25.0, num_frames: int | None = None,
                      transcript: str | None = None, items: Sequence[tuple] | None = None,
                      words: bool = True) -> np.ndarray:
    """Per-video-frame phonetic features (T, FEATURE_DIM) of one clip; see the module docstring.

    Phones come from `items` when given ([(ARPAbet label, start s, end s, ...)], e.g. a
    PhonemeTrack from RecognizePhonemes), else from forced alignment of `transcript`, else from
    free recognition.
    """
    samples = np.asarray(samples, np.float32)
    t_count = frame_count(len(samples), int(sample_rate), fps) if num_frames is None else int(num_frames)
    if t_count <= 0:
        raise ValueError(f"audio of {len(samples)} samples at {sample_rate} Hz is shorter than half a video frame")
    x16 = resample_audio(samples, int(sample_rate), SAMPLE_RATE)
    n_rows = 1 + len(x16) // (SAMPLE_RATE // ROW_RATE)
    if items is not None:
        post = posteriors_from_items(items, n_rows)
    else:
        post = phones(samples, sample_rate, transcript, words=words)[1]
    return features_from_posteriors(post, x16, t_count, fps)
