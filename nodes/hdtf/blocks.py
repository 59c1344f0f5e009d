"""Convolutional building blocks of the flow-guided video generator (FOMM-style, as the
official HDTF generator: conv + BatchNorm + ReLU, average-pool down, nearest-neighbour up)
and the flow/warp helpers in the project's flow convention."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvBlock2d(nn.Module):
    """conv -> BatchNorm -> ReLU, optionally followed by a 2x average-pool ('down') or
    preceded by a 2x nearest upsample ('up')."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, resample: str = "same") -> None:
        super().__init__()
        self.resample = resample
        self.conv = nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2)
        self.norm = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.resample == "up":
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        x = F.relu(self.norm(self.conv(x)))
        if self.resample == "down":
            x = F.avg_pool2d(x, 2)
        return x


class ResBlock2d(nn.Module):
    """Pre-activation residual block (BN-ReLU-conv twice)."""

    def __init__(self, channels: int, kernel: int = 3) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.BatchNorm2d(channels), nn.BatchNorm2d(channels)
        self.conv1 = nn.Conv2d(channels, channels, kernel, padding=kernel // 2)
        self.conv2 = nn.Conv2d(channels, channels, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.relu(self.norm1(x)))
        return x + self.conv2(F.relu(self.norm2(h)))


def _width(base: int, level: int, cap: int) -> int:
    return min(cap, base * 2**level)


class Hourglass(nn.Module):
    """U-Net hourglass (Newell et al. 2016 as used by FOMM): `blocks` down blocks, as many up
    blocks with skip concatenation; output has `width + in_channels` channels at full size.
    Inputs whose size is not a multiple of 2**blocks are padded and cropped back."""

    def __init__(self, in_channels: int, width: int, blocks: int, max_width: int) -> None:
        super().__init__()
        self.blocks = blocks
        self.down = nn.ModuleList(
            ConvBlock2d(in_channels if i == 0 else _width(width, i, max_width), _width(width, i + 1, max_width), resample="down")
            for i in range(blocks)
        )
        self.up = nn.ModuleList(
            ConvBlock2d((1 if i == blocks - 1 else 2) * _width(width, i + 1, max_width), _width(width, i, max_width), resample="up")
            for i in reversed(range(blocks))
        )
        self.out_channels = width + in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        m = 2**self.blocks
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        skips = [x]
        for block in self.down:
            skips.append(block(skips[-1]))
        out = skips.pop()
        for block in self.up:
            out = torch.cat([block(out), skips.pop()], dim=1)
        return out[..., :h, :w]


# --- flows: the project's convention is a backward flow in pixels, out(x) = in(x + flow(x)) ---


def pixel_flow_to_normalized(flow: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 2) pixel displacements -> (B, 2, H, W) displacements in grid_sample units
    (align_corners=True: pixel centres 0 and W-1 map to -1 and 1), which are independent of
    resolution, so the same field can warp features at 1/4 size."""
    h, w = flow.shape[1:3]
    scale = flow.new_tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)])
    return (flow * scale).permute(0, 3, 1, 2)


def warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward-warp x (B, C, H, W) by a normalised displacement field (B, 2, h, w), resized
    to x's size when needed: out(p) = x(p + flow(p))."""
    b, _, h, w = x.shape
    if flow.shape[-2:] != (h, w):
        flow = F.interpolate(flow, size=(h, w), mode="bilinear", align_corners=True)
    ys = torch.linspace(-1, 1, h, device=x.device, dtype=flow.dtype)
    xs = torch.linspace(-1, 1, w, device=x.device, dtype=flow.dtype)
    base = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # (h, w, 2) as (x, y)
    grid = base.unsqueeze(0) + flow.permute(0, 2, 3, 1)
    return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="border", align_corners=True)
