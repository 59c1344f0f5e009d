"""The head motion predictor N_H of Audio2Head §3.2 (Fig. 3, eq. 1-2).

E_I (ResNet-34) embeds the reference image into the initial spatial embedding e_0 (the initial
head and body state); E_A (ResNet-34 over the 4x41 acoustic feature frame as a 1-channel
image) embeds each audio frame; a 2-layer LSTM performs the spatial embedding transition

    (h_i, e_i) = LSTM(h_{i-1}, E_A(a_i) (+) e_{i-1})        (eq. 1, e_i = the top layer's output)
    s_i = E_D(e_i)                                           (eq. 2, E_D linear to the 6-D pose)

stepping one frame at a time, so any audio length works. The output includes s_0 = E_D(e_0),
the reference's own pose. Poses and audio features are standardised with statistics of the
training set held as buffers (they travel inside the checkpoint).

Departures: the reference is resized to `image_size` before E_I (256 in the paper preset);
BatchNorm instead of synchronised BatchNorm.

`official=True` marks an imported official checkpoint (docs/official-weights.md): the network is
the same; its poses are the release's (a Rodrigues rotation vector and a translation for
cv2.projectPoints, scaled to [-1, 1] by fixed min/max constants, held here as pose_mean/std),
and the pipeline gives frame i the pose s_i (s_0: the reference's) as the release does.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from .blocks import ResNetEncoder

AUDIO_SHAPE = (4, 41)  # AudioFeatures variant a2h
ENCODER_CHUNK = 256  # audio frames per CNN pass at inference (a long clip's activations are never all held)


class HeadMotionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image_size: int = Field(256, ge=32, le=1024, description="E_I sees the reference at this size")
    width: int = Field(64, ge=4, description="first ResNet stage width (64 in ResNet-34)")
    layers: tuple[int, int, int, int] = (3, 4, 6, 3)
    embedding: int = Field(256, ge=4, description="size of e_i and of the audio embedding")
    lstm_layers: int = Field(2, ge=1, le=4)
    pose_dim: int = 6
    official: bool = Field(False, description="an imported official checkpoint: official pose convention (Rodrigues vector + mm)")


class HeadMotionPredictorNet(nn.Module):
    def __init__(self, cfg: HeadMotionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.image_encoder = ResNetEncoder(3, cfg.embedding, cfg.width, cfg.layers)
        self.audio_encoder = ResNetEncoder(1, cfg.embedding, cfg.width, cfg.layers)
        self.lstm = nn.LSTM(2 * cfg.embedding, cfg.embedding, num_layers=cfg.lstm_layers, batch_first=True)
        self.decoder = nn.Linear(cfg.embedding, cfg.pose_dim)
        a = AUDIO_SHAPE[1]
        self.register_buffer("audio_mean", torch.zeros(a))
        self.register_buffer("audio_std", torch.ones(a))
        self.register_buffer("pose_mean", torch.zeros(cfg.pose_dim))
        self.register_buffer("pose_std", torch.ones(cfg.pose_dim))

    def set_statistics(self, audio_mean, audio_std, pose_mean, pose_std) -> None:
        for name, v in (("audio_mean", audio_mean), ("audio_std", audio_std), ("pose_mean", pose_mean), ("pose_std", pose_std)):
            getattr(self, name).copy_(torch.as_tensor(v, dtype=torch.float32))

    def normalize_pose(self, pose: torch.Tensor) -> torch.Tensor:
        return (pose - self.pose_mean) / self.pose_std

    def denormalize_pose(self, pose: torch.Tensor) -> torch.Tensor:
        return pose * self.pose_std + self.pose_mean

    def forward(self, image: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """image (B, 3, H, W) in [0, 1]; audio (B, T, 4, 41) a2h features ->
        standardised poses (B, T + 1, 6): s_0 (the reference's) then one per audio frame."""
        b, t = audio.shape[:2]
        size = self.cfg.image_size
        if image.shape[-2:] != (size, size):
            image = F.interpolate(image, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        e = self.image_encoder(image)  # e_0
        poses = [self.decoder(e)]
        if t == 0:
            return torch.stack(poses, 1)
        a = (audio - self.audio_mean) / self.audio_std
        a = a.reshape(b * t, 1, *audio.shape[2:])  # the CNN a chunk of frames at a time: memory flat in T, same values
        audio_emb = torch.cat([self.audio_encoder(part) for part in a.split(ENCODER_CHUNK)]).view(b, t, -1)
        state = None
        for i in range(t):  # spatial embedding transition: e_{i-1} goes back in with a_i
            out, state = self.lstm(torch.cat([audio_emb[:, i], e], dim=-1).unsqueeze(1), state)
            e = out[:, 0]
            poses.append(self.decoder(e))
        return torch.stack(poses, 1)
