"""IP_LAP nodes (Zhong et al., CVPR 2023): video dubbing with landmark and appearance priors.

    target frames ── DetectLandmarks ── landmarks ─┬──────────────────────────────┐
    speech ── AudioFeatures(mel, centre) ──────────┼─ LandmarkGenerator (§3.1) ── driving landmarks
                                                   └─ LandmarkRenderer (§3.2) ── dubbed frames (full size)

Both networks read the target video's face box per frame (facemesh.face_box) and take their
references from the video itself. Heavy imports stay inside functions.
"""
from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from graphcore.node import In, InputFile, Node, NodeError, Out, OutputFile, RunContext
from graphcore.types import CheckpointBlob
from nodes.checkpoints import CheckpointInput, load_checkpoint
from nodes.training import DATASET_DOC, TrainParams, dataset_path, run_training, train_outputs
from nodes.types import FeatureSeq
from nodes.weights import missing_weights_hint

from .models import LANDMARK_GENERATOR, RENDERER

MEL_SHAPE = (16, 80)


def _mels(features: FeatureSeq, node: str) -> np.ndarray:
    data = features.data
    if data.ndim != 3 or data.shape[1:] != MEL_SHAPE:
        raise NodeError(f"{node} needs AudioFeatures of variant mel, shaped (T, 16, 80); got variant "
                        f"{features.variant!r} shaped {data.shape}")
    if len(data) == 0:
        raise NodeError(f"{node}: the audio is shorter than one video frame")
    return data


def _track(frames: np.ndarray, landmarks: np.ndarray, margin: float, size: int, node: str):
    from .pipeline import FaceTrack

    if len(frames) == 0:
        raise NodeError(f"{node}: the target video has no frames")
    if not np.isfinite(landmarks[..., :2]).all():
        bad = int(np.flatnonzero(~np.isfinite(landmarks[..., :2]).all(axis=(1, 2)))[0])
        raise NodeError(f"{node}: the landmarks of frame {bad} are missing (NaN); run DetectLandmarks with on_missing=interpolate")
    try:
        return FaceTrack.from_frames(frames, landmarks, margin, size)
    except ValueError as exc:
        raise NodeError(f"{node}: {exc}") from None


class LandmarkGenerator(Node):
    """IP_LAP §3.1: the new speech's jaw and lip landmarks for the target video.

    A transformer over N_l reference landmarks (frames spread over the video's mouth openings),
    the pose-prior landmarks of the upper face (74 points) and the speech's mel windows predicts
    17 jaw and 40 lip points per frame, T = 5 frames at a time (each frame from the window
    centred on it). Output: one frame per audio frame, the video's landmarks with the jaw and lips
    replaced, in frame pixels. The video loops forward and backward when the speech is longer.
    A checkpoint trained with `mouth_prior: rules` (not in the paper) adds its residual to a
    rule-based lip prior from the `phonetic` features (nodes/ip_lap/mouth_prior.py).
    """

    category = "ip_lap"
    missing_file_hint = missing_weights_hint  # an imported official checkpoint's path: how to import it
    inputs = {
        "frames": In("Frames", "the target video (its size sets the landmarks' normalisation)"),
        "landmarks": In("Landmarks", "the target video's MediaPipe landmarks (T, 478, 2|3), one per frame"),
        "features": In("AudioFeatures", "AudioFeatures variant mel (mel_align centre) of the new speech"),
        "phonetic": In("AudioFeatures", "AudioFeatures variant phonetic of the same speech: needed by a generator "
                                        "trained with mouth_prior rules (its rules lip prior), ignored otherwise",
                       optional=True),
        "checkpoint": CheckpointInput(LANDMARK_GENERATOR),
    }
    outputs = {"landmarks": Out("Landmarks", "one frame per audio frame: the video's landmarks, jaw and lips from the speech")}

    class Params(BaseModel):
        references: int = Field(15, ge=1, le=256, description="N_l reference landmarks (paper 15)")
        margin: float = Field(25, ge=0, le=500, description="face box margin in pixels (official inference: 25)")
        batch: int = Field(16, ge=1, le=1024, description="windows per forward pass")

    def run(self, ctx: RunContext, frames: np.ndarray, landmarks: np.ndarray, features: FeatureSeq,
            phonetic: FeatureSeq | None = None, checkpoint: CheckpointBlob | None = None) -> dict[str, Any]:
        from .pipeline import content_landmarks_px, generate_content

        p = self.params
        mels = _mels(features, "LandmarkGenerator")
        if len(landmarks) != len(frames):
            raise NodeError(f"LandmarkGenerator: {len(landmarks)} landmark frames for {len(frames)} video frames")
        track = _track(frames, landmarks, p.margin, 128, "LandmarkGenerator")
        model, export = load_checkpoint(self, ctx, "checkpoint", checkpoint)
        phones = None
        if model.uses_prior:
            if phonetic is None or phonetic.variant != "phonetic":
                raise NodeError("LandmarkGenerator: this checkpoint adds a residual to the rules lip prior (mouth_prior "
                                "rules): connect AudioFeatures variant phonetic of the speech to `phonetic`")
            if len(phonetic.data) != len(mels):
                raise NodeError(f"LandmarkGenerator: {len(phonetic.data)} phonetic feature frames for {len(mels)} mel windows")
            phones = phonetic.data
        content = generate_content(model, track, mels, p.references, ctx.device, p.batch,
                                   progress=lambda i, n: ctx.progress(i, n, "windows"), phonetic=phones)
        ctx.log(f"{len(content)} frames of jaw + lip landmarks from a generator trained {export.get('step')} steps "
                f"({len(frames)} video frames, {p.references} reference landmarks"
                f"{', rules lip prior + residual' if phones is not None else ''})")
        return {"landmarks": content_landmarks_px(track, content, landmarks)}


