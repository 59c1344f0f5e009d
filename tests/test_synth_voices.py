"""More voices (flite, festival), recording-like degradation, phrasing, identities, the held-out split."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nodes.synth import augment as A
from nodes.synth.engines import festival_voices, flite_voices
from nodes.synth.phonesets import ARPABET_TO_ESPEAK, arpabet_to_espeak
from nodes.synth.sentences import EVAL_SENTENCES, MORE_SENTENCES, SENTENCES, TRAINING_SENTENCES
from nodes.synth.speech import (
    HELD_OUT_VOICES,
    TRAINING_VOICES,
    SpeechError,
    is_held_out_voice,
    is_pause,
    list_voices,
    synthesize,
)
from nodes.synth.visemes import MOUTH_COMPONENTS, VISEMES, mouth_curves, n_frames_for, viseme_for

ROOT = Path(__file__).resolve().parents[1]
TEXT = "We walked along the beach until the sun went down. Bob and Mary made a map of the mountain path."
JAW, CLOSE = MOUTH_COMPONENTS.index("jaw_open"), MOUTH_COMPONENTS.index("mouth_close")
needs_flite = pytest.mark.skipif(not flite_voices(), reason="flite is not installed (make system)")
needs_festival = pytest.mark.skipif(len(festival_voices()) < 3, reason="festival voices are not installed (make system)")


def envelope_lag_ms(samples: np.ndarray, track, rate: int = 16000) -> int:
    """The shift (ms) of the phoneme track that best explains the loudness envelope: vowels loud,
    stops and pauses quiet. 0 when the engine's timings are where its sound is."""
    hop = rate // 100
    n = len(samples) // hop
    env = np.log(np.sqrt((samples[:n * hop].astype(np.float64).reshape(n, hop) ** 2).mean(1)) + 1e-5)
    t = (np.arange(n) + 0.5) * hop / rate
    ind = np.zeros(n)
    for p, s, e in track:
        v = 0.0 if is_pause(p) or p in ("p", "b", "t", "d", "k", "g") else (1.0 if p[0] in "aeiouAEIOUV03@" else 0.4)
        ind[(t >= s) & (t < e)] = v
    scores = {lag * 10: np.corrcoef(env[max(0, lag):n + min(0, lag)], ind[max(0, -lag):n + min(0, -lag)])[0, 1]
              for lag in range(-15, 16)}
    return max(scores, key=scores.get)


def test_arpabet_covers_every_phone_and_maps_to_the_viseme_table():
    for phone, mnemonic in ARPABET_TO_ESPEAK.items():
        names, known = viseme_for(mnemonic)
        assert known, (phone, mnemonic)
        assert all(n in VISEMES for n in names)
    assert arpabet_to_espeak("AH0") == "V" and arpabet_to_espeak("SIL") == "_" and arpabet_to_espeak("pau") == "_"
    with pytest.raises(ValueError, match="not an ARPAbet phone"):
        arpabet_to_espeak("qq")


@needs_flite
@pytest.mark.parametrize("voice", ["flite:slt", "flite:rms", "flite:kal16"])
def test_flite_speaks_with_timings_where_its_sound_is(voice):
    s = synthesize(TEXT, voice=voice)
    assert s.sample_rate == 16000 and s.samples.dtype == np.float32
    items = s.phonemes.items()
    assert abs(items[-1][2] - len(s.samples) / 16000) < 1e-3 and items[0][1] == 0.0
    assert all(a[2] == pytest.approx(b[1]) for a, b in zip(items, items[1:]))  # contiguous
    assert all(viseme_for(p)[1] for p, _, _ in items)  # every phone in the table, none by fallback
    assert abs(envelope_lag_ms(s.samples, items)) <= 20
    np.testing.assert_array_equal(s.samples, synthesize(TEXT, voice=voice).samples)  # reproducible


@needs_festival
@pytest.mark.parametrize("voice", ["festival:kal_diphone", "festival:cmu_us_slt_arctic_hts"])
def test_festival_speaks_with_timings_where_its_sound_is(voice):
    s = synthesize(TEXT, voice=voice, rate=175, pitch=60)
    items = s.phonemes.items()
    assert all(viseme_for(p)[1] for p, _, _ in items)
    assert abs(envelope_lag_ms(s.samples, items)) <= 20
    slow = synthesize(TEXT, voice=voice, rate=120)
    assert len(slow.samples) > 1.2 * len(s.samples)  # the rate reaches the engine
    np.testing.assert_array_equal(s.samples, synthesize(TEXT, voice=voice, rate=175, pitch=60).samples)


