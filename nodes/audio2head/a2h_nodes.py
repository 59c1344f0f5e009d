"""Audio2Head nodes (Wang et al. 2021, §3): the four networks, their trainers and the evaluation.

    reference image ─┬─ HeadMotionPredictor ── HeadPose ─┐
    AudioFeatures(a2h) ┴─────────────────────────────────┴─ MotionFieldGenerator ── Keypoints ─┐
    reference image ──────────────────────────────────────────────────────────── KeypointRenderer ── Frames

KeypointDetector gives the keypoints of real frames (the renderer's source keypoints, the
motion field generator's training targets). Heavy imports stay inside functions.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from graphcore.node import In, InputFile, Node, NodeError, Out, OutputFile, OutputPath, RunContext
from graphcore.types import CheckpointBlob
from nodes.checkpoints import CheckpointInput, load_checkpoint
from nodes.face.model_nodes import FaceModelInput
from nodes.training import TrainParams, dataset_path, run_training, train_outputs
from nodes.types import FeatureSeq, Keypoints, MorphCoeffs
from nodes.weights import OfficialMode, missing_weights_hint, official_config, official_mode_field

from .models import HEAD_MOTION, HEAD_MOTION_L1_BUNDLED, KEYPOINT_AUTOENCODER, MOTION_FIELD

A2H_SHAPE = (4, 41)


def _check_convention(model, features: FeatureSeq, node: str) -> None:
    """An imported official checkpoint reads the release's features (AudioFeatures a2h_official)."""
    if getattr(model.cfg, "official", False) and features.variant != "a2h_official":
        raise NodeError(f"{node}: this is an official Audio2Head checkpoint (graphrun weights import); it needs "
                        f"AudioFeatures variant a2h_official, got {features.variant!r}")


def _a2h_features(features: FeatureSeq, node: str) -> np.ndarray:
    data = features.data
    if data.ndim != 3 or data.shape[1:] != A2H_SHAPE:
        raise NodeError(f"{node} needs AudioFeatures of variant a2h, shaped (T, 4, 41); got variant "
                        f"{features.variant!r} shaped {data.shape}")
    if len(data) == 0:
        raise NodeError(f"{node}: the audio is shorter than one video frame")
    return data


def _square(image: np.ndarray, node: str, what: str = "reference image") -> None:
    if image.ndim != 3 or image.shape[0] != image.shape[1]:
        raise NodeError(f"{node}: the {what} must be square (crop it first, e.g. CropAlign), got {image.shape[1]}x{image.shape[0]}")


def _resized(image: np.ndarray, size: int, node: str) -> np.ndarray:
    from .inference import resize_image

    _square(image, node)
    return resize_image(image, size)


class HeadMotionPredictor(Node):
    """Audio2Head §3.2: a reference portrait and its speech -> a natural head pose per video frame.

    ResNet-34 image and audio encoders and a 2-layer LSTM with spatial embedding transition
    (eq. 1-2), one step per frame (any length). Output poses are camera-space HeadPose rows
    (pitch, yaw, roll in radians; tx, ty, tz in mm; see nodes/audio2head/pose.py).
    """

    category = "audio2head"
    inputs = {
        "reference": In("Image", "the reference portrait (square)"),
        "features": In("AudioFeatures", "AudioFeatures variant a2h of the driving speech"),
        "checkpoint": CheckpointInput(HEAD_MOTION),
    }
    outputs = {"pose": Out("HeadPose", "one pose per audio frame")}
    missing_file_hint = missing_weights_hint  # an imported official checkpoint's path: how to import it

    def run(self, ctx: RunContext, reference: np.ndarray, features: FeatureSeq, checkpoint: CheckpointBlob | None = None) -> dict[str, Any]:
        from .inference import predict_head_motion

        data = _a2h_features(features, "HeadMotionPredictor")
        _square(reference, "HeadMotionPredictor")
        model, export = load_checkpoint(self, ctx, "checkpoint", checkpoint)
        _check_convention(model, features, "HeadMotionPredictor")
        pose = predict_head_motion(model, reference, data, ctx.device)
        origin = "the imported official release (official pose convention)" if "official" in export else \
            f"a predictor trained {export.get('step')} steps"
        ctx.log(f"{len(pose)} head poses from {origin}")
        return {"pose": pose.astype(np.float32)}


