"""HDTF nodes: the two learned generators, their trainers and the paper-style figures.

    AudioFeatures(mfcc_pitch) ─┐
    reference image, landmarks,├─ AnimationGenerator ─ MorphCoeffs ─ DenseFlowBuilder ─ F_app ─┐
    fitted coefficients ───────┘                                                               ├─ FlowVideoGenerator ─ frames
    reference image ───────────────────────────────────────────────────────────────────────────┘

Heavy imports (torch, cv2, matplotlib) stay inside functions so listing nodes stays fast.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from graphcore.node import In, InputFile, Node, NodeError, Out, OutputFile, RunContext
from graphcore.stream import Chunks
from graphcore.types import CheckpointBlob
from nodes.checkpoints import CheckpointInput, load_checkpoint
from nodes.face.model_nodes import bundled_face_model
from nodes.training import DATASET_DOC, TrainParams, dataset_path, run_training, train_outputs
from nodes.types import FeatureSeq, MorphCoeffs
from nodes.weights import OfficialMode, missing_weights_hint, official_config, official_mode_field

from .models import ANIMATION_GENERATOR, FLOW_VIDEO_GENERATOR


def trained_feature(export: dict[str, Any]) -> str:
    """The audio feature variant an animation checkpoint was trained on (older ones: mfcc_pitch)."""
    return str((export.get("data") or {}).get("feature") or "mfcc_pitch")


def _first(arr: np.ndarray, what: str, node: str) -> np.ndarray:
    if arr.ndim == 3:
        if arr.shape[0] < 1:
            raise NodeError(f"{node}: the {what} input holds no frames")
        return arr[0]
    return arr


class AnimationGenerator(Node):
    """HDTF §4.1: driving audio + a reference face -> mouth (28), eyebrow (5) and head-pose
    coefficients per video frame, in the speaking style of the reference (AdaIN).

    The output MorphCoeffs keep the reference's identity (shape) and add the generated head-pose
    deltas to the reference's pose, so DenseFlowBuilder turns them into F_app directly.
    """

    category = "hdtf"
    inputs = {
        "features": In("AudioFeatures", "features of the driving audio, the variant the checkpoint was trained on "
                                        "(the bundled one: phonetic; the paper: mfcc_pitch)"),
        "reference": In("Image", "the reference portrait"),
        "landmarks": In("Landmarks", "the reference's landmarks (DetectLandmarks); the first frame is used"),
        "coeffs": In("MorphCoeffs", "the reference's fitted 3DMM coefficients (Fit3DMM); the first frame is used"),
        "checkpoint": CheckpointInput(ANIMATION_GENERATOR),
    }
    outputs = {"coeffs": Out("MorphCoeffs", "per-frame coefficients driven by the audio")}

    class Params(BaseModel):
        style: bool = Field(True, description="AdaIN style from the reference; off: the training set's mean identity (the 'w/o style' ablation)")
        vggface_weights: str = InputFile("", description="VGG-Face state dict, for checkpoints trained with VGG-Face identities")

    def run(self, ctx: RunContext, features: FeatureSeq, reference: np.ndarray, landmarks: np.ndarray,
            coeffs: MorphCoeffs, checkpoint: CheckpointBlob | None = None) -> dict[str, Any]:
        from .identity import IdentityEncoder
        from .inference import animate

        p = self.params
        generator, export = load_checkpoint(self, ctx, "checkpoint", checkpoint)
        cfg = generator.cfg
        trained = trained_feature(export)
        if features.data.ndim != 2 or features.data.shape[1] != cfg.audio_dim or features.variant != trained:
            raise NodeError(f"AnimationGenerator: the checkpoint was trained on {trained} features ({cfg.audio_dim} per frame; "
                            f"set AudioFeatures variant: {trained}), got variant {features.variant!r} with shape "
                            f"{features.data.shape[1:]}")
        if features.data.shape[0] < 2:
            raise NodeError("AnimationGenerator: the driving audio is shorter than two video frames")
        lm = _first(np.asarray(landmarks), "landmarks", "AnimationGenerator")
        ref = MorphCoeffs(coeffs.shape, coeffs.expression[:1], coeffs.pose[:1], coeffs.error[:1], coeffs.image_size)
        try:
            encoder = IdentityEncoder(cfg.identity, ctx.resolve_path(p.vggface_weights) if p.vggface_weights else None)
            identity = encoder(reference, lm, coeffs.shape)
        except ValueError as exc:
            raise NodeError(f"AnimationGenerator: {exc}") from None
        if cfg.identity == "morph":
            ctx.log("identity embedding: 3DMM shape + face appearance statistics (the VGG-Face fallback)")
        try:
            out = animate(generator, features.data, identity, ref, style=p.style, device=ctx.device, fps=features.fps)
        except ValueError as exc:
            raise NodeError(f"AnimationGenerator: {exc}") from None
        ctx.log(f"animated {features.data.shape[0]} frames with a model trained for {export['step']} steps")
        return {"coeffs": out}


class FlowVideoGenerator(Node):
    """HDTF §4.2: reference image + approximate dense flow F_app -> video frames.

    An hourglass predicts the foreground mask M_f (F = F_app * M_f), a matting image g and a
    matting mask M_m; the reference's features are warped by F and matted with g, then decoded.
    Frames are processed in chunks (flat memory for long audio). The intermediate results of
    the paper's Fig. 9 come out at feature resolution (1/4 of the frames).
    """

    category = "hdtf"
    inputs = {
        "reference": In("Image", "the reference portrait"),
        "flow": In("FlowField", "F_app per output frame (DenseFlowBuilder), at the reference's size", stream=True),
        "checkpoint": CheckpointInput(FLOW_VIDEO_GENERATOR),
    }
    outputs = {
        "frames": Out("Frames", "the generated video frames", stream=True),
        "foreground_mask": Out("Mask", "M_f at feature resolution", stream=True),
        "matting_mask": Out("Mask", "M_m at feature resolution", stream=True),
        "warped_reference": Out("Frames", "the reference warped by F_app, at feature resolution", stream=True),
        "revised_flow": Out("FlowField", "F = F_app * M_f at feature resolution (pixels of that grid)", stream=True),
    }
    missing_file_hint = missing_weights_hint  # an imported official checkpoint's path: how to import it

    class Params(BaseModel):
        matting: bool = Field(True, description="eq. 9 matting; off: eq. 14, the 'w/o matting' ablation")
        size: int = Field(0, ge=0, le=2048, description="processing and output size; 0: the frame size the model was trained at")
        chunk: int = Field(8, ge=1, le=256, description="frames per forward pass (memory vs speed)")
        official: OfficialMode = official_mode_field("BGR, absolute sampling grids, Gaussian+nearest downsampling, "
                                                     "align_corners=False zero-padded warps")

    def run(self, ctx: RunContext, reference: np.ndarray, flow: Chunks,
            checkpoint: CheckpointBlob | None = None) -> Iterator[dict[str, Any]]:
        """Streams: `chunk` frames of every output per step, read from the flow as they are needed."""
        from .inference import render_chunks

        p = self.params
        generator, export = load_checkpoint(self, ctx, "checkpoint", checkpoint,
                                            config=official_config(p.official, {"official": True}, {"official": False}))
        size = p.size or int(export.get("data", {}).get("settings", {}).get("frame_size", 0)) or None
        if flow.shape[1:3] != reference.shape[:2]:
            raise NodeError(f"FlowVideoGenerator: the flow is {flow.shape[2]}x{flow.shape[1]} but the reference image is "
                            f"{reference.shape[1]}x{reference.shape[0]}; build F_app for the reference image")
        if len(flow) == 0:
            raise NodeError("FlowVideoGenerator: the flow has no frames")
        parts = render_chunks(generator, reference, flow, matting=p.matting, chunk=p.chunk, device=ctx.device, size=size,
                              progress=lambda i, n: ctx.progress(i, n, "frames"))
        while True:
            try:
                out = next(parts)
            except StopIteration:
                return
            except ValueError as exc:
                raise NodeError(f"FlowVideoGenerator: {exc}") from None
            yield {"frames": out.frames, "foreground_mask": out.foreground_mask, "matting_mask": out.matting_mask,
                   "warped_reference": out.warped_reference, "revised_flow": out.flow}


# --- training nodes ---


class TrainAnimationGenerator(Node):
    """Train the HDTF animation generator (§4.1, loss eq. 7) on a talkgraph dataset — the
    synthetic one, or real videos prepared with workflows/prepare_dataset.yaml."""

    category = "hdtf/train"
    inputs = {"dataset": In("Path", DATASET_DOC)}
    outputs = train_outputs(ANIMATION_GENERATOR)

    class Params(TrainParams):
        window: int = Field(64, ge=8, le=1024, description="frames per training window")
        feature: Literal["mfcc_pitch", "phonetic"] = Field(
            "mfcc_pitch", description="audio features: mfcc_pitch (the paper's) or phonetic (speaker-independent, "
                                      "works on real speech: docs/lipsync.md); computed from the audio if the dataset lacks them")
        lambda_mouth: float = Field(10.0, ge=0, description="weight of the mouth L1 (eq. 3)")
        lambda_brow: float = Field(5.0, ge=0, description="weight of the eyebrow SSIM loss (eq. 5)")
        lambda_pose: float = Field(5.0, ge=0, description="weight of the head-pose SSIM loss")
        identity: Literal["morph", "vggface"] = Field("morph", description="identity embedding (vggface needs its weights)")
        identity_noise: float = Field(1.0, ge=0, le=10, description="noise on the standardised identity while training (robustness to unseen faces; lower with many identities)")
        acoustic_dropout: float = Field(0.0, ge=0, le=1, description="feature phonetic: fraction of training windows whose acoustic cues are replaced by their mean, so the model also reads the phones (robustness to unseen voices)")
        mouth_prior: Literal["none", "rules"] = Field("none", description="feature phonetic: rules = the rule-based mouth is an input and the model learns a residual on top (a departure from the paper: docs/lipsync.md)")
        residual_inputs: Literal["all", "phones", "prior"] = Field("all", description="mouth_prior rules: the residual reads every feature (all), the phone classes and the prior (phones) or the prior alone (prior)")
        lambda_residual: float = Field(1.0, ge=0, description="mouth_prior rules: weight of the L2 penalty on the learned residual")
        warm_start: str = InputFile("", description="mouth_prior rules: an animation generator export without the prior (e.g. the bundled one) seeding the weights where shapes agree")
        vggface_weights: str = InputFile("", description="VGG-Face state dict (identity=vggface)")

    def run(self, ctx: RunContext, dataset: str) -> dict[str, Any]:
        from .train_animation import AnimationTask, AnimationTrainSettings

        p = self.params
        settings = AnimationTrainSettings(
            dataset=dataset_path(ctx, dataset, "TrainAnimationGenerator"), preset=p.preset, window=p.window,
            feature=p.feature, identity=p.identity, vggface_weights=str(ctx.resolve_path(p.vggface_weights)) if p.vggface_weights else None,
            lambda_mouth=p.lambda_mouth, lambda_brow=p.lambda_brow, lambda_pose=p.lambda_pose, identity_noise=p.identity_noise,
            acoustic_dropout=p.acoustic_dropout, mouth_prior=p.mouth_prior, residual_inputs=p.residual_inputs,
            lambda_residual=p.lambda_residual,
            warm_start=str(ctx.resolve_path(p.warm_start)) if p.warm_start else None)
        if p.mouth_prior != "none" and p.feature != "phonetic":
            raise NodeError(f"TrainAnimationGenerator: mouth_prior {p.mouth_prior} needs feature: phonetic (the rules read its phones)")
        return run_training(ctx, "TrainAnimationGenerator", lambda: AnimationTask(settings), p)


class TrainFlowVideoGenerator(Node):
    """Train the HDTF flow-guided video generator (§4.2, loss eq. 13) on a talkgraph dataset;
    F_app between frame pairs comes from their 3DMM coefficients, as at inference."""

    category = "hdtf/train"
    inputs = {"dataset": In("Path", DATASET_DOC)}
    outputs = train_outputs(FLOW_VIDEO_GENERATOR)

    class Params(TrainParams):
        frame_size: int = Field(256, ge=32, le=2048, description="frames are loaded at this size")
        crop: int = Field(128, ge=0, le=2048, description="random training crop (0: whole frames)")
        lambda_perc: float = Field(10.0, ge=0, description="weight of the perceptual loss (eq. 11)")
        lambda_fm: float = Field(10.0, ge=0, description="weight of feature matching (eq. 12)")
        vgg_weights: str = InputFile("", description="VGG-19 state dict (torchvision layout) for the perceptual loss; empty: the fallback")

    def implicit_files(self, connected: frozenset[str]) -> dict:
        return bundled_face_model()  # F_app (fapp.py) is built with the bundled face model

    def run(self, ctx: RunContext, dataset: str) -> dict[str, Any]:
        from .train_flow_video import FlowVideoTask, FlowVideoTrainSettings

        p = self.params
        settings = FlowVideoTrainSettings(
            dataset=dataset_path(ctx, dataset, "TrainFlowVideoGenerator"), preset=p.preset, frame_size=p.frame_size,
            crop=p.crop, vgg_weights=str(ctx.resolve_path(p.vgg_weights)) if p.vgg_weights else None,
            lambda_perc=p.lambda_perc, lambda_fm=p.lambda_fm)
        return run_training(ctx, "TrainFlowVideoGenerator", lambda: FlowVideoTask(settings), p)


# --- figures ---


class FlowVideoFigure(Node):
    """The paper's Fig. 9 as a PNG: for a few frames, F_app in pseudo-colour, the warped
    reference, M_f, the revised flow F, M_m and the output frame."""

    category = "hdtf/visualise"
    inputs = {
        "flow": In("FlowField", "F_app", stream=True),
        "warped_reference": In("Frames", "FlowVideoGenerator.warped_reference", stream=True),
        "foreground_mask": In("Mask", "FlowVideoGenerator.foreground_mask", stream=True),
        "revised_flow": In("FlowField", "FlowVideoGenerator.revised_flow", stream=True),
        "matting_mask": In("Mask", "FlowVideoGenerator.matting_mask", stream=True),
        "frames": In("Frames", "FlowVideoGenerator.frames", stream=True),
    }
    outputs = {"image": Out("Image", "the figure")}

    class Params(BaseModel):
        path: str = OutputFile("hdtf_fig9.png", description="where to write the PNG", extensions=(".png",))
        frames_shown: int = Field(4, ge=1, le=16, description="rows: frames evenly spaced over the clip")
        tile: int = Field(160, ge=32, le=1024, description="cell size in pixels")

    def run(self, ctx: RunContext, flow, warped_reference, foreground_mask, revised_flow, matting_mask, frames) -> dict[str, Any]:
        from nodes.figures import intermediates_grid, save_png

        t = min(len(x) for x in (flow, warped_reference, foreground_mask, revised_flow, matting_mask, frames))
        if t == 0:
            raise NodeError("FlowVideoFigure: the inputs hold no frames")
        ids = sorted({int(round(v)) for v in np.linspace(0, t - 1, self.params.frames_shown)})
        columns = {"F_app": flow, "warped I_ref": warped_reference, "M_f": foreground_mask,
                   "F = F_app * M_f": revised_flow, "M_m": matting_mask, "output": frames}
        shown = {name: x[ids] for name, x in columns.items()}  # the inputs stream: only these frames are read
        grid = intermediates_grid(shown, list(range(len(ids))), self.params.tile)
        save_png(ctx.resolve_path(self.params.path), grid)
        return {"image": grid}


class AnimationCurves(Node):
    """The paper's Fig. 8 as a PNG: mouth opening, eyebrow, head roll and horizontal head
    translation over time, for up to three coefficient sequences (e.g. three identities
    driven by the same audio)."""

    category = "hdtf/visualise"
    inputs = {
        "coeffs": In("MorphCoeffs", "first sequence"),
        "coeffs_b": In("MorphCoeffs", "second sequence", optional=True),
        "coeffs_c": In("MorphCoeffs", "third sequence", optional=True),
    }
    outputs = {"image": Out("Image", "the figure")}

    class Params(BaseModel):
        path: str = OutputFile("hdtf_fig8.png", description="where to write the PNG", extensions=(".png",))
        labels: list[str] = Field(default_factory=lambda: ["a", "b", "c"], description="legend of each sequence")
        fps: float = Field(25.0, gt=0, le=240)

    def run(self, ctx: RunContext, coeffs: MorphCoeffs, coeffs_b: MorphCoeffs | None = None,
            coeffs_c: MorphCoeffs | None = None) -> dict[str, Any]:
        from nodes.figures import save_png

        from .figures import animation_curves

        labels = list(self.params.labels) + ["b", "c"]
        series = [(labels[i], c) for i, c in enumerate((coeffs, coeffs_b, coeffs_c)) if c is not None]
        image = animation_curves(series, self.params.fps)
        save_png(ctx.resolve_path(self.params.path), image)
        return {"image": image}


# --- evaluation ---


class EvaluateHDTF(Node):
    """The paper's Table 3 (mouth MSE, 3-D lip distance, eyebrow SSIM, head-pose CCA) and
    Table 4 (PSNR, SSIM, CPBD) on held-out clips, for the full models, the ablations that are
    switches of the same nodes (w/o style, w/o matting, w/o F_app) and the geometric warp-only
    pipeline. Writes the tables as markdown and logs them."""

    category = "hdtf/evaluate"
    inputs = {
        "dataset": In("Path", DATASET_DOC),
        "animation_checkpoint": CheckpointInput(ANIMATION_GENERATOR, "overrides the animation_checkpoint parameter"),
        "video_checkpoint": CheckpointInput(FLOW_VIDEO_GENERATOR, "overrides the video_checkpoint parameter"),
    }
    outputs = {"metrics": Out("Metrics", "'table.row.metric' -> value"), "report": Out("String", "the tables (markdown)")}

    class Params(BaseModel):
        split: Literal["train", "val", "test"] = Field("test", description="which clips to evaluate on")
        tables: Literal["both", "table3", "table4"] = "both"
        max_clips: int = Field(0, ge=0, description="evaluate at most this many clips (0: all of the split)")
        max_frames: int = Field(50, ge=1, le=100_000, description="Table 4: frames per clip")
        path: str = OutputFile("hdtf_eval.md", description="where to write the markdown tables", extensions=(".md",))

    def implicit_files(self, connected: frozenset[str]) -> dict:
        unused = {"table3": "bundled video checkpoint", "table4": "bundled animation checkpoint"}.get(self.params.tables)
        files = {k: v for k, v in super().implicit_files(connected).items() if k != unused}
        return {**files, **bundled_face_model()}  # evaluate.py fits and builds F_app with the bundled face model

    def run(self, ctx: RunContext, dataset: str, animation_checkpoint: CheckpointBlob | None = None,
            video_checkpoint: CheckpointBlob | None = None) -> dict[str, Any]:
        from .evaluate import evaluate_animation, evaluate_video, report

        p = self.params
        data = dataset_path(ctx, dataset, "EvaluateHDTF")
        table3 = table4 = None
        about = [f"Held-out split `{p.split}` of `{Path(data).name}`."]
        if p.tables in ("both", "table3"):
            gen, exp = load_checkpoint(self, ctx, "animation_checkpoint", animation_checkpoint)
            table3 = evaluate_animation(gen, data, p.split, p.max_clips, feature=trained_feature(exp), progress=lambda i, n: ctx.progress(i, n, "Table 3 clips"))
            about.append(f"Animation generator: {exp['model_config'].get('channels')} channels, {exp['step']} steps.")
        if p.tables in ("both", "table4"):
            gen, exp = load_checkpoint(self, ctx, "video_checkpoint", video_checkpoint)
            size = int(exp.get("data", {}).get("settings", {}).get("frame_size", 256))
            table4 = evaluate_video(gen, data, p.split, frame_size=size, max_clips=p.max_clips, max_frames=p.max_frames,
                                    progress=lambda i, n: ctx.progress(i, n, "Table 4 clips"))
            about.append(f"Video generator: trained {exp['step']} steps; frames at {size}px, up to {p.max_frames} per clip.")
        text = report(table3, table4, " ".join(about))
        path = ctx.resolve_path(p.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        ctx.log(text)
        slug = lambda name: re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")  # noqa: E731 (cache-safe keys)
        metrics = {f"{t}.{slug(row)}.{m}": v for t, tab in (("table3", table3), ("table4", table4)) if tab
                   for row, vals in tab.items() for m, v in vals.items()}
        return {"metrics": metrics, "report": text}


# --- data ---


class PortraitVariant(Node):
    """A visibly different portrait made from another (mirror, zoom, hue, saturation, gamma), so
    the training data can be built from a face other than the one the demo animates (the
    project has a single public-domain portrait)."""

    category = "hdtf/data"
    inputs = {"image": In("Image")}
    outputs = {"image": Out("Image")}

    class Params(BaseModel):
        mirror: bool = Field(True, description="flip left-right")
        zoom: float = Field(1.0, ge=0.5, le=2.0, description="scale about the centre (>1 crops in, <1 pads with the edge)")
        hue: float = Field(0.0, ge=-180, le=180, description="hue rotation in degrees")
        saturation: float = Field(1.0, ge=0, le=3, description="saturation factor")
        gamma: float = Field(1.0, ge=0.2, le=5, description="brightness gamma (<1 brighter)")

    def run(self, ctx: RunContext, image: np.ndarray) -> dict[str, Any]:
        import cv2

        p = self.params
        out = image[:, ::-1] if p.mirror else image
        h, w = out.shape[:2]
        if p.zoom != 1.0:
            m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), 0.0, p.zoom)
            out = cv2.warpAffine(np.ascontiguousarray(out), m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        hsv = cv2.cvtColor(np.ascontiguousarray(out), cv2.COLOR_RGB2HSV_FULL).astype(np.float32)
        hsv[..., 0] = (hsv[..., 0] + p.hue / 360.0 * 256.0) % 256.0
        hsv[..., 1] = np.clip(hsv[..., 1] * p.saturation, 0, 255)
        hsv[..., 2] = 255.0 * (hsv[..., 2] / 255.0) ** p.gamma
        out = cv2.cvtColor(np.clip(hsv + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB_FULL)
        return {"image": out}


