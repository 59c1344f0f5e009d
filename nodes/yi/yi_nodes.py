"""Yi et al. (2020) nodes: audio -> 3D facial animation -> rendering -> memory-augmented GAN.

    AudioFeatures(mfcc_window) ─ AudioToExpressionPose ─ MorphCoeffs ─┐
    target video ─ DetectLandmarks ─ Fit3DMM ─ target coeffs ─────────┼─ Render3DMM ─ MemoryGAN ─ frames
    target video frames (or one image) ───────────────────────────────┘

Trainers: TrainAudioToExpressionPose, TrainMemoryGAN (general models on a dataset) and
PersonalizeAudioToExpressionPose, PersonalizeMemoryGAN (fine-tuning on one target video, §4.1).
HeadPoseSimilarity is the HS metric of §4.4. Heavy imports stay inside functions.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from graphcore.node import In, InputFile, Node, NodeError, Out, OutputFile, RunContext
from graphcore.stream import Chunks
from graphcore.types import CheckpointBlob
from nodes.checkpoints import CheckpointInput, load_checkpoint
from nodes.face.model_nodes import FaceModelInput, bundled_face_model, model_path_param, resolve_model
from nodes.training import TrainParams, dataset_path, run_training, train_outputs
from nodes.types import FeatureSeq, MorphCoeffs
from nodes.weights import OfficialMode, missing_weights_hint, official_config, official_mode_field

from .models import AUDIO_EXP_POSE, MEMORY_GAN

# Peak memory per pixel of a frame being worked on, measured (peak RSS of a fresh process running
# the node on `chunk` frames of 512-2048 px): Render3DMM 83-95 B, MemoryGAN 74-85 B; plus one
# 32 MiB storage-chunk buffer per streamed output (the up-front resource check).
RENDER_BYTES_PER_PIXEL_FRAME, REFINE_BYTES_PER_PIXEL_FRAME, STORAGE_BUFFER = 96, 86, 32 << 20


def _frame_size(facts: Mapping[str, Any], frames: bool = False) -> tuple[int, int] | None:
    """(h, w) from an input's resource-check facts: an image's or frames' shape, or image_size."""
    if facts.get("image_size"):
        return tuple(int(v) for v in facts["image_size"])  # type: ignore[return-value]
    shape = facts.get("shape")
    if shape is None:
        return None
    return (int(shape[1]), int(shape[2])) if frames else (int(shape[0]), int(shape[1]))


_WORKING_SIZE = "load the portrait at the working resolution (LoadImage's max_side, e.g. --set portrait.max_side=512)"


def _check_features(node: str, features: FeatureSeq, feature: str | None = "mfcc_window") -> np.ndarray:
    """The features' array if they are what the model reads: the paper's mfcc_window (T, 28, 12) or,
    for a checkpoint trained with `feature: phonetic`, phonetic (T, 44); None: either (checked
    before a checkpoint is loaded)."""
    shapes = {"mfcc_window": (28, 12), "phonetic": (44,)}
    wanted = shapes if feature is None else {feature: shapes[feature]}
    if features.data.shape[1:] not in wanted.values():
        what = " or ".join(f"{k} (T, {', '.join(map(str, v))})" for k, v in wanted.items())
        raise NodeError(f"{node}: {'this checkpoint ' if feature else ''}needs {what} audio features (AudioFeatures variant "
                        f"{' or '.join(wanted)}), got variant {features.variant!r} shaped {features.data.shape}")
    if len(features.data) < 2:
        raise NodeError(f"{node}: the audio is shorter than two video frames")
    return features.data


def _refuse_released_atcnet(model, node: str) -> None:
    """The released ATC_net predicts other coefficients than this project's: say what it is good for."""
    if model.cfg.official:
        raise NodeError(f"{node}: this is the released ATC_net (graphrun weights import yi): its 70 outputs are "
                        "Deep3DFaceRecon's 64 expression + 6 pose coefficients, which the project's 3DMM and Render3DMM "
                        "cannot use. Use it to initialise PersonalizeAudioToExpressionPose (its audio encoder and LSTM; a "
                        "new output layer is trained), or drive the renderer with a project checkpoint "
                        "(docs/official-weights.md)")


