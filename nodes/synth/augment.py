"""Recording-like degradation of clean synthetic speech, with the phoneme timings kept exact.

A clip's degradation is a *chain* of steps drawn from a seed (`draw_chain`) and applied in order
(`apply_chain`); every step is a plain dict (recorded in the dataset's clip attributes), so a clip
can be degraded again identically. Steps:

    tempo      {"factor"}                sox `tempo -s` (WSOLA): duration / factor, pitch kept;
                                          the phoneme times are divided by the factor
    pitch      {"semitones"}             sox `pitch` (tempo + resampling): timing kept
    rir        {"rt60", "drr_db", "seed"} convolution with a synthetic room impulse response
                                          (direct path at lag 0, early reflections, exponentially
                                          decaying noise tail): the timing is kept
    eq         {"seed", "bands"}         microphone colouring: random peaking filters (zero phase)
    band       {"low", "high"}           band-limiting (4th-order Butterworth, zero phase)
    noise      {"noise", "snr_db", "seed"} white, pink, brown, hum, babble (other voices), at a
                                          signal-to-noise ratio over the active speech
    codec      {"name", "bitrate"}       an ffmpeg encode/decode round trip; the codec's delay is
                                          removed by cross-correlation, the length is kept
    gain       {"db", "clip"}            level, and soft clipping above `clip` (0: none)
    sox_reverb {"reverberance", "room"}  sox `reverb` (Freeverb)         -- held out
    traffic    {"snr_db", "seed"}        low rumble with passing swells   -- held out

Which kinds are used for training and which are kept for evaluation only is fixed here
(`TRAINING_CODECS`, `HELD_OUT_CODECS`, ...; see docs/nodes/synth.md, "Held-out split").
"""
from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from typing import Any

import numpy as np

SAMPLE_RATE = 16000
TRAINING_CODECS = ("aac", "opus", "mp3", "vorbis", "mulaw")
HELD_OUT_CODECS = ("gsm", "codec2", "speex")
TRAINING_NOISE = ("white", "pink", "brown", "hum", "babble")
HELD_OUT_STEPS = ("sox_reverb", "traffic")  # step kinds never drawn for training
# ffmpeg encoder arguments per codec; `{b}` is the bit rate in kbit/s.
_CODECS: dict[str, tuple[list[str], int]] = {
    "aac": (["-c:a", "aac", "-b:a", "{b}k", "-f", "adts"], 16000),
    "opus": (["-c:a", "libopus", "-b:a", "{b}k", "-f", "ogg"], 16000),
    "mp3": (["-c:a", "libmp3lame", "-b:a", "{b}k", "-f", "mp3"], 16000),
    "vorbis": (["-c:a", "libvorbis", "-b:a", "{b}k", "-f", "ogg"], 16000),
    "mulaw": (["-c:a", "pcm_mulaw", "-f", "wav"], 8000),
    "gsm": (["-c:a", "libgsm", "-f", "gsm"], 8000),
    "codec2": (["-c:a", "libcodec2", "-mode", "{b}", "-f", "codec2"], 8000),
    "speex": (["-c:a", "libspeex", "-b:a", "{b}k", "-f", "ogg"], 8000),
}
CODEC_BITRATES = {"aac": (16, 32), "opus": (8, 24), "mp3": (16, 32), "vorbis": (32, 48), "mulaw": (64, 64),
                  "gsm": (13, 13), "codec2": (1300, 3200), "speex": (8, 16)}


class AugmentError(RuntimeError):
    """A degradation step could not be applied (a missing tool, a bad parameter)."""


# ---------------------------------------------------------------------------------------------
# helpers


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise AugmentError(f"{name} is not installed (Debian package {package}; `make system` installs it)")
    return path


def _pipe(cmd: list[str], x: np.ndarray, what: str) -> np.ndarray:
    proc = subprocess.run(cmd, input=np.ascontiguousarray(x, "<f4").tobytes(), capture_output=True, timeout=600, check=False)
    if proc.returncode != 0:
        raise AugmentError(f"{what} failed (exit {proc.returncode}): {proc.stderr.decode('utf-8', 'replace').strip()[-400:]}")
    return np.frombuffer(proc.stdout, "<f4").astype(np.float32)


