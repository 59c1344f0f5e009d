"""Lip sync on speech nothing was trained on: the held-out evaluation of docs/lipsync.md.

Clips: `EVAL_SENTENCES` spoken by the held-out voices (`HELD_OUT_VOICES`: espeak-ng
en-gb-x-rp, flite awb, festival ked_diphone — no training workflow uses them), each under
recording-like conditions built only from held-out degradation kinds (`CONDITIONS`). Truth:
the mouth the synthetic generator would give each engine's own phoneme timings — the viseme
table with co-articulation (`nodes.synth.visemes.mouth_curves`) on the 3DMM's mean face — as
the inner-lip gap (`evaluate.model_lip_gap`). Score: Pearson correlation of a method's lip gap
with the truth's, per clip, averaged per condition (the issue's metric).

Methods:
- `rms`: the RMS-envelope baseline (frame loudness in dB, smoothed).
- `recogniser`: the issue's crude baseline — PocketSphinx all-phone phones (the phone loop alone,
  no word recognition), a per-phone mouth openness table, smoothed.
- `rules`: the rule-based LipSyncRules (nodes/lipsync/rules.py, default settings) on the mean
  face (the rules' own signal; `rules_phones` the same on the phone loop alone, without the word
  path of `recognize`; `lipsync_rules` / `lipsync_rules_video` are the workflow on the
  sample portrait: its coefficients, and MediaPipe on its rendered video).
- pipelines (`PIPELINES`): a workflow run in-process up to the node that carries the mouth,
  with `speech.path` set to the clip; its lip gap is read from its MorphCoeffs through the
  3DMM (HDTF's animation generator, Yi's audio-to-expression net, MetaTalk's A2E), from the
  generated MediaPipe landmarks (IP_LAP's landmark generator), or measured with MediaPipe on its
  frames (Audio2Head, whose keypoints have no 3DMM). Each coefficient/landmark pipeline has a
  `*_video` twin scoring the same workflow's rendered frames with MediaPipe (what a viewer sees:
  the renderer and the sample portrait's own lips included). A pipeline method may carry workflow
  overrides after colons, e.g. `hdtf:features.variant=mfcc_pitch:animation.checkpoint=OLD.pt`
  (an ablation scored in the same run).

The truth is synthetic: real speech may differ (the hidden real clip of issue 11 is the judge).
`python -m nodes.lipsync.benchmark` prints the table; `EvaluateLipSync` is the node form.
"""
from __future__ import annotations

import dataclasses
import tempfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .evaluate import correlation, landmark_lip_gap, model_lip_gap