class MotionFieldGenerator(Node):
    """Audio2Head §3.3: reference + audio + head poses -> keypoints and Jacobians per frame.

    The reference (downscaled, repeated), the poses drawn as projected 3-D boxes and the audio
    encoded to 2-channel maps form one volume per window of T frames; a 3-D hourglass predicts
    N keypoints with Jacobians. Overlapping windows are cross-faded, so any length works.
    """

    category = "audio2head"
    inputs = {
        "reference": In("Image", "the reference portrait (square)"),
        "features": In("AudioFeatures", "AudioFeatures variant a2h"),
        "pose": In("HeadPose", "one head pose per audio frame (HeadMotionPredictor, or ground truth)"),
        "checkpoint": CheckpointInput(MOTION_FIELD),
    }
    outputs = {
        "keypoints": Out("Keypoints", "driving keypoints per frame"),
        "pose_boxes": Out("Mask", "the pose boxes V_S the generator saw, (T, S, S)"),
    }
    missing_file_hint = missing_weights_hint  # an imported official checkpoint's path: how to import it

    class Params(BaseModel):
        jacobians: bool = Field(True, description="off: identity Jacobians (the paper's 'w/o Jacobians' ablation, Fig. 8)")
        batch: int = Field(4, ge=1, le=64, description="windows per forward pass")

    def run(self, ctx: RunContext, reference: np.ndarray, features: FeatureSeq, pose: np.ndarray,
            checkpoint: CheckpointBlob | None = None) -> dict[str, Any]:
        from .inference import motion_field

        data = _a2h_features(features, "MotionFieldGenerator")
        _square(reference, "MotionFieldGenerator")
        if len(pose) != len(data):
            raise NodeError(f"MotionFieldGenerator: {len(data)} audio frames but {len(pose)} head poses; "
                            "they must describe the same frames")
        if not np.isfinite(pose).all() or np.any(pose[:, 5] <= 0):
            raise NodeError("MotionFieldGenerator: head poses must be finite with positive depth tz (camera-space HeadPose)")
        model, export = load_checkpoint(self, ctx, "checkpoint", checkpoint)
        _check_convention(model, features, "MotionFieldGenerator")
        kp, boxes = motion_field(model, reference, data, pose, ctx.device, self.params.batch,
                                 progress=lambda i, n: ctx.progress(i, n, "windows"))
        if not self.params.jacobians:
            kp = Keypoints(kp.value, np.broadcast_to(np.eye(2, dtype=np.float32), kp.jacobian.shape).copy())
        ctx.log(f"{len(kp.value)} frames of {kp.value.shape[1]} keypoints, windows of {model.cfg.window} frames")
        return {"keypoints": kp, "pose_boxes": boxes}


class KeypointDetector(Node):
    """FOMM's keypoint detector (Audio2Head N_D): keypoints and local Jacobians of an image or frames."""

    category = "audio2head"
    inputs = {
        "image": In("Image", "one image", optional=True),
        "frames": In("Frames", "video frames", optional=True),
        "checkpoint": CheckpointInput(KEYPOINT_AUTOENCODER),
    }
    outputs = {"keypoints": Out("Keypoints")}
    exactly_one_of = (("image", "frames"),)
    missing_file_hint = missing_weights_hint  # an imported official checkpoint's path: how to import it

    class Params(BaseModel):
        size: int = Field(256, ge=32, le=2048, description="images are resized to size x size first (the training size)")

    def run(self, ctx: RunContext, image: np.ndarray | None = None, frames: np.ndarray | None = None,
            checkpoint: CheckpointBlob | None = None) -> dict[str, Any]:
        from .inference import detect_keypoints, resize_image

        if (image is None) == (frames is None):
            raise NodeError("KeypointDetector: connect exactly one of `image` and `frames`")
        frames = image[None] if frames is None else frames
        if len(frames) == 0:
            raise NodeError("KeypointDetector: the frames input holds no frames")
        _square(frames[0], "KeypointDetector", "input")
        size = self.params.size
        models, _ = load_checkpoint(self, ctx, "checkpoint", checkpoint)
        frames = np.stack([resize_image(f, size) for f in frames]) if frames.shape[1] != size else frames
        kp = detect_keypoints(models.detector, frames, ctx.device, progress=lambda i, n: ctx.progress(i, n, "frames"))
        return {"keypoints": kp}