class AudioToExpressionPose(Node):
    """Yi §3.2: MFCC windows -> per-frame expression (33) and head pose (6) with an audio CNN +
    3-layer LSTM. The pose is predicted as a delta from the target's mean pose; the output keeps
    the target's identity (shape) and image size, ready for Render3DMM."""

    category = "yi"
    inputs = {
        "features": In("AudioFeatures", "mfcc_window features of the driving audio (T, 28, 12), or phonetic (T, 44) for a "
                                        "checkpoint trained with feature phonetic (docs/yi.md)"),
        "target": In("MorphCoeffs", "the target's fitted coefficients (Fit3DMM on its video or image): identity and rest pose"),
        "checkpoint": CheckpointInput(AUDIO_EXP_POSE, "a trained or personalised model (overrides the checkpoint parameter)"),
    }
    outputs = {"coeffs": Out("MorphCoeffs", "expression and pose per audio frame, with the target's identity")}

    class Params(BaseModel):
        predict_pose: bool = Field(True, description="off: keep the target's mean pose (the §4.2 'without pose' ablation)")

    def run(self, ctx: RunContext, features: FeatureSeq, target: MorphCoeffs, checkpoint: CheckpointBlob | None = None) -> dict[str, Any]:
        from .inference import predict_coeffs

        _check_features("AudioToExpressionPose", features, None)
        if len(target.pose) == 0:
            raise NodeError("AudioToExpressionPose: the target coefficients have no frames")
        model, export = load_checkpoint(self, ctx, "checkpoint", checkpoint)
        _refuse_released_atcnet(model, "AudioToExpressionPose")
        data = _check_features("AudioToExpressionPose", features, model.cfg.feature)
        ctx.log(f"audio->expression+pose: {export['step']} training steps"
                f"{' (personalised)' if export.get('data', {}).get('personalised') else ''}"
                f"{'; mouth = rules prior + learned residual' if model.uses_prior else ''}")
        return {"coeffs": predict_coeffs(model, data, target, predict_pose=self.params.predict_pose, device=ctx.device,
                                         fps=features.fps)}


