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

from collections.abc import Callable
from typing import Literal

import numpy as np

Mode = Literal["bilinear", "bicubic", "nearest"]
Padding = Literal["border", "zeros", "reflection"]


def base_grid(height: int, width: int, dtype=None, device=None):
    """(H, W, 2) normalised coordinates of the pixel centres (x, y) for align_corners=True."""
    import torch

    ys = torch.linspace(-1.0, 1.0, height, dtype=dtype, device=device) if height > 1 else torch.zeros(1, dtype=dtype, device=device)
    xs = torch.linspace(-1.0, 1.0, width, dtype=dtype, device=device) if width > 1 else torch.zeros(1, dtype=dtype, device=device)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], dim=-1)


def pixel_scale(height: int, width: int, dtype=None, device=None):
    """Normalised units per pixel along (x, y): 2 / (size - 1)."""
    import torch

    return torch.tensor([2.0 / max(width - 1, 1), 2.0 / max(height - 1, 1)], dtype=dtype, device=device)


def flow_to_grid(flow, height: int, width: int, out=None):
    """Pixel backward flow (N, H, W, 2) torch tensor -> grid_sample grid in [-1, 1] (align_corners=True)."""
    import torch

    base = base_grid(height, width, flow.dtype, flow.device)
    return torch.addcmul(base, flow, pixel_scale(height, width, flow.dtype, flow.device), out=out)


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
    Each chunk costs one pass per step (uint8 -> float NCHW, grid, grid_sample, back into the
    preallocated output), with the buffers reused from chunk to chunk.
    """
    import torch
    import torch.nn.functional as nnf

    frames = np.asarray(frames)
    flow = np.asarray(flow, dtype=np.float32)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or flow.ndim != 4 or flow.shape[-1] != 2:
        raise ValueError(f"expected frames (T, H, W, C) and flow (T, H, W, 2), got {frames.shape} and {flow.shape}")
    t, h, w = flow.shape[:3]
    if frames.shape[1:3] != (h, w):
        raise ValueError(f"frames are {frames.shape[2]}x{frames.shape[1]} but the flow is {w}x{h}")
    if frames.shape[0] not in (1, t):
        raise ValueError(f"{frames.shape[0]} frames but {t} flow fields (give one image, or one frame per flow)")
    is_uint8 = frames.dtype == np.uint8
    work = torch.float32 if frames.dtype != np.float64 else torch.float64
    out = np.empty((t, *frames.shape[1:]), dtype=frames.dtype)
    dev = torch.device(device)
    chunk = max(1, chunk)
    with torch.no_grad():
        base = base_grid(h, w, work, dev)
        scale = pixel_scale(h, w, work, dev)
        src = torch.empty((min(chunk, t), frames.shape[3], h, w), dtype=work, device=dev)
        grid = torch.empty((min(chunk, t), h, w, 2), dtype=work, device=dev)
        if frames.shape[0] == 1:
            src.copy_(torch.from_numpy(np.ascontiguousarray(frames[0])).to(dev).permute(2, 0, 1).expand_as(src))
        for i0 in range(0, t, chunk):
            n = min(t, i0 + chunk) - i0
            if frames.shape[0] > 1:
                src[:n].copy_(torch.from_numpy(frames[i0:i0 + n]).to(dev).permute(0, 3, 1, 2))
            torch.addcmul(base, torch.from_numpy(flow[i0:i0 + n]).to(dev, work), scale, out=grid[:n])
            res = nnf.grid_sample(src[:n], grid[:n], mode=mode, padding_mode=padding, align_corners=True)
            if is_uint8:
                res = res.add_(0.5).clamp_(0, 255)  # the uint8 cast below truncates: round half up
            dst = torch.from_numpy(out[i0:i0 + n])
            if dev.type == "cpu":
                dst.copy_(res.permute(0, 2, 3, 1))
            else:
                dst.copy_(res.permute(0, 2, 3, 1).to(torch.uint8 if is_uint8 else res.dtype).cpu())
            if progress is not None:
                progress(i0 + n, t)
    return out
