"""Speed of the phonetic front-end (issue 11): times real time on this machine.

    python bench/phonetic.py [--seconds 30] [--threads 2]

Speech: held-out sentences spoken by espeak-ng (en-gb-x-rp), concatenated to about `--seconds`
of audio. Measured in one run, each best of 3: RecognizePhonemes' recognition (two PocketSphinx
all-phone decodes, then the word path: a word decode with the generic LM and its alignment; and
the phone loop alone, `recognition: phones`), forced alignment with the text, the whole
`phonetic` feature variant (recognition + YIN + smoothing), and as the baseline the paper front-end `mfcc_pitch` (HDTF's
13 MFCC + 2 pitch) of the same audio. Prints seconds, times real time (audio seconds per
compute second; > 1 is faster than real time) and the ratio to the baseline, with the load
average (the machine may be shared).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(a.threads)
    import numpy as np

    from nodes.synth.sentences import EVAL_SENTENCES
    from nodes.synth.speech import synthesize
    from trainers.data import phonetic as ph
    from trainers.data.audio_features import audio_features

    parts, text, total = [], [], 0.0
    for s in EVAL_SENTENCES * 10:
        sp = synthesize(s, voice="en-gb-x-rp", rate=160)
        parts.append(sp.samples)
        text.append(s)
        total += len(sp.samples) / 16000
        if total >= a.seconds:
            break
    x = np.concatenate(parts)
    transcript = " ".join(text)
    dur = len(x) / 16000
    rows = [
        ("mfcc_pitch features (baseline)", lambda: audio_features(x, 16000, "mfcc_pitch")),
        ("recognise, phone loop (2 all-phone)", lambda: ph.recognize(x, 16000, words=False)),
        ("recognise, + word path (default)", lambda: ph.recognize(x, 16000)),
        ("forced alignment", lambda: ph.align(x, 16000, transcript)),
        ("phonetic features (recognise + YIN)", lambda: ph.phonetic_features(x, 16000)),
    ]
    print(f"{dur:.1f} s of speech, {a.threads} threads, load average {os.getloadavg()[0]:.2f} "
          f"{os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    base = None
    for name, fn in rows:
        sec = best_of(fn)
        base = base or sec
        print(f"{name:38s} {sec:7.2f} s   {dur / sec:7.1f}x real time   {sec / base:6.1f}x the baseline's time")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
