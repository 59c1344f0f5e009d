"""The motion field generator N_M of Audio2Head §3.3 (Fig. 4).

Inputs are brought to one [C, T, S, S] volume (the paper's [W, H, C, T], channels first here):
- V_I: the reference image downscaled (band-limited) to S x S and repeated over the T frames;
- V_S: the head pose of each frame drawn as a projected 3-D box (nodes/audio2head/pose.py);
- V_A: each 4x41 audio frame encoded to a 2-channel S x S map by a small encoder of a linear
  seed map and upsampling conv blocks ("conv and upsampling operations").
A 3-D hourglass (temporal and spatial) turns V into features, decoded by E_kp (a 7x7x7 conv
over time and space, unpadded in space, spatial softmax -> heatmaps -> keypoints, as N_D) and
E_J (a per-frame 7x7 conv to Jacobian maps weighted by the heatmaps) into N keypoints and
Jacobians per frame.

Any audio length: `predict_windows` runs overlapping windows of T frames (hop T/2) and
cross-fades them linearly over each overlap, so the keypoint tracks stay continuous at window
boundaries (the official code instead keeps the middle half of each window, which can jump).

Departures: BatchNorm instead of synchronised BatchNorm; the audio map encoder's layout (the
paper gives only its output shape); the reference is resized with torch's antialiased
interpolation rather than the Gaussian-then-nearest downsampling.

`official=True` (imported official checkpoints, docs/official-weights.md) is the released
model's forward: the audio encoder of the release (a transposed 29x14 convolution, BatchNorm,
ReLU and a 13x13 convolution to 2 x 32 x 32, then nearest x2), channels ordered [audio 2,
image 3, pose 1], the reference and the 256-px pose drawings (pose_maps of 4S x 4S pixels,
nodes/audio2head/official.py) brought to S by Gaussian blur + nearest, raw audio features.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from nodes.antialias import AntiAliasDownsample

from .blocks import Hourglass, conv_bn_relu, heatmap_to_keypoints, spatial_softmax, weighted_jacobians
from .head_motion import AUDIO_SHAPE


class MotionFieldConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    num_kp: int = Field(10, ge=1, le=64)
    size: int = Field(64, ge=16, le=256, description="S: spatial size of the input volume")
    window: int = Field(64, ge=8, le=1024, description="T: frames per window")
    block_expansion: int = Field(32, ge=1)
    max_features: int = Field(512, ge=1)
    num_blocks: int = Field(5, ge=1, le=8)
    temperature: float = Field(0.1, gt=0)
    jacobians: bool = True
    audio_width: int = Field(8, ge=1, description="channels of the audio map encoder")
    head_kernel: int = Field(7, ge=1)
    official: bool = Field(False, description="the official release's audio encoder, input order and downsampling (S = 64)")


class AudioMapEncoder(nn.Module):
    """(N, 4, 41) standardised audio frames -> (N, 2, S, S) maps."""

    def __init__(self, size: int, width: int) -> None:
        super().__init__()
        self.seed_size = max(4, size // 8)
        self.width = width
        self.seed = nn.Linear(AUDIO_SHAPE[0] * AUDIO_SHAPE[1], width * self.seed_size**2)
        ups, s = [], self.seed_size
        while s < size:
            ups += [nn.Upsample(scale_factor=2, mode="nearest"), conv_bn_relu(width, width)]
            s *= 2
        self.up = nn.Sequential(*ups)
        self.out = nn.Conv2d(width, 2, 3, padding=1)
        self.size = size

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        h = self.seed(audio.flatten(1)).view(-1, self.width, self.seed_size, self.seed_size)
        h = self.out(self.up(F.relu(h)))
        return h if h.shape[-1] == self.size else F.interpolate(h, size=(self.size, self.size), mode="bilinear", align_corners=False)


class OfficialAudioMapEncoder(nn.Module):
    """The released audio encoder: (N, 4, 41) raw features -> (N, 2, 64, 64)."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.transposed = nn.ConvTranspose2d(1, width, (29, 14), padding=(0, 11))  # 4 x 41 -> 32 x 32
        self.norm = nn.BatchNorm2d(width)
        self.out = nn.Conv2d(width, 2, 13, padding=6)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        h = self.out(F.relu(self.norm(self.transposed(audio.unsqueeze(1)))))
        return F.interpolate(h, scale_factor=2.0, mode="nearest")


