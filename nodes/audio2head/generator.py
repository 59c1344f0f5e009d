"""The image generator N_I of Audio2Head (§3.1), adopted from FOMM (Siarohin et al. 2019):
dense motion from keypoints with local affine transforms, an occlusion map, and an
occlusion-aware encoder-decoder that renders the driving frame from the reference image.

Dense motion (FOMM §3.2, eq. 4-7): around keypoint k the backward motion is the first-order
expansion  T_k(z) = p_s^k + J_s^k (J_d^k)^-1 (z - p_d^k)  (source s = reference, driving d);
plus an identity transform for the still background. An hourglass over the K+1 reference
copies warped by each T_k and the heatmap differences G(p_d) - G(p_s) predicts soft masks M_k
(softmax over K+1) and the occlusion map O; the dense motion is sum_k M_k T_k.
Generator (FOMM §3.3): the reference's features are warped by the dense motion and multiplied
by O, then decoded (Johnson-style: 2 down blocks, 6 residual blocks, 2 up blocks).

`mouth_kp` > 0 (a departure, issue 11: nodes/audio2head/mouth.py) adds supervised lip keypoints
after the K unsupervised ones; the generator is unchanged, only the dense motion sees K + M.
`use_jacobians=False` replaces J_s J_d^-1 by the identity (pure translations): the paper's
"w/o Jacobians" ablation (§5.4, Fig. 8) as a switch.
Departures: BatchNorm instead of synchronised BatchNorm; align_corners=True warps so the
[-1, 1] keypoint convention is exact. `align_corners=False` (the official release's warps and
resizes, as torch >= 1.3 runs them) is the `official` mode of imported checkpoints
(docs/official-weights.md).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from nodes.antialias import AntiAliasDownsample

from .blocks import Hourglass, ResBlock, UpBlock, conv_bn_relu, coordinate_grid, keypoint_gaussians


class DenseMotionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    block_expansion: int = Field(64, ge=1)
    max_features: int = Field(1024, ge=1)
    num_blocks: int = Field(5, ge=1, le=8)
    scale_factor: float = Field(0.25, gt=0, le=1)
    kp_variance: float = Field(0.01, gt=0)


class KeypointRendererConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    num_kp: int = Field(10, ge=1, le=64)
    mouth_kp: int = Field(0, ge=0, le=8, description=(
        "supervised mouth keypoints after the num_kp (mouth.py; not in the paper: 0 there)"))
    channels: int = 3
    block_expansion: int = Field(64, ge=1)
    max_features: int = Field(512, ge=1)
    num_down_blocks: int = Field(2, ge=1, le=6)
    num_bottleneck_blocks: int = Field(6, ge=0, le=32)
    occlusion: bool = True
    dense_motion: DenseMotionConfig = DenseMotionConfig()
    align_corners: bool = Field(True, description="grid_sample / bilinear resize convention (False: the official release)")


def sparse_motions(kp_source: dict, kp_driving: dict, h: int, w: int, use_jacobians: bool = True) -> torch.Tensor:
    """(B, K+1, h, w, 2) backward sampling grids: the identity (background) then T_k for each keypoint."""
    grid = coordinate_grid(h, w, device=kp_source["value"].device, dtype=kp_source["value"].dtype)
    b, k = kp_source["value"].shape[:2]
    z = grid[None, None] - kp_driving["value"][:, :, None, None, :]  # (B, K, h, w, 2)
    if use_jacobians:
        affine = kp_source["jacobian"] @ torch.inverse(kp_driving["jacobian"])  # (B, K, 2, 2)
        z = torch.einsum("bkij,bkhwj->bkhwi", affine, z)
    motions = z + kp_source["value"][:, :, None, None, :]
    return torch.cat([grid.expand(b, 1, h, w, 2), motions], dim=1)


class DenseMotionNetwork(nn.Module):
    def __init__(self, cfg: DenseMotionConfig, num_kp: int, channels: int, occlusion: bool, align_corners: bool = True) -> None:
        super().__init__()
        self.cfg, self.num_kp, self.align_corners = cfg, num_kp, align_corners
        self.down = AntiAliasDownsample(channels, cfg.scale_factor)
        self.hourglass = Hourglass((num_kp + 1) * (channels + 1), cfg.block_expansion, cfg.num_blocks, cfg.max_features)
        c = self.hourglass.out_channels
        self.mask = nn.Conv2d(c, num_kp + 1, 7, padding=3)
        self.occlusion = nn.Conv2d(c, 1, 7, padding=3) if occlusion else None

    def forward(self, source: torch.Tensor, kp_source: dict, kp_driving: dict, use_jacobians: bool = True) -> dict:
        src = self.down(source)
        b, c, h, w = src.shape
        k = self.num_kp
        v = self.cfg.kp_variance
        heat = keypoint_gaussians(kp_driving["value"], h, w, v) - keypoint_gaussians(kp_source["value"], h, w, v)
        heat = torch.cat([heat.new_zeros(b, 1, h, w), heat], dim=1)  # (B, K+1, h, w)
        motions = sparse_motions(kp_source, kp_driving, h, w, use_jacobians)  # (B, K+1, h, w, 2)
        warped = F.grid_sample(src.repeat_interleave(k + 1, 0), motions.reshape(b * (k + 1), h, w, 2),
                               align_corners=self.align_corners).view(b, k + 1, c, h, w)
        feats = self.hourglass(torch.cat([heat.unsqueeze(2), warped], dim=2).view(b, -1, h, w))
        mask = F.softmax(self.mask(feats), dim=1)
        deformation = (mask.unsqueeze(-1) * motions).sum(dim=1)  # (B, h, w, 2)
        out = {"mask": mask, "deformation": deformation, "sparse_deformed": warped}
        if self.occlusion is not None:
            out["occlusion_map"] = torch.sigmoid(self.occlusion(feats))
        return out


def _resize_grid(grid: torch.Tensor, h: int, w: int, align_corners: bool = True) -> torch.Tensor:
    if grid.shape[1:3] == (h, w):
        return grid
    return F.interpolate(grid.permute(0, 3, 1, 2), size=(h, w), mode="bilinear", align_corners=align_corners).permute(0, 2, 3, 1)


class KeypointRendererNet(nn.Module):
    """Occlusion-aware generator: (reference (B, 3, H, W) in [0, 1], source keypoints, driving
    keypoints) -> {"prediction": (B, 3, H, W), "deformation", "occlusion_map", "mask", "deformed"}.
    H and W must be multiples of 2**num_down_blocks."""

    def __init__(self, cfg: KeypointRendererConfig) -> None:
        super().__init__()
        self.cfg = cfg
        be, mx = cfg.block_expansion, cfg.max_features
        width = lambda i: min(mx, be * 2**i)  # noqa: E731
        self.dense_motion = DenseMotionNetwork(cfg.dense_motion, cfg.num_kp + cfg.mouth_kp, cfg.channels, cfg.occlusion, cfg.align_corners)
        self.first = conv_bn_relu(cfg.channels, be, kernel=7)
        self.down = nn.ModuleList(
            nn.Sequential(conv_bn_relu(width(i), width(i + 1)), nn.AvgPool2d(2)) for i in range(cfg.num_down_blocks))
        n = cfg.num_down_blocks
        self.bottleneck = nn.Sequential(*[ResBlock(width(n)) for _ in range(cfg.num_bottleneck_blocks)])
        self.up = nn.ModuleList(UpBlock(width(n - i), width(n - i - 1)) for i in range(n))
        self.final = nn.Conv2d(be, cfg.channels, 7, padding=3)

    def forward(self, source: torch.Tensor, kp_source: dict, kp_driving: dict, use_jacobians: bool = True) -> dict:
        feat = self.first(source)
        for block in self.down:
            feat = block(feat)
        motion = self.dense_motion(source, kp_source, kp_driving, use_jacobians)
        h, w = feat.shape[-2:]
        ac = self.cfg.align_corners
        feat = F.grid_sample(feat, _resize_grid(motion["deformation"], h, w, ac), align_corners=ac)
        if "occlusion_map" in motion:
            occ = motion["occlusion_map"]
            feat = feat * (occ if occ.shape[-2:] == (h, w) else F.interpolate(occ, size=(h, w), mode="bilinear", align_corners=ac))
        feat = self.bottleneck(feat)
        for block in self.up:
            feat = block(feat)
        out = dict(motion)
        out["prediction"] = torch.sigmoid(self.final(feat))
        out["deformed"] = F.grid_sample(source, _resize_grid(motion["deformation"], *source.shape[-2:], ac), align_corners=ac)
        return out

    @property
    def multiple(self) -> int:
        return max(2**self.cfg.num_down_blocks, round(self.dense_motion.hourglass.multiple / self.cfg.dense_motion.scale_factor))
