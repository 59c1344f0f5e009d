"""The original (non-saturating) GAN loss of Goodfellow et al. 2014, in the discriminator-output
convention of trainers/losses.py (a list per scale of feature maps, prediction map last, here
read as logits). Pix2pix and Yi et al. (eq. 4) train with it; the LSGAN pair lives in losses.py.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .losses import DOutputs


def bce_d_loss(real: DOutputs, fake: DOutputs) -> torch.Tensor:
    """Discriminator: -log D(real) - log(1 - D(fake)), averaged over scales (halved, as pix2pix)."""
    terms = [F.binary_cross_entropy_with_logits(r[-1], torch.ones_like(r[-1]))
             + F.binary_cross_entropy_with_logits(f[-1], torch.zeros_like(f[-1])) for r, f in zip(real, fake)]
    return 0.5 * torch.stack(terms).mean()


def bce_g_loss(fake: DOutputs) -> torch.Tensor:
    """Generator (non-saturating form): -log D(fake)."""
    return torch.stack([F.binary_cross_entropy_with_logits(f[-1], torch.ones_like(f[-1])) for f in fake]).mean()
