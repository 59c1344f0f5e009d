"""LipSyncRules: speech (+ phonemes) + a portrait's fitted 3DMM -> driving MorphCoeffs, by rules.

No learned weights: PocketSphinx phones (or given ones) -> the synthetic generator's viseme
table with co-articulation -> the 28 mouth coefficients (nodes/lipsync/rules.py). The output
is MorphCoeffs like AnimationGenerator's, so DenseFlowBuilder, Render3DMM and
RenderTalkingFace take it; `workflows/lipsync_rules.yaml` renders it.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from graphcore.node import CachePolicy, In, Node, NodeError, Out, OutputFile, RunContext
from nodes.audio.phonetic_nodes import Recognition, recognition_field
from nodes.types import AudioClip, MorphCoeffs, PhonemeTrack


class LipSyncRules(Node):
    """Mouth animation from speech without a checkpoint: phonemes -> visemes -> 3DMM mouth.

    Phones come from the `phonemes` input (RecognizePhonemes or SynthesizeSpeech), else are
    recognised here (aligned when a `text` / `transcript` is given). The viseme curves
    (Cohen–Massaro co-articulation) run `lead` s ahead of the sound, open wider on louder
    frames (`energy`), and long pauses close the lips; they are added to the portrait's rest
    expression. The head keeps the reference pose; blinks are seeded (`blink_rate`).
    """

    category = "lipsync"
    inputs = {
        "audio": In("Audio", "the speech"),
        "reference": In("MorphCoeffs", "the portrait's fitted coefficients (first frame: the rest face and pose)"),
        "phonemes": In("PhonemeTrack", "phones to use (else recognised from the audio)", optional=True),
        "text": In("String", "what is said: forced alignment instead of recognition", optional=True),
    }
    outputs = {
        "coeffs": Out("MorphCoeffs", "per-frame expression and pose with the portrait's identity"),
        "blink": Out("Array", "eyelid closure per frame, float32 (T,) in [0, 1]"),
    }

    class Params(BaseModel):
        fps: float = Field(25.0, gt=0, le=120, description="video frame rate")
        amplitude: float = Field(1.0, ge=0, le=1.5, description="scales every viseme target")
        lead: float = Field(0.02, ge=-0.2, le=0.2, description="seconds the mouth runs ahead of the sound")
        energy: float = Field(0.2, ge=0, le=1, description="how much louder frames open the mouth wider (0: not at all)")
        min_confidence: float = Field(1.0, ge=0, le=1, description="dominance floor of uncertain phones (1: ignore confidence)")
        closed_rest: bool = Field(True, description="close the lips in long pauses and silence")
        rest_opening: float = Field(0.5, ge=0, le=1, description="how much of the portrait's own mouth opening stays between visemes (1: all, as before 2026-12-03; lower: the lips close between syllables)")
        rest_after: float = Field(0.25, ge=0.04, le=5, description="a pause at least this long (s) is a rest")
        quiet_rest: bool = Field(False, description="also rest wherever the audio is quiet that long, whatever the phones")
        transcript: str = Field("", description="what is said, when neither phonemes nor text are connected")
        recognition: Recognition = recognition_field()
        blink_rate: float = Field(17.0, ge=0, le=60, description="blinks per minute")
        seed: int = Field(0, ge=0, description="seed of the blinks")

    def run(self, ctx: RunContext, audio: AudioClip, reference: MorphCoeffs, phonemes: PhonemeTrack | None = None,
            text: str | None = None) -> dict[str, Any]:
        from nodes.synth.motion import blink_curve
        from trainers.data.audio_features import frame_count
        from trainers.data.phonetic import phones

        from .rules import RuleSettings, frame_activity, rule_expression, rule_mouth

        p = self.params
        n = frame_count(len(audio.samples), audio.sample_rate, p.fps)
        if n == 0:
            raise NodeError("LipSyncRules: the audio is shorter than half a video frame: nothing to animate")
        if reference.expression.shape[0] == 0:
            raise NodeError("LipSyncRules: the reference coefficients have no frames")
        if phonemes is None:
            result, _ = phones(audio.samples, audio.sample_rate, text if text is not None else (p.transcript or None),
                               words=p.recognition == "words")
            if result.note:
                ctx.log(result.note)
            phonemes = PhonemeTrack.from_items(result.items, alphabet="arpabet")
            ctx.log(f"{result.mode} {sum(1 for x in phonemes.labels if x != 'SIL')} phones")
        settings = RuleSettings(fps=p.fps, amplitude=p.amplitude, lead=p.lead, energy=p.energy,
                                min_confidence=p.min_confidence, closed_rest=p.closed_rest, rest_after=p.rest_after)
        loudness, activity = frame_activity(audio.samples, audio.sample_rate, n, p.fps)
        curves, unknown = rule_mouth(phonemes.items(), n, settings, alphabet=phonemes.alphabet,
                                     confidence=phonemes.confidence, loudness=loudness,
                                     activity=activity if p.quiet_rest else None)
        if unknown:
            ctx.log(f"phonemes not in the viseme table (mapped by their class): {sorted(unknown)}")
        expression = rule_expression(reference.expression[0], curves, p.rest_opening)
        pose = np.repeat(np.asarray(reference.pose[0], np.float32)[None], n, axis=0)
        coeffs = MorphCoeffs(shape=np.asarray(reference.shape, np.float32), expression=expression, pose=pose,
                             error=np.zeros(n, np.float32), image_size=tuple(reference.image_size))
        return {"coeffs": coeffs, "blink": blink_curve(n, p.fps, p.seed, p.blink_rate)}


class EvaluateLipSync(Node):
    """Lip sync on held-out speech (docs/lipsync.md): each method's lip gap against the truth.

    Clips: the held-out voices (espeak-ng en-gb-x-rp, flite awb, festival ked_diphone) speaking
    held-out sentences, clean and under held-out degradations (phone call, traffic noise,
    codec2, pitch shift with pauses). Truth: the synthetic generator's mouth for each engine's
    own phoneme timings. Methods: the RMS-envelope and recogniser baselines, LipSyncRules, and
    the workflows hdtf.yaml / memorygan_image.yaml / audio2head.yaml run up to their mouth
    (each with `speech.path` set to the clip). Score: Pearson correlation of the lip gaps, mean
    per condition. Runs every time (the pipelines' workflows and checkpoints are read at run time).
    """

    category = "lipsync"
    cache = CachePolicy.RECOMPUTE
    outputs = {"metrics": Out("Metrics", "'method.condition' -> mean correlation"), "report": Out("String", "the table (markdown)")}

    class Params(BaseModel):
        methods: list[str] = Field(["rms", "recogniser", "rules", "hdtf", "memorygan_image", "audio2head"],
                                   description="rms, recogniser, rules, and pipeline names (hdtf, memorygan_image, audio2head)")
        conditions: list[str] = Field(["clean", "phone call", "traffic 10 dB", "codec2 2400", "pitch +2 st + pauses"],
                                      description="held-out conditions (nodes/lipsync/benchmark.py CONDITIONS)")
        sentences: int = Field(2, ge=1, le=15, description="how many held-out sentences each voice speaks")
        path: str = OutputFile("lipsync_eval.md", description="where to write the markdown table", extensions=(".md",))

    def run(self, ctx: RunContext) -> dict[str, Any]:
        import re

        from nodes.synth.sentences import EVAL_SENTENCES

        from .benchmark import CONDITIONS, METHODS, PIPELINES, evaluate, make_clips, table

        p = self.params
        bad = [m for m in p.methods if m not in METHODS and m.split(":")[0] not in PIPELINES]
        bad += [c for c in p.conditions if c not in CONDITIONS]
        if bad:
            raise NodeError(f"EvaluateLipSync: unknown methods/conditions {bad}; methods: {[*METHODS, *PIPELINES]}, "
                            f"conditions: {list(CONDITIONS)}")
        clips = make_clips(sentences=EVAL_SENTENCES[1:1 + p.sentences], conditions=p.conditions)
        ctx.log(f"{len(clips)} held-out clips, {sum(len(c.truth) for c in clips)} frames")
        scores = evaluate(clips, p.methods, cache_dir=ctx.tmp_dir / "pipelines",
                          progress=lambda i, n, m: ctx.progress(i, n, m))
        text = table(scores, p.conditions)
        path = ctx.resolve_path(p.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n", encoding="utf-8")
        ctx.log(text)
        slug = lambda name: re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")  # noqa: E731
        metrics = {f"{m}.{slug(c)}": float(sum(v) / len(v)) for m, by in scores.items() for c, v in by.items()}
        return {"metrics": metrics, "report": text}
