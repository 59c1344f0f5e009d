"""Dataset nodes: the synthetic generator's dataset mode and real-video preparation.

Both write the layout of docs/dataset-format.md to `path` (a local folder or an fsspec URL) and
output its location for the trainers. `path` is where the dataset goes, not a cached value: the
node's cache entry records a manifest of the folder it wrote (an OutputFolder), so a dataset
deleted or changed on disk is written again on the next run. fsspec URLs are not checked that
way: delete the entry (`graphrun cache rm`) or change a parameter to write one again.
"""
from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field, field_validator

from graphcore.node import In, InputFile, Node, NodeError, Out, OutputFolder, RunContext
from nodes.face.model_nodes import FACE_MODEL_CODE, face_model_files, model_path_param, resolve_model
from nodes.types import MorphCoeffs

from .speech import TRAINING_VOICES

# The dataset writer and what it stores (`code_dependencies` of both nodes).
DATASET_CODE = ("nodes.synth.dataset", "nodes.synth.speech", "nodes.synth.espeak", "nodes.synth.engines",
                "nodes.synth.phonesets", "nodes.audio.features", "nodes.io.media", "nodes.types")
FEATURE_VARIANTS = ("mfcc_pitch", "a2h", "mel", "mfcc_window")


def _check_variants(v: list[str]) -> list[str]:
    bad = [x for x in v if x not in FEATURE_VARIANTS]
    if bad:
        raise ValueError(f"unknown audio feature variant(s) {bad}; choose from {list(FEATURE_VARIANTS)}")
    return v


def _dataset_url(ctx: RunContext, path: str) -> str:
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
    code_dependencies = (*DATASET_CODE, *FACE_MODEL_CODE, "nodes.face.flow", "nodes.face.raster", "nodes.face.fitting",
                         "nodes.face.landmarks", "nodes.synth.generate", "nodes.synth.animate", "nodes.synth.motion",
                         "nodes.synth.render", "nodes.synth.visemes", "nodes.synth.augment", "nodes.synth.identity",
                         "nodes.synth.sentences", "nodes.warp")
    inputs = {
        "portrait": In("Image", "a square portrait"),
        "landmarks": In("Landmarks", "the portrait's detected landmarks (1, 478, 2|3)"),
        "reference": In("MorphCoeffs", "the portrait's fitted 3DMM coefficients"),
        "model": In("FaceModel", optional=True),
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
        model_path: str = model_path_param()

        _variants = field_validator("features")(_check_variants)

    def implicit_files(self, connected: frozenset[str]) -> dict:
        return face_model_files(self.params.model_path, connected)

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
        url = _dataset_url(ctx, p.path)
        try:
            summary = generate_dataset(url, faces[0], model, settings, identities=faces, identity_info=info,
                                       mp4_dir=ctx.resolve_path(p.mp4_dir) if p.mp4_dir else None,
                                       device=ctx.device, progress=ctx.progress, log=ctx.log)
        except (SpeechError, AugmentError, ValueError) as e:
            raise NodeError(str(e)) from None
        ctx.log(f"wrote {summary['clips']} clips, {summary['frames']} frames ({summary['seconds']:.1f} s) to {url}")
        return {"dataset": url, "summary": summary}


class PrepareDataset(Node):
    """Prepare a folder of talking-head videos: HDTF crop, landmarks, 3DMM fit, audio features.

    Every video matching `pattern` becomes one clip (files in name order): the face window is
    fixed per video (CropAlign), frames are retimed to `fps`, cropped and resized to `size`,
    landmarked (DetectLandmarks), fitted (Fit3DMM) and stored with its 16 kHz sound and features.
    A video that cannot be used stops the run with its name (`on_error: stop`) or is skipped
    and reported (`on_error: skip`).
    """

    category = "synth"
    code_dependencies = (*DATASET_CODE, *FACE_MODEL_CODE, "nodes.face.crop", "nodes.face.fitting", "nodes.face.landmarks",
                         "nodes.synth.prepare")
    inputs = {"model": In("FaceModel", optional=True)}
    outputs = {"dataset": Out("Path", "the dataset's location (folder or URL)"), "summary": Out("Metrics")}

    class Params(BaseModel):
        folder: str = InputFile(description="folder of videos (its files' contents key the cache)")
        pattern: str = Field("*.mp4", description="glob of the videos inside the folder (e.g. '**/*.mp4')")
        path: str = OutputFolder("out/prepared_dataset.zarr", description="where to write the dataset (folder or fsspec URL)")
        size: Literal[256, 512] = Field(512, description="crop size in pixels")
        fps: float = Field(25.0, gt=0, le=100, description="frame rate of the dataset")
        crop_scale: float = Field(2.2, ge=1.0, le=5.0, description="crop side / face-box side (CropAlign's scale)")
        features: list[str] = Field(default_factory=lambda: ["mfcc_pitch"], description="audio feature variants to store")
        split_seed: int = Field(0, ge=0, description="seed of the per-clip train/val/test draw")
        on_error: Literal["stop", "skip"] = Field("stop", description="a bad video stops the run, or is skipped")
        model_path: str = model_path_param()

        _variants = field_validator("features")(_check_variants)

    def implicit_files(self, connected: frozenset[str]) -> dict:
        return face_model_files(self.params.model_path, connected)

    def run(self, ctx: RunContext, model: Any = None) -> dict[str, Any]:
        from .dataset import DatasetWriter, assign_splits
        from .prepare import PrepareSettings, prepare_video

        p = self.params
        folder = ctx.resolve_path(p.folder)
        if not folder.is_dir():
            raise NodeError(f"PrepareDataset: {folder} is not a folder")
        files = sorted(f for f in folder.glob(p.pattern) if f.is_file())
        if not files:
            raise NodeError(f"PrepareDataset: no file in {folder} matches {p.pattern!r}")
        face_model = resolve_model(ctx, "PrepareDataset", model, p.model_path)
        settings = PrepareSettings(size=p.size, fps=p.fps, crop_scale=p.crop_scale, features=tuple(p.features))
        url = _dataset_url(ctx, p.path)
        writer = DatasetWriter(url, fps=p.fps, frame_size=(p.size, p.size), source="prepared", landmark_source="mediapipe",
                               attrs={"folder": str(folder), "pattern": p.pattern, "crop_scale": p.crop_scale})
        splits = assign_splits(len(files), p.split_seed)
        skipped: list[str] = []
        frames = 0
        for i, (f, split) in enumerate(zip(files, splits)):
            ctx.progress(i, len(files), f.name)
            name = f"clip_{i - len(skipped):05d}"
            try:
                frames += prepare_video(f, writer, name, split, face_model, settings, log=ctx.log)
            except Exception as e:  # any failure on one file names that file
                msg = str(e) if str(f) in str(e) else f"{f}: {e}"
                if p.on_error == "stop":
                    raise NodeError(f"PrepareDataset: {msg}") from (None if isinstance(e, NodeError) else e)
                skipped.append(f.name)
                writer.drop_clip(name)
                ctx.log(f"skipped {msg}")
        ctx.progress(len(files), len(files), "done")
        counts = writer.close()
        if not writer.clips:
            raise NodeError(f"PrepareDataset: none of the {len(files)} videos could be prepared (skipped: {skipped})")
        return {"dataset": url, "summary": {"clips": len(writer.clips), "frames": frames, "skipped": len(skipped), **counts}}
