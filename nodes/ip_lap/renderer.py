"""IP_LAP's landmark-to-video renderer (§3.2, Fig. 2 right): alignment module G_a + translation module G_r.

Images are 128 x 128 face crops in [0, 1]; sketches are the facemesh.draw_sketch drawings / 255.

Alignment (§3.2.1, eq. 13-15). For each of the N references, G_a encodes [reference image,
its sketch] to h¹ (c1 x 128²) and h² (c2 x 64²); SPADE blocks modulated by the 2k+1 = 5 target
sketches (nearest-resized to 64² for the first two) and a PixelShuffle upsampling give a motion
field F_i (2 x 128², in pixels) and a weight w_i (sigmoid). The reference image and both
features are warped by F_i and averaged with the weights (eq. 14-15; the weight map is
nearest-downsampled for h², and 1e-5 is added to the denominator).

Translation (§3.2.2, eq. 16). G_r encodes [the target face with its lower half zeroed, the 5
target sketches] to c2 x 64², then: SPADE with h̄², AdaIN with the audio feature a_t (a second
Wav2Lip-style encoder of the frame's mel window), PixelShuffle to 128², SPADE with h̄¹, AdaIN
with a_t, SPADE with the warped image Ī^r, LeakyReLU, a 7x7 conv and a sigmoid.

The layout, widths and the warp (a grid for pixel centres at ±1 sampled with
align_corners=False) are the official code's; the `paper` preset is its `Renderer` without the
VGG-19 of the perceptual loss (18,963,235 of its 38,987,619 parameters; the VGG-19 is a loss,
trainers/vgg.py). Departure: none in the forward pass. The official checkpoints were trained on
BGR images: an imported checkpoint records `channels: bgr` and the node swaps channels for it.
"""
from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from .blocks import adain_block, audio_encoder, nearest, sampling_grid, spade_block, warp


class RendererConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    size: int = Field(128, ge=16, le=1024, description="face crop side in pixels (paper 128); even")
    sketches: int = Field(5, ge=1, le=15, description="2k + 1 target sketches around the frame")
    c1: int = Field(32, ge=4, description="channels of h¹ (full resolution)")
    c2: int = Field(256, ge=4, description="channels of h² (half resolution); a multiple of 4 (PixelShuffle)")
    spade_hidden: int = Field(256, ge=4, description="hidden width of the SPADE modulation convs")
    audio_widths: tuple[int, int, int, int] = (32, 64, 128, 256)
    audio_dim: int = Field(512, ge=8, description="width of the audio feature a_t")
    adain_hidden: int = Field(128, ge=4)
    weight_hidden: int = Field(32, ge=4, description="hidden width of the reference-weight head")