class Render3DMM(Node):
    """Yi §3.3: render the 3DMM animation with the target's SH lighting (27 coefficients) and
    albedo (detailed: the most neutral, frontal target frame divided by its shading; low: a
    smoothed per-vertex albedo), z-buffered, over backgrounds matched to the target video at key
    head poses and interpolated between them (a single image: its own background).

    `coeffs` are the driving coefficients (e.g. AudioToExpressionPose); `target_coeffs` are
    Fit3DMM's on the target frames/image. Outputs the rendered frames at the target's size, the
    face coverage, the pose actually rendered (shifted to fit the backgrounds) and the backgrounds.
    """

    category = "yi"
    inputs = {
        "coeffs": In("MorphCoeffs", "driving expression + pose, with the target's identity"),
        "target_coeffs": In("MorphCoeffs", "the target's fitted coefficients, one row per target frame"),
        "target_frames": In("Frames", "the target video (connect this or target_image)", optional=True),
        "target_image": In("Image", "a single target image (connect this or target_frames)", optional=True),
        "model": FaceModelInput(),
    }
    outputs = {
        "frames": Out("Frames", "rendered frames", stream=True),
        "face_mask": Out("Mask", "where the face was drawn", stream=True),
        "coeffs": Out("MorphCoeffs", "the coefficients rendered (pose fitted to the backgrounds)"),
        "background": Out("Frames", "the matched/interpolated backgrounds", stream=True),
    }
    exactly_one_of = (("target_frames", "target_image"),)

    class Params(BaseModel):
        albedo: Literal["detailed", "low"] = Field("detailed", description="detailed texture or low-frequency albedo (§3.3)")
        background: Literal["match", "reference", "black"] = Field(
            "match", description="match: key-pose matching over the target video; reference: the target's first frame; black")
        key_window: int = Field(25, ge=3, le=1000, description="key frames are pose extremes within this many frames")
        key_axis: Literal["pitch", "yaw", "roll"] = Field("yaw", description="the rotation whose extremes make key frames")
        fit_pose: bool = Field(True, description="shift the pose between key frames to fit the matched backgrounds")
        lighting_frames: int = Field(16, ge=1, le=1000, description="target frames the lighting and albedo are fitted on")
        chunk: int = Field(16, ge=1, le=1024, description="frames rendered at once")

    def _size(self, inputs: Mapping[str, Mapping[str, Any]]) -> tuple[int, int] | None:
        return (_frame_size(inputs.get("target_image", {})) or _frame_size(inputs.get("target_frames", {}), frames=True)
                or _frame_size(inputs.get("target_coeffs", {})))

    def size_hints(self, inputs: Mapping[str, Mapping[str, Any]], resolve: Callable[[str], Path]) -> dict[str, dict[str, Any]]:
        """The frames come out at the target's size (for the up-front resource check)."""
        size = self._size(inputs)
        return {"frames": {"image_size": size}} if size else {}

    def memory_estimate(self, inputs: Mapping[str, Mapping[str, Any]]) -> tuple[int, str] | None:
        """`chunk` frames rendered at the target's size, and the three streamed outputs' buffers;
        nothing grows with the clip's length (it streams)."""
        size = self._size(inputs)
        if not size:
            return None
        h, w = size
        need = self.params.chunk * h * w * RENDER_BYTES_PER_PIXEL_FRAME + 3 * max(STORAGE_BUFFER, 4 * h * w)
        return need, (f"the frames are rendered at the target's size, {w}x{h}: {_WORKING_SIZE}, "
                      f"or lower `chunk` (now {self.params.chunk})")

    def run(self, ctx: RunContext, coeffs: MorphCoeffs, target_coeffs: MorphCoeffs, target_frames: np.ndarray | None = None,
            target_image: np.ndarray | None = None, model: Any = None) -> Iterator[dict[str, Any]]:
        """Streams the frames, masks and backgrounds, `chunk` frames at a time."""
        from nodes.ports import image_or_frames

        from . import render3dmm as r3

        p = self.params
        face_model = resolve_model(ctx, "Render3DMM", model, p.model_path)
        target = image_or_frames("Render3DMM", target_image, target_frames)
        n_t = len(target)
        if len(target_coeffs.expression) != n_t:
            raise NodeError(f"Render3DMM: {n_t} target frame(s) but {len(target_coeffs.expression)} rows of target "
                            "coefficients; fit the coefficients on the same frames")
        h, w = target.shape[1:3]
        for name, c in (("coeffs", coeffs), ("target_coeffs", target_coeffs)):
            if tuple(int(v) for v in c.image_size) != (h, w):
                raise NodeError(f"Render3DMM: {name} refer to {tuple(c.image_size)} images, the target is {(h, w)}")
        if len(coeffs.expression) == 0:
            raise NodeError("Render3DMM: the driving coefficients have no frames")
        app = r3.fit_appearance(face_model, target, target_coeffs, max_frames=p.lighting_frames, device=ctx.device)
        ctx.log(f"Render3DMM: albedo from target frame {app.reference_frame}, SH lighting DC "
                f"{np.round(app.gamma[:, 0], 3).tolist()}")
        pose = np.asarray(coeffs.pose, np.float32)
        if p.background == "match" and n_t > 1:
            plan = r3.plan_backgrounds(pose, np.asarray(target_coeffs.pose), (h, w), window=p.key_window,
                                       axis=("pitch", "yaw", "roll").index(p.key_axis), fit_pose=p.fit_pose)
            ctx.log(f"Render3DMM: {len(plan.keys)} key frames matched to target frames {plan.matches.tolist()[:20]}")
            pose = plan.pose
            bg = lambda sl: r3.background_frames(plan, target, sl)  # noqa: E731
        elif p.background == "black":
            bg = lambda sl: np.zeros((sl.stop - sl.start, h, w, 3), np.float32)  # noqa: E731
        else:
            if p.background == "match":
                ctx.log("Render3DMM: a single target image: its own background for every frame")
            first = target[0].astype(np.float32) / 255.0
            bg = lambda sl: np.broadcast_to(first, (sl.stop - sl.start, h, w, 3))  # noqa: E731
        renderer = r3.FaceRenderer(face_model, app, p.albedo, ctx.device)
        out = MorphCoeffs(np.asarray(coeffs.shape), np.asarray(coeffs.expression), pose, np.asarray(coeffs.error), (h, w))
        yield {"coeffs": out}
        for sl, img, cov in r3.render_sequence(renderer, coeffs.shape, coeffs.expression, pose, h, w, bg, chunk=p.chunk,
                                               progress=lambda i, n: ctx.progress(i, n, "rendering")):
            background = (np.asarray(bg(sl)) * 255).round().clip(0, 255).astype(np.uint8)
            yield {"frames": img, "face_mask": cov, "background": background}


