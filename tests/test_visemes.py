"""Viseme table, co-articulation and the non-verbal motion curves."""
from __future__ import annotations

import numpy as np
import pytest

from nodes.synth.motion import HeadMotion, blink_curve, brow_curves, head_motion, loudness_curve, pitch_track
from nodes.synth.speech import synthesize
from nodes.synth.visemes import (
    MOUTH_COMPONENTS,
    N_MOUTH,
    PHONEME_VISEMES,
    VISEMES,
    Coarticulation,
    frame_times,
    mouth_curves,
    n_frames_for,
    viseme_for,
)

JAW, CLOSE, PUCKER = (MOUTH_COMPONENTS.index(n) for n in ("jaw_open", "mouth_close", "lip_pucker"))
# Every phoneme the English espeak-ng voices produced for a pangram-rich text (en-us, en-gb, en-gb-x-rp,
# en-gb-scotland, en-029, en-us-nyc) and for every sentence of nodes/synth/sentences.py (with those and
# en-gb-x-gbclan, en-gb-x-gbcwmd): all must be in the table, not left to the fallback.
ESPEAK_ENGLISH = ("0 3 3: ? @ @2 @L A: A@ D E I I2 IR N O2 O: O@ OI S T U U@ V VR Z _ _: a a# aI aI2 aI3 aI@ aU aa "
                  "b d dZ e@ eI f g h i i: i@3 j k l m n n- o@ oU p r r- s t t# t2 tS t[ u: v w w# x z ;").split()


def test_table_covers_espeak_english_and_is_well_formed():
    for p in ESPEAK_ENGLISH:
        names, known = viseme_for(p)
        assert known, p
        assert all(n in VISEMES for n in names)
    for v in VISEMES.values():
        t, d = v.target_vector(), v.dominance_vector()
        assert t.shape == d.shape == (N_MOUTH,)
        assert np.all((t >= 0) & (t <= 1)) and np.all(d > 0)
    for entry in PHONEME_VISEMES.values():
        assert all(n in VISEMES for n in ((entry,) if isinstance(entry, str) else entry))


@pytest.mark.parametrize("voice, sentence, phoneme, viseme", [
    ("en-us", "He poured warm water into the mug and stirred it with a spoon.", "t2", "alveolar"),
    ("en-gb-scotland", "Do you remember where we parked the car this morning?", "w#", "w"),
])
def test_espeak_variants_the_training_voices_speak_are_in_the_table(voice, sentence, phoneme, viseme):
    """Phonemes the dataset build warned about (issue 11): the voices really produce them, and the
    table maps them without the fallback."""
    sp = synthesize(sentence, voice=f"espeak:{voice}", rate=160)
    assert phoneme in [p for p, _, _ in sp.phonemes.items()]
    assert viseme_for(phoneme) == ((viseme,), True)
    _, unknown = mouth_curves(sp.phonemes.items(), n_frames_for(len(sp.samples) / sp.sample_rate, 25.0))
    assert unknown == set()


def test_unknown_phonemes_fall_back_by_class():
    assert viseme_for("e#")[0] == ("mid_front",) and not viseme_for("e#")[1]
    assert viseme_for("Q9")[1] is False
    assert viseme_for("_!") == (("rest",), True)


def _track(*segs):
    out, t = [], 0.0
    for p, d in segs:
        out.append((p, t, t + d))
        t += d
    return out


def test_bilabials_close_and_vowels_open():
    track = _track(("_", 0.3), ("m", 0.09), ("A:", 0.2), ("m", 0.09), ("A:", 0.2), ("_", 0.4))
    n = n_frames_for(track[-1][2], 25)
    m, unknown = mouth_curves(track, n)
    assert unknown == set()
    t = frame_times(n, 25)
    at = lambda s: int(np.argmin(np.abs(t - s)))  # noqa: E731
    vowel1, cons2, vowel2 = at(0.49), at(0.635), at(0.78)
    assert m[vowel1, JAW] > 0.5 and m[vowel2, JAW] > 0.5
    assert m[cons2, JAW] < 0.5 * m[vowel1, JAW]
    assert m[cons2, CLOSE] > 0.3 > m[vowel2, CLOSE]
    rest = np.delete(np.concatenate([m[:3], m[-3:]]), CLOSE, axis=1)
    assert np.all(rest < 0.05) and np.all(m[:3, CLOSE] > 0.95) and np.all(m[-3:, CLOSE] > 0.95)  # lips shut at rest


