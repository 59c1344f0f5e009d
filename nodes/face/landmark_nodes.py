"""DetectLandmarks (MediaPipe face mesh, 478 points in pixels) and DrawLandmarks (overlays)."""
from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from graphcore.node import In, Node, NodeError, Out, RunContext


class DetectLandmarks(Node):
    """MediaPipe face mesh (refined: 468 mesh + 10 iris points) per frame, in pixels: (T, 478, 3).

    x, y are pixel coordinates (origin at the top-left pixel's centre); z is depth scaled like x
    (smaller = nearer the camera). Frames are processed as a video (the face region is tracked
    from frame to frame) unless `tracking` is off; an `image` input gives T = 1.
    When a frame has no face, `on_missing` decides: `error` names the frame; `interpolate` fills
    it linearly between the nearest frames with a face (frames before the first / after the last
    detection copy it) and logs which frames were filled. Optional temporal smoothing runs after.
    """

    category = "face"
    inputs = {
        "image": In("Image", optional=True),
        "frames": In("Frames", "read a chunk at a time", optional=True, stream=True),
    }
    outputs = {"landmarks": Out("Landmarks", "(T, 478, 3) float32 pixels")}
    exactly_one_of = (("image", "frames"),)

    class Params(BaseModel):
        on_missing: Literal["error", "interpolate"] = Field("error", description="what to do with frames without a face")
        tracking: bool = Field(True, description="video mode: track the face between frames (faster, steadier)")
        min_confidence: float = Field(0.5, ge=0.05, le=0.95, description="face detection / tracking confidence")
        smoothing: Literal["none", "savgol", "one_euro"] = Field("none", description="temporal smoothing of the points")
        window: int = Field(5, ge=3, le=51, description="savgol: window length in frames (odd)")
        min_cutoff: float = Field(1.0, gt=0, le=30, description="one_euro: cutoff in Hz at rest (lower: smoother)")
        beta: float = Field(0.1, ge=0, le=10, description="one_euro: cutoff increase in Hz per pixel/s of speed (higher: less lag)")
        fps: float = Field(25.0, gt=0, le=240, description="one_euro: frame rate of the frames")

    def run(self, ctx: RunContext, image: np.ndarray | None = None, frames: Any = None) -> dict[str, Any]:
        from nodes.face.landmarks import detect_landmarks, interpolate_missing, smooth_one_euro, smooth_savgol

        p = self.params
        if (image is None) == (frames is None):
            raise NodeError("DetectLandmarks: connect exactly one of the inputs `image` and `frames`")
        src = np.asarray(image)[None] if image is not None else frames  # (frames: a lazy view, read chunk by chunk)
        if len(src) == 0:
            raise NodeError("DetectLandmarks: no frames to process")
        lms, found = detect_landmarks(src, tracking=p.tracking and image is None, min_confidence=p.min_confidence,
                                      progress=lambda i, n: ctx.progress(i, n, "face mesh"))
        missing = np.flatnonzero(~found)
        if missing.size:
            listed = ", ".join(str(i) for i in missing[:10]) + (" ..." if missing.size > 10 else "")
            if missing.size == len(found):
                raise NodeError(f"DetectLandmarks: no face found in any of the {len(found)} frame(s)")
            if p.on_missing == "error":
                raise NodeError(f"DetectLandmarks: no face found in frame {missing[0]} of {len(found)} "
                                f"(frames without a face: {listed}); set on_missing=interpolate to fill them")
            lms = interpolate_missing(lms, found)
            ctx.log(f"no face in {missing.size} of {len(found)} frames ({listed}): interpolated")
        if p.smoothing == "savgol":
            lms = smooth_savgol(lms, p.window)
        elif p.smoothing == "one_euro":
            lms = smooth_one_euro(lms, p.fps, p.min_cutoff, p.beta)
        return {"landmarks": lms.astype(np.float32)}


class DrawLandmarks(Node):
    """Overlay landmarks on frames (dots, optionally MediaPipe's contour lines) for inspection."""

    category = "face"
    inputs = {
        "frames": In("Frames", "frames to draw on (one frame is repeated for every landmark frame)"),
        "landmarks": In("Landmarks"),
    }
    outputs = {"frames": Out("Frames")}

    class Params(BaseModel):
        radius: int = Field(1, ge=0, le=20, description="dot radius in pixels")
        color: list[int] = Field(default_factory=lambda: [0, 255, 0], min_length=3, max_length=3, description="dot RGB")
        style: Literal["points", "contours"] = Field("points", description="contours: also draw the 478-point mesh's contour lines")
        line_color: list[int] = Field(default_factory=lambda: [255, 255, 255], min_length=3, max_length=3, description="line RGB")

    def run(self, ctx: RunContext, frames: np.ndarray, landmarks: np.ndarray) -> dict[str, Any]:
        from nodes.face.landmarks import N_POINTS, draw_landmarks, mesh_contours

        p = self.params
        edges = None
        if p.style == "contours":
            if landmarks.shape[1] < N_POINTS - 10:
                raise NodeError(f"DrawLandmarks: contours need MediaPipe's mesh (468/478 points), got {landmarks.shape[1]} points")
            edges = [e for e in mesh_contours() if max(e) < landmarks.shape[1]]
        try:
            out = draw_landmarks(frames, landmarks, radius=p.radius, color=p.color, edges=edges, line_color=p.line_color)
        except ValueError as e:
            raise NodeError(f"DrawLandmarks: {e}") from None
        return {"frames": out}
