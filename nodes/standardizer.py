"""Inputs and outputs standardised inside a model with statistics of its training set, stored as
buffers in its checkpoints, so that callers pass and receive raw values (HDTF's animation
generator, Yi's audio -> expression + pose network)."""
from __future__ import annotations

import torch
from torch import nn


class Standardizer(nn.Module):
    """Per-dimension mean/std as buffers, set from the training data and saved with the weights."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def set(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.std.copy_(torch.as_tensor(std, dtype=torch.float32).clamp_min(1e-6))

    def norm(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def denorm(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std + self.mean
