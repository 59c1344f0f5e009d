"""flite and festival: two more offline speech engines with per-phoneme timings.

Both are Debian packages driven as subprocesses (each request in a fresh process, so the same
request always gives the same samples):

- **flite 2.2** (`flite`): built-in voices `kal` (8 kHz diphone), `kal16` (16 kHz diphone) and
  the clustergen voices `awb`, `rms`, `slt` — statistical parametric voices built from the CMU
  ARCTIC recordings of real speakers (Scottish male, US male, US female). `-psdur` prints every
  segment with its end time. Rate: `--setf duration_stretch`; pitch: `--setf int_f0_target_mean`
  (the `rms` voice ignores it: its pitch cannot be changed).
- **festival 2.5** (`festival -b script.scm`): `kal_diphone` (festvox-kallpc16k), `ked_diphone`
  (festvox-kdlpc16k), `cmu_us_slt_arctic_hts` (festvox-us-slt-hts, 32 kHz HTS). `utt.save.segs`
  writes every segment's end time. Rate: `Duration_Stretch` (diphone) or hts_engine's `-r`;
  pitch: the diphone voices' `int_lr_params` target mean, hts_engine's `-fm` (half-tones).

Both report CMU ARPAbet phones, converted to eSpeak mnemonics (`phonesets.py`); segments are
contiguous, the first starts at 0, the track is cut at the end of the audio.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from .espeak import SpeechError
from .phonesets import arpabet_to_espeak

NORMAL_RATE = 160.0  # words per minute the engines' own timing is taken to be (their stretch 1.0)
PITCH_SEMITONES = 6.0  # pitch 0 / 100 = this many half-tones below / above the voice's normal

# flite voice -> (its normal F0 in Hz measured on "Hello world, this is a test of pitch.", or None
# when the voice ignores int_f0_target_mean)
FLITE_VOICES: dict[str, float | None] = {"kal": 85.0, "kal16": 85.0, "awb": 125.0, "rms": None, "slt": 164.0}
# festival voice -> (kind, Debian package)
FESTIVAL_VOICES: dict[str, tuple[str, str]] = {
    "kal_diphone": ("diphone", "festvox-kallpc16k"),
    "ked_diphone": ("diphone", "festvox-kdlpc16k"),
    "cmu_us_slt_arctic_hts": ("hts", "festvox-us-slt-hts"),
}
_DIPHONE_F0, _DIPHONE_STRETCH = 105.0, 1.1  # the diphone voices' own int_lr target mean and Duration_Stretch


def semitones(pitch: float) -> float:
    """espeak-ng's 0-100 pitch scale (50 = the voice's normal) as a shift in half-tones."""
    return (float(pitch) - 50.0) / 50.0 * PITCH_SEMITONES


def _need(binary: str, package: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise SpeechError(f"{binary} is not installed (Debian package {package}; `make system` installs it)")
    return path


def _run(cmd: list[str], cwd: Path, what: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, timeout=600, check=False)
    if proc.returncode != 0:
        err = (proc.stderr or proc.stdout).decode("utf-8", "replace").strip()[-500:]
        raise SpeechError(f"{what} failed (exit {proc.returncode}): {err}")
    return proc


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    if not path.is_file() or path.stat().st_size <= 44:
        raise SpeechError(f"the engine wrote no audio ({path.name})")
    x, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return x.mean(axis=1), int(rate)


def _track(ends: list[tuple[str, float]], duration: float) -> list[tuple[str, float, float]]:
    """[(ARPAbet phone, end s)] -> contiguous [(eSpeak mnemonic, start, end)] cut at `duration`."""
    items, t0 = [], 0.0
    for phone, end in ends:
        end = min(float(end), duration)
        if end > t0 + 1e-6:
            items.append((arpabet_to_espeak(phone), t0, end))
            t0 = end
    if items and duration > t0 + 1e-6:  # audio after the last segment: the last phone holds
        label, s, _ = items[-1]
        items[-1] = (label, s, duration)
    return items


def flite(text: str, voice: str, rate: float = NORMAL_RATE, pitch: float = 50.0) -> tuple[np.ndarray, int, list]:
    """flite: (float32 samples, sample rate, [(eSpeak mnemonic, start s, end s)])."""
    exe = _need("flite", "flite")
    if voice not in FLITE_VOICES:
        raise SpeechError(f"unknown flite voice {voice!r}; built-in voices: {sorted(FLITE_VOICES)}")
    cmd = [exe, "-voice", voice, "--setf", f"duration_stretch={NORMAL_RATE / float(rate):.4f}"]
    base = FLITE_VOICES[voice]
    if base is not None:
        cmd += ["--setf", f"int_f0_target_mean={base * 2 ** (semitones(pitch) / 12):.2f}"]
    with tempfile.TemporaryDirectory(prefix="flite_") as tmp:
        out = Path(tmp) / "out.wav"
        proc = _run([*cmd, "-psdur", "-t", text, "-o", str(out)], Path(tmp), f"flite -voice {voice}")
        samples, sr = _read_wav(out)
    ends = []
    for tok in proc.stdout.decode("utf-8", "replace").split():
        phone, sep, end = tok.rpartition(":")
        if sep and phone:
            ends.append((phone, float(end)))
    if not ends:
        raise SpeechError(f"flite -voice {voice} printed no segment timings for {text[:60]!r}")
    return samples, sr, _track(ends, len(samples) / sr)


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def festival(text: str, voice: str, rate: float = NORMAL_RATE, pitch: float = 50.0) -> tuple[np.ndarray, int, list]:
    """festival: (float32 samples, sample rate, [(eSpeak mnemonic, start s, end s)])."""
    exe = _need("festival", "festival")
    if voice not in FESTIVAL_VOICES:
        raise SpeechError(f"unknown festival voice {voice!r}; supported: {sorted(FESTIVAL_VOICES)}")
    kind, package = FESTIVAL_VOICES[voice]
    shift = semitones(pitch)
    if kind == "hts":
        setup = (f"(set! hts_engine_params (append hts_engine_params "
                 f"(list '(\"-r\" {float(rate) / NORMAL_RATE:.4f}) '(\"-fm\" {shift:.4f}))))")
    else:
        setup = (f"(Parameter.set 'Duration_Stretch {_DIPHONE_STRETCH * NORMAL_RATE / float(rate):.4f})\n"
                 f"(set! int_lr_params (cons '(target_f0_mean {_DIPHONE_F0 * 2 ** (shift / 12):.2f}) "
                 f"(cdr int_lr_params)))")
    with tempfile.TemporaryDirectory(prefix="festival_") as tmp:
        wav, segs = Path(tmp) / "out.wav", Path(tmp) / "out.segs"
        script = Path(tmp) / "say.scm"
        script.write_text(
            f"(if (not (member_string '{voice} (mapcar car voice-locations)))\n"
            f"    (begin (format t \"NOVOICE\\n\") (exit 3)))\n"
            f"(voice_{voice})\n{setup}\n"
            f"(set! utt (Utterance Text {_scheme_string(text)}))\n(utt.synth utt)\n"
            f"(utt.save.wave utt \"{wav}\" 'riff)\n(utt.save.segs utt \"{segs}\")\n")
        proc = subprocess.run([exe, "-b", str(script)], cwd=tmp, capture_output=True, timeout=600, check=False)
        if proc.returncode == 3 or b"NOVOICE" in proc.stdout:
            raise SpeechError(f"festival voice {voice!r} is not installed (Debian package {package})")
        if proc.returncode != 0:
            raise SpeechError(f"festival ({voice}) failed (exit {proc.returncode}): "
                              f"{(proc.stderr or proc.stdout).decode('utf-8', 'replace').strip()[-500:]}")
        samples, sr = _read_wav(wav)
        lines = segs.read_text().splitlines() if segs.is_file() else []
    ends = []
    for line in lines[1:] if lines and lines[0].startswith("#") else lines:
        parts = line.split()
        if len(parts) >= 3 and not line.startswith("#"):
            ends.append((parts[2], float(parts[0])))
    if not ends:
        raise SpeechError(f"festival ({voice}) wrote no segment timings for {text[:60]!r}")
    return samples, sr, _track(ends, len(samples) / sr)


def flite_voices() -> list[str]:
    return sorted(FLITE_VOICES) if shutil.which("flite") else []


def festival_voices() -> list[str]:
    """The supported festival voices that are installed (checked by their voice folders)."""
    if not shutil.which("festival"):
        return []
    roots = [Path("/usr/share/festival/voices"), Path("/usr/lib/festival/voices")]
    found = {p.name for r in roots if r.is_dir() for p in r.glob("*/*") if p.is_dir()}
    return sorted(v for v in FESTIVAL_VOICES if v in found)