class MotionFieldGeneratorNet(nn.Module):
    """(reference (B, 3, H, W) in [0, 1], audio (B, T, 4, 41), pose maps (B, T, S, S)) ->
    {"value": (B, T, K, 2), "jacobian": (B, T, K, 2, 2), "heatmap": (B, T, K, h, w)}.
    T must be a multiple of 2**num_blocks (the hourglass pools time too)."""

    def __init__(self, cfg: MotionFieldConfig) -> None:
        super().__init__()
        self.cfg = cfg
        if cfg.official:
            if cfg.size != 64:
                raise ValueError("the official motion field works at S = 64")
            self.audio_encoder = OfficialAudioMapEncoder(cfg.audio_width)
            self.down = AntiAliasDownsample(1, 0.25)  # reference channels and pose drawings alike
        else:
            self.audio_encoder = AudioMapEncoder(cfg.size, cfg.audio_width)
        self.hourglass = Hourglass(3 + 1 + 2, cfg.block_expansion, cfg.num_blocks, cfg.max_features, dim=3)
        c = self.hourglass.out_channels
        k = cfg.head_kernel
        self.kp_head = nn.Conv3d(c, cfg.num_kp, k, padding=(k // 2, 0, 0))  # E_kp
        self.jacobian_head = None
        if cfg.jacobians:  # E_J
            self.jacobian_head = nn.Conv2d(c, 4 * cfg.num_kp, k)
            nn.init.zeros_(self.jacobian_head.weight)
            with torch.no_grad():
                self.jacobian_head.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 1.0]).repeat(cfg.num_kp))
        self.register_buffer("audio_mean", torch.zeros(AUDIO_SHAPE[1]))
        self.register_buffer("audio_std", torch.ones(AUDIO_SHAPE[1]))

    def set_statistics(self, audio_mean, audio_std) -> None:
        self.audio_mean.copy_(torch.as_tensor(audio_mean, dtype=torch.float32))
        self.audio_std.copy_(torch.as_tensor(audio_std, dtype=torch.float32))

    def reference_volume(self, reference: torch.Tensor) -> torch.Tensor:
        s = self.cfg.size
        if reference.shape[-2:] != (s, s):
            reference = F.interpolate(reference, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
        return reference

    def _official_down(self, x: torch.Tensor) -> torch.Tensor:
        """Gaussian blur + nearest to S, per channel (FOMM's AntiAliasInterpolation2d at 1/4)."""
        s = self.cfg.size
        if x.shape[-2:] != (4 * s, 4 * s):
            raise ValueError(f"official mode takes the reference and pose drawings at {4 * s} px, got {tuple(x.shape[-2:])}")
        b, c = x.shape[:2]
        return self.down(x.reshape(b * c, 1, 4 * s, 4 * s)).view(b, c, s, s)

    def forward(self, reference: torch.Tensor, audio: torch.Tensor, pose_maps: torch.Tensor) -> dict[str, torch.Tensor]:
        b, t = audio.shape[:2]
        s, k = self.cfg.size, self.cfg.num_kp
        a = (audio - self.audio_mean) / self.audio_std
        v_a = self.audio_encoder(a.reshape(b * t, *AUDIO_SHAPE)).view(b, t, 2, s, s).permute(0, 2, 1, 3, 4)
        if self.cfg.official:
            v_i = self._official_down(reference).unsqueeze(2).expand(b, 3, t, s, s)
            volume = torch.cat([v_a, v_i, self._official_down(pose_maps).unsqueeze(1)], dim=1)
        else:
            v_i = self.reference_volume(reference).unsqueeze(2).expand(b, 3, t, s, s)
            volume = torch.cat([v_i, pose_maps.unsqueeze(1), v_a], dim=1)
        feats = self.hourglass(volume)  # (B, F, T, S, S)
        logits = self.kp_head(feats).permute(0, 2, 1, 3, 4)  # (B, T, K, h, w)
        heatmap = spatial_softmax(logits, self.cfg.temperature)
        out = {"value": heatmap_to_keypoints(heatmap), "heatmap": heatmap}
        h, w = heatmap.shape[-2:]
        if self.jacobian_head is not None:
            per_frame = feats.permute(0, 2, 1, 3, 4).reshape(b * t, feats.shape[1], s, s)
            jmap = self.jacobian_head(per_frame).view(b, t, k, 4, h, w)
            out["jacobian"] = weighted_jacobians(heatmap, jmap)
        else:
            out["jacobian"] = torch.eye(2, device=audio.device, dtype=heatmap.dtype).expand(b, t, k, 2, 2)
        return out


# --- any length: overlapping windows, cross-faded ---


def window_starts(n: int, window: int, hop: int) -> list[int]:
    """First frames of the windows covering n frames (the last one ends at n)."""
    if n <= window:
        return [0]
    starts = list(range(0, n - window + 1, hop))
    if starts[-1] + window < n:
        starts.append(n - window)
    return starts


def crossfade_weights(n: int, window: int, starts: list[int]) -> np.ndarray:
    """(len(starts), window) blending weights: each window ramps in linearly over its overlap
    with the previous window and out over its overlap with the next; normalised so that the
    weights of every frame sum to 1."""
    j = np.arange(window, dtype=np.float64)
    w = np.ones((len(starts), window))
    for i, s in enumerate(starts):
        if i > 0:
            overlap = starts[i - 1] + window - s
            w[i] *= np.minimum(1.0, (j + 1) / (overlap + 1))
        if i < len(starts) - 1:
            overlap = s + window - starts[i + 1]
            w[i] *= np.minimum(1.0, (window - j) / (overlap + 1))
    total = np.zeros(max(n, window))
    for i, s in enumerate(starts):
        total[s:s + window] += w[i]
    for i, s in enumerate(starts):
        w[i] /= total[s:s + window]
    return w


def stitch(per_window: np.ndarray, starts: list[int], n: int) -> np.ndarray:
    """Blend per-window outputs (W, window, ...) into one (n, ...) sequence."""
    window = per_window.shape[1]
    w = crossfade_weights(n, window, starts)
    out = np.zeros((max(n, window),) + per_window.shape[2:], np.float64)
    for i, s in enumerate(starts):
        out[s:s + window] += w[i].reshape((-1,) + (1,) * (per_window.ndim - 2)) * per_window[i]
    return out[:n].astype(np.float32)


@torch.no_grad()
def predict_windows(model: MotionFieldGeneratorNet, reference: torch.Tensor, audio: np.ndarray, pose_maps: np.ndarray,
                    batch: int = 4, progress: Callable[[int, int], None] | None = None) -> dict[str, np.ndarray]:
    """Keypoints for a whole clip. reference (1, 3, H, W); audio (n, 4, 41); pose_maps (n, S, S).
    Shorter clips are edge-padded to one window."""
    n, window = len(audio), model.cfg.window
    hop = window // 2
    if n < window:  # pad by repeating the last frame
        pad = window - n
        audio = np.concatenate([audio, np.repeat(audio[-1:], pad, 0)])
        pose_maps = np.concatenate([pose_maps, np.repeat(pose_maps[-1:], pad, 0)])
    starts = window_starts(len(audio), window, hop)
    device = next(model.parameters()).device
    values, jacobians = [], []
    for i in range(0, len(starts), batch):
        chunk = starts[i:i + batch]
        a = torch.from_numpy(np.stack([audio[s:s + window] for s in chunk])).to(device)
        p = torch.from_numpy(np.stack([pose_maps[s:s + window] for s in chunk])).to(device)
        out = model(reference.expand(len(chunk), -1, -1, -1), a, p)
        values.append(out["value"].float().cpu().numpy())
        jacobians.append(out["jacobian"].float().cpu().numpy())
        if progress:
            progress(min(i + batch, len(starts)), len(starts))
    total = max(n, window)
    value = stitch(np.concatenate(values), starts, total)[:n]
    jacobian = stitch(np.concatenate(jacobians), starts, total)[:n]
    return {"value": value, "jacobian": jacobian}
