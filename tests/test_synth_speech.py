"""espeak-ng speech through the ctypes event API: audio, phoneme names and timings."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from nodes.synth.speech import SpeechError, is_pause, list_voices, synthesize


@pytest.fixture(scope="module")
def sentence():
    return synthesize("Hello world, my papa is here.", voice="en-us", rate=160, pitch=50)


def test_audio_is_16k_float32_speech(sentence):
    assert sentence.sample_rate == 16000
    assert sentence.samples.dtype == np.float32 and sentence.samples.ndim == 1
    assert 1.0 < len(sentence.samples) / 16000 < 4.0
    assert 0.05 < np.abs(sentence.samples).max() <= 1.0


def test_timings_are_monotone_and_cover_the_audio(sentence):
    tr = sentence.phonemes
    duration = len(sentence.samples) / sentence.sample_rate
    assert len(tr) > 10
    assert tr.start[0] == 0.0
    assert abs(tr.end[-1] - duration) < 1e-4
    assert np.all(tr.end > tr.start)
    np.testing.assert_allclose(tr.start[1:], tr.end[:-1])  # contiguous, no gaps or overlaps


def test_known_words_give_expected_phonemes():
    spoken = [p for p in synthesize("hello", voice="en-us").phonemes.labels if not is_pause(p)]
    assert spoken == ["h", "@", "l", "oU"]
    spoken = [p for p in synthesize("map", voice="en-us").phonemes.labels if not is_pause(p)]
    assert spoken == ["m", "a", "p"]


def test_pauses_are_quiet_and_vowels_loud(sentence):
    """The timings line up with the audio: pause segments are much quieter than vowel segments."""
    x, sr = sentence.samples, sentence.sample_rate

    def rms(labels):
        parts = [x[int(s * sr):int(e * sr)] for p, s, e in sentence.phonemes.items() if p in labels and e - s > 0.03]
        return float(np.sqrt(np.mean(np.concatenate(parts) ** 2)))

    assert rms({"_:", "_"}) * 5 < rms({"oU", "3:", "aI", "A:", "I@", "i@", "i@3"})


def test_rate_changes_duration_and_pitch_changes_f0():
    slow = synthesize("The quick brown fox jumps over the lazy dog.", rate=110)
    fast = synthesize("The quick brown fox jumps over the lazy dog.", rate=320)
    assert len(fast.samples) < 0.6 * len(slow.samples)
    from nodes.synth.motion import pitch_track

    def median_f0(pitch):
        s = synthesize("Aaah, more and more.", rate=140, pitch=pitch)
        f0, _ = pitch_track(s.samples, 16000, len(s.samples) // 640)
        return np.median(f0[f0 > 0])

    assert median_f0(85) > 1.2 * median_f0(20)


def test_voice_by_language_and_variant():
    a = synthesize("Good morning.", voice="en-gb")
    b = synthesize("Good morning.", voice="en-gb+f3")
    assert len(a.samples) and len(b.samples)
    assert not np.array_equal(a.samples[:2000], b.samples[:2000])


def test_bad_input_is_a_clear_error():
    with pytest.raises(SpeechError, match="unknown espeak-ng voice 'xx-nope'"):
        synthesize("hi", voice="xx-nope")
    with pytest.raises(SpeechError, match="empty"):
        synthesize("   ")
    with pytest.raises(SpeechError, match="rate"):
        synthesize("hi", rate=20)


def test_concurrent_calls_are_serialised_and_deterministic():
    ref = synthesize("Testing one two three.", voice="en-us")
    out = [None] * 4

    def work(i):
        out[i] = synthesize("Testing one two three.", voice="en-us")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    for s in out:
        np.testing.assert_array_equal(s.samples, ref.samples)
        assert s.phonemes.labels == ref.phonemes.labels


def test_in_process_mode_matches_phonemes():
    a = synthesize("Testing one two three.", voice="en-us", isolated=False)
    b = synthesize("Testing one two three.", voice="en-us")
    assert a.phonemes.labels == b.phonemes.labels
    assert abs(len(a.samples) - len(b.samples)) < 50


def test_list_voices_names_english():
    names = list_voices()
    assert {"en-us", "en-gb"} <= set(names)


def test_synthesize_speech_node_and_phoneme_track_port(tmp_path):
    import zarr

    from graphcore.node import NodeError, RunContext
    from graphcore.types import TypeValidationError
    from nodes.synth.synth_nodes import SynthesizeSpeech
    from nodes.types import AUDIO, PHONEME_TRACK

    logs = []
    ctx = RunContext("speech", "SynthesizeSpeech", "k", emit=lambda kind, data: logs.append(data))
    out = SynthesizeSpeech({"text": "Good morning.", "voice": "en-gb+f2"}).run(ctx)
    AUDIO.validate(out["audio"])
    track = PHONEME_TRACK.validate(out["phonemes"])
    assert out["audio"].sample_rate == 16000 and "phonemes" in logs[0]["message"]
    group = zarr.open_group(str(tmp_path / "t.zarr"), mode="w")
    PHONEME_TRACK.save(group, track)
    back = PHONEME_TRACK.load(group)
    assert back.items() == track.items()
    with pytest.raises(NodeError, match="unknown espeak-ng voice"):
        SynthesizeSpeech({"text": "hi", "voice": "zz"}).run(ctx)
    bad = type(track)(["a", "b"], np.array([0.0, 0.2], np.float32), np.array([0.3, 0.1], np.float32))
    with pytest.raises(TypeValidationError, match="ordered"):
        PHONEME_TRACK.validate(bad)


def test_sample_assets_match_their_manifest_and_are_reproducible(tmp_path):
    import hashlib
    import json
    from pathlib import Path

    from tools import make_samples

    folder = Path(__file__).resolve().parents[1] / "assets" / "samples"
    manifest = json.loads((folder / "MANIFEST.json").read_text())
    for name, entry in manifest["files"].items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == entry["sha256"], name
        assert entry["licence"] and entry["how"]
    make_samples.make_speech(tmp_path / "speech.wav")  # the same request gives the same bytes
    assert make_samples.sha256(tmp_path / "speech.wav") == manifest["files"]["speech.wav"]["sha256"]