class MemoryGAN(Node):
    """Yi §3.4: refine rendered frames with the memory-augmented GAN. For each frame the memory
    network retrieves an identity feature (nearest spatial key of the rendered frame, smoothed
    over adjacent frames); the attention U-Net with AdaIN turns windows of three rendered frames
    into o = A·r + (1−A)·C (eq. 3). Frames run at the model's training size; a different input
    size gets the refinement's change resized onto it."""

    category = "yi"
    inputs = {
        "rendered": In("Frames", "Render3DMM frames", stream=True),
        "checkpoint": CheckpointInput(MEMORY_GAN, "a trained or personalised model (overrides the checkpoint parameter)"),
    }
    outputs = {
        "frames": Out("Frames", "refined frames o_t", stream=True),
        "attention": Out("Mask", "attention mask A_t (1: keep the rendering)", stream=True),
        "colour": Out("Frames", "colour mask C_t", stream=True),
        "retrieval_score": Out("Array", "(T,) cosine of the memory key each frame retrieved (NaN without memory)"),
    }
    missing_file_hint = missing_weights_hint  # an imported official checkpoint's path: how to import it

    class Params(BaseModel):
        identity: Literal["memory", "mean"] = Field(
            "memory", description="memory: retrieved identity features; mean: the training set's mean (the §4.2 ablation)")
        smoothing: float = Field(2.0, ge=0, le=50, description="temporal smoothing of retrieved features (Gaussian sigma, frames)")
        size: int = Field(0, ge=0, le=4096, description="processing size; 0: the size the model was trained at")
        chunk: int = Field(8, ge=1, le=512, description="frames per forward pass")
        official: OfficialMode = official_mode_field("the memory's key encoder reads ImageNet-normalised frames")

    def memory_estimate(self, inputs: Mapping[str, Mapping[str, Any]]) -> tuple[int, str] | None:
        """`chunk` frames (and two of context) at the rendered frames' size, the input's and the
        three streamed outputs' buffers; nothing grows with the clip's length (it streams)."""
        size = _frame_size(inputs.get("rendered", {}), frames=True)
        if not size:
            return None
        h, w = size
        need = (self.params.chunk + 2) * h * w * REFINE_BYTES_PER_PIXEL_FRAME + 4 * max(STORAGE_BUFFER, 4 * h * w)
        return need, (f"the frames are refined back at the rendered size, {w}x{h}: {_WORKING_SIZE}, "
                      f"or lower `chunk` (now {self.params.chunk})")

    def run(self, ctx: RunContext, rendered: Chunks, checkpoint: CheckpointBlob | None = None) -> Iterator[dict[str, Any]]:
        """Streams: one pass over the rendered frames retrieves the identities (kept: a feature
        vector per frame), a second refines `chunk` frames at a time."""
        from .inference import refine_chunks, retrieve_identity

        p = self.params
        gan, export = load_checkpoint(self, ctx, "checkpoint", checkpoint,
                                      config=official_config(p.official, {"official": True}, {"official": False}))
        if len(rendered) == 0:
            raise NodeError("MemoryGAN: no rendered frames")
        size = p.size or int(export.get("data", {}).get("frame_size", [0])[0]) or None
        multiple = 2 ** gan.cfg.levels
        if size and size % multiple:
            raise NodeError(f"MemoryGAN: size {size} is not a multiple of {multiple} (the U-Net's {gan.cfg.levels} levels)")
        if size is None and (rendered.shape[1] % multiple or rendered.shape[2] % multiple):
            raise NodeError(f"MemoryGAN: frames of {rendered.shape[2]}x{rendered.shape[1]} are not a multiple of {multiple}; set size")
        if p.identity == "memory" and not bool(gan.memory.filled.any()):
            raise NodeError("MemoryGAN: the checkpoint's memory is empty (it was never trained)")
        ident, score = retrieve_identity(gan, rendered, identity=p.identity, sigma=p.smoothing, size=size, chunk=p.chunk,
                                         device=ctx.device)
        if p.identity == "memory":
            ctx.log(f"MemoryGAN: retrieved identities, key cosine mean {np.nanmean(score):.3f}, min {np.nanmin(score):.3f}")
        for frames, attention, colour in refine_chunks(gan, rendered, ident, size=size, chunk=p.chunk, device=ctx.device,
                                                       progress=lambda i, n: ctx.progress(i, n, "refining")):
            yield {"frames": frames, "attention": attention, "colour": colour}
        yield {"retrieval_score": score}