def _sox(x: np.ndarray, effect: list[str], what: str) -> np.ndarray:
    sox = _tool("sox", "sox")
    raw = ["-t", "f32", "-r", str(SAMPLE_RATE), "-c", "1", "-L"]
    return _pipe([sox, "-D", "-V1", *raw, "-", *raw, "-", *effect], x, what)


def active_power(x: np.ndarray, floor_db: float = -35.0) -> float:
    """Mean power of the 20 ms blocks within `floor_db` of the loudest (speech, not pauses)."""
    n = len(x) // 320
    if n == 0:
        return float(np.mean(x.astype(np.float64) ** 2) + 1e-12)
    p = (x[:n * 320].astype(np.float64).reshape(n, 320) ** 2).mean(1)
    keep = p >= p.max() * 10 ** (floor_db / 10)
    return float(p[keep].mean() + 1e-12)


def _fft_filter(x: np.ndarray, gain: np.ndarray) -> np.ndarray:
    spec = np.fft.rfft(x, n=len(x))
    return np.fft.irfft(spec * gain, n=len(x)).astype(np.float32)


def coloured_noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-power noise: white, pink (1/f), brown (1/f^2, high-passed at 20 Hz), hum (50/60 Hz + harmonics)."""
    if kind == "hum":
        f0 = float(rng.choice([50.0, 60.0]))
        t = np.arange(n) / SAMPLE_RATE
        amps = rng.uniform(0.2, 1.0, 6) / np.arange(1, 7)
        x = sum(a * np.sin(2 * np.pi * f0 * (k + 1) * t + rng.uniform(0, 2 * np.pi)) for k, a in enumerate(amps))
        x = x * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t)) + 0.05 * rng.standard_normal(n)
    else:
        x = rng.standard_normal(n)
        if kind != "white":
            f = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
            exponent = {"pink": 0.5, "brown": 1.0}[kind]
            g = 1.0 / np.maximum(f, 20.0) ** exponent
            x = _fft_filter(x, g)
    x = np.asarray(x, np.float64)
    return (x / (np.sqrt(np.mean(x ** 2)) + 1e-12)).astype(np.float32)


def babble(source: np.ndarray, n: int, rng: np.random.Generator, talkers: int | None = None) -> np.ndarray:
    """Unit-power babble: 3-6 excerpts of `source` (other voices' speech) at random offsets and gains."""
    if len(source) == 0:
        raise AugmentError("babble noise needs a non-empty source of other voices' speech")
    k = int(talkers or rng.integers(3, 7))
    out = np.zeros(n, np.float64)
    for _ in range(k):
        start = int(rng.integers(0, len(source)))
        idx = (start + np.arange(n)) % len(source)
        out += source[idx] * rng.uniform(0.5, 1.0)
    return (out / (np.sqrt(np.mean(out ** 2)) + 1e-12)).astype(np.float32)


def room_impulse_response(rt60: float, drr_db: float, rng: np.random.Generator) -> np.ndarray:
    """A synthetic RIR: unit direct path at lag 0, a few early reflections (2-25 ms), and an
    exponentially decaying noise tail (decay 60 dB over `rt60` s) at direct-to-reverberant ratio `drr_db`."""
    n = int(SAMPLE_RATE * min(1.2 * rt60 + 0.05, 1.5))
    t = np.arange(n) / SAMPLE_RATE
    tail = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60)
    tail[: int(0.002 * SAMPLE_RATE)] = 0.0  # the diffuse field starts after the direct sound
    # the tail's colour: walls absorb highs faster (one-pole low-pass)
    from scipy.signal import lfilter

    a = float(rng.uniform(0.2, 0.6))
    tail = lfilter([1 - a], [1, -a], tail)
    tail *= np.sqrt(10 ** (-drr_db / 10) / (np.sum(tail ** 2) + 1e-12))
    h = tail
    h[0] = 1.0
    for _ in range(int(rng.integers(3, 8))):
        lag = int(rng.uniform(0.002, 0.025) * SAMPLE_RATE)
        h[lag] += rng.uniform(-0.6, 0.6) * 10 ** (-drr_db / 40)
    return h.astype(np.float32)