FPS = 25.0
# Held-out conditions: only evaluation-only degradation kinds (nodes/synth/augment.py).
CONDITIONS: dict[str, list[dict[str, Any]]] = {
    "clean": [],
    "phone call": [{"kind": "sox_reverb", "reverberance": 45, "room": 60},
                   {"kind": "noise", "noise": "babble", "snr_db": 12.0, "seed": 11},
                   {"kind": "band", "low": 300, "high": 3400},
                   {"kind": "codec", "name": "gsm", "bitrate": 13},
                   {"kind": "gain", "db": -8.0, "clip": 0}],
    "traffic 10 dB": [{"kind": "traffic", "snr_db": 10.0, "seed": 12}],
    "codec2 2400": [{"kind": "band", "low": 300, "high": 3400}, {"kind": "codec", "name": "codec2", "bitrate": 2400}],
    "pitch +2 st + pauses": [{"kind": "pitch", "semitones": 2.0}],
}
PAUSE_SECONDS = 0.8  # the "pauses" condition speaks the sentence in two halves with silence between and around
METHODS = ("rms", "recogniser", "rules", "rules_phones")
# workflow, node carrying the mouth, its port, how to read the lip gap ("coeffs" or "frames")
PIPELINES: dict[str, tuple[str, str, str, str]] = {
    "lipsync_rules": ("lipsync_rules.yaml", "lipsync", "coeffs", "coeffs"),  # LipSyncRules on the sample portrait
    "lipsync_rules_video": ("lipsync_rules.yaml", "render", "frames", "frames"),  # ... and MediaPipe on its video
    "hdtf": ("hdtf.yaml", "animation", "coeffs", "coeffs"),
    "hdtf_video": ("hdtf.yaml", "video", "frames", "frames"),
    "memorygan_image": ("memorygan_image.yaml", "animate", "coeffs", "coeffs"),
    "memorygan_image_video": ("memorygan_image.yaml", "refine", "frames", "frames"),
    "audio2head": ("audio2head.yaml", "render", "frames", "frames"),
    "metatalk": ("metatalk.yaml", "a2e", "coeffs", "coeffs"),
    "metatalk_video": ("metatalk.yaml", "paste", "frames", "frames"),
    "ip_lap": ("ip_lap.yaml", "lips", "landmarks", "landmarks"),
    "ip_lap_video": ("ip_lap.yaml", "render", "frames", "frames"),
}
# Mouth openness per ARPAbet phone for the crude recogniser baseline (0 closed .. 1 wide open).
OPENNESS = {"AA": 1.0, "AE": 0.9, "AH": 0.7, "AO": 0.8, "AW": 0.8, "AY": 0.85, "EH": 0.7, "ER": 0.5, "EY": 0.6,
            "IH": 0.45, "IY": 0.35, "OW": 0.6, "OY": 0.6, "UH": 0.4, "UW": 0.3, "B": 0.0, "P": 0.0, "M": 0.0,
            "F": 0.15, "V": 0.15, "W": 0.2, "SIL": 0.0}


@dataclasses.dataclass
class Clip:
    name: str  # "voice | sentence k"
    condition: str
    samples: np.ndarray  # float32, 16 kHz
    truth: np.ndarray  # (T,) lip gap of the generator's mouth for the clip's own timings


def _pauses(samples: np.ndarray, track: list, sr: int = 16000) -> tuple[np.ndarray, list]:
    """The clip split at its middle word boundary, PAUSE_SECONDS of silence before, between and after."""
    from nodes.synth.speech import is_pause

    mid = len(track) // 2
    while mid < len(track) - 1 and not is_pause(track[mid][0]):
        mid += 1
    cut_t = track[mid][1] if mid < len(track) else track[-1][2] / 2
    cut = int(round(cut_t * sr))
    gap = np.zeros(int(PAUSE_SECONDS * sr), np.float32)
    x = np.concatenate([gap, samples[:cut], gap, samples[cut:], gap])
    shifted = [(p, s + (PAUSE_SECONDS if s < cut_t else 2 * PAUSE_SECONDS), e + (PAUSE_SECONDS if s < cut_t else 2 * PAUSE_SECONDS))
               for p, s, e in track]
    end = len(x) / sr
    pauses = [("_", 0.0, PAUSE_SECONDS), ("_", cut / sr + PAUSE_SECONDS, cut / sr + 2 * PAUSE_SECONDS),
              ("_", end - PAUSE_SECONDS, end)]
    return x, sorted(shifted + pauses, key=lambda it: it[1])