class LandmarkRenderer(Node):
    """IP_LAP §3.2: the target video with its lower face redrawn to the driving landmarks.

    Per output frame: the sketch of the driving landmarks (and its 2 neighbours on each side), the
    video frame with the lower half of its face box blacked out, N reference frames of the video
    warped onto the sketch (alignment module, motion fields) and the frame's mel window (AdaIN)
    give a face (translation module), pasted back into the full frame through a blurred face mask
    (Fig. 3). `references` 0 takes the paper's N = 1/5 of the video length. The background, head
    motion and everything outside the mask stay the video's own.
    """

    category = "ip_lap"
    missing_file_hint = missing_weights_hint  # an imported official checkpoint's path: how to import it
    inputs = {
        "frames": In("Frames", "the target video"),
        "landmarks": In("Landmarks", "the target video's MediaPipe landmarks, one per frame"),
        "driving": In("Landmarks", "the landmarks to render, one per output frame (LandmarkGenerator)"),
        "features": In("AudioFeatures", "AudioFeatures variant mel of the speech, one row per output frame"),
        "checkpoint": CheckpointInput(RENDERER),
    }
    outputs = {
        "frames": Out("Frames", "the dubbed video at the target's size"),
        "faces": Out("Frames", "the generated faces at the renderer's size"),
        "sketches": Out("Frames", "the driving sketches the renderer saw"),
        "mask": Out("Mask", "the paste-back mask per frame"),
    }

    class Params(BaseModel):
        references: int = Field(0, ge=0, le=1024, description="N reference images; 0: 1/5 of the video length (paper)")
        margin: float = Field(25, ge=0, le=500, description="face box margin in pixels (official inference: 25)")
        batch: int = Field(8, ge=1, le=256, description="frames per forward pass")
        paste: Literal["face", "lower"] = Field("face", description="paste-back mask: the whole face (paper, Fig. 3) "
                                                                 "or only the lower face (keeps the video's eyes and brows)")

    def run(self, ctx: RunContext, frames: np.ndarray, landmarks: np.ndarray, driving: np.ndarray, features: FeatureSeq,
            checkpoint: CheckpointBlob | None = None) -> dict[str, Any]:
        from . import facemesh as fm
        from .pipeline import is_bgr, paste_faces, render_faces, template_indices

        p = self.params
        mels = _mels(features, "LandmarkRenderer")
        if len(landmarks) != len(frames):
            raise NodeError(f"LandmarkRenderer: {len(landmarks)} landmark frames for {len(frames)} video frames")
        if len(driving) != len(mels):
            raise NodeError(f"LandmarkRenderer: {len(driving)} driving landmark frames but {len(mels)} audio frames; "
                            "they must describe the same output frames")
        if driving.shape[1] < 468 or not np.isfinite(driving[:, fm.CONTENT_IDX, :2]).all():
            raise NodeError("LandmarkRenderer: the driving landmarks must be MediaPipe's (478 points) with finite jaw and lips")
        model, export = load_checkpoint(self, ctx, "checkpoint", checkpoint)
        track = _track(frames, landmarks, p.margin, model.cfg.size, "LandmarkRenderer")
        idx = template_indices(len(track), len(driving))
        norm = fm.to_normalised(driving, track.frame_hw)
        content = np.stack([fm.split(fm.in_box(norm[t], track.boxes[j], track.frame_hw))[1] for t, j in enumerate(idx)])
        bgr = is_bgr(export)
        faces, info = render_faces(model, track, content, mels, p.references, ctx.device, p.batch, bgr,
                                   progress=lambda i, n: ctx.progress(i, n, "frames"))
        out, masks = paste_faces(frames, track, faces, landmarks, content, p.paste)
        ctx.log(f"{len(out)} frames rendered with {info['references']} reference frames "
                f"({'BGR, official' if bgr else 'RGB'} checkpoint, {model.cfg.size}px faces)")
        sketches = np.clip(np.round(info["sketches"]), 0, 255).astype(np.uint8)
        return {"frames": out, "faces": faces, "sketches": sketches, "mask": masks}


