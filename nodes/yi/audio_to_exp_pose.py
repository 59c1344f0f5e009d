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
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from nodes.standardizer import Standardizer

N_EXPRESSION, N_POSE = 33, 6
MFCC_FRAMES, MFCC_COEFFS = 28, 12


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


class AudioToExpressionPoseNet(nn.Module):
    """forward(mfcc (B, T, 28, 12)) -> (expression (B, T, 33), pose delta (B, T, 6)) in raw units
    (pose delta: radians, image fractions, log-scale; see the module docstring)."""

    def __init__(self, cfg: AudioExpPoseConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.mfcc_norm = Standardizer(MFCC_COEFFS)
        self.expression_norm = Standardizer(cfg.n_expression)
        self.pose_norm = Standardizer(cfg.n_pose)
        self.encoder = AudioEncoder(cfg)
        self.lstm = nn.LSTM(cfg.embed, cfg.lstm_hidden, cfg.lstm_layers, batch_first=True)
        self.head = nn.Linear(cfg.lstm_hidden, cfg.n_expression + cfg.n_pose)

    def forward_normalized(self, mfcc: torch.Tensor, state=None, chunk: int | None = None):
        """Raw MFCC windows -> standardised (expression, pose) and the LSTM state (eq. 1).
        `chunk`: windows per encoder pass (the same values; the CNN's activations for a long
        clip are never all held at once, only its (T, embed) features)."""
        b, t = mfcc.shape[:2]
        x = self.mfcc_norm.norm(mfcc).reshape(b * t, MFCC_FRAMES, MFCC_COEFFS)
        feats = torch.cat([self.encoder(part) for part in x.split(chunk or len(x))]).reshape(b, t, -1)
        h, state = self.lstm(feats, state)
        out = self.head(h)
        return out[..., :self.cfg.n_expression], out[..., self.cfg.n_expression:], state

    def forward(self, mfcc: torch.Tensor, chunk: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if mfcc.ndim != 4 or mfcc.shape[2:] != (MFCC_FRAMES, MFCC_COEFFS):
            raise ValueError(f"expected MFCC windows shaped (B, T, {MFCC_FRAMES}, {MFCC_COEFFS}), got {tuple(mfcc.shape)}")
        e, p, _ = self.forward_normalized(mfcc, chunk=chunk)
        return self.expression_norm.denorm(e), self.pose_norm.denorm(p)


def exp_pose_loss(pred_exp: torch.Tensor, pred_pose: torch.Tensor, exp: torch.Tensor, pose: torch.Tensor,
                  lambda_pose: float = 0.2, lambda_smooth: float = 0.01) -> tuple[torch.Tensor, dict[str, float]]:
    """Eq. 2 on standardised (B, T, D) tensors: MSE(beta) + l1 MSE(p) + l2 sum_t |p_{t+1} - p_t|^2."""
    l_exp = F.mse_loss(pred_exp, exp)
    l_pose = F.mse_loss(pred_pose, pose)
    l_smooth = (pred_pose[:, 1:] - pred_pose[:, :-1]).pow(2).mean(-1).sum(1).mean()
    total = l_exp + lambda_pose * l_pose + lambda_smooth * l_smooth
    return total, {"exp_mse": l_exp.item(), "pose_mse": l_pose.item(), "pose_smooth": l_smooth.item()}