def make_clips(voices: Sequence[str] | None = None, sentences: Sequence[str] | None = None,
               conditions: Sequence[str] | None = None, rate: int = 160) -> list[Clip]:
    """The held-out clips (default: every held-out voice, the first two EVAL_SENTENCES, all conditions)."""
    from nodes.synth.augment import apply_chain
    from nodes.synth.sentences import EVAL_SENTENCES
    from nodes.synth.speech import HELD_OUT_VOICES, synthesize
    from nodes.synth.visemes import mouth_curves
    from trainers.data.audio_features import frame_count

    voices = list(voices or HELD_OUT_VOICES)
    sentences = list(sentences or EVAL_SENTENCES[1:3])
    conditions = list(conditions or CONDITIONS)
    said: dict[tuple[str, str], Any] = {}

    def say(voice: str, sentence: str) -> Any:  # each (voice, sentence) synthesised once
        if (voice, sentence) not in said:
            said[voice, sentence] = synthesize(sentence, voice=voice, rate=rate)
        return said[voice, sentence]

    spoken = [(v, k, say(v, s)) for v in voices for k, s in enumerate(sentences)]
    # the babble: the default clips' speech (held-out voices only) whatever is chosen, so a clip
    # of a smaller run is the same clip as in the full one
    needs_babble = any(step.get("noise") == "babble" for c in conditions for step in CONDITIONS[c])
    babble = np.concatenate([say(v, s).samples for v in HELD_OUT_VOICES for s in EVAL_SENTENCES[1:3]]) \
        if needs_babble else None
    clips = []
    for v, k, sp in spoken:
        for cond in conditions:
            x, track = sp.samples, sp.phonemes.items()
            if "pauses" in cond:
                x, track = _pauses(x, track)
            x, track = apply_chain(x, track, CONDITIONS[cond], babble_source=babble)
            n = frame_count(len(x), 16000, FPS)
            clips.append(Clip(f"{v} | sentence {k + 1}", cond, x, model_lip_gap(mouth_curves(track, n, FPS)[0])))
    return clips


# ------------------------------------------------------------------------------------- methods


def rms_gap(samples: np.ndarray, n: int) -> np.ndarray:
    """RMS-envelope baseline: frame loudness (dB), smoothed over ~3 frames."""
    from scipy.ndimage import gaussian_filter1d

    hop = int(16000 / FPS)
    x = np.pad(np.asarray(samples, np.float64), (0, max(0, n * hop - len(samples))))
    rms = np.sqrt(np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1))
    return gaussian_filter1d(20 * np.log10(np.maximum(rms, 1e-5)), 1.0)


def recogniser_gap(samples: np.ndarray, n: int) -> np.ndarray:
    """The crude baseline: recognised phones -> OPENNESS (other consonants 0.3) per frame, smoothed."""
    from scipy.ndimage import gaussian_filter1d

    from trainers.data.phonetic import recognize

    t = (np.arange(n) + 0.5) / FPS
    y = np.zeros(n)
    for p, s, e, _ in recognize(samples, 16000, words=False)[0].items:  # the all-phone mode
        y[(t >= s) & (t < e)] = OPENNESS.get(p, 0.3)
    return gaussian_filter1d(y, 1.0)


def rules_gap(samples: np.ndarray, n: int, words: bool = True) -> np.ndarray:
    from trainers.data.phonetic import recognize

    from .rules import RuleSettings, frame_activity, rule_mouth

    result, _ = recognize(samples, 16000, words=words)
    loudness, _ = frame_activity(samples, 16000, n, FPS)
    curves, _ = rule_mouth(result.items, n, RuleSettings(fps=FPS), confidence=[c for *_, c in result.items],
                           loudness=loudness)
    return model_lip_gap(curves)


def coeffs_gap(coeffs) -> np.ndarray:
    """Inner-lip gap of MorphCoeffs through the bundled 3DMM (pose-free)."""
    from nodes.face.model import load_face_model

    return landmark_lip_gap(load_face_model().vertices(coeffs.shape, coeffs.expression))


def frames_gap(frames: np.ndarray) -> np.ndarray:
    from nodes.face.landmarks import detect_landmarks

    lm, _ = detect_landmarks(frames)
    return landmark_lip_gap(lm)


