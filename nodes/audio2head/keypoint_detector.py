"""The keypoint detector N_D (Audio2Head §3.1, adopted from FOMM §3.1, Siarohin et al. 2019).

An hourglass over the band-limited, downscaled image predicts one heatmap per keypoint
(spatial softmax with temperature 0.1); a keypoint is the heatmap's expected position (soft-
argmax) and its 2x2 Jacobian the heatmap-weighted average of a 4-channel Jacobian map
(initialised to the identity). Both heads are 7x7 convolutions without padding, as in FOMM.

Departure: BatchNorm instead of synchronised BatchNorm (one device here).
"""
from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from nodes.antialias import AntiAliasDownsample

from .blocks import Hourglass, heatmap_to_keypoints, spatial_softmax, weighted_jacobians


class KeypointDetectorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    num_kp: int = Field(10, ge=1, le=64)
    in_channels: int = 3
    block_expansion: int = Field(32, ge=1)
    max_features: int = Field(1024, ge=1)
    num_blocks: int = Field(5, ge=1, le=8)
    temperature: float = Field(0.1, gt=0)
    scale_factor: float = Field(0.25, gt=0, le=1, description="the image is downscaled by this before the hourglass")
    jacobians: bool = True
    head_kernel: int = Field(7, ge=1, description="kernel of the heatmap and Jacobian heads (no padding)")


class KeypointDetectorNet(nn.Module):
    """image (B, 3, H, W) in [0, 1] -> {"value": (B, K, 2) in [-1, 1], "jacobian": (B, K, 2, 2),
    "heatmap": (B, K, h, w)}."""

    def __init__(self, cfg: KeypointDetectorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.down = AntiAliasDownsample(cfg.in_channels, cfg.scale_factor)
        self.hourglass = Hourglass(cfg.in_channels, cfg.block_expansion, cfg.num_blocks, cfg.max_features, dim=2)
        c = self.hourglass.out_channels
        self.kp_head = nn.Conv2d(c, cfg.num_kp, cfg.head_kernel)
        self.jacobian_head = None
        if cfg.jacobians:
            self.jacobian_head = nn.Conv2d(c, 4 * cfg.num_kp, cfg.head_kernel)
            nn.init.zeros_(self.jacobian_head.weight)  # start from identity Jacobians (FOMM)
            with torch.no_grad():
                self.jacobian_head.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 1.0]).repeat(cfg.num_kp))

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.hourglass(self.down(image))
        heatmap = spatial_softmax(self.kp_head(feats), self.cfg.temperature)
        out = {"value": heatmap_to_keypoints(heatmap), "heatmap": heatmap}
        if self.jacobian_head is not None:
            b, k, h, w = heatmap.shape
            out["jacobian"] = weighted_jacobians(heatmap, self.jacobian_head(feats).view(b, k, 4, h, w))
        else:
            out["jacobian"] = torch.eye(2, device=image.device, dtype=heatmap.dtype).expand(image.shape[0], self.cfg.num_kp, 2, 2)
        return out
