"""Audio -> expression and head pose (Yi et al. §3.2, eq. 1-2).

    [beta_t, p_t, h_t, c_t] = R(E(s_t), h_{t-1}, c_{t-1})                       (eq. 1)

E is a 2-D CNN over one MFCC window s_t (28 MFCC frames x 12 coefficients, the `mfcc_window`
AudioFeatures variant) followed by two fully-connected layers; R is a 3-layer LSTM whose
output is projected to the expression and pose of frame t. The layout follows the official
ATC_net: conv 1-64-128, 3x3 max-pool (stride 1x2), conv 128-256-256-512, 3x3 max-pool
(stride 2), FC 512*12*2 -> 2048 -> 256, LSTM 256 x 3 — about 29.4M parameters in the paper
preset (the FC over the flattened map holds most of them).

Loss (eq. 2): MSE(expression) + lambda1 MSE(pose) + lambda2 sum_t |p_{t+1} - p_t|^2, with
lambda1 = 0.2, lambda2 = 0.01 (§4.1). General model first, then personalisation: the same
loss fine-tuned on ~300 frames of the target (§3.2, §4.1).

Departures, and why:
- Expression is the project's 33 coefficients (28 mouth + 5 brow, nodes/face/model.py) instead
  of the 64 FaceWarehouse ones; pose is the project's 6-D MorphCoeffs pose (pitch, yaw, roll,
  tx, ty, log-scale) as deltas from the clip's (at inference: the target video's) mean pose,
  with tx, ty in fractions of the image size (nodes/face/pose_deltas.py), so one model serves every
  resolution and the personalised model learns the target's motion around its own rest pose.
- Inputs and outputs are standardised inside the model with training-set statistics (buffers
  saved in the checkpoint) and eq. 2 is evaluated in those units: expression coefficients,
  radians, image fractions and log-scale differ by orders of magnitude, and the paper's raw
  3DMM units have no counterpart here. The continuity term sums over time and averages over
  the six pose dimensions and the batch.

Explicit options (defaults = the paper; the `paper` and `tiny` presets never set them; issue 11,
docs/lipsync.md and docs/yi.md "Audio input on real speech"):
- `feature: phonetic`: the 44-D per-frame phonetic features of trainers/data/phonetic.py
  (PocketSphinx phone classes, voicing, loudness) instead of the MFCC windows. E becomes an MLP
  over the features of the `context` frames either side of frame t (3: t-3..t+3, the same 0.28 s
  as the MFCC window), flattened: phone classes have no spectral neighbourhood for the 2-D
  convolutions to exploit. Why: MFCCs carry the voice, and the only training speech here is
  synthetic, so the paper's input learned the synthesisers (0.37 on the held-out voices).
- `mouth_prior: rules` (needs `phonetic`): the rule-based mouth of the same features
  (nodes/lipsync/prior.py, shared with HDTF's AnimationGenerator) is an extra input of E (its
  window, after the features'), and the 28 mouth coefficients of the output are that prior plus
  a learned residual — the head's mouth rows start at zero, so an untrained model gives the rules'
  mouth; the trainer penalises the residual. Why: trained on 16 synthetic voices the learned
  mouth reads phones worse than the viseme table on voices it never heard, and without the prior
  its mouth stays half open in silence.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from nodes.lipsync.prior import PRIOR_DIM, zero_residual_
from nodes.standardizer import Standardizer

N_EXPRESSION, N_POSE = 33, 6
MFCC_FRAMES, MFCC_COEFFS = 28, 12
PHONETIC_DIM = 44  # trainers/data/phonetic.py FEATURE_DIM


class AudioExpPoseConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channels: tuple[int, int, int, int, int] = Field((64, 128, 256, 256, 512), description="conv widths (2 before, 3 after the first pool)")
    fc_hidden: int = 2048
    embed: int = Field(256, description="audio feature per frame fed to the LSTM")
    lstm_hidden: int = 256
    lstm_layers: int = 3
    n_expression: int = N_EXPRESSION
    n_pose: int = N_POSE
    official: bool = Field(False, description="the released ATC_net (64 Deep3DFaceRecon expression + 6 pose outputs, raw MFCC in)")
    feature: Literal["mfcc_window", "phonetic"] = Field(
        "mfcc_window", description="audio input: the paper's 28x12 MFCC windows, or 44-D phonetic features (an option, issue 11)")
    context: int = Field(3, ge=0, le=16, description="phonetic: frames either side of t that E reads (3: the MFCC window's 0.28 s)")
    mouth_prior: Literal["none", "rules"] = Field("none", description=(
        "none: the paper; rules (phonetic only): the rule-based mouth is an extra input and the mouth output is it "
        "plus a learned residual (a departure: docs/lipsync.md)"))

    @model_validator(mode="after")
    def _prior_reads_phones(self):
        if self.mouth_prior != "none" and self.feature != "phonetic":
            raise ValueError(f"mouth_prior {self.mouth_prior} needs feature: phonetic (the rules read its phones)")
        return self

    @property
    def feature_dim(self) -> int:
        """Standardised coefficients per input row: MFCC 1..12, or the 44 phonetic dims."""
        return PHONETIC_DIM if self.feature == "phonetic" else MFCC_COEFFS


def _conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, 1, 1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


def _pooled_size(h: int, w: int) -> tuple[int, int]:
    h, w = h - 2, (w - 3) // 2 + 1  # 3x3 pool, stride (1, 2)
    return (h - 3) // 2 + 1, (w - 3) // 2 + 1  # 3x3 pool, stride 2


class AudioEncoder(nn.Module):
    """E: one MFCC window (B, 28, 12) -> a feature vector (B, embed)."""

    def __init__(self, cfg: AudioExpPoseConfig) -> None:
        super().__init__()
        c = cfg.channels
        self.conv = nn.Sequential(
            _conv(1, c[0]), _conv(c[0], c[1]), nn.MaxPool2d(3, stride=(1, 2)),
            _conv(c[1], c[2]), _conv(c[2], c[3]), _conv(c[3], c[4]), nn.MaxPool2d(3, stride=(2, 2)),
        )
        h, w = _pooled_size(MFCC_FRAMES, MFCC_COEFFS)
        self.fc = nn.Sequential(nn.Linear(c[4] * h * w, cfg.fc_hidden), nn.ReLU(inplace=True),
                                nn.Linear(cfg.fc_hidden, cfg.embed), nn.ReLU(inplace=True))

    def forward(self, mfcc: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(mfcc.unsqueeze(1)).flatten(1))


class PhoneticWindowEncoder(nn.Module):
    """E of the `phonetic` option: the features (and with `mouth_prior: rules` the prior) of frames
    t-context..t+context, flattened -> FC -> ReLU -> FC -> ReLU (B, embed), like the paper's FC part."""

    def __init__(self, cfg: AudioExpPoseConfig) -> None:
        super().__init__()
        width = 2 * cfg.context + 1
        n_in = width * (cfg.feature_dim + (PRIOR_DIM if cfg.mouth_prior == "rules" else 0))
        self.fc = nn.Sequential(nn.Linear(n_in, cfg.fc_hidden), nn.ReLU(inplace=True),
                                nn.Linear(cfg.fc_hidden, cfg.embed), nn.ReLU(inplace=True))

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        return self.fc(windows)