class KeypointRenderer(Node):
    """FOMM's occlusion-aware generator (Audio2Head N_I): redraw the reference so that its
    keypoints move to the driving keypoints. Dense motion from local affine transforms around
    the keypoints, an occlusion map, feature warping and decoding. Source keypoints are detected
    on the reference with the same checkpoint unless connected. A checkpoint with mouth keypoints
    (TrainKeypointRenderer mouth_keypoints, not in the paper) also takes `mouth` / `source_mouth`
    (MouthKeypoints); the mouth then moves with the head as the driving keypoints imply."""

    category = "audio2head"
    inputs = {
        "reference": In("Image", "the reference portrait (square)"),
        "keypoints": In("Keypoints", "driving keypoints per output frame"),
        "source_keypoints": In("Keypoints", "the reference's keypoints (default: detected)", optional=True),
        "mouth": In("Keypoints", "mouth keypoints per frame at the reference's head pose (MouthKeypoints; for a "
                                 "checkpoint with mouth keypoints)", optional=True),
        "source_mouth": In("Keypoints", "the reference's own mouth keypoints (MouthKeypoints)", optional=True),
        "checkpoint": CheckpointInput(KEYPOINT_AUTOENCODER),
    }
    outputs = {"frames": Out("Frames", stream=True),
               "occlusion": Out("Mask", "the occlusion map per frame (feature resolution)", stream=True)}
    missing_file_hint = missing_weights_hint  # an imported official checkpoint's path: how to import it

    class Params(BaseModel):
        size: int = Field(256, ge=32, le=2048, description="output size; the reference is resized to it")
        jacobians: bool = Field(True, description="off: translations only around the keypoints (the 'w/o Jacobians' ablation)")
        motion: Literal["absolute", "relative"] = Field(
            "absolute", description="absolute: render the driving keypoints as given (Audio2Head); relative: move the source "
                                    "keypoints by the driving keypoints' motion since their first frame (FOMM)")
        chunk: int = Field(8, ge=1, le=256, description="frames per forward pass")
        head_only: bool = Field(False, description=(
            "keep only the head motion the driving keypoints imply (their least-squares affine map from the reference's); "
            "with mouth keypoints the mouth then moves as they say alone (not in the paper)"))
        official: OfficialMode = official_mode_field("align_corners=False warps and resizes, the reference cv2-resized to 256")

    def run(self, ctx: RunContext, reference: np.ndarray, keypoints: Keypoints, source_keypoints: Keypoints | None = None,
            mouth: Keypoints | None = None, source_mouth: Keypoints | None = None,
            checkpoint: CheckpointBlob | None = None) -> Iterator[dict[str, Any]]:
        """Streams: `chunk` rendered frames (and occlusion maps) per step."""
        from .inference import detect_keypoints, relative_keypoints, render_chunks

        p = self.params
        _check_keypoints(keypoints, "keypoints")
        models, _ = load_checkpoint(self, ctx, "checkpoint", checkpoint, config=official_config(
            p.official, {"renderer": {"align_corners": False}}, {"renderer": {"align_corners": True}}))
        renderer = models.renderer
        if renderer.cfg.align_corners:
            ref = _resized(reference, p.size, "KeypointRenderer")
        else:  # an official checkpoint: the release's cv2.resize to 256
            from .inference import official_reference

            _square(reference, "KeypointRenderer")
            if p.size != 256:
                raise NodeError("KeypointRenderer: an official Audio2Head checkpoint renders at size 256")
            ref = official_reference(reference)
        if p.size % renderer.multiple:
            raise NodeError(f"KeypointRenderer: size {p.size} must be a multiple of {renderer.multiple} for this checkpoint")
        if keypoints.value.shape[1] != renderer.cfg.num_kp:
            raise NodeError(f"KeypointRenderer: {keypoints.value.shape[1]} keypoints given, the checkpoint uses {renderer.cfg.num_kp}")
        if source_keypoints is None:
            source_keypoints = detect_keypoints(models.detector, ref[None], ctx.device)
        else:
            _check_keypoints(source_keypoints, "source_keypoints")
        if p.motion == "relative":
            if np.abs(np.linalg.det(keypoints.jacobian[0])).min() < 1e-6:
                raise NodeError("KeypointRenderer: relative motion needs invertible Jacobians in the first driving frame")
            keypoints = relative_keypoints(keypoints, source_keypoints)
        if p.head_only:
            from .mouth import head_only

            keypoints = head_only(source_keypoints, keypoints)
        lips = _mouth_inputs(renderer.cfg.mouth_kp, mouth, source_mouth, source_keypoints, keypoints)
        for frames, occlusion in render_chunks(renderer, ref, source_keypoints, keypoints, ctx.device, p.chunk,
                                               p.jacobians, progress=lambda i, n: ctx.progress(i, n, "frames"), mouth=lips):
            yield {"frames": frames, "occlusion": occlusion.astype(np.float32)}


