"""IP_LAP's training losses: landmarks (§3.1.2, eq. 10-12) and rendering (§3.2.3, eq. 17-20).

Landmarks: L1 on the jaw and lip points (eq. 10, a mean over points as the official code) plus
the continuity term (eq. 11): the L2 norm over all 57 points' coordinates of the difference
between predicted and true frame-to-frame motion, averaged over the T-1 steps; lambda_c = 1.
Not in the paper (an option of the trainer, off by default): `mouth_opening_l1`, the error of the
vertical lip and chin distances that the speech drives; eq. 10 averages them in among 114
coordinates whose static shape the pose and references already give, so a short CPU run learns a
constant mouth with eq. 10 alone.

Rendering: eq. 17-19 are VGG-19 perceptual terms at relu1_1 .. relu5_1 (weight 1 each, L1 means,
at full and half resolution, as the official PerceptualLoss with num_scales=2) and a style term
on Gram matrices (full resolution only). Without VGG-19 weights (they cannot be downloaded
here), `RenderLoss` falls back to trainers.losses.multiscale_structure_loss for L_w and L_r and
has no style term; the run log names which is used.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn


def landmark_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 10: mean absolute error of the content landmarks (B, T, 2, 57)."""
    return (pred - target).abs().mean()


# (upper, lower) MediaPipe points whose distance opens with the mouth: inner lips, outer lips, chin
OPENING_PAIRS = ((82, 87), (13, 14), (312, 317), (81, 178), (311, 402), (37, 84), (0, 17), (267, 314), (0, 152))


def mouth_opening_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error of the OPENING_PAIRS' difference vectors, content landmarks (B, T, 2, 57)."""
    from .facemesh import CONTENT_IDX

    slot = {int(m): i for i, m in enumerate(CONTENT_IDX)}
    upper = [slot[a] for a, _ in OPENING_PAIRS]
    lower = [slot[b] for _, b in OPENING_PAIRS]
    return ((pred[..., lower] - pred[..., upper]) - (target[..., lower] - target[..., upper])).abs().mean()


def landmark_continuity(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 11: mean over steps of ‖(l̂_{t+1} − l̂_t) − (l_{t+1} − l_t)‖₂ over all coordinates."""
    d = (pred[:, 1:] - pred[:, :-1]) - (target[:, 1:] - target[:, :-1])
    return d.flatten(2).norm(dim=-1).mean()


def gram(x: torch.Tensor) -> torch.Tensor:
    """Gram matrix of (B, C, H, W) features, normalised by C·H·W."""
    b, c, h, w = x.shape
    f = x.reshape(b, c, h * w)
    return f @ f.transpose(1, 2) / (c * h * w)


class VGGPerceptual(nn.Module):
    """The official perceptual loss: L1 between VGG-19 activations at 5 ReLU layers (weight 1),
    at `scales` resolutions (bilinear halving), plus `style` x the L1 of their Gram matrices at
    full resolution.

    `official_input`: the official code passes [0, 1] images to a normalisation written for
    [-1, 1] ((x + 1) / 2 before the ImageNet statistics); on reproduces that (conformance), off
    (the project's training) normalises [0, 1] images as ImageNet expects.
    """

    LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")

    def __init__(self, vgg_weights: str | os.PathLike, scales: int = 2, official_input: bool = False) -> None:
        super().__init__()
        from trainers.vgg import VGGFeatures, load_vgg_state

        self.vgg = VGGFeatures("vgg19", self.LAYERS)
        load_vgg_state([self.vgg.features], vgg_weights)
        self.vgg.eval()
        self.scales, self.official_input = scales, official_input

    def train(self, mode: bool = True) -> VGGPerceptual:
        super().train(mode)
        self.vgg.eval()  # a frozen feature extractor
        return self

    def forward(self, pred: torch.Tensor, target: torch.Tensor, style: float = 0.0) -> torch.Tensor:
        if self.official_input:
            pred, target = (pred + 1) / 2, (target + 1) / 2
        # the official code resizes the ImageNet-normalised images; normalise first, then resize
        mean, std = self.vgg.mean, self.vgg.std
        p, t = (pred - mean) / std, (target - mean) / std
        total = pred.new_zeros(())
        for s in range(self.scales):
            if s:
                p = F.interpolate(p, scale_factor=0.5, mode="bilinear", align_corners=False, recompute_scale_factor=True)
                t = F.interpolate(t, scale_factor=0.5, mode="bilinear", align_corners=False, recompute_scale_factor=True)
            fp, ft = self.vgg.activations(p), self.vgg.activations(t)
            for a, b in zip(fp, ft):
                b = b.detach()
                total = total + F.l1_loss(a, b)
                if style and s == 0:
                    total = total + style * F.l1_loss(gram(a), gram(b))
        return total


class RenderLoss(nn.Module):
    """L_w (eq. 17) and L_r + L_s (eq. 18-19) with VGG-19 when given, else the weight-free fallback."""

    def __init__(self, vgg_weights: str | os.PathLike | None = None, style: float = 250.0) -> None:
        super().__init__()
        self.style = style
        if vgg_weights:
            self.perceptual = VGGPerceptual(vgg_weights)
            self.kind = f"vgg19 ({os.fspath(vgg_weights)}), 2 scales, style x {style:g}"
        else:
            self.perceptual = None
            self.kind = "fallback: multi-scale L1 + gradient + SSIM, no style term (no VGG-19 weights given)"

    def forward(self, pred: torch.Tensor, target: torch.Tensor, with_style: bool) -> torch.Tensor:
        if self.perceptual is not None:
            return self.perceptual(pred, target, self.style if with_style else 0.0)
        from trainers.losses import multiscale_structure_loss

        return multiscale_structure_loss(pred, target)