def frame_windows(x: torch.Tensor, context: int) -> torch.Tensor:
    """(B, T, D) per-frame rows -> (B, T, 2*context+1, D): each frame with its neighbours, rows
    outside the clip repeating the first/last (as the MFCC window pads its edges)."""
    t = x.shape[1]
    idx = (torch.arange(t, device=x.device)[:, None] + torch.arange(-context, context + 1, device=x.device)).clamp(0, t - 1)
    return x[:, idx]


class AudioToExpressionPoseNet(nn.Module):
    """forward(features) -> (expression (B, T, 33), pose delta (B, T, 6)) in raw units (pose delta:
    radians, image fractions, log-scale; see the module docstring). features: MFCC windows
    (B, T, 28, 12), or with `feature: phonetic` (B, T, 44); with `mouth_prior: rules` also `prior`
    (B, T, 28), the rules mouth in coefficients (nodes/lipsync/prior.py)."""

    prior_input_layers = ("encoder.fc.0.weight",)  # mouth_prior rules: the prior's columns follow the features'

    def __init__(self, cfg: AudioExpPoseConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.mfcc_norm = Standardizer(cfg.feature_dim)  # named for the paper's input; 44 dims with `phonetic`
        self.expression_norm = Standardizer(cfg.n_expression)
        self.pose_norm = Standardizer(cfg.n_pose)
        self.encoder = PhoneticWindowEncoder(cfg) if cfg.feature == "phonetic" else AudioEncoder(cfg)
        self.lstm = nn.LSTM(cfg.embed, cfg.lstm_hidden, cfg.lstm_layers, batch_first=True)
        self.head = nn.Linear(cfg.lstm_hidden, cfg.n_expression + cfg.n_pose)
        self.uses_prior = cfg.mouth_prior == "rules"
        if self.uses_prior:  # the residual starts at zero: an untrained model gives the rules' mouth
            self.zero_residual()

    def zero_residual(self) -> None:
        zero_residual_(self.head, slice(0, PRIOR_DIM))

    def _encoder_input(self, features: torch.Tensor, prior_n: torch.Tensor | None) -> torch.Tensor:
        """(B*T, ...) per-frame encoder inputs of standardised features."""
        b, t = features.shape[:2]
        x = self.mfcc_norm.norm(features)
        if self.cfg.feature != "phonetic":
            return x.reshape(b * t, MFCC_FRAMES, MFCC_COEFFS)
        parts = [frame_windows(x, self.cfg.context).reshape(b * t, -1)]
        if self.uses_prior:
            parts.append(frame_windows(prior_n, self.cfg.context).reshape(b * t, -1))
        return torch.cat(parts, dim=1)

    def forward_normalized(self, features: torch.Tensor, state=None, chunk: int | None = None,
                           prior_n: torch.Tensor | None = None):
        """Raw features -> standardised (expression, pose) and the LSTM state (eq. 1).
        `chunk`: windows per encoder pass (the same values; the CNN's activations for a long
        clip are never all held at once, only its (T, embed) features). `prior_n`: the rules
        mouth standardised like the expression's first 28 coefficients (`mouth_prior: rules`)."""
        if self.uses_prior and prior_n is None:
            raise ValueError("this model adds a learned residual to the rules mouth prior: pass `prior`")
        b, t = features.shape[:2]
        x = self._encoder_input(features, prior_n)
        feats = torch.cat([self.encoder(part) for part in x.split(chunk or len(x))]).reshape(b, t, -1)
        h, state = self.lstm(feats, state)
        out = self.head(h)
        exp = out[..., :self.cfg.n_expression]
        if self.uses_prior:
            exp = torch.cat([exp[..., :PRIOR_DIM] + prior_n, exp[..., PRIOR_DIM:]], dim=-1)
        return exp, out[..., self.cfg.n_expression:], state

    def normalize_prior(self, prior: torch.Tensor) -> torch.Tensor:
        """The rules mouth (..., 28) in the standardised units of the expression's mouth part."""
        return (prior - self.expression_norm.mean[:PRIOR_DIM]) / self.expression_norm.std[:PRIOR_DIM]

    def forward(self, features: torch.Tensor, chunk: int | None = None,
                prior: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cfg.feature == "phonetic":
            if features.ndim != 3 or features.shape[2] != PHONETIC_DIM:
                raise ValueError(f"expected phonetic features shaped (B, T, {PHONETIC_DIM}), got {tuple(features.shape)}")
        elif features.ndim != 4 or features.shape[2:] != (MFCC_FRAMES, MFCC_COEFFS):
            raise ValueError(f"expected MFCC windows shaped (B, T, {MFCC_FRAMES}, {MFCC_COEFFS}), got {tuple(features.shape)}")
        prior_n = None if prior is None else self.normalize_prior(prior)
        e, p, _ = self.forward_normalized(features, chunk=chunk, prior_n=prior_n)
        return self.expression_norm.denorm(e), self.pose_norm.denorm(p)


def exp_pose_loss(pred_exp: torch.Tensor, pred_pose: torch.Tensor, exp: torch.Tensor, pose: torch.Tensor,
                  lambda_pose: float = 0.2, lambda_smooth: float = 0.01) -> tuple[torch.Tensor, dict[str, float]]:
    """Eq. 2 on standardised (B, T, D) tensors: MSE(beta) + l1 MSE(p) + l2 sum_t |p_{t+1} - p_t|^2."""
    l_exp = F.mse_loss(pred_exp, exp)
    l_pose = F.mse_loss(pred_pose, pose)
    l_smooth = (pred_pose[:, 1:] - pred_pose[:, :-1]).pow(2).mean(-1).sum(1).mean()
    total = l_exp + lambda_pose * l_pose + lambda_smooth * l_smooth
    return total, {"exp_mse": l_exp.item(), "pose_mse": l_pose.item(), "pose_smooth": l_smooth.item()}
