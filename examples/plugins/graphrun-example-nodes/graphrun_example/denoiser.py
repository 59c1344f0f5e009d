"""A learned denoiser for 1-D signals: the network, its sizes and its training task.

A stack of dilated 1-D convolutions predicts the noise of a signal, which is subtracted (a
residual denoiser, as DnCNN does for images). It is trained on synthetic data made on the fly:
sums of a few sines of random period, amplitude and phase, plus Gaussian noise of a random level.
Imported only when a model is built or trained (torch), never when nodes are listed.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from trainers.loop import StepOutput, TrainTask


class DenoiserConfig(BaseModel):
    """The defaults are the full-size (`paper`) preset; learned.py registers the others."""

    model_config = ConfigDict(extra="forbid")

    width: int = Field(32, ge=1, description="channels of the hidden convolutions")
    layers: int = Field(6, ge=2, le=16, description="convolutions; the dilation doubles at each")
    kernel: int = Field(5, ge=3, le=15, description="kernel size (odd)")


class DenoiserNet(nn.Module):
    """forward(noisy (B, N)) -> denoised (B, N): noisy minus the predicted noise."""

    def __init__(self, cfg: DenoiserConfig) -> None:
        super().__init__()
        self.cfg = cfg
        convs, c_in = [], 1
        for i in range(cfg.layers):
            c_out = 1 if i == cfg.layers - 1 else cfg.width
            dilation = 2 ** min(i, cfg.layers - 2)
            convs.append(nn.Conv1d(c_in, c_out, cfg.kernel, padding=dilation * (cfg.kernel // 2), dilation=dilation))
            c_in = c_out
        self.convs = nn.ModuleList(convs)

    def forward(self, noisy: torch.Tensor) -> torch.Tensor:
        h = noisy[:, None]
        for i, conv in enumerate(self.convs):
            h = conv(h)
            if i < len(self.convs) - 1:
                h = F.leaky_relu(h, 0.1)
        return noisy - h[:, 0]


def synthetic_batch(rng: np.random.Generator, batch: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """(noisy, clean) float32 (batch, length): 1-3 sines of period 50-2000 samples, noise 0.05-0.5."""
    t = np.arange(length, dtype=np.float64)
    clean = np.zeros((batch, length))
    for b in range(batch):
        for _ in range(rng.integers(1, 4)):
            period, amp, phase = rng.uniform(50, 2000), rng.uniform(0.2, 1.0), rng.uniform(0, 2 * np.pi)
            clean[b] += amp * np.sin(2 * np.pi * t / period + phase)
    noise = rng.standard_normal((batch, length)) * rng.uniform(0.05, 0.5, (batch, 1))
    return (clean + noise).astype(np.float32), clean.astype(np.float32)


class DenoiseTask(TrainTask):
    """Mean squared error to the clean signal, on windows of `length` samples."""

    name = "example.denoiser"

    def __init__(self, arch: str, config: DenoiserConfig, length: int = 512) -> None:
        self.arch, self.config, self.length = arch, config, length

    def build(self) -> None:
        self.generator = DenoiserNet(self.config)

    def model_config(self) -> dict[str, Any]:
        return {"arch": self.arch, **self.config.model_dump()}  # what the export is rebuilt from

    def data_description(self) -> dict[str, Any]:
        return {"source": "synthetic: 1-3 sines (period 50-2000 samples) + Gaussian noise (sigma 0.05-0.5)",
                "window": self.length}

    def sample_batch(self, rng: np.random.Generator, batch_size: int) -> dict[str, torch.Tensor]:
        noisy, clean = synthetic_batch(rng, batch_size, self.length)
        return {"noisy": torch.from_numpy(noisy), "clean": torch.from_numpy(clean)}

    def generator_step(self, batch: dict[str, torch.Tensor], use_gan: bool) -> StepOutput:
        loss = F.mse_loss(self.generator(batch["noisy"]), batch["clean"])
        return StepOutput(loss, {"mse": loss.item()})


@torch.no_grad()
def denoise(model: DenoiserNet, signal: np.ndarray, device: str = "cpu") -> np.ndarray:
    """A whole 1-D signal at once (the network is fully convolutional)."""
    x = torch.from_numpy(np.ascontiguousarray(signal, np.float32))[None].to(device)
    return model(x)[0].cpu().numpy()
