"""WarpImage: backward warping of an image or frames by a flow field (nodes/warp.py)."""
from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from graphcore.node import In, Node, NodeError, Out, RunContext
from nodes.ports import image_or_frames


class WarpImage(Node):
    """Warp an image (repeated for every flow) or frames by backward flows: out(x) = in(x + flow(x)).

    Flows are in pixels with the origin at the top-left pixel's centre (grid_sample with
    align_corners=True). Connect either `image` or `frames`.
    """

    category = "geometry"
    inputs = {
        "image": In("Image", "one image, warped by every flow field", optional=True),
        "frames": In("Frames", "frames, one per flow field (or a single frame)", optional=True),
        "flow": In("FlowField", "backward flow in pixels, (T, H, W, 2)"),
    }
    outputs = {"frames": Out("Frames")}
    exactly_one_of = (("image", "frames"),)

    class Params(BaseModel):
        mode: Literal["bilinear", "bicubic", "nearest"] = Field("bilinear", description="interpolation")
        padding: Literal["border", "zeros", "reflection"] = Field("border", description="what samples outside the image read")
        chunk: int = Field(8, ge=1, le=1024, description="frames processed at once (memory vs. speed)")

    def run(self, ctx: RunContext, flow: np.ndarray, image: np.ndarray | None = None,
            frames: np.ndarray | None = None) -> dict[str, Any]:
        from nodes.warp import warp_frames

        src = image_or_frames("WarpImage", image, frames)
        p = self.params
        try:
            out = warp_frames(src, flow, mode=p.mode, padding=p.padding, chunk=p.chunk, device=ctx.device,
                              progress=lambda i, n: ctx.progress(i, n, "warping"))
        except ValueError as e:
            raise NodeError(f"WarpImage: {e}") from None
        return {"frames": out}
