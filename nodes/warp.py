"""Backward warping with `torch.nn.functional.grid_sample`, in the conventions of nodes/types.py.

A flow field holds, for every output pixel x, the offset (dx, dy) in pixels to where it reads
the input: out(x) = in(x + flow(x)). Pixel coordinates have their origin at the centre of the
top-left pixel (x right, y down), so pixel centres sit at integers 0 .. W-1. With
`align_corners=True`, grid_sample's normalised -1 and +1 are exactly the centres of the first
and last pixels, hence a pixel coordinate p maps to g = 2p / (size - 1) - 1 with no half-pixel
term; an integer flow therefore moves pixels by whole pixels and a zero flow is the identity.
Samples outside the image follow `padding` ("border" repeats the edge, "zeros" gives black,
"reflection" mirrors).

Frames are processed in chunks (converted to float on the device one chunk at a time and
written back into a preallocated output), so working memory does not grow with the clip.
"""
from __future__ import annotations

from typing import Callable, Literal

import numpy as np

Mode = Literal["bilinear", "bicubic", "nearest"]
Padding = Literal["border", "zeros", "reflection"]


def flow_to_grid(flow, height: int, width: int):
    """Pixel backward flow (N, H, W, 2) torch tensor -> grid_sample grid in [-1, 1] (align_corners=True)."""
    import torch

    ys, xs = torch.meshgrid(torch.arange(height, dtype=flow.dtype, device=flow.device),
                            torch.arange(width, dtype=flow.dtype, device=flow.device), indexing="ij")
    gx = (xs + flow[..., 0]) * (2.0 / max(width - 1, 1)) - 1.0
    gy = (ys + flow[..., 1]) * (2.0 / max(height - 1, 1)) - 1.0
    return torch.stack([gx, gy], dim=-1)


def warp_tensor(images, flow, mode: Mode = "bilinear", padding: Padding = "border"):
    """Warp float images (N, C, H, W) by backward pixel flows (N, H, W, 2); same-size output."""
    import torch.nn.functional as nnf

    n, _, h, w = images.shape
    if flow.shape != (n, h, w, 2):
        raise ValueError(f"flow shape {tuple(flow.shape)} does not match images {tuple(images.shape)} (needs (N, H, W, 2))")
    grid = flow_to_grid(flow.to(images.dtype), h, w)
    return nnf.grid_sample(images, grid, mode=mode, padding_mode=padding, align_corners=True)


def warp_frames(
    frames: np.ndarray,
    flow: np.ndarray,
    *,
    mode: Mode = "bilinear",
    padding: Padding = "border",
    chunk: int = 8,
    device: str = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Warp frames (T, H, W, C) — or one image (H, W, C) / one frame, repeated — by flows (T, H, W, 2).

    Returns (T, H, W, C) with the input's dtype (uint8 results are rounded and clipped).
    """
    import torch

    frames = np.asarray(frames)
    flow = np.asarray(flow, dtype=np.float32)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or flow.ndim != 4 or flow.shape[-1] != 2:
        raise ValueError(f"expected frames (T, H, W, C) and flow (T, H, W, 2), got {frames.shape} and {flow.shape}")
    t = flow.shape[0]
    if frames.shape[1:3] != flow.shape[1:3]:
        raise ValueError(f"frames are {frames.shape[2]}x{frames.shape[1]} but the flow is {flow.shape[2]}x{flow.shape[1]}")
    if frames.shape[0] not in (1, t):
        raise ValueError(f"{frames.shape[0]} frames but {t} flow fields (give one image, or one frame per flow)")
    is_uint8 = frames.dtype == np.uint8
    out = np.empty((t, *frames.shape[1:]), dtype=frames.dtype)
    dev = torch.device(device)
    with torch.no_grad():
        single = None
        if frames.shape[0] == 1:
            single = torch.from_numpy(np.ascontiguousarray(frames[0])).to(dev).permute(2, 0, 1)[None].float()
        for i0 in range(0, t, max(1, chunk)):
            i1 = min(t, i0 + max(1, chunk))
            if single is not None:
                src = single.expand(i1 - i0, -1, -1, -1)
            else:
                src = torch.from_numpy(np.ascontiguousarray(frames[i0:i1])).to(dev).permute(0, 3, 1, 2).float()
            res = warp_tensor(src, torch.from_numpy(flow[i0:i1]).to(dev), mode, padding).permute(0, 2, 3, 1)
            if is_uint8:
                res = res.round_().clamp_(0, 255).to(torch.uint8)
            out[i0:i1] = res.cpu().numpy().astype(out.dtype, copy=False)
            if progress is not None:
                progress(i1, t)
    return out