def _mouth_inputs(wanted: int, mouth: Keypoints | None, source_mouth: Keypoints | None, source: Keypoints,
                  driving: Keypoints) -> tuple[np.ndarray, np.ndarray] | None:
    """(reference mouth (M, 2), per-frame mouth carried with the head (T, M, 2)), or None."""
    from .mouth import carry_with_head

    if not wanted:
        if mouth is not None or source_mouth is not None:
            raise NodeError("KeypointRenderer: mouth keypoints are connected but the checkpoint has none "
                            "(train one with TrainKeypointRenderer mouth_keypoints: true)")
        return None
    if mouth is None or source_mouth is None:
        raise NodeError(f"KeypointRenderer: the checkpoint renders {wanted} mouth keypoints: connect `mouth` and "
                        "`source_mouth` (MouthKeypoints; see workflows/audio2head.yaml)")
    for kp, what in ((mouth, "mouth"), (source_mouth, "source_mouth")):
        _check_keypoints(kp, what)
        if kp.value.shape[1] != wanted:
            raise NodeError(f"KeypointRenderer: {what} has {kp.value.shape[1]} points, the checkpoint uses {wanted}")
    n, m = len(driving.value), len(mouth.value)
    if m < n - 2:
        raise NodeError(f"KeypointRenderer: {m} frames of mouth keypoints for {n} frames of keypoints")
    track = mouth.value[np.minimum(np.arange(n), m - 1)]  # both start with the audio; a frame of rounding
    return source_mouth.value[0], carry_with_head(source.value[0], driving.value, track)


def _check_keypoints(kp: Keypoints, what: str) -> None:
    v, j = np.asarray(kp.value), np.asarray(kp.jacobian)
    if v.ndim != 3 or v.shape[-1] != 2 or j.shape != (*v.shape, 2) or len(v) == 0:
        raise NodeError(f"KeypointRenderer: {what} must be value (T, K, 2) and jacobian (T, K, 2, 2) with T >= 1; "
                        f"got {v.shape} and {j.shape}")
    if not (np.isfinite(v).all() and np.isfinite(j).all()):
        raise NodeError(f"KeypointRenderer: {what} contain NaN or infinite values")



