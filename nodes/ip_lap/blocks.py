"""Building blocks of IP_LAP's two networks (widths and layouts as the official code).

- ConvNorm: convolution + BatchNorm (+ the input when `residual`) + activation — the unit of
  the Wav2Lip-style audio encoder and of the 1-D landmark encoders;
- the audio encoder E_a (after Wav2Lip): a 16 x 80 mel window -> a d-dim vector;
- a post-norm Transformer encoder layer (what `nn.TransformerEncoderLayer` computes by default,
  which the official code uses; attention through nodes.attention);
- SPADE (Park et al. 2019) and AdaIN (Huang & Belongie 2017) residual-free blocks as IP_LAP
  stacks them: norm-modulate -> LeakyReLU -> conv, twice;
- the motion-field warp of the alignment module.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nodes.attention import attention


class ConvNorm(nn.Module):
    """conv -> BatchNorm (-> + input) -> activation, in 1-D or 2-D."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int | tuple[int, int] = 1, padding: int = 1,
                 residual: bool = False, act: str = "relu", dim: int = 2) -> None:
        super().__init__()
        conv, norm = (nn.Conv2d, nn.BatchNorm2d) if dim == 2 else (nn.Conv1d, nn.BatchNorm1d)
        self.conv = conv(c_in, c_out, kernel, stride, padding)
        self.norm = norm(c_out)
        self.residual = residual
        self.act = nn.Tanh() if act == "tanh" else nn.ReLU() if act == "relu" else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.norm(self.conv(x))
        return self.act(out + x if self.residual else out)


def audio_encoder(widths: Sequence[int], out_dim: int, last_act: str) -> nn.Sequential:
    """E_a: (B, 1, 80, 16) mel window (bins x time) -> (B, out_dim, 1, 1).

    Wav2Lip's audio encoder: stages of a strided ConvNorm and residual ConvNorms, downsampling
    80 x 16 -> 27 x 16 -> 9 x 6 -> 3 x 3, then a 3x3 valid conv and a 1x1 conv."""
    w1, w2, w3, w4 = widths
    return nn.Sequential(
        ConvNorm(1, w1, 3), ConvNorm(w1, w1, 3, residual=True), ConvNorm(w1, w1, 3, residual=True),
        ConvNorm(w1, w2, 3, (3, 1)), ConvNorm(w2, w2, 3, residual=True), ConvNorm(w2, w2, 3, residual=True),
        ConvNorm(w2, w3, 3, 3), ConvNorm(w3, w3, 3, residual=True), ConvNorm(w3, w3, 3, residual=True),
        ConvNorm(w3, w4, 3, (3, 2)), ConvNorm(w4, w4, 3, residual=True),
        ConvNorm(w4, out_dim, 3, padding=0), ConvNorm(out_dim, out_dim, 1, padding=0, act=last_act),
    )


def sinusoidal_positions(length: int, dim: int) -> torch.Tensor:
    """(length, dim) sinusoidal positional encoding (Vaswani et al. 2017): sin on even, cos on odd dims."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * -(math.log(10000.0) / dim))
    pe = torch.zeros(length, dim)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)
    return pe


class EncoderLayer(nn.Module):
    """Multi-head self-attention and an MLP, each added back and followed by LayerNorm (post-norm)."""

    def __init__(self, dim: int, heads: int, ff_dim: int, dropout: float) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"model width {dim} is not divisible by {heads} heads")
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ff1 = nn.Linear(dim, ff_dim)
        self.ff2 = nn.Linear(ff_dim, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = attention(q, k, v, self.dropout if self.training else 0.0).transpose(1, 2).reshape(b, n, d)
        x = self.norm1(x + self.drop(self.proj(a)))
        return self.norm2(x + self.drop(self.ff2(self.drop(F.relu(self.ff1(x))))))


class SpadeNorm(nn.Module):
    """SPADE: instance-normalise x, then scale by (1 + gamma) and shift by beta, both predicted
    per pixel from the modulation map (resized to x beforehand by the caller)."""

    def __init__(self, channels: int, mod_channels: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels)
        self.shared = nn.Conv2d(mod_channels, hidden, 3, padding=1)
        self.gamma = nn.Conv2d(hidden, channels, 3, padding=1)
        self.beta = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, mod: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        m = self.shared(mod)  # no activation between the shared conv and gamma/beta (official)
        return h * (1 + self.gamma(m)) + self.beta(m)


class AdaNorm(nn.Module):
    """AdaIN: instance-normalise x, scale by (1 + gamma) and shift by beta from an MLP of a vector."""

    def __init__(self, channels: int, cond_dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels)
        self.shared = nn.Sequential(nn.Linear(cond_dim, hidden), nn.ReLU())
        self.gamma = nn.Linear(hidden, channels)
        self.beta = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.shared(cond.flatten(1))
        return self.norm(x) * (1 + self.gamma(h)[..., None, None]) + self.beta(h)[..., None, None]


class ModulatedBlock(nn.Module):
    """(modulate -> LeakyReLU(0.2) -> 3x3 conv) x 2 with SPADE or AdaIN modulation."""

    def __init__(self, channels: int, norm1: nn.Module, norm2: nn.Module) -> None:
        super().__init__()
        self.norm1, self.norm2 = norm1, norm2
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, mod: torch.Tensor) -> torch.Tensor:
        x = self.conv1(F.leaky_relu(self.norm1(x, mod), 0.2))
        return self.conv2(F.leaky_relu(self.norm2(x, mod), 0.2))


def spade_block(channels: int, mod_channels: int, hidden: int) -> ModulatedBlock:
    return ModulatedBlock(channels, SpadeNorm(channels, mod_channels, hidden), SpadeNorm(channels, mod_channels, hidden))


def adain_block(channels: int, cond_dim: int, hidden: int) -> ModulatedBlock:
    return ModulatedBlock(channels, AdaNorm(channels, cond_dim, hidden), AdaNorm(channels, cond_dim, hidden))


def nearest(x: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(x, size=(size, size), mode="nearest")


def sampling_grid(flow: torch.Tensor) -> torch.Tensor:
    """A pixel flow (B, 2, H, W) -> grid_sample's grid (B, H, W, 2): the identity grid with -1/+1
    at the centres of the first/last pixel, plus the flow scaled by 2 / (size - 1)."""
    b, _, h, w = flow.shape
    ys = torch.linspace(-1.0, 1.0, h, device=flow.device, dtype=flow.dtype)
    xs = torch.linspace(-1.0, 1.0, w, device=flow.device, dtype=flow.dtype)
    base = torch.stack([xs[None, :].expand(h, w), ys[:, None].expand(h, w)], dim=-1)
    scale = flow.new_tensor([2.0 / (w - 1), 2.0 / (h - 1)])
    return base + flow.permute(0, 2, 3, 1) * scale


def warp(x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Sample x at the grid, resized to x's size first (bilinear). As the official code: the grid
    is built for pixel centres at ±1 but sampled with align_corners=False, zero padding."""
    if grid.shape[1:3] != x.shape[2:]:
        grid = F.interpolate(grid.permute(0, 3, 1, 2), size=x.shape[2:], mode="bilinear", align_corners=False).permute(0, 2, 3, 1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
