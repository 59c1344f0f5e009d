"""MetaTalk (Zhang et al. 2022) nodes: a short target video + new speech -> an HD lip-synced video.

    target ─ DetectLandmarks ─ CropAlign(sizes 512/768/1024, §2.1) ─ Fit3DMM (§2.2) ─ target coeffs
    speech ─ AudioFeatures(mfcc80_window) ─ A2E (§2.3) ─ coeffs (the target's, expression replaced)
    coeffs ─ Render3DMM(black) ─ NeuralFaceRenderer (§2.4, lower half) ─ PasteBack ─ SaveVideo

Training (workflows/train_metatalk.yaml): TrainA2E on pseudo (audio, expression) pairs made by a
teacher lip-sync path from the target (MouthClosedFrame -> MakeSyntheticDataset), and
TrainNeuralFaceRenderer on the target's own frames. LoopFrames retimes the target to the speech.
"""
from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from graphcore.node import In, Node, NodeError, Out, RunContext
from graphcore.types import CheckpointBlob
from nodes.checkpoints import CheckpointInput, load_checkpoint
from nodes.face.model_nodes import FaceModelInput, resolve_model
from nodes.training import TrainParams, dataset_path, run_training, train_outputs
from nodes.types import FeatureSeq, MorphCoeffs

from .models import A2E as A2E_SPEC
from .models import NEURAL_FACE_RENDERER

# validation names the trainer when a bundled checkpoint is missing (e.g. not trained yet)
MISSING = "bundled checkpoint (made by workflows/train_metatalk.yaml; or set `checkpoint`)"


def loop_index(n: int, length: int) -> np.ndarray:
    """Frame indices that play n target frames forwards and backwards (no jump) for `length` frames."""
    if n < 1:
        raise ValueError("the target has no frames")
    if n == 1:
        return np.zeros(length, np.int64)
    period = np.arange(length) % (2 * n - 2)
    return np.where(period < n, period, 2 * n - 2 - period).astype(np.int64)


def _check_audio(node: str, features: FeatureSeq, feature: str = "mfcc80_window") -> np.ndarray:
    """The features' array if they are `feature`'s per-frame shape (28x80 MFCC blocks or 44-D phonetic)."""
    from trainers.data.audio_features import SHAPES

    want = SHAPES[feature]
    if features.data.shape[1:] != tuple(want):
        raise NodeError(f"{node} needs AudioFeatures variant {feature} ({' x '.join(map(str, want))} per frame), "
                        f"got variant {features.variant!r} shaped {features.data.shape}")
    return features.data


def _check_crops(node: str, frames: np.ndarray) -> int:
    from .face_renderer import RENDER_SIZES

    size = frames.shape[1]
    if frames.shape[2] != size or size not in RENDER_SIZES:
        raise NodeError(f"{node}: the face crops are {frames.shape[2]}x{size}; the renderer works on square "
                        f"{'/'.join(map(str, RENDER_SIZES[1:]))} crops (CropAlign with sizes [512, 768, 1024]), or "
                        f"{RENDER_SIZES[0]} for Table 3's low-definition ablation (sizes [{RENDER_SIZES[0]}])")
    return size


def _resized(frames: np.ndarray, size: int) -> np.ndarray:
    """(T, s, s, ...) square frames or masks resized to size x size (cubic; unchanged when already that size)."""
    import cv2

    if frames.shape[1] == size:
        return frames
    out = [cv2.resize(f, (size, size), interpolation=cv2.INTER_CUBIC) for f in frames]
    return np.clip(np.stack(out), 0, 255 if frames.dtype == np.uint8 else np.inf).astype(frames.dtype)