class PipelineRunner:
    """Runs a workflow in-process up to one node, `speech.path` set to a clip (one shared cache,
    so the portrait's landmarks and fit are computed once)."""

    def __init__(self, workflows_dir: Path, cache_dir: Path) -> None:
        from graphcore.cache import CacheStore
        from graphcore.registry import build_registry

        self.dir = Path(workflows_dir)
        self.registry = build_registry(())
        self.cache = CacheStore(str(cache_dir))

    def run(self, workflow: str, node: str, port: str, wav: Path, overrides: Sequence[str] = ()) -> Any:
        from graphcore.loader import apply_overrides, load_workflow
        from graphcore.scheduler import run_graph
        from graphcore.validation import compile_workflow
        from graphcore.workflow import Edge

        wf = load_workflow(self.dir / workflow)
        keep, todo = set(), [node]
        while todo:  # the node and everything upstream of it
            nid = todo.pop()
            if nid not in keep:
                keep.add(nid)
                todo += [e.node for e in wf.nodes[nid].inputs.values() if isinstance(e, Edge)]
        wf.nodes = {k: v for k, v in wf.nodes.items() if k in keep}
        apply_overrides(wf, [f"speech.path={wav}", *overrides], self.registry)
        report = run_graph(compile_workflow(wf, self.registry), cache=self.cache)
        if not report.ok:
            raise RuntimeError(f"{workflow}: {'; '.join(str(e) for e in report.errors)}")
        return report.load_output(node, port)


def clip_wav_name(clip: Clip) -> str:
    """The clip's wav file name, the same in every process (str hash() is salted per process): the
    path is a LoadAudio parameter, so a salted name would make each run miss the last one's cache."""
    return f"clip_{zlib.crc32(f'{clip.name}|{clip.condition}'.encode()):08x}.wav"


def method_gaps(method: str, clip: Clip, runner: PipelineRunner | None = None, tmp: Path | None = None) -> np.ndarray:
    n = len(clip.truth)
    if method == "rms":
        return rms_gap(clip.samples, n)
    if method == "recogniser":
        return recogniser_gap(clip.samples, n)
    if method in ("rules", "rules_phones"):
        return rules_gap(clip.samples, n, words=method == "rules")
    from nodes.io.media import write_audio
    from nodes.types import AudioClip

    base, *overrides = method.split(":")
    workflow, node, port, kind = PIPELINES[base]
    wav = Path(tmp) / clip_wav_name(clip)
    write_audio(wav, AudioClip(clip.samples, 16000))
    value = runner.run(workflow, node, port, wav, overrides)
    if kind == "landmarks":  # MediaPipe layout already (IP_LAP's generated jaw and lips)
        return landmark_lip_gap(value)
    return coeffs_gap(value) if kind == "coeffs" else frames_gap(value)


def silence_check(methods: Sequence[str], seconds: float = 3.0, cache_dir: Path | None = None) -> dict[str, dict[str, float]]:
    """Each method on `seconds` of digital silence: the mean and spread of its lip gap (the mouth
    should be closed and still), next to the same method's gap range on a held-out clip."""
    speech = make_clips(voices=["espeak:en-gb-x-rp"], sentences=["Please remember to bring your passport."],
                        conditions=["clean"])[0]
    n = int(round(seconds * FPS))
    silence = Clip("silence", "silence", np.zeros(int(seconds * 16000), np.float32), np.zeros(n))
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        runner = PipelineRunner(Path(__file__).resolve().parents[2] / "workflows", cache_dir or Path(tmp) / "cache") \
            if any(m.split(":")[0] in PIPELINES for m in methods) else None
        for m in methods:
            quiet = method_gaps(m, silence, runner, Path(tmp))
            talk = method_gaps(m, speech, runner, Path(tmp))
            lo, hi = np.nanpercentile(talk, 5), np.nanpercentile(talk, 95)
            out[m] = {"silence_mean": float(np.nanmean(quiet)), "silence_std": float(np.nanstd(quiet)),
                      "speech_p5": float(lo), "speech_p95": float(hi),
                      "silence_openness": float((np.nanmean(quiet) - lo) / max(hi - lo, 1e-9))}
    return out