class HeadPoseSimilarity(Node):
    """Yi §4.4, eq. 6: HS = 1 − W1 between histograms of the head's Euler angles (pitch, yaw,
    roll) of a real and a generated video; per angle over [−limit, limit] degrees, W1 normalised
    by the range, averaged over the three angles (nodes/metrics/head_pose.py). 1: same distribution."""

    category = "metrics"
    inputs = {
        "real": In("MorphCoeffs", "coefficients of the real video (e.g. Fit3DMM)"),
        "generated": In("MorphCoeffs", "coefficients of the generated video"),
    }
    outputs = {"metrics": Out("Metrics", "hs, and hs/w1 per angle")}

    class Params(BaseModel):
        bins: int = Field(60, ge=2, le=10000, description="histogram bins per angle")
        limit: float = Field(30.0, gt=0, le=180, description="histogram range: [-limit, limit] degrees")

    def run(self, ctx: RunContext, real: MorphCoeffs, generated: MorphCoeffs) -> dict[str, Any]:
        from nodes.metrics.head_pose import head_pose_similarity

        try:
            m = head_pose_similarity(real.pose, generated.pose, bins=self.params.bins, limit=self.params.limit)
        except ValueError as exc:
            raise NodeError(f"HeadPoseSimilarity: {exc}") from None
        ctx.log(f"HS = {m['hs']:.3f} (pitch {m['hs_pitch']:.3f}, yaw {m['hs_yaw']:.3f}, roll {m['hs_roll']:.3f})")
        return {"metrics": m}


# --- training ---------------------------------------------------------------------------------


class _AudioParams(TrainParams):
    steps: int = Field(3000, ge=1, le=10_000_000, description="generator updates")
    batch_size: int = Field(16, ge=1, le=1024)
    lr_g: float = Field(1e-3, gt=0, le=1)
    window: int = Field(32, ge=2, le=1024, description="frames per training window")
    lambda_pose: float = Field(0.2, ge=0, description="eq. 2 lambda1")
    lambda_smooth: float = Field(0.01, ge=0, description="eq. 2 lambda2")


def _audio_settings(p: _AudioParams, **options: Any):
    from .train_audio import AudioTrainSettings

    return AudioTrainSettings(preset=p.preset, window=p.window, lambda_pose=p.lambda_pose, lambda_smooth=p.lambda_smooth, **options)


class TrainAudioToExpressionPose(Node):
    """Train the general audio -> expression + pose mapping (§3.2, eq. 2) on a talkgraph dataset
    (the synthetic one or prepared real videos); mfcc_window (or, as an option, phonetic) features come
    from each clip's audio or the dataset."""

    category = "yi/train"
    inputs = {"dataset": In("Path", "dataset location: MakeSyntheticDataset / PrepareDataset output, a folder or fsspec URL")}
    outputs = train_outputs(AUDIO_EXP_POSE)

    class Params(_AudioParams):
        feature: Literal["mfcc_window", "phonetic"] = Field("mfcc_window", description=(
            "audio input: the paper's MFCC windows, or phonetic (44 per frame, speaker-independent; an option: docs/yi.md)"))
        mouth_prior: Literal["none", "rules"] = Field("none", description=(
            "feature phonetic: rules = the rule-based mouth is an input and the model learns a residual on top "
            "(a departure from the paper: docs/lipsync.md)"))
        lambda_residual: float = Field(1.0, ge=0, description="mouth_prior rules: weight of the L2 penalty on the learned residual")
        warm_start: str = InputFile("", description="mouth_prior rules: an export without the prior (same feature) seeding the "
                                                    "weights where shapes agree")

    def run(self, ctx: RunContext, dataset: str) -> dict[str, Any]:
        from .train_audio import AudioExpPoseTask, dataset_clips

        p = self.params
        if p.mouth_prior != "none" and p.feature != "phonetic":
            raise NodeError(f"TrainAudioToExpressionPose: mouth_prior {p.mouth_prior} needs feature: phonetic (the rules read its phones)")
        try:
            clips, data = dataset_clips(dataset_path(ctx, dataset, "TrainAudioToExpressionPose"), "train", min_frames=2,
                                        feature=p.feature, prior=p.mouth_prior == "rules")
            settings = _audio_settings(p, feature=p.feature, mouth_prior=p.mouth_prior, lambda_residual=p.lambda_residual,
                                       warm_start=str(ctx.resolve_path(p.warm_start)) if p.warm_start else None)
            task = AudioExpPoseTask(clips, settings, data)
        except ValueError as exc:
            raise NodeError(f"TrainAudioToExpressionPose: {exc}") from None
        return run_training(ctx, "TrainAudioToExpressionPose", task, p)


