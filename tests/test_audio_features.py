"""AudioFeatures: shapes, the frame-count rule, alignment, and values against librosa.

The production code is plain numpy (trainers/data/audio_features.py); the references here are built
from librosa's STFT / mel filters / YIN, an independent implementation. librosa's first call
compiles with numba (a few seconds), once per test session.
"""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from scipy.fft import dct
from scipy.signal import lfilter

from graphcore.node import NodeError, RunContext
from nodes.audio.audio_nodes import AudioFeatures
from nodes.io.media import read_audio
from nodes.types import AUDIO_FEATURES, AudioClip
from trainers.data import audio_features as F

librosa = pytest.importorskip("librosa")
SR = 16000


def make_ctx() -> RunContext:
    return RunContext(node_id="n", node_type="AudioFeatures", key="k")


def sine(freq: float, seconds: float, rate: int = SR, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> np.ndarray:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed")
    path = tmp_path_factory.mktemp("speech") / "say.wav"
    subprocess.run(["espeak-ng", "-w", str(path), "Seven bright owls whispered over the quiet harbour."], check=True)
    return read_audio(path).samples


# ------------------------------------------------------------------------------ shapes / counts


@pytest.mark.parametrize("variant", sorted(F.SHAPES))
@pytest.mark.parametrize("n,frames", [(16000, 25), (16320, 26), (16319, 25), (8040, 13), (330, 1)])
def test_shapes_and_frame_count(variant, n, frames):
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32) * 0.1
    out = F.audio_features(x, SR, variant)
    assert out.dtype == np.float32 and out.shape == (frames, *F.SHAPES[variant])
    assert np.isfinite(out).all()


def test_other_rates_and_forced_count():
    x = sine(200, 1.3, 44100)
    assert F.audio_features(x, 44100, "a2h").shape[0] == 33  # 32.5 -> 33 (round half up)
    assert F.audio_features(x, 44100, "a2h", fps=30).shape[0] == 39
    assert F.audio_features(x, 44100, "mel", num_frames=50).shape == (50, 16, 80)  # padded at the end


def test_spectra_in_row_blocks_give_the_same_bytes(monkeypatch):
    """A long clip's spectra are computed ROW_BLOCK rows at a time (flat memory): the same
    features, bit for bit, as one pass over all rows."""
    x = sine(180, 3.0) * np.linspace(0.2, 1, 3 * SR, dtype=np.float32)
    monkeypatch.setattr(F, "ROW_BLOCK", 37)
    blocks = {v: F.audio_features(x, SR, v) for v in ("mfcc_window", "a2h", "mfcc_pitch")}
    monkeypatch.setattr(F, "ROW_BLOCK", 10**9)
    for variant, got in blocks.items():
        assert got.tobytes() == F.audio_features(x, SR, variant).tobytes(), variant


def test_prefix_gives_the_same_rows():
    """Frames well inside a shorter clip equal those of the longer clip (odd lengths included)."""
    x = sine(180, 2.0) * np.linspace(0.2, 1, 2 * SR, dtype=np.float32)
    for variant, margin in [("mel", 4), ("mfcc_window", 5), ("a2h", 2), ("mfcc_pitch", 2)]:
        full = F.audio_features(x, SR, variant)
        part = F.audio_features(x[:20561], SR, variant)  # 32.1 frames -> 32
        assert part.shape[0] == 32
        np.testing.assert_allclose(part[: 32 - margin], full[: 32 - margin], rtol=1e-4, atol=1e-3, err_msg=variant)


# ------------------------------------------------------------------------ librosa references


def ref_mfcc_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """HTK MFCC + log fbank through librosa's STFT and filters (rows centred on j * 10 ms)."""
    y = lfilter([1.0, -0.97], [1.0], x.astype(np.float64))
    stft = librosa.stft(y, n_fft=512, hop_length=160, win_length=400, window=np.hamming(400),
                        center=True, pad_mode="constant")
    power = np.abs(stft) ** 2 / 512
    fb = librosa.filters.mel(sr=SR, n_fft=512, n_mels=26, fmin=0, fmax=8000, htk=True, norm=None)
    logfbank = np.log(np.maximum(fb @ power, np.finfo(float).eps)).T
    mfcc = dct(logfbank, type=2, norm="ortho", axis=1)[:, :13]
    mfcc *= 1 + 11 * np.sin(np.pi * np.arange(13) / 22)
    mfcc[:, 0] = np.log(np.maximum(power.sum(axis=0), np.finfo(float).eps))
    return mfcc, logfbank