class MouthKeypoints(Node):
    """Lip keypoints for a KeypointRenderer checkpoint with mouth keypoints (not in the paper,
    issue 11): the portrait's MediaPipe lips moved by a 3DMM mouth track (e.g. LipSyncRules'
    coefficients) at the portrait's head pose, as the synthetic training truth is made.
    KeypointRenderer carries them along with the head motion of the driving keypoints."""

    category = "audio2head"
    inputs = {
        "image": In("Image", "the portrait (its size)"),
        "landmarks": In("Landmarks", "the portrait's MediaPipe landmarks (DetectLandmarks)"),
        "reference": In("MorphCoeffs", "the portrait's fitted coefficients (Fit3DMM): its rest face and pose"),
        "coeffs": In("MorphCoeffs", "per-frame expressions, e.g. LipSyncRules (their poses are not used)"),
        "model": FaceModelInput(),
    }
    outputs = {"mouth": Out("Keypoints", "(T, 4) lip keypoints at the portrait's head pose"),
               "source_mouth": Out("Keypoints", "(1, 4) the portrait's own lip keypoints")}

    class Params(BaseModel):
        gain: float = Field(1.0, ge=0, le=3, description="scales the lips' motion from the portrait's")

    def run(self, ctx: RunContext, image: np.ndarray, landmarks: np.ndarray, reference: MorphCoeffs, coeffs: MorphCoeffs,
            model: Any = None) -> dict[str, Any]:
        from nodes.face.model_nodes import resolve_model

        from .mouth import lip_track, mouth_points

        lms = np.asarray(landmarks, np.float32)
        if lms.ndim == 2:
            lms = lms[None]
        if lms.ndim != 3 or lms.shape[1] < 478 or not np.isfinite(lms[0, :, :2]).all():
            raise NodeError(f"MouthKeypoints: landmarks must be the portrait's (1, 478, 2|3) MediaPipe points; got {lms.shape}")
        if len(coeffs.expression) == 0:
            raise NodeError("MouthKeypoints: the coefficients have no frames")
        size = tuple(image.shape[:2])
        face_model = resolve_model(ctx, "MouthKeypoints", model, self.params.model_path)
        source = mouth_points(lms[0], size)
        track = source + self.params.gain * (lip_track(face_model, lms[0], reference, coeffs.expression, size) - source)
        eye = np.broadcast_to(np.eye(2, dtype=np.float32), (*track.shape[:2], 2, 2)).copy()
        return {"mouth": Keypoints(track.astype(np.float32), eye),
                "source_mouth": Keypoints(source[None], eye[:1].copy())}


class HeadPoseToMorphCoeffs(Node):
    """Drive 3DMM coefficients (e.g. the HDTF pipeline's) with Audio2Head head poses: the pose of
    each frame is replaced through the camera mapping of nodes/audio2head/pose.py (scaled
    orthographic tx, ty, log-scale <-> camera-space tx, ty, tz). `relative` keeps the
    coefficients' first pose and adds each frame's motion from the first HeadPose (so the head
    starts where the portrait is); `absolute` uses the HeadPose as it is."""

    category = "audio2head"

    inputs = {
        "coeffs": In("MorphCoeffs", "coefficients to drive: one frame (repeated) or one per pose"),
        "pose": In("HeadPose", "camera-space head poses (HeadMotionPredictor)"),
    }
    outputs = {"coeffs": Out("MorphCoeffs", "the coefficients with the new head poses")}

    class Params(BaseModel):
        mode: Literal["relative", "absolute"] = Field("relative", description="add the motion to the first pose, or replace the poses")

    def run(self, ctx: RunContext, coeffs: MorphCoeffs, pose: np.ndarray) -> dict[str, Any]:
        from .pose import camera_pose_from_morph, morph_pose_from_camera

        t, n = len(pose), coeffs.expression.shape[0]
        if t == 0 or n == 0:
            raise NodeError("HeadPoseToMorphCoeffs: no frames in the poses or the coefficients")
        if n not in (1, t):
            raise NodeError(f"HeadPoseToMorphCoeffs: {n} coefficient frames but {t} head poses (give one frame or {t})")
        pick = (lambda a: np.repeat(a[:1], t, 0)) if n == 1 else (lambda a: a)
        size = tuple(coeffs.image_size)
        cam = np.asarray(pose, np.float64)
        if self.params.mode == "relative":
            cam = camera_pose_from_morph(coeffs.pose[:1], size).astype(np.float64) + (cam - cam[:1])
        try:
            new_pose = morph_pose_from_camera(cam, size)
        except ValueError as exc:
            raise NodeError(f"HeadPoseToMorphCoeffs: {exc}") from None
        out = MorphCoeffs(np.asarray(coeffs.shape, np.float32), pick(coeffs.expression).astype(np.float32), new_pose,
                          pick(coeffs.error).astype(np.float32), size)
        return {"coeffs": out}

# --- trainers (the shared loop of trainers/loop.py, through the HDTF nodes' training glue) ---

_DATASET = In("Path", "dataset location (MakeSyntheticDataset / PrepareDataset output, or a path)")


class _A2HTrainParams(TrainParams):
    frame_size: int = Field(256, ge=32, le=1024, description="frames are loaded at this size")
    threads: int = Field(1, ge=0, le=256, description="torch CPU threads (0: torch's default; 1 is fastest on a busy machine)")
    vgg_weights: str = InputFile("", description="VGG-19 state dict (torchvision layout) for the perceptual loss; empty: the fallback")