@needs_flite
def test_voice_errors_name_the_voice():
    with pytest.raises(SpeechError, match="unknown flite voice 'nobody'"):
        synthesize("hi", voice="flite:nobody")
    with pytest.raises(SpeechError, match="ENGINE:NAME"):
        synthesize("hi", voice="piper:amy")
    assert "flite:slt" in list_voices()


def test_the_held_out_split_is_disjoint():
    assert not any(is_held_out_voice(v) for v in TRAINING_VOICES)
    assert all(is_held_out_voice(v) for v in HELD_OUT_VOICES) and is_held_out_voice("en-gb-x-rp+f2")
    assert not set(EVAL_SENTENCES) & set(TRAINING_SENTENCES)
    assert TRAINING_SENTENCES[:32] == SENTENCES and len(MORE_SENTENCES) >= 100
    rng = np.random.default_rng(0)
    train = [A.draw_chain(rng) for _ in range(300)]
    held = [A.draw_chain(rng, held_out=True) for _ in range(100)]
    assert not any(A.is_held_out(c) for c in train) and all(A.is_held_out(c) for c in held)
    kinds = {s["kind"] for c in train for s in c}
    assert {"tempo", "pitch", "rir", "eq", "noise", "band", "codec", "gain"} <= kinds
    from nodes.synth.generate import SynthDatasetSettings, check_split

    with pytest.raises(ValueError, match="held out"):
        check_split(SynthDatasetSettings(voices=("en-us", "en-gb-x-rp")))
    with pytest.raises(ValueError, match="held out"):
        check_split(SynthDatasetSettings(sentences=SENTENCES + EVAL_SENTENCES[:1]))
    check_split(SynthDatasetSettings(voices=HELD_OUT_VOICES, sentences=EVAL_SENTENCES, held_out="evaluation"))


def _speech():
    return synthesize("Bob and Mary made a map of the mountain path.", voice="en-us")


def test_degradations_keep_length_and_timing():
    s = synthesize(TEXT, voice="flite:slt")
    track = s.phonemes.items()
    lag0 = envelope_lag_ms(s.samples, track)
    rng = np.random.default_rng(1)
    source = rng.standard_normal(16000).astype(np.float32)
    for step in [{"kind": "pitch", "semitones": 3.0}, {"kind": "eq", "seed": 1, "bands": 3},
                 {"kind": "band", "low": 300, "high": 3400}, {"kind": "noise", "noise": "pink", "snr_db": 10, "seed": 2},
                 {"kind": "noise", "noise": "babble", "snr_db": 10, "seed": 2}, {"kind": "gain", "db": -6, "clip": 0.5},
                 {"kind": "rir", "rt60": 0.3, "drr_db": 8, "seed": 3}]:
        y, tr = A.apply_chain(s.samples, track, [step], babble_source=source)
        assert len(y) == len(s.samples) and [p for p, _, _ in tr] == [p for p, _, _ in track], step
        np.testing.assert_allclose([(a, b) for _, a, b in tr], [(a, b) for _, a, b in track], atol=1e-5)
        assert np.all(np.isfinite(y)) and np.abs(y).max() <= 1.0
        assert abs(envelope_lag_ms(y, tr) - lag0) <= 20, step
    y1, _ = A.apply_chain(s.samples, track, [{"kind": "noise", "noise": "white", "snr_db": 10, "seed": 5}])
    noise = y1 - s.samples
    assert 10 * np.log10(A.active_power(s.samples) / np.mean(noise ** 2)) == pytest.approx(10, abs=0.5)


def test_tempo_moves_the_phoneme_times_with_the_sound():
    s = _speech()
    for factor in (0.88, 1.12):
        y, tr = A.apply_chain(s.samples, s.phonemes.items(), [{"kind": "tempo", "factor": factor}])
        assert len(y) / len(s.samples) == pytest.approx(1 / factor, rel=0.02)
        assert tr[-1][2] == pytest.approx(len(y) / 16000)
        assert tr[5][1] == pytest.approx(s.phonemes.items()[5][1] / factor)
        assert abs(envelope_lag_ms(y, tr)) <= 40


@pytest.mark.parametrize("codec", ["aac", "opus", "mp3", "mulaw", "gsm", "codec2"])
def test_codec_round_trips_are_aligned(codec):
    s = _speech()
    lo, _ = A.CODEC_BITRATES[codec]
    y, _ = A.apply_chain(s.samples, s.phonemes.items(), [{"kind": "codec", "name": codec, "bitrate": lo}])
    assert len(y) == len(s.samples)
    # the decoded sound lines up with the original: its loudness envelope is best matched unshifted
    hop = 160
    n = len(y) // hop
    env = lambda x: np.log((x[:n * hop].reshape(n, hop) ** 2).mean(1) + 1e-8)  # noqa: E731
    a, b = env(s.samples), env(y)
    best = max(range(-3, 4), key=lambda k: np.corrcoef(a[max(0, k):n + min(0, k)], b[max(0, -k):n + min(0, -k)])[0, 1])
    assert best == 0
    np.testing.assert_array_equal(y, A.apply_chain(s.samples, s.phonemes.items(),
                                                   [{"kind": "codec", "name": codec, "bitrate": lo}])[0])


