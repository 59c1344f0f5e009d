"""MetaTalk's audio-to-expression network (§2.3, Table 1, eq. 1).

MFCC blocks (28 rows of 10 ms × 80 coefficients per video frame, §3; AudioFeatures variant
`mfcc80_window`) -> an audio encoder giving the 256-D feature f per frame (the paper uses
AT-net's, Chen et al. 2019) -> the A2E network H of Table 1 over a window of consecutive
frames' features: five Conv1D (kernel 3, stride 1, no padding) with 5, 5, 3, 3, 3 output
channels, so the 256-long feature axis becomes 254, 252, 250, 248, 246, then one FC layer
from 3 × 246 to the expression coefficients α. Trained with MSE against the α fitted on
the pseudo video (eq. 1).

Departures, and why:
- AT-net's pretrained audio encoder (LRW-trained) cannot be loaded here, so `AudioEncoderNet`
  (strided 2-D convolutions over the 28 × 80 block, then FC to 256) stands in for it and is
  trained jointly with H by eq. 1; `feature_dim` must stay 256 for Table 1's shapes.
- Table 1 does not say what the first Conv1D's input channels are; here they are the 256-D
  features of `window` consecutive video frames centred on the predicted one (AudioDVP's
  A2E looks at a window of frames too).
- LeakyReLU(0.02) between the layers (the paper names no activation).
- The expression dimension is the project's 3DMM's (33: 28 mouth + 5 brow, nodes/face/model.py)
  instead of the paper's 64 FaceWarehouse components.
- MFCC inputs are standardised per coefficient and the outputs de-standardised with statistics
  of the training data stored as buffers (not parameters); the loss is still eq. 1 on α.

Explicit options (defaults = the paper; `paper` / `tiny` presets never set them):
- `feature: phonetic` (not in the paper): the 44-D per-frame phonetic features of
  trainers/data/phonetic.py (PocketSphinx phones, voicing, loudness) instead of MFCC blocks, through
  `PhoneticEncoderNet` (a per-frame MLP to the same 256-D f), so Table 1's part is unchanged. Why:
  MFCCs carry the voice, and the pseudo videos here are driven by a few synthetic voices.
- `mouth_prior: rules` (not in the paper; needs `feature: phonetic`): the rule-based mouth of the
  same phonetic features (nodes/lipsync/prior.py, the prior of HDTF's and Yi's
  `mouth_prior: rules` options too) is appended to every frame's input, and α's 28 mouth
  coefficients are that prior plus what H predicts, whose mouth outputs start at zero; training
  adds an L2 penalty on them (`TrainA2E.lambda_residual`). Why: trained on a few synthetic voices
  and one target, H reads phones worse than the viseme table on unseen voices (docs/lipsync.md);
  the residual only learns what the table gets wrong for this target (its rest mouth, its style).
- Table 3's "Baseline" A2E (AudioDVP's, which MetaTalk deepens): `AUDIODVP_A2E` below, three
  Conv1D with 5, 3, 1 outputs (256 -> 254 -> 252 -> 250), no activation, FC from 250, over a
  window of 7 frames (AudioDVP's Nw).
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from nodes.lipsync.prior import PRIOR_DIM as MOUTH_DIM  # the 3DMM's mouth coefficients come first
from nodes.lipsync.prior import zero_residual_
from trainers.data.audio_features import SHAPES

TABLE1_CHANNELS = (5, 5, 3, 3, 3)
# Table 3's baseline: AudioDVP's A2E (Wen et al. 2020): Conv1D 5, 3, 1 (k 3, no activation), FC 250 -> α, Nw = 7
AUDIODVP_A2E = {"channels": (5, 3, 1), "window": 7, "activation": "none"}


class A2EConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mfcc_rows: int = Field(28, ge=4, description="MFCC rows (10 ms) per block (§3: 28)")
    mfcc_coeffs: int = Field(80, ge=4, description="MFCC coefficients per row (§3: 80)")
    encoder_widths: tuple[int, ...] = Field((32, 64, 128, 256), description="audio encoder conv widths (AT-net stand-in)")
    feature_dim: int = Field(256, ge=16, description="audio feature f per frame (AT-net: 256)")
    window: int = Field(5, ge=1, le=64, description="frames whose features feed the first Conv1D (odd: centred)")
    channels: tuple[int, ...] = Field(TABLE1_CHANNELS, description="Conv1D output channels (Table 1)")
    kernel: int = Field(3, ge=1, description="Conv1D kernel (Table 1: 3, stride 1)")
    expression_dim: int = Field(33, ge=1, description="expression coefficients α (project 3DMM: 33; paper: 64)")
    feature: Literal["mfcc80_window", "phonetic"] = Field(
        "mfcc80_window", description="audio input: the paper's 28x80 MFCC blocks, or 44-D phonetic features (option)")
    activation: Literal["leaky_relu", "none"] = Field(
        "leaky_relu", description="between the Conv1D layers (none: AudioDVP's baseline A2E, Table 3)")
    mouth_prior: Literal["none", "rules"] = Field(
        "none", description="rules: the rule-based mouth of the phonetic features is an input and α's mouth is it plus "
                            "a learned residual (option, needs feature phonetic; docs/lipsync.md)")

    @model_validator(mode="after")
    def _prior_reads_phones(self) -> A2EConfig:
        if self.mouth_prior != "none" and self.feature != "phonetic":
            raise ValueError(f"mouth_prior {self.mouth_prior} needs feature: phonetic (the rules read its phones)")
        return self

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Per-frame model input: (28, 80) MFCC block, (44,) phonetic features, or (44 + 28,) phonetic
        features followed by the rules mouth prior."""
        if self.feature != "phonetic":
            return (self.mfcc_rows, self.mfcc_coeffs)
        return (SHAPES["phonetic"][0] + (MOUTH_DIM if self.mouth_prior == "rules" else 0),)


