"""Losses shared by every trainer.

Discriminator outputs follow one convention throughout (see trainers/discriminators.py): a
list with one entry per scale, each entry the list of that scale's intermediate feature maps
with the prediction map last.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

DOutputs = Sequence[Sequence[torch.Tensor]]


# --- adversarial (LSGAN, Mao et al. 2017; HDTF eq. 4, 6, 10) ---


def lsgan_d_loss(real: DOutputs, fake: DOutputs) -> torch.Tensor:
    """Discriminator: real -> 1, fake -> 0, averaged over scales."""
    terms = [((r[-1] - 1) ** 2).mean() + (f[-1] ** 2).mean() for r, f in zip(real, fake)]
    return torch.stack(terms).mean()


def lsgan_g_loss(fake: DOutputs) -> torch.Tensor:
    """Generator: make the discriminator say 1 on fakes."""
    return torch.stack([((f[-1] - 1) ** 2).mean() for f in fake]).mean()


def feature_matching_loss(real: DOutputs, fake: DOutputs) -> torch.Tensor:
    """HDTF eq. 12 (pix2pixHD): mean L1 between discriminator features of real and fake,
    summed over layers (the prediction map excluded) and averaged over scales."""
    per_scale = []
    for r, f in zip(real, fake):
        per_scale.append(sum(F.l1_loss(fi, ri.detach()) for ri, fi in zip(r[:-1], f[:-1])))
    return torch.stack([torch.as_tensor(t) for t in per_scale]).mean()


# --- sequences ---


def l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """HDTF eq. 3: mean absolute error (over time, dimensions and batch)."""
    return (pred - target).abs().mean()


def sequence_ssim(pred: torch.Tensor, target: torch.Tensor, c1: float = 1e-4, c2: float = 9e-4) -> torch.Tensor:
    """HDTF eq. 5: SSIM of each parameter dimension's time series, averaged over dimensions.

    pred, target: (B, T, D). Statistics are taken over the T frames of each (sequence, dim);
    returns the mean SSIM over batch and dims. c1, c2 play the role of delta_1, delta_2
    (the usual (0.01)^2, (0.03)^2 for unit-range signals).
    """
    mu_p, mu_t = pred.mean(1), target.mean(1)
    dp, dt = pred - mu_p[:, None], target - mu_t[:, None]
    var_p, var_t = (dp**2).mean(1), (dt**2).mean(1)
    cov = (dp * dt).mean(1)
    ssim = ((2 * mu_p * mu_t + c1) * (2 * cov + c2)) / ((mu_p**2 + mu_t**2 + c1) * (var_p + var_t + c2))
    return ssim.mean()


def sequence_ssim_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return 1.0 - sequence_ssim(pred, target)


# --- images (B, C, H, W) in [0, 1] ---


def _gaussian_window(size: int, sigma: float, channels: int, device, dtype) -> torch.Tensor:
    x = torch.arange(size, device=device, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    w = (g[:, None] * g[None, :]).to(dtype)
    return w.expand(channels, 1, size, size).contiguous()


def image_ssim(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5, data_range: float = 1.0,
               reduce: bool = True) -> torch.Tensor:
    """SSIM (Wang et al. 2004) with a Gaussian window, 'valid' filtering; mean over pixels
    (and over the batch when `reduce`)."""
    c = x.shape[1]
    window = min(window, x.shape[-1], x.shape[-2])
    w = _gaussian_window(window, sigma, c, x.device, x.dtype)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x, mu_y = F.conv2d(x, w, groups=c), F.conv2d(y, w, groups=c)
    sxx = F.conv2d(x * x, w, groups=c) - mu_x**2
    syy = F.conv2d(y * y, w, groups=c) - mu_y**2
    sxy = F.conv2d(x * y, w, groups=c) - mu_x * mu_y
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    s = s.flatten(1).mean(1)
    return s.mean() if reduce else s


class PerceptualLoss(nn.Module):
    """HDTF eq. 11: sum over layers of the mean L1 distance between VGG-19 activations.

    VGG-19 weights cannot be downloaded here. With `vgg_weights` (a torchvision-layout
    state-dict file) the loss is the paper's. Without it, a documented fallback is used and
    `kind` says so: at 4 scales (1, 1/2, 1/4, 1/8), L1 on intensities + L1 on image gradients
    + (1 - SSIM) — a weight-free loss that, like VGG features, rewards matching local structure
    and edges rather than only per-pixel values.
    """

    LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    LAYER_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)  # pix2pixHD's weighting of the VGG terms

    def __init__(self, vgg_weights: str | os.PathLike | None = None, scales: int = 4) -> None:
        super().__init__()
        self.scales = scales
        if vgg_weights:
            from .vgg import VGGFeatures, load_vgg_state

            self.vgg = VGGFeatures("vgg19", self.LAYERS)
            load_vgg_state([self.vgg.features], vgg_weights)
            self.vgg.eval()
            self.kind = f"vgg19 ({os.fspath(vgg_weights)})"
        else:
            self.vgg = None
            self.kind = "fallback: multi-scale L1 + gradient + SSIM (no VGG-19 weights given)"

    def train(self, mode: bool = True) -> PerceptualLoss:
        super().train(mode)
        if self.vgg is not None:
            self.vgg.eval()  # frozen feature extractor
        return self

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.vgg is not None:
            fp, ft = self.vgg(pred), self.vgg(target)
            return sum(w * F.l1_loss(a, b.detach()) for w, a, b in zip(self.LAYER_WEIGHTS, fp, ft))
        return multiscale_structure_loss(pred, target, self.scales)


def image_gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def multiscale_structure_loss(pred: torch.Tensor, target: torch.Tensor, scales: int = 4) -> torch.Tensor:
    """The weight-free perceptual fallback (see PerceptualLoss)."""
    total = pred.new_zeros(())
    for s in range(scales):
        if s:
            pred, target = F.avg_pool2d(pred, 2), F.avg_pool2d(target, 2)
        gx_p, gy_p = image_gradients(pred)
        gx_t, gy_t = image_gradients(target)
        total = total + F.l1_loss(pred, target) + F.l1_loss(gx_p, gx_t) + F.l1_loss(gy_p, gy_t)
        if min(pred.shape[-2:]) >= 7:
            total = total + (1 - image_ssim(pred, target, window=7))
    return total / scales