def test_unknown_steps_are_refused():
    with pytest.raises(A.AugmentError, match="unknown degradation step 'warp'"):
        A.apply_chain(np.zeros(100, np.float32), [], [{"kind": "warp"}])
    with pytest.raises(A.AugmentError, match="unknown codec"):
        A.apply_chain(np.zeros(1600, np.float32), [], [{"kind": "codec", "name": "amr"}])


def test_phrased_clip_has_resting_mouth_in_its_silences():
    from nodes.synth.generate import ClipPlan, speak_clip

    plan = ClipPlan(name="c", text="", voice="en-us", rate=160, pitch=50, seed=3, mouth_amplitude=1.0, head_amplitude=1.0,
                    split="train", sentences=["Bob made a map.", "Mama is home."], lead=0.5, gaps=[0.8], tail=0.3,
                    breaths=[0.4], inserts=[{"at": "tail", "kind": "music", "duration": 1.01497, "level_db": -6.0, "seed": 1},
                                            {"at": "lead", "kind": "silence", "duration": 2.5, "level_db": 0.0, "seed": 0}])
    spoken = speak_clip(plan)
    kinds = [e[0] for e in spoken.events]
    assert sorted(kinds) == ["breath", "music", "silence"]
    n = n_frames_for(len(spoken.samples) / 16000, 25)
    m, unknown = mouth_curves(spoken.track, n)
    assert not unknown
    t = (np.arange(n) + 0.5) / 25
    for kind, s, e in spoken.events:
        inside = (t > s + 0.1) & (t < e - 0.25)  # the mouth starts moving ~0.2 s before speech
        assert m[inside, CLOSE].min() > 0.9, kind  # lips shut during silence, breaths, music
        assert np.all(m[inside, JAW] < 0.05), kind
    assert np.all(spoken.samples[: int(2.0 * 16000)] == 0)  # the digital silence stays digital
    music = [e for e in spoken.events if e[0] == "music"][0]
    seg = spoken.samples[int(music[1] * 16000):int(music[2] * 16000)]
    assert np.abs(seg).max() > 0.01 and np.all(spoken.speech_only[int(music[1] * 16000):int(music[2] * 16000)] == 0)
    assert m[:, JAW].max() > 0.5  # and the speech still opens the mouth


@pytest.fixture(scope="module")
def portrait():
    from nodes.face.fitting import fit_coefficients
    from nodes.face.landmarks import detect_landmarks
    from nodes.face.model import load_face_model
    from nodes.io.media import read_image
    from nodes.synth.generate import resize_portrait

    image = read_image(ROOT / "assets/samples/portrait.png")
    lms, _ = detect_landmarks(image[None], tracking=False)
    model = load_face_model()
    fit = fit_coefficients(model, lms)
    return model, resize_portrait(image, lms[0], fit.shape, fit.expression[0], fit.pose[0], 256)


def test_identities_keep_their_landmarks_on_the_face(portrait):
    """A new identity's projected landmarks are where MediaPipe finds them on its image."""
    from nodes.face.landmarks import detect_landmarks
    from nodes.synth.generate import Portrait
    from nodes.synth.identity import make_identity, plan_identity

    model, face = portrait
    base = Portrait(face.image, face.landmarks, face.shape, face.expression, face.pose)
    for k in (1, 2):
        new = make_identity(face.image, model, plan_identity(5, k), base=base)
        found, ok = detect_landmarks(new.image[None], tracking=False)
        assert ok[0] and np.abs(found[0, :, :2] - new.landmarks).mean() < 1.5  # pixels at 256
        assert np.abs(new.shape - face.shape).max() > 0.3