class PersonalizeAudioToExpressionPose(Node):
    """Fine-tune a general audio -> expression + pose model on one target video (§3.2, §4.1: about
    300 frames): its audio's mfcc_window features and the coefficients Fit3DMM found on its frames."""

    category = "yi/train"
    inputs = {
        "features": In("AudioFeatures", "features of the target video's sound, the variant the general model reads"),
        "coeffs": In("MorphCoeffs", "Fit3DMM coefficients of the target video's frames"),
        "checkpoint": CheckpointInput(AUDIO_EXP_POSE, "the general model (overrides the checkpoint parameter)"),
    }
    outputs = train_outputs(AUDIO_EXP_POSE)

    class Params(_AudioParams):
        steps: int = Field(300, ge=1, le=10_000_000, description="fine-tuning updates")
        lr_g: float = Field(2e-4, gt=0, le=1)
        max_frames: int = Field(300, ge=2, le=1_000_000, description="use the first this many frames (the paper: 300)")

    def run(self, ctx: RunContext, features: FeatureSeq, coeffs: MorphCoeffs, checkpoint: CheckpointBlob | None = None) -> dict[str, Any]:
        from .train_audio import AudioExpPoseTask, clip_from_coeffs

        p = self.params
        _check_features("PersonalizeAudioToExpressionPose", features, None)
        _, export = load_checkpoint(self, ctx, "checkpoint", checkpoint, device="cpu")
        cfg = export["model_config"]
        data = _check_features("PersonalizeAudioToExpressionPose", features, cfg.get("feature", "mfcc_window"))[:p.max_frames]
        try:
            clip = clip_from_coeffs("target", data, coeffs, prior=cfg.get("mouth_prior", "none") == "rules", fps=features.fps)
            task = AudioExpPoseTask([clip], _audio_settings(p), {"source": "target video", "frames": len(clip.features)}, init=export)
        except ValueError as exc:
            raise NodeError(f"PersonalizeAudioToExpressionPose: {exc}") from None
        return run_training(ctx, "PersonalizeAudioToExpressionPose", task, p)


class _GanParams(TrainParams):
    steps: int = Field(2000, ge=1, le=10_000_000, description="generator updates")
    batch_size: int = Field(4, ge=1, le=1024)
    identity: Literal["own", "arcface"] = Field("own", description="identity features (arcface needs its weights)")
    arcface_weights: str = InputFile("", description="insightface arcface_torch IResNet state dict (identity=arcface)")
    threshold: float = Field(0.0, ge=0, lt=1, description="same-identity cosine for the memory; 0: the kind's default")
    albedo: Literal["detailed", "low"] = Field("detailed", description="albedo of the training renders (§3.3)")
    exclude: int = Field(8, ge=1, le=10000, description="a frame's background is matched among frames at least this far away")
    lambda_l1: float = Field(100.0, ge=0, description="eq. 4 lambda1")
    lambda_attention: float = Field(2.0, ge=0, description="eq. 4 lambda2")
    lambda_smooth: float = Field(1e-5, ge=0, description="eq. 4 lambda3")


def _gan_settings(p: _GanParams):
    from .train_memorygan import MemoryGANTrainSettings

    return MemoryGANTrainSettings(preset=p.preset, identity=p.identity, threshold=p.threshold or None, lambda_l1=p.lambda_l1,
                                  lambda_attention=p.lambda_attention, lambda_smooth=p.lambda_smooth)


def _identity_features(ctx: RunContext, node: str, kind: str, weights: str, model):
    from nodes.face.identity import IdentityFeatures

    try:
        feats = IdentityFeatures(kind, ctx.resolve_path(weights) if weights else None, model)
    except ValueError as exc:
        raise NodeError(f"{node}: {exc}") from None
    if kind == "own":
        ctx.log(f"{node}: identity features: the project's own 84-D embedding (no ArcFace weights; nodes/face/identity.py)")
    return feats


