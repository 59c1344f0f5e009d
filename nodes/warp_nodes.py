"""WarpImage: backward warping of an image or frames by a flow field (nodes/warp.py)."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from graphcore.node import In, Node, NodeError, Out, RunContext
from graphcore.stream import Chunks


class WarpImage(Node):
    """Warp an image (repeated for every flow) or frames by backward flows: out(x) = in(x + flow(x)).

    Flows are in pixels with the origin at the top-left pixel's centre (grid_sample with
    align_corners=True). Connect either `image` or `frames`.
    """

    category = "geometry"
    inputs = {
        "image": In("Image", "one image, warped by every flow field", optional=True),
        "frames": In("Frames", "frames, one per flow field (or a single frame)", optional=True, stream=True),
        "flow": In("FlowField", "backward flow in pixels, (T, H, W, 2)", stream=True),
    }
    outputs = {"frames": Out("Frames", stream=True)}
    exactly_one_of = (("image", "frames"),)

    class Params(BaseModel):
        mode: Literal["bilinear", "bicubic", "nearest"] = Field("bilinear", description="interpolation")
        padding: Literal["border", "zeros", "reflection"] = Field("border", description="what samples outside the image read")
        chunk: int = Field(8, ge=1, le=1024, description="frames processed at once (memory vs. speed)")

    def run(self, ctx: RunContext, flow: Chunks, image: np.ndarray | None = None,
            frames: Chunks | None = None) -> Iterator[dict[str, Any]]:
        """Streams: one stored chunk of flow (and of frames) in, its warped frames out."""
        from nodes.warp import warp_frames

        if (image is None) == (frames is None):
            raise NodeError("WarpImage: connect exactly one of the inputs `image` and `frames`")
        p = self.params
        t = len(flow)
        if frames is not None and len(frames) not in (1, t):
            raise NodeError(f"WarpImage: {len(frames)} frames but {t} flow fields (give one image, or one frame per flow)")
        single = np.asarray(image) if image is not None else frames[0] if frames is not None and len(frames) == 1 else None
        if t == 0:  # (no chunk to stream: an empty sequence of the source's frame shape)
            src = single if single is not None else frames.read() if frames is not None else None
            yield {"frames": np.empty((0, *np.shape(src)[-3:]), np.asarray(src).dtype)}
            return
        done = 0
        for block in flow.chunks():
            src = single if single is not None else frames.rows(done, done + len(block))  # type: ignore[union-attr]
            try:
                out = warp_frames(src, block, mode=p.mode, padding=p.padding, chunk=p.chunk, device=ctx.device)
            except ValueError as e:
                raise NodeError(f"WarpImage: {e}") from None
            done += len(block)
            yield {"frames": out}
            ctx.progress(done, t, "warping")
