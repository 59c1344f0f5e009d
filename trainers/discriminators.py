"""Discriminators shared by the GAN trainers.

Every discriminator returns a list with one entry per scale; each entry is the list of that
scale's intermediate feature maps with the (patch) prediction map last — the shape
`lsgan_*_loss` and `feature_matching_loss` in trainers/losses.py expect.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TemporalPatchDiscriminator(nn.Module):
    """1-D PatchGAN over time for parameter sequences, conditioned on the audio features
    (HDTF §4.1: D^{mou/ebro/hed} take {f_audio, p}). Each output score judges a window of
    frames, so the discriminator checks local dynamics rather than a whole clip.

    forward(params (B, T, P), condition (B, T, C)) -> [[feat_1, ..., score (B, 1, T')]]
    """

    def __init__(self, param_dim: int, cond_dim: int, channels: int = 64, n_layers: int = 3, kernel: int = 5) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in, c = param_dim + cond_dim, channels
        for i in range(n_layers):
            stride = 2 if i < n_layers - 1 else 1
            norm = nn.InstanceNorm1d(c, affine=True) if i else nn.Identity()
            layers.append(nn.Sequential(nn.Conv1d(c_in, c, kernel, stride, kernel // 2), norm, nn.LeakyReLU(0.2)))
            c_in, c = c, min(c * 2, 8 * channels)
        layers.append(nn.Conv1d(c_in, 1, kernel, 1, kernel // 2))
        self.layers = nn.ModuleList(layers)

    def forward(self, params: torch.Tensor, condition: torch.Tensor) -> list[list[torch.Tensor]]:
        h = torch.cat([params, condition], dim=-1).transpose(1, 2)
        feats = []
        for layer in self.layers:
            h = layer(h)
            feats.append(h)
        return [feats]


class PatchDiscriminator2d(nn.Module):
    """pix2pix 70x70-style PatchGAN: strided 4x4 convs, instance norm, LeakyReLU."""

    def __init__(self, in_channels: int = 3, channels: int = 64, n_layers: int = 3, max_channels: int = 512) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Sequential(nn.Conv2d(in_channels, channels, 4, 2, 2), nn.LeakyReLU(0.2))]
        c = channels
        for i in range(1, n_layers + 1):
            c_out = min(c * 2, max_channels)
            stride = 2 if i < n_layers else 1
            layers.append(nn.Sequential(nn.Conv2d(c, c_out, 4, stride, 2), nn.InstanceNorm2d(c_out, affine=True), nn.LeakyReLU(0.2)))
            c = c_out
        layers.append(nn.Conv2d(c, 1, 4, 1, 2))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        return feats


class MultiScalePatchDiscriminator(nn.Module):
    """pix2pixHD multi-scale discriminator (HDTF D^vid): the same PatchGAN design applied to
    the image at 1, 1/2, 1/4, ... resolution. An optional condition image is concatenated."""

    def __init__(self, in_channels: int = 3, cond_channels: int = 0, channels: int = 64, n_layers: int = 3,
                 num_scales: int = 2, max_channels: int = 512) -> None:
        super().__init__()
        self.nets = nn.ModuleList(
            PatchDiscriminator2d(in_channels + cond_channels, channels, n_layers, max_channels) for _ in range(num_scales)
        )

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> list[list[torch.Tensor]]:
        if condition is not None:
            x = torch.cat([x, condition], dim=1)
        outs = []
        for i, net in enumerate(self.nets):
            if i:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            outs.append(net(x))
        return outs