class TrainMemoryGAN(Node):
    """Train the memory-augmented GAN (§3.4, eq. 4) and its memory network on a talkgraph dataset:
    each clip's frames are rendered from its coefficients (fitted lighting and albedo, backgrounds
    matched among its other frames) and refined back into the real frames."""

    category = "yi/train"
    inputs = {"dataset": In("Path", "dataset location: MakeSyntheticDataset / PrepareDataset output, a folder or fsspec URL")}
    outputs = train_outputs(MEMORY_GAN)

    class Params(_GanParams):
        frame_size: int = Field(128, ge=32, le=2048, description="frames are loaded (and rendered) at this size")
        identity_variants: int = Field(4, ge=1, le=64, description="recoloured copies of each clip as extra pseudo-identities")
        max_clips: int = Field(0, ge=0, description="use at most this many training clips (0: all)")
        model_path: str = model_path_param()

    def run(self, ctx: RunContext, dataset: str) -> dict[str, Any]:
        import hashlib
        import json

        from nodes.training import default_work_dir
        from trainers.fingerprint import dataset_fingerprint

        from .train_memorygan import MemoryGANTask, dataset_refine_clips, load_clips, save_clips

        p = self.params
        model = resolve_model(ctx, "TrainMemoryGAN", None, p.model_path)
        feats = _identity_features(ctx, "TrainMemoryGAN", p.identity, p.arcface_weights, model)
        url = dataset_path(ctx, dataset, "TrainMemoryGAN")
        # the rendered training clips are kept in the work dir, keyed by what they depend on
        what = {"dataset": url, "content": dataset_fingerprint(url)["content"], "model": model.sha256, **p.model_dump(include={"frame_size", "identity_variants", "identity",
                                                                               "albedo", "exclude", "max_clips"})}
        work = ctx.resolve_path(p.work_dir) if p.work_dir else default_work_dir(ctx)
        kept = work / f"clips-{hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]}.npz"
        try:
            if kept.is_file():
                clips, data = load_clips(kept)
                ctx.log(f"TrainMemoryGAN: {len(clips)} rendered clips from {kept}")
            else:
                clips, data = dataset_refine_clips(
                    url, "train", p.frame_size, feats, p.identity_variants, albedo=p.albedo, exclude=p.exclude,
                    max_clips=p.max_clips, device=ctx.device, progress=lambda i, n: ctx.progress(i, n, "rendering training clips"))
                data = {**data, "identity_variants": p.identity_variants}
                work.mkdir(parents=True, exist_ok=True)
                save_clips(kept, clips, data)
            task = MemoryGANTask(clips, _gan_settings(p), data)
        except ValueError as exc:
            raise NodeError(f"TrainMemoryGAN: {exc}") from None
        return run_training(ctx, "TrainMemoryGAN", task, p)


class PersonalizeMemoryGAN(Node):
    """Fine-tune a general memory GAN on one target video (§3.4, §4.1): its frames are rendered
    from their Fit3DMM coefficients (the paper uses the low-frequency albedo here) over backgrounds
    matched among its other frames; G learns the target's look and the memory stores its
    identity features under the keys of its renders."""

    category = "yi/train"
    inputs = {
        "frames": In("Frames", "the target video"),
        "landmarks": In("Landmarks", "its landmarks (DetectLandmarks)"),
        "coeffs": In("MorphCoeffs", "its fitted coefficients (Fit3DMM)"),
        "checkpoint": CheckpointInput(MEMORY_GAN, "the general model (overrides the checkpoint parameter)"),
    }
    outputs = train_outputs(MEMORY_GAN)

    class Params(_GanParams):
        steps: int = Field(300, ge=1, le=10_000_000, description="fine-tuning updates")
        lr_g: float = Field(1e-4, gt=0, le=1)
        lr_d: float = Field(1e-4, gt=0, le=1)
        albedo: Literal["detailed", "low"] = Field("low", description="albedo of the renders (the paper: low-frequency here)")
        max_frames: int = Field(300, ge=3, le=1_000_000, description="use the first this many frames (the paper: 300)")
        model_path: str = model_path_param()

    def run(self, ctx: RunContext, frames: np.ndarray, landmarks: np.ndarray, coeffs: MorphCoeffs,
            checkpoint: CheckpointBlob | None = None) -> dict[str, Any]:
        from .train_memorygan import MemoryGANTask, prepare_clip

        p = self.params
        _, export = load_checkpoint(self, ctx, "checkpoint", checkpoint, device="cpu")
        n = min(len(frames), len(landmarks), len(coeffs.expression), p.max_frames)
        if n < 3:
            raise NodeError(f"PersonalizeMemoryGAN: needs at least 3 frames with landmarks and coefficients, got {n}")
        size = int(export.get("data", {}).get("frame_size", [frames.shape[1]])[0])
        frames, lms, c = _rescale_clip(frames[:n], np.asarray(landmarks[:n]), coeffs, n, size)
        model = resolve_model(ctx, "PersonalizeMemoryGAN", None, p.model_path)
        cfg = export["model_config"]
        feats = _identity_features(ctx, "PersonalizeMemoryGAN", cfg.get("identity", "own"), p.arcface_weights, model)
        try:
            clip = prepare_clip("target", frames, lms, c, model, feats, albedo=p.albedo, exclude=p.exclude, device=ctx.device)
            task = MemoryGANTask([clip], _gan_settings(p), {"source": "target video", "frames": n}, init=export)
        except ValueError as exc:
            raise NodeError(f"PersonalizeMemoryGAN: {exc}") from None
        return run_training(ctx, "PersonalizeMemoryGAN", task, p)


