"""DenseFlowBuilder: HDTF §4.2's approximate dense flow F_app from 3DMM coefficients (nodes/face/flow.py)."""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from graphcore.node import In, Node, NodeError, Out, RunContext
from nodes.face.model import scale_mouth
from nodes.face.model_nodes import FaceModelInput, resolve_model

# FlowBuilder's working memory a pixel a frame: peak RSS of a fresh process building 8 frames at
# 1024x1024 (37.5) and 2 at 2048x2048 (35.9)
BYTES_PER_PIXEL_FRAME = 37


class DenseFlowBuilder(Node):
    """F_app (HDTF §4.2): backward flow from each driving frame to the reference image.

    WarpImage(reference image, flow) gives the driving frame: out(x) = ref(x + flow(x)).
    Inner face: the driving mesh is rasterised (z-buffer) and the vertex displacements are
    interpolated barycentrically. Upper torso (rows from `neck` x face height below the chin,
    `torso_width` x face width wide): the mean inner-face flow. Head-related band (hair, ears,
    neck; within `head_margin` x face height of the face, above the torso): the flow of the
    nearest face pixel. Background: 0, left for the video generator's foreground mask.
    `regions` marks the parts: 1 inner face, 2/3 head-related, 1/3 torso, 0 background.
    The reference is frame `reference_frame` of the `reference` coefficients; the flow has the
    reference's image size.
    """

    category = "face"
    inputs = {
        "reference": In("MorphCoeffs", "coefficients of the reference (source) image"),
        "driving": In("MorphCoeffs", "per-frame driving coefficients (expression + pose)"),
        "model": FaceModelInput(),
    }
    outputs = {
        "flow": Out("FlowField", "(T, H, W, 2) backward flow in pixels", stream=True),
        "regions": Out("Mask", "(T, H, W): 1 inner face, 2/3 head-related, 1/3 torso, 0 background", stream=True),
    }

    class Params(BaseModel):
        reference_frame: int = Field(0, ge=0, description="which frame of `reference` is the source image")
        identity: Literal["reference", "driving"] = Field(
            "reference", description="whose identity shapes the driving mesh (HDTF: the reference's)")
        head_margin: float = Field(0.35, ge=0, le=3, description="head-related band width, x face height")
        neck: float = Field(0.2, ge=0, le=3, description="the torso starts this far below the chin, x face height")
        torso_width: float = Field(3.0, ge=0, le=20, description="torso band width, x face width")
        chunk: int = Field(8, ge=1, le=1024, description="frames rasterised at once")
        mouth_gain: float = Field(
            1.0, ge=0, le=3, description="scales the driving mouth's departure from the reference's mouth (1: as "
            "given, the paper); >1 makes the mouth motion bigger for a video generator that draws it smaller")

    def memory_estimate(self, inputs: Mapping[str, Mapping[str, Any]]) -> tuple[int, str] | None:
        """Rasterising `chunk` frames at the reference's size (BYTES_PER_PIXEL_FRAME) plus the
        regions of the chunk and one storage chunk of each output; nothing grows with the
        clip's length (it streams)."""
        size = inputs.get("reference", {}).get("image_size")
        if not size:
            return None
        h, w = (int(v) for v in size)
        need = self.params.chunk * h * w * (BYTES_PER_PIXEL_FRAME + 4) + max(32 << 20, 8 * h * w) + max(32 << 20, 4 * h * w)
        return need, (f"the flow is built at the reference image's size, {w}x{h}: load the portrait at the working "
                      f"resolution (LoadImage's max_side, e.g. --set portrait.max_side=512, or the size the video "
                      f"generator was trained at) or lower `chunk` (now {self.params.chunk})")

    def run(self, ctx: RunContext, reference: Any, driving: Any, model: Any = None) -> Iterator[dict[str, Any]]:
        """Streams: `chunk` frames of flow and regions per step (flat memory in clip length)."""
        from nodes.face.flow import Coefficients, FlowBuilder, FlowSettings

        p = self.params
        face_model = resolve_model(ctx, "DenseFlowBuilder", model, p.model_path)
        n_ref = len(reference.expression)
        if p.reference_frame >= n_ref:
            raise NodeError(f"DenseFlowBuilder: reference_frame {p.reference_frame} but the reference has {n_ref} frame(s)")
        n_exp, n_shape = face_model.expression_basis.shape[-1], face_model.shape_basis.shape[-1]
        for name, c in (("reference", reference), ("driving", driving)):
            if c.expression.shape[-1] != n_exp or np.shape(c.shape) != (n_shape,):
                raise NodeError(f"DenseFlowBuilder: {name} coefficients have {c.expression.shape[-1]} expression / "
                                f"{np.shape(c.shape)} identity values; the model has {n_exp} / {n_shape}")
            if not (np.isfinite(c.expression).all() and np.isfinite(c.pose).all()):
                raise NodeError(f"DenseFlowBuilder: {name} coefficients contain NaN or infinite values")
        height, width = (int(v) for v in reference.image_size)
        if tuple(int(v) for v in driving.image_size) not in ((height, width), (0, 0)):
            raise NodeError(f"DenseFlowBuilder: driving poses refer to {tuple(driving.image_size)} images but the "
                            f"reference is {(height, width)}; crop/scale both the same way")
        if len(driving.expression) == 0:
            raise NodeError("DenseFlowBuilder: the driving coefficients have no frames")
        k = p.reference_frame
        ref = Coefficients(np.asarray(reference.shape), np.asarray(reference.expression[k:k + 1]), np.asarray(reference.pose[k:k + 1]))
        drv = Coefficients(np.asarray(driving.shape), scale_mouth(driving.expression, ref.expression[0], p.mouth_gain),
                           np.asarray(driving.pose))
        settings = FlowSettings(head_margin=p.head_margin, neck=p.neck, torso_width=p.torso_width,
                                identity=p.identity, chunk=p.chunk)
        builder = FlowBuilder(face_model, settings, device=ctx.device)
        n = len(drv.expression)
        for frames, flow, codes in builder.chunks(ref, drv, height, width):
            regions = np.empty(codes.shape, np.float32)
            np.multiply(codes, np.float32(1.0 / 3.0), out=regions)  # = REGION_LEVELS[codes], as FlowBuilder.build
            yield {"flow": flow, "regions": regions}
            ctx.progress(frames.stop, n, "dense flow")