def evaluate(clips: Sequence[Clip], methods: Sequence[str], workflows_dir: Path | None = None,
             cache_dir: Path | None = None, progress: Callable[[int, int, str], None] = lambda i, n, m: None,
             ) -> dict[str, dict[str, list[float]]]:
    """Correlations {method: {condition: [r per clip]}}."""
    root = Path(__file__).resolve().parents[2]
    out: dict[str, dict[str, list[float]]] = {m: {} for m in methods}
    with tempfile.TemporaryDirectory() as tmp:
        runner = None
        if any(m.split(":")[0] in PIPELINES for m in methods):
            runner = PipelineRunner(workflows_dir or root / "workflows", cache_dir or Path(tmp) / "cache")
        # with a cache, the clips' wavs live beside it, so a later run finds its results
        wav_dir = Path(cache_dir) / "clips" if cache_dir else Path(tmp)
        wav_dir.mkdir(parents=True, exist_ok=True)
        total, done = len(methods) * len(clips), 0
        for m in methods:
            for c in clips:
                progress(done, total, f"{m}: {c.name}, {c.condition}")
                r = correlation(c.truth, method_gaps(m, c, runner, wav_dir))
                out[m].setdefault(c.condition, []).append(r)
                done += 1
    return out


def select_clips(clips: Sequence[Clip], wanted: Sequence[str]) -> list[Clip]:
    """The clips that "NAME@CONDITION" entries pick (NAME a substring of the clip's name, e.g.
    "flite:awb | sentence 2@phone call"; "@clean" every clean clip), in the clips' order: a
    part of the default run, e.g. to share it between processes."""
    picks = []
    for w in wanted:
        name, sep, condition = w.rpartition("@")
        if not sep or condition not in CONDITIONS:
            raise ValueError(f"--clips {w!r}: write NAME@CONDITION, the condition one of {list(CONDITIONS)}")
        picks.append((name, condition))
    chosen = [c for c in clips if any(n in c.name and c.condition == k for n, k in picks)]
    if not chosen:
        raise ValueError(f"--clips {list(wanted)} picks none of the clips ({clips[0].name!r}, ...)")
    return chosen


ClipKey = tuple[str, str]  # (clip name, condition)


def load_scores(path: str | Path) -> dict[str, dict[ClipKey, float]]:
    """A `--scores` file (JSON lines): {method: {(clip, condition): r}}."""
    import json

    out: dict[str, dict[ClipKey, float]] = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    d = json.loads(line)
                    out.setdefault(d["method"], {})[(d["clip"], d["condition"])] = float(d["r"])
                except (ValueError, KeyError) as e:
                    raise ValueError(f"{path}:{n}: not a score line ({e})") from None
    return out


def baseline_scores(spec: str) -> tuple[str, dict[ClipKey, float]]:
    """`FILE::METHOD` (or FILE when it holds one method) -> (label, per-clip scores). The method
    is matched exactly: names that share a prefix are different runs."""
    path, _, method = spec.partition("::")
    runs = load_scores(path)
    if not method and len(runs) == 1:
        method = next(iter(runs))
    if method not in runs:
        listed = "\n  ".join(runs)
        raise ValueError(f"--against {spec!r}: {'name a method' if not method else f'no method {method!r}'} "
                         f"in {path}; it holds:\n  {listed}")
    return f"{method} ({Path(path).name})", runs[method]


def paired(new: dict[ClipKey, float], base: dict[ClipKey, float]) -> dict[str, float]:
    """New against base on the clips both scored: means, the mean paired difference, its
    standard error and how many clips are better."""
    keys = [k for k in new if k in base and np.isfinite(new[k]) and np.isfinite(base[k])]
    if not keys:
        raise ValueError("no clip was scored in both")
    # at the stored precision (4 decimals), so a re-run of the same method is an exact tie
    a, b = np.round([new[k] for k in keys], 4), np.round([base[k] for k in keys], 4)
    d = a - b
    se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
    return {"n": len(keys), "new": float(a.mean()), "base": float(b.mean()), "diff": float(d.mean()), "se": se,
            "better": int((d > 0).sum())}