class AlignmentModule(nn.Module):
    """G_a: N references warped to the target sketches -> (h̄¹, h̄², Ī^r)."""

    def __init__(self, cfg: RendererConfig) -> None:
        super().__init__()
        c1, c2, s = cfg.c1, cfg.c2, 3 * cfg.sketches
        self.enc1 = nn.Sequential(nn.Conv2d(6, c1, 7, padding=3), nn.BatchNorm2d(c1), nn.ReLU())
        self.enc2 = nn.Sequential(nn.Conv2d(c1, c2, 3, 2, 1), nn.BatchNorm2d(c2), nn.ReLU())
        self.spade1 = spade_block(c2, s, cfg.spade_hidden)
        self.spade2 = spade_block(c2, s, cfg.spade_hidden)
        self.up = nn.PixelShuffle(2)
        self.spade3 = spade_block(c2 // 4, s, cfg.spade_hidden)
        self.flow = nn.Conv2d(c2 // 4, 2, 7, padding=3)
        self.weight = nn.Sequential(nn.Conv2d(c2 // 4, cfg.weight_hidden, 7, padding=3), nn.ReLU(),
                                    nn.Conv2d(cfg.weight_hidden, 1, 7, padding=3), nn.Sigmoid())

    def encode(self, ref_images: torch.Tensor, ref_sketches: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """h¹, h² of each reference, (B, N, 3, H, W) twice -> N pairs. They do not depend on the
        target, so inference computes them once per clip."""
        out = []
        for i in range(ref_images.shape[1]):
            h1 = self.enc1(torch.cat([ref_images[:, i], ref_sketches[:, i]], dim=1))
            out.append((h1, self.enc2(h1)))
        return out

    def forward(self, ref_images: torch.Tensor, ref_sketches: torch.Tensor, target_sketches: torch.Tensor,
                encoded: list[tuple[torch.Tensor, torch.Tensor]] | None = None, return_fields: bool = False):
        """ref_images, ref_sketches (B, N, 3, H, W); target_sketches (B, 2k+1, 3, H, W);
        `encoded`: this batch's `encode(ref_images, ref_sketches)`, when already computed."""
        driving = target_sketches.flatten(1, 2)            # (B, 3(2k+1), H, W)
        half = ref_images.shape[-1] // 2
        driving_half = nearest(driving, half)
        sums = [0.0, 0.0, 0.0]
        total = 0.0
        fields = []
        for i, (h1, h2) in enumerate(encoded if encoded is not None else self.encode(ref_images, ref_sketches)):
            x = self.spade2(self.spade1(h2, driving_half), driving_half)
            x = self.spade3(self.up(x), driving)
            flow, w = self.flow(x), self.weight(x)            # eq. 13 and the weight w_i
            grid = sampling_grid(flow)
            w_half = nearest(w, half)
            sums[0] = sums[0] + warp(h1, grid) * w
            sums[1] = sums[1] + warp(h2, grid) * w_half
            sums[2] = sums[2] + warp(ref_images[:, i], grid) * w
            total = total + w
            if return_fields:
                fields.append((flow, w))
        total = total + 1e-5
        h1_bar, h2_bar, image_bar = sums[0] / total, sums[1] / nearest(total, half), sums[2] / total  # eq. 14-15
        return (h1_bar, h2_bar, image_bar, fields) if return_fields else (h1_bar, h2_bar, image_bar)


class TranslationModule(nn.Module):
    """G_r: masked face + target sketches, modulated by the aligned references and the audio -> face."""

    def __init__(self, cfg: RendererConfig) -> None:
        super().__init__()
        c1, c2 = cfg.c1, cfg.c2
        self.audio_encoder = audio_encoder(cfg.audio_widths, cfg.audio_dim, "relu")
        self.enc1 = nn.Sequential(nn.Conv2d(3 + 3 * cfg.sketches, c1, 7, padding=3, bias=False), nn.BatchNorm2d(c1), nn.ReLU())
        self.enc2 = nn.Sequential(nn.Conv2d(c1, c2, 3, 2, 1, bias=False), nn.BatchNorm2d(c2), nn.ReLU())
        self.spade1 = spade_block(c2, c2, cfg.spade_hidden)
        self.adain1 = adain_block(c2, cfg.audio_dim, cfg.adain_hidden)
        self.up = nn.PixelShuffle(2)
        self.spade2 = spade_block(c2 // 4, c1, cfg.spade_hidden)
        self.adain2 = adain_block(c2 // 4, cfg.audio_dim, cfg.adain_hidden)
        self.spade3 = spade_block(c2 // 4, 3, cfg.spade_hidden)
        self.out = nn.Conv2d(c2 // 4, 3, 7, padding=3, bias=False)

    def forward(self, masked_face: torch.Tensor, target_sketches: torch.Tensor, image_bar: torch.Tensor,
                h1_bar: torch.Tensor, h2_bar: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        audio = self.audio_encoder(mel[:, None]).flatten(1)  # a_t, (B, audio_dim)
        x = self.enc2(self.enc1(torch.cat([masked_face, target_sketches.flatten(1, 2)], dim=1)))
        x = self.up(self.adain1(self.spade1(x, h2_bar), audio))
        x = self.adain2(self.spade2(x, h1_bar), audio)
        x = self.spade3(x, image_bar)
        return torch.sigmoid(self.out(nn.functional.leaky_relu(x, 0.01)))


def mask_lower_half(face: torch.Tensor) -> torch.Tensor:
    """The target face with rows H//2.. zeroed: the region the renderer completes (I^m_t)."""
    out = face.clone()
    out[..., face.shape[-2] // 2:, :] = 0
    return out


class LandmarkRendererNet(nn.Module):
    """forward(face (B, 3, H, W), target_sketches (B, 2k+1, 3, H, W), ref_images (B, N, 3, H, W),
    ref_sketches (B, N, 3, H, W), mel (B, 80, 16)) -> {"face": Î_t, "warped": Ī^r}, all in [0, 1]."""

    def __init__(self, cfg: RendererConfig) -> None:
        super().__init__()
        if cfg.c2 % 4:
            raise ValueError(f"c2 = {cfg.c2} must be a multiple of 4 (PixelShuffle by 2)")
        self.cfg = cfg
        self.alignment = AlignmentModule(cfg)
        self.translation = TranslationModule(cfg)

    def forward(self, face: torch.Tensor, target_sketches: torch.Tensor, ref_images: torch.Tensor,
                ref_sketches: torch.Tensor, mel: torch.Tensor,
                encoded: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> dict[str, torch.Tensor]:
        h1_bar, h2_bar, image_bar = self.alignment(ref_images, ref_sketches, target_sketches, encoded)
        out = self.translation(mask_lower_half(face), target_sketches, image_bar, h1_bar, h2_bar, mel)
        return {"face": out, "warped": image_bar}