def _zero_phase_sos(x: np.ndarray, sos: np.ndarray) -> np.ndarray:
    from scipy.signal import sosfiltfilt

    if len(x) < 64:
        return x
    return sosfiltfilt(sos, x.astype(np.float64)).astype(np.float32)


def _envelope_lag(y: np.ndarray, x: np.ndarray, max_lag: int, hop: int = 16) -> int:
    """The delay of `y` behind `x` that best matches their log-energy envelopes (1 ms steps)."""
    def env(z: np.ndarray) -> np.ndarray:
        k = len(z) // hop
        e = np.log((z[:k * hop].astype(np.float64).reshape(k, hop) ** 2).mean(1) + 1e-8)
        return e - e.mean()

    ex, ey = env(x), env(y)
    best, best_lag = -np.inf, 0
    for d in range(0, max_lag // hop + 1):
        k = min(len(ex), len(ey) - d)
        if k < 10:
            break
        c = float(np.dot(ex[:k], ey[d:d + k])) / k
        if c > best:
            best, best_lag = c, d * hop
    return best_lag


def _align(y: np.ndarray, x: np.ndarray, max_lag: int = 4000) -> np.ndarray:
    """`y` (a decoded copy of `x` with some codec delay) shifted to line up with `x`, same length."""
    n = len(x)
    m = min(len(y), n + max_lag)
    a = np.zeros(1 << int(np.ceil(np.log2(2 * m + 1))), np.float64)
    b = np.zeros_like(a)
    a[:m], b[:n] = y[:m], x
    corr = np.fft.irfft(np.fft.rfft(a) * np.conj(np.fft.rfft(b)), n=len(a))
    lags = np.arange(0, max_lag + 1)
    lag = int(lags[np.argmax(corr[lags])])
    if corr[lag] < 0.5 * np.sqrt(np.sum(a[:m] ** 2) * np.sum(b[:n] ** 2)):
        lag = _envelope_lag(y[:m], x, max_lag)  # a parametric codec (codec2) does not keep the waveform
    out = np.zeros(n, np.float32)
    seg = y[lag:lag + n]
    out[:len(seg)] = seg
    return out


# ---------------------------------------------------------------------------------------------
# the steps


def _tempo(x, track, p, ctx):
    f = float(p["factor"])
    if not 0.5 <= f <= 2.0:
        raise AugmentError(f"tempo factor {f} is outside 0.5-2")
    y = _sox(x, ["tempo", "-s", f"{f:.5f}"], "sox tempo")
    scaled = [(ph, s / f, e / f) for ph, s, e in track]
    return y, scaled


def _pitch(x, track, p, ctx):
    y = _sox(x, ["pitch", f"{100 * float(p['semitones']):.1f}"], "sox pitch")
    return _fit_length(y, len(x)), track


def _fit_length(y: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros(n, np.float32)
    out[:min(n, len(y))] = y[:n]
    return out


def _rir(x, track, p, ctx):
    from scipy.signal import fftconvolve

    h = room_impulse_response(float(p["rt60"]), float(p["drr_db"]), np.random.default_rng(int(p["seed"])))
    y = fftconvolve(x.astype(np.float64), h)[: len(x)]
    return (y * np.sqrt(active_power(x) / active_power(y))).astype(np.float32), track


def _eq(x, track, p, ctx):
    rng = np.random.default_rng(int(p["seed"]))
    f = np.fft.rfftfreq(len(x), 1 / SAMPLE_RATE)
    logf = np.log(np.maximum(f, 1.0))
    gain_db = np.zeros_like(f)
    for _ in range(int(p.get("bands", 3))):
        fc, width, g = np.exp(rng.uniform(np.log(150), np.log(6000))), rng.uniform(0.3, 1.0), rng.uniform(-9, 9)
        gain_db += g * np.exp(-0.5 * ((logf - np.log(fc)) / width) ** 2)
    return _fft_filter(x, 10 ** (gain_db / 20)), track


def _band(x, track, p, ctx):
    from scipy.signal import butter

    low, high = float(p.get("low", 0) or 0), float(p.get("high", 0) or 0)
    if low > 0 and high > 0:
        sos = butter(4, [low, min(high, 7900)], btype="bandpass", fs=SAMPLE_RATE, output="sos")
    elif high > 0:
        sos = butter(4, min(high, 7900), btype="lowpass", fs=SAMPLE_RATE, output="sos")
    elif low > 0:
        sos = butter(4, low, btype="highpass", fs=SAMPLE_RATE, output="sos")
    else:
        return x, track
    return _zero_phase_sos(x, sos), track


def _noise(x, track, p, ctx):
    rng = np.random.default_rng(int(p["seed"]))
    kind = p["noise"]
    if kind == "babble":
        n = babble(ctx.get("babble", np.zeros(0, np.float32)), len(x), rng)
    elif kind == "traffic":
        n = _traffic(len(x), rng)
    else:
        n = coloured_noise(kind, len(x), rng)
    scale = np.sqrt(active_power(x) / 10 ** (float(p["snr_db"]) / 10))
    return (x + scale * n).astype(np.float32), track


def _traffic(n: int, rng: np.random.Generator) -> np.ndarray:
    """Held-out noise: brown rumble (low-passed at 300 Hz) with slow swells of passing vehicles."""
    from scipy.signal import butter

    base = coloured_noise("brown", n, rng)
    base = _zero_phase_sos(base, butter(2, 300, btype="lowpass", fs=SAMPLE_RATE, output="sos"))
    t = np.arange(n) / SAMPLE_RATE
    env = 0.4 + sum(np.exp(-0.5 * ((t - c) / w) ** 2) for c, w in
                    zip(rng.uniform(0, max(t[-1], 1e-3), 3), rng.uniform(0.5, 2.0, 3)))
    x = base * env + 0.05 * coloured_noise("pink", n, rng)
    return (x / (np.sqrt(np.mean(x ** 2)) + 1e-12)).astype(np.float32)


def _codec(x, track, p, ctx):
    name = p["name"]
    if name not in _CODECS:
        raise AugmentError(f"unknown codec {name!r}; choose from {sorted(_CODECS)}")
    ffmpeg = _tool("ffmpeg", "ffmpeg")
    args, rate = _CODECS[name]
    args = [a.replace("{b}", str(p.get("bitrate", ""))) for a in args]
    raw = ["-f", "f32le", "-ar", str(SAMPLE_RATE), "-ac", "1"]
    peak = float(np.max(np.abs(x))) if len(x) else 0.0
    x_in = x / peak * 0.9 if peak > 0.9 else x  # codecs clip at full scale
    enc = subprocess.run([ffmpeg, "-v", "error", "-nostdin", *raw, "-i", "pipe:", "-ar", str(rate), "-bitexact", *args,
                          "pipe:"], input=np.ascontiguousarray(x_in, "<f4").tobytes(), capture_output=True,
                         timeout=600, check=False)
    if enc.returncode != 0 or not enc.stdout:
        raise AugmentError(f"ffmpeg {name} encoding failed: {enc.stderr.decode('utf-8', 'replace').strip()[-400:]}")
    dec = subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-i", "pipe:", *raw, "pipe:"], input=enc.stdout,
                         capture_output=True, timeout=600, check=False)
    if dec.returncode != 0:
        raise AugmentError(f"ffmpeg {name} decoding failed: {dec.stderr.decode('utf-8', 'replace').strip()[-400:]}")
    y = np.frombuffer(dec.stdout, "<f4").astype(np.float32)
    y = _align(y, x_in)
    return (y * (peak / 0.9) if peak > 0.9 else y).astype(np.float32), track


def _gain(x, track, p, ctx):
    y = x * 10 ** (float(p["db"]) / 20)
    c = float(p.get("clip", 0) or 0)
    if c > 0:
        y = c * np.tanh(y / c)
    return np.clip(y, -1, 1).astype(np.float32), track


def _sox_reverb(x, track, p, ctx):
    y = _sox(x, ["reverb", f"{float(p['reverberance']):.0f}", "50", f"{float(p['room']):.0f}"], "sox reverb")
    y = _fit_length(y, len(x))
    return (y * np.sqrt(active_power(x) / active_power(y))).astype(np.float32), track


def _traffic_step(x, track, p, ctx):
    return _noise(x, track, {"noise": "traffic", "snr_db": p["snr_db"], "seed": p["seed"]}, ctx)


STEPS = {"tempo": _tempo, "pitch": _pitch, "rir": _rir, "eq": _eq, "band": _band, "noise": _noise, "codec": _codec,
         "gain": _gain, "sox_reverb": _sox_reverb, "traffic": _traffic_step}


def apply_chain(samples: np.ndarray, track: Sequence[tuple[str, float, float]], chain: Sequence[dict[str, Any]],
                babble_source: np.ndarray | None = None) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    """Apply the steps in order to 16 kHz `samples`; return the samples and the re-timed track."""
    x = np.asarray(samples, np.float32)
    items = [(str(p), float(s), float(e)) for p, s, e in track]
    ctx = {"babble": babble_source if babble_source is not None else np.zeros(0, np.float32)}
    for step in chain:
        kind = step.get("kind")
        if kind not in STEPS:
            raise AugmentError(f"unknown degradation step {kind!r}; known: {sorted(STEPS)}")
        if len(x) == 0:
            break
        x, items = STEPS[kind](x, items, step, ctx)
    if items:  # the track ends with the audio
        p, s, _ = items[-1]
        items[-1] = (p, min(s, len(x) / SAMPLE_RATE), len(x) / SAMPLE_RATE)
    return np.clip(x, -1, 1).astype(np.float32), items


# ---------------------------------------------------------------------------------------------
# drawing a chain


def draw_chain(rng: np.random.Generator, *, strength: float = 1.0, held_out: bool = False,
               babble: bool = True) -> list[dict[str, Any]]:
    """A random recording-like chain. `strength` in [0, 1] scales how likely each step is;
    `held_out` draws the evaluation-only kinds (sox reverb, traffic/held-out babble, GSM/codec2/Speex
    codecs, a 300-3400 Hz phone band) instead of the training ones."""
    def seed() -> int:
        return int(rng.integers(2**31 - 1))

    def maybe(p: float) -> bool:
        return bool(rng.random() < p * strength)

    chain: list[dict[str, Any]] = []
    if held_out:
        if maybe(0.3):
            chain.append({"kind": "pitch", "semitones": round(float(rng.uniform(-2, 2)), 2)})
        if maybe(0.8):
            chain.append({"kind": "sox_reverb", "reverberance": round(float(rng.uniform(20, 70))),
                          "room": round(float(rng.uniform(30, 100)))})
        if maybe(0.8):
            snr = round(float(rng.uniform(5, 20)), 1)
            if babble and rng.random() < 0.5:  # the caller gives a babble source of held-out voices
                chain.append({"kind": "noise", "noise": "babble", "snr_db": snr, "seed": seed()})
            else:
                chain.append({"kind": "traffic", "snr_db": snr, "seed": seed()})
        chain.append({"kind": "band", "low": 300, "high": 3400})
        name = str(rng.choice(HELD_OUT_CODECS))
        lo, hi = CODEC_BITRATES[name]
        br = int(rng.choice([1300, 2400, 3200])) if name == "codec2" else int(rng.integers(lo, hi + 1))
        chain.append({"kind": "codec", "name": name, "bitrate": br})
        chain.append({"kind": "gain", "db": round(float(rng.uniform(-12, 3)), 1), "clip": 0})
        return chain
    if maybe(0.35):
        chain.append({"kind": "tempo", "factor": round(float(rng.uniform(0.88, 1.12)), 3)})
    if maybe(0.35):
        chain.append({"kind": "pitch", "semitones": round(float(rng.uniform(-4, 4)), 2)})
    if maybe(0.6):
        chain.append({"kind": "rir", "rt60": round(float(rng.uniform(0.15, 0.8)), 3),
                      "drr_db": round(float(rng.uniform(-3, 15)), 1), "seed": seed()})
    if maybe(0.5):
        chain.append({"kind": "eq", "seed": seed(), "bands": int(rng.integers(1, 4))})
    if maybe(0.7):
        kinds = TRAINING_NOISE if babble else tuple(k for k in TRAINING_NOISE if k != "babble")
        chain.append({"kind": "noise", "noise": str(rng.choice(kinds)), "snr_db": round(float(rng.uniform(5, 35)), 1),
                      "seed": seed()})
    if maybe(0.4):
        r = rng.random()
        band = {"low": 0, "high": int(rng.integers(3400, 7000))} if r < 0.5 else (
            {"low": int(rng.integers(80, 300)), "high": 0} if r < 0.75 else
            {"low": int(rng.integers(100, 400)), "high": int(rng.integers(3000, 6000))})
        chain.append({"kind": "band", **band})
    if maybe(0.5):
        name = str(rng.choice(TRAINING_CODECS))
        lo, hi = CODEC_BITRATES[name]
        chain.append({"kind": "codec", "name": name, "bitrate": int(rng.integers(lo, hi + 1))})
    chain.append({"kind": "gain", "db": round(float(rng.uniform(-15, 4)), 1),
                  "clip": round(float(rng.uniform(0.3, 0.9)), 2) if maybe(0.15) else 0})
    return chain


def is_held_out(chain: Sequence[dict[str, Any]]) -> bool:
    """Whether a chain uses any evaluation-only kind (so a training dataset can refuse it)."""
    for s in chain:
        if s.get("kind") in HELD_OUT_STEPS or (s.get("kind") == "codec" and s.get("name") in HELD_OUT_CODECS):
            return True
    return False


# ---------------------------------------------------------------------------------------------
# sounds between phrases (the mouth is at rest while they play)

NON_SPEECH = ("clicks", "beep", "music", "buzz")


def breath(duration: float, rng: np.random.Generator) -> np.ndarray:
    """An inhalation: band-limited (400-2500 Hz) pink noise under a quick-rise, slow-fall envelope; unit peak."""
    n = max(1, int(duration * SAMPLE_RATE))
    x = coloured_noise("pink", n, rng)
    f = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    x = _fft_filter(x, np.exp(-0.5 * (np.log(np.maximum(f, 1.0) / rng.uniform(900, 1400)) / 0.6) ** 2))
    t = np.linspace(0, 1, n)
    peak = rng.uniform(0.3, 0.5)
    env = np.where(t < peak, np.sin(0.5 * np.pi * t / peak), np.cos(0.5 * np.pi * (t - peak) / (1 - peak))) ** 2
    y = x * env
    return (y / (np.max(np.abs(y)) + 1e-9)).astype(np.float32)


def non_speech(kind: str, duration: float, rng: np.random.Generator) -> np.ndarray:
    """A non-speech sound with unit peak: keyboard-like `clicks`, a `beep`, a few notes of `music`
    (harmonic tones: voiced but not speech), an electrical `buzz`."""
    n = max(1, int(duration * SAMPLE_RATE))
    t = np.arange(n) / SAMPLE_RATE
    if kind == "clicks":
        x = np.zeros(n)
        for c in rng.uniform(0, duration, int(rng.integers(3, 12))):
            i = int(c * SAMPLE_RATE)
            m = min(n - i, 240)
            x[i:i + m] += rng.standard_normal(m) * np.exp(-np.arange(m) / rng.uniform(20, 60))
    elif kind == "beep":
        f = rng.uniform(400, 2000)
        env = np.clip(np.minimum(t, duration - t) / 0.01, 0, 1)
        x = np.sin(2 * np.pi * f * t) * env
    elif kind == "music":
        x = np.zeros(n)
        notes = int(rng.integers(2, 6))
        bounds = np.sort(rng.uniform(0, duration, notes - 1))
        for s, e in zip(np.r_[0.0, bounds], np.r_[bounds, duration]):
            f0 = 110.0 * 2 ** (int(rng.integers(0, 30)) / 12)
            m = (t >= s) & (t < e)
            tt = t[m] - s
            env = np.exp(-tt / rng.uniform(0.2, 1.0)) * np.clip(tt / 0.01, 0, 1)
            x[m] += sum(np.sin(2 * np.pi * f0 * h * tt) / h ** rng.uniform(1, 2) for h in range(1, 7)) * env
    elif kind == "buzz":
        f = rng.uniform(90, 250)
        x = np.sign(np.sin(2 * np.pi * f * t)) * 0.5 + 0.3 * rng.standard_normal(n)
        x = _fft_filter(x, 1.0 / (1.0 + np.fft.rfftfreq(n, 1 / SAMPLE_RATE) / 1500.0))
    else:
        raise AugmentError(f"unknown non-speech sound {kind!r}; choose from {NON_SPEECH}")
    return (x / (np.max(np.abs(x)) + 1e-9)).astype(np.float32)