def per_clip(scores: dict[str, dict[str, list[float]]], clips: Sequence[Clip]) -> dict[str, dict[ClipKey, float]]:
    """evaluate()'s {method: {condition: [r]}} as {method: {(clip, condition): r}}."""
    out: dict[str, dict[ClipKey, float]] = {}
    for m, by in scores.items():
        rows = out[m] = {}
        for c in dict.fromkeys(k.condition for k in clips):
            names = [k.name for k in clips if k.condition == c]
            rows.update({(n, c): float(r) for n, r in zip(names, by.get(c, []), strict=True)})
    return out


def table(scores: dict[str, dict[str, list[float]]], conditions: Sequence[str]) -> str:
    """Markdown: one row per method, mean correlation per condition and overall."""
    head = "| method | " + " | ".join(conditions) + " | mean |"
    rows = [head, "|" + "---|" * (len(conditions) + 2)]
    for m, by in scores.items():
        vals = [float(np.mean(by[c])) if by.get(c) else float("nan") for c in conditions]
        rows.append(f"| {m} | " + " | ".join(f"{v:.2f}" for v in vals) + f" | {np.nanmean(vals):.2f} |")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> None:
    import argparse
    import json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default=",".join((*METHODS, *PIPELINES)))
    ap.add_argument("--conditions", default=",".join(CONDITIONS))
    ap.add_argument("--sentences", type=int, default=2, help="how many EVAL_SENTENCES (from the second)")
    ap.add_argument("--clips", action="append", default=[], metavar="NAME@CONDITION",
                    help="only these of the clips (repeat; NAME a substring, e.g. 'flite:awb | sentence 2@phone call')")
    ap.add_argument("--cache", default=None, help="cache folder for the pipelines' shared nodes")
    ap.add_argument("--scores", default=None, help="also write each clip's score here (JSON lines)")
    ap.add_argument("--against", action="append", default=[], metavar="FILE::METHOD",
                    help="paired comparison with a method's per-clip scores in a --scores file (repeat)")
    ap.add_argument("--silence", action="store_true", help="also run silence_check for the methods")
    a = ap.parse_args(argv)
    from nodes.synth.sentences import EVAL_SENTENCES

    try:  # every argument error before the clips are made (minutes)
        against = [baseline_scores(spec) for spec in a.against]
    except (OSError, ValueError) as e:
        ap.error(str(e))
    conditions, methods = a.conditions.split(","), a.methods.split(",")
    cache = Path(a.cache) if a.cache else None
    clips = make_clips(sentences=EVAL_SENTENCES[1:1 + a.sentences], conditions=conditions)
    if a.clips:
        try:
            clips = select_clips(clips, a.clips)
        except ValueError as e:
            ap.error(str(e))
    scores = evaluate(clips, methods, cache_dir=cache, progress=lambda i, n, m: print(f"[{i}/{n}] {m}", flush=True))
    print(table(scores, [c for c in conditions if any(k.condition == c for k in clips)]))
    by_clip = per_clip(scores, clips)
    for m in methods:
        for label, base in against:
            try:
                p = paired(by_clip[m], base)
            except ValueError as e:
                print(f"{m} vs {label}: {e}")
                continue
            print(f"{m} vs {label}: n {p['n']}, {p['base']:.3f} -> {p['new']:.3f}, {p['diff']:+.3f} "
                  f"(paired s.e. {p['se']:.3f}, {p['better']} of {p['n']} clips better)")
    if a.scores:
        with open(a.scores, "w") as f:
            for m, rows in by_clip.items():
                for (clip, c), r in rows.items():
                    f.write(json.dumps({"method": m, "condition": c, "clip": clip, "r": round(r, 4)}) + "\n")
    if a.silence:
        for m, v in silence_check(methods, cache_dir=cache).items():
            print(f"silence {m}: " + ", ".join(f"{k} {x:.3f}" for k, x in v.items()))


if __name__ == "__main__":
    main()