class A2E(Node):
    """MetaTalk §2.3: 28x80 MFCC blocks -> audio features (256-D) -> Table 1's Conv1D network ->
    the expression of every speech frame. At test time (§2) the predicted expression replaces
    the one fitted on the target: the output keeps the target's identity and takes its pose
    from the target frames played forwards and backwards (LoopFrames retimes the frames alike)."""

    category = "metatalk"
    inputs = {
        "features": In("AudioFeatures", "features of the driving speech: mfcc80_window (T, 28, 80), or phonetic (T, 44) "
                                        "for a checkpoint trained with TrainA2E feature=phonetic"),
        "target": In("MorphCoeffs", "the target's fitted coefficients (Fit3DMM on its face crops)"),
        "checkpoint": CheckpointInput(A2E_SPEC, label=MISSING),
    }
    outputs = {"coeffs": Out("MorphCoeffs", "one row per speech frame: the target's identity and pose, A2E's expression")}

    class Params(BaseModel):
        pass

    def run(self, ctx: RunContext, features: FeatureSeq, target: MorphCoeffs,
            checkpoint: CheckpointBlob | None = None) -> dict[str, Any]:
        import torch

        from .a2e import frame_windows

        if len(target.expression) == 0:
            raise NodeError("A2E: the target coefficients have no frames")
        model, export = load_checkpoint(self, ctx, "checkpoint", checkpoint)
        audio = _check_audio("A2E", features, model.cfg.feature)
        if model.cfg.mouth_prior == "rules":
            from .a2e import with_mouth_prior

            audio = with_mouth_prior(audio, features.fps)
        if model.cfg.expression_dim != target.expression.shape[1]:
            raise NodeError(f"A2E: the checkpoint predicts {model.cfg.expression_dim} expression coefficients, "
                            f"the target has {target.expression.shape[1]}")
        ctx.log(f"A2E: {export['step']} training steps on {export.get('data', {}).get('pairs', '?')} pseudo pairs")
        with torch.no_grad():
            x = torch.from_numpy(np.asarray(audio, np.float32)).to(ctx.device)
            expression = torch.cat([model(frame_windows(x, model.cfg.window)[i:i + 256]) for i in range(0, len(x), 256)])
        idx = loop_index(len(target.pose), len(audio))
        coeffs = MorphCoeffs(np.asarray(target.shape, np.float32), expression.cpu().numpy().astype(np.float32),
                             np.asarray(target.pose, np.float32)[idx], np.zeros(len(audio), np.float32), tuple(target.image_size))
        return {"coeffs": coeffs}


class LoopFrames(Node):
    """The target's frames played forwards and backwards to the length of the driving
    coefficients (the order A2E takes the target's pose in)."""

    category = "metatalk"
    inputs = {
        "frames": In("Frames", "the target's frames (or face crops)"),
        "coeffs": In("MorphCoeffs", "driving coefficients: one output frame per row"),
    }
    outputs = {"frames": Out("Frames")}

    def run(self, ctx: RunContext, frames: np.ndarray, coeffs: MorphCoeffs) -> dict[str, Any]:
        try:
            idx = loop_index(len(frames), len(coeffs.expression))
        except ValueError as e:
            raise NodeError(f"LoopFrames: {e}") from None
        return {"frames": np.ascontiguousarray(frames[idx])}


class MouthClosedFrame(Node):
    """The target frame whose fitted mouth is most closed (smallest mouth-expression norm): the
    still face a teacher lip-sync path animates to make MetaTalk's pseudo videos (§2.1)."""

    category = "metatalk"
    inputs = {
        "frames": In("Frames", "the target's face crops"),
        "landmarks": In("Landmarks", "their landmarks (T, N, 2|3)"),
        "coeffs": In("MorphCoeffs", "their fitted coefficients"),
    }
    outputs = {
        "image": Out("Image"),
        "landmarks": Out("Landmarks", "(1, N, 2|3)"),
        "coeffs": Out("MorphCoeffs", "one row"),
    }

    def run(self, ctx: RunContext, frames: np.ndarray, landmarks: np.ndarray, coeffs: MorphCoeffs) -> dict[str, Any]:
        from nodes.face.model import N_MOUTH

        if not len(frames) == len(landmarks) == len(coeffs.expression):
            raise NodeError(f"MouthClosedFrame: {len(frames)} frames, {len(landmarks)} landmark frames and "
                            f"{len(coeffs.expression)} coefficient rows; give one of each per frame")
        t = int(np.argmin(np.linalg.norm(coeffs.expression[:, :N_MOUTH], axis=1)))
        ctx.log(f"MouthClosedFrame: frame {t}")
        one = MorphCoeffs(coeffs.shape, coeffs.expression[t:t + 1], coeffs.pose[t:t + 1], coeffs.error[t:t + 1], coeffs.image_size)
        return {"image": np.ascontiguousarray(frames[t]), "landmarks": landmarks[t:t + 1], "coeffs": one}


