"""PrepareDataset: a folder of real talking-head videos -> the dataset format of
docs/dataset-format.md, the layout the synthetic generator writes too (nodes/synth)."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from graphcore.node import InputFile, Node, NodeError, Out, OutputFolder, RunContext
from nodes.face.model_nodes import FaceModelInput, resolve_model
from trainers.data.audio_features import check_variants


class PrepareDataset(Node):
    """Prepare a folder of talking-head videos: HDTF crop, landmarks, 3DMM fit, audio features.

    Every video matching `pattern` becomes one clip (files in name order): the face window is
    fixed per video (CropAlign), frames are retimed to `fps`, cropped and resized to `size`,
    landmarked (DetectLandmarks), fitted (Fit3DMM) and stored with its 16 kHz sound and features.
    A video that cannot be used stops the run with its name (`on_error: stop`) or is skipped
    and reported (`on_error: skip`).
    """

    category = "dataset"
    inputs = {"model": FaceModelInput()}
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

        _variants = field_validator("features")(check_variants)

    def run(self, ctx: RunContext, model: Any = None) -> dict[str, Any]:
        from trainers.data.dataset import DatasetWriter, assign_splits

        from .videos import PrepareSettings, prepare_video

        p = self.params
        folder = ctx.resolve_path(p.folder)
        if not folder.is_dir():
            raise NodeError(f"PrepareDataset: {folder} is not a folder")
        files = sorted(f for f in folder.glob(p.pattern) if f.is_file())
        if not files:
            raise NodeError(f"PrepareDataset: no file in {folder} matches {p.pattern!r}")
        face_model = resolve_model(ctx, "PrepareDataset", model, p.model_path)
        settings = PrepareSettings(size=p.size, fps=p.fps, crop_scale=p.crop_scale, features=tuple(p.features))
        url = p.path if "://" in p.path else str(ctx.resolve_path(p.path))
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
        if not writer.clips:  # before close: an empty result must not replace the dataset already there
            raise NodeError(f"PrepareDataset: none of the {len(files)} videos could be prepared (skipped: {skipped})")
        counts = writer.close()
        return {"dataset": url, "summary": {"clips": len(writer.clips), "frames": frames, "skipped": len(skipped), **counts}}