def test_long_pauses_close_the_lips_short_ones_do_not():
    def closure_in_gap(gap: float) -> float:
        track = _track(("_", 0.3), ("A:", 0.25), ("_", gap), ("A:", 0.25), ("_", 0.3))
        m, _ = mouth_curves(track, n_frames_for(track[-1][2], 25))
        mid = int((0.55 + gap / 2) * 25)
        return float(m[mid, CLOSE])

    assert closure_in_gap(0.6) > 0.9  # a breath between phrases: mouth shut
    assert closure_in_gap(0.08) < 0.1  # a word boundary: no closure
    m_off, _ = mouth_curves(_track(("_", 0.6), ("A:", 0.3)), 23, coart=Coarticulation(close_pause=0))
    assert np.all(m_off[:5] < 0.05)  # close_pause=0: pauses keep the portrait's rest face


def test_anticipatory_rounding():
    """Co-articulation: the /t/ of "too" is rounder than the /t/ of "tea"."""
    too = _track(("_", 0.3), ("t", 0.08), ("u:", 0.25), ("_", 0.3))
    tea = _track(("_", 0.3), ("t", 0.08), ("i:", 0.25), ("_", 0.3))
    frame = int(0.34 * 25)
    assert mouth_curves(too, 40)[0][frame, PUCKER] > mouth_curves(tea, 40)[0][frame, PUCKER] + 0.15


def test_curves_from_real_speech_are_smooth_and_syllabic():
    s = synthesize("Mama made a map of the moon, Bob.", voice="en-us", rate=150)
    n = n_frames_for(len(s.samples) / s.sample_rate, 25)
    m, unknown = mouth_curves(s.phonemes.items(), n)
    assert unknown == set() and m.shape == (n, N_MOUTH)
    steps = np.abs(np.diff(m, axis=0)).max(axis=0)
    assert np.delete(steps, CLOSE).max() < 0.4 and steps[CLOSE] < 0.6  # no frame-to-frame jumps (closure is a fraction)
    jaw = m[:, JAW]
    # The jaw opens and closes with the syllables: many local maxima with deep dips between them.
    peaks = np.flatnonzero((jaw[1:-1] > jaw[:-2]) & (jaw[1:-1] >= jaw[2:]) & (jaw[1:-1] > 0.3)) + 1
    assert len(peaks) >= 5
    assert jaw.max() - jaw.min() > 0.4


def test_blinks_are_seeded_brief_and_realistic_in_rate():
    b = blink_curve(25 * 120, 25.0, seed=3)
    assert b.dtype == np.float32 and b.min() >= 0 and b.max() <= 1
    np.testing.assert_array_equal(b, blink_curve(25 * 120, 25.0, seed=3))
    assert not np.array_equal(b, blink_curve(25 * 120, 25.0, seed=4))
    shut = b > 0.5
    onsets = np.flatnonzero(shut[1:] & ~shut[:-1])
    assert 15 <= len(onsets) <= 60  # ~17 a minute over 2 minutes
    assert shut.mean() < 0.1  # eyes are open most of the time


