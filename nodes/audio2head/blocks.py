"""Building blocks shared by the Audio2Head networks (FOMM, Siarohin et al. 2019, and §3 of
Audio2Head): coordinate grids and soft-argmax keypoints, Gaussian keypoint maps, the 2-D and
3-D hourglasses and the ResNet-34 encoder of §3.2.

Coordinates are normalised to [-1, 1] with (x, y) order, -1/+1 at the centres of the first/last
pixel — the convention of `grid_sample(..., align_corners=True)`, used everywhere here so that
keypoints, grids and warps agree exactly.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def coordinate_grid(h: int, w: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(h, w, 2) grid of (x, y) in [-1, 1]."""
    ys = torch.linspace(-1.0, 1.0, h, device=device, dtype=dtype) if h > 1 else torch.zeros(1, device=device, dtype=dtype)
    xs = torch.linspace(-1.0, 1.0, w, device=device, dtype=dtype) if w > 1 else torch.zeros(1, device=device, dtype=dtype)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx, yy], dim=-1)


def heatmap_to_keypoints(heatmap: torch.Tensor) -> torch.Tensor:
    """Soft-argmax: (..., h, w) probability maps -> (..., 2) expected (x, y) positions."""
    grid = coordinate_grid(*heatmap.shape[-2:], device=heatmap.device, dtype=heatmap.dtype)
    return (heatmap.unsqueeze(-1) * grid).sum(dim=(-3, -2))