def _vgg(ctx: RunContext, path: str) -> str | None:
    return str(ctx.resolve_path(path)) if path else None


class TrainKeypointRenderer(Node):
    """Train the keypoint detector and the renderer together on video reconstruction (FOMM §3,
    Audio2Head §4.2): multi-scale perceptual loss + equivariance of keypoints and Jacobians
    under random TPS warps. `mouth_keypoints` (not in the paper, issue 11): the renderer also
    takes 4 lip keypoints from each frame's landmarks (nodes/audio2head/mouth.py)."""

    category = "audio2head/train"

    inputs = {"dataset": _DATASET}
    outputs = train_outputs(KEYPOINT_AUTOENCODER)

    class Params(_A2HTrainParams):
        lambda_perc: float = Field(10.0, ge=0, description="perceptual weight per pyramid scale")
        lambda_eq_value: float = Field(10.0, ge=0, description="keypoint equivariance weight")
        lambda_eq_jacobian: float = Field(10.0, ge=0, description="Jacobian equivariance weight")
        mouth_keypoints: bool = Field(False, description="add 4 supervised lip keypoints to the renderer (the dataset's landmarks)")
        lambda_mouth: float = Field(0.0, ge=0, description="with mouth_keypoints: perceptual loss of a crop around the mouth")
        grow_from: str = InputFile("", description=(
            "with mouth_keypoints: start from this keypoint checkpoint without them (its weights kept, the new inputs at zero)"))
        freeze_detector: bool = Field(False, description=(
            "train the renderer only (keep N_D: a motion field generator trained on its keypoints still fits)"))

    def run(self, ctx: RunContext, dataset: str) -> dict[str, Any]:
        from .train_keypoints import KeypointTask, KeypointTrainSettings

        p = self.params
        settings = KeypointTrainSettings(dataset=dataset_path(ctx, dataset, "TrainKeypointRenderer"), preset=p.preset,
                                         frame_size=p.frame_size, lambda_perc=p.lambda_perc, lambda_eq_value=p.lambda_eq_value,
                                         lambda_eq_jacobian=p.lambda_eq_jacobian, vgg_weights=_vgg(ctx, p.vgg_weights),
                                         mouth_keypoints=p.mouth_keypoints, lambda_mouth=p.lambda_mouth,
                                         grow_from=_vgg(ctx, p.grow_from), freeze_detector=p.freeze_detector)
        if p.grow_from and not p.mouth_keypoints:
            raise NodeError("TrainKeypointRenderer: grow_from adds mouth keypoints to a checkpoint; set mouth_keypoints: true")
        return run_training(ctx, "TrainKeypointRenderer", lambda: KeypointTask(settings), p)


class TrainHeadMotionPredictor(Node):
    """Train the head motion predictor (Audio2Head §3.2): SSIM of the 6 x T pose image (eq. 3;
    `pose_loss: l1` is the paper's ablation) + LSGAN with a 1-D temporal PatchGAN (eq. 4)."""

    category = "audio2head/train"

    inputs = {"dataset": _DATASET}
    outputs = train_outputs(HEAD_MOTION)

    class Params(_A2HTrainParams):
        window: int = Field(256, ge=4, le=4096, description="T: frames per training sequence (paper 256; clips must be longer)")
        pose_loss: Literal["ssim", "l1"] = Field("ssim", description="eq. 3 SSIM, or the 'with L1' ablation")
        ssim_window: int = Field(32, ge=2, le=4096, description="frames per SSIM statistics window")
        lambda_pose: float = Field(1.0, ge=0)
        lambda_gan: float = Field(1.0, ge=0, description="0: no discriminator")

    def run(self, ctx: RunContext, dataset: str) -> dict[str, Any]:
        from .train_head_motion import HeadMotionTask, HeadMotionTrainSettings

        p = self.params
        settings = HeadMotionTrainSettings(dataset=dataset_path(ctx, dataset, "TrainHeadMotionPredictor"), preset=p.preset,
                                           frame_size=p.frame_size, window=p.window, pose_loss=p.pose_loss,
                                           ssim_window=p.ssim_window, lambda_pose=p.lambda_pose, lambda_gan=p.lambda_gan)
        return run_training(ctx, "TrainHeadMotionPredictor", lambda: HeadMotionTask(settings), p)