def test_pitch_track_matches_a_known_tone():
    sr, f = 16000, 137.0
    t = np.arange(sr * 2) / sr
    x = sum(np.sin(2 * np.pi * f * k * t) / k for k in range(1, 6)).astype(np.float32) * 0.3
    x[: sr // 2] = 0  # half a second of silence
    f0, voiced = pitch_track(x, sr, 50)
    assert np.all(f0[:12] == 0)
    np.testing.assert_allclose(f0[14:], f, rtol=0.01)
    assert voiced[20] == 1.0


def test_brows_follow_pitch():
    f0 = np.concatenate([np.full(30, 120.0), np.full(20, 200.0), np.full(30, 120.0)])
    brows = brow_curves(f0, seed=0)
    assert brows.shape == (80, 5)
    assert brows[40, 2] > 0.2 and brows[5, 2] < 0.02  # inner brow raise on the pitch accent


def test_head_motion_is_seeded_smooth_and_in_range():
    n = 25 * 200
    h = head_motion(n, 25.0, seed=1, face_size=200.0)
    assert h.shape == (n, 6)
    np.testing.assert_array_equal(h, head_motion(n, 25.0, seed=1, face_size=200.0))
    want = np.array(HeadMotion().std) * np.array([1, 1, 1, 200, 200, 1])
    np.testing.assert_allclose(h.std(axis=0), want, rtol=0.35)
    assert np.degrees(np.abs(h[:, :3])).max() < 15
    # smooth: frame-to-frame steps are small relative to the amplitude
    assert np.all(np.abs(np.diff(h, axis=0)).max(axis=0) < 0.25 * want * 4)


def test_loudness_curve_is_normalised():
    x = np.concatenate([np.zeros(6400), 0.5 * np.ones(6400)]).astype(np.float32)
    l = loudness_curve(x, 16000, 20)
    assert l[:9].max() == 0 and l[11:].min() > 0.99


def test_bilabial_closure_cancels_the_jaw_of_any_rest_face():
    from nodes.synth.animate import combine_mouth

    rest = np.zeros(N_MOUTH, np.float32)
    rest[JAW] = 0.3
    rest[MOUTH_COMPONENTS.index("lower_down_left")] = 0.2
    curves = np.stack([VISEMES["bilabial"].target_vector(), VISEMES["open"].target_vector()])
    out = combine_mouth(rest, curves)
    assert out[0, CLOSE] == pytest.approx(out[0, JAW])  # lips meet: closure cancels the whole jaw opening
    assert out[0, MOUTH_COMPONENTS.index("lower_down_left")] == 0.0
    assert out[1, CLOSE] == 0.0 and out[1, JAW] == pytest.approx(1.05)
    assert np.all((out >= 0) & (out <= 1.5))


def test_animate_node_adds_motion_to_the_portraits_rest_face():
    from graphcore.node import RunContext
    from nodes.synth.synth_nodes import AnimateFromPhonemes
    from nodes.types import AudioClip, MorphCoeffs

    s = synthesize("Peter bought a map.", voice="en-us")
    rest = np.zeros(33, np.float32)
    rest[JAW] = 0.3
    rest[MOUTH_COMPONENTS.index("smile_left")] = 1.0
    pose = np.array([0.05, -0.02, 0.01, 250.0, 240.0, np.log(2.0)], np.float32)
    ref = MorphCoeffs(np.ones(60, np.float32), rest[None], pose[None], np.zeros(1, np.float32), (512, 512))
    ctx = RunContext("a", "AnimateFromPhonemes", "k")
    node = AnimateFromPhonemes({"seed": 5})
    out = node.run(ctx, phonemes=s.phonemes, audio=AudioClip(s.samples, s.sample_rate), reference=ref)
    c, blink = out["coeffs"], out["blink"]
    n = c.expression.shape[0]
    assert n == int(np.floor(len(s.samples) / 640 + 0.5)) and c.pose.shape == (n, 6) and blink.shape == (n,)
    np.testing.assert_array_equal(c.shape, ref.shape)
    assert c.expression.min() >= 0 and c.expression.max() <= 1.5
    assert c.expression[:, JAW].max() > 0.7 and c.expression[:, JAW].min() < 0.45  # opens and closes around the rest
    assert np.abs(c.pose[:, 3:5] - pose[3:5]).max() < 40 and np.degrees(np.abs(c.pose[:, :3] - pose[:3])).max() < 12
    again = node.run(ctx, phonemes=s.phonemes, audio=AudioClip(s.samples, s.sample_rate), reference=ref)
    np.testing.assert_array_equal(again["coeffs"].pose, c.pose)
