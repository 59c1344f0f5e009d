"""FOMM's band-limited downsampling (Siarohin et al. 2019, `AntiAliasInterpolation2d`): a fixed
Gaussian blur, then nearest resampling. The Audio2Head networks use it, and so does the official
mode of HDTF's video generator (its release downsamples image and flow the same way).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class AntiAliasDownsample(nn.Module):
    """Gaussian blur then nearest resampling by `scale` (FOMM's band-limited downsampling),
    applied per channel. A fixed buffer, no parameters."""

    def __init__(self, channels: int, scale: float) -> None:
        super().__init__()
        self.scale = scale
        if scale == 1.0:
            return
        sigma = (1 / scale - 1) / 2
        size = 2 * round(sigma * 4) + 1
        x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
        g = torch.exp(-(x**2) / (2 * sigma**2))
        k = g[:, None] * g[None, :]
        self.register_buffer("kernel", (k / k.sum()).expand(channels, 1, size, size).clone(), persistent=False)
        self.pad = size // 2
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale == 1.0:
            return x
        out = F.conv2d(F.pad(x, (self.pad,) * 4), self.kernel.to(x.dtype), groups=self.channels)
        size = (int(x.shape[-2] * self.scale), int(x.shape[-1] * self.scale))
        return F.interpolate(out, size=size, mode="nearest")