class TrainMotionFieldGenerator(Node):
    """Train the motion field generator (Audio2Head §3.3) with a frozen keypoint checkpoint.
    Stage 1 (eq. 5): L1 to the detector's heatmaps, keypoints and Jacobians. Stage 2 (eq. 6-7):
    from the stage-1 checkpoint (`init`), through the frozen renderer: keypoint L1 +
    multi-scale reconstruction + equivariance."""

    category = "audio2head/train"
    inputs = {
        "dataset": _DATASET,
        "keypoints": CheckpointInput(KEYPOINT_AUTOENCODER, "the keypoint detector + renderer (TrainKeypointRenderer)",
                                     param="keypoints_checkpoint"),
        "init": In("Checkpoint", "stage 2: the stage-1 motion field checkpoint", optional=True),
    }
    outputs = train_outputs(MOTION_FIELD)

    class Params(_A2HTrainParams):
        stage: Literal[1, 2] = Field(1, description="1: detector targets (eq. 5); 2: through the renderer (eq. 7)")
        lambda_value: float = Field(0.0, ge=0, description="keypoint L1 weight; 0: the paper's (10 in stage 1, 100 in stage 2)")
        lambda_jacobian: float = Field(10.0, ge=0, description="stage 1: Jacobian L1")
        lambda_heatmap: float = Field(1.0, ge=0, description="stage 1: heatmap L1, decayed linearly to 0")
        heatmap_decay_steps: int = Field(200, ge=1, description="stage 1: steps until the heatmap term is gone")
        lambda_rec: float = Field(10.0, ge=0, description="stage 2: multi-scale reconstruction")
        lambda_eq: float = Field(10.0, ge=0, description="stage 2: equivariance of keypoints and of Jacobians (each)")
        render_frames: int = Field(2, ge=1, le=64, description="stage 2: frames rendered per window")

    def run(self, ctx: RunContext, dataset: str, keypoints: CheckpointBlob | None = None,
            init: CheckpointBlob | None = None) -> dict[str, Any]:
        from .train_motion_field import MotionFieldTask, MotionFieldTrainSettings

        p = self.params
        if p.stage == 2 and init is None:
            raise NodeError("TrainMotionFieldGenerator: stage 2 starts from the stage-1 checkpoint; connect `init` "
                            "(the checkpoint output of a stage-1 TrainMotionFieldGenerator)")
        settings = MotionFieldTrainSettings(
            dataset=dataset_path(ctx, dataset, "TrainMotionFieldGenerator"), preset=p.preset, frame_size=p.frame_size,
            keypoints=self.input_source(ctx, "keypoints", keypoints), init=init, stage=p.stage,
            lambda_value=p.lambda_value or (10.0 if p.stage == 1 else 100.0), lambda_jacobian=p.lambda_jacobian,
            lambda_heatmap=p.lambda_heatmap, heatmap_decay_steps=p.heatmap_decay_steps, lambda_rec=p.lambda_rec,
            lambda_eq_value=p.lambda_eq, lambda_eq_jacobian=p.lambda_eq, render_frames=p.render_frames,
            vgg_weights=_vgg(ctx, p.vgg_weights))
        return run_training(ctx, "TrainMotionFieldGenerator", lambda: MotionFieldTask(settings, log=ctx.log), p)


# --- evaluation ---