# --- trainers (the shared loop of trainers/loop.py) ---

_DATASET = In("Path", DATASET_DOC)


class _IPLAPTrainParams(TrainParams):
    threads: int = Field(1, ge=0, le=256, description="torch CPU threads (0: torch's default; 1 is fastest on a busy machine)")
    margin: float = Field(25, ge=0, le=500, description="face box margin in pixels of the dataset's frames")


class TrainLandmarkGenerator(Node):
    """Train IP_LAP's landmark generator (§3.1.2): L1 + continuity (eq. 10-12) on windows of T
    frames with N_l reference frames from the same clip."""

    category = "ip_lap/train"
    inputs = {"dataset": _DATASET}
    outputs = train_outputs(LANDMARK_GENERATOR)

    class Params(_IPLAPTrainParams):
        references: int = Field(15, ge=1, le=64, description="N_l reference landmarks per sample (paper 15)")
        lambda_c: float = Field(1.0, ge=0, description="continuity weight (eq. 12)")
        lambda_open: float = Field(0.0, ge=0, description="weight of a mouth-opening term (not in the paper: the error "
                                                          "of the lip and chin gaps the speech drives; 0: eq. 12 only)")
        mouth_prior: Literal["none", "rules"] = Field("none", description=(
            "rules (not in the paper: docs/ip_lap.md): the output is a rule-based jaw + lip prior from the clip's "
            "phonetic features plus a learned residual; the phonetic features are an extra input"))
        residual_inputs: Literal["all", "phones"] = Field("all", description=(
            "mouth_prior rules: the residual's audio tokens read the mel windows and the phonetic features (all) or "
            "the phonetic features alone (phones: no voice-dependent spectrum)"))
        residual_gate: Literal["none", "speech"] = Field("speech", description=(
            "mouth_prior rules: speech = the residual is scaled by the phonetic features' speech dimension, so "
            "silence gives the prior's closed rest; none = the residual everywhere"))
        lambda_residual: float = Field(100.0, ge=0, description="mouth_prior rules: weight of the mean squared "
                                                                "residual (face-box units)")
        warm_start: str = InputFile("", description="mouth_prior rules: a landmark generator export without the prior "
                                                    "(e.g. the bundled one) seeding the weights; the heads start at zero",
                                    extensions=(".pt",))

    def run(self, ctx: RunContext, dataset: str) -> dict[str, Any]:
        from .train_landmarks import LandmarkGeneratorTask, LandmarkTrainSettings

        p = self.params
        if p.warm_start and p.mouth_prior == "none":
            raise NodeError("TrainLandmarkGenerator: warm_start seeds a mouth_prior rules model; for fine-tuning use init")
        settings = LandmarkTrainSettings(dataset=dataset_path(ctx, dataset, "TrainLandmarkGenerator"), preset=p.preset,
                                         references=p.references, margin=p.margin, lambda_c=p.lambda_c,
                                         lambda_open=p.lambda_open, mouth_prior=p.mouth_prior,
                                         residual_inputs=p.residual_inputs, residual_gate=p.residual_gate,
                                         lambda_residual=p.lambda_residual,
                                         warm_start=str(ctx.resolve_path(p.warm_start)) if p.warm_start else None)
        return run_training(ctx, "TrainLandmarkGenerator", lambda: LandmarkGeneratorTask(settings), p)


