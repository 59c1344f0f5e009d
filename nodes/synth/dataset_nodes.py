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


def dataset_url(ctx: RunContext, path: str) -> str:
    """Where a dataset node writes: an fsspec URL as given, a path relative to the workflow."""
    return path if "://" in path else str(ctx.resolve_path(path))


class MakeSyntheticDataset(Node):
    """Write N synthetic talking clips of one portrait (frames, audio, landmarks, 3DMM, phonemes).

    Each clip draws sentences, an espeak-ng voice, rate, pitch, articulation and head-motion
    amplitudes and a seed from `seed`; splits (train/val/test) are drawn per clip.
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
        sentences: list[str] = Field(default_factory=list, description="sentences to draw from (empty: the 32 built-in ones)")
        sentences_per_clip: int = Field(2, ge=1, le=10, description="up to this many sentences per clip")
        voices: list[str] = Field(default_factory=lambda: ["en-us", "en-us+f3", "en-gb", "en-gb+f2", "en-us+m3",
                                                           "en-gb-x-rp", "en-us+f4", "en-gb-scotland"],
                                  description="espeak-ng voices to draw from")
        min_rate: int = Field(130, ge=80, le=450, description="slowest speaking rate (words per minute)")
        max_rate: int = Field(190, ge=80, le=450, description="fastest speaking rate (words per minute)")
        features: list[str] = Field(default_factory=lambda: ["mfcc_pitch"], description="audio feature variants to store")
        mp4_dir: str | None = OutputFolder("", description="also write each clip as <mp4_dir>/<clip>.mp4 (empty: no videos)")

        _variants = field_validator("features")(check_variants)

    def run(self, ctx: RunContext, portrait: np.ndarray, landmarks: np.ndarray, reference: MorphCoeffs,
            model: Any = None) -> dict[str, Any]:
        from .generate import SENTENCES, SynthDatasetSettings, generate_dataset, resize_portrait
        from .speech import SpeechError, list_voices

        p = self.params
        if p.min_rate > p.max_rate:
            raise NodeError(f"min_rate {p.min_rate} is above max_rate {p.max_rate}")
        known = set(list_voices())
        unknown = [v for v in p.voices if v.split("+")[0] not in known]
        if unknown:
            raise NodeError(f"unknown espeak-ng voice(s) {unknown}; installed English voices include "
                            f"{sorted(v for v in known if v.startswith('en'))}")
        if landmarks.ndim != 3 or landmarks.shape[0] < 1:
            raise NodeError(f"landmarks must be (1, 478, 2|3), got {landmarks.shape}")
        if tuple(reference.image_size) != tuple(portrait.shape[:2]):
            raise NodeError(f"the reference was fitted on {reference.image_size} images, the portrait is {portrait.shape[:2]}")
        try:
            face = resize_portrait(portrait, landmarks[0], reference.shape, reference.expression[0], reference.pose[0], p.size)
        except ValueError as e:
            raise NodeError(str(e)) from None
        model = resolve_model(ctx, "MakeSyntheticDataset", model, p.model_path)
        sentences = tuple(t for t in (x.strip() for x in p.sentences) if t) or SENTENCES
        settings = SynthDatasetSettings(n_clips=p.n_clips, size=p.size, seed=p.seed, voices=tuple(p.voices), sentences=sentences,
                                        sentences_per_clip=(1, p.sentences_per_clip), rate=(p.min_rate, p.max_rate),
                                        features=tuple(p.features))
        url = dataset_url(ctx, p.path)
        try:
            summary = generate_dataset(url, face, model, settings, mp4_dir=ctx.resolve_path(p.mp4_dir) if p.mp4_dir else None,
                                       device=ctx.device, progress=ctx.progress, log=ctx.log)
        except SpeechError as e:
            raise NodeError(str(e)) from None
        ctx.log(f"wrote {summary['clips']} clips, {summary['frames']} frames ({summary['seconds']:.1f} s) to {url}")
        return {"dataset": url, "summary": summary}