def spatial_softmax(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Softmax over the last two (spatial) dimensions."""
    shape = logits.shape
    return F.softmax(logits.flatten(-2) / temperature, dim=-1).view(shape)


def weighted_jacobians(heatmap: torch.Tensor, jacobian_map: torch.Tensor) -> torch.Tensor:
    """FOMM §3.1: each keypoint's Jacobian is its jacobian map averaged under its heatmap.
    heatmap (..., K, h, w), jacobian_map (..., K, 4, h, w) -> (..., K, 2, 2)."""
    j = (heatmap.unsqueeze(-3) * jacobian_map).sum(dim=(-2, -1))
    return j.view(*j.shape[:-1], 2, 2)


def keypoint_gaussians(kp: torch.Tensor, h: int, w: int, variance: float) -> torch.Tensor:
    """(..., K, 2) keypoints -> (..., K, h, w) unnormalised Gaussians exp(-|z - p|^2 / 2var)."""
    grid = coordinate_grid(h, w, device=kp.device, dtype=kp.dtype)
    d = grid - kp[..., None, None, :]
    return torch.exp(-0.5 * (d**2).sum(-1) / variance)


# --- 2-D and 3-D convolution blocks (FOMM's modules/util, widths by the caller) ---


def _conv(dim: int):
    return nn.Conv2d if dim == 2 else nn.Conv3d


def _bn(dim: int):
    return nn.BatchNorm2d if dim == 2 else nn.BatchNorm3d


class ResBlock(nn.Module):
    """Pre-activation residual block: BN-ReLU-conv twice, same width and size."""

    def __init__(self, channels: int, dim: int = 2, kernel: int = 3) -> None:
        super().__init__()
        conv, bn = _conv(dim), _bn(dim)
        self.body = nn.Sequential(bn(channels), nn.ReLU(), conv(channels, channels, kernel, padding=kernel // 2),
                                  bn(channels), nn.ReLU(), conv(channels, channels, kernel, padding=kernel // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def conv_bn_relu(c_in: int, c_out: int, dim: int = 2, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(_conv(dim)(c_in, c_out, kernel, padding=kernel // 2), _bn(dim)(c_out), nn.ReLU())


class DownBlock(nn.Module):
    """conv-BN-ReLU then 2x average pooling. The 3-D variant (Audio2Head's Hourglass-3D) first
    refines its input with a residual block, and pools time as well as space."""

    def __init__(self, c_in: int, c_out: int, dim: int = 2) -> None:
        super().__init__()
        pre = [ResBlock(c_in, dim), _bn(dim)(c_in), nn.ReLU()] if dim == 3 else []
        self.body = nn.Sequential(*pre, conv_bn_relu(c_in, c_out, dim), (nn.AvgPool2d if dim == 2 else nn.AvgPool3d)(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class UpBlock(nn.Module):
    """2x nearest upsampling then conv-BN-ReLU (3-D: followed by a residual block)."""

    def __init__(self, c_in: int, c_out: int, dim: int = 2) -> None:
        super().__init__()
        post = [ResBlock(c_out, dim), _bn(dim)(c_out), nn.ReLU()] if dim == 3 else []
        self.body = nn.Sequential(conv_bn_relu(c_in, c_out, dim), *post)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _width(base: int, level: int, max_features: int) -> int:
    return min(max_features, base * 2**level)


class Hourglass(nn.Module):
    """U-Net style hourglass (FOMM §3; Audio2Head Fig. 4 uses the 3-D version): `num_blocks`
    down blocks, as many up blocks, skip connections by concatenation. The output has
    `block_expansion + in_channels` channels at the input resolution. The 3-D version also
    refines each skip with a residual block (as Audio2Head's Hourglass-3D)."""

    def __init__(self, in_channels: int, block_expansion: int, num_blocks: int, max_features: int, dim: int = 2) -> None:
        super().__init__()
        self.num_blocks = num_blocks
        self.down = nn.ModuleList(
            DownBlock(in_channels if i == 0 else _width(block_expansion, i, max_features),
                      _width(block_expansion, i + 1, max_features), dim)
            for i in range(num_blocks))
        ups, skips = [], []
        for i in reversed(range(num_blocks)):
            c_in = (1 if i == num_blocks - 1 else 2) * _width(block_expansion, i + 1, max_features)
            c_out = _width(block_expansion, i, max_features)
            ups.append(UpBlock(c_in, c_out, dim))
            if dim == 3:
                c_skip = c_out if i > 0 else in_channels
                skips.append(nn.Sequential(ResBlock(c_skip, dim), _bn(dim)(c_skip), nn.ReLU()))
            else:
                skips.append(nn.Identity())
        self.up, self.skip = nn.ModuleList(ups), nn.ModuleList(skips)
        self.out_channels = block_expansion + in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for block in self.down:
            feats.append(block(feats[-1]))
        out = feats.pop()
        for up, skip in zip(self.up, self.skip):
            out = torch.cat([up(out), skip(feats.pop())], dim=1)
        return out

    @property
    def multiple(self) -> int:
        """Input sizes must be multiples of this."""
        return 2**self.num_blocks


# --- ResNet-34 (He et al. 2016), the encoders E_I and E_A of Audio2Head §3.2 ---


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out))
        self.shortcut = (nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
                         if stride != 1 or c_in != c_out else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


class ResNetEncoder(nn.Module):
    """ResNet with BasicBlocks ([3, 4, 6, 3] = ResNet-34) ending in global pooling and a linear
    embedding. `width` is the first stage's width (64 in ResNet-34)."""

    def __init__(self, in_channels: int, embedding: int, width: int = 64, layers: tuple[int, ...] = (3, 4, 6, 3)) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        stages, c = [], width
        for i, n in enumerate(layers):
            c_out = width * 2**i
            blocks = [BasicBlock(c, c_out, 1 if i == 0 else 2)] + [BasicBlock(c_out, c_out, 1) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
            c = c_out
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(c, embedding)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stages(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))


def check_multiple(size: int, multiple: int, what: str) -> None:
    if size % multiple:
        raise ValueError(f"{what} is {size}, which is not a multiple of {multiple}")


def ceil_to(n: int, multiple: int) -> int:
    return int(math.ceil(n / multiple) * multiple)


def image_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float (..., 3, H, W) in [0, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(frames))
    return t.movedim(-1, -3).float() / 255.0
