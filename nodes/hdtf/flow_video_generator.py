"""Flow-guided video generator G^vid (HDTF §4.2, Fig. 6, eq. 8-9, 14).

Step 1 (matting module): at 1/2**encoder_down resolution, an hourglass over
[I_ref, F_app, I_ref warped by F_app] predicts a foreground mask M_f, a matting mask M_m and a
matting feature map g; the revised flow is F = F_app * M_f (eq. 8: the background is static).
Step 2: the reference is encoded, its features are warped by F and matted with g
(eq. 9: f^ = F(f_ref) * M_m + g * (1 - M_m); with matting off, eq. 14: f^ = F(f_ref)),
refined by residual blocks and decoded to the frame.

The `paper` preset follows the official release's widths (encoder 64->256 over 2 down blocks,
hourglass 5 blocks of width 64 capped at 512, 2 residual blocks): about 20.4M parameters.
Departure: flows are the project's backward pixel flows, converted to resolution-independent
normalised displacements (the official code feeds absolute sampling grids).

`official=True` (imported official checkpoints, docs/official-weights.md) runs the released
forward on the same inputs: the image in BGR order, the flow as an absolute sampling grid
(identity + displacement), image and grid brought to feature size by a 13x13 Gaussian blur with
zero padding then nearest sampling, warps with align_corners=False and zero padding, the
revised flow M_f * F_app + (1 - M_f) * identity; outputs are turned back to RGB and displacements.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from nodes.antialias import AntiAliasDownsample
from nodes.warp import base_grid

from .blocks import ConvBlock2d, Hourglass, ResBlock2d, _width, warp


class FlowVideoConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channels: int = 3
    encoder_down: int = Field(2, ge=1, le=4, description="down blocks of the image encoder (features at 1/2**n)")
    encoder_width: int = 64
    encoder_max: int = 512
    hourglass_blocks: int = 5
    hourglass_width: int = 64
    hourglass_max: int = 512
    bottleneck_blocks: int = 2
    official: bool = Field(False, description="the released forward: BGR, absolute grids, Gaussian+nearest downsampling, align_corners=False")

    @property
    def feature_channels(self) -> int:
        return _width(self.encoder_width, self.encoder_down, self.encoder_max)


class MattingModule(nn.Module):
    """Hourglass -> (M_f, M_m, g) at feature resolution (the purple part of Fig. 6)."""

    def __init__(self, cfg: FlowVideoConfig) -> None:
        super().__init__()
        c = cfg.channels
        self.scale = 1.0 / 2**cfg.encoder_down
        self.hourglass = Hourglass(2 * c + 2, cfg.hourglass_width, cfg.hourglass_blocks, cfg.hourglass_max)
        h = self.hourglass.out_channels
        self.foreground_mask = nn.Conv2d(h, 1, 7, padding=3)
        self.matting_mask = nn.Conv2d(h, 1, 7, padding=3)
        self.matting_image = nn.Conv2d(h, cfg.feature_channels, 7, padding=3)

    def forward(self, ref_small: torch.Tensor, flow_small: torch.Tensor) -> dict[str, torch.Tensor]:
        warped = warp(ref_small, flow_small)
        h = self.hourglass(torch.cat([ref_small, flow_small, warped], dim=1))
        m_f = torch.sigmoid(self.foreground_mask(h))
        return {
            "warped_reference": warped,
            "foreground_mask": m_f,
            "flow": flow_small * m_f,  # eq. 8
            "matting_mask": torch.sigmoid(self.matting_mask(h)),
            "matting_image": self.matting_image(h),
        }


class FlowVideoGeneratorNet(nn.Module):
    """forward(reference (B,3,H,W) in [0,1], flow (B,2,H,W) normalised displacements) -> dict
    with 'image' (B,3,H,W) in [0,1] and the intermediates of Fig. 9 at feature resolution."""

    def __init__(self, cfg: FlowVideoConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c, w, cap, n = cfg.channels, cfg.encoder_width, cfg.encoder_max, cfg.encoder_down
        self.encoder = nn.Sequential(
            ConvBlock2d(c, w, kernel=7),
            *[ConvBlock2d(_width(w, i, cap), _width(w, i + 1, cap), resample="down") for i in range(n)],
        )
        self.matting = MattingModule(cfg)
        self.bottleneck = nn.Sequential(*[ResBlock2d(cfg.feature_channels) for _ in range(cfg.bottleneck_blocks)])
        self.decoder = nn.Sequential(
            *[ConvBlock2d(_width(w, i + 1, cap), _width(w, i, cap), resample="up") for i in reversed(range(n))],
            nn.Conv2d(w, c, 7, padding=3),
        )
        if cfg.official:
            self.gaussian_down = AntiAliasDownsample(1, self.matting.scale)

    @property
    def size_multiple(self) -> int:
        """Frame sizes must be multiples of this (the encoder's downsampling)."""
        return 2**self.cfg.encoder_down

    def downsample(self, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.official:  # per channel: Gaussian blur (zero padding), then nearest
            b, c, h, w = x.shape
            out = self.gaussian_down(x.reshape(b * c, 1, h, w))
            return out.view(b, c, *out.shape[-2:])
        return F.interpolate(x, scale_factor=self.matting.scale, mode="area")

    def encode_reference(self, reference: torch.Tensor) -> dict[str, torch.Tensor]:
        """What depends on the reference only: computed once per video, reused for every frame."""
        if self.cfg.official:
            reference = reference.flip(1)  # RGB -> BGR, as the release reads images with cv2
        return {"features": self.encoder(reference), "small": self.downsample(reference)}

    def forward(self, reference: torch.Tensor, flow: torch.Tensor, *, matting: bool = True,
                encoded: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        h, w = reference.shape[-2:]
        m = self.size_multiple
        if h % m or w % m:
            raise ValueError(f"frame size {h}x{w} is not a multiple of {m}")
        enc = encoded if encoded is not None else self.encode_reference(reference)
        b = flow.shape[0]
        feats, small = enc["features"], enc["small"]
        if feats.shape[0] != b:
            feats, small = feats.expand(b, *feats.shape[1:]), small.expand(b, *small.shape[1:])
        if self.cfg.official:
            return self._forward_official(feats, small, flow, matting)
        out = self.matting(small, self.downsample(flow))
        warped = warp(feats, out["flow"])
        if matting:  # eq. 9
            feats_hat = warped * out["matting_mask"] + out["matting_image"] * (1 - out["matting_mask"])
        else:  # eq. 14 (the "w/o matting" ablation)
            feats_hat = warped
        out["image"] = torch.sigmoid(self.decoder(self.bottleneck(feats_hat)))
        return out

    def _forward_official(self, feats: torch.Tensor, small: torch.Tensor, flow: torch.Tensor, matting: bool) -> dict[str, torch.Tensor]:
        """The released forward (feats, small: of the BGR reference); returns project conventions."""
        h, w = flow.shape[-2:]
        grid = base_grid(h, w, device=flow.device, dtype=flow.dtype).permute(2, 0, 1) + flow  # absolute (B, 2, H, W)
        grid_small = self.downsample(grid)
        sh, sw = grid_small.shape[-2:]
        identity = base_grid(sh, sw, device=flow.device, dtype=flow.dtype).permute(2, 0, 1)
        m = self.matting
        warped = F.grid_sample(small, grid_small.permute(0, 2, 3, 1), align_corners=False)
        hg = m.hourglass(torch.cat([small, grid_small, warped], dim=1))
        m_f = torch.sigmoid(m.foreground_mask(hg))
        revised = grid_small * m_f + (1 - m_f) * identity
        m_m = torch.sigmoid(m.matting_mask(hg))
        g = m.matting_image(hg)
        warped_feats = F.grid_sample(feats, revised.permute(0, 2, 3, 1), align_corners=False)
        feats_hat = warped_feats * m_m + (1 - m_m) * g if matting else warped_feats
        return {
            "warped_reference": warped.flip(1), "foreground_mask": m_f, "flow": revised - identity,
            "matting_mask": m_m, "matting_image": g,
            "image": torch.sigmoid(self.decoder(self.bottleneck(feats_hat))).flip(1),
        }