class NeuralFaceRenderer(Node):
    """MetaTalk §2.4: the lower half of the synthetic face (the 3DMM render drawn over the target
    crop: AudioDVP's masking) -> a photo-realistic lower half at the crop's resolution, sewn into
    the crop: `region` face (default) replaces only the rendered face grown by `grow` pixels and
    feathered, as AudioDVP blends its mask region, so hair, neck and background stay the target's
    pixels; `band` replaces the whole lower half under a feathered top edge. `mask` says which
    crop pixels changed, per frame (for PasteBack)."""

    category = "metatalk"
    inputs = {
        "rendered": In("Frames", "Render3DMM frames of the driving coefficients (background black)"),
        "face_mask": In("Mask", "Render3DMM's face_mask"),
        "frames": In("Frames", "the target crops, one per rendered frame (LoopFrames)"),
        "checkpoint": CheckpointInput(NEURAL_FACE_RENDERER, label=MISSING),
    }
    outputs = {
        "frames": Out("Frames", "the crops with the generated lower half"),
        "mask": Out("Mask", "(T, size, size) weight of the generated pixels"),
    }

    class Params(BaseModel):
        region: Literal["face", "band"] = Field("face", description="replace the lower face (grown, feathered) or the whole lower half")
        grow: int = Field(12, ge=0, le=256, description="face: grow the rendered face region by this many pixels")
        feather: int = Field(16, ge=0, le=256, description="pixels over which the generated region fades in")
        batch: int = Field(4, ge=1, le=256, description="frames per forward pass")

    def run(self, ctx: RunContext, rendered: np.ndarray, face_mask: np.ndarray, frames: np.ndarray,
            checkpoint: CheckpointBlob | None = None) -> dict[str, Any]:
        import torch

        from .face_renderer import band_blend_mask, compose, face_blend_mask, from_tensor, lower_half, to_tensor

        p = self.params
        size = _check_crops("NeuralFaceRenderer", frames)
        if rendered.shape != frames.shape or face_mask.shape != frames.shape[:3]:
            raise NodeError(f"NeuralFaceRenderer: rendered {rendered.shape}, face_mask {face_mask.shape} and frames "
                            f"{frames.shape} must match (retime the target with LoopFrames)")
        model, _ = load_checkpoint(self, ctx, "checkpoint", checkpoint)
        if model.cfg.size != size:
            raise NodeError(f"NeuralFaceRenderer: the checkpoint was trained on {model.cfg.size} crops, these are {size}; "
                            "train one at this size (workflows/train_metatalk.yaml)")
        ramp = band_blend_mask(size, p.feather).numpy()
        out = np.array(frames, copy=True)
        band = out[:, size - size // 2:]
        weights = np.zeros((len(frames), size, size), np.float32)
        n, step = len(frames), p.batch
        with torch.no_grad():
            for i in range(0, n, step):
                sl = slice(i, min(n, i + step))
                synthetic = lower_half(compose(rendered[sl], face_mask[sl], frames[sl]))
                gen = from_tensor(model(to_tensor(synthetic).to(ctx.device))).astype(np.float32)
                w = ramp[None] if p.region == "band" else ramp[None] * lower_half(face_blend_mask(face_mask[sl], p.grow, p.feather))
                weights[sl, size - size // 2:] = w
                band[sl] = (w[..., None] * gen + (1 - w[..., None]) * band[sl]).round().astype(np.uint8)
                ctx.progress(sl.stop, n, "rendering")
        return {"frames": out, "mask": weights}


class TrainA2E(Node):
    """Train A2E (§2.3, eq. 1) on pseudo (audio, expression) pairs: a dataset of the target driven
    by a teacher lip-sync path (MakeSyntheticDataset on MouthClosedFrame, or PrepareDataset over a
    teacher's videos); optionally also the target video's own speech and fitted expression, and
    pairs a checkpoint-free teacher made from any audio the user gives (`teacher_features` +
    `teacher_coeffs`: e.g. LipSyncRules on the user's speech with MouthClosedFrame's coefficients)."""

    category = "metatalk/train"
    inputs = {
        "dataset": In("Path", "pseudo-pair dataset: MakeSyntheticDataset / PrepareDataset output, a folder or URL"),
        "features": In("AudioFeatures", "features (the `feature` param's variant) of the target video's own sound", optional=True),
        "coeffs": In("MorphCoeffs", "Fit3DMM coefficients of the target video (with `features`)", optional=True),
        "teacher_features": In("AudioFeatures", "features of more teacher speech, e.g. the user's audio", optional=True),
        "teacher_coeffs": In("MorphCoeffs", "the teacher's expression for it, e.g. LipSyncRules (with `teacher_features`)",
                             optional=True),
    }
    outputs = train_outputs(A2E_SPEC)

    class Params(TrainParams):
        steps: int = Field(2000, ge=1, le=10_000_000)
        batch_size: int = Field(32, ge=1, le=4096)
        lr_g: float = Field(1e-3, gt=0, le=1)
        split: str = Field("all", description="dataset split to train on: train, val, test or all")
        feature: Literal["mfcc80_window", "phonetic"] = Field(
            "mfcc80_window", description="audio input: the paper's 28x80 MFCC blocks, or phonetic features (44 per frame, "
                                         "speaker-independent: docs/lipsync.md; an option, not the paper)")
        network: Literal["table1", "audiodvp"] = Field(
            "table1", description="MetaTalk's deep A2E (Table 1) or Table 3's baseline: AudioDVP's shallow A2E")
        mouth_prior: Literal["none", "rules"] = Field(
            "none", description="rules: A2E's mouth is the rule-based mouth of the phonetic features plus a learned, "
                                "L2-penalised residual (needs feature phonetic; an option, not the paper: docs/lipsync.md)")
        lambda_residual: float = Field(0.1, ge=0, description="mouth_prior rules: weight of the L2 penalty on the residual")

    def run(self, ctx: RunContext, dataset: str, features: FeatureSeq | None = None, coeffs: MorphCoeffs | None = None,
            teacher_features: FeatureSeq | None = None, teacher_coeffs: MorphCoeffs | None = None) -> dict[str, Any]:
        from .a2e import with_mouth_prior
        from .train import A2ETask, A2ETrainSettings, load_pseudo_pairs

        p = self.params
        extra = {"target": (features, coeffs, "features", "coeffs"),
                 "teacher": (teacher_features, teacher_coeffs, "teacher_features", "teacher_coeffs")}
        for audio_in, coeffs_in, a, c in extra.values():
            if (audio_in is None) != (coeffs_in is None):
                raise NodeError(f"TrainA2E: connect both `{a}` and `{c}`, or neither")

        if p.mouth_prior != "none" and p.feature != "phonetic":
            raise NodeError(f"TrainA2E: mouth_prior {p.mouth_prior} needs feature: phonetic (the rules read its phones)")

        def task() -> A2ETask:
            pairs, data = load_pseudo_pairs(dataset_path(ctx, dataset, "TrainA2E"), None if p.split == "all" else p.split,
                                            p.feature, p.mouth_prior)
            for name, (audio_in, coeffs_in, _, _) in extra.items():
                if audio_in is not None and coeffs_in is not None:
                    audio = _check_audio("TrainA2E", audio_in, p.feature)
                    if p.mouth_prior == "rules":
                        audio = with_mouth_prior(audio, audio_in.fps)
                    n = min(len(audio), len(coeffs_in.expression))
                    pairs.append((np.asarray(audio[:n], np.float32), np.asarray(coeffs_in.expression[:n], np.float32)))
                    data = {**data, f"{name}_frames": n}
            settings = A2ETrainSettings(preset=p.preset, feature=p.feature, network=p.network, mouth_prior=p.mouth_prior,
                                        lambda_residual=p.lambda_residual)
            return A2ETask(pairs, settings, data)

        return run_training(ctx, "TrainA2E", task, p)


class TrainNeuralFaceRenderer(Node):
    """Train the neural face renderer (§2.4, eq. 2-4) on the target video: its crops with the 3DMM
    render of their own fitted coefficients drawn over them (Render3DMM, background black) ->
    the real crops, lower half to lower half, at the crop's resolution (512/768/1024)."""

    category = "metatalk/train"
    inputs = {
        "frames": In("Frames", "the target's face crops (CropAlign)"),
        "rendered": In("Frames", "Render3DMM of the target's own coefficients, background black"),
        "face_mask": In("Mask", "Render3DMM's face_mask"),
    }
    outputs = train_outputs(NEURAL_FACE_RENDERER)

    class Params(TrainParams):
        preset: Literal["tiny", "tiny_residual", "paper"] = Field(
            "tiny", description="size preset (tiny_residual: tiny whose output corrects its input; not the paper)")
        steps: int = Field(2000, ge=1, le=10_000_000)
        batch_size: int = Field(4, ge=1, le=1024)
        lambda_adv: float = Field(0.01, ge=0, description="eq. 4 λ (the paper does not give it)")

    def run(self, ctx: RunContext, frames: np.ndarray, rendered: np.ndarray, face_mask: np.ndarray) -> dict[str, Any]:
        from .face_renderer import compose, lower_half
        from .train import RendererTask, RendererTrainSettings

        p = self.params
        _check_crops("TrainNeuralFaceRenderer", frames)
        if rendered.shape != frames.shape or face_mask.shape != frames.shape[:3]:
            raise NodeError(f"TrainNeuralFaceRenderer: rendered {rendered.shape}, face_mask {face_mask.shape} and frames "
                            f"{frames.shape} must match (render the target's own coefficients on its crops)")
        synthetic = lower_half(compose(rendered, face_mask, frames))
        task = RendererTask(np.ascontiguousarray(synthetic), np.ascontiguousarray(lower_half(frames)),
                            RendererTrainSettings(preset=p.preset, lambda_adv=p.lambda_adv), {"source": "target video"})
        return run_training(ctx, "TrainNeuralFaceRenderer", task, p)


class EvaluateMetaTalk(Node):
    """What of MetaTalk's Tables 2-3 the project can compute, on a target driven by its own
    speech (the paper's SSIM/FID protocol: "driven by original audios to compare with original
    videos"): SSIM and PSNR of the lower half of the crops, generated vs real, and of the
    synthetic input (the render drawn over the crop: the renderer's starting point), and, for
    lip sync, the lip-vertex distance (LMD^3D, mm) between A2E's expression and the one fitted
    on the real frames — a stand-in for LSE-C/LSE-D, which need SyncNet weights (not shipped).
    Generated crops of another size than the real ones (Table 3's low-definition ablation: 256
    against the HD crop of the same window) are resized to the real ones' size first."""

    category = "metatalk/evaluate"
    inputs = {
        "real": In("Frames", "the target's face crops"),
        "generated": In("Frames", "NeuralFaceRenderer's crops driven by the target's own speech"),
        "rendered": In("Frames", "the Render3DMM frames the generated ones came from", optional=True),
        "face_mask": In("Mask", "their face_mask (with `rendered`)", optional=True),
        "target": In("MorphCoeffs", "Fit3DMM's coefficients of the real crops"),
        "driven": In("MorphCoeffs", "A2E's coefficients for the target's own speech"),
        "model": FaceModelInput(),
    }
    outputs = {"metrics": Out("Metrics")}

    def run(self, ctx: RunContext, real: np.ndarray, generated: np.ndarray, target: MorphCoeffs, driven: MorphCoeffs,
            rendered: np.ndarray | None = None, face_mask: np.ndarray | None = None, model: Any = None) -> dict[str, Any]:
        from nodes.metrics.image_quality import psnr, ssim
        from nodes.metrics.motion import lip_landmark_distance

        from .face_renderer import compose, lower_half

        n = min(len(real), len(generated), len(target.expression), len(driven.expression))
        square = all(a.ndim == 4 and a.shape[1] == a.shape[2] and a.shape[3] == 3 for a in (real, generated))
        if n == 0 or not square:
            raise NodeError(f"EvaluateMetaTalk: real {real.shape} and generated {generated.shape} frames must be "
                            "non-empty square RGB crops")
        if (rendered is None) != (face_mask is None):
            raise NodeError("EvaluateMetaTalk: connect both `rendered` and `face_mask`, or neither")
        size, generated_size = real.shape[1], generated.shape[1]
        generated = _resized(generated[:n], size)
        face_model = resolve_model(ctx, "EvaluateMetaTalk", model, self.params.model_path)
        real_half, gen_half = lower_half(real[:n]), lower_half(generated[:n])
        out = {"frames": n, "size": size, "generated_size": generated_size,
               "ssim_lower_half": float(np.mean([ssim(g, r) for g, r in zip(gen_half, real_half)])),
               "psnr_lower_half": float(np.mean([psnr(g, r) for g, r in zip(gen_half, real_half)])),
               "lip_vertex_distance_mm": lip_landmark_distance(face_model, target.shape, driven.expression[:n],
                                                               target.expression[:n]),
               "lip_vertex_distance_mean_mm": lip_landmark_distance(
                   face_model, target.shape, np.broadcast_to(target.expression[:n].mean(0), (n, target.expression.shape[1])),
                   target.expression[:n])}
        if rendered is not None and face_mask is not None:
            synthetic = lower_half(compose(_resized(rendered[:n], size), _resized(face_mask[:n], size), real[:n]))
            out["ssim_lower_half_synthetic"] = float(np.mean([ssim(g, r) for g, r in zip(synthetic, real_half)]))
        ctx.log("EvaluateMetaTalk: " + ", ".join(f"{k} {v:.4g}" for k, v in out.items()))
        return {"metrics": out}
