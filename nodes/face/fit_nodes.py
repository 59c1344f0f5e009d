"""Fit3DMM: the 3DMM fitted to landmarks (HDTF §3, eq. 2) — see nodes/face/fitting.py."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from graphcore.node import In, Node, NodeError, Out, RunContext
from nodes.face.model_nodes import FaceModelInput, resolve_model


class Fit3DMM(Node):
    """Fit the 3DMM to per-frame landmarks: one identity per video, per-frame expression and pose.

    Weighted least squares under a scaled orthographic camera (paper eq. 2), solved by
    alternating pose (Procrustes + Gauss-Newton) and coefficients (linear, Tikhonov-regularised,
    expression boxed to [0, expression_max]), vectorised over frames and chunked. The image size
    recorded in the coefficients comes from `frames` or `image` when connected, else from the
    `image_width` / `image_height` parameters. Connect `reference` to reuse its identity instead
    of estimating one (e.g. driving frames of the person in a reference photo).
    Outputs MorphCoeffs (pose = pitch, yaw, roll, tx, ty, log-scale; see docs/nodes/fit3dmm.md)
    and the per-frame mean reprojection error in pixels.
    """

    category = "face"
    inputs = {
        "landmarks": In("Landmarks", "(T, 478, 2|3) MediaPipe landmarks in pixels"),
        "frames": In("Frames", "the frames the landmarks belong to (for the image size)", optional=True),
        "image": In("Image", "the image the landmarks belong to (for the image size)", optional=True),
        "reference": In("MorphCoeffs", "take the identity (shape) from these coefficients", optional=True),
        "model": FaceModelInput(),
    }
    outputs = {
        "coeffs": Out("MorphCoeffs"),
        "error": Out("Array", "(T,) float32 mean reprojection error per frame, pixels"),
    }

    class Params(BaseModel):
        lambda_shape: float = Field(0.02, ge=0, le=100, description="Tikhonov weight on identity coefficients (mm^2 per unit^2)")
        lambda_expression: float = Field(0.005, ge=0, le=100, description="Tikhonov weight on expression coefficients (mm^2 per unit^2)")
        lip_weight: float = Field(3.0, ge=0, le=100, description="landmark weight of the lips")
        contour_weight: float = Field(2.0, ge=0, le=100, description="landmark weight of the face contour (oval)")
        eye_brow_weight: float = Field(1.5, ge=0, le=100, description="landmark weight of eyes and brows (others: 1)")
        depth_weight: float = Field(0.0, ge=0, le=10, description="> 0: also fit the landmarks' relative depth (MediaPipe z) with this weight")
        expression_max: float = Field(1.5, gt=0, le=5, description="upper bound of the expression coefficients")
        iterations: int = Field(8, ge=1, le=100, description="pose / coefficient alternations")
        identity_frames: int = Field(64, ge=1, le=10000, description="evenly spaced frames the identity is estimated on")
        chunk: int = Field(256, ge=1, le=100000, description="frames fitted at once")
        image_width: int = Field(0, ge=0, le=16384, description="image width when no frames/image are connected")
        image_height: int = Field(0, ge=0, le=16384, description="image height when no frames/image are connected")

    def run(self, ctx: RunContext, landmarks: np.ndarray, frames: np.ndarray | None = None,
            image: np.ndarray | None = None, reference: Any = None, model: Any = None) -> dict[str, Any]:
        from nodes.face.fitting import FitSettings, fit_coefficients
        from nodes.types import MorphCoeffs

        p = self.params
        lms = np.asarray(landmarks, dtype=np.float32)
        face_model = resolve_model(ctx, "Fit3DMM", model, p.model_path)
        needed = int(face_model.landmark_ids.max()) + 1
        if lms.ndim != 3 or lms.shape[1] < needed or lms.shape[2] < 2:
            raise NodeError(f"Fit3DMM: landmarks must be (T, {needed}+, 2|3) pixels (MediaPipe face mesh), got {lms.shape}")
        if len(lms) == 0:
            raise NodeError("Fit3DMM: no frames of landmarks")
        bad = np.flatnonzero(~np.isfinite(lms[:, face_model.landmark_ids, :2]).all(axis=(1, 2)))
        if bad.size:
            raise NodeError(f"Fit3DMM: landmarks of frame {bad[0]} are missing (NaN/inf; {bad.size} such frame(s)); "
                            "run DetectLandmarks with on_missing=interpolate")
        size = _image_size(frames, image, p.image_width, p.image_height)
        shape = None
        if reference is not None:
            shape = np.asarray(reference.shape, dtype=np.float64)
            if shape.shape != (face_model.shape_basis.shape[-1],):
                raise NodeError(f"Fit3DMM: reference identity has shape {shape.shape}, the model has "
                                f"{face_model.shape_basis.shape[-1]} identity components")
        settings = FitSettings(
            lambda_shape=p.lambda_shape, lambda_expression=p.lambda_expression, lip_weight=p.lip_weight,
            contour_weight=p.contour_weight, eye_brow_weight=p.eye_brow_weight, iterations=p.iterations,
            identity_frames=p.identity_frames, chunk=p.chunk, expression_max=p.expression_max,
            depth_weight=p.depth_weight)
        res = fit_coefficients(face_model, lms, settings, shape=shape,
                               progress=lambda i, n: ctx.progress(i, n, "fitting"))
        ctx.log(f"Fit3DMM: {len(lms)} frames, reprojection error mean {res.error.mean():.2f} px, max {res.error.max():.2f} px")
        coeffs = MorphCoeffs(shape=res.shape, expression=res.expression, pose=res.pose, error=res.error, image_size=size)
        return {"coeffs": coeffs, "error": res.error}


    def size_hints(self, inputs: Mapping[str, Mapping[str, Any]], resolve: Callable[[str], Path]) -> dict[str, dict[str, Any]]:
        """The image size the coefficients refer to (for the up-front resource check)."""
        p = self.params
        for port in ("frames", "image"):
            shape = inputs.get(port, {}).get("shape")
            if shape is not None:
                h, w = shape[1:3] if port == "frames" else shape[:2]
                return {"coeffs": {"image_size": (int(h), int(w))}}
        return {"coeffs": {"image_size": (p.image_height, p.image_width)}} if p.image_width and p.image_height else {}


def _image_size(frames, image, width: int, height: int) -> tuple[int, int]:
    if frames is not None:
        return int(frames.shape[1]), int(frames.shape[2])
    if image is not None:
        return int(image.shape[0]), int(image.shape[1])
    if width and height:
        return int(height), int(width)
    raise NodeError("Fit3DMM: the image size is unknown: connect `frames` or `image`, or set image_width and image_height")