def _rescale_clip(frames: np.ndarray, landmarks: np.ndarray, coeffs: MorphCoeffs, n: int, size: int):
    """Frames, landmarks and coefficients of a square clip resized to size x size."""
    from trainers.data.clips import rescale_pixels, resize_frames

    h, w = frames.shape[1:3]
    if h != w:
        raise NodeError(f"PersonalizeMemoryGAN: the target frames must be square (crop them with CropAlign), got {w}x{h}")
    scale = size / h
    pose = np.asarray(coeffs.pose[:n], np.float32).copy()
    if scale != 1.0:
        frames = resize_frames(frames, size)
        landmarks = rescale_pixels(landmarks[..., :2].astype(np.float32), scale)
        pose[:, 3:5] = rescale_pixels(pose[:, 3:5], scale)
        pose[:, 5] += np.log(scale)
    c = MorphCoeffs(np.asarray(coeffs.shape), np.asarray(coeffs.expression[:n]), pose, np.zeros(n, np.float32), (size, size))
    return frames, landmarks, c


class EvaluateYi(Node):
    """Yi et al. on held-out clips (docs/yi.md): PSNR/SSIM of rendered vs refined frames against
    the real ones (ground-truth and audio-driven coefficients), the §4.2 ablations that are
    switches (no identity feature/memory; no pose prediction), HS (eq. 6). Writes markdown."""

    category = "yi/evaluate"
    inputs = {
        "dataset": In("Path", "dataset location with a held-out split"),
        "audio_checkpoint": CheckpointInput(AUDIO_EXP_POSE, "overrides the audio_checkpoint parameter"),
        "gan_checkpoint": CheckpointInput(MEMORY_GAN, "overrides the gan_checkpoint parameter"),
    }
    outputs = {"metrics": Out("Metrics", "'table.row.metric' -> value"), "report": Out("String", "the tables (markdown)"),
               "figure": Out("Image", "frames of the first clip: real, rendered, refined, attention, audio-driven")}

    class Params(BaseModel):
        split: Literal["train", "val", "test"] = Field("test", description="which clips to evaluate on")
        max_clips: int = Field(0, ge=0, description="at most this many clips (0: all of the split)")
        max_frames: int = Field(100, ge=3, le=100_000, description="frames per clip")
        path: str = OutputFile("yi_eval.md", description="where to write the markdown tables", extensions=(".md",))
        figure_path: str = OutputFile("yi_eval.png", description="where to write the figure", extensions=(".png",))

    def implicit_files(self, connected: frozenset[str]) -> dict:
        return {**super().implicit_files(connected), **bundled_face_model()}  # evaluate.py renders with the bundled model

    def run(self, ctx: RunContext, dataset: str, audio_checkpoint: CheckpointBlob | None = None,
            gan_checkpoint: CheckpointBlob | None = None) -> dict[str, Any]:
        import re

        from .evaluate import evaluate, report

        p = self.params
        audio, a_exp = load_checkpoint(self, ctx, "audio_checkpoint", audio_checkpoint)
        _refuse_released_atcnet(audio, "EvaluateYi")
        gan, g_exp = load_checkpoint(self, ctx, "gan_checkpoint", gan_checkpoint)
        try:
            result = evaluate(dataset_path(ctx, dataset, "EvaluateYi"), audio, gan, split=p.split, max_clips=p.max_clips,
                              max_frames=p.max_frames, device=ctx.device, progress=lambda i, n: ctx.progress(i, n, "clips"))
        except ValueError as exc:
            raise NodeError(f"EvaluateYi: {exc}") from None
        text = report(result, f"Audio model: {a_exp['step']} steps; memory GAN: {g_exp['step']} steps.")
        path = ctx.resolve_path(p.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        ctx.log(text)
        import cv2

        fig = ctx.resolve_path(p.figure_path)
        cv2.imwrite(str(fig), result["figure"][..., ::-1])
        slug = lambda name: re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")  # noqa: E731
        metrics = {f"{table}.{slug(row)}.{m}": v for table in ("images", "pose") for row, vals in result[table].items()
                   for m, v in vals.items()}
        return {"metrics": metrics, "report": text, "figure": result["figure"]}
