"""The keypoint detector N_D and the renderer N_I as one module (Audio2Head §4.2: "we first
follow the training details of FOMM to train N_D and N_I"): the shared loop optimises both,
and one checkpoint (weights `detector.*`, `renderer.*`) holds the pair the inference nodes use.
"""
from __future__ import annotations

from typing import Any

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from .generator import KeypointRendererConfig, KeypointRendererNet
from .keypoint_detector import KeypointDetectorConfig, KeypointDetectorNet
from .mouth import with_mouth


class KeypointAutoencoderConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    detector: KeypointDetectorConfig = KeypointDetectorConfig()
    renderer: KeypointRendererConfig = KeypointRendererConfig()


class KeypointAutoencoder(nn.Module):
    """forward(source, driving) -> the keypoints of both and the renderer's outputs (FOMM §3)."""

    def __init__(self, cfg: KeypointAutoencoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.detector = KeypointDetectorNet(cfg.detector)
        self.renderer = KeypointRendererNet(cfg.renderer)

    def forward(self, source: torch.Tensor, driving: torch.Tensor, mouth_source: torch.Tensor | None = None,
                mouth_driving: torch.Tensor | None = None) -> dict[str, Any]:
        """`mouth_*` (B, M, 2): the frames' mouth keypoints, for a renderer with mouth_kp = M (mouth.py)."""
        kp_s, kp_d = self.detector(source), self.detector(driving)
        r_s, r_d = kp_s, kp_d
        if self.renderer.cfg.mouth_kp:
            if mouth_source is None or mouth_driving is None:
                raise ValueError(f"this renderer takes {self.renderer.cfg.mouth_kp} mouth keypoints: give mouth_source and mouth_driving")
            r_s, r_d = with_mouth(kp_s, mouth_source), with_mouth(kp_d, mouth_driving)
        return {"kp_source": kp_s, "kp_driving": kp_d, **self.renderer(source, r_s, r_d)}
