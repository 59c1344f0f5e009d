"""CropAlign (HDTF's fixed per-video face crop) and PasteBack (put results back into the frames)."""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field, field_validator

from graphcore.node import In, Node, NodeError, Out, RunContext
from graphcore.stream import Chunks
from nodes.ports import image_or_frames
from nodes.types import CropTransform


class CropAlign(Node):
    """HDTF's crop (§3): one fixed square window per video around the face, resized to `size`.

    The window is `scale` × the longer side of the landmarks' box over the whole clip (their
    union, or per-side median), centred on it (or on its lower half: `centre`, MetaTalk §3), moved
    down by `offset_y` × side, in whole pixels, slid inside the frame when it fits (else the
    frame's edges are repeated). Outputs the crops, the transform (for PasteBack) and the
    landmarks in crop pixels.
    """

    category = "face"
    inputs = {
        "image": In("Image", optional=True),
        "frames": In("Frames", optional=True),
        "landmarks": In("Landmarks", "(T, N, 2|3) in frame pixels; T equal to the frames' (or 1)"),
    }
    outputs = {
        "frames": Out("Frames", "(T, size, size, 3)"),
        "transform": Out("CropTransform"),
        "landmarks": Out("Landmarks", "landmarks in crop pixels"),
    }
    exactly_one_of = (("image", "frames"),)

    class Params(BaseModel):
        size: int = Field(512, ge=32, le=2048, description="output side in pixels (HDTF: 512; 256 for lighter models)")
        scale: float = Field(2.2, ge=1.0, le=6.0, description="window side / longer side of the landmarks' box")
        offset_y: float = Field(0.1, ge=-0.5, le=0.5, description="move the window down by this fraction of its side")
        box: Literal["union", "median"] = Field("union", description="face box over the clip: union of all frames, or per-side median")
        keep_inside: bool = Field(True, description="slide the window inside the frame when it fits")
        centre: Literal["face", "lower_half"] = Field("face", description=(
            "centre the window on the face box, or on its lower half (MetaTalk §3); offset_y moves it further"))
        sizes: list[int] = Field(default_factory=list, description=(
            "adapt the output side to the face's resolution (MetaTalk §2.1, e.g. [512, 768, 1024]): the smallest "
            "that does not shrink the window, else the largest; empty: `size`"))

        @field_validator("sizes")
        @classmethod
        def _sizes_in_range(cls, v: list[int]) -> list[int]:
            bad = [s for s in v if not 32 <= s <= 2048]
            if bad:
                raise ValueError(f"crop sizes must be in [32, 2048], got {bad}")
            return v

    def run(self, ctx: RunContext, landmarks: np.ndarray, image: np.ndarray | None = None,
            frames: np.ndarray | None = None) -> dict[str, Any]:
        from nodes.face.crop import adapted_size, crop_frames, crop_window, to_crop

        p = self.params
        src = image_or_frames("CropAlign", image, frames)
        if len(landmarks) not in (1, len(src)):
            raise NodeError(f"CropAlign: {len(landmarks)} landmark frames for {len(src)} frames (give one, or one per frame)")
        try:
            tf = crop_window(landmarks, src.shape[1:3], size=p.size, scale=p.scale, offset_y=p.offset_y,
                             box=p.box, keep_inside=p.keep_inside, centre=p.centre)
            if p.sizes:
                tf = dataclasses.replace(tf, size=adapted_size(tf.side, p.sizes))
            crops = crop_frames(src, tf)
        except ValueError as e:
            raise NodeError(f"CropAlign: {e}") from None
        ctx.log(f"crop window x0={tf.x0:g} y0={tf.y0:g} side={tf.side:g} of {src.shape[2]}x{src.shape[1]} -> {tf.size}x{tf.size}")
        return {"frames": crops, "transform": tf, "landmarks": to_crop(landmarks, tf)}


class PasteBack(Node):
    """Put crops (e.g. generated faces) back into the full frames through a CropTransform.

    An optional mask (in crop pixels) picks which crop pixels replace the frame; `feather`
    fades the crop's border so the seam does not show. One original frame may serve all crops.
    """

    category = "face"
    inputs = {
        "crops": In("Frames", "(T, size, size, 3) in the crop's space", stream=True),
        "transform": In("CropTransform"),
        "image": In("Image", "one full frame for every crop", optional=True),
        "frames": In("Frames", "the full frames, one per crop", optional=True, stream=True),
        "mask": In("Mask", "(T or 1, size, size) weight of the crop pixels", optional=True, stream=True),
    }
    outputs = {"frames": Out("Frames", stream=True)}
    exactly_one_of = (("image", "frames"),)

    class Params(BaseModel):
        feather: int = Field(0, ge=0, le=256, description="fade the crop's border over this many crop pixels")

    def run(self, ctx: RunContext, crops: Chunks, transform: CropTransform, image: np.ndarray | None = None,
            frames: Chunks | None = None, mask: Chunks | None = None) -> Iterator[dict[str, Any]]:
        """Streams: a stored chunk of crops (and the frames and mask rows that go with it) at a time."""
        from nodes.face.crop import paste_back

        if (image is None) == (frames is None):
            raise NodeError("PasteBack: connect exactly one of the inputs `image` and `frames`")
        t = len(crops)
        if frames is not None and len(frames) not in (1, t):
            raise NodeError(f"PasteBack: {len(frames)} original frames for {t} crops (give one, or one per crop)")
        if mask is not None and len(mask) not in (1, t):
            raise NodeError(f"PasteBack: mask {tuple(mask.shape)} does not match {t} crops")
        one_frame = np.asarray(image)[None] if image is not None else frames[0:1] if len(frames) == 1 else None  # type: ignore[union-attr]
        one_mask = mask[0:1] if mask is not None and len(mask) == 1 else None
        if t == 0:
            yield {"frames": np.empty((0, *transform.frame_size, 3), np.uint8)}
            return
        done = 0
        for block in crops.chunks():
            rows = slice(done, done + len(block))
            originals = one_frame if one_frame is not None else frames.rows(rows.start, rows.stop)  # type: ignore[union-attr]
            weights = one_mask if one_mask is not None or mask is None else mask.rows(rows.start, rows.stop)
            try:
                out = paste_back(block, transform, originals, weights, self.params.feather)
            except ValueError as e:
                raise NodeError(f"PasteBack: {e}") from None
            done = rows.stop
            yield {"frames": out}
            ctx.progress(done, t, "pasting back")