def test_frameless_dataset_with_identities(portrait, tmp_path):
    from nodes.synth.generate import Portrait, SynthDatasetSettings, generate_dataset
    from nodes.synth.identity import make_identity, plan_identity
    from trainers.data.dataset import DatasetError, open_dataset

    model, face = portrait
    base = Portrait(face.image, face.landmarks, face.shape, face.expression, face.pose)
    faces = [make_identity(face.image, model, plan_identity(0, k), base=base) for k in range(2)]
    assert not np.array_equal(faces[0].shape, faces[1].shape)
    s = SynthDatasetSettings(n_clips=4, size=256, seed=2, features=(), phrasing=True, augment=1.0, clean_fraction=0.0,
                             identities=2, render=False, voices=("en-us", "flite:slt"), sentences=SENTENCES[:4])
    summary = generate_dataset(str(tmp_path / "d.zarr"), faces[0], model, s, identities=faces)
    assert summary["clips"] == 4
    ds = open_dataset(str(tmp_path / "d.zarr"))
    assert not ds.has_frames and ds.identities["image"].shape == (2, 256, 256, 3)
    for c in ds:
        k = c.attrs["identity"]
        image, lm = c.reference()
        np.testing.assert_array_equal(image, faces[k].image)
        np.testing.assert_array_equal(c.coeffs["shape"], faces[k].shape)
        assert c.attrs["chain"] and c.landmarks.shape == (c.n_frames, 478, 2)
        with pytest.raises(DatasetError, match="no frames"):
            c.frames  # noqa: B018
    from trainers.data.clips import ClipStore

    store = ClipStore(str(tmp_path / "d.zarr"), None)
    assert store.frame(0, 0)["image"].shape == (256, 256, 3)


def test_identities_carry_a_speaking_style():
    from nodes.synth.generate import SynthDatasetSettings, plan_clips
    from nodes.synth.identity import plan_identity

    plans = plan_clips(SynthDatasetSettings(n_clips=40, seed=4, identities=4))
    assert {p.identity for p in plans} == {0, 1, 2, 3}
    gains = {k: plan_identity(4, k) for k in range(4)}
    assert gains[0].mouth_gain == 1.0 and len({g.mouth_gain for g in gains.values()}) == 4
    for p in plans:
        g = gains[p.identity]
        assert 0.8 <= p.mouth_amplitude / g.mouth_gain <= 1.2 and 0.5 <= p.head_amplitude / g.head_gain <= 1.3
    one = plan_clips(SynthDatasetSettings(n_clips=40, seed=4))  # one identity: the original draws
    assert all(0.8 <= p.mouth_amplitude <= 1.2 and p.identity == 0 for p in one)


@pytest.mark.parametrize("voice", ["en-us", "en-gb+f2", "en-029"])
def test_espeak_timings_are_where_its_sound_is(voice):
    s = synthesize(" ".join(MORE_SENTENCES[8:11]), voice=voice)
    assert abs(envelope_lag_ms(s.samples, s.phonemes.items())) <= 20


def test_mouth_lead_moves_the_mouth_before_the_sound():
    from nodes.synth.animate import AnimationSettings, animate

    s = synthesize("Mama made a map.", voice="flite:slt")
    n = n_frames_for(len(s.samples) / 16000, 25)
    rest = np.zeros(33, np.float32)
    pose = np.array([0, 0, 0, 128, 128, 0], np.float32)
    jaw = [animate(s.phonemes.items(), s.samples, 16000, n, rest, pose, AnimationSettings(mouth_lead=lead)).expression[:, JAW]
           for lead in (0.0, 0.08)]
    lags = range(-4, 5)
    best = max(lags, key=lambda k: np.corrcoef(jaw[0][max(0, k):n + min(0, k)], jaw[1][max(0, -k):n + min(0, -k)])[0, 1])
    assert best == 2  # 80 ms = 2 frames earlier


def test_speech_bank_speaks_training_sentences_in_many_voices_and_refuses_held_out_ones():
    """SpeechBank: per voice `per_voice` distinct training sentences, seeded rates, pauses; one clip."""
    from graphcore.node import NodeError, RunContext
    from nodes.synth.synth_nodes import SpeechBank

    ctx = RunContext(node_id="bank", node_type="SpeechBank", key="k")
    params = {"voices": ["espeak:en-us", "espeak:en-gb"], "per_voice": 2, "pause": 0.5, "seed": 1}
    a, b = (SpeechBank(params).run(ctx)["audio"] for _ in range(2))
    np.testing.assert_array_equal(a.samples, b.samples)  # seeded
    assert a.sample_rate == 16000 and len(a.samples) > 4 * (0.5 + 1.0) * 16000  # 4 sentences of > 1 s, 4 pauses
    rng = np.random.default_rng(1)
    k = rng.choice(len(TRAINING_SENTENCES), 2, replace=False)
    first = synthesize(TRAINING_SENTENCES[k[0]], voice="espeak:en-us", rate=int(rng.integers(140, 185))).samples
    np.testing.assert_array_equal(a.samples[:len(first)], first)
    assert not a.samples[len(first):len(first) + 8000].any()  # then the pause
    with pytest.raises(NodeError, match="held-out voices"):
        SpeechBank({"voices": ["espeak:en-us", HELD_OUT_VOICES[1]]}).run(ctx)