def ref_wav2lip_mel_rows(x: np.ndarray) -> np.ndarray:
    y = lfilter([1.0, -0.97], [1.0], x.astype(np.float64))
    mag = np.abs(librosa.stft(y, n_fft=800, hop_length=200, win_length=800, center=True, pad_mode="constant"))
    mel = librosa.filters.mel(sr=SR, n_fft=800, n_mels=80, fmin=55, fmax=7600) @ mag
    db = 20 * np.log10(np.maximum(1e-5, mel)) - 20
    return np.clip(8 * (db + 100) / 100 - 4, -4, 4).T


@pytest.mark.parametrize("scale,norm", [("htk", False), ("slaney", True)])
def test_mel_filterbank_matches_librosa(scale, norm):
    ours = F.mel_filterbank(SR, 800, 80, 55.0, 7600.0, scale=scale, area_norm=norm)
    ref = librosa.filters.mel(sr=SR, n_fft=800, n_mels=80, fmin=55, fmax=7600, htk=scale == "htk",
                              norm="slaney" if norm else None)
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-7)


def test_mfcc_rows_match_librosa(speech):
    mfcc, logfbank = F.mfcc_fbank_rows(speech.astype(np.float64))
    ref_mfcc, ref_fbank = ref_mfcc_rows(speech)
    assert mfcc.shape == ref_mfcc.shape == (1 + len(speech) // 160, 13)
    loud = ref_fbank.max(axis=1) > -10  # skip digital silence where log(eps) dominates
    np.testing.assert_allclose(logfbank[loud], ref_fbank[loud], atol=1e-6)
    np.testing.assert_allclose(mfcc[loud], ref_mfcc[loud], rtol=1e-6, atol=1e-5)


def test_a2h_frame_values_and_alignment(speech):
    out = F.audio_features(speech, SR, "a2h")
    ref_mfcc, ref_fbank = ref_mfcc_rows(speech)
    for t in (3, 17, out.shape[0] // 2):
        rows = slice(4 * t, 4 * t + 4)  # Audio2Head: windows 4t .. 4t+3 at 25 fps
        np.testing.assert_allclose(out[t, :, :13], ref_mfcc[rows], rtol=1e-5, atol=1e-3)
        np.testing.assert_allclose(out[t, :, 13:39], ref_fbank[rows], rtol=1e-5, atol=1e-3)
    assert set(np.unique(out[..., 40])) <= {0.0, 1.0} and out[..., 40].mean() > 0.2


def test_mfcc_window_alignment(speech):
    out = F.audio_features(speech, SR, "mfcc_window")
    ref_mfcc, _ = ref_mfcc_rows(speech)
    t = 20
    np.testing.assert_allclose(out[t], ref_mfcc[4 * t - 12: 4 * t + 16, 1:], rtol=1e-5, atol=1e-3)
    # before the clip: the first row repeated (edge padding)
    np.testing.assert_allclose(out[0, :12], np.repeat(ref_mfcc[:1, 1:], 12, 0), rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(out[0, 12:], ref_mfcc[:16, 1:], rtol=1e-5, atol=1e-3)


def test_mfcc_pitch_averages_the_frame_rows(speech):
    out = F.audio_features(speech, SR, "mfcc_pitch")
    ref_mfcc, _ = ref_mfcc_rows(speech)
    for t in (5, 30):
        np.testing.assert_allclose(out[t, :13], ref_mfcc[4 * t: 4 * t + 4].mean(0), rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("align,start", [("centre", lambda t: int(3.2 * (t - 2))), ("start", lambda t: int(3.2 * t))])
def test_mel_matches_wav2lip_recipe(speech, align, start):
    out = F.audio_features(speech, SR, "mel", mel_align=align)
    ref = ref_wav2lip_mel_rows(speech)
    assert len(ref) == 1 + len(speech) // 200
    for t in (2, 11, 40):
        s = start(t)  # IP_LAP's training crop (centre) / Wav2Lip's inference crop (start)
        np.testing.assert_allclose(out[t], ref[s:s + 16], atol=2e-4)
    assert out.min() >= -4 and out.max() <= 4


# ------------------------------------------------------------------------------------- pitch


@pytest.mark.parametrize("freq", [90.0, 151.3, 220.0, 410.0])
def test_pitch_of_a_sine(freq):
    out = F.audio_features(sine(freq, 1.0), SR, "a2h")
    inner = out[1:-1]
    assert np.abs(inner[..., 39] - freq).max() < 0.005 * freq
    assert (inner[..., 40] == 1).all()
    mp = F.audio_features(sine(freq, 1.0), SR, "mfcc_pitch")[1:-1]
    assert np.abs(mp[:, 13] - np.log(freq)).max() < 0.005
    assert mp[:, 14].min() > 0.95  # periodicity of a pure tone


def test_unvoiced_gap_is_interpolated():
    x = np.concatenate([sine(150, 0.6), np.zeros(SR // 2, np.float32), sine(250, 0.6)])
    out = F.audio_features(x, SR, "a2h")
    voiced, f0 = out[..., 40].reshape(-1), out[..., 39].reshape(-1)
    gap = slice(4 * 17, 4 * 25)  # 0.68 s .. 1.0 s: inside the silence
    assert (voiced[gap] == 0).all() and (voiced[1: 4 * 13] == 1).all()  # row 0 is half padding
    assert np.all(np.diff(f0[gap]) > 0) and 150 < f0[gap].min() and f0[gap].max() < 250
    noise = np.random.default_rng(0).standard_normal(SR).astype(np.float32) * 0.3
    assert F.audio_features(noise, SR, "a2h")[..., 40].mean() < 0.05


def test_yin_agrees_with_librosa_on_speech(speech):
    x = speech.astype(np.float64)
    f0, _, _ = F.yin_rows(x)
    ref = librosa.yin(x, fmin=F.F0_MIN, fmax=F.F0_MAX, sr=SR, frame_length=F.YIN_FRAME, hop_length=160,
                      trough_threshold=F.YIN_THRESHOLD, center=True, pad_mode="constant")
    assert len(ref) == len(f0)
    voiced = f0 > 0
    cents = np.abs(1200 * np.log2(f0[voiced] / ref[voiced]))
    assert voiced.mean() > 0.2
    assert np.median(cents) < 5 and np.percentile(cents, 90) < 50


# -------------------------------------------------------------------------------------- node


def test_node_output_type_and_fps_input():
    clip = AudioClip(sine(200, 1.5, 22050), 22050)
    node = AudioFeatures({"variant": "mel"})
    feats = node.run(make_ctx(), audio=clip)["features"]
    AUDIO_FEATURES.validate(feats)
    assert feats.data.shape == (38, 16, 80) and feats.fps == 25.0 and feats.variant == "mel"
    feats = AudioFeatures({"variant": "mfcc_window"}).run(make_ctx(), audio=clip, fps=30)["features"]
    assert feats.data.shape == (45, 28, 12) and feats.fps == 30.0


def test_node_too_short_audio_is_a_clear_error():
    with pytest.raises(NodeError, match="shorter than half a video frame"):
        AudioFeatures({"variant": "a2h"}).run(make_ctx(), audio=AudioClip(np.zeros(100, np.float32), SR))


def test_frame_count_rule():
    # round half up of duration * fps, exact on integers
    assert F.frame_count(16000, SR, 25) == 25
    assert F.frame_count(16320, SR, 25) == 26  # 25.5 frames -> 26
    assert F.frame_count(16319, SR, 25) == 25
    assert F.frame_count(0, SR, 25) == 0
    assert F.frame_count(48000, 48000, 29.97) == 30
