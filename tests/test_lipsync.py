"""Rule-based lip sync (nodes/lipsync): viseme mouth from phones, silence rests, the workflow."""
from __future__ import annotations

import numpy as np
import pytest
from engine_helpers import ROOT, ctx_for, graphrun

from nodes.face.model import N_EXPRESSION, N_SHAPE
from nodes.io.media import write_audio
from nodes.lipsync.evaluate import correlation, landmark_lip_gap, model_lip_gap
from nodes.lipsync.lipsync_nodes import LipSyncRules
from nodes.lipsync.rules import RuleSettings, rule_mouth
from nodes.synth.visemes import MOUTH_COMPONENTS
from nodes.types import AudioClip, MorphCoeffs, PhonemeTrack
from trainers.data.audio_features import frame_count

pytest.importorskip("pocketsphinx")
TEXT = "Please pass me the blue bowl from the top shelf."
I = {n: i for i, n in enumerate(MOUTH_COMPONENTS)}


@pytest.fixture(scope="module")
def speech():
    from nodes.synth.speech import synthesize

    return synthesize(TEXT, voice="en-gb-x-rp", rate=160)


def parted_rest() -> MorphCoeffs:
    """A portrait whose rest face has parted lips (like the sample astronaut's smile)."""
    e = np.zeros((1, N_EXPRESSION), np.float32)
    e[0, [I["lower_down_left"], I["lower_down_right"]]] = 0.6
    e[0, [I["upper_up_left"], I["upper_up_right"]]] = 0.4
    e[0, I["jaw_open"]] = 0.1
    return MorphCoeffs(np.zeros(N_SHAPE, np.float32), e, np.zeros((1, 6), np.float32), np.zeros(1, np.float32), (256, 256))


def gaps(coeffs: MorphCoeffs) -> np.ndarray:
    from nodes.face.model import load_face_model

    v = load_face_model().vertices(coeffs.shape, coeffs.expression)
    return landmark_lip_gap(v)


def test_silence_gives_a_closed_resting_mouth(tmp_path):
    ref = parted_rest()
    rest_gap = gaps(ref)[0]
    assert rest_gap > 0.03  # the portrait's own mouth is open
    for name, x in [("digital", np.zeros(48000, np.float32)),
                    ("noise", (3e-4 * np.random.default_rng(1).standard_normal(48000)).astype(np.float32))]:
        out = LipSyncRules().run(ctx_for(tmp_path), AudioClip(x, 16000), ref)["coeffs"]
        assert out.expression.shape == (75, N_EXPRESSION) and out.pose.shape == (75, 6)
        g = gaps(out)
        assert g.max() < 0.2 * rest_gap, (name, g.max(), rest_gap)  # closed throughout
        assert np.ptp(out.expression, axis=0).max() < 1e-6  # and still


def test_speech_moves_the_mouth_then_silence_closes_it(speech, tmp_path):
    ref = parted_rest()
    x = np.concatenate([speech.samples, np.zeros(3 * 16000, np.float32)])
    out = LipSyncRules().run(ctx_for(tmp_path), AudioClip(x, 16000), ref)["coeffs"]
    g = gaps(out)
    n_speech = frame_count(len(speech.samples), 16000, 25.0)
    assert np.ptp(g[:n_speech]) > 0.1  # it talks
    tail = g[n_speech + 10:]
    assert tail.max() < 0.2 * gaps(ref)[0] and np.ptp(tail) < 1e-6  # 3 s of silence: closed and still


def test_rule_mouth_follows_the_truth(speech, tmp_path):
    n = frame_count(len(speech.samples), 16000, 25.0)
    truth = model_lip_gap(rule_mouth(speech.phonemes.items(), n, RuleSettings(lead=0.0, energy=0.0, closed_rest=False),
                                     alphabet="espeak")[0])
    from nodes.synth.visemes import mouth_curves

    generator = model_lip_gap(mouth_curves(speech.phonemes.items(), n)[0])
    assert correlation(truth, generator) > 0.99  # lead 0, no energy, open rest: the generator's own mouth
    zero = MorphCoeffs(np.zeros(N_SHAPE, np.float32), np.zeros((1, N_EXPRESSION), np.float32),
                       np.zeros((1, 6), np.float32), np.zeros(1, np.float32), (256, 256))
    logs: list = []
    out = LipSyncRules().run(ctx_for(tmp_path, logs=logs), AudioClip(speech.samples, 16000), zero)["coeffs"]
    r = correlation(generator, gaps(out))
    assert r > 0.3, r  # recognised phones, default settings (a 20 ms lead)
    no_lead = LipSyncRules({"lead": 0.0}).run(ctx_for(tmp_path), AudioClip(speech.samples, 16000), zero)["coeffs"]
    r0 = correlation(generator, gaps(no_lead))
    # espeak-ng's events now sit where their sound starts (30 ms earlier than before, voices 0b7ffeb): the
    # lead moves the mouth but neither wins clearly on this truth (measured 0.378 with, 0.372 without)
    assert r0 > 0.3 and abs(r0 - r) < 0.05 and not np.allclose(gaps(no_lead), gaps(out)), (r0, r)
    assert any("recognised" in str(d) for _, d in logs)
    aligned = LipSyncRules().run(ctx_for(tmp_path), AudioClip(speech.samples, 16000), zero, text=TEXT)["coeffs"]
    assert correlation(generator, gaps(aligned)) > r
    track = PhonemeTrack.from_items(speech.phonemes.items())
    given = LipSyncRules({"lead": 0.0}).run(ctx_for(tmp_path), AudioClip(speech.samples, 16000), zero, phonemes=track)
    assert correlation(generator, gaps(given["coeffs"])) > 0.9