class TrainLandmarkRenderer(Node):
    """Train IP_LAP's renderer (§3.2.3): warping loss on the aligned references (eq. 17), then
    from `gan_start` also reconstruction + style (eq. 18-19) and pix2pixHD GAN + feature
    matching (eq. 20). Perceptual terms use VGG-19 when `vgg_weights` is given, else the fallback."""

    category = "ip_lap/train"
    inputs = {"dataset": _DATASET}
    outputs = train_outputs(RENDERER)

    class Params(_IPLAPTrainParams):
        preset: Literal["tiny", "tiny128", "paper"] = Field("tiny", description="size preset (tiny128: tiny's widths at 128-px faces)")
        references: int = Field(3, ge=1, le=64, description="N reference images per sample (paper: 3 in training)")
        vgg_weights: str = InputFile("", description="VGG-19 state dict (torchvision layout, e.g. the vgg19.pt that "
                                                     "`graphrun weights import ip_lap` writes); empty: the fallback")
        lambda_w: float = Field(2.5, ge=0)
        lambda_r: float = Field(4.0, ge=0)
        style: float = Field(250.0, ge=0, description="style weight inside L_r (paper lambda_s = 4 x 250)")
        lambda_g: float = Field(0.25, ge=0)
        lambda_f: float = Field(2.5, ge=0)
        disc_channels: int = Field(32, ge=4, le=512, description="discriminator width (pix2pixHD: 64)")

    def run(self, ctx: RunContext, dataset: str) -> dict[str, Any]:
        from .train_renderer import RendererTask, RendererTrainSettings

        p = self.params
        settings = RendererTrainSettings(
            dataset=dataset_path(ctx, dataset, "TrainLandmarkRenderer"), preset=p.preset, references=p.references, margin=p.margin,
            lambda_w=p.lambda_w, lambda_r=p.lambda_r, style=p.style, lambda_g=p.lambda_g, lambda_f=p.lambda_f,
            disc_channels=p.disc_channels, vgg_weights=str(ctx.resolve_path(p.vgg_weights)) if p.vgg_weights else None)
        return run_training(ctx, "TrainLandmarkRenderer", lambda: RendererTask(settings), p)


def flat_metrics(result: dict[str, Any]) -> dict[str, float]:
    """EvaluateIPLAP's table as a flat Metrics mapping (the port type holds numbers only)."""
    cells = {f"{row}/{name}": float(value) for row, r in result["rows"].items() for name, value in r.items()}
    return {**cells, "landmark_l1": float(result["landmark_l1"])}


class EvaluateIPLAP(Node):
    """IP_LAP Table 1 (reconstruction: each held-out clip dubbed with its own speech) and Table 5
    (number of reference images) on a dataset's held-out clips: PSNR, SSIM (frames and face box),
    LMD / LipLMD, CSIM (ArcFace weights or the documented fallback) and the landmark generator's
    error. Writes the table as markdown when `path` is set (nodes/ip_lap/evaluate.py)."""

    category = "ip_lap/evaluate"
    missing_file_hint = missing_weights_hint  # an imported official checkpoint's path: how to import it
    inputs = {
        "dataset": _DATASET,
        "generator": CheckpointInput(LANDMARK_GENERATOR, "landmark generator (overrides generator_checkpoint)",
                                     param="generator_checkpoint"),
        "renderer": CheckpointInput(RENDERER, "renderer (overrides renderer_checkpoint)", param="renderer_checkpoint"),
    }
    outputs = {"metrics": Out("Metrics", "the table's cells as '<row>/<metric>' (e.g. 'full model/psnr') and "
                                         "'landmark_l1'")}

    class Params(BaseModel):
        splits: list[str] = Field(default_factory=lambda: ["val", "test"], description="held-out splits to evaluate")
        max_frames: int = Field(50, ge=5, le=10000, description="frames per clip (from its start)")
        references: list[int] = Field(default_factory=lambda: [1, 5, 10, 25], description="Table 5: reference counts N to compare")
        margin: float = Field(25, ge=0, le=500, description="face box margin in pixels")
        arcface_weights: str = InputFile("", description="arcface_torch IResNet weights for CSIM; empty: the fallback")
        path: str = OutputFile("", description="also write the table here as markdown", extensions=(".md",))
        figure: str = OutputFile("", description="also write frames of the first clip here (real; GT-landmark and full-model "
                                                 "sketches and frames)", extensions=(".jpg", ".png"))

    def run(self, ctx: RunContext, dataset: str, generator: CheckpointBlob | None = None,
            renderer: CheckpointBlob | None = None) -> dict[str, Any]:
        from .evaluate import evaluate, table_markdown
        from .pipeline import is_bgr

        p = self.params
        path = dataset_path(ctx, dataset, "EvaluateIPLAP")
        gen, _ = load_checkpoint(self, ctx, "generator", generator)
        ren, export = load_checkpoint(self, ctx, "renderer", renderer)
        try:
            result = evaluate(path, gen, ren, splits=tuple(p.splits), max_frames=p.max_frames, references=tuple(p.references),
                              margin=p.margin, renderer_bgr=is_bgr(export),
                              arcface_weights=str(ctx.resolve_path(p.arcface_weights)) if p.arcface_weights else None,
                              device=ctx.device, figure_path=str(ctx.resolve_path(p.figure)) if p.figure else None,
                              progress=lambda i, n: ctx.progress(i, n, "renders"), log=ctx.log)
        except ValueError as exc:
            raise NodeError(f"EvaluateIPLAP: {exc}") from None
        if p.path:
            out = ctx.resolve_path(p.path)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(table_markdown(result), encoding="utf-8")
            ctx.log(f"wrote {out}")
        return {"metrics": flat_metrics(result)}