class EvaluateAudio2Head(Node):
    """Audio2Head Table 2 on held-out clips: HE (head motion error), KE (keypoint error), PSNR
    and SSIM for GT-keypoint, GT-head and the full model, plus the switch ablations (w/o
    Jacobians; the head predictor trained with L1 instead of SSIM) and a still-reference
    baseline. Writes the table as markdown and, optionally, the figures."""

    category = "audio2head/evaluate"
    inputs = {
        "dataset": _DATASET,
        "keypoints": CheckpointInput(KEYPOINT_AUTOENCODER, "overrides keypoints_checkpoint", param="keypoints_checkpoint"),
        "head_motion": CheckpointInput(HEAD_MOTION, "overrides head_motion_checkpoint", param="head_motion_checkpoint"),
        "head_motion_l1": CheckpointInput(HEAD_MOTION, "the predictor trained with pose_loss l1 (the 'with L1' row)",
                                          param="head_motion_l1_checkpoint", bundled=HEAD_MOTION_L1_BUNDLED,
                                          trainer="the TrainHeadMotionPredictor node with pose_loss: l1 (workflows/train_audio2head.yaml)"),
        "motion_field": CheckpointInput(MOTION_FIELD, "overrides motion_field_checkpoint", param="motion_field_checkpoint"),
    }
    outputs = {"metrics": Out("Metrics", "'row.column' -> value"), "report": Out("String", "the table (markdown)"),
               "figure": Out("Image", "frames of the first clip: real, GT-keypoint, GT-head, full, w/o Jacobians")}

    class Params(BaseModel):
        splits: list[Literal["train", "val", "test"]] = Field(default_factory=lambda: ["test"], description="held-out splits")
        max_clips: int = Field(0, ge=0, description="at most this many clips (0: all)")
        max_frames: int = Field(50, ge=2, le=100_000, description="frames per clip")
        path: str = OutputFile("audio2head_eval.md", description="where to write the markdown table", extensions=(".md",))
        figures_dir: str = OutputPath("", folder=True, description="also write frames.png and head_pose.png here (empty: no files)")

    def run(self, ctx: RunContext, dataset: str, keypoints: CheckpointBlob | None = None, head_motion: CheckpointBlob | None = None,
            head_motion_l1: CheckpointBlob | None = None, motion_field: CheckpointBlob | None = None) -> dict[str, Any]:
        import re

        from nodes.figures import save_png

        from .evaluate import evaluate, frames_figure, pose_figure, report

        p, dev = self.params, ctx.device
        data = dataset_path(ctx, dataset, "EvaluateAudio2Head")
        kp, kp_exp = load_checkpoint(self, ctx, "keypoints", keypoints)
        if kp.renderer.cfg.mouth_kp:
            raise NodeError("EvaluateAudio2Head: Table 2 renders the paper's keypoints only; give a keypoint checkpoint "
                            "without mouth keypoints (e.g. keypoints_tiny.pt, which keypoints_mouth_tiny.pt was grown from)")
        hm, hm_exp = load_checkpoint(self, ctx, "head_motion", head_motion)
        mf, mf_exp = load_checkpoint(self, ctx, "motion_field", motion_field)
        hm_l1, _ = load_checkpoint(self, ctx, "head_motion_l1", head_motion_l1)
        models = {"detector": kp.detector, "renderer": kp.renderer, "head_motion": hm, "motion_field": mf, "head_motion_l1": hm_l1}
        try:
            size = int(kp_exp.get("data", {}).get("settings", {}).get("frame_size", 256))
            table, kept = evaluate(models, data, tuple(p.splits), p.max_clips, p.max_frames, dev,
                                   progress=lambda i, n: ctx.progress(i, n, "clips"), frame_size=size)
        except ValueError as exc:
            raise NodeError(f"EvaluateAudio2Head: {exc}") from None
        about = (f"Held-out split(s) {', '.join(p.splits)} of `{_short(data)}`, up to {p.max_frames} frames per clip at "
                 f"{size}px, the "
                 f"first frame as reference. Models: keypoints {kp_exp['step']} steps, head motion {hm_exp['step']} steps, "
                 f"motion field {mf_exp['step']} steps (stage {mf_exp.get('data', {}).get('settings', {}).get('stage')}).")
        text = report(table, about)
        out = ctx.resolve_path(p.path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        ctx.log(text)
        figure = frames_figure(kept[0])
        if p.figures_dir:
            folder = ctx.resolve_path(p.figures_dir)
            save_png(folder / "frames.png", figure)
            save_png(folder / "head_pose.png", pose_figure(kept[0]))
        slug = lambda s: re.sub(r"[^a-z0-9]+", "_", s.lower()).strip("_")  # noqa: E731
        metrics = {f"{slug(row)}.{col}": v for row, vals in table.items() for col, v in vals.items()}
        return {"metrics": metrics, "report": text, "figure": figure}


def _short(path: str) -> str:
    from pathlib import Path

    return Path(path).name