def test_lipsync_rules_workflow_makes_a_talking_video(speech, tmp_path):
    wav = tmp_path / "say.wav"
    x = np.concatenate([speech.samples[: 16000 * 2], np.zeros(8000, np.float32)])
    write_audio(wav, AudioClip(x, 16000))
    video = tmp_path / "rules.mp4"
    res = graphrun(ROOT / "workflows/lipsync_rules.yaml", "--cache", tmp_path / "cache", "--set", f"speech.path={wav}",
                   "--set", f"save.path={video}", "--set", "save.preset=ultrafast", "--set", "lipsync.blink_rate=0")
    assert res.returncode == 0, res.stdout + res.stderr
    from nodes.face.landmarks import detect_landmarks
    from nodes.io.media import read_video

    v = read_video(video)
    assert len(v.frames) == frame_count(len(x), 16000, 25.0) and v.audio is not None
    lm, found = detect_landmarks(v.frames)
    assert found.all()
    g = landmark_lip_gap(lm)
    assert np.ptp(g[:45]) > 0.05  # the mouth opens and closes while speaking
    assert g[-5:].max() < np.percentile(g[:45], 50)  # and rests at the end


def test_the_features_prior_rests_in_silence_and_follows_speech(speech):
    """`features_rule_mouth` (the learned generators' `mouth_prior: rules`): from phonetic features
    alone, closed and still in 3 s of silence, and it reads the speech like the rules on the
    recogniser's phone segments do."""
    from nodes.lipsync.rules import features_rule_mouth
    from nodes.synth.visemes import mouth_curves
    from trainers.data.phonetic import phonetic_features

    zero = parted_rest()
    x = np.concatenate([speech.samples, np.zeros(3 * 16000, np.float32)])
    f = phonetic_features(x, 16000)
    prior = features_rule_mouth(f)
    assert prior.shape == (len(f), 28) and prior.dtype == np.float32
    e = np.zeros((len(f), N_EXPRESSION), np.float32)
    e[:, :28] = prior
    g = gaps(MorphCoeffs(zero.shape, e, np.zeros((len(f), 6), np.float32), np.zeros(len(f), np.float32), (256, 256)))
    n_speech = frame_count(len(speech.samples), 16000, 25.0)
    assert np.ptp(g[:n_speech]) > 0.1
    tail = g[n_speech + 10:]
    assert tail.max() < 0.2 * np.percentile(g[:n_speech], 95) and np.ptp(tail) < 1e-6
    truth = model_lip_gap(mouth_curves(speech.phonemes.items(), n_speech)[0])
    alone = features_rule_mouth(phonetic_features(speech.samples, 16000))
    e = np.zeros((n_speech, N_EXPRESSION), np.float32)
    e[:, :28] = alone
    r = correlation(truth, gaps(MorphCoeffs(zero.shape, e, np.zeros((n_speech, 6), np.float32), np.zeros(n_speech, np.float32),
                                            (256, 256))))
    assert r > 0.4, r  # measured 0.48 (LipSyncRules on the same clip: 0.38)
    with pytest.raises(ValueError, match="phonetic features"):
        features_rule_mouth(np.zeros((10, 15), np.float32))


def test_rest_opening_lets_a_parted_portrait_close_between_syllables(speech, tmp_path):
    """A portrait with parted lips keeps them parted between visemes at rest_opening 1 (only
    bilabials and pauses close them); lower, the lips follow the syllables as on a closed face."""
    ref = parted_rest()
    n = frame_count(len(speech.samples), 16000, 25.0)
    from nodes.synth.visemes import mouth_curves

    truth = model_lip_gap(mouth_curves(speech.phonemes.items(), n)[0])  # the generator's mouth, closed rest
    track = PhonemeTrack.from_items(speech.phonemes.items())
    audio = AudioClip(speech.samples, 16000)
    r = {}
    for f in (1.0, 0.5):
        out = LipSyncRules({"lead": 0.0, "rest_opening": f}).run(ctx_for(tmp_path), audio, ref, phonemes=track)["coeffs"]
        r[f] = correlation(truth, gaps(out))
        assert np.allclose(out.expression[:, 28:], ref.expression[0, 28:])  # only the mouth changes
    assert r[0.5] > r[1.0] + 0.02, r