def with_mouth_prior(features: np.ndarray, fps: float) -> np.ndarray:
    """(T, 44) phonetic features -> (T, 44 + 28): each frame followed by the rules mouth prior of the
    whole clip (`features_rule_mouth`: its phone runs and clip-relative loudness need the whole
    clip). The one function TrainA2E and the A2E node call, so both see the same input."""
    from nodes.lipsync.prior import rules_mouth_prior

    features = np.asarray(features, np.float32)
    return np.concatenate([features, rules_mouth_prior(features, fps)], axis=1)


class AudioEncoderNet(nn.Module):
    """(B, rows, coeffs) MFCC block -> (B, feature_dim): strided 3x3 convs, BN, ReLU, FC."""

    def __init__(self, cfg: A2EConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in, h, w = 1, cfg.mfcc_rows, cfg.mfcc_coeffs
        for i, c in enumerate(cfg.encoder_widths):
            stride = (1, 2) if i == 0 else 2  # rows are few: halve them from the second layer on
            layers += [nn.Conv2d(c_in, c, 3, stride, 1), nn.BatchNorm2d(c), nn.ReLU()]
            c_in = c
            h = (h - 1) // (1 if i == 0 else 2) + 1
            w = (w - 1) // 2 + 1
        self.convs = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Linear(c_in * h * w, cfg.feature_dim), nn.ReLU())

    def forward(self, mfcc: torch.Tensor) -> torch.Tensor:
        return self.fc(self.convs(mfcc[:, None]).flatten(1))


class PhoneticEncoderNet(nn.Module):
    """(B, 44) phonetic features of one frame -> (B, feature_dim): a two-layer MLP (the `phonetic`
    option's stand-in for AT-net; the features are already phone posteriors, not a spectrum)."""

    def __init__(self, cfg: A2EConfig) -> None:
        super().__init__()
        (dim,) = cfg.input_shape
        self.mlp = nn.Sequential(nn.Linear(dim, cfg.feature_dim), nn.ReLU(), nn.Linear(cfg.feature_dim, cfg.feature_dim), nn.ReLU())

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.mlp(features)


class A2ENet(nn.Module):
    """forward(audio (B, window, *cfg.input_shape)) -> α (B, expression_dim). With `mouth_prior:
    rules` the input rows end with the rules mouth (`with_mouth_prior`) and α's mouth is the centre
    frame's prior plus the network's residual; the expression statistics are then those of
    (α − prior), and the residual's FC rows start at zero, so an untrained model gives the prior
    (plus the training targets' mean offset from it: the target's own rest mouth)."""

    def __init__(self, cfg: A2EConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = PhoneticEncoderNet(cfg) if cfg.feature == "phonetic" else AudioEncoderNet(cfg)
        convs: list[nn.Module] = []
        c_in, length = cfg.window, cfg.feature_dim
        for c in cfg.channels:  # Table 1: Conv1D k=3 s=1, no padding
            convs += [nn.Conv1d(c_in, c, cfg.kernel, 1), nn.LeakyReLU(0.02) if cfg.activation == "leaky_relu" else nn.Identity()]
            c_in, length = c, length - cfg.kernel + 1
        self.convs = nn.Sequential(*convs)
        self.out_shape = (c_in, length)  # (3, 246) at the paper's sizes
        self.fc = nn.Linear(c_in * length, cfg.expression_dim)
        # input statistics per coefficient (the last axis: 80 MFCC or 44 phonetic dims; named for the paper's input)
        self.register_buffer("mfcc_mean", torch.zeros(cfg.input_shape[-1]))
        self.register_buffer("mfcc_std", torch.ones(cfg.input_shape[-1]))
        self.register_buffer("expression_mean", torch.zeros(cfg.expression_dim))
        self.register_buffer("expression_std", torch.ones(cfg.expression_dim))
        self.uses_prior = cfg.mouth_prior == "rules"
        if self.uses_prior:
            zero_residual_(self.fc, slice(0, MOUTH_DIM))

    def features(self, audio: torch.Tensor) -> torch.Tensor:
        """The 256-D feature f of every frame of the window: (B, window, feature_dim)."""
        b, w = audio.shape[:2]
        x = (audio - self.mfcc_mean) / self.mfcc_std
        return self.encoder(x.reshape(b * w, *audio.shape[2:])).reshape(b, w, -1)

    def residual(self, audio: torch.Tensor) -> torch.Tensor:
        """H's standardised output (B, expression_dim): α itself, or with the prior what is added to it."""
        return self.fc(self.convs(self.features(audio)).flatten(1))

    def prior(self, audio: torch.Tensor) -> torch.Tensor:
        """The centre frame's rules mouth, padded to the expression (B, expression_dim); zeros without the option."""
        out = audio.new_zeros(audio.shape[0], self.cfg.expression_dim)
        if self.uses_prior:
            out[:, :MOUTH_DIM] = audio[:, self.cfg.window // 2, -MOUTH_DIM:]
        return out

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        out = self.residual(audio) * self.expression_std + self.expression_mean
        return out + self.prior(audio) if self.uses_prior else out


def frame_windows(features: torch.Tensor, window: int) -> torch.Tensor:
    """(T, *shape) per-frame features (28x80 MFCC blocks or 44-D phonetic rows) -> (T, window, *shape):
    each frame with its neighbours (edge frames repeated), the predicted frame in the middle."""
    t = features.shape[0]
    idx = torch.arange(t)[:, None] + torch.arange(window)[None] - window // 2
    return features[idx.clamp(0, t - 1)]
