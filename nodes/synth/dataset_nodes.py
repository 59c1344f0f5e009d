"""MakeSyntheticDataset: the synthetic generator's dataset mode (real videos: nodes/prepare).

It writes the layout of docs/dataset-format.md to `path` (a local folder or an fsspec URL) and
outputs its location for the trainers. `path` is where the dataset goes, not a cached value: the
node's cache entry records a manifest of the folder it wrote (an OutputFolder), so a dataset
deleted or changed on disk is written again on the next run. fsspec URLs are not checked that
way: delete the entry (`graphrun cache rm`) or change a parameter to write one again.
"""
from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field, field_validator

from graphcore.node import In, Node, NodeError, Out, OutputFolder, RunContext
from nodes.face.model_nodes import FaceModelInput, resolve_model
from nodes.types import MorphCoeffs
from trainers.data.audio_features import check_variants

from .speech import TRAINING_VOICES


def dataset_url(ctx: RunContext, path: str) -> str:
    """Where a dataset node writes: an fsspec URL as given, a path relative to the workflow."""
    return path if "://" in path else str(ctx.resolve_path(path))


class MakeSyntheticDataset(Node):
    """Write N synthetic talking clips (frames, audio, landmarks, 3DMM, phonemes).

    Each clip draws sentences, a voice (espeak-ng, flite or festival), rate, pitch, articulation and
    head-motion amplitudes and a seed from `seed`; splits (train/val/test) are drawn per clip.
    Options: phrasing with silences, breaths and non-speech sounds (a resting mouth), a recording-like
    degradation per clip, several identities made from the portrait, no frames (audio-driven
    trainers only need audio, coefficients and the identity). Training data never touches the
    held-out voices, sentences and degradations of the lip-sync evaluation (`held_out`).
    """

    category = "synth"
    inputs = {
        "portrait": In("Image", "a square portrait"),
        "landmarks": In("Landmarks", "the portrait's detected landmarks (1, 478, 2|3)"),
        "reference": In("MorphCoeffs", "the portrait's fitted 3DMM coefficients"),
        "model": FaceModelInput(),
    }
    outputs = {"dataset": Out("Path", "the dataset's location (folder or URL)"), "summary": Out("Metrics")}

    class Params(BaseModel):
        path: str = OutputFolder("out/synth_dataset.zarr", description="where to write the dataset (folder or fsspec URL)")
        n_clips: int = Field(8, ge=1, le=100_000, description="number of clips")
        size: Literal[256, 512] = Field(256, description="frame size in pixels (square)")
        seed: int = Field(0, ge=0, description="seed of every per-clip draw")
        sentences: list[str] = Field(default_factory=list, description="sentences to draw from (empty: the built-in ones)")
        more_sentences: bool = Field(False, description="draw from the 104 further built-in sentences too (with empty `sentences`)")
        sentences_per_clip: int = Field(2, ge=1, le=10, description="up to this many sentences per clip")
        voices: list[str] = Field(default_factory=lambda: list(TRAINING_VOICES),
                                  description="voices to draw from: espeak-ng names, or engine:name (flite:slt, festival:kal_diphone)")
        min_rate: int = Field(130, ge=80, le=450, description="slowest speaking rate (words per minute)")
        max_rate: int = Field(190, ge=80, le=450, description="fastest speaking rate (words per minute)")
        phrasing: bool = Field(False, description="speak sentences separately with silences, breaths and non-speech sounds between")
        augment: float = Field(0.0, ge=0.0, le=1.0, description="strength of the recording-like degradation (0: clean speech)")
        clean_fraction: float = Field(0.2, ge=0.0, le=1.0, description="with augment > 0, the fraction of clips left clean")
        identities: int = Field(1, ge=1, le=64, description="faces made from the portrait (1: the portrait only)")
        render: bool = Field(True, description="write frames (off: audio, coefficients, landmarks and identities only)")
        held_out: Literal["exclude", "evaluation", "allow"] = Field(
            "exclude", description="exclude: training data (held-out voices/sentences refused); evaluation: held-out "
                                   "degradations; allow: no check (data for image-only trainers)")
        mouth_lead: float = Field(0.0, ge=0.0, le=0.2, description="seconds the mouth leads the sound (real lips move "
                                                                 "before the sound they shape)")
        features: list[str] = Field(default_factory=lambda: ["mfcc_pitch"], description="audio feature variants to store")
        mp4_dir: str | None = OutputFolder("", description="also write each clip as <mp4_dir>/<clip>.mp4 (empty: no videos)")

        _variants = field_validator("features")(check_variants)

    def run(self, ctx: RunContext, portrait: np.ndarray, landmarks: np.ndarray, reference: MorphCoeffs,
            model: Any = None) -> dict[str, Any]:
        from .augment import AugmentError
        from .generate import SynthDatasetSettings, generate_dataset, resize_portrait
        from .identity import make_identity, plan_identity
        from .sentences import MORE_SENTENCES, SENTENCES
        from .speech import SpeechError, list_voices, voice_known

        p = self.params
        if p.min_rate > p.max_rate:
            raise NodeError(f"min_rate {p.min_rate} is above max_rate {p.max_rate}")
        try:
            known = list_voices()
            unknown = [v for v in p.voices if not voice_known(v, known)]
        except SpeechError as e:
            raise NodeError(str(e)) from None
        if unknown:
            raise NodeError(f"unknown voice(s) {unknown}; installed: {sorted(v for v in known if v.startswith(('en', 'flite', 'festival')))}")
        if landmarks.ndim != 3 or landmarks.shape[0] < 1:
            raise NodeError(f"landmarks must be (1, 478, 2|3), got {landmarks.shape}")
        if tuple(reference.image_size) != tuple(portrait.shape[:2]):
            raise NodeError(f"the reference was fitted on {reference.image_size} images, the portrait is {portrait.shape[:2]}")
        model = resolve_model(ctx, "MakeSyntheticDataset", model, p.model_path)
        try:
            base = resize_portrait(portrait, landmarks[0], reference.shape, reference.expression[0], reference.pose[0],
                                   portrait.shape[1])
            faces, info = [], []
            for k in range(p.identities):
                plan = plan_identity(p.seed, k)
                face = make_identity(portrait, model, plan, base=base, device=ctx.device)
                faces.append(resize_portrait(face.image, face.landmarks, face.shape, face.expression, face.pose, p.size))
                info.append(plan.describe())
                ctx.progress(k + 1, p.identities, "identities")
        except ValueError as e:
            raise NodeError(str(e)) from None
        builtin = SENTENCES + (MORE_SENTENCES if p.more_sentences else ())
        sentences = tuple(t for t in (x.strip() for x in p.sentences) if t) or builtin
        settings = SynthDatasetSettings(n_clips=p.n_clips, size=p.size, seed=p.seed, voices=tuple(p.voices), sentences=sentences,
                                        sentences_per_clip=(1, p.sentences_per_clip), rate=(p.min_rate, p.max_rate),
                                        features=tuple(p.features), phrasing=p.phrasing, augment=p.augment,
                                        clean_fraction=p.clean_fraction, identities=p.identities, render=p.render,
                                        held_out=p.held_out, mouth_lead=p.mouth_lead)
        url = dataset_url(ctx, p.path)
        try:
            summary = generate_dataset(url, faces[0], model, settings, identities=faces, identity_info=info,
                                       mp4_dir=ctx.resolve_path(p.mp4_dir) if p.mp4_dir else None,
                                       device=ctx.device, progress=ctx.progress, log=ctx.log)
        except (SpeechError, AugmentError, ValueError) as e:
            raise NodeError(str(e)) from None
        ctx.log(f"wrote {summary['clips']} clips, {summary['frames']} frames ({summary['seconds']:.1f} s) to {url}")
        return {"dataset": url, "summary": summary}
